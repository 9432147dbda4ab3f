//! The control plane's Prometheus metrics, served on `metrics_listen` as `/metrics`.
//!
//! Gauges read from the database (webhooks by state, deliveries waiting for a retry) are the
//! installation's, not this replica's: every control plane shows the same value, so
//! dashboards take the max over replicas, not the sum.

use std::time::Duration;

use hookd_metrics::{
    Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, LATENCY_BUCKETS, Registry,
};
use hookd_storage::Store;

use crate::changes::Changes;

/// Buckets for attempts per result-write transaction, up to `record_batch_max`'s default.
const BATCH_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0];

pub struct Metrics {
    pub registry: Registry,
    pub events_published: IntCounterVec,
    pub attempts_recorded: IntCounterVec,
    pub result_write_batch: Histogram,
    pub result_write_duration: Histogram,
    pub result_write_failures: IntCounter,
    pub webhooks_deactivated: IntCounterVec,
    pub history_purged: IntCounter,
    dispatchers_connected: IntGauge,
    peer_replicas: IntGauge,
    webhooks: IntGaugeVec,
    deliveries_pending: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        use hookd_metrics as m;
        let r = Registry::new();
        Self {
            events_published: m::counter_vec(
                &r,
                "hookd_control_events_published_total",
                "Events accepted by PublishEvent; duplicate ids are stored once.",
                &["result"],
            ),
            attempts_recorded: m::counter_vec(
                &r,
                "hookd_control_attempts_recorded_total",
                "Attempt results reported by dispatchers: new, or already stored (a repeated \
                 report).",
                &["result"],
            ),
            result_write_batch: m::histogram(
                &r,
                "hookd_control_result_write_batch_size",
                "Attempt results stored in one database transaction.",
                BATCH_BUCKETS,
            ),
            result_write_duration: m::histogram(
                &r,
                "hookd_control_result_write_duration_seconds",
                "Time to store one batch of attempt results.",
                LATENCY_BUCKETS,
            ),
            result_write_failures: m::counter(
                &r,
                "hookd_control_result_write_failures_total",
                "Batches of attempt results the database refused (dispatchers retry them).",
            ),
            webhooks_deactivated: m::counter_vec(
                &r,
                "hookd_control_webhooks_deactivated_total",
                "Webhooks deactivated, by who: the health rule (system) or a user.",
                &["by"],
            ),
            history_purged: m::counter(
                &r,
                "hookd_control_history_purged_deliveries_total",
                "Deliveries removed from the history by the retention purge.",
            ),
            dispatchers_connected: m::gauge(
                &r,
                "hookd_control_dispatchers_connected",
                "Dispatchers following this control plane's definitions watch.",
            ),
            peer_replicas: m::gauge(
                &r,
                "hookd_control_peer_replicas",
                "Other control planes heard from in the last 3 s; webhook writes wait for each \
                 to apply them.",
            ),
            webhooks: m::gauge_vec(
                &r,
                "hookd_control_webhooks",
                "Webhooks of the installation, by state.",
                &["state"],
            ),
            deliveries_pending: m::gauge(
                &r,
                "hookd_control_deliveries_pending",
                "Deliveries of the installation waiting for a retry.",
            ),
            registry: r,
        }
    }

    /// Reads the database gauges now and every `every` until aborted.
    pub async fn poll(&self, store: Store, changes: Changes, every: Duration) {
        let mut every = tokio::time::interval(every.max(Duration::from_millis(100)));
        loop {
            every.tick().await;
            self.dispatchers_connected.set(i64::try_from(changes.watchers()).unwrap_or(i64::MAX));
            self.peer_replicas.set(i64::try_from(changes.live_peers()).unwrap_or(i64::MAX));
            match store.totals().await {
                Ok(t) => {
                    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    self.webhooks.with_label_values(&["active"]).set(gauge(t.webhooks_active));
                    self.webhooks.with_label_values(&["inactive"]).set(gauge(t.webhooks_inactive));
                    self.deliveries_pending.set(gauge(t.deliveries_pending));
                }
                Err(error) => tracing::debug!(%error, "cannot read the totals for the metrics"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_encode_with_their_names() {
        let m = Metrics::new();
        m.attempts_recorded.with_label_values(&["new"]).inc_by(2);
        m.webhooks_deactivated.with_label_values(&["system"]).inc();
        let text = hookd_metrics::encode(&m.registry);
        assert!(text.contains("hookd_control_attempts_recorded_total{result=\"new\"} 2"), "{text}");
        assert!(text.contains("hookd_control_webhooks_deactivated_total{by=\"system\"} 1"));
    }
}
