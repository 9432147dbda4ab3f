//! Idempotent creation of hookd's streams and durable consumers: every process runs it at
//! start-up, so any number of control planes and dispatchers may start in any order.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use async_nats::jetstream::kv;

use crate::{
    BUFFER_STREAM, DELIVERIES_STREAM, DELIVERY_CONSUMER, EVENTS_STREAM, FANOUT_CONSUMER, NatsError,
    ORDERING_BUCKET, RATE_LIMIT_BUCKET, subject,
};

/// Settings shared by both streams.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Messages with the same `Nats-Msg-Id` inside this window are stored once.
    pub dedupe_window: Duration,
    /// How long messages are kept; work queue retention removes them earlier once acked.
    pub max_age: Duration,
    pub replicas: usize,
    /// The events stream refuses messages larger than this (nats-server answers the publish
    /// with an error). Set well above the event size limit: the precise check, with a clear
    /// error, is `PublishEvent`'s and the fan-out's; this one keeps far larger messages out.
    pub max_event_message_bytes: i32,
    /// How long the buffer of a deactivated webhook keeps each job (the buffer stream's max
    /// age); older ones are dropped by the server.
    pub buffer_window: Duration,
    /// Most messages the events and the deliveries stream each hold (-1: no limit). When
    /// one is full it refuses new messages (discard policy `new`): a stream that made room by
    /// dropping its oldest messages would lose events or deliveries already acknowledged.
    pub max_messages: i64,
    /// Most bytes each of those two streams holds (-1: no limit); refused likewise.
    pub max_bytes: i64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            dedupe_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
            max_event_message_bytes: 1024 * 1024,
            buffer_window: Duration::from_secs(5 * 24 * 3600),
            max_messages: -1,
            max_bytes: -1,
        }
    }
}

/// Settings of a dispatch-stage consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Redelivery happens only if a message stays unacknowledged this long; dispatchers send
    /// progress acks while an attempt or its result write is still under way.
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self { ack_wait: Duration::from_secs(60), max_ack_pending: 100_000 }
    }
}

fn stream_config(name: &'static str, subjects: Vec<String>, s: &StreamSettings) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        // Only the deliveries stream holds scheduled retries.
        allow_message_schedules: subjects.len() > 1,
        subjects,
        // Each message is work for exactly one consumer and is removed once acked.
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: s.dedupe_window,
        max_age: s.max_age,
        num_replicas: s.replicas,
        // Delivery jobs carry an event that passed the fan-out's size check.
        max_message_size: if name == EVENTS_STREAM { s.max_event_message_bytes } else { -1 },
        // Full means full: refuse what is new, never drop what was acknowledged. (The buffer
        // stream, which keeps a deactivated webhook's jobs for a window, sets no limits.)
        discard: stream::DiscardPolicy::New,
        max_messages: if name == BUFFER_STREAM { -1 } else { s.max_messages },
        max_bytes: if name == BUFFER_STREAM { -1 } else { s.max_bytes },
        ..Default::default()
    }
}

/// Creates the events and deliveries streams, or brings their settings up to date.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<(jetstream::stream::Stream, jetstream::stream::Stream), NatsError> {
    let events = ensure_one(
        js,
        stream_config(EVENTS_STREAM, vec![format!("{}.>", subject::EVENTS_PREFIX)], settings),
    )
    .await?;
    let deliveries = ensure_one(
        js,
        stream_config(
            DELIVERIES_STREAM,
            vec![
                format!("{}.>", subject::DELIVERIES_PREFIX),
                format!("{}.>", subject::RETRIES_PREFIX),
            ],
            settings,
        ),
    )
    .await?;
    Ok((events, deliveries))
}

async fn ensure_one(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<jetstream::stream::Stream, NatsError> {
    let name: &'static str = match config.name.as_str() {
        EVENTS_STREAM => EVENTS_STREAM,
        BUFFER_STREAM => BUFFER_STREAM,
        _ => DELIVERIES_STREAM,
    };
    let err = |source: async_nats::Error| NatsError::Stream { stream: name, source };
    let mut stream = js.get_or_create_stream(config.clone()).await.map_err(|e| err(e.into()))?;
    let current = stream.info().await.map_err(|e| err(e.into()))?.config.clone();
    let drifted = current.subjects != config.subjects
        || current.duplicate_window != config.duplicate_window
        || current.max_age != config.max_age
        || current.allow_message_schedules != config.allow_message_schedules
        || current.max_message_size != config.max_message_size
        || current.discard != config.discard
        || current.max_messages != config.max_messages
        || current.max_bytes != config.max_bytes;
    if drifted {
        tracing::info!(stream = name, "updating stream settings");
        js.update_stream(config).await.map_err(|e| err(e.into()))?;
    }
    Ok(stream)
}

