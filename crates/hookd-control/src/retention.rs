//! The retention purge: deliveries not changed for `history_retention_secs` go, with their
//! attempts, in bounded batches with a pause between them, so result writes (which share the
//! database, and on SQLite its single writer) never wait for more than one batch.
//!
//! Every control plane runs it; over one Postgres they simply share the work (a batch locks
//! its rows, and a delivery deleted by one is not found by the other).

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use hookd_storage::Store;

use crate::metrics::Metrics;

/// The pause between two batches of one purge run.
const PAUSE: Duration = Duration::from_millis(50);

/// Purges every `interval` until aborted. A zero `retention` keeps everything.
pub fn spawn(
    store: Store,
    retention: Duration,
    interval: Duration,
    batch: u64,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if retention.is_zero() {
            return;
        }
        let batch = batch.max(1);
        let mut every = tokio::time::interval(interval.max(Duration::from_secs(1)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Ok(retention) = chrono::Duration::from_std(retention) else { return };
            let cutoff = Utc::now() - retention;
            let mut purged = 0;
            loop {
                match store.purge_history(cutoff, batch).await {
                    Ok(n) => {
                        purged += n;
                        metrics.history_purged.inc_by(n);
                        if n < batch {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot purge the history; trying at the next run");
                        break;
                    }
                }
                tokio::time::sleep(PAUSE).await;
            }
            if purged > 0 {
                tracing::info!(purged, %cutoff, "history purged");
            }
        }
    })
}
