//! The dispatcher's copy of the webhook definitions, kept current by the control plane's
//! watch stream. Reads are lock-free in practice (an `Arc` clone under a short read lock);
//! each change builds a new index, because changes are rare and lookups are per event.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use hookd_core::{EventType, Webhook, WebhookId, webhook::ALL_EVENT_TYPES};
use hookd_proto::{
    convert::webhook_from_proto,
    v1::{
        AckWebhooksRequest, WatchWebhooksRequest, dispatch_service_client::DispatchServiceClient,
        watch_webhooks_response::Change,
    },
};
use tokio::sync::watch;
use tonic::transport::Channel;

#[derive(Default)]
struct Index {
    by_id: HashMap<WebhookId, Arc<Webhook>>,
    by_type: HashMap<String, Vec<Arc<Webhook>>>,
    all_types: Vec<Arc<Webhook>>,
}

impl Index {
    fn build(by_id: HashMap<WebhookId, Arc<Webhook>>) -> Self {
        let mut by_type: HashMap<String, Vec<Arc<Webhook>>> = HashMap::new();
        let mut all_types = Vec::new();
        for webhook in by_id.values().filter(|w| w.spec.active) {
            for t in &webhook.spec.event_types {
                if t == ALL_EVENT_TYPES {
                    all_types.push(webhook.clone());
                } else {
                    by_type.entry(t.clone()).or_default().push(webhook.clone());
                }
            }
        }
        Self { by_id, by_type, all_types }
    }
}

/// Shared, cheaply cloned handle to the current definitions.
#[derive(Clone)]
pub struct Definitions {
    index: Arc<RwLock<Arc<Index>>>,
    ready: watch::Sender<bool>,
    /// Bumped on every applied change, for whoever waits for a particular webhook.
    version: watch::Sender<u64>,
}

impl Default for Definitions {
    fn default() -> Self {
        Self { index: Arc::default(), ready: watch::channel(false).0, version: watch::channel(0).0 }
    }
}

