//! Batched reporting of attempt results to the control plane. Results queue here; one task
//! sends them in batches and retries a batch until the control plane has stored it. A
//! delivery is acknowledged on NATS only after its result is stored, and a failed write is
//! retried as a write, never by repeating the HTTP call.
//!
//! A batch that is not full waits a little (`linger`) for more results: nobody waits for it
//! but the acknowledgement, and at moderate rates that turns a call, a transaction and an ack
//! round per attempt into one per batch. An *urgent* result (one another delivery waits for:
//! the head of an ordered key's line) sends its batch at once.
//!
//! Counts of events the fan-out refused (their data did not satisfy their type's schema) and
//! of jobs kept for deactivated webhooks ride along with the next batch, or go alone at most
//! once a second when no attempts are made.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use crate::{ControlClient, metrics::Metrics};
use hookd_proto::v1::{
    AttemptReport, FilteredEvents, KeptJobs, RejectedEvents, ReportAttemptsRequest,
};
use tokio::{
    sync::{Notify, Semaphore, mpsc, oneshot},
    task::JoinSet,
    time::Instant,
};

/// Report calls in flight at once.
const CALLS_IN_FLIGHT: usize = 4;
/// Counts are sent on their own at most this often (they also ride on every batch).
const REJECTED_EVERY: Duration = Duration::from_secs(1);

/// Counts that ride along with the reports, shared by the stages that count and the report
/// loop that sends and resets them: events refused by their type's schema (by tenant and
/// type), and jobs newly kept in deactivated webhooks' buffers (by tenant and webhook).
#[derive(Clone, Default)]
pub struct Tallies {
    inner: Arc<TalliesInner>,
}

#[derive(Default)]
struct TalliesInner {
    /// (tenant, event type) → (count, last error).
    rejected: Mutex<HashMap<(String, String), (u64, String)>>,
    /// (tenant, webhook id) → count.
    kept: Mutex<HashMap<(String, String), u64>>,
    /// (tenant, webhook id) → events its filter rejected.
    filtered: Mutex<HashMap<(String, String), u64>>,
    added: Notify,
}

/// What the report loop takes from [`Tallies`].
#[derive(Default)]
pub struct Taken {
    pub rejected: Vec<RejectedEvents>,
    pub kept: Vec<KeptJobs>,
    pub filtered: Vec<FilteredEvents>,
}

impl Taken {
    fn is_empty(&self) -> bool {
        self.rejected.is_empty() && self.kept.is_empty() && self.filtered.is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Tallies {
    /// Counts a refused event under the tenant and type its subject names, keeping the last
    /// error, bounded (it may quote the producer's values or a schema's).
    pub fn count(&self, tenant: &str, event_type: &str, error: &str) {
        let error = hookd_core::text::bound_message(error);
        let mut counts = lock(&self.inner.rejected);
        let entry = counts.entry((tenant.to_owned(), event_type.to_owned())).or_default();
        entry.0 += 1;
        error.as_ref().clone_into(&mut entry.1);
        drop(counts);
        // Stores a permit if the loop is not waiting, so no count goes unnoticed.
        self.inner.added.notify_one();
    }

    /// Counts a job newly stored in a webhook's buffer (not a repeated park the stream
    /// deduplicated).
    pub fn kept(&self, tenant: &str, webhook_id: &str) {
        *lock(&self.inner.kept).entry((tenant.to_owned(), webhook_id.to_owned())).or_default() += 1;
        self.inner.added.notify_one();
    }

    /// Counts an event a webhook's filter rejected.
    pub fn filtered(&self, tenant: &str, webhook_id: &str) {
        *lock(&self.inner.filtered)
            .entry((tenant.to_owned(), webhook_id.to_owned()))
            .or_default() += 1;
        self.inner.added.notify_one();
    }

    /// The rejections counted so far, resetting them.
    pub fn take_rejected(&self) -> Vec<RejectedEvents> {
        lock(&self.inner.rejected)
            .drain()
            .map(|((tenant, event_type), (count, error))| RejectedEvents {
                tenant,
                event_type,
                count,
                error,
            })
            .collect()
    }

    /// Everything counted so far, resetting the counts.
    pub fn take(&self) -> Taken {
        let kept = lock(&self.inner.kept)
            .drain()
            .map(|((tenant, webhook_id), count)| KeptJobs { tenant, webhook_id, count })
            .collect();
        let filtered = lock(&self.inner.filtered)
            .drain()
            .map(|((tenant, webhook_id), count)| FilteredEvents { tenant, webhook_id, count })
            .collect();
        Taken { rejected: self.take_rejected(), kept, filtered }
    }

    fn is_empty(&self) -> bool {
        lock(&self.inner.rejected).is_empty()
            && lock(&self.inner.kept).is_empty()
            && lock(&self.inner.filtered).is_empty()
    }

    /// Resolves once there are counts to send and `not_before` has passed.
    async fn due(&self, not_before: Instant) {
        loop {
            if !self.is_empty() {
                tokio::time::sleep_until(not_before).await;
                return;
            }
            self.inner.added.notified().await;
        }
    }
}

struct Pending {
    report: AttemptReport,
    stored: oneshot::Sender<()>,
    urgent: bool,
}

/// Whether anything but the acknowledgement waits for a result to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Only the message's settlement: the result may wait for the batch to fill or linger.
    Batched,
    /// Another delivery waits for it (an ordered key's next job): its batch goes at once.
    Now,
}

/// How reports are grouped into calls: at most `max` a call, and a call that is not full
/// waits up to `linger` for more.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max: usize,
    pub linger: Duration,
}

