//! Dispatcher settings. Loaded by the binary (defaults, then file, then `HOOKD_*`
//! environment); tests build the struct directly.

use std::{net::SocketAddr, time::Duration};

use hookd_core::{RetrySchedule, egress::EgressPolicy};
use serde::{Deserialize, Serialize};

/// The longest attempt timeout a webhook may have.
pub const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest `ack_wait_secs`: progress acks go out every third of it, and each must reach
/// the server well before the wait runs out.
const MIN_ACK_WAIT_SECS: u64 = 6;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address of the health endpoints (`/healthz`, `/readyz`).
    pub listen: SocketAddr,
    /// gRPC address of the control plane, or of several replicas (a comma-separated string or
    /// a list): calls go to one at a time and move to the next when it cannot be reached.
    #[serde(deserialize_with = "hookd_core::servers::one_or_many")]
    pub control_url: String,
    /// The control plane's `dispatcher_token`, sent on every call to it. Required
    /// (`HOOKD_CONTROL_TOKEN`).
    pub control_token: String,
    /// One NATS server, or the servers of a cluster: a comma-separated string or a list.
    #[serde(deserialize_with = "hookd_core::servers::one_or_many")]
    pub nats_url: String,
    /// How long to wait for NATS and the first definitions snapshot at start-up.
    pub startup_timeout_secs: u64,
    /// No complete answer within this time fails the attempt (at most 30 s).
    pub attempt_timeout_secs: f64,
    /// Delays before each retry, in seconds.
    pub retry_schedule_secs: Vec<f64>,
    /// Delivery jobs held at the same time by this process (attempting, or waiting for their
    /// endpoint's concurrency limit).
    pub max_in_flight: usize,
    /// Attempts at the same endpoint (scheme, host and port) at the same time, when first
    /// seen: the limit adapts to the endpoint (fewer on 429, 502-504 and slower answers, more
    /// while it keeps up), and one webhook may hold at most three quarters of it.
    pub endpoint_concurrency: usize,
    /// The most attempts at one endpoint the adaptive limit grows to; by default four times
    /// `endpoint_concurrency`. Equal to it, the limit never grows (it still shrinks).
    pub endpoint_concurrency_max: Option<usize>,
    /// Jobs that may wait for a busy endpoint; more are put back for a second and a slow
    /// endpoint can never take every slot.
    pub endpoint_queue: usize,
    /// Retries due within this many seconds wait as NAK-delayed messages (precise, but they
    /// count against `max_ack_pending`); later ones are stored as JetStream message schedules.
    pub nak_max_delay_secs: f64,
    /// Events fanned out at the same time by this process.
    pub fanout_concurrency: usize,
    /// Whether the fan-out makes a delivery's first attempt itself when the endpoint is
    /// healthy and has a free place: the delivery then needs no job on `HOOKD_DELIVERIES`
    /// unless it has to be retried. At most half of `fanout_concurrency` such attempts run at
    /// once.
    pub inline_attempts: bool,
    /// How long (milliseconds, at most 1 000) a fan-out waits for one of those places when
    /// all are taken before it writes a job instead: under load, a job costs a second
    /// JetStream stage, more than the wait. 0 never waits.
    pub inline_wait_ms: u64,
    /// JetStream redelivers a message left unacknowledged this long. Every message this
    /// dispatcher works on is progress-acked every third of it (attempts included), so it only
    /// bounds how soon a dead dispatcher's messages come back.
    pub ack_wait_secs: u64,
    pub max_ack_pending: i64,
    /// Most attempt results reported in one call.
    pub report_batch_max: usize,
    /// Attempt results kept while the control plane cannot be reached; beyond it,
    /// deliveries pause rather than lose results.
    pub report_buffer: usize,
    /// How long a report batch that is not full waits for more results before it is sent:
    /// at steady rates it turns a call and a transaction per attempt into one per batch, and
    /// a transaction's cost is mostly fixed (SQLite writes whole pages), so at 500 events/s
    /// 100 ms cost half the control plane's CPU of 20 ms. Receivers never wait for it, nor an
    /// ordered key's next job (the head's result goes at once); only the acknowledgement does.
    pub report_linger_ms: u64,
    /// On shutdown, how long attempts already started may take to finish and be reported;
    /// messages still in progress after it are handed back (NAK) to another dispatcher.
    pub shutdown_grace_secs: u64,
    /// On shutdown, after the grace period, how long the reporter may take to send the
    /// results it still holds (their jobs come back after `ack_wait` if it cannot). A
    /// dispatcher exits within `shutdown_grace_secs + shutdown_flush_secs` + 7 s at worst.
    pub shutdown_flush_secs: u64,
    /// Fault injection for tests: apply each definitions change this much later, as over a
    /// slow link to the control plane. Always 0 in production.
    pub watch_apply_delay_ms: u64,
    /// CIDRs the egress policy opens (`["10.1.0.0/16", "::1/128"]`). Deliveries are never
    /// made to loopback, private, link-local, CGNAT, multicast, documentation or other
    /// non-public addresses unless they are inside one of these. Default: none.
    pub allow_cidrs: Vec<String>,
    /// Events larger than this (the JSON as published) are never delivered: the fan-out
    /// drops them and counts them as rejected.
    pub max_event_bytes: usize,
    /// How often the gauges read from JetStream (consumer lag, pending acks, stream sizes)
    /// are refreshed.
    pub metrics_refresh_secs: u64,
    /// Ordered webhooks: the head of a key's line that nobody attempts for this long after it
    /// was due (its job was lost) is skipped, so the key moves on.
    pub ordering_stale_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7071)),
            control_url: "http://127.0.0.1:7070".to_owned(),
            control_token: String::new(),
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            startup_timeout_secs: 60,
            attempt_timeout_secs: 10.0,
            retry_schedule_secs: vec![15.0, 60.0, 225.0, 900.0, 3600.0],
            max_in_flight: 2048,
            endpoint_concurrency: 32,
            endpoint_concurrency_max: None,
            endpoint_queue: 64,
            nak_max_delay_secs: 60.0,
            fanout_concurrency: 128,
            inline_attempts: true,
            inline_wait_ms: 5,
            ack_wait_secs: 15,
            max_ack_pending: 100_000,
            report_batch_max: 500,
            report_buffer: 50_000,
            report_linger_ms: 100,
            shutdown_grace_secs: 30,
            shutdown_flush_secs: 5,
            watch_apply_delay_ms: 0,
            allow_cidrs: Vec::new(),
            max_event_bytes: hookd_core::event::MAX_EVENT_BYTES,
            metrics_refresh_secs: 5,
            ordering_stale_secs: 600,
        }
    }
}

