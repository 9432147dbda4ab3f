//! hookd on NATS JetStream: subject names, idempotent stream and consumer setup, and the
//! messages the two dispatch stages exchange.
//!
//! Two streams carry the trip of an event:
//! - `HOOKD_EVENTS` (`hookd.events.<tenant>.<event-type>`): what producers publish, deduplicated
//!   by event id (`Nats-Msg-Id`);
//! - `HOOKD_DELIVERIES` (`hookd.deliveries.<tenant>.<webhook-id>`): one message per (event,
//!   webhook), written by the fan-out stage with `Nats-Msg-Id = <event id>.<webhook id>`, so a
//!   fan-out repeated after a crash adds no second delivery;
//! - `HOOKD_BUFFER` (`hookd.buffer.<tenant>.<webhook-id>`): delivery jobs kept, in order, for
//!   a deactivated webhook (matching events and parked retries), until it is reactivated or
//!   they are older than the buffer window (the stream's max age).
//!
//! Trace context rides along ([`trace`]): a `traceparent` header on an event, and a
//! `traceparent` field inside a delivery job, which survives NAK redeliveries, schedules, parks
//! and replays because it is part of the job itself.

pub mod schedules;
pub mod setup;
pub mod subject;
pub mod test_send;
pub mod trace;

use std::time::Duration;

use bytes::Bytes;
use hookd_core::{DeliveryId, Event, EventId, WebhookId};
use serde_json::value::RawValue;

pub use setup::{
    ConsumerSettings, StreamSettings, ensure_buckets, ensure_buffer_stream, ensure_consumer,
    ensure_stream, open_buckets, open_streams,
};

pub const EVENTS_STREAM: &str = "HOOKD_EVENTS";
pub const DELIVERIES_STREAM: &str = "HOOKD_DELIVERIES";
pub const BUFFER_STREAM: &str = "HOOKD_BUFFER";
/// Durable consumer of `HOOKD_EVENTS` shared by every dispatcher's fan-out stage.
pub const FANOUT_CONSUMER: &str = "hookd-fanout";
/// Durable consumer of `HOOKD_DELIVERIES` shared by every dispatcher's delivery stage.
pub const DELIVERY_CONSUMER: &str = "hookd-delivery";
/// Key-value bucket of the lines of ordered webhooks (B6): per (webhook, key), the deliveries
/// waiting in publish order and whose turn it is. File storage: losing it would lose order.
pub const ORDERING_BUCKET: &str = "hookd_ordering";
/// Key-value bucket of the rate limits' token buckets (B8), one per limited webhook. Memory
/// storage: a lost bucket only refills.
pub const RATE_LIMIT_BUCKET: &str = "hookd_rate_limits";

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot set up stream {stream}: {source}")]
    Stream {
        stream: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot set up consumer {consumer}: {source}")]
    Consumer {
        consumer: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot publish to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot remove the messages of {subject}: {source}")]
    Purge {
        subject: String,
        #[source]
        source: async_nats::Error,
    },
    /// The stream refused the message because it is full: its own limits
    /// (`stream_max_msgs`, `stream_max_bytes`) or the server's storage (disk, account
    /// limits). Nothing was stored; the same publish can succeed once the stream is drained.
    #[error("cannot publish to {subject}: the stream is full ({reason})")]
    StreamFull { subject: String, reason: String },
}

impl NatsError {
    /// True when the stream refused the message for lack of room: worth retrying later.
    pub fn is_stream_full(&self) -> bool {
        matches!(self, NatsError::StreamFull { .. })
    }
}

/// The servers of a `nats_url` setting (one address, or several separated by commas: the
/// servers of a cluster), for `async_nats::ConnectOptions::connect`. The client connects to
/// any of them, learns the rest of the cluster from the server, and reconnects to another
/// one when its server goes away. The error names the address that is not one.
pub fn server_addrs(setting: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let addrs: Vec<async_nats::ServerAddr> = hookd_core::servers::split(setting)
        .map(|url| {
            url.parse().map_err(|e| {
                format!("{:?} is not a NATS server address (nats://HOST:PORT): {e}", shorten(url))
            })
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err("names no server; give nats://HOST:PORT, or several separated by commas".into());
    }
    Ok(addrs)
}

fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    hookd_core::text::shorten(text, hookd_core::text::MAX_VALUE_BYTES)
}

/// The outcome of publishing to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// The stream already had a message with this id within its dedupe window.
    pub duplicate: bool,
}