#[derive(Clone)]
pub struct Reporter {
    queue: mpsc::Sender<Pending>,
}

/// Resolves once the report is stored; errors only if the reporter shut down first.
pub type Stored = oneshot::Receiver<()>;

impl Reporter {
    /// `buffer` bounds the results held while the control plane is unreachable; when it is
    /// full, [`Reporter::submit`] waits, which in turn stops new deliveries.
    pub fn spawn(
        client: ControlClient,
        batching: Batching,
        buffer: usize,
        tallies: Tallies,
        metrics: Arc<Metrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(buffer.max(1));
        let batching = Batching { max: batching.max.max(1), ..batching };
        let task = tokio::spawn(send_loop(client, rx, batching, tallies, metrics));
        (Self { queue }, task)
    }

    pub async fn submit(&self, report: AttemptReport, urgency: Urgency) -> Stored {
        let (stored, rx) = oneshot::channel();
        let urgent = urgency == Urgency::Now;
        // If the loop is gone the receiver reports the error to the caller.
        let _ = self.queue.send(Pending { report, stored, urgent }).await;
        rx
    }
}

async fn send_loop(
    client: ControlClient,
    mut rx: mpsc::Receiver<Pending>,
    batching: Batching,
    tallies: Tallies,
    metrics: Arc<Metrics>,
) {
    let batch_max = batching.max;
    // Several calls in flight: each waits for a database commit, and the control plane merges
    // concurrent calls into one transaction, so overlapping them multiplies throughput.
    let in_flight = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
    let mut calls = JoinSet::new();
    let mut next_rejected = Instant::now();
    loop {
        let mut batch: Vec<Pending> = Vec::with_capacity(batch_max);
        // Both branches are cancel-safe: an unfinished receive loses no message, and counts
        // stay counted until taken.
        tokio::select! {
            received = rx.recv_many(&mut batch, batch_max) => {
                // Ends when every sender is dropped and the queue is drained.
                if received == 0 {
                    break;
                }
                linger(&mut rx, &mut batch, batching).await;
            }
            () = tallies.due(next_rejected) => {}
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let counts = tallies.take();
        if !counts.is_empty() {
            next_rejected = Instant::now() + REJECTED_EVERY;
        } else if batch.is_empty() {
            continue;
        }
        let client = client.clone();
        #[allow(clippy::cast_precision_loss)]
        metrics.report_batch.observe(batch.len() as f64);
        calls.spawn(async move {
            send_batch(client, batch, counts).await;
            drop(permit);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    let counts = tallies.take();
    if !counts.is_empty() {
        send_batch(client, Vec::new(), counts).await;
    }
}

/// Lets a batch that is not full wait up to `batching.linger` for more reports, unless one
/// of them is urgent (cancel-safe like `recv_many`: a report received is in `batch`).
async fn linger(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, batching: Batching) {
    if batching.linger.is_zero() {
        return;
    }
    let until = Instant::now() + batching.linger;
    let mut seen = 0;
    while batch.len() < batching.max {
        if batch[seen..].iter().any(|p| p.urgent) {
            return;
        }
        seen = batch.len();
        let room = batching.max - batch.len();
        match tokio::time::timeout_at(until, rx.recv_many(batch, room)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Sends one batch until the control plane has stored it, then tells each waiting delivery.
async fn send_batch(mut client: ControlClient, batch: Vec<Pending>, counts: Taken) {
    // Move the reports out rather than copying them: they carry payloads and events.
    let (reports, waiting): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.report, p.stored)).unzip();
    // Resent as is on failure: a call that was stored but whose answer was lost counts the
    // counts twice, which is the lesser harm for a counter.
    let request = ReportAttemptsRequest {
        reports,
        rejected: counts.rejected,
        kept: counts.kept,
        filtered: counts.filtered,
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        match client.report_attempts(request.clone()).await {
            Ok(response) => {
                let r = response.into_inner();
                tracing::debug!(
                    recorded = r.recorded,
                    duplicates = r.duplicates,
                    "attempts reported"
                );
                break;
            }
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                // Retrying cannot help a batch the control plane rejects as malformed;
                // this is a bug, so say so loudly and let the deliveries go on.
                tracing::error!(error = %status.message(), "control plane rejected attempt reports");
                break;
            }
            Err(status) => {
                tracing::warn!(
                    error = %status.message(),
                    code = ?status.code(),
                    reports = request.reports.len(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot report attempts; keeping them and retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    for stored in waiting {
        let _ = stored.send(());
    }
}

#[cfg(test)]
mod tests {
    use std::{pin::Pin, sync::atomic::AtomicUsize};

    use hookd_proto::v1::{
        self,
        dispatch_service_server::{DispatchService, DispatchServiceServer},
    };
    use tonic::{Request, Response, Status};

    use super::*;

    /// A loopback control plane that records every `ReportAttempts` call and refuses the first
    /// `fail_first` of them as unavailable (a database outage).
    #[derive(Clone, Default)]
    struct Control {
        calls: Arc<Mutex<Vec<ReportAttemptsRequest>>>,
        fail_first: usize,
        answered: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl DispatchService for Control {
        type WatchWebhooksStream =
            Pin<Box<dyn futures::Stream<Item = Result<v1::WatchWebhooksResponse, Status>> + Send>>;

        async fn watch_webhooks(
            &self,
            _: Request<v1::WatchWebhooksRequest>,
        ) -> Result<Response<Self::WatchWebhooksStream>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn ack_webhooks(
            &self,
            _: Request<v1::AckWebhooksRequest>,
        ) -> Result<Response<v1::AckWebhooksResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn report_attempts(
            &self,
            request: Request<ReportAttemptsRequest>,
        ) -> Result<Response<v1::ReportAttemptsResponse>, Status> {
            let n = self.answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < self.fail_first {
                return Err(Status::unavailable("database down"));
            }
            let request = request.into_inner();
            let recorded = u32::try_from(request.reports.len()).unwrap_or(u32::MAX);
            lock(&self.calls).push(request);
            Ok(Response::new(v1::ReportAttemptsResponse { recorded, duplicates: 0 }))
        }

        async fn get_delivery_progress(
            &self,
            _: Request<v1::GetDeliveryProgressRequest>,
        ) -> Result<Response<v1::GetDeliveryProgressResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn get_access_token(
            &self,
            _: Request<v1::GetAccessTokenRequest>,
        ) -> Result<Response<v1::GetAccessTokenResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    async fn reporter(
        control: Control,
        batch_max: usize,
        linger: Duration,
        tallies: Tallies,
    ) -> Reporter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DispatchServiceServer::new(control))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("valid url")
            .connect_lazy();
        let client = crate::control_client(channel, "test-dispatcher-token");
        let batching = Batching { max: batch_max, linger };
        Reporter::spawn(client, batching, 1_000, tallies, Arc::new(Metrics::new())).0
    }

    fn report(n: usize) -> AttemptReport {
        AttemptReport { delivery_id: format!("dlv_{n}"), ..Default::default() }
    }

    /// Reports submitted together go in batches of at most `batch_max`, each is confirmed only
    /// after the control plane stored it, and a refused call is sent again until it is
    /// stored: nothing is lost and every waiting delivery hears back.
    #[tokio::test]
    async fn reports_go_in_bounded_batches_and_are_retried_until_stored() {
        let control = Control { fail_first: 2, ..Control::default() };
        let tallies = Tallies::default();
        tallies.count("acme", "contact-created", "data/email: missing");
        tallies.kept("acme", "wh_1");
        let reporter = reporter(control.clone(), 10, Duration::ZERO, tallies).await;

        let mut waiting = Vec::new();
        for n in 0..45 {
            waiting.push(reporter.submit(report(n), Urgency::Batched).await);
        }
        let all = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(waiting))
            .await
            .expect("every report is confirmed within 10 s");
        assert!(all.iter().all(Result::is_ok), "every delivery hears that its result is stored");

        let calls = lock(&control.calls).clone();
        assert!(control.answered.load(std::sync::atomic::Ordering::SeqCst) >= calls.len() + 2);
        assert!(calls.iter().all(|c| c.reports.len() <= 10), "batches of at most batch_max");
        let mut ids: Vec<String> =
            calls.iter().flat_map(|c| c.reports.iter().map(|r| r.delivery_id.clone())).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 45, "every report stored, none lost");
        let rejected: u64 = calls.iter().flat_map(|c| &c.rejected).map(|r| r.count).sum();
        let kept: u64 = calls.iter().flat_map(|c| &c.kept).map(|k| k.count).sum();
        assert_eq!((rejected, kept), (1, 1), "the counts ride along once");
    }

    /// Reports trickling in one at a time go out together when they come within the linger:
    /// one call (and one transaction) for several attempts at a steady rate.
    #[tokio::test]
    async fn reports_that_come_within_the_linger_share_a_call() {
        let control = Control::default();
        let reporter =
            reporter(control.clone(), 100, Duration::from_millis(200), Tallies::default()).await;
        let mut waiting = Vec::new();
        for n in 0..5 {
            waiting.push(reporter.submit(report(n), Urgency::Batched).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for stored in waiting {
            tokio::time::timeout(Duration::from_secs(5), stored)
                .await
                .expect("confirmed within 5 s")
                .expect("stored");
        }
        let calls = lock(&control.calls).clone();
        assert_eq!(calls.len(), 1, "one call for five reports 10 ms apart: {}", calls.len());
        assert_eq!(calls[0].reports.len(), 5);
    }

    /// An urgent report (an ordered key's next job waits for it) does not wait out the
    /// linger: it goes at once with the reports batched before it.
    #[tokio::test]
    async fn an_urgent_report_sends_its_batch_at_once() {
        let control = Control::default();
        let reporter =
            reporter(control.clone(), 100, Duration::from_secs(30), Tallies::default()).await;
        let batched = reporter.submit(report(0), Urgency::Batched).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let urgent = reporter.submit(report(1), Urgency::Now).await;
        for stored in [batched, urgent] {
            tokio::time::timeout(Duration::from_secs(5), stored)
                .await
                .expect("confirmed within 5 s, not after the 30 s linger")
                .expect("stored");
        }
        let calls = lock(&control.calls).clone();
        assert_eq!(calls.len(), 1, "one call: {}", calls.len());
        assert_eq!(calls[0].reports.len(), 2);
    }
}
