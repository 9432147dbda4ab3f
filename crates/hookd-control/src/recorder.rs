//! Group commit of attempt results. Concurrent `ReportAttempts` calls queue here; one writer
//! takes everything queued (up to a bound) and stores it in a single transaction, so the
//! database sees a few large transactions instead of one per attempt, and a batch that
//! arrives while a transaction is in flight rides along with the next one.

use hookd_core::{AttemptReport, HealthRule};
use hookd_storage::Store;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use std::sync::Arc;

use crate::{metrics::Metrics, notify::Notifier};

/// What one caller's reports came to: how many were new and how many already stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub new: u32,
    pub duplicates: u32,
}

struct Job {
    tenant: String,
    records: Vec<AttemptReport>,
    done: oneshot::Sender<Result<Recorded, String>>,
}

#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Job>,
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
        let task = tokio::spawn(write_loop(store, jobs, batch_max.max(1), health, metrics));
        (Self { queue }, task)
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

async fn write_loop(
    store: Store,
    mut jobs: mpsc::Receiver<Job>,
    batch_max: usize,
    health: Health,
    metrics: Arc<Metrics>,
) {
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
                Ok(other) => {
                    commit(&store, &other.tenant.clone(), vec![other], &health, &metrics).await;
                }
                Err(_) => break,
            }
        }
        commit(&store, &tenant, group, &health, &metrics).await;
    }
}

async fn commit(store: &Store, tenant: &str, group: Vec<Job>, health: &Health, metrics: &Metrics) {
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
