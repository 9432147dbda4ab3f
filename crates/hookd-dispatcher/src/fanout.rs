//! The fan-out stage: each event from `HOOKD_EVENTS` becomes one delivery per matching
//! webhook. Where the endpoint is healthy and has a free place, the fan-out makes the first
//! attempt itself (the happy path: one JetStream stage); otherwise it writes a delivery job
//! on `HOOKD_DELIVERIES` for the delivery stage. The event is acknowledged only after every
//! job is stored and every first attempt made here is recorded (with its retry scheduled, if
//! it needs one). A fan-out repeated after a crash creates no second job, because each job's
//! `Nats-Msg-Id` is `<event id>.<webhook id>`, and makes no first attempt itself: a
//! redelivered event takes the job path only, after asking the control plane where the
//! deliveries the first run may have attempted stand (see `resume`): one that is over gets no
//! job, one waiting for a retry gets that retry scheduled again, under the next number.
//!
//! An event the fan-out refuses is terminated here: never delivered, never retried, and
//! counted for the control plane under the tenant and type its subject names. Refused: an
//! event larger than `max_event_bytes` (a producer publishing to NATS directly skips
//! `PublishEvent`'s checks; it is not even parsed), one that is not a valid event (see
//! `Event::from_published`: duplicate top-level keys, nesting), one whose `type` is not its
//! subject's or whose `id` is not its `Nats-Msg-Id`, and one whose data does not satisfy its
//! type's schema.
//!
//! A webhook's payload filter (B7) is applied here: an event it rejects creates no delivery
//! and is counted for the webhook. For an ordered webhook (B6) each job is placed in its key's
//! line before it is stored (see `ordering`), so no later event of the key can overtake it;
//! ordered and rate-limited webhooks always take the job path, where their controls apply.
//!
//! Each event's `fan_out` span continues the producer's trace (the message's `traceparent`
//! header), and every job it writes carries the span's own `traceparent`, so the attempts are
//! its children.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use futures::{FutureExt, future::join_all};
use hookd_core::{DeliveryId, Event};
use hookd_nats::{DeliveryJob, subject};
use tracing::Instrument;

use crate::{
    Slot,
    definitions::Definitions,
    delivery::{Deliverer, attempt_span, may_go_inline, with_progress},
    metrics::EventOutcome,
    ordering::Ordering,
    reporter::Tallies,
    resume::{self, Resume},
};

/// How soon a fan-out that could not store all its jobs is tried again.
const FANOUT_RETRY: Duration = Duration::from_secs(1);

/// What fanning out needs, per event.
pub struct FanOut {
    pub js: jetstream::Context,
    pub definitions: Definitions,
    pub tallies: Tallies,
    /// The ordering lines of ordered webhooks' keys.
    pub ordering: Arc<Ordering>,
    pub max_event_bytes: usize,
    /// Makes the first attempts the fan-out takes on itself.
    pub deliverer: Arc<Deliverer>,
}

impl FanOut {
    /// Fans one event out; what happened to it, and to how many webhooks it went. `slot` is
    /// given back once the first attempts made here are made, before their results are
    /// stored.
    pub async fn fan_out(self, msg: jetstream::Message, slot: Slot) -> (EventOutcome, usize) {
        let span = tracing::info_span!(
            "fan_out",
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty
        );
        hookd_nats::trace::set_parent_from_headers(&span, msg.headers.as_ref());
        self.fan_out_one(msg, slot).instrument(span).await
    }

