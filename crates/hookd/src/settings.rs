//! Settings layering for the services: built-in defaults, then the TOML file, then `HOOKD_*`
//! environment variables (`HOOKD_NATS_URL`, `HOOKD_DATABASE_URL`, ...). Read once at start.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Serialize, de::DeserializeOwned};

pub fn load<T: Serialize + DeserializeOwned + Default>(file: Option<&Path>) -> anyhow::Result<T> {
    layered(file, Env::prefixed("HOOKD_"))
}

fn layered<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    env: Env,
) -> anyhow::Result<T> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.is_file() {
            anyhow::bail!("settings file {} does not exist", file.display());
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment.merge(env).extract().map_err(|e| anyhow::anyhow!("invalid settings: {e}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(file, "nats_url = \"nats://127.0.0.1:1\"\nretry_schedule_secs = [1, 2]")
            .expect("write");
        // A prefix no real environment has, so the test reads a controlled environment
        // through figment's own lookup without touching the process environment.
        let env = Env::prefixed("HOOKD_TEST_SETTINGS_UNSET_");
        let c: hookd_dispatcher::Config = layered(Some(file.path()), env).expect("loads");
        assert_eq!(c.nats_url, "nats://127.0.0.1:1");
        assert_eq!(c.retry_schedule_secs, [1.0, 2.0]);
        assert_eq!(c.attempt_timeout_secs, 10.0, "defaults fill the rest");
    }

    #[test]
    fn servers_are_a_list_or_a_comma_separated_string() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            "nats_url = [\"nats://a:4222\", \"nats://b:4222\"]\n\
             control_url = \"http://c1:7070, http://c2:7070\""
        )
        .expect("write");
        let env = Env::prefixed("HOOKD_TEST_SETTINGS_UNSET_");
        let c: hookd_dispatcher::Config = layered(Some(file.path()), env).expect("loads");
        assert_eq!(c.nats_url, "nats://a:4222,nats://b:4222");
        assert_eq!(c.control_url, "http://c1:7070,http://c2:7070");
    }

    #[test]
    fn tokens_come_from_a_toml_table() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            file,
            "dispatcher_token = \"d-0123456789abcdef\"\n[bootstrap_tokens]\nacme = \"hkd_acme-0123456789\""
        )
        .expect("write");
        let env = Env::prefixed("HOOKD_TEST_SETTINGS_UNSET_");
        let c: hookd_control::Config = layered(Some(file.path()), env).expect("loads");
        assert_eq!(c.bootstrap_tokens.get("acme").map(String::as_str), Some("hkd_acme-0123456789"));
        c.validate().expect("valid");
    }

    /// The README's Configuration section lists every setting of both services with its
    /// variable and default. A field added to a `Config` without a row there, or a default changed without
    /// the row, fails here. To document a new field, add its row to the service's table.
    #[test]
    fn every_setting_is_documented_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let doc = std::fs::read_to_string(&path).expect("README.md");
        let control = serde_json::to_value(hookd_control::Config::default()).expect("json");
        let dispatcher = serde_json::to_value(hookd_dispatcher::Config::default()).expect("json");
        let mut missing = Vec::new();
        missing.extend(undocumented(&doc, "#### `hookd control`", &control));
        missing.extend(undocumented(&doc, "#### `hookd dispatcher`", &dispatcher));
        assert!(
            missing.is_empty(),
            "the README's Configuration section is out of date:\n{}",
            missing.join("\n")
        );
    }

    /// What the table under `heading` lacks for the settings in `defaults`.
    fn undocumented(doc: &str, heading: &str, defaults: &serde_json::Value) -> Vec<String> {
        let Some(start) = doc.find(heading) else {
            return vec![format!("no section {heading}")];
        };
        let section = &doc[start + heading.len()..];
        // Up to the next heading of any level.
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        let mut missing = Vec::new();
        for (key, value) in defaults.as_object().expect("a struct") {
            let variable = format!("`HOOKD_{}`", key.to_uppercase());
            let Some(row) = section.lines().find(|l| l.starts_with(&format!("| `{key}` |"))) else {
                missing.push(format!("{heading}: no row for `{key}`"));
                continue;
            };
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            if cells.get(2) != Some(&variable.as_str()) {
                missing.push(format!("{heading}: `{key}` should name {variable}"));
            }
            if let Some(default) = shown_default(value)
                && !cells.get(3).is_some_and(|c| c.contains(&format!("`{default}`")))
            {
                missing.push(format!("{heading}: `{key}` should show the default `{default}`"));
            }
        }
        missing
    }

    /// A default as the page writes it (`10` for 10.0, lists with `, `); `None` for an empty
    /// string or an unset option, which the page describes in words ("none: required",
    /// "4 × `endpoint_concurrency`").
    fn shown_default(value: &serde_json::Value) -> Option<String> {
        use serde_json::Value;
        match value {
            Value::String(s) if s.is_empty() => None,
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(match n.as_f64() {
                Some(f) if f.fract() == 0.0 && n.is_f64() => format!("{f:.0}"),
                _ => n.to_string(),
            }),
            Value::Array(items) => {
                let items: Option<Vec<String>> = items.iter().map(shown_default).collect();
                Some(format!("[{}]", items?.join(", ")))
            }
            Value::Object(map) if map.is_empty() => Some("{}".to_owned()),
            other => Some(other.to_string()),
        }
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err =
            layered::<hookd_control::Config>(Some(Path::new("/nonexistent/h.toml")), Env::raw())
                .expect_err("must fail");
        assert!(err.to_string().contains("does not exist"));
    }
}