/// Publishes an event as producers do, with `Nats-Msg-Id` = event id, and waits for the
/// stream to store it. The current span's trace context goes along as a `traceparent` header,
/// so the fan-out continues the publisher's trace.
pub async fn publish_event(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    event: &Event,
) -> Result<Published, NatsError> {
    let subject = subject::event(tenant, event.event_type.as_str());
    let mut headers = async_nats::HeaderMap::new();
    trace::inject(&tracing::Span::current(), &mut headers);
    publish_with_id(js, subject, headers, event.id.as_str(), Bytes::from(event.to_json())).await
}

pub(crate) async fn publish_with_id(
    js: &async_nats::jetstream::Context,
    subject: String,
    mut headers: async_nats::HeaderMap,
    msg_id: &str,
    body: Bytes,
) -> Result<Published, NatsError> {
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    publish_stored(js, subject, headers, body).await
}

/// Publishes and waits for the stream's store ack; a refusal for lack of room becomes
/// [`NatsError::StreamFull`].
async fn publish_stored(
    js: &async_nats::jetstream::Context,
    subject: String,
    headers: async_nats::HeaderMap,
    body: Bytes,
) -> Result<Published, NatsError> {
    let ack = async { js.publish_with_headers(subject.clone(), headers, body).await?.await };
    match ack.await {
        Ok(ack) => Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate }),
        Err(error) => Err(match full_reason(&error) {
            Some(reason) => {
                schedules::note_refused_for_room();
                NatsError::StreamFull { subject, reason }
            }
            None => NatsError::Publish { subject, source: error.into() },
        }),
    }
}

/// Why the server refused a message for lack of room, if that is why: the stream's own
/// limits with `discard: new` ("maximum messages exceeded", "maximum bytes exceeded"), or the
/// server's or account's storage ("insufficient resources").
fn full_reason(error: &async_nats::jetstream::context::PublishError) -> Option<String> {
    use async_nats::jetstream::ErrorCode;
    /// `JSStreamStoreFailedF`: the store refused the message; its description says why.
    const STREAM_STORE_FAILED: ErrorCode = ErrorCode(10077);
    let server =
        std::error::Error::source(error)?.downcast_ref::<async_nats::jetstream::Error>()?;
    let reason = server.to_string();
    let full = match server.error_code() {
        ErrorCode::ACCOUNT_RESOURCES_EXCEEDED
        | ErrorCode::INSUFFICIENT_RESOURCES
        | ErrorCode::STORAGE_RESOURCES_EXCEEDED => true,
        STREAM_STORE_FAILED => reason.contains("maximum") || reason.contains("resources"),
        _ => false,
    };
    full.then(|| shorten(&reason).into_owned())
}

/// One delivery job on `HOOKD_DELIVERIES`: the event, verbatim as the producer published it,
/// bound for one webhook.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeliveryJob {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub tenant: String,
    /// The producer's bytes, so fields hookd does not know survive untouched.
    pub event: Box<RawValue>,
    /// The number of the attempt this message makes when first delivered; each redelivery
    /// of the same message makes the next attempt.
    #[serde(default = "first")]
    pub attempt: u32,
    /// The attempt that began this chain of retries: 1, or the attempt of a resend. The
    /// webhook's retry schedule counts from it.
    #[serde(default = "first")]
    pub chain_start: u32,
    /// The event's sequence in the events stream (its publish order), set by the fan-out:
    /// a replay of a webhook's buffer is ordered by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_sequence: Option<u64>,
    /// The fan-out span's W3C `traceparent`, set when traces are exported: every attempt of
    /// this delivery, however it was retried, parked or replayed, is a child of that span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// For an ordered webhook: the line (key of [`ORDERING_BUCKET`]) the fan-out placed this
    /// delivery in, at its `event_sequence`, before storing the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    /// A near retry stored by the fan-out (which has no message of its own to NAK): the
    /// job's first delivery is never an attempt, only put back (NAK-delayed) until this time,
    /// and each later delivery makes the next attempt. A NAK's delay is kept to the
    /// millisecond, where a message schedule fires up to a quarter second late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<chrono::DateTime<chrono::Utc>>,
}

fn first() -> u32 {
    1
}