    async fn fan_out_one(&self, msg: jetstream::Message, mut slot: Slot) -> (EventOutcome, usize) {
        let FanOut { js, definitions, tallies, ordering, max_event_bytes, deliverer } = self;
        let max_event_bytes = *max_event_bytes;
        let info = msg.info().ok();
        let sequence = info.as_ref().map(|i| i.stream_sequence).unwrap_or_default();
        // An event without a timestamp takes the time JetStream stored it: the same on every
        // redelivery, so its delivery ids (derived from it) and payloads are too.
        let stored_at = info
            .and_then(|i| i64::try_from(i.published.unix_timestamp_nanos()).ok())
            .map_or_else(Utc::now, DateTime::from_timestamp_nanos);
        // The tenant and the type are the subject's: NATS permissions decide who may publish
        // under it, so the body must agree with it, not the other way round.
        let Some((tenant, subject_type)) = subject::parts_of_event(&msg.subject) else {
            tracing::warn!(subject = %msg.subject, sequence, "dropping an event without a tenant and type in its subject");
            settle_event(&msg, AckKind::Term).await;
            return (EventOutcome::Rejected, 0);
        };
        let msg_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str());
        // An event refused here can never become valid: it is terminated, so it neither loops
        // nor blocks others, and counted under its subject's type.
        let checked = check_size(msg.payload.len(), max_event_bytes).and_then(|()| {
            let event =
                Event::from_published(&msg.payload, stored_at).map_err(|e| e.to_string())?;
            check_identity(&event, subject_type, msg_id).map(|()| event)
        });
        let event = match checked {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, subject = %msg.subject, sequence, "dropping an event the fan-out refuses");
                tallies.count(tenant, subject_type, &error);
                settle_event(&msg, AckKind::Term).await;
                return (EventOutcome::Rejected, 0);
            }
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
        let mut webhooks = definitions.matching(tenant, &event.event_type);
        let mut inactive = definitions.matching_inactive(tenant, &event.event_type);
        // An event a webhook's filter rejects is neither delivered nor kept for it.
        for list in [&mut webhooks, &mut inactive] {
            list.retain(|w| {
                let passes = w.spec.passes_filter(&event);
                if !passes {
                    tallies.filtered(tenant, w.id.as_str());
                }
                passes
            });
        }
        if webhooks.is_empty() && inactive.is_empty() {
            tracing::debug!("no webhook subscribes to this event");
            settle_event(&msg, AckKind::Ack).await;
            return (EventOutcome::Unmatched, 0);
        }
        let traceparent = hookd_nats::trace::traceparent(&span);
        let job_for = |w: &Arc<hookd_core::Webhook>| DeliveryJob {
            event_sequence: Some(sequence),
            traceparent: traceparent.clone(),
            ..DeliveryJob::new(tenant, &w.id, &event, &msg.payload)
        };
        // A redelivered event's first fan-out may have made attempts already: only jobs now,
        // which the deliveries stream stores once, continuing where those attempts left off.
        let first_delivery = msg.info().is_ok_and(|i| i.delivered == 1);
        let mut inline = Vec::new();
        let mut queued = Vec::new();
        let mut resumed = Vec::new();
        let mut over = 0;
        if first_delivery {
            // One wait for room in the inline bound per event, however many webhooks it has,
            // and none once the event holds a share: its own attempts start only after this
            // loop, so a share it waited for could only come from other events', which may be
            // waiting the same way.
            let deadline = tokio::time::Instant::now() + deliverer.inline_wait;
            for webhook in &webhooks {
                let wait_until = inline.is_empty().then_some(deadline);
                match deliverer.inline_place(webhook, wait_until).await {
                    Some(place) => inline.push((webhook, job_for(webhook), place)),
                    None => queued.push(webhook.clone()),
                }
            }
        } else {
            let (maybe_made, jobs_only): (Vec<_>, Vec<_>) =
                webhooks.iter().cloned().partition(|w| may_go_inline(w));
            queued = jobs_only;
            let ids: Vec<_> = maybe_made
                .iter()
                .map(|w| DeliveryId::for_event(&event.id, event.timestamp, &w.id))
                .collect();
            let progress = if ids.is_empty() {
                Default::default()
            } else {
                match resume::progress(&deliverer.control, tenant, &ids).await {
                    Ok(progress) => progress,
                    Err(error) => {
                        tracing::warn!(error = %error.message(), "cannot learn what the event's first fan-out did; retrying the fan-out");
                        settle_event(&msg, AckKind::Nak(Some(FANOUT_RETRY))).await;
                        return (EventOutcome::Retried, 0);
                    }
                }
            };
            for (webhook, id) in maybe_made.into_iter().zip(&ids) {
                match progress.get(id).cloned().unwrap_or(Resume::Start) {
                    Resume::Start => queued.push(webhook),
                    Resume::Over => over += 1,
                    Resume::RetryAt { attempt, at } => {
                        resumed.push((DeliveryJob { attempt, ..job_for(&webhook) }, at));
                    }
                }
            }
        }
        let mut jobs: Vec<DeliveryJob> = queued.iter().map(job_for).collect();
        if let Err(error) =
            place_in_lines(ordering, tenant, &queued, &event, sequence, &mut jobs).await
        {
            tracing::warn!(%error, "cannot place deliveries in their ordering lines; retrying the fan-out");
            settle_event(&msg, AckKind::Nak(Some(FANOUT_RETRY))).await;
            return (EventOutcome::Retried, 0);
        }
        // A deactivated webhook's events are kept in its buffer, in order, for a reactivation
        // with replay; the id makes a repeated fan-out keep them once.
        let kept: Vec<DeliveryJob> = inactive.iter().map(job_for).collect();
        let publishes = jobs.iter().map(|job| job.publish(js).boxed());
        let parks =
            kept.iter().map(|job| async move { job.park(js, &job.message_id()).await }.boxed());
        let nak_max = deliverer.nak_max_delay;
        let schedules =
            resumed.iter().map(|(job, at)| resume::store_retry(js, job, *at, nak_max).boxed());
        let stored = join_all(publishes.chain(parks).chain(schedules));
        let made_here = inline.len();
        let attempts = join_all(inline.into_iter().map(|(webhook, job, place)| {
            let span = attempt_span(&job, job.attempt);
            deliverer.attempt_inline(job, webhook, &event, place).instrument(span)
        }));
        let (results, attempts) = if made_here == 0 {
            (stored.await, Vec::new())
        } else {
            // The attempts take as long as the endpoints do, and their results a batch's
            // write: keep the event ours meanwhile.
            with_progress(&msg, deliverer.ack_wait, async {
                let (results, made) = futures::future::join(stored, attempts).await;
                // Only waiting is left: another event can start meanwhile, and the results of
                // many events share the reporter's batch instead of each waiting for its own.
                slot.release();
                let settled = made.into_iter().map(|made| async move { made?.settled().await });
                (results, join_all(settled).await)
            })
            .await
        };
        let failed = results.iter().filter(|r| r.is_err()).count();
        let unrecorded = attempts.iter().filter(|r| r.is_err()).count();
        if failed > 0 || unrecorded > 0 {
            if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
                tracing::warn!(%error, failed, "cannot store every delivery job; retrying the fan-out");
            }
            if let Some(Err(error)) = attempts.iter().find(|r| r.is_err()) {
                tracing::warn!(%error, unrecorded, "a first attempt is not durable; retrying the fan-out");
            }
            settle_event(&msg, AckKind::Nak(Some(FANOUT_RETRY))).await;
            return (EventOutcome::Retried, 0);
        }
        for (job, result) in kept.iter().zip(&results[jobs.len()..]) {
            if matches!(result, Ok(published) if !published.duplicate) {
                tallies.kept(&job.tenant, job.webhook_id.as_str());
            }
        }
        tracing::debug!(
            deliveries = jobs.len() + made_here,
            attempted = made_here,
            buffered = kept.len(),
            resumed = resumed.len(),
            over,
            "event fanned out"
        );
        // Unconfirmed even after attempts made here: a lost acknowledgement fans the event out
        // again, and that repeat asks the control plane what became of them (`resume`), so it
        // repeats no HTTP call; confirming would cost a round trip per event for nothing.
        settle_event(&msg, AckKind::Ack).await;
        (EventOutcome::FannedOut, webhooks.len() + kept.len())
    }
}

