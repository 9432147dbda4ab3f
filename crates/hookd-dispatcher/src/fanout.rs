//! The fan-out stage: each event from `HOOKD_EVENTS` becomes one delivery job per matching
//! webhook on `HOOKD_DELIVERIES`. The event is acknowledged only after every job is stored;
//! a fan-out repeated after a crash creates no second job, because each job's
//! `Nats-Msg-Id` is `<event id>.<webhook id>`.
//!
//! An event whose type has a schema in the catalog and whose data does not satisfy it is
//! terminated here: never delivered, never retried, and counted for the control plane. So is
//! an event larger than `max_event_bytes` (a producer publishing to NATS directly skips
//! `PublishEvent`'s size check); it is not even parsed.
//!
//! Each event's `fan_out` span continues the producer's trace (the message's `traceparent`
//! header), and every job it writes carries the span's own `traceparent`, so the attempts are
//! its children.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::future::join_all;
use hookd_core::Event;
use hookd_nats::{DeliveryJob, subject};
use tracing::Instrument;

use crate::{definitions::Definitions, metrics::EventOutcome, reporter::Tallies};

/// How soon a fan-out that could not store all its jobs is tried again.
const FANOUT_RETRY: Duration = Duration::from_secs(1);

/// Fans one event out; what happened to it, and to how many webhooks it went.
pub async fn fan_out(
    js: &jetstream::Context,
    definitions: &Definitions,
    tallies: &Tallies,
    max_event_bytes: usize,
    msg: jetstream::Message,
) -> (EventOutcome, usize) {
    let span = tracing::info_span!(
        "fan_out",
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty
    );
    hookd_nats::trace::set_parent_from_headers(&span, msg.headers.as_ref());
    fan_out_one(js, definitions, tallies, max_event_bytes, msg).instrument(span).await
}

async fn fan_out_one(
    js: &jetstream::Context,
    definitions: &Definitions,
    tallies: &Tallies,
    max_event_bytes: usize,
    msg: jetstream::Message,
) -> (EventOutcome, usize) {
    let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
    if let Err(error) = check_size(tallies, &msg.subject, msg.payload.len(), max_event_bytes) {
        tracing::warn!(%error, subject = %msg.subject, sequence, "dropping an oversized event");
        settle_event(&msg, AckKind::Term).await;
        return (EventOutcome::Rejected, 0);
    }
    let event = match Event::from_json(&msg.payload, Utc::now()) {
        Ok(event) => event,
        Err(error) => {
            // It can never become valid: terminate it so it neither loops nor blocks others.
            tracing::warn!(%error, subject = %msg.subject, sequence, "dropping malformed event");
            settle_event(&msg, AckKind::Term).await;
            return (EventOutcome::Rejected, 0);
        }
    };
    // The tenant is the subject's: NATS permissions decide who may publish under it.
    let Some(tenant) = subject::tenant_of_event(&msg.subject) else {
        tracing::warn!(subject = %msg.subject, sequence, "dropping an event without a tenant in its subject");
        settle_event(&msg, AckKind::Term).await;
        return (EventOutcome::Rejected, 0);
    };
    let span = tracing::Span::current();
    span.record("event_id", event.id.as_str());
    span.record("event_type", event.event_type.as_str());
    if let Err(error) = check_schema(definitions, tallies, tenant, &event) {
        // It can never become valid either.
        tracing::warn!(%error, sequence, "dropping an event whose data does not match its type's schema");
        settle_event(&msg, AckKind::Term).await;
        return (EventOutcome::Rejected, 0);
    }
    let webhooks = definitions.matching(tenant, &event.event_type);
    let inactive = definitions.matching_inactive(tenant, &event.event_type);
    if webhooks.is_empty() && inactive.is_empty() {
        tracing::debug!("no webhook subscribes to this event");
        settle_event(&msg, AckKind::Ack).await;
        return (EventOutcome::Unmatched, 0);
    }
    let traceparent = hookd_nats::trace::traceparent(&span);
    let job_for = |w: &std::sync::Arc<hookd_core::Webhook>| DeliveryJob {
        event_sequence: Some(sequence),
        traceparent: traceparent.clone(),
        ..DeliveryJob::new(tenant, &w.id, &event, &msg.payload)
    };
    let jobs: Vec<DeliveryJob> = webhooks.iter().map(job_for).collect();
    // A deactivated webhook's events are kept in its buffer, in order, for a reactivation
    // with replay; the id makes a repeated fan-out keep them once.
    let kept: Vec<DeliveryJob> = inactive.iter().map(job_for).collect();
    let publishes = jobs.iter().map(|job| futures::future::Either::Left(job.publish(js)));
    let parks = kept.iter().map(|job| {
        futures::future::Either::Right(async move { job.park(js, &job.message_id()).await })
    });
    let results = join_all(publishes.chain(parks)).await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
            tracing::warn!(%error, failed, "cannot store every delivery job; retrying the fan-out");
        }
        settle_event(&msg, AckKind::Nak(Some(FANOUT_RETRY))).await;
        return (EventOutcome::Retried, 0);
    }
    for (job, result) in kept.iter().zip(&results[jobs.len()..]) {
        if matches!(result, Ok(published) if !published.duplicate) {
            tallies.kept(&job.tenant, job.webhook_id.as_str());
        }
    }
    tracing::debug!(deliveries = jobs.len(), buffered = kept.len(), "event fanned out");
    settle_event(&msg, AckKind::Ack).await;
    (EventOutcome::FannedOut, jobs.len() + kept.len())
}

