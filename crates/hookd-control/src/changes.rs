//! The in-process feed of definition changes (webhooks and catalog entries) that watching
//! dispatchers follow, with the acknowledgements that let a write return only once every
//! dispatcher has applied it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use hookd_core::{Webhook, WebhookId, catalog::EventTypeDef};
use tokio::sync::{broadcast, watch};

/// A change to one definition, as dispatchers need it.
#[derive(Debug, Clone)]
pub enum Change {
    /// The webhook's tenant travels with it: dispatchers match events by tenant.
    Upserted {
        tenant: String,
        webhook: Box<Webhook>,
    },
    Deleted(WebhookId),
    EventTypeUpserted {
        tenant: String,
        def: Box<EventTypeDef>,
    },
    EventTypeDeleted {
        tenant: String,
        name: String,
    },
}

/// The in-process feed of definition changes, numbered in the order they are sent, and the
/// watchers (dispatchers) that follow it with how far each has applied it. A watcher that
/// lags behind the feed gets a new snapshot instead, so the capacity bounds only memory.
#[derive(Clone)]
pub struct Changes(Arc<Feed>);

struct Feed {
    sender: broadcast::Sender<(u64, Change)>,
    /// The seq of the last change sent; held while sending so seq order is feed order.
    seq: Mutex<u64>,
    watchers: Mutex<HashMap<String, watch::Sender<u64>>>,
}

/// Removes its watcher from the registry when the watch stream ends.
pub struct Registration {
    changes: Changes,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.changes.0.watchers).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Changes {
    pub fn new() -> Self {
        Self(Arc::new(Feed {
            sender: broadcast::channel(4096).0,
            seq: Mutex::new(0),
            watchers: Mutex::default(),
        }))
    }

    /// A receiver of every change after the returned seq.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<(u64, Change)>) {
        let seq = lock(&self.0.seq);
        (*seq, self.0.sender.subscribe())
    }

    /// Watchers (dispatchers) following the feed now.
    pub fn watchers(&self) -> usize {
        lock(&self.0.watchers).len()
    }

    /// Registers a watcher that has applied nothing yet.
    pub fn register(&self, id: String) -> Registration {
        lock(&self.0.watchers).insert(id.clone(), watch::channel(0).0);
        Registration { changes: self.clone(), id }
    }

    /// Records that watcher `id` has applied everything up to `seq`.
    pub fn ack(&self, id: &str, seq: u64) {
        if let Some(applied) = lock(&self.0.watchers).get(id) {
            applied.send_if_modified(|current| {
                let newer = seq > *current;
                if newer {
                    *current = seq;
                }
                newer
            });
        }
    }

    fn announce(&self, change: Change) -> u64 {
        let mut seq = lock(&self.0.seq);
        *seq += 1;
        // No receivers (no dispatcher connected) is fine: they read a snapshot on connect.
        let _ = self.0.sender.send((*seq, change));
        *seq
    }

    /// Waits until every registered watcher has applied `seq`, or until `timeout`: a
    /// dispatcher that is gone or stuck must not block changes for long.
    async fn wait_applied(&self, seq: u64, timeout: Duration) {
        let watchers: Vec<(String, watch::Receiver<u64>)> = lock(&self.0.watchers)
            .iter()
            .map(|(id, applied)| (id.clone(), applied.subscribe()))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        for (id, mut applied) in watchers {
            let caught_up =
                tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= seq)).await;
            if !matches!(caught_up, Ok(Ok(_))) {
                tracing::warn!(watcher = %id, seq, "a dispatcher did not confirm a webhook change in time");
            }
        }
    }

    /// Announces `change` and returns once every watcher has applied it (or the deadline
    /// passed), so whoever made the change can publish events that depend on it at once.
    pub async fn publish(&self, change: Change) {
        let seq = self.announce(change);
        self.wait_applied(seq, APPLY_DEADLINE).await;
    }
}

/// How long a webhook change waits for dispatchers to confirm it.
const APPLY_DEADLINE: Duration = Duration::from_secs(2);
