//! The delivery stage: one attempt per delivery job message, its result reported to the
//! control plane, then the message is acknowledged (delivered or failed for good) or
//! negatively acknowledged with the retry delay, so JetStream brings it back on schedule.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use chrono::Utc;
use hookd_core::{AttemptOutcome, DeliveryStatus, Event, RetrySchedule, payload};
use hookd_nats::DeliveryJob;
use hookd_proto::{
    convert::timestamp,
    v1::{self, AttemptReport},
};
use tracing::Instrument;

use crate::{
    definitions::Definitions,
    fanout::ack,
    http::{AttemptRequest, HttpClient},
    reporter::Reporter,
};

/// A job for a webhook this dispatcher does not know yet may come from a dispatcher whose
/// definitions are newer; it is retried this often before it is taken as deleted.
const UNKNOWN_WEBHOOK_RETRIES: i64 = 5;
const UNKNOWN_WEBHOOK_DELAY: Duration = Duration::from_secs(1);

/// What the delivery stage needs, shared by every in-flight delivery.
pub struct Deliverer {
    pub definitions: Definitions,
    pub http: HttpClient,
    pub reporter: Reporter,
    pub schedule: RetrySchedule,
    pub attempt_timeout: Duration,
    pub ack_wait: Duration,
}

/// Up to ±5 % of `delay`, fixed per (delivery, attempt) so that retries of many deliveries
/// spread out, and a repeated computation gives the same answer.
pub fn jitter(delay: Duration, delivery_id: &str, attempt: u32) -> Duration {
    let mut h = DefaultHasher::new();
    (delivery_id, attempt).hash(&mut h);
    let unit = (h.finish() % 10_001) as f64 / 10_000.0; // 0.0 ..= 1.0
    delay.mul_f64(0.95 + 0.1 * unit)
}

impl Deliverer {
    pub async fn deliver(self: Arc<Self>, msg: jetstream::Message) {
        let Ok(info) = msg.info() else {
            tracing::warn!("message without JetStream metadata");
            return;
        };
        let attempt = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
        let delivered = info.delivered;
        let job = match DeliveryJob::from_bytes(&msg.payload) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%error, "dropping malformed delivery job");
                ack(&msg, AckKind::Term).await;
                return;
            }
        };
        let span = tracing::info_span!(
            "delivery_attempt",
            delivery_id = %job.delivery_id,
            webhook_id = %job.webhook_id,
            event_id = %job.event_id,
            attempt,
        );
        self.attempt(msg, job, attempt, delivered).instrument(span).await;
    }

    async fn attempt(
        &self,
        msg: jetstream::Message,
        job: DeliveryJob,
        attempt: u32,
        delivered: i64,
    ) {
        let Some(webhook) = self.definitions.get(&job.webhook_id) else {
            if delivered <= UNKNOWN_WEBHOOK_RETRIES {
                ack(&msg, AckKind::Nak(Some(UNKNOWN_WEBHOOK_DELAY))).await;
            } else {
                tracing::info!("webhook no longer exists; dropping its delivery");
                ack(&msg, AckKind::Term).await;
            }
            return;
        };
        if !webhook.spec.active {
            tracing::info!("webhook is inactive; dropping its delivery");
            ack(&msg, AckKind::Term).await;
            return;
        }
        let event = match Event::from_json(job.event.get().as_bytes(), Utc::now()) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(%error, "dropping delivery job with a malformed event");
                ack(&msg, AckKind::Term).await;
                return;
            }
        };
        let body = Bytes::from(payload::envelope(&webhook.id, &event));
        let started_at = Utc::now();
        let result = self
            .http
            .attempt(AttemptRequest {
                url: &webhook.spec.url,
                body: body.clone(),
                headers: vec![
                    ("webhook-id", job.delivery_id.to_string()),
                    ("webhook-timestamp", started_at.timestamp().to_string()),
                ],
                timeout: self.attempt_timeout,
            })
            .await;

        let success = result.outcome.is_success();
        let retry_in = if success {
            None
        } else {
            self.schedule.delay_after(attempt).map(|d| jitter(d, job.delivery_id.as_str(), attempt))
        };
        let status = match (success, retry_in) {
            (true, _) => DeliveryStatus::Delivered,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        let latency_ms = u64::try_from(result.latency.as_millis()).unwrap_or(u64::MAX);
        match &result.outcome {
            AttemptOutcome::Answered { status: code, .. } => {
                tracing::info!(
                    http_status = code,
                    latency_ms,
                    outcome = status.as_str(),
                    "attempt made"
                );
            }
            other => {
                tracing::info!(error = %other.error(), latency_ms, outcome = status.as_str(), "attempt failed");
            }
        }
        let next_attempt_at = retry_in
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| timestamp(Utc::now() + d));
        let body_excerpt = match &result.outcome {
            AttemptOutcome::Answered { body_excerpt, .. } => body_excerpt.clone(),
            _ => String::new(),
        };
        let report = AttemptReport {
            delivery_id: job.delivery_id.to_string(),
            webhook_id: job.webhook_id.to_string(),
            event_id: job.event_id.to_string(),
            event_type: event.event_type.to_string(),
            payload: String::from_utf8_lossy(&body).into_owned(),
            attempt: Some(v1::Attempt {
                number: attempt,
                started_at: Some(timestamp(started_at)),
                http_status: result.outcome.http_status().map_or(0, u32::from),
                latency_ms,
                error: result.outcome.error(),
                response_body: body_excerpt,
                success,
            }),
            status: v1::DeliveryStatus::from(status).into(),
            next_attempt_at,
        };

        // Keep the message ours while the result is being stored, however long the control
        // plane takes: a redelivery now would repeat the HTTP call.
        let mut stored = self.reporter.submit(report).await;
        let mut progress = tokio::time::interval(self.ack_wait / 3);
        progress.tick().await;
        loop {
            tokio::select! {
                result = &mut stored => {
                    if result.is_err() {
                        tracing::warn!("dispatcher stopping before the result was stored");
                        return;
                    }
                    break;
                }
                _ = progress.tick() => ack(&msg, AckKind::Progress).await,
            }
        }
        let kind = match retry_in {
            Some(delay) => AckKind::Nak(Some(delay)),
            None if success => AckKind::Ack,
            None => AckKind::Term,
        };
        ack(&msg, kind).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_five_percent_and_is_stable() {
        let d = Duration::from_secs(60);
        for attempt in 1..200 {
            let j = jitter(d, "dlv_x", attempt);
            assert!(j >= d.mul_f64(0.95) && j <= d.mul_f64(1.05), "{j:?}");
            assert_eq!(j, jitter(d, "dlv_x", attempt));
        }
    }
}
