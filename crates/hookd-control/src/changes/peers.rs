//! Definition changes between control-plane replicas: each write is followed by a hint on a
//! plain NATS subject, and every replica turns the hints of the others into changes of its
//! own feed by reading the row back from the database.
//!
//! Reading back instead of shipping the definition keeps secrets off the wire and makes the
//! hints idempotent and order-tolerant: whatever hint arrives, the replica announces the
//! row as it is now (or its deletion). A hint lost while a replica was cut off from NATS is
//! made up for on reconnection: its watchers get a new snapshot and its catalog and token
//! table are read again.
//!
//! A write is in force on every replica when its RPC returns: each replica says it is alive on
//! [`ALIVE_SUBJECT`] every second, a hint goes out as a request, and every other replica
//! answers it once its own dispatchers have applied the change; the writer waits for an
//! answer from each replica it has heard from lately (within the same 2 s cap as its own
//! dispatchers), so a replica that died is waited for only until its heartbeats stop counting.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use futures::StreamExt;
use hookd_core::WebhookId;
use hookd_storage::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{Change, Changes};
use crate::{ControlError, auth::TokenTable, catalog::Catalog};

/// Where replicas hint at their writes. Core NATS, not JetStream: a hint is worthless once
/// every running replica has seen it, and a replica that starts later reads everything anew.
pub const HINT_SUBJECT: &str = "hookd.internal.changes";
/// Where each replica says, every [`ALIVE_EVERY`], that it is running (the body is its name).
pub const ALIVE_SUBJECT: &str = "hookd.internal.replicas";
const ALIVE_EVERY: Duration = Duration::from_secs(1);
/// A replica not heard from for this long is not waited for.
const ALIVE_FOR: Duration = Duration::from_secs(3);

/// What changed: enough to find the row, nothing of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    pub kind: HintKind,
    pub tenant: String,
    /// The webhook id, the event type's name, or empty for access changes.
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HintKind {
    Webhook,
    EventType,
    /// Roles or API tokens: the token table is read again.
    Access,
}

/// A hint as sent, naming the replica it came from so that replica can skip its own.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    origin: String,
    #[serde(flatten)]
    hint: Hint,
}

impl Hint {
    /// The hint for a change of this replica's feed; `None` for a resync, which is local.
    pub fn of(change: &Change) -> Option<Hint> {
        let (kind, tenant, key) = match change {
            Change::Upserted { tenant, webhook } => {
                (HintKind::Webhook, tenant, webhook.id.as_str())
            }
            Change::Deleted { tenant, id } => (HintKind::Webhook, tenant, id.as_str()),
            Change::EventTypeUpserted { tenant, def } => {
                (HintKind::EventType, tenant, def.spec.name.as_str())
            }
            Change::EventTypeDeleted { tenant, name } => {
                (HintKind::EventType, tenant, name.as_str())
            }
            Change::Resync => return None,
        };
        Some(Hint { kind, tenant: tenant.clone(), key: key.to_owned() })
    }

    pub fn access(tenant: &str) -> Hint {
        Hint { kind: HintKind::Access, tenant: tenant.to_owned(), key: String::new() }
    }
}

/// The sending side: this replica's NATS connection, its name in the hints, and the other
/// replicas it has heard from.
pub struct Peers {
    nats: async_nats::Client,
    origin: String,
    /// Replica name → when it last said it is alive.
    alive: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Peers {
    /// Starts saying this replica is alive, and listening to the others doing so.
    pub fn new(nats: async_nats::Client) -> Self {
        let peers = Self {
            nats,
            origin: format!("cp_{}", uuid::Uuid::now_v7().simple()),
            alive: Arc::default(),
        };
        peers.keep_in_touch();
        peers
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn keep_in_touch(&self) {
        let (nats, origin, alive) = (self.nats.clone(), self.origin.clone(), self.alive.clone());
        tokio::spawn(async move {
            let mut heard = match nats.subscribe(ALIVE_SUBJECT).await {
                Ok(s) => s,
                Err(error) => {
                    return tracing::warn!(%error, "cannot follow the other control planes");
                }
            };
            let mut every = tokio::time::interval(ALIVE_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let _ = nats.publish(ALIVE_SUBJECT, origin.clone().into()).await;
                    }
                    message = heard.next() => {
                        let Some(message) = message else { return };
                        let name = String::from_utf8_lossy(&message.payload).into_owned();
                        if name != origin {
                            let mut alive = alive.lock().unwrap_or_else(PoisonError::into_inner);
                            alive.insert(name, Instant::now());
                            alive.retain(|_, seen| seen.elapsed() < ALIVE_FOR * 10);
                        }
                    }
                }
            }
        });
    }