/// A setting that cannot work, naming it.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |setting, reason: &str| Err(ConfigError { setting, reason: reason.to_owned() });
        if self.control_token.trim().is_empty() {
            return err(
                "control_token",
                "is required: set HOOKD_CONTROL_TOKEN to the control plane's dispatcher_token",
            );
        }
        if !self.control_token.bytes().all(|b| b.is_ascii_graphic()) {
            return err("control_token", "must be printable ASCII without spaces");
        }
        if !(self.attempt_timeout_secs > 0.0
            && self.attempt_timeout_secs <= MAX_ATTEMPT_TIMEOUT.as_secs_f64())
        {
            return err("attempt_timeout_secs", "must be above 0 and at most 30");
        }
        if self.retry_schedule_secs.iter().any(|d| !(d.is_finite() && *d >= 0.0)) {
            return err("retry_schedule_secs", "delays must be non-negative numbers of seconds");
        }
        if self.ack_wait_secs < MIN_ACK_WAIT_SECS {
            return err(
                "ack_wait_secs",
                "must be at least 6 s: work in progress is progress-acked every third of it",
            );
        }
        if !(self.nak_max_delay_secs.is_finite() && self.nak_max_delay_secs >= 0.0) {
            return err("nak_max_delay_secs", "must be a non-negative number of seconds");
        }
        if self.endpoint_concurrency == 0 {
            return err("endpoint_concurrency", "must be at least 1");
        }
        if self.endpoint_concurrency_max.is_some_and(|max| max < self.endpoint_concurrency) {
            return err("endpoint_concurrency_max", "must be at least endpoint_concurrency");
        }
        if self.max_in_flight == 0 || self.fanout_concurrency == 0 || self.report_batch_max == 0 {
            return err("max_in_flight", "concurrency and batch settings must be at least 1");
        }
        if self.max_event_bytes == 0 {
            return err("max_event_bytes", "must be at least 1");
        }
        self.egress_policy()?;
        self.nats_servers()?;
        if hookd_core::servers::split(&self.control_url).next().is_none() {
            return err("control_url", "names no control plane; give http://HOST:PORT");
        }
        Ok(())
    }

    /// The NATS servers to connect to; the error names the setting.
    pub(crate) fn nats_servers(&self) -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
        hookd_nats::server_addrs(&self.nats_url)
            .map_err(|reason| ConfigError { setting: "nats_url", reason })
    }

    /// The egress policy with `allow_cidrs` opened.
    pub(crate) fn egress_policy(&self) -> Result<EgressPolicy, ConfigError> {
        EgressPolicy::new(&self.allow_cidrs)
            .map_err(|e| ConfigError { setting: "allow_cidrs", reason: e.to_string() })
    }

    pub(crate) fn attempt_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.attempt_timeout_secs)
    }

    pub(crate) fn retry_schedule(&self) -> RetrySchedule {
        RetrySchedule {
            delays: self.retry_schedule_secs.iter().map(|s| Duration::from_secs_f64(*s)).collect(),
        }
    }

    pub(crate) fn nak_max_delay(&self) -> Duration {
        Duration::from_secs_f64(self.nak_max_delay_secs)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub(crate) fn endpoint_concurrency_max(&self) -> usize {
        self.endpoint_concurrency_max.unwrap_or(self.endpoint_concurrency.saturating_mul(4))
    }

    /// First attempts the fan-out may make at once.
    pub(crate) fn inline_bound(&self) -> usize {
        if self.inline_attempts { (self.fanout_concurrency / 2).max(1) } else { 0 }
    }

    pub(crate) fn inline_wait(&self) -> Duration {
        Duration::from_millis(self.inline_wait_ms.min(1_000))
    }

    pub(crate) fn report_linger(&self) -> Duration {
        Duration::from_millis(self.report_linger_ms.min(1_000))
    }

    pub(crate) fn shutdown_flush(&self) -> Duration {
        Duration::from_secs(self.shutdown_flush_secs)
    }

    pub(crate) fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs)
    }

    pub(crate) fn ordering_stale(&self) -> Duration {
        Duration::from_secs(self.ordering_stale_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_the_product() {
        let err = Config::default().validate().expect_err("no control token");
        assert_eq!(err.setting, "control_token");
        let c = Config { control_token: "dispatcher-secret-1".into(), ..Config::default() };
        c.validate().expect("defaults are valid");
        assert_eq!(c.attempt_timeout(), Duration::from_secs(10));
        assert_eq!(c.retry_schedule(), RetrySchedule::default());
    }

    #[test]
    fn rejects_a_timeout_above_30_s_or_an_ack_wait_too_short() {
        let valid = Config { control_token: "dispatcher-secret-1".into(), ..Config::default() };
        let c = Config { attempt_timeout_secs: 31.0, ..valid.clone() };
        assert_eq!(c.validate().expect_err("invalid").setting, "attempt_timeout_secs");
        let c = Config { ack_wait_secs: 5, ..valid.clone() };
        assert_eq!(c.validate().expect_err("invalid").setting, "ack_wait_secs");
        Config { ack_wait_secs: 6, attempt_timeout_secs: 30.0, ..valid }
            .validate()
            .expect("attempts longer than the ack wait are progress-acked");
    }

    #[test]
    fn several_servers_are_accepted_and_a_bad_one_is_named() {
        let valid = Config { control_token: "dispatcher-secret-1".into(), ..Config::default() };
        let c = Config { nats_url: "nats://a:4222, nats://b:4222".into(), ..valid.clone() };
        assert_eq!(c.nats_servers().expect("valid").len(), 2);
        let c = Config { nats_url: "nats://a:4222,http://[b".into(), ..valid.clone() };
        let err = c.validate().expect_err("invalid");
        assert_eq!(err.setting, "nats_url");
        assert!(err.to_string().contains("\"http://[b\""), "{err}");
        let c = Config { control_url: " , ".into(), ..valid };
        assert_eq!(c.validate().expect_err("invalid").setting, "control_url");
    }

    #[test]
    fn an_invalid_allow_list_names_the_setting_and_the_cidr() {
        let base = Config { control_token: "t".repeat(16), ..Config::default() };
        let c =
            Config { allow_cidrs: vec!["127.0.0.0/8".into(), "10.0.0.1/8".into()], ..base.clone() };
        let err = c.validate().expect_err("invalid");
        assert_eq!(err.setting, "allow_cidrs");
        assert!(err.to_string().contains("\"10.0.0.1/8\""), "{err}");
        let c = Config { allow_cidrs: vec!["::1/128".into()], ..base };
        c.validate().expect("valid");
    }
}
