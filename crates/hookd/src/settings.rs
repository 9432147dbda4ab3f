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

    #[test]
    fn a_missing_file_is_an_error() {
        let err =
            layered::<hookd_control::Config>(Some(Path::new("/nonexistent/h.toml")), Env::raw())
                .expect_err("must fail");
        assert!(err.to_string().contains("does not exist"));
    }
}
