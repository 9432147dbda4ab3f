//! The buffers of deactivated webhooks, as the control plane handles them: counting,
//! discarding, and replaying them when a webhook is activated again.
//!
//! A replay is driven by the control plane, not the dispatchers: it is one task per webhook
//! that moves the buffered jobs, oldest first, back to the deliveries stream at a bounded
//! rate. Its progress lives in JetStream, as a durable consumer (`replay-<webhook id>`)
//! filtered on the webhook's buffer subject, so a replay survives the death of any process:
//! every control plane looks for unfinished replay consumers at start and every
//! [`RESUME_EVERY`], and a dispatcher that dies only delays the jobs already moved (they are
//! ordinary delivery jobs). Each moved job is published under an id naming its buffer
//! message, so a move repeated after a crash before the buffer message was acknowledged is
//! stored once.
//!
//! One mover per replay, whatever the number of control planes: a mover holds a lease, a key
//! in the `hookd_replay_leases` bucket that expires [`LEASE_TTL`] after its last renewal. A
//! control plane that finds a replay without a live lease takes it over, and first recreates
//! the consumer, so the jobs its dead predecessor had fetched come back at once rather than
//! after their ack wait.
//!
//! Order: jobs are moved by their event's sequence in the events stream (the publish order),
//! and the next job is moved only once the previous one's attempt is recorded (or after
//! [`ATTEMPT_WAIT`]), so a healthy endpoint receives the replay in the original order even
//! though fan-outs and attempts run concurrently. Events that arrive after the activation go
//! straight to the endpoint and may overtake the replay.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, consumer::PullConsumer, kv};
use futures::StreamExt;
use hookd_core::WebhookId;
use hookd_nats::{BUFFER_STREAM, DeliveryJob, subject};
use hookd_storage::Store;
use tracing::Instrument;

use crate::{ControlError, recorder::AttemptWatch};

/// Longest wait for a moved job's attempt before the next job is moved anyway, so a slow or
/// failing endpoint delays the replay but never stops it.
const ATTEMPT_WAIT: Duration = Duration::from_secs(30);
/// How often a replay looks in the database for its job's attempt, which another control
/// plane may have recorded (this one's recorder tells at once).
const OTHER_REPLICA_POLL: Duration = Duration::from_millis(500);
/// How long an empty buffer stays watched before the replay ends: jobs a dispatcher parked
/// just before it learnt of the activation still arrive.
const IDLE_END: Duration = Duration::from_secs(3);
const CONSUMER_PREFIX: &str = "replay-";
const LEASE_BUCKET: &str = "hookd_replay_leases";
/// A lease not renewed for this long is free for another control plane to take.
const LEASE_TTL: Duration = Duration::from_secs(15);
const LEASE_RENEW: Duration = Duration::from_secs(5);
/// How often every control plane looks for replays nobody moves.
const RESUME_EVERY: Duration = Duration::from_secs(10);
/// Fetched jobs not yet moved are redelivered after this long without a progress ack.
const ACK_WAIT: Duration = Duration::from_secs(60);
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// Buffered jobs read ahead and sorted before any is moved.
const LOOK_AHEAD: usize = 512;
/// Jobs kept back while more may come: above the fan-out's default concurrency, which bounds
/// how far out of order the buffer can be.
const REORDER_SLACK: usize = 128;

#[derive(Clone)]
pub struct Replays {
    js: jetstream::Context,
    store: Store,
    leases: kv::Store,
    /// Names this process in the leases it holds.
    owner: Arc<str>,
    /// Replays (consumer names) this process moves or waits to move.
    tracked: Arc<Mutex<HashSet<String>>>,
    /// Jobs moved per second, at most.
    rate: f64,
    /// Tells when this process records a moved job's attempt.
    attempts: AttemptWatch,
}

fn nats_error(e: impl std::fmt::Display) -> ControlError {
    ControlError::Unavailable(format!("buffer stream: {e}"))
}

