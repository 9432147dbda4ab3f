//! The dispatcher's copy of the webhook definitions, kept current by the control plane's
//! watch stream. Reads are lock-free in practice (an `Arc` clone under a short read lock);
//! each change builds a new index, because changes are rare and lookups are per event.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use hookd_core::{EventType, Webhook, WebhookId, webhook::ALL_EVENT_TYPES};
use hookd_proto::{
    convert::{from_timestamp, webhook_from_proto},
    v1::{
        WatchWebhooksRequest, dispatch_service_client::DispatchServiceClient,
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
    /// Control plane time up to which the definitions are known to be complete.
    as_of: watch::Sender<Option<DateTime<Utc>>>,
}

impl Default for Definitions {
    fn default() -> Self {
        Self {
            index: Arc::default(),
            ready: watch::channel(false).0,
            as_of: watch::channel(None).0,
        }
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

    /// Waits until the definitions are complete up to `published` (so a webhook created
    /// before an event was published is known when the event is fanned out), or until
    /// `max_wait` has passed. Returns whether they are.
    pub async fn wait_current(&self, published: DateTime<Utc>, max_wait: Duration) -> bool {
        let mut rx = self.as_of.subscribe();
        let current = |as_of: &Option<DateTime<Utc>>| as_of.is_some_and(|t| t >= published);
        match *rx.borrow() {
            // Not watching (control plane unreachable): waiting would only slow every event.
            None => return false,
            Some(as_of) if as_of >= published => return true,
            Some(_) => {}
        }
        tokio::time::timeout(max_wait, rx.wait_for(current)).await.is_ok_and(|r| r.is_ok())
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
            Change::DeletedId(id) => {
                tracing::debug!(webhook_id = %id, "webhook deleted");
                let mut by_id = self.current().by_id.clone();
                by_id.remove(&WebhookId::from(id));
                self.replace(Index::build(by_id));
            }
        }
    }

    /// Follows the control plane's watch stream for ever, reconnecting with backoff. While
    /// disconnected the last known definitions stay in force, so deliveries go on.
    pub async fn follow(self, mut client: DispatchServiceClient<Channel>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match client.watch_webhooks(WatchWebhooksRequest {}).await {
                Ok(response) => {
                    backoff = Duration::from_millis(100);
                    let mut stream = response.into_inner();
                    let mut pending = None;
                    loop {
                        match stream.message().await {
                            Ok(Some(msg)) => {
                                if let Some(change) = msg.change {
                                    self.apply(change, &mut pending);
                                }
                                // Only a complete snapshot makes the definitions current.
                                if pending.is_none() {
                                    let as_of = msg.as_of.as_ref().and_then(from_timestamp);
                                    self.as_of.send_replace(as_of);
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
            self.as_of.send_replace(None);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
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