/// Creates the buffer stream (or brings its settings up to date). A work queue: each
/// webhook's replay is one durable consumer filtered on the webhook's subject (filters never
/// overlap), and a replayed job is removed once acknowledged.
pub async fn ensure_buffer_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<jetstream::stream::Stream, NatsError> {
    let mut config =
        stream_config(BUFFER_STREAM, vec![format!("{}.>", subject::BUFFER_PREFIX)], settings);
    config.max_age = settings.buffer_window;
    // The server refuses a dedupe window longer than the max age.
    config.duplicate_window = config.duplicate_window.min(settings.buffer_window);
    ensure_one(js, config).await
}

/// Opens the events and deliveries streams without changing them: their settings are the
/// control plane's, which creates them at start-up.
pub async fn open_streams(
    js: &jetstream::Context,
) -> Result<(jetstream::stream::Stream, jetstream::stream::Stream), NatsError> {
    let events = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| NatsError::Stream { stream: EVENTS_STREAM, source: e.into() })?;
    let deliveries = js
        .get_stream(DELIVERIES_STREAM)
        .await
        .map_err(|e| NatsError::Stream { stream: DELIVERIES_STREAM, source: e.into() })?;
    Ok((events, deliveries))
}

/// Creates (or updates) the durable pull consumer of a dispatch stage.
pub async fn ensure_consumer(
    stream: &jetstream::stream::Stream,
    name: &'static str,
    settings: &ConsumerSettings,
) -> Result<consumer::PullConsumer, NatsError> {
    debug_assert!(name == FANOUT_CONSUMER || name == DELIVERY_CONSUMER);
    let filter_subject = if name == DELIVERY_CONSUMER {
        // Not the scheduled retries waiting on `hookd.retries.>`: only what is due.
        format!("{}.>", subject::DELIVERIES_PREFIX)
    } else {
        String::new()
    };
    let config = consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        // Unlimited: the dispatcher ends a delivery itself after its webhook's last retry,
        // because the number of attempts differs per webhook.
        max_deliver: -1,
        max_ack_pending: settings.max_ack_pending,
        ..Default::default()
    };
    stream
        .create_consumer(config)
        .await
        .map_err(|e| NatsError::Consumer { consumer: name, source: e.into() })
}

/// Creates the key-value buckets of the delivery controls (ordering lines, rate limits), or
/// opens them if they exist. The control plane runs it at start-up.
pub async fn ensure_buckets(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<(kv::Store, kv::Store), NatsError> {
    let ordering = js
        .create_key_value(kv::Config {
            bucket: ORDERING_BUCKET.to_owned(),
            description: "ordered delivery: each key's line of deliveries and its turn".to_owned(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Stream { stream: ORDERING_BUCKET, source: e.into() })?;
    let rates = js
        .create_key_value(kv::Config {
            bucket: RATE_LIMIT_BUCKET.to_owned(),
            description: "rate limits: one token bucket per limited webhook".to_owned(),
            history: 1,
            storage: stream::StorageType::Memory,
            num_replicas: replicas.max(1),
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Stream { stream: RATE_LIMIT_BUCKET, source: e.into() })?;
    Ok((ordering, rates))
}

/// Opens the delivery controls' buckets without changing them (dispatchers).
pub async fn open_buckets(js: &jetstream::Context) -> Result<(kv::Store, kv::Store), NatsError> {
    let ordering = js
        .get_key_value(ORDERING_BUCKET)
        .await
        .map_err(|e| NatsError::Stream { stream: ORDERING_BUCKET, source: e.into() })?;
    let rates = js
        .get_key_value(RATE_LIMIT_BUCKET)
        .await
        .map_err(|e| NatsError::Stream { stream: RATE_LIMIT_BUCKET, source: e.into() })?;
    Ok((ordering, rates))
}
