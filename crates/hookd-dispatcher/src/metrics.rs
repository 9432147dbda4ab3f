//! The dispatcher's Prometheus metrics, served as `/metrics` beside the health endpoints.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use hookd_metrics::{
    Histogram, IntCounter, IntGauge, IntGaugeVec, LATENCY_BUCKETS, Registry, SIZE_BUCKETS,
};

/// What happened to one event taken from the events stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Jobs stored for every matching webhook (active ones, and buffers of inactive ones).
    FannedOut,
    /// No webhook subscribes to it.
    Unmatched,
    /// Refused: too large, malformed, without a tenant, or failing its type's schema.
    Rejected,
    /// Not every job could be stored; the event comes back for another try.
    Retried,
}

impl EventOutcome {
    const ALL: [Self; 4] = [Self::FannedOut, Self::Unmatched, Self::Rejected, Self::Retried];

    fn label(self) -> &'static str {
        match self {
            Self::FannedOut => "fanned_out",
            Self::Unmatched => "unmatched",
            Self::Rejected => "rejected",
            Self::Retried => "retried",
        }
    }
}

/// What the delivery stage did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; a retry is scheduled.
    Retrying,
    /// Failed for good: the retries are exhausted.
    Failed,
    /// Kept in the buffer of a deactivated webhook.
    Parked,
    /// Its webhook is gone, or the job is malformed.
    Dropped,
}

impl DeliveryOutcome {
    const ALL: [Self; 5] =
        [Self::Delivered, Self::Retrying, Self::Failed, Self::Parked, Self::Dropped];

    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Parked => "parked",
            Self::Dropped => "dropped",
        }
    }
}

