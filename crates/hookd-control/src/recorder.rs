//! Group commit of attempt results. Concurrent `ReportAttempts` calls queue here; one writer
//! takes everything queued (up to a bound) and stores it in a single transaction, so the
//! database sees a few large transactions instead of one per attempt, and a batch that
//! arrives while a transaction is in flight rides along with the next one.
//!
//! After each commit the [`AttemptWatch`] tells whoever in this process waits for an attempt
//! of a delivery (a replay, which moves a buffered job only after the previous one's attempt
//! is recorded), so they need not poll the database for what this process just wrote.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use hookd_core::{AttemptReport, DeliveryId, HealthRule};
use hookd_storage::Store;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::{metrics::Metrics, notify::Notifier};

/// What one caller's reports came to: how many were new and how many already stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub new: u32,
    pub duplicates: u32,
}

/// Who in this process waits for which attempt of which delivery. Only reports this process
/// records are seen here; a waiter also looks at the database for those recorded elsewhere.
#[derive(Debug, Clone, Default)]
pub struct AttemptWatch {
    waiting: Arc<Mutex<HashMap<DeliveryId, Vec<Waiter>>>>,
}

/// The attempt number waited for, and whom to tell.
type Waiter = (u32, oneshot::Sender<()>);

impl AttemptWatch {
    /// Resolves once attempt `number` of `delivery`, or a later one, is recorded by this
    /// process. Dropping the receiver withdraws the wait.
    pub fn wait(&self, delivery: &DeliveryId, number: u32) -> oneshot::Receiver<()> {
        let (tell, told) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let waiters = waiting.entry(delivery.clone()).or_default();
        waiters.retain(|(_, tell)| !tell.is_closed());
        waiters.push((number, tell));
        told
    }

    /// Tells the waiters of the attempts just committed (stored now or found stored before:
    /// either way they are recorded).
    fn recorded(&self, reports: &[AttemptReport]) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.is_empty() {
            return;
        }
        for report in reports {
            let Some(waiters) = waiting.get_mut(&report.delivery_id) else { continue };
            let (done, pending): (Vec<_>, Vec<_>) =
                waiters.drain(..).partition(|(number, _)| *number <= report.attempt.number);
            for (_, tell) in done {
                let _ = tell.send(());
            }
            *waiters = pending;
        }
        waiting.retain(|_, waiters| waiters.iter().any(|(_, tell)| !tell.is_closed()));
    }
}

struct Job {
    tenant: String,
    records: Vec<AttemptReport>,
    done: oneshot::Sender<Result<Recorded, String>>,
}

#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Job>,
    watch: AttemptWatch,
}

impl Recorder {
    /// `health` evaluates the health rule in each transaction and announces the webhooks it
    /// deactivates; `None` only tracks health (tests of the recorder alone). The task ends
    /// once every handle is dropped and everything queued is committed: at shutdown, await it
    /// so no accepted result is lost.
    pub fn spawn(
        store: Store,
        batch_max: usize,
        health: Option<(HealthRule, Notifier)>,
        metrics: Arc<Metrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(1024);
        let watch = AttemptWatch::default();
        let writer = Writer { store, health, metrics, watch: watch.clone() };
        let task = tokio::spawn(write_loop(writer, jobs, batch_max.max(1)));
        (Self { queue, watch }, task)
    }

    /// Where waiters learn of the attempts this recorder commits.
    pub fn watch(&self) -> &AttemptWatch {
        &self.watch
    }

    /// Stores `records` durably (with other callers' records in the same transaction).
    pub async fn record(
        &self,
        tenant: String,
        records: Vec<AttemptReport>,
    ) -> Result<Recorded, String> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Job { tenant, records, done })
            .await
            .map_err(|_| "recorder stopped".to_owned())?;
        result.await.map_err(|_| "recorder stopped".to_owned())?
    }
}

type Health = Option<(HealthRule, Notifier)>;