    /// The replicas heard from lately.
    pub fn live(&self) -> HashSet<String> {
        let alive = self.alive.lock().unwrap_or_else(PoisonError::into_inner);
        alive
            .iter()
            .filter(|(_, seen)| seen.elapsed() < ALIVE_FOR)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Sends the hint and waits (up to `deadline`) until every live replica answered that its
    /// dispatchers applied it. Best effort: the write is committed either way, and a replica
    /// that misses the hint still serves the change with its watchers' next snapshot.
    pub async fn send(&self, hint: Hint, deadline: Duration) {
        let wire = Wire { origin: self.origin.clone(), hint };
        let body = match serde_json::to_vec(&wire) {
            Ok(body) => body,
            Err(error) => return tracing::warn!(%error, "cannot encode a change hint"),
        };
        let mut waiting = self.live();
        let inbox = self.nats.new_inbox();
        let answers = if waiting.is_empty() {
            None
        } else {
            match self.nats.subscribe(inbox.clone()).await {
                Ok(answers) => Some(answers),
                Err(error) => {
                    tracing::warn!(%error, "cannot wait for the other control planes");
                    None
                }
            }
        };
        let sent = match &answers {
            Some(_) => self.nats.publish_with_reply(HINT_SUBJECT, inbox, body.into()).await,
            None => self.nats.publish(HINT_SUBJECT, body.into()).await,
        };
        if let Err(error) = sent {
            return tracing::warn!(%error, "cannot tell the other control planes about a change");
        }
        let Some(mut answers) = answers else { return };
        let until = tokio::time::Instant::now() + deadline;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(until, answers.next()).await {
                Ok(Some(answer)) => {
                    waiting.remove(String::from_utf8_lossy(&answer.payload).as_ref());
                }
                Ok(None) | Err(_) => {
                    tracing::warn!(replicas = ?waiting, "control planes did not confirm a change in time");
                    return;
                }
            }
        }
    }
}

/// The receiving side: what a replica updates when another one wrote.
pub struct Follower {
    pub nats: async_nats::Client,
    pub changes: Changes,
    pub store: Store,
    pub catalog: Catalog,
    pub tokens: TokenTable,
}