/// Checks the event's data against its type's schema, if the type has one, and counts a
/// refusal. `Err` is the schema error.
fn check_schema(
    definitions: &Definitions,
    tallies: &Tallies,
    tenant: &str,
    event: &Event,
) -> Result<(), String> {
    let Some(schema) = definitions.schema(tenant, &event.event_type) else { return Ok(()) };
    schema.check(&event.data).inspect_err(|error| {
        tallies.count(tenant, event.event_type.as_str(), error);
    })
}

/// Refuses an event of `size` bytes above `max`, counting it for the event type its subject
/// names. `Err` says why.
fn check_size(tallies: &Tallies, subject: &str, size: usize, max: usize) -> Result<(), String> {
    if size <= max {
        return Ok(());
    }
    let error = format!("the event is {size} bytes, more than max_event_bytes ({max})");
    if let Some((tenant, event_type)) = subject::parts_of_event(subject) {
        tallies.count(tenant, event_type, &error);
    }
    Err(error)
}

/// Settles an event without waiting for the server's confirmation: if the ack is lost the
/// event is fanned out again, and the deliveries stream drops the jobs it already has, so
/// confirming would cost a round trip per event for nothing.
async fn settle_event(msg: &jetstream::Message, kind: AckKind) {
    if let Err(error) = msg.ack_with(kind).await {
        tracing::warn!(%error, "cannot acknowledge event");
    }
}

#[cfg(test)]
mod tests {
    use hookd_proto::v1::{self, watch_webhooks_response::Change};

    use hookd_core::DEFAULT_TENANT;

    use super::*;
    use crate::definitions::tests::catalog_entry;

    fn event(data: &str) -> Event {
        let json = format!(r#"{{"id":"e1","type":"contact-created","data":{data}}}"#);
        Event::from_json(json.as_bytes(), Utc::now()).expect("valid event")
    }

    #[test]
    fn events_failing_their_schema_are_refused_and_counted() {
        let defs = Definitions::default();
        let schema = serde_json::json!({"type": "object", "required": ["email"]});
        defs.apply(
            Change::Snapshot(v1::SnapshotPage {
                webhooks: vec![],
                complete: true,
                event_types: vec![catalog_entry("contact-created", Some(schema))],
            }),
            &mut None,
        );
        let tallies = Tallies::default();
        assert!(check_schema(&defs, &tallies, DEFAULT_TENANT, &event(r#"{"email":"a"}"#)).is_ok());
        assert!(tallies.take_rejected().is_empty());
        for _ in 0..3 {
            let error =
                check_schema(&defs, &tallies, DEFAULT_TENANT, &event("{}")).expect_err("refused");
            assert!(error.contains("email"), "{error}");
        }
        // Another tenant has no schema for the type.
        assert!(check_schema(&defs, &tallies, "other", &event("{}")).is_ok());
        let counted = tallies.take_rejected();
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].tenant, DEFAULT_TENANT);
        assert_eq!(counted[0].event_type, "contact-created");
        assert_eq!(counted[0].count, 3);
        assert!(counted[0].error.contains("email"));
        assert!(tallies.take_rejected().is_empty(), "taking resets the counts");
    }

    #[test]
    fn oversized_events_are_refused_and_counted() {
        let tallies = Tallies::default();
        let subject = "hookd.events.default.contact-created";
        assert!(check_size(&tallies, subject, 100, 100).is_ok());
        assert!(tallies.take_rejected().is_empty());
        let error = check_size(&tallies, subject, 101, 100).expect_err("too big");
        assert_eq!(error, "the event is 101 bytes, more than max_event_bytes (100)");
        let counted = tallies.take_rejected();
        assert_eq!(counted.len(), 1);
        assert_eq!((counted[0].tenant.as_str(), counted[0].count), ("default", 1));
        assert_eq!(counted[0].event_type, "contact-created");
    }
}