/// Places the jobs of ordered webhooks in their keys' lines (before they are stored), setting
/// each one's `order_key`. A job whose event has no key goes unordered.
async fn place_in_lines(
    ordering: &Ordering,
    tenant: &str,
    webhooks: &[std::sync::Arc<hookd_core::Webhook>],
    event: &Event,
    sequence: u64,
    jobs: &mut [DeliveryJob],
) -> Result<(), crate::ordering::OrderingError> {
    let placed = webhooks.iter().zip(jobs.iter_mut()).filter_map(|(w, job)| {
        let key = w.spec.ordering.as_ref()?.key_of(event)?;
        Some(async move {
            job.order_key = ordering.place(tenant, w, &key, sequence).await?;
            Ok::<_, crate::ordering::OrderingError>(())
        })
    });
    futures::future::try_join_all(placed).await.map(drop)
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

/// Refuses an event of `size` bytes above `max`; `Err` says why.
fn check_size(size: usize, max: usize) -> Result<(), String> {
    if size <= max {
        return Ok(());
    }
    Err(format!("the event is {size} bytes, more than max_event_bytes ({max})"))
}

/// Refuses an event whose body disagrees with how it travelled: its `type` must be the one
/// its subject names (NATS permissions are granted per subject), and its `id` the
/// `Nats-Msg-Id` JetStream deduplicated it by, when the producer set one.
fn check_identity(event: &Event, subject_type: &str, msg_id: Option<&str>) -> Result<(), String> {
    let short = |s: &str| hookd_core::text::shorten(s, 64).into_owned();
    if event.event_type.as_str() != subject_type {
        return Err(format!(
            "the event's type {:?} differs from its subject's {:?}; publish it on hookd.events.<tenant>.<its type>",
            short(event.event_type.as_str()),
            short(subject_type)
        ));
    }
    if let Some(msg_id) = msg_id
        && msg_id != event.id.as_str()
    {
        return Err(format!(
            "the event's id {:?} differs from its Nats-Msg-Id header {:?}, by which JetStream deduplicates it",
            short(event.id.as_str()),
            short(msg_id)
        ));
    }
    Ok(())
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
    fn oversized_events_are_refused() {
        assert!(check_size(100, 100).is_ok());
        let error = check_size(101, 100).expect_err("too big");
        assert_eq!(error, "the event is 101 bytes, more than max_event_bytes (100)");
    }

    #[test]
    fn the_body_must_agree_with_the_subject_and_the_message_id() {
        let event = event("{}");
        assert!(check_identity(&event, "contact-created", Some("e1")).is_ok());
        assert!(check_identity(&event, "contact-created", None).is_ok(), "no header: no check");
        let error = check_identity(&event, "order-placed", Some("e1")).expect_err("type");
        assert!(
            error.starts_with(
                r#"the event's type "contact-created" differs from its subject's "order-placed""#
            ),
            "{error}"
        );
        let error = check_identity(&event, "contact-created", Some("e0")).expect_err("id");
        assert!(
            error.starts_with(r#"the event's id "e1" differs from its Nats-Msg-Id header "e0""#),
            "{error}"
        );
        let long = "x".repeat(10_000);
        let error = check_identity(&event, "contact-created", Some(&long)).expect_err("id");
        assert!(error.len() < 300, "values are shortened: {} bytes", error.len());
    }
}
