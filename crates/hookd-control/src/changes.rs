//! The feed of definition changes (webhooks and catalog entries) that watching dispatchers
//! follow, with the acknowledgements that let a write return only once every dispatcher, of
//! this control plane and of every other live replica, has applied it.
//!
//! Control planes run as replicas over one database, each with its own dispatchers. A replica
//! that writes a definition announces it to its own feed and sends a hint (kind, tenant, id;
//! never the definition, so never a secret) on [`peers::HINT_SUBJECT`]; every other replica
//! reads the row back from the database and announces what it finds to its feed (see
//! [`peers`]). Architecture invariant: the dispatchers still learn everything from a control
//! plane and never touch the database.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use hookd_core::{Webhook, WebhookId, catalog::EventTypeDef};
use tokio::sync::{broadcast, watch};

pub mod peers;

/// A change to one definition, as dispatchers need it.
#[derive(Debug, Clone)]
pub enum Change {
    /// The webhook's tenant travels with it: dispatchers match events by tenant.
    Upserted {
        tenant: String,
        webhook: Box<Webhook>,
    },
    Deleted {
        tenant: String,
        id: WebhookId,
    },
    EventTypeUpserted {
        tenant: String,
        def: Box<EventTypeDef>,
    },
    EventTypeDeleted {
        tenant: String,
        name: String,
    },
    /// Changes may have been missed (a replica lost its link to the others for a while):
    /// watchers start over from a new snapshot.
    Resync,
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
    /// The other replicas, once connected.
    peers: std::sync::OnceLock<peers::Peers>,
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
            peers: std::sync::OnceLock::new(),
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
    pub(crate) async fn wait_applied(&self, seq: u64, timeout: Duration) {
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

    /// Announces `change` and returns once every watcher of this replica, and of every other
    /// live replica, has applied it (or the deadline passed), so whoever made the change can
    /// publish events that depend on it at once, whichever dispatcher takes them.
    pub async fn publish(&self, change: Change) {
        let hint = peers::Hint::of(&change);
        let seq = self.announce(change);
        let others = async {
            if let Some(hint) = hint {
                self.tell_peers(hint).await;
            }
        };
        tokio::join!(others, self.wait_applied(seq, APPLY_DEADLINE));
    }

    /// Tells the other replicas that something changed and waits until they applied it (a
    /// no-op before [`Changes::connect_peers`]).
    pub async fn tell_peers(&self, hint: peers::Hint) {
        if let Some(peers) = self.0.peers.get() {
            peers.send(hint, APPLY_DEADLINE).await;
        }
    }

    /// Sends the hints of this replica's changes to the others from now on.
    pub fn connect_peers(&self, nats: async_nats::Client) {
        let _ = self.0.peers.set(peers::Peers::new(nats));
    }

    /// Other replicas heard from lately (0 before [`Changes::connect_peers`]).
    pub fn live_peers(&self) -> usize {
        self.0.peers.get().map_or(0, |p| p.live().len())
    }

    /// This replica's name in its hints, once connected.
    fn origin(&self) -> Option<&str> {
        self.0.peers.get().map(peers::Peers::origin)
    }
}

/// How long a webhook change waits for dispatchers to confirm it.
const APPLY_DEADLINE: Duration = Duration::from_secs(2);