/// What the write loop commits with.
struct Writer {
    store: Store,
    health: Health,
    metrics: Arc<Metrics>,
    watch: AttemptWatch,
}

async fn write_loop(writer: Writer, mut jobs: mpsc::Receiver<Job>, batch_max: usize) {
    while let Some(first) = jobs.recv().await {
        let tenant = first.tenant.clone();
        let mut size = first.records.len();
        let mut group = vec![first];
        // Take what is already queued for the same tenant; stop at the bound.
        while size < batch_max {
            match jobs.try_recv() {
                Ok(job) if job.tenant == tenant => {
                    size += job.records.len();
                    group.push(job);
                }
                Ok(other) => commit(&writer, &other.tenant.clone(), vec![other]).await,
                Err(_) => break,
            }
        }
        commit(&writer, &tenant, group).await;
    }
}

async fn commit(writer: &Writer, tenant: &str, group: Vec<Job>) {
    let Writer { store, health, metrics, watch } = writer;
    let all: Vec<AttemptReport> = group.iter().flat_map(|j| j.records.iter().cloned()).collect();
    let started = std::time::Instant::now();
    let rule = health.as_ref().map(|(rule, _)| rule);
    match store.record_attempts_checked(tenant, &all, rule).await {
        Ok((stored, deactivated)) => {
            #[allow(clippy::cast_precision_loss)]
            metrics.result_write_batch.observe(all.len() as f64);
            metrics.result_write_duration.observe(hookd_metrics::seconds(started.elapsed()));
            let new = stored.iter().filter(|is_new| **is_new).count() as u64;
            metrics.attempts_recorded.with_label_values(&["new"]).inc_by(new);
            metrics
                .attempts_recorded
                .with_label_values(&["duplicate"])
                .inc_by(stored.len() as u64 - new);
            let system = deactivated.len() as u64;
            metrics.webhooks_deactivated.with_label_values(&["system"]).inc_by(system);
            // Announced off the write loop: telling the dispatchers waits for their acks.
            if let Some((_, notifier)) = health {
                for d in deactivated {
                    let notifier = notifier.clone();
                    let tenant = tenant.to_owned();
                    let span = tracing::info_span!("system_deactivation", webhook_id = %d.webhook_id, %tenant);
                    tokio::spawn(
                        async move { notifier.system_deactivated(&tenant, d).await }
                            .instrument(span),
                    );
                }
            }
            tracing::debug!(
                jobs = group.len(),
                attempts = all.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "attempt results committed"
            );
            watch.recorded(&all);
            let mut flags = stored.into_iter();
            for job in group {
                let mut recorded = Recorded::default();
                for is_new in flags.by_ref().take(job.records.len()) {
                    if is_new {
                        recorded.new += 1;
                    } else {
                        recorded.duplicates += 1;
                    }
                }
                let _ = job.done.send(Ok(recorded));
            }
        }
        Err(e) => {
            metrics.result_write_failures.inc();
            tracing::warn!(error = %e, attempts = all.len(), "cannot store attempt results");
            for job in group {
                let _ = job.done.send(Err(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use hookd_core::{AttemptRecord, DeliveryStatus, EventId, Webhook, WebhookId, WebhookSpec};

    use super::*;

    const TENANT: &str = "acme";

    fn report(webhook: &WebhookId, event: &str, number: u32) -> AttemptReport {
        let event_id = EventId::from(event);
        let success = number == 2;
        AttemptReport {
            delivery_id: DeliveryId::for_event(&event_id, DateTime::UNIX_EPOCH, webhook),
            webhook_id: webhook.clone(),
            event_id,
            event_type: "contact-created".to_owned(),
            payload: "{}".to_owned(),
            event: format!(r#"{{"id":"{event}","type":"contact-created"}}"#),
            attempt: AttemptRecord {
                number,
                started_at: DateTime::<Utc>::UNIX_EPOCH
                    + chrono::Duration::seconds(i64::from(number)),
                http_status: Some(if success { 200 } else { 500 }),
                latency_ms: 3,
                error: String::new(),
                response_body: String::new(),
                success,
                request_headers: Vec::new(),
            },
            status_after: if success { DeliveryStatus::Delivered } else { DeliveryStatus::Pending },
            next_attempt_at: None,
        }
    }

    async fn store_with_webhook() -> anyhow::Result<(tempfile::TempDir, Store, WebhookId)> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("hookd.db").display());
        let store = Store::connect(&url).await?;
        let webhook = Webhook {
            id: WebhookId::generate(),
            spec: WebhookSpec {
                name: "crm".to_owned(),
                url: "https://example.com/".to_owned(),
                event_types: vec!["*".to_owned()],
                active: true,
                ..WebhookSpec::default()
            },
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        store.create_webhook(TENANT, &webhook).await?;
        Ok((dir, store, webhook.id))
    }

    /// Two dispatchers reporting the same attempts at once (a redelivery after a lost answer)
    /// store each attempt once, and the delivery's state and the webhook's counts move once.
    #[tokio::test]
    async fn the_same_attempts_reported_twice_at_once_are_stored_once() -> anyhow::Result<()> {
        let (_dir, store, webhook) = store_with_webhook().await?;
        let (recorder, task) = Recorder::spawn(store.clone(), 100, None, Arc::new(Metrics::new()));
        let batch =
            vec![report(&webhook, "e1", 1), report(&webhook, "e1", 2), report(&webhook, "e2", 1)];
        let (a, b) = tokio::join!(
            recorder.record(TENANT.to_owned(), batch.clone()),
            recorder.record(TENANT.to_owned(), batch.clone()),
        );
        let (a, b) = (a.map_err(anyhow::Error::msg)?, b.map_err(anyhow::Error::msg)?);
        assert_eq!((a.new + b.new, a.duplicates + b.duplicates), (3, 3), "{a:?} {b:?}");
        let again =
            recorder.record(TENANT.to_owned(), batch.clone()).await.map_err(anyhow::Error::msg)?;
        assert_eq!(again, Recorded { new: 0, duplicates: 3 });

        let (e1, attempts) = store.get_delivery(TENANT, &batch[0].delivery_id).await?.expect("e1");
        assert_eq!(
            (e1.status, e1.attempt_count, attempts.len()),
            (DeliveryStatus::Delivered, 2, 2)
        );
        let (_, stats) = store.get_webhook_with_stats(TENANT, &webhook).await?.expect("webhook");
        assert_eq!((stats.triggered, stats.succeeded), (2, 1), "{stats:?}");
        drop(recorder);
        task.await?;
        Ok(())
    }

    /// A waiter hears of its attempt as soon as this recorder commits it, and of nothing
    /// earlier: a replay moves the next job only once the previous one's attempt is stored.
    #[tokio::test]
    async fn waiters_hear_of_their_attempt_once_it_is_committed() -> anyhow::Result<()> {
        let (_dir, store, webhook) = store_with_webhook().await?;
        let (recorder, task) = Recorder::spawn(store, 100, None, Arc::new(Metrics::new()));
        let first = report(&webhook, "e1", 1);
        let mut second_attempt = recorder.watch().wait(&first.delivery_id, 2);
        let first_attempt = recorder.watch().wait(&first.delivery_id, 1);
        let withdrawn = recorder.watch().wait(&first.delivery_id, 1);
        drop(withdrawn);

        recorder
            .record(TENANT.to_owned(), vec![first.clone()])
            .await
            .map_err(anyhow::Error::msg)?;
        first_attempt.await?;
        assert!(second_attempt.try_recv().is_err(), "attempt 2 is not recorded yet");
        recorder
            .record(TENANT.to_owned(), vec![report(&webhook, "e1", 2)])
            .await
            .map_err(anyhow::Error::msg)?;
        second_attempt.await?;
        assert!(recorder.watch().waiting.lock().expect("lock").is_empty(), "nobody waits any more");
        drop(recorder);
        task.await?;
        Ok(())
    }
}