impl Definitions {
    fn current(&self) -> Arc<Index> {
        self.index
            .read()
            .map(|i| i.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn replace(&self, index: Index) {
        let mut slot = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(index);
        drop(slot);
        self.version.send_modify(|v| *v += 1);
    }

    /// Active webhooks subscribed to `event_type`, each once.
    pub fn matching(&self, event_type: &EventType) -> Vec<Arc<Webhook>> {
        let index = self.current();
        let mut out: Vec<Arc<Webhook>> =
            index.by_type.get(event_type.as_str()).cloned().unwrap_or_default();
        for w in &index.all_types {
            if !out.iter().any(|o| o.id == w.id) {
                out.push(w.clone());
            }
        }
        out
    }

    pub fn get(&self, id: &WebhookId) -> Option<Arc<Webhook>> {
        self.current().by_id.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.current().by_id.len()
    }

    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The webhook `id`, waiting up to `max_wait` for it to appear: a job can reach this
    /// dispatcher a moment before the change that created its webhook does.
    pub async fn wait_for(&self, id: &WebhookId, max_wait: Duration) -> Option<Arc<Webhook>> {
        let mut version = self.version.subscribe();
        let found = async {
            loop {
                if let Some(webhook) = self.get(id) {
                    return Some(webhook);
                }
                version.changed().await.ok()?;
            }
        };
        tokio::time::timeout(max_wait, found).await.ok().flatten()
    }

    /// Resolves once the first complete snapshot has arrived.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    fn apply(
        &self,
        change: Change,
        pending_snapshot: &mut Option<HashMap<WebhookId, Arc<Webhook>>>,
    ) {
        match change {
            Change::Snapshot(page) => {
                let building = pending_snapshot.get_or_insert_with(HashMap::new);
                for w in page.webhooks {
                    let w = webhook_from_proto(w);
                    building.insert(w.id.clone(), Arc::new(w));
                }
                if page.complete {
                    let complete = pending_snapshot.take().unwrap_or_default();
                    tracing::info!(webhooks = complete.len(), "definitions snapshot loaded");
                    self.replace(Index::build(complete));
                    self.ready.send_replace(true);
                }
            }
            Change::Upserted(w) => {
                let w = webhook_from_proto(w);
                tracing::debug!(webhook_id = %w.id, active = w.spec.active, "webhook changed");
                let mut by_id = self.current().by_id.clone();
                by_id.insert(w.id.clone(), Arc::new(w));
                self.replace(Index::build(by_id));
            }
            // The catalog is not used by the dispatcher yet.
            Change::EventTypeUpserted(_) | Change::EventTypeDeleted(_) => {}
            Change::DeletedId(id) => {
                tracing::debug!(webhook_id = %id, "webhook deleted");
                let mut by_id = self.current().by_id.clone();
                by_id.remove(&WebhookId::from(id));
                self.replace(Index::build(by_id));
            }
        }
    }

    /// Follows the control plane's watch stream for ever, reconnecting with backoff, and
    /// confirms each applied change (the control plane's writers wait for that). While
    /// disconnected the last known definitions stay in force, so deliveries go on.
    pub async fn follow(self, mut client: DispatchServiceClient<Channel>, apply_delay: Duration) {
        let (applied, applied_rx) = watch::channel((String::new(), 0u64));
        tokio::spawn(confirm_applied(client.clone(), applied_rx));
        let mut backoff = Duration::from_millis(100);
        loop {
            let watcher_id = format!("dispatcher-{}", uuid::Uuid::now_v7().simple());
            match client
                .watch_webhooks(WatchWebhooksRequest { watcher_id: watcher_id.clone() })
                .await
            {
                Ok(response) => {
                    backoff = Duration::from_millis(100);
                    let mut stream = response.into_inner();
                    let mut pending = None;
                    loop {
                        match stream.message().await {
                            Ok(Some(msg)) => {
                                if !apply_delay.is_zero() {
                                    tokio::time::sleep(apply_delay).await;
                                }
                                if let Some(change) = msg.change {
                                    self.apply(change, &mut pending);
                                }
                                // A snapshot counts as applied only once complete.
                                if pending.is_none() {
                                    applied.send_replace((watcher_id.clone(), msg.seq));
                                }
                            }
                            Ok(None) => {
                                tracing::warn!("control plane ended the definitions watch");
                                break;
                            }
                            Err(status) => {
                                tracing::warn!(error = %status.message(), "definitions watch broke");
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    tracing::warn!(error = %status.message(), code = ?status.code(), "cannot watch definitions");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Tells the control plane how far the definitions are applied. Confirmations coalesce: only
/// the latest position is sent, once per round trip.
async fn confirm_applied(
    mut client: DispatchServiceClient<Channel>,
    mut applied: watch::Receiver<(String, u64)>,
) {
    while applied.changed().await.is_ok() {
        let (watcher_id, seq) = applied.borrow_and_update().clone();
        if let Err(status) = client.ack_webhooks(AckWebhooksRequest { watcher_id, seq }).await {
            tracing::debug!(error = %status.message(), "cannot confirm applied definitions");
        }
    }
}

#[cfg(test)]
mod tests {
    use hookd_proto::v1;

    use super::*;

    fn wire(id: &str, types: &[&str], active: bool) -> v1::Webhook {
        v1::Webhook {
            id: id.into(),
            name: id.into(),
            url: "http://127.0.0.1:1/".into(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            active,
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_then_changes_decide_who_matches() {
        let defs = Definitions::default();
        let mut pending = None;
        let t = EventType::parse("contact-created").expect("valid");
        defs.apply(
            Change::Snapshot(v1::SnapshotPage {
                webhooks: vec![wire("wh_a", &["contact-created"], true)],
                complete: false,
                event_types: vec![],
            }),
            &mut pending,
        );
        assert!(!defs.is_ready(), "not ready before the snapshot is complete");
        defs.apply(
            Change::Snapshot(v1::SnapshotPage {
                webhooks: vec![
                    wire("wh_b", &["*"], true),
                    wire("wh_c", &["contact-created"], false),
                ],
                complete: true,
                event_types: vec![],
            }),
            &mut pending,
        );
        assert!(defs.is_ready());
        let mut ids: Vec<String> = defs.matching(&t).iter().map(|w| w.id.to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["wh_a", "wh_b"], "inactive wh_c must not match");

        defs.apply(Change::DeletedId("wh_a".into()), &mut pending);
        defs.apply(Change::Upserted(wire("wh_c", &["contact-created"], true)), &mut pending);
        let mut ids: Vec<String> = defs.matching(&t).iter().map(|w| w.id.to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["wh_b", "wh_c"]);
        assert!(defs.get(&WebhookId::from("wh_a")).is_none());
    }
}