impl Follower {
    /// Subscribes to the hints (before returning, so none sent afterwards is missed) and
    /// follows them in a task; `reconnected` is notified when the NATS link came back.
    pub async fn spawn(
        self,
        nats: &async_nats::Client,
        reconnected: Arc<Notify>,
    ) -> Result<tokio::task::JoinHandle<()>, ControlError> {
        let mut hints = nats
            .subscribe(HINT_SUBJECT)
            .await
            .map_err(|e| ControlError::Unavailable(format!("cannot follow other replicas: {e}")))?;
        // `subscribe` only queues the request: the round trip of a flush makes sure the
        // server has it before this replica says it is ready. Without it a busy machine let
        // a hint sent right after the start reach nobody (the catalog test on Postgres).
        nats.flush()
            .await
            .map_err(|e| ControlError::Unavailable(format!("cannot follow other replicas: {e}")))?;
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    hint = hints.next() => match hint {
                        Some(message) => self.apply(message).await,
                        None => return,
                    },
                    () = reconnected.notified() => self.resync().await,
                }
            }
        }))
    }

    /// Announces what the hint names and, in its own task, answers the writer once this
    /// replica's dispatchers have applied it (announcing stays in hint order; waiting does not
    /// hold up the next hint).
    async fn apply(&self, message: async_nats::Message) {
        let wire: Wire = match serde_json::from_slice(&message.payload) {
            Ok(wire) => wire,
            Err(error) => return tracing::warn!(%error, "ignoring a malformed change hint"),
        };
        if self.changes.origin() == Some(wire.origin.as_str()) {
            return; // Our own write, announced already.
        }
        let Hint { kind, tenant, key } = wire.hint;
        tracing::debug!(?kind, %tenant, %key, origin = %wire.origin, "change from another control plane");
        let read = match kind {
            HintKind::Webhook => self.webhook(tenant, WebhookId::from(key)).await.map(Some),
            HintKind::EventType => self.event_type(tenant, key).await.map(Some),
            HintKind::Access => self.tokens.reload(&self.store).await.map(|()| None),
        };
        let seq = match read {
            Ok(seq) => seq,
            Err(error) => {
                // Whatever the hint was about, a fresh start covers it once the database
                // answers; the writer is not told, and stops waiting at its deadline.
                tracing::warn!(%error, "cannot read a change made on another control plane; resyncing");
                return self.resync().await;
            }
        };
        let Some(reply) = message.reply else { return };
        let (changes, nats) = (self.changes.clone(), self.nats.clone());
        let name = self.changes.origin().unwrap_or_default().to_owned();
        tokio::spawn(async move {
            if let Some(seq) = seq {
                changes.wait_applied(seq, super::APPLY_DEADLINE).await;
            }
            if let Err(error) = nats.publish(reply, name.into()).await {
                tracing::debug!(%error, "cannot confirm a change to the control plane that made it");
            }
        });
    }

    async fn webhook(
        &self,
        tenant: String,
        id: WebhookId,
    ) -> Result<u64, hookd_storage::StorageError> {
        let change = match self.store.get_webhook(&tenant, &id).await? {
            Some(webhook) => Change::Upserted { tenant, webhook: Box::new(webhook) },
            None => Change::Deleted { tenant, id },
        };
        Ok(self.changes.announce(change))
    }

    async fn event_type(
        &self,
        tenant: String,
        name: String,
    ) -> Result<u64, hookd_storage::StorageError> {
        let change = match self.store.get_event_type(&tenant, &name).await? {
            Some(def) => {
                self.catalog.put(&tenant, &def);
                Change::EventTypeUpserted { tenant, def: Box::new(def) }
            }
            None => {
                self.catalog.remove(&tenant, &name);
                Change::EventTypeDeleted { tenant, name }
            }
        };
        Ok(self.changes.announce(change))
    }

    /// Reads everything the hints keep current again, and restarts the watchers.
    async fn resync(&self) {
        if let Err(error) = self.catalog.reload(&self.store).await {
            tracing::warn!(%error, "cannot reload the event-type catalog");
        }
        if let Err(error) = self.tokens.reload(&self.store).await {
            tracing::warn!(%error, "cannot reload the token table");
        }
        self.changes.announce(Change::Resync);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_hint_names_the_row_and_carries_none_of_its_content() {
        let mut webhook = hookd_core::Webhook {
            id: WebhookId::generate(),
            spec: hookd_core::WebhookSpec::default(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        webhook.spec.url = "https://example.com/secret-path".to_owned();
        webhook.spec.signing = hookd_core::signing::SigningKeys::generate();
        let change = Change::Upserted { tenant: "acme".to_owned(), webhook: Box::new(webhook) };
        let hint = Hint::of(&change).unwrap();
        assert_eq!(hint.kind, HintKind::Webhook);
        let Change::Upserted { webhook, .. } = &change else { unreachable!() };
        assert_eq!(hint.key, webhook.id.as_str());
        let wire = serde_json::to_string(&Wire { origin: "cp_1".to_owned(), hint }).unwrap();
        assert!(!wire.contains("secret-path") && !wire.contains("whsec_"), "{wire}");
        let back: Wire = serde_json::from_str(&wire).unwrap();
        assert_eq!((back.origin.as_str(), back.hint.tenant.as_str()), ("cp_1", "acme"));
        assert_eq!(Hint::of(&Change::Resync), None);
    }
}
