//! The buffers of deactivated webhooks, as the control plane handles them: counting,
//! discarding, and replaying them when a webhook is activated again.
//!
//! A replay is driven by the control plane, not the dispatchers: it is one task per webhook
//! that moves the buffered jobs, oldest first, back to the deliveries stream at a bounded
//! rate. Its progress lives in JetStream, as a durable consumer (`replay-<webhook id>`)
//! filtered on the webhook's buffer subject, so a replay survives the death of any process:
//! a control plane resumes every replay consumer it finds at start-up, and a dispatcher that
//! dies only delays the jobs already moved (they are ordinary delivery jobs). Each moved job
//! is published under an id naming its buffer message, so a move repeated after a crash
//! before the buffer message was acknowledged is stored once.
//!
//! Order: jobs are moved by their event's sequence in the events stream (the publish order),
//! and the next job is moved only once the previous one's attempt is recorded (or after
//! [`ATTEMPT_WAIT`]), so a healthy endpoint receives the replay in the original order even
//! though fan-outs and attempts run concurrently. Events that arrive after the activation go
//! straight to the endpoint and may overtake the replay.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use hookd_core::WebhookId;
use hookd_nats::{BUFFER_STREAM, DeliveryJob, subject};
use hookd_storage::Store;
use tracing::Instrument;

use crate::ControlError;

/// Longest wait for a moved job's attempt before the next job is moved anyway, so a slow or
/// failing endpoint delays the replay but never stops it.
const ATTEMPT_WAIT: Duration = Duration::from_secs(30);
/// How long an empty buffer stays watched before the replay ends: jobs a dispatcher parked
/// just before it learnt of the activation still arrive.
const IDLE_END: Duration = Duration::from_secs(3);
const CONSUMER_PREFIX: &str = "replay-";
/// Buffered jobs read ahead and sorted before any is moved.
const LOOK_AHEAD: usize = 512;
/// Jobs kept back while more may come: above the fan-out's default concurrency, which bounds
/// how far out of order the buffer can be.
const REORDER_SLACK: usize = 128;

#[derive(Clone)]
pub struct Replays {
    js: jetstream::Context,
    store: Store,
    /// Jobs moved per second, at most.
    rate: f64,
}

fn nats_error(e: impl std::fmt::Display) -> ControlError {
    ControlError::Unavailable(format!("buffer stream: {e}"))
}

