//! Control plane settings. Loaded by the binary (defaults, then file, then `HOOKD_*`
//! environment); tests build the struct directly.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use hookd_core::egress::EgressPolicy;
use serde::{Deserialize, Serialize};

use crate::{ControlError, auth::MIN_CONFIGURED_TOKEN_LEN};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address of the gRPC server.
    pub listen: SocketAddr,
    /// `sqlite://PATH?mode=rwc` (default) or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
    /// Several control planes may share one Postgres database; SQLite serves one.
    pub database_url: String,
    /// Most database connections this control plane opens; 0 picks the backend's default
    /// (Postgres 10, SQLite 4).
    pub database_max_connections: u32,
    /// How long a query waits for a free connection (or the server for a new one).
    pub database_acquire_timeout_secs: u64,
    /// One NATS server, or the servers of a cluster: a comma-separated string or a list.
    #[serde(deserialize_with = "hookd_core::servers::one_or_many")]
    pub nats_url: String,
    /// How long to wait for NATS at start-up.
    pub nats_connect_timeout_secs: u64,
    /// The same event id published again within this window is stored once.
    pub dedupe_window_secs: u64,
    /// Events not yet fanned out are dropped after this age.
    pub stream_max_age_secs: u64,
    /// Replicas of each stream (1 on a single server, 3 in a cluster).
    pub stream_replicas: usize,
    /// Most messages the events and the deliveries stream each hold; when one is full,
    /// publishes to it are refused (`PublishEvent` answers RESOURCE_EXHAUSTED) until it has
    /// drained. 0: no limit but the server's storage.
    pub stream_max_messages: u64,
    /// Most bytes each of those two streams holds; refused likewise. 0: no limit.
    pub stream_max_bytes: u64,
    /// Webhooks per page of a dispatcher snapshot.
    pub snapshot_page_size: usize,
    /// Most attempt results written in one transaction.
    pub record_batch_max: usize,
    /// How long a rotated-out signing secret keeps signing, unless the rotation says otherwise.
    pub signing_grace_secs: u64,
    /// Base64 of 32 random bytes (`openssl rand -base64 32`): seals endpoint credentials,
    /// OAuth2 client secrets and tokens, and signing secrets in the database. Required.
    pub encryption_key: String,
    /// Names `encryption_key` inside each sealed value, so keys can rotate.
    pub encryption_key_id: String,
    /// Earlier keys (id → base64), still needed to open values sealed under them. At start
    /// every value is resealed under the current key, after which they can be removed.
    pub old_encryption_keys: std::collections::BTreeMap<String, String>,
    /// CIDRs the egress policy opens for OAuth2 token requests and for webhook URLs given as
    /// IP literals (`["10.1.0.0/16", "::1/128"]`); otherwise loopback, private, link-local and
    /// other non-public addresses are refused. Default: none.
    pub allow_cidrs: Vec<String>,
    /// Largest event `PublishEvent` accepts, in bytes of its JSON; the events stream refuses
    /// messages over four times this.
    pub max_event_bytes: usize,
    /// The shared secret dispatchers present (their `control_token`); the only credential
    /// `DispatchService` accepts. Required, at least 16 characters (`HOOKD_DISPATCHER_TOKEN`).
    pub dispatcher_token: String,
    /// Tenant → API token: at start, each listed tenant gets an owner token with exactly this
    /// value (kept if it exists), so a new installation has a first token to create others
    /// with. TOML table `[bootstrap_tokens]`, or `HOOKD_BOOTSTRAP_TOKENS='{default="..."}'`.
    pub bootstrap_tokens: BTreeMap<String, String>,
    /// How often the token table is read again from the database, so revocations and role
    /// changes made on another control plane take effect here.
    pub token_reload_secs: u64,
    /// Endpoint health: a webhook is deactivated by the system after at least this many
    /// consecutive failed attempts (0 disables the rule; a `410 Gone` still deactivates)...
    pub health_max_failures: u32,
    /// ...and no success (nor activation) for at least this long.
    pub health_no_success_secs: u64,
    /// How long events are kept for a deactivated webhook (the buffer stream's max age).
    pub buffer_window_secs: u64,
    /// Most buffered jobs a replay moves per second, per webhook.
    pub replay_rate: f64,
    /// Address of the Prometheus endpoint (`GET /metrics`).
    pub metrics_listen: SocketAddr,
    /// How often the gauges read from the database (webhooks by state, pending retries) are
    /// refreshed.
    pub metrics_refresh_secs: u64,
    /// Deliveries (with their attempts) not changed for this long are purged from the
    /// history. 0 keeps the history forever.
    pub history_retention_secs: u64,
    /// How often the purge looks for deliveries past the retention.
    pub history_purge_interval_secs: u64,
    /// Most deliveries purged in one transaction; the purge pauses between batches, so result
    /// writes never wait for more than one.
    pub history_purge_batch: u64,
    /// How often readiness (gRPC health) checks the database (`SELECT 1`) and the NATS
    /// connection; either failing turns every service NOT_SERVING until it is back.
    pub readiness_interval_secs: u64,
    /// On shutdown, how long calls in progress (result reports, webhook writes) may take to
    /// finish; then the results accepted are committed and the process exits, at most 10 s
    /// later.
    pub shutdown_grace_secs: u64,
    /// Address of the web console and customer portal; empty turns the console off.
    pub console_listen: String,
    /// The console's address as browsers reach it (`https://hooks.example.com`, behind a
    /// proxy say): portal links start with it, and an `https` one makes session cookies
    /// `Secure`. Empty: `http://<console_listen>`.
    pub console_public_url: String,
    /// Origins allowed to show the console in a frame (CSP `frame-ancestors`), such as
    /// `["https://app.example.com"]`; none by default.
    pub console_frame_ancestors: Vec<String>,
    /// Believe `X-Forwarded-Proto: https` from the proxy in front of the console, making
    /// session cookies `Secure` (only behind a proxy that sets it).
    pub console_trust_forwarded_proto: bool,
    /// How long a console session lasts, signed in with a token or opened from a portal link.
    pub console_session_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            database_url: "sqlite://hookd.db?mode=rwc".to_owned(),
            database_max_connections: 0,
            database_acquire_timeout_secs: 10,
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            nats_connect_timeout_secs: 30,
            dedupe_window_secs: 120,
            stream_max_age_secs: 7 * 24 * 3600,
            stream_replicas: 1,
            stream_max_messages: 0,
            stream_max_bytes: 0,
            snapshot_page_size: 500,
            record_batch_max: 2000,
            signing_grace_secs: 24 * 3600,
            encryption_key: String::new(),
            encryption_key_id: "k1".to_owned(),
            old_encryption_keys: std::collections::BTreeMap::new(),
            allow_cidrs: Vec::new(),
            max_event_bytes: hookd_core::event::MAX_EVENT_BYTES,
            dispatcher_token: String::new(),
            bootstrap_tokens: BTreeMap::new(),
            token_reload_secs: 5,
            health_max_failures: 10,
            health_no_success_secs: 24 * 3600,
            buffer_window_secs: 5 * 24 * 3600,
            replay_rate: 20.0,
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            metrics_refresh_secs: 15,
            history_retention_secs: 30 * 24 * 3600,
            history_purge_interval_secs: 60,
            history_purge_batch: 500,
            readiness_interval_secs: 2,
            shutdown_grace_secs: 20,
            console_listen: "127.0.0.1:7080".to_owned(),
            console_public_url: String::new(),
            console_frame_ancestors: Vec::new(),
            console_trust_forwarded_proto: false,
            console_session_secs: 8 * 3600,
        }
    }
}