fn consumer_config(tenant: &str, id: &WebhookId) -> jetstream::consumer::pull::Config {
    jetstream::consumer::pull::Config {
        durable_name: Some(format!("{CONSUMER_PREFIX}{id}")),
        filter_subject: subject::buffer(tenant, id),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        // The mover keeps fetched jobs alive with progress acks while they wait their turn.
        ack_wait: ACK_WAIT,
        max_ack_pending: i64::try_from(LOOK_AHEAD).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

impl Replays {
    pub async fn new(
        js: jetstream::Context,
        store: Store,
        rate: f64,
        replicas: usize,
        attempts: AttemptWatch,
    ) -> Result<Self, ControlError> {
        let leases = js
            .create_key_value(kv::Config {
                bucket: LEASE_BUCKET.to_owned(),
                description: "which control plane moves each replay".to_owned(),
                history: 1,
                max_age: LEASE_TTL,
                num_replicas: replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| ControlError::Unavailable(format!("replay leases: {e}")))?;
        Ok(Self {
            js,
            store,
            leases,
            owner: uuid::Uuid::now_v7().to_string().into(),
            tracked: Arc::default(),
            rate: rate.max(0.1),
            attempts,
        })
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
        if let Err(error) = self.store.add_buffer_released(tenant, id, purged.purged).await {
            tracing::warn!(%error, "cannot count the discarded events");
        }
        Ok(purged.purged)
    }

    /// Starts (or continues) replaying the webhook's buffer; the jobs it holds now.
    pub async fn start(&self, tenant: &str, id: &WebhookId) -> Result<u64, ControlError> {
        let count = self.buffered(tenant, id).await?;
        let stream = self.stream().await?;
        let config = consumer_config(tenant, id);
        let name = format!("{CONSUMER_PREFIX}{id}");
        let _: PullConsumer =
            stream.get_or_create_consumer(&name, config).await.map_err(nats_error)?;
        self.spawn(tenant.to_owned(), id.clone());
        Ok(count)
    }

    /// Looks for unfinished replays now and every [`RESUME_EVERY`]: those of a stopped
    /// control plane, or of another one that may stop.
    pub fn resume_forever(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RESUME_EVERY);
            loop {
                every.tick().await;
                if let Err(error) = this.resume_all().await {
                    tracing::warn!(%error, "cannot look for unfinished replays");
                }
            }
        })
    }

    async fn resume_all(&self) -> Result<(), ControlError> {
        let stream = self.stream().await?;
        let mut names = stream.consumer_names();
        while let Some(name) = names.next().await {
            let name = name.map_err(nats_error)?;
            let Some(webhook) = name.strip_prefix(CONSUMER_PREFIX) else { continue };
            if self.is_tracked(&name) {
                continue;
            }
            let consumer: PullConsumer = stream.get_consumer(&name).await.map_err(nats_error)?;
            let filter = consumer.cached_info().config.filter_subject.clone();
            let Some((tenant, _)) = subject::parts_of_buffer(&filter) else { continue };
            self.spawn(tenant.to_owned(), WebhookId::from(webhook));
        }
        Ok(())
    }

    fn is_tracked(&self, name: &str) -> bool {
        self.tracked.lock().unwrap_or_else(PoisonError::into_inner).contains(name)
    }

    /// Moves the replay once this process holds its lease, until it is finished (its
    /// consumer is gone). Does nothing if this process already tracks it.
    fn spawn(&self, tenant: String, id: WebhookId) {
        let name = format!("{CONSUMER_PREFIX}{id}");
        if !self.tracked.lock().unwrap_or_else(PoisonError::into_inner).insert(name.clone()) {
            return;
        }
        let this = self.clone();
        let span = tracing::info_span!("replay", webhook_id = %id, %tenant);
        tokio::spawn(
            async move {
                this.follow(&tenant, &id).await;
                this.tracked.lock().unwrap_or_else(PoisonError::into_inner).remove(&name);
            }
            .instrument(span),
        );
    }

    async fn follow(&self, tenant: &str, id: &WebhookId) {
        let name = format!("{CONSUMER_PREFIX}{id}");
        loop {
            let stream = match self.stream().await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "replay waits for the buffer stream");
                    tokio::time::sleep(LEASE_RENEW).await;
                    continue;
                }
            };
            match stream.consumer_info(&name).await {
                Ok(_) => {}
                // Finished (by this process or another).
                Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => return,
                Err(error) => {
                    tracing::warn!(%error, "cannot look up the replay");
                    tokio::time::sleep(LEASE_RENEW).await;
                    continue;
                }
            }
            let key = id.as_str();
            let revision =
                match self.leases.create(key, self.owner.as_bytes().to_vec().into()).await {
                    Ok(revision) => revision,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                        // Another control plane moves it; look again once its lease could lapse.
                        tokio::time::sleep(LEASE_RENEW).await;
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot take the replay lease");
                        tokio::time::sleep(LEASE_RENEW).await;
                        continue;
                    }
                };
            let lost = Arc::new(AtomicBool::new(false));
            let renewer = self.renew(key.to_owned(), revision, lost.clone());
            let result = self.take_over(&stream, tenant, id).await;
            let result = match result {
                Ok(consumer) => self.run(tenant, consumer, &lost).await,
                Err(error) => Err(error),
            };
            renewer.abort();
            match result {
                Ok(moved) => {
                    tracing::info!(moved, "replay finished");
                    let _ = self.leases.delete(key).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "replay interrupted; trying again");
                    // Let another control plane have it if it can do better.
                    let _ = self.leases.delete(key).await;
                    tokio::time::sleep(LEASE_RENEW).await;
                }
            }
        }
    }

    /// Renews the lease until aborted; sets `lost` if another control plane took it.
    fn renew(
        &self,
        key: String,
        mut revision: u64,
        lost: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let leases = self.leases.clone();
        let owner = self.owner.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_RENEW).await;
                match leases.update(&key, owner.as_bytes().to_vec().into(), revision).await {
                    Ok(next) => revision = next,
                    Err(error) => {
                        tracing::warn!(%error, "lost the replay lease");
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    }

    /// Recreates the replay's consumer, so jobs fetched by an earlier mover that died come
    /// back now; only the lease holder does this.
    async fn take_over(
        &self,
        stream: &jetstream::stream::Stream,
        tenant: &str,
        id: &WebhookId,
    ) -> Result<PullConsumer, ControlError> {
        let name = format!("{CONSUMER_PREFIX}{id}");
        let config = consumer_config(tenant, id);
        stream.delete_consumer(&name).await.map_err(nats_error)?;
        stream.create_consumer(config).await.map_err(nats_error)
    }

    async fn run(
        &self,
        tenant: &str,
        consumer: PullConsumer,
        lost: &AtomicBool,
    ) -> Result<u64, ControlError> {
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / self.rate));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut moved = 0u64;
        let mut idle_since = tokio::time::Instant::now();
        // Fetched jobs not moved yet, by their event's sequence in the events stream.
        let mut window: Vec<Held> = Vec::new();
        let mut progressed = tokio::time::Instant::now();
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
            for _ in 0..window.len() - keep {
                pace.tick().await;
                if lost.load(Ordering::Relaxed) {
                    return Err(ControlError::Unavailable("replay lease lost".to_owned()));
                }
                keep_alive(&window, &mut progressed).await;
                let (_, sequence, msg, mut job) = window.remove(0);
                // A kept job gave up its place in its key's line when it was parked: replayed,
                // it joins the end of the line (ordered webhooks, B6).
                job.order_key = None;
                job.replay(&self.js, sequence).await.map_err(ControlError::from)?;
                msg.double_ack().await.map_err(nats_error)?;
                moved += 1;
                // Counted after the ack: a crash in between undercounts released jobs (and
                // shows them expired) rather than count one twice.
                if let Err(error) = self.store.add_buffer_released(tenant, &job.webhook_id, 1).await
                {
                    tracing::warn!(%error, "cannot count a replayed event");
                }
                self.wait_attempted(tenant, &job, &window, &mut progressed).await;
            }
            idle_since = tokio::time::Instant::now();
        }
        // Done: the consumer goes, so a later deactivation starts a fresh buffer.
        let name = consumer.cached_info().name.clone();
        let stream = self.stream().await?;
        stream.delete_consumer(&name).await.map_err(nats_error)?;
        Ok(moved)
    }

    /// Waits (up to [`ATTEMPT_WAIT`]) until the job's attempt is recorded, keeping the
    /// `held` jobs alive meanwhile. The recorder of this process says so at once; the
    /// database is read first (the attempt may be recorded already) and then every
    /// [`OTHER_REPLICA_POLL`], for a report that lands on another control plane.
    async fn wait_attempted(
        &self,
        tenant: &str,
        job: &DeliveryJob,
        held: &[Held],
        progressed: &mut tokio::time::Instant,
    ) {
        let mut recorded_here = self.attempts.wait(&job.delivery_id, job.attempt);
        let deadline = tokio::time::Instant::now() + ATTEMPT_WAIT;
        while tokio::time::Instant::now() < deadline {
            keep_alive(held, progressed).await;
            match self.store.get_delivery(tenant, &job.delivery_id).await {
                Ok(Some((record, _))) if record.attempt_count >= job.attempt => return,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the replayed delivery"),
            }
            let poll = tokio::time::Instant::now() + OTHER_REPLICA_POLL;
            tokio::select! {
                _ = &mut recorded_here => return,
                () = tokio::time::sleep_until(poll.min(deadline)) => {}
            }
        }
        tracing::info!(delivery_id = %job.delivery_id, "no attempt recorded yet; replay moves on");
    }
}

/// A fetched buffered job: its event's sequence in the events stream, its own sequence in the
/// buffer, the message and the job.
type Held = (u64, u64, jetstream::Message, DeliveryJob);

/// Tells JetStream the held jobs are still being worked on, at most every [`PROGRESS_EVERY`].
async fn keep_alive(held: &[Held], progressed: &mut tokio::time::Instant) {
    if progressed.elapsed() < PROGRESS_EVERY {
        return;
    }
    *progressed = tokio::time::Instant::now();
    for (_, _, msg, _) in held {
        let _ = msg.ack_with(jetstream::AckKind::Progress).await;
    }
}
