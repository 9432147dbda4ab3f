//! Deliveries (one event to one webhook) and the attempts made at them.
//!
//! [`AttemptRecord`] is the one shape of an attempt: a dispatcher builds it from the
//! [`AttemptOutcome`] of its HTTP exchange, the history stores it, and every reader (the
//! delivery API, test sends, the CLI) shows it. Wire and table forms convert from and to it
//! (`hookd-proto`'s `convert`, `hookd-storage`'s `deliveries`), never to each other.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{DeliveryId, EventId, WebhookId};

/// The most of an endpoint's answer kept with an attempt; the rest is never read.
pub const MAX_RESPONSE_EXCERPT: usize = 16 * 1024;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; another attempt is scheduled.
    Pending,
    /// An attempt got a 2xx answer.
    Delivered,
    /// Every scheduled attempt failed.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// How one HTTP attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered; `status` decides success (2xx only). `retry_after` is the
    /// endpoint's `Retry-After`, if it sent a valid one.
    Answered { status: u16, body_excerpt: String, retry_after: Option<Duration> },
    /// No complete answer within the attempt timeout.
    TimedOut { after: Duration },
    /// Could not connect, TLS failed, or the connection broke before an answer.
    Failed { error: String },
}

impl AttemptOutcome {
    /// 2xx is delivered; everything else, including 3xx (redirects are not followed), fails.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Answered { status, .. } if (200..300).contains(status))
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short reason for people, empty on success.
    pub fn error(&self) -> String {
        match self {
            Self::Answered { status, .. } if (200..300).contains(status) => String::new(),
            Self::Answered { status, .. } if (300..400).contains(status) => {
                format!("endpoint answered {status}: redirects are not followed")
            }
            Self::Answered { status, .. } => format!("endpoint answered {status}"),
            Self::TimedOut { after } => format!("no answer within {} ms", after.as_millis()),
            Self::Failed { error } => error.clone(),
        }
    }
}

/// One HTTP attempt at a delivery (or a test send), as made, stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based. (Test-send replies of older dispatchers carry no number: theirs is 1.)
    #[serde(default = "first_attempt")]
    pub number: u32,
    pub started_at: DateTime<Utc>,
    /// The HTTP status of the answer; `None` when there was none.
    pub http_status: Option<u16>,
    /// From the start of the request to the end of the answer (or the failure), token
    /// requests and a repeated exchange included.
    pub latency_ms: u64,
    /// Why the attempt failed; empty on success.
    pub error: String,
    /// The first bytes of the answer, at most [`MAX_RESPONSE_EXCERPT`].
    pub response_body: String,
    pub success: bool,
    /// The request headers sent, secrets redacted.
    pub request_headers: Vec<(String, String)>,
}

impl AttemptRecord {
    /// The record of attempt `number`, started at `started_at`, that ended with `outcome`
    /// after `latency`.
    pub fn new(
        number: u32,
        started_at: DateTime<Utc>,
        outcome: &AttemptOutcome,
        latency: Duration,
        request_headers: Vec<(String, String)>,
    ) -> Self {
        let response_body = match outcome {
            AttemptOutcome::Answered { body_excerpt, .. } => excerpt(body_excerpt).to_owned(),
            _ => String::new(),
        };
        Self {
            number,
            started_at,
            http_status: outcome.http_status(),
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            error: outcome.error(),
            response_body,
            success: outcome.is_success(),
            request_headers,
        }
    }

    /// Cuts a response body that came from elsewhere (a report) to [`MAX_RESPONSE_EXCERPT`].
    pub fn bound_response_body(&mut self) {
        let end = excerpt(&self.response_body).len();
        self.response_body.truncate(end);
    }
}

fn first_attempt() -> u32 {
    1
}

/// The longest prefix of `body` within [`MAX_RESPONSE_EXCERPT`] that ends on a character.
fn excerpt(body: &str) -> &str {
    if body.len() <= MAX_RESPONSE_EXCERPT {
        return body;
    }
    let mut end = MAX_RESPONSE_EXCERPT;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// An attempt with the delivery it was made for and where that delivery stands after it:
/// what a dispatcher reports and the history records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub event_type: String,
    /// The body sent to the endpoint (empty for methods without one).
    pub payload: String,
    /// The event as the producer published it (JSON text), kept for resends.
    pub event: String,
    pub attempt: AttemptRecord,
    pub status_after: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> AttemptOutcome {
        AttemptOutcome::Answered { status, body_excerpt: String::new(), retry_after: None }
    }

    #[test]
    fn only_2xx_is_success() {
        assert!(answered(200).is_success());
        assert!(answered(204).is_success());
        assert!(!answered(301).is_success());
        assert!(answered(302).error().contains("redirects are not followed"));
        assert!(!answered(429).is_success());
        assert!(!answered(500).is_success());
        assert!(!AttemptOutcome::TimedOut { after: Duration::from_secs(10) }.is_success());
        assert!(!AttemptOutcome::Failed { error: "refused".into() }.is_success());
    }

    #[test]
    fn a_record_keeps_what_the_outcome_says() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let headers = vec![("x-a".to_owned(), "1".to_owned())];
        let ok = AttemptRecord::new(2, at, &answered(204), Duration::from_millis(7), headers);
        assert!(ok.success);
        assert_eq!((ok.number, ok.http_status, ok.latency_ms), (2, Some(204), 7));
        assert_eq!(ok.error, "");
        assert_eq!(ok.request_headers.len(), 1);
        let timed_out = AttemptOutcome::TimedOut { after: Duration::from_secs(10) };
        let late = AttemptRecord::new(1, at, &timed_out, Duration::from_secs(10), Vec::new());
        assert!(!late.success);
        assert_eq!(late.http_status, None);
        assert_eq!(late.error, "no answer within 10000 ms");
    }

    #[test]
    fn response_excerpts_are_bounded_on_a_character() {
        let long = "é".repeat(MAX_RESPONSE_EXCERPT);
        let outcome =
            AttemptOutcome::Answered { status: 500, body_excerpt: long.clone(), retry_after: None };
        let made =
            AttemptRecord::new(1, DateTime::<Utc>::UNIX_EPOCH, &outcome, Duration::ZERO, vec![]);
        assert_eq!(made.response_body.len(), MAX_RESPONSE_EXCERPT);
        let mut reported = AttemptRecord { response_body: format!("x{long}"), ..made };
        reported.bound_response_body();
        assert!(reported.response_body.len() <= MAX_RESPONSE_EXCERPT);
        assert!(reported.response_body.len() > MAX_RESPONSE_EXCERPT - 2);
    }

    #[test]
    fn status_round_trips_through_text() {
        for s in [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("lost"), None);
    }
}
