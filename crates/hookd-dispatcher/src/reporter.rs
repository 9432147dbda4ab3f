//! Batched reporting of attempt results to the control plane. Results queue here; one task
//! sends them in batches and retries a batch until the control plane has stored it. A
//! delivery is acknowledged on NATS only after its result is stored, and a failed write is
//! retried as a write, never by repeating the HTTP call.

use std::{sync::Arc, time::Duration};

use hookd_proto::v1::{
    AttemptReport, ReportAttemptsRequest, dispatch_service_client::DispatchServiceClient,
};
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinSet,
};

/// Report calls in flight at once.
const CALLS_IN_FLIGHT: usize = 4;
use tonic::transport::Channel;

struct Pending {
    report: AttemptReport,
    stored: oneshot::Sender<()>,
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
        client: DispatchServiceClient<Channel>,
        batch_max: usize,
        buffer: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(buffer.max(1));
        let task = tokio::spawn(send_loop(client, rx, batch_max.max(1)));
        (Self { queue }, task)
    }

    pub async fn submit(&self, report: AttemptReport) -> Stored {
        let (stored, rx) = oneshot::channel();
        // If the loop is gone the receiver reports the error to the caller.
        let _ = self.queue.send(Pending { report, stored }).await;
        rx
    }
}

async fn send_loop(
    client: DispatchServiceClient<Channel>,
    mut rx: mpsc::Receiver<Pending>,
    batch_max: usize,
) {
    // Several calls in flight: each waits for a database commit, and the control plane merges
    // concurrent calls into one transaction, so overlapping them multiplies throughput.
    let in_flight = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
    let mut calls = JoinSet::new();
    loop {
        let mut batch: Vec<Pending> = Vec::with_capacity(batch_max);
        // Ends when every sender is dropped and the queue is drained.
        if rx.recv_many(&mut batch, batch_max).await == 0 {
            break;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let client = client.clone();
        calls.spawn(async move {
            send_batch(client, batch).await;
            drop(permit);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

/// Sends one batch until the control plane has stored it, then tells each waiting delivery.
async fn send_batch(mut client: DispatchServiceClient<Channel>, batch: Vec<Pending>) {
    // Move the reports out rather than copying them: they carry payloads and events.
    let (reports, waiting): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.report, p.stored)).unzip();
    let request = ReportAttemptsRequest { reports, rejected: vec![] };
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