impl Config {
    /// The cipher for secrets at rest; an error naming the setting when the key is missing
    /// or unusable (the key itself never appears in the message).
    pub(crate) fn cipher(&self) -> Result<hookd_storage::Cipher, String> {
        if self.encryption_key.trim().is_empty() {
            return Err(
                "encryption_key is not set: secrets are encrypted at rest; generate a key \
                 with `openssl rand -base64 32` and set HOOKD_ENCRYPTION_KEY (or encryption_key \
                 in the settings file)"
                    .to_owned(),
            );
        }
        let older: Vec<(String, String)> =
            self.old_encryption_keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        hookd_storage::Cipher::new(&self.encryption_key_id, &self.encryption_key, &older)
            .map_err(|e| e.to_string())
    }

    /// The decoded `encryption_key`: the console's session and portal keys derive from it.
    pub(crate) fn master_key(&self) -> Result<Vec<u8>, ControlError> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(self.encryption_key.trim()).map_err(|_| {
            ControlError::Config { setting: "encryption_key", reason: "is not base64".to_owned() }
        })
    }

    /// Where the console listens; `None` when it is off.
    pub(crate) fn console_listen(&self) -> Result<Option<SocketAddr>, ControlError> {
        let listen = self.console_listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| ControlError::Config {
            setting: "console_listen",
            reason: format!(
                "{listen:?} is not an address such as 127.0.0.1:7080 (empty turns the console off)"
            ),
        })
    }

    pub(crate) fn console_settings(&self) -> hookd_console::Settings {
        hookd_console::Settings {
            public_url: self.console_public_url.trim().to_owned(),
            frame_ancestors: self.console_frame_ancestors.clone(),
            trust_forwarded_proto: self.console_trust_forwarded_proto,
            session: Duration::from_secs(self.console_session_secs),
        }
    }

    pub(crate) fn pool_options(&self) -> hookd_storage::PoolOptions {
        hookd_storage::PoolOptions {
            max_connections: self.database_max_connections,
            acquire_timeout: Some(Duration::from_secs(self.database_acquire_timeout_secs.max(1))),
        }
    }

    pub(crate) fn nats_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.nats_connect_timeout_secs.max(1))
    }

    pub(crate) fn health_rule(&self) -> hookd_core::HealthRule {
        hookd_core::HealthRule {
            max_failures: self.health_max_failures,
            no_success_for: Duration::from_secs(self.health_no_success_secs),
        }
    }

    pub(crate) fn readiness_interval(&self) -> Duration {
        Duration::from_secs(self.readiness_interval_secs.max(1))
    }

    pub(crate) fn signing_grace(&self) -> Duration {
        Duration::from_secs(self.signing_grace_secs)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub(crate) fn token_reload_interval(&self) -> Duration {
        Duration::from_secs(self.token_reload_secs.max(1))
    }

    /// The checks that need no connection. A control plane without a dispatcher token would
    /// either let anyone act as a dispatcher (read every webhook's secrets, write history) or
    /// serve no dispatcher at all; neither is a useful default, so it does not start.
    pub fn validate(&self) -> Result<(), ControlError> {
        let config = |setting, reason: String| Err(ControlError::Config { setting, reason });
        let min = MIN_CONFIGURED_TOKEN_LEN;
        if self.dispatcher_token.trim().is_empty() {
            return config(
                "dispatcher_token",
                "is required: set HOOKD_DISPATCHER_TOKEN (or dispatcher_token in the settings \
                 file) to a secret shared with the dispatchers' control_token"
                    .to_owned(),
            );
        }
        if self.dispatcher_token.len() < min || !is_header_safe(&self.dispatcher_token) {
            return config(
                "dispatcher_token",
                format!(
                    "must be at least {min} printable ASCII characters (HOOKD_DISPATCHER_TOKEN)"
                ),
            );
        }
        self.nats_servers()?;
        self.console_listen()?;
        self.console_settings()
            .validate()
            .map_err(|(setting, reason)| ControlError::Config { setting, reason })?;
        for (tenant, token) in &self.bootstrap_tokens {
            hookd_core::access::validate_tenant(tenant).map_err(|e| ControlError::Config {
                setting: "bootstrap_tokens",
                reason: format!("tenant {tenant:?}: {}", e.reason),
            })?;
            if token.len() < min || !is_header_safe(token) {
                return config(
                    "bootstrap_tokens",
                    format!(
                        "the token of {tenant:?} must be at least {min} printable ASCII characters"
                    ),
                );
            }
            if *token == self.dispatcher_token {
                return config(
                    "bootstrap_tokens",
                    format!("the token of {tenant:?} must differ from the dispatcher token"),
                );
            }
        }
        Ok(())
    }

    pub(crate) fn stream_settings(&self) -> hookd_nats::StreamSettings {
        hookd_nats::StreamSettings {
            dedupe_window: Duration::from_secs(self.dedupe_window_secs.max(1)),
            max_age: Duration::from_secs(self.stream_max_age_secs.max(60)),
            replicas: self.stream_replicas.max(1),
            max_event_message_bytes: i32::try_from(self.max_event_bytes.saturating_mul(4))
                .unwrap_or(i32::MAX),
            buffer_window: Duration::from_secs(self.buffer_window_secs.max(1)),
            max_messages: limit(self.stream_max_messages),
            max_bytes: limit(self.stream_max_bytes),
        }
    }

    /// The NATS servers to connect to; the error names the setting.
    pub(crate) fn nats_servers(&self) -> Result<Vec<async_nats::ServerAddr>, ControlError> {
        hookd_nats::server_addrs(&self.nats_url)
            .map_err(|reason| ControlError::Config { setting: "nats_url", reason })
    }

    /// The egress policy with `allow_cidrs` opened; the error names the setting.
    pub(crate) fn egress_policy(&self) -> Result<EgressPolicy, ControlError> {
        EgressPolicy::new(&self.allow_cidrs)
            .map_err(|e| ControlError::Config { setting: "allow_cidrs", reason: e.to_string() })
    }
}