impl DeliveryJob {
    pub fn new(tenant: &str, webhook: &WebhookId, event: &Event, raw: &[u8]) -> Self {
        // `raw` parsed as an event already, so it is valid JSON; re-encode only if not.
        let event_json = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| RawValue::from_string(s.to_owned()).ok())
            .unwrap_or_else(|| {
                RawValue::from_string(String::from_utf8_lossy(&event.to_json()).into_owned())
                    .unwrap_or_else(|_| RawValue::NULL.to_owned())
            });
        Self {
            delivery_id: DeliveryId::for_event(&event.id, event.timestamp, webhook),
            webhook_id: webhook.clone(),
            event_id: event.id.clone(),
            tenant: tenant.to_owned(),
            event: event_json,
            attempt: 1,
            chain_start: 1,
            event_sequence: None,
            traceparent: None,
            order_key: None,
            hold_until: None,
        }
    }

    /// The attempt number a delivery of this message makes, given JetStream's delivery count
    /// (1 for the first delivery). A held job's first delivery makes none (see
    /// [`DeliveryJob::hold_for`]), so its second makes `attempt`.
    pub fn attempt_for(&self, delivered: i64) -> u32 {
        let held = i64::from(self.hold_until.is_some());
        let redeliveries =
            u32::try_from(delivered.saturating_sub(1 + held).max(0)).unwrap_or(u32::MAX);
        self.attempt.saturating_add(redeliveries)
    }

    /// How long to put back a held job's first delivery (zero once its time has come: the
    /// first delivery is put back all the same, so that the count of deliveries says which
    /// attempt each later one makes); `None` for a delivery that makes an attempt.
    pub fn hold_for(&self, delivered: i64, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let until = self.hold_until?;
        (delivered <= 1).then(|| (until - now).to_std().unwrap_or_default())
    }

    /// The job of a later attempt of the same delivery, as a new message (not held).
    pub fn next(&self, attempt: u32) -> Self {
        Self { attempt, hold_until: None, ..self.clone() }
    }

    /// Which retry of its chain `attempt` is, counted from 1 for the chain's first attempt, as
    /// [`hookd_core::RetrySchedule::delay_after`] expects.
    pub fn position_in_chain(&self, attempt: u32) -> u32 {
        attempt.saturating_sub(self.chain_start).saturating_add(1)
    }

    /// The `Nats-Msg-Id` that makes the fan-out (and each resend) idempotent.
    pub fn message_id(&self) -> String {
        if self.attempt == 1 {
            format!("{}.{}", self.event_id, self.webhook_id)
        } else {
            format!("{}.{}.{}", self.event_id, self.webhook_id, self.attempt)
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        // A struct of strings and already-valid raw JSON always serializes.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Publishes the job and waits until the deliveries stream has stored it.
    pub async fn publish(
        &self,
        js: &async_nats::jetstream::Context,
    ) -> Result<Published, NatsError> {
        let subject = subject::delivery(&self.tenant, &self.webhook_id);
        publish_with_id(
            js,
            subject,
            async_nats::HeaderMap::new(),
            &self.message_id(),
            self.to_bytes(),
        )
        .await
    }

    /// Stores this job as a near retry due at `at`: published now, held until then by a NAK
    /// of its first delivery ([`DeliveryJob::hold_until`]). The id names the attempt, so a
    /// repeated store within the dedupe window keeps one.
    pub async fn publish_held(
        &self,
        js: &async_nats::jetstream::Context,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Published, NatsError> {
        Self { hold_until: Some(at), ..self.clone() }.publish(js).await
    }

    /// Removes this delivery's retry schedule, if one is waiting: a retry first stored as a
    /// schedule is about to be stored again as a held job.
    pub async fn cancel_schedule(
        &self,
        js: &async_nats::jetstream::Context,
    ) -> Result<(), NatsError> {
        let subject = subject::retry(&self.tenant, &self.delivery_id);
        let purge = async {
            let stream = js.get_stream_no_info(DELIVERIES_STREAM).await?;
            stream.purge().filter(subject.as_str()).await?;
            Ok::<_, async_nats::Error>(())
        };
        purge.await.map_err(|source| NatsError::Purge { subject, source })
    }

    /// Keeps this job in the webhook's buffer while the webhook is deactivated. `msg_id`
    /// makes a repeated park (after a crash before the original was settled) a no-op.
    pub async fn park(
        &self,
        js: &async_nats::jetstream::Context,
        msg_id: &str,
    ) -> Result<Published, NatsError> {
        let subject = subject::buffer(&self.tenant, &self.webhook_id);
        publish_with_id(js, subject, async_nats::HeaderMap::new(), msg_id, self.to_bytes()).await
    }

    /// Publishes a job taken from the buffer back to the deliveries stream. The id names the
    /// buffer message, so a replay resumed after a crash adds no second copy, while an
    /// earlier delivery of the same event (whose id may still be in the dedupe window) does
    /// not swallow it.
    pub async fn replay(
        &self,
        js: &async_nats::jetstream::Context,
        buffer_sequence: u64,
    ) -> Result<Published, NatsError> {
        let subject = subject::delivery(&self.tenant, &self.webhook_id);
        let id = format!("{}.r{buffer_sequence}", self.message_id());
        publish_with_id(js, subject, async_nats::HeaderMap::new(), &id, self.to_bytes()).await
    }

    /// Stores this job in the deliveries stream as a schedule that JetStream publishes to the
    /// job's delivery subject at `at`. Until then it is a stored message, not a pending one:
    /// it counts against no consumer's `max_ack_pending`. One schedule per delivery (the
    /// subject names the delivery), so scheduling again replaces it.
    pub async fn schedule(
        &self,
        js: &async_nats::jetstream::Context,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Published, NatsError> {
        let subject = subject::retry(&self.tenant, &self.delivery_id);
        let mut headers = async_nats::HeaderMap::new();
        let when = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        headers.insert("Nats-Schedule", format!("@at {when}").as_str());
        headers.insert(
            "Nats-Schedule-Target",
            subject::delivery(&self.tenant, &self.webhook_id).as_str(),
        );
        publish_stored(js, subject, headers, self.to_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_job_keeps_the_producers_bytes() {
        let raw = br#"{"id":"e1","type":"t","extra":{"kept":true},"data":{"n":1}}"#;
        let event = Event::from_json(raw, chrono::Utc::now()).expect("valid event");
        let job = DeliveryJob::new("default", &WebhookId::from("wh_1"), &event, raw);
        assert_eq!(job.message_id(), "e1.wh_1");
        let again = DeliveryJob::from_bytes(&job.to_bytes()).expect("decodes");
        assert_eq!(again.event.get().as_bytes(), raw);
        assert_eq!(
            again.delivery_id,
            DeliveryId::for_event(&event.id, event.timestamp, &WebhookId::from("wh_1"))
        );
        assert_eq!(again.traceparent, None);
        assert!(!String::from_utf8_lossy(&job.to_bytes()).contains("traceparent"));
    }

    #[test]
    fn a_held_jobs_first_delivery_is_no_attempt() {
        let raw = br#"{"id":"e1","type":"t"}"#;
        let event = Event::from_json(raw, chrono::Utc::now()).expect("valid event");
        let now = chrono::Utc::now();
        let due = now + chrono::Duration::seconds(5);
        let plain = DeliveryJob { attempt: 2, ..DeliveryJob::new("t", &"wh".into(), &event, raw) };
        let held = DeliveryJob { hold_until: Some(due), ..plain.clone() };
        assert_eq!(plain.hold_for(1, now), None);
        assert_eq!([1, 2, 3].map(|d| plain.attempt_for(d)), [2, 3, 4]);
        assert_eq!(held.hold_for(1, now), Some(Duration::from_secs(5)));
        assert_eq!(held.hold_for(1, due + chrono::Duration::seconds(1)), Some(Duration::ZERO));
        assert_eq!(held.hold_for(2, now), None, "a redelivery is the attempt, due or not");
        assert_eq!([1, 2, 3].map(|d| held.attempt_for(d)), [2, 2, 3]);
        let again = DeliveryJob::from_bytes(&held.to_bytes()).expect("decodes");
        assert_eq!(again.hold_until, Some(due));
        assert_eq!(held.message_id(), plain.message_id(), "a repeated store is kept once");
        let next = held.next(3);
        assert_eq!((next.attempt, next.hold_until), (3, None));
        assert!(!String::from_utf8_lossy(&plain.to_bytes()).contains("hold_until"));
    }

    #[test]
    fn a_retry_of_a_job_keeps_its_trace_context() {
        let raw = br#"{"id":"e1","type":"t"}"#;
        let event = Event::from_json(raw, chrono::Utc::now()).expect("valid event");
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let job = DeliveryJob {
            traceparent: Some(traceparent.to_owned()),
            ..DeliveryJob::new("default", &WebhookId::from("wh_1"), &event, raw)
        };
        let retry = DeliveryJob { attempt: 2, ..job.clone() };
        let again = DeliveryJob::from_bytes(&retry.to_bytes()).expect("decodes");
        assert_eq!(again.traceparent.as_deref(), Some(traceparent));
    }
}
