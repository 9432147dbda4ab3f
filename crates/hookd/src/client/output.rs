//! What every command prints with: the output format, the one-line answer of commands that
//! change something, times and statuses, attempts, and the update mask of `update` commands.

use clap::ValueEnum;
use hookd_proto::{convert::from_timestamp, v1};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[value(alias = "table")]
    Text,
    Json,
}

impl Output {
    /// The answer of a command that did something to one resource: `deleted wh_…` as text,
    /// `{"deleted": "wh_…"}` as JSON.
    pub fn done(self, verb: &str, what: &str, id: &str) {
        match self {
            Self::Text if what.is_empty() => println!("{verb} {id}"),
            Self::Text => println!("{verb} {what} {id}"),
            Self::Json => println!("{}", serde_json::json!({ verb: id })),
        }
    }
}

/// The field mask of an `update` command: exactly the fields given on its command line.
#[derive(Default)]
pub struct UpdateMask(Vec<String>);

impl UpdateMask {
    pub fn set(&mut self, path: &str) {
        self.0.push(path.to_owned());
    }

    /// Names `path` when `given`: the flags that clear a field put it in the mask unset.
    pub fn set_if(&mut self, given: bool, path: &str) {
        if given {
            self.set(path);
        }
    }

    /// The mask, or an error when the command line changes nothing.
    pub fn finish(self) -> anyhow::Result<prost_types::FieldMask> {
        if self.0.is_empty() {
            anyhow::bail!("nothing to change: pass at least one field to change (see --help)");
        }
        Ok(prost_types::FieldMask { paths: self.0 })
    }
}

pub fn status_name(status: i32) -> &'static str {
    match v1::DeliveryStatus::try_from(status) {
        Ok(v1::DeliveryStatus::Pending) => "pending",
        Ok(v1::DeliveryStatus::Delivered) => "delivered",
        Ok(v1::DeliveryStatus::Failed) => "failed",
        _ => "unknown",
    }
}

pub fn time_json(t: Option<&prost_types::Timestamp>) -> serde_json::Value {
    t.and_then(from_timestamp).map_or(serde_json::Value::Null, |t| t.to_rfc3339().into())
}

pub fn attempt_json(a: &v1::Attempt) -> serde_json::Value {
    serde_json::json!({
        "number": a.number, "started_at": time_json(a.started_at.as_ref()),
        "http_status": a.http_status, "latency_ms": a.latency_ms, "error": a.error,
        "response_body": a.response_body, "success": a.success,
        "request_headers": a.request_headers.iter().map(|h| [&h.name, &h.value]).collect::<Vec<_>>(),
    })
}

/// `HTTP 200 in 12 ms`, or `no answer in 10000 ms (timed out)`.
pub fn attempt_summary(a: &v1::Attempt) -> String {
    format!(
        "{} in {} ms{}",
        if a.http_status == 0 { "no answer".to_owned() } else { format!("HTTP {}", a.http_status) },
        a.latency_ms,
        if a.error.is_empty() { String::new() } else { format!(" ({})", a.error) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_that_changes_nothing_is_refused() {
        assert!(UpdateMask::default().finish().is_err());
        let mut mask = UpdateMask::default();
        mask.set("name");
        mask.set_if(false, "headers");
        mask.set_if(true, "fields");
        assert_eq!(mask.finish().expect("a mask").paths, ["name", "fields"]);
    }

    #[test]
    fn attempts_summarise_in_one_line() {
        let answered = v1::Attempt {
            http_status: 503,
            latency_ms: 12,
            error: "endpoint answered 503".into(),
            ..Default::default()
        };
        assert_eq!(attempt_summary(&answered), "HTTP 503 in 12 ms (endpoint answered 503)");
        let silent = v1::Attempt { latency_ms: 10_000, ..Default::default() };
        assert_eq!(attempt_summary(&silent), "no answer in 10000 ms");
    }
}