/// A stream limit as JetStream takes it: -1 for none (0 in the settings).
fn limit(setting: u64) -> i64 {
    if setting == 0 { -1 } else { i64::try_from(setting).unwrap_or(i64::MAX) }
}

/// Printable ASCII without spaces: what fits in an `authorization` header unchanged.
fn is_header_safe(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encryption_key_is_required_and_checked_without_being_echoed() {
        let missing = Config::default().cipher().expect_err("no key");
        assert!(missing.contains("HOOKD_ENCRYPTION_KEY"), "{missing}");
        let short = Config { encryption_key: "c2hvcnQta2V5".into(), ..Config::default() };
        let err = short.cipher().expect_err("too short");
        assert!(err.contains("32") && !err.contains("c2hvcnQta2V5"), "{err}");
        let ok = Config {
            encryption_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
            ..Config::default()
        };
        assert_eq!(ok.cipher().expect("valid").current_key_id(), "k1");
    }

    #[test]
    fn a_dispatcher_token_is_required_and_bootstrap_tokens_are_checked() {
        let err = Config::default().validate().expect_err("no dispatcher token");
        assert!(err.to_string().contains("HOOKD_DISPATCHER_TOKEN"), "{err}");
        let ok = Config { dispatcher_token: "d".repeat(16), ..Config::default() };
        ok.validate().expect("valid");
        let short = Config { dispatcher_token: "short".into(), ..Config::default() };
        assert!(short.validate().is_err());
        for bad in [
            Config { console_listen: "localhost".into(), ..ok.clone() },
            Config { console_public_url: "hooks.example.com".into(), ..ok.clone() },
            Config { console_frame_ancestors: vec!["*".into()], ..ok.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let off = Config { console_listen: String::new(), ..ok.clone() };
        assert_eq!(off.console_listen().expect("valid"), None);
        for (tenant, token) in
            [("Bad.Tenant", "t".repeat(16)), ("a", "short".into()), ("a", "d".repeat(16))]
        {
            let c = Config { bootstrap_tokens: [(tenant.to_owned(), token)].into(), ..ok.clone() };
            assert!(c.validate().is_err(), "{tenant}");
        }
    }
}