impl Replays {
    pub fn new(js: jetstream::Context, store: Store, rate: f64) -> Self {
        Self { js, store, rate: rate.max(0.1) }
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, ControlError> {
        self.js.get_stream(BUFFER_STREAM).await.map_err(nats_error)
    }

    /// Jobs kept for the webhook now.
    pub async fn buffered(&self, tenant: &str, id: &WebhookId) -> Result<u64, ControlError> {
        let subject = subject::buffer(tenant, id);
        let stream = self.stream().await?;
        let info = stream.info_with_subjects(subject.clone()).await.map_err(nats_error)?;
        let mut subjects = info;
        let mut count = 0;
        while let Some(entry) = subjects.next().await {
            let (name, n) = entry.map_err(nats_error)?;
            if name == subject {
                count += u64::try_from(n).unwrap_or_default();
            }
        }
        Ok(count)
    }

    /// Drops every job kept for the webhook; the count dropped.
    pub async fn discard(&self, tenant: &str, id: &WebhookId) -> Result<u64, ControlError> {
        let stream = self.stream().await?;
        let purged =
            stream.purge().filter(subject::buffer(tenant, id)).await.map_err(nats_error)?;
        Ok(purged.purged)
    }

    /// Starts (or continues) replaying the webhook's buffer; the jobs it holds now.
    pub async fn start(&self, tenant: &str, id: &WebhookId) -> Result<u64, ControlError> {
        let count = self.buffered(tenant, id).await?;
        let stream = self.stream().await?;
        let name = format!("{CONSUMER_PREFIX}{id}");
        let config = jetstream::consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: subject::buffer(tenant, id),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            // A fetched job waits for the ones before it; a redelivery after this long moves
            // nothing twice (see `DeliveryJob::replay`), it only costs a lookup.
            ack_wait: Duration::from_secs(3600),
            max_ack_pending: i64::try_from(LOOK_AHEAD).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let consumer: PullConsumer =
            stream.get_or_create_consumer(&name, config).await.map_err(nats_error)?;
        self.spawn(tenant.to_owned(), id.clone(), consumer);
        Ok(count)
    }

    /// Resumes the replays a stopped control plane left unfinished.
    pub async fn resume_all(&self) -> Result<(), ControlError> {
        let stream = self.stream().await?;
        let mut names = stream.consumer_names();
        while let Some(name) = names.next().await {
            let name = name.map_err(nats_error)?;
            if !name.starts_with(CONSUMER_PREFIX) {
                continue;
            }
            let consumer: PullConsumer = stream.get_consumer(&name).await.map_err(nats_error)?;
            let filter = consumer.cached_info().config.filter_subject.clone();
            let Some((tenant, webhook)) = subject::parts_of_buffer(&filter) else { continue };
            tracing::info!(webhook_id = webhook, "resuming a replay");
            self.spawn(tenant.to_owned(), WebhookId::from(webhook), consumer);
        }
        Ok(())
    }

    fn spawn(&self, tenant: String, id: WebhookId, consumer: PullConsumer) {
        let this = self.clone();
        let span = tracing::info_span!("replay", webhook_id = %id, %tenant);
        tokio::spawn(
            async move {
                match this.run(&tenant, consumer).await {
                    Ok(moved) => tracing::info!(moved, "replay finished"),
                    Err(error) => tracing::warn!(%error, "replay stopped; resumed at next start"),
                }
            }
            .instrument(span),
        );
    }

    async fn run(&self, tenant: &str, consumer: PullConsumer) -> Result<u64, ControlError> {
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / self.rate));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut moved = 0u64;
        let mut idle_since = tokio::time::Instant::now();
        // Fetched jobs not moved yet, by their event's sequence in the events stream.
        let mut window: Vec<(u64, u64, jetstream::Message, DeliveryJob)> = Vec::new();
        loop {
            let want = LOOK_AHEAD.saturating_sub(window.len()).max(1);
            let mut batch = consumer
                .fetch()
                .max_messages(want)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .map_err(nats_error)?;
            let mut fetched = 0;
            while let Some(msg) = batch.next().await {
                let msg = msg.map_err(nats_error)?;
                fetched += 1;
                let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
                match DeliveryJob::from_bytes(&msg.payload) {
                    Ok(job) if job.tenant == tenant => {
                        window.push((job.event_sequence.unwrap_or(0), sequence, msg, job));
                    }
                    Ok(_) | Err(_) => {
                        tracing::warn!(sequence, "dropping a malformed buffered job");
                        let _ = msg.ack_with(jetstream::AckKind::Term).await;
                    }
                }
            }
            if fetched == 0 && window.is_empty() {
                if idle_since.elapsed() >= IDLE_END {
                    break;
                }
                continue;
            }
            // The buffer holds jobs in the order concurrent fan-outs stored them, which can
            // differ from the publish order by up to the fan-out concurrency: sort by the
            // event's sequence, and while more may come keep the tail back, so a job stored
            // a little late still gets its place.
            window.sort_by_key(|(event_seq, buffer_seq, _, _)| (*event_seq, *buffer_seq));
            let keep = if fetched == want { REORDER_SLACK.min(window.len()) } else { 0 };
            let ready: Vec<_> = window.drain(..window.len() - keep).collect();
            for (_, sequence, msg, job) in ready {
                pace.tick().await;
                job.replay(&self.js, sequence).await.map_err(ControlError::Nats)?;
                msg.double_ack().await.map_err(nats_error)?;
                moved += 1;
                self.wait_attempted(tenant, &job).await;
            }
            idle_since = tokio::time::Instant::now();
        }
        // Done: the consumer goes, so a later deactivation starts a fresh buffer.
        let name = consumer.cached_info().name.clone();
        let stream = self.stream().await?;
        stream.delete_consumer(&name).await.map_err(nats_error)?;
        Ok(moved)
    }

    /// Waits (up to [`ATTEMPT_WAIT`]) until the job's attempt is recorded.
    async fn wait_attempted(&self, tenant: &str, job: &DeliveryJob) {
        let deadline = tokio::time::Instant::now() + ATTEMPT_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.store.get_delivery(tenant, &job.delivery_id).await {
                Ok(Some((record, _))) if record.attempt_count >= job.attempt => return,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the replayed delivery"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(delivery_id = %job.delivery_id, "no attempt recorded yet; replay moves on");
    }
}
