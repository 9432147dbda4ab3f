//! The fan-out stage: each event from `HOOKD_EVENTS` becomes one delivery job per matching
//! webhook on `HOOKD_DELIVERIES`. The event is acknowledged only after every job is stored;
//! a fan-out repeated after a crash creates no second job, because each job's
//! `Nats-Msg-Id` is `<event id>.<webhook id>`.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::future::join_all;
use hookd_core::{DEFAULT_TENANT, Event};
use hookd_nats::{DeliveryJob, subject};
use tracing::Instrument;

use crate::definitions::Definitions;

/// How soon a fan-out that could not store all its jobs is tried again.
const FANOUT_RETRY: Duration = Duration::from_secs(1);

pub async fn fan_out(js: &jetstream::Context, definitions: &Definitions, msg: jetstream::Message) {
    let span = tracing::info_span!(
        "fan_out",
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty
    );
    fan_out_one(js, definitions, msg).instrument(span).await;
}

async fn fan_out_one(js: &jetstream::Context, definitions: &Definitions, msg: jetstream::Message) {
    let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
    let event = match Event::from_json(&msg.payload, Utc::now()) {
        Ok(event) => event,
        Err(error) => {
            // It can never become valid: terminate it so it neither loops nor blocks others.
            tracing::warn!(%error, subject = %msg.subject, sequence, "dropping malformed event");
            settle_event(&msg, AckKind::Term).await;
            return;
        }
    };
    let tenant = subject::tenant_of_event(&msg.subject).unwrap_or(DEFAULT_TENANT);
    let span = tracing::Span::current();
    span.record("event_id", event.id.as_str());
    span.record("event_type", event.event_type.as_str());
    let webhooks = definitions.matching(&event.event_type);
    if webhooks.is_empty() {
        tracing::debug!("no webhook subscribes to this event");
        settle_event(&msg, AckKind::Ack).await;
        return;
    }
    let jobs: Vec<DeliveryJob> =
        webhooks.iter().map(|w| DeliveryJob::new(tenant, &w.id, &event, &msg.payload)).collect();
    let results = join_all(jobs.iter().map(|job| job.publish(js))).await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
            tracing::warn!(%error, failed, "cannot store every delivery job; retrying the fan-out");
        }
        settle_event(&msg, AckKind::Nak(Some(FANOUT_RETRY))).await;
        return;
    }
    tracing::debug!(deliveries = jobs.len(), "event fanned out");
    settle_event(&msg, AckKind::Ack).await;
}

/// Settles an event without waiting for the server's confirmation: if the ack is lost the
/// event is fanned out again, and the deliveries stream drops the jobs it already has, so
/// confirming would cost a round trip per event for nothing.
async fn settle_event(msg: &jetstream::Message, kind: AckKind) {
    if let Err(error) = msg.ack_with(kind).await {
        tracing::warn!(%error, "cannot acknowledge event");
    }
}