/// The labelled series the hot path touches are resolved once, here, so counting an attempt
/// is an atomic add rather than a hash lookup under a lock.
pub struct Metrics {
    pub registry: Registry,
    /// By [`EventOutcome`] in `ALL` order.
    events: Vec<IntCounter>,
    fanout_webhooks: Histogram,
    /// By [`DeliveryOutcome`] in `ALL` order.
    deliveries: Vec<IntCounter>,
    /// Success, failure.
    attempt_duration: [Histogram; 2],
    pub in_flight: IntGauge,
    /// Kept by the endpoints' places and limits.
    pub endpoints: crate::endpoints::EndpointMetrics,
    pub report_batch: Histogram,
    consumer_pending: IntGaugeVec,
    consumer_ack_pending: IntGaugeVec,
    stream_messages: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        use hookd_metrics as m;
        let r = Registry::new();
        let events = m::counter_vec(
            &r,
            "hookd_dispatcher_events_consumed_total",
            "Events taken from the events stream, by outcome.",
            &["outcome"],
        );
        let deliveries = m::counter_vec(
            &r,
            "hookd_dispatcher_deliveries_total",
            "Delivery jobs handled, by outcome (each attempt's, or parked or dropped).",
            &["outcome"],
        );
        let attempts = m::histogram_vec(
            &r,
            "hookd_dispatcher_attempt_duration_seconds",
            "HTTP attempts, from the request to the complete answer (or the failure).",
            &["result"],
            LATENCY_BUCKETS,
        );
        let cuts = m::counter_vec(
            &r,
            "hookd_dispatcher_endpoint_limit_cuts_total",
            "Adaptive concurrency cuts: an endpoint's limit (reason overloaded: 429, 502, 503, \
             504; slower: answers over twice their usual time) or a webhook's share of its \
             endpoint (webhook_failing: its own timeouts, 429, 502-504 and slow 5xx).",
            &["reason"],
        );
        let endpoints = crate::endpoints::EndpointMetrics {
            overloaded: cuts.with_label_values(&["overloaded"]),
            slower: cuts.with_label_values(&["slower"]),
            webhook_failing: cuts.with_label_values(&["webhook_failing"]),
            waiting: m::gauge(
                &r,
                "hookd_dispatcher_endpoint_waiting_jobs",
                "Delivery jobs waiting for a place at their endpoint (in their webhook's line).",
            ),
        };
        Self {
            endpoints,
            events: EventOutcome::ALL
                .iter()
                .map(|o| events.with_label_values(&[o.label()]))
                .collect(),
            deliveries: DeliveryOutcome::ALL
                .iter()
                .map(|o| deliveries.with_label_values(&[o.label()]))
                .collect(),
            attempt_duration: [
                attempts.with_label_values(&["success"]),
                attempts.with_label_values(&["failure"]),
            ],
            fanout_webhooks: m::histogram(
                &r,
                "hookd_dispatcher_fanout_webhooks",
                "Webhooks (active and buffering) one event fanned out to.",
                SIZE_BUCKETS,
            ),
            in_flight: m::gauge(
                &r,
                "hookd_dispatcher_deliveries_in_flight",
                "Delivery jobs held by this dispatcher now.",
            ),
            report_batch: m::histogram(
                &r,
                "hookd_dispatcher_report_batch_size",
                "Attempt results sent to the control plane in one call.",
                SIZE_BUCKETS,
            ),
            consumer_pending: m::gauge_vec(
                &r,
                "hookd_dispatcher_consumer_pending_messages",
                "Messages of the consumer not delivered to any dispatcher yet (its lag).",
                &["consumer"],
            ),
            consumer_ack_pending: m::gauge_vec(
                &r,
                "hookd_dispatcher_consumer_ack_pending_messages",
                "Messages delivered to dispatchers and not settled: in flight, or NAK-delayed \
                 retries due within a minute.",
                &["consumer"],
            ),
            stream_messages: m::gauge_vec(
                &r,
                "hookd_dispatcher_stream_messages",
                "Messages stored in the stream; the deliveries stream includes retries \
                 scheduled further out.",
                &["stream"],
            ),
            registry: r,
        }
    }

    pub fn event(&self, outcome: EventOutcome, webhooks: usize) {
        self.events[outcome as usize].inc();
        if outcome == EventOutcome::FannedOut {
            #[allow(clippy::cast_precision_loss)]
            self.fanout_webhooks.observe(webhooks as f64);
        }
    }

    pub fn delivery(&self, outcome: DeliveryOutcome) {
        self.deliveries[outcome as usize].inc();
    }

    pub fn attempt(&self, success: bool, took: Duration) {
        self.attempt_duration[usize::from(!success)].observe(hookd_metrics::seconds(took));
    }

    /// Reads the consumers' and streams' state now and every `every` until aborted.
    pub async fn poll(
        &self,
        js: jetstream::Context,
        consumers: [(&'static str, PullConsumer); 2],
        streams: [&'static str; 3],
        every: Duration,
    ) {
        let mut every = tokio::time::interval(every.max(Duration::from_millis(100)));
        let [mut a, mut b] = consumers;
        loop {
            every.tick().await;
            for (name, consumer) in [(a.0, &mut a.1), (b.0, &mut b.1)] {
                match consumer.info().await {
                    Ok(info) => {
                        let pending = i64::try_from(info.num_pending).unwrap_or(i64::MAX);
                        let acks = i64::try_from(info.num_ack_pending).unwrap_or(i64::MAX);
                        self.consumer_pending.with_label_values(&[name]).set(pending);
                        self.consumer_ack_pending.with_label_values(&[name]).set(acks);
                    }
                    Err(error) => {
                        tracing::debug!(%error, consumer = name, "cannot read consumer state")
                    }
                }
            }
            for name in streams {
                let Ok(mut stream) = js.get_stream(name).await else { continue };
                if let Ok(info) = stream.info().await {
                    let messages = i64::try_from(info.state.messages).unwrap_or(i64::MAX);
                    self.stream_messages.with_label_values(&[name]).set(messages);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_index_their_series() {
        for (i, o) in EventOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        for (i, o) in DeliveryOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn every_metric_is_registered_once() {
        let m = Metrics::new();
        m.event(EventOutcome::FannedOut, 3);
        m.delivery(DeliveryOutcome::Delivered);
        m.attempt(true, Duration::from_millis(12));
        let text = hookd_metrics::encode(&m.registry);
        assert!(text.contains("hookd_dispatcher_events_consumed_total{outcome=\"fanned_out\"} 1"));
        assert!(text.contains("hookd_dispatcher_fanout_webhooks_sum 3"), "{text}");
        assert!(text.contains("hookd_dispatcher_deliveries_total{outcome=\"delivered\"} 1"));
        assert!(
            text.contains("hookd_dispatcher_attempt_duration_seconds_count{result=\"success\"} 1")
        );
    }
}
