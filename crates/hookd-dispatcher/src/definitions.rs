//! The dispatcher's copy of the webhook definitions, kept current by the control plane's
//! watch stream. Reads are lock-free in practice (an `Arc` clone under a short read lock);
//! each change builds a new index, because changes are rare and lookups are per event. The
//! event-type catalog comes on the same stream: each type with a schema is kept compiled,
//! so the fan-out can check events without compiling anything.
//!
//! Tenant isolation: every webhook is indexed under the tenant the control plane sent with
//! it, and every lookup names a tenant, so an event (whose tenant is its subject's, which
//! NATS authorises) can only ever reach its own tenant's webhooks.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hookd_core::{
    DEFAULT_TENANT, EventType, Webhook, WebhookId, catalog::Schema, webhook::ALL_EVENT_TYPES,
};
use hookd_proto::{
    convert::{event_type_from_proto, webhook_from_proto},
    v1::{AckWebhooksRequest, CatalogEntry, WatchWebhooksRequest, watch_webhooks_response::Change},
};
use tokio::sync::watch;

use crate::ControlClient;

/// Compiled schemas by tenant, then event type; nested so a lookup needs no owned key.
type Schemas = HashMap<String, HashMap<String, Arc<Schema>>>;

/// A webhook with the tenant it belongs to.
#[derive(Clone)]
struct Defined {
    tenant: Arc<str>,
    webhook: Arc<Webhook>,
}

/// The active webhooks of one tenant, by the event types they subscribe to.
#[derive(Default)]
struct TenantIndex {
    by_type: HashMap<String, Vec<Arc<Webhook>>>,
    all_types: Vec<Arc<Webhook>>,
}

#[derive(Default)]
struct Index {
    by_id: HashMap<WebhookId, Defined>,
    by_tenant: HashMap<Arc<str>, TenantIndex>,
    /// The inactive webhooks the same way: their matching events go to their buffer.
    inactive_by_tenant: HashMap<Arc<str>, TenantIndex>,
    /// Only catalogued types that have a schema: a type without one accepts any data.
    schemas: Arc<Schemas>,
}

/// A snapshot being received, page by page.
#[derive(Default)]
pub struct PendingSnapshot {
    webhooks: HashMap<WebhookId, Defined>,
    schemas: Schemas,
}

impl Index {
    fn build(by_id: HashMap<WebhookId, Defined>, schemas: Arc<Schemas>) -> Self {
        let mut by_tenant: HashMap<Arc<str>, TenantIndex> = HashMap::new();
        let mut inactive_by_tenant: HashMap<Arc<str>, TenantIndex> = HashMap::new();
        for defined in by_id.values() {
            let tenants =
                if defined.webhook.spec.active { &mut by_tenant } else { &mut inactive_by_tenant };
            let index = tenants.entry(defined.tenant.clone()).or_default();
            for t in &defined.webhook.spec.event_types {
                if t == ALL_EVENT_TYPES {
                    index.all_types.push(defined.webhook.clone());
                } else {
                    index.by_type.entry(t.clone()).or_default().push(defined.webhook.clone());
                }
            }
        }
        Self { by_id, by_tenant, inactive_by_tenant, schemas }
    }
}

/// A webhook from the watch stream with its tenant. The control plane always sends the
/// tenant; an empty one (a control plane older than tenants) means the default tenant.
fn defined(wire: hookd_proto::v1::Webhook) -> Defined {
    let tenant: Arc<str> = if wire.tenant.is_empty() {
        Arc::from(DEFAULT_TENANT)
    } else {
        Arc::from(wire.tenant.as_str())
    };
    Defined { tenant, webhook: Arc::new(webhook_from_proto(wire)) }
}

/// The tenant of a catalog entry; the control plane may leave it empty for the default one.
fn entry_tenant(entry: &CatalogEntry) -> String {
    if entry.tenant.is_empty() { DEFAULT_TENANT.to_owned() } else { entry.tenant.clone() }
}

/// Adds (or, for a type without a schema, removes) the entry's compiled schema.
fn apply_entry(schemas: &mut Schemas, entry: CatalogEntry) {
    let tenant = entry_tenant(&entry);
    let Some(def) = entry.event_type.and_then(event_type_from_proto) else {
        tracing::warn!(%tenant, "ignoring a catalog entry without a valid event type");
        return;
    };
    let name = def.spec.name.to_string();
    let compiled = def.spec.schema.as_ref().map(Schema::compile);
    let types = schemas.entry(tenant.clone()).or_default();
    match compiled {
        Some(Ok(schema)) => {
            types.insert(name, Arc::new(schema));
        }
        Some(Err(error)) => {
            // The control plane validated it; a dispatcher that cannot compile it delivers the
            // events rather than dropping them on its own judgement.
            tracing::warn!(%tenant, event_type = %name, %error, "cannot compile an event type's schema; not checking it");
            types.remove(&name);
        }
        None => {
            types.remove(&name);
        }
    }
}

fn matching_in(
    tenants: &HashMap<Arc<str>, TenantIndex>,
    tenant: &str,
    event_type: &EventType,
) -> Vec<Arc<Webhook>> {
    let Some(index) = tenants.get(tenant) else { return Vec::new() };
    let mut out: Vec<Arc<Webhook>> =
        index.by_type.get(event_type.as_str()).cloned().unwrap_or_default();
    for w in &index.all_types {
        if !out.iter().any(|o| o.id == w.id) {
            out.push(w.clone());
        }
    }
    out
}

/// Shared, cheaply cloned handle to the current definitions.
#[derive(Clone)]
pub struct Definitions {
    index: Arc<RwLock<Arc<Index>>>,
    ready: watch::Sender<bool>,
    /// Bumped on every applied change, for whoever waits for a particular webhook.
    version: watch::Sender<u64>,
    /// True while the definitions watch is connected to a control plane: readiness.
    watching: Arc<AtomicBool>,
}

impl Default for Definitions {
    fn default() -> Self {
        Self {
            index: Arc::default(),
            ready: watch::channel(false).0,
            version: watch::channel(0).0,
            watching: Arc::default(),
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
        drop(slot);
        self.version.send_modify(|v| *v += 1);
    }

    /// Active webhooks of `tenant` subscribed to `event_type`, each once.
    pub fn matching(&self, tenant: &str, event_type: &EventType) -> Vec<Arc<Webhook>> {
        matching_in(&self.current().by_tenant, tenant, event_type)
    }

    /// The inactive webhooks of `tenant` subscribed to `event_type`: the fan-out keeps their
    /// events in their buffers.
    pub fn matching_inactive(&self, tenant: &str, event_type: &EventType) -> Vec<Arc<Webhook>> {
        matching_in(&self.current().inactive_by_tenant, tenant, event_type)
    }

    /// The compiled schema events of `event_type` must satisfy, if the type has one.
    pub fn schema(&self, tenant: &str, event_type: &EventType) -> Option<Arc<Schema>> {
        self.current().schemas.get(tenant)?.get(event_type.as_str()).cloned()
    }

    /// The webhook `id` if it belongs to `tenant`: a job naming another tenant's webhook
    /// finds nothing.
    pub fn get(&self, tenant: &str, id: &WebhookId) -> Option<Arc<Webhook>> {
        self.current().by_id.get(id).filter(|d| &*d.tenant == tenant).map(|d| d.webhook.clone())
    }

    pub fn len(&self) -> usize {
        self.current().by_id.len()
    }

    /// Whether the definitions watch is connected now (changes reach this dispatcher).
    pub fn is_watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The webhook `id`, waiting up to `max_wait` for it to appear: a job can reach this
    /// dispatcher a moment before the change that created its webhook does.
    pub async fn wait_for(
        &self,
        tenant: &str,
        id: &WebhookId,
        max_wait: Duration,
    ) -> Option<Arc<Webhook>> {
        let mut version = self.version.subscribe();
        let found = async {
            loop {
                if let Some(webhook) = self.get(tenant, id) {
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

    pub(crate) fn apply(&self, change: Change, pending_snapshot: &mut Option<PendingSnapshot>) {
        match change {
            Change::Snapshot(page) => {
                let building = pending_snapshot.get_or_insert_with(PendingSnapshot::default);
                for w in page.webhooks {
                    let d = defined(w);
                    building.webhooks.insert(d.webhook.id.clone(), d);
                }
                for entry in page.event_types {
                    apply_entry(&mut building.schemas, entry);
                }
                if page.complete {
                    let complete = pending_snapshot.take().unwrap_or_default();
                    tracing::info!(
                        webhooks = complete.webhooks.len(),
                        schemas = complete.schemas.values().map(HashMap::len).sum::<usize>(),
                        "definitions snapshot loaded"
                    );
                    self.replace(Index::build(complete.webhooks, Arc::new(complete.schemas)));
                    self.ready.send_replace(true);
                }
            }
            Change::Upserted(w) => {
                let d = defined(w);
                tracing::debug!(tenant = %d.tenant, webhook_id = %d.webhook.id, active = d.webhook.spec.active, "webhook changed");
                let current = self.current();
                let mut by_id = current.by_id.clone();
                by_id.insert(d.webhook.id.clone(), d);
                self.replace(Index::build(by_id, current.schemas.clone()));
            }
            Change::EventTypeUpserted(entry) => {
                let current = self.current();
                let mut schemas = Schemas::clone(&current.schemas);
                apply_entry(&mut schemas, entry);
                tracing::debug!("event type changed");
                self.replace(Index::build(current.by_id.clone(), Arc::new(schemas)));
            }
            Change::EventTypeDeleted(entry) => {
                let tenant = entry_tenant(&entry);
                let name = entry.event_type.map(|t| t.name).unwrap_or_default();
                tracing::debug!(%tenant, event_type = %name, "event type deleted");
                let current = self.current();
                let mut schemas = Schemas::clone(&current.schemas);
                if let Some(types) = schemas.get_mut(&tenant) {
                    types.remove(&name);
                }
                self.replace(Index::build(current.by_id.clone(), Arc::new(schemas)));
            }
            Change::DeletedId(id) => {
                tracing::debug!(webhook_id = %id, "webhook deleted");
                let current = self.current();
                let mut by_id = current.by_id.clone();
                by_id.remove(&WebhookId::from(id));
                self.replace(Index::build(by_id, current.schemas.clone()));
            }
        }
    }

    /// Follows the control plane's watch stream for ever, reconnecting with backoff, and
    /// confirms each applied change (the control plane's writers wait for that). While
    /// disconnected the last known definitions stay in force, so deliveries go on.
    pub async fn follow(self, mut client: ControlClient, apply_delay: Duration) {
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
                    self.watching.store(true, Ordering::Relaxed);
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
                    self.watching.store(false, Ordering::Relaxed);
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
async fn confirm_applied(mut client: ControlClient, mut applied: watch::Receiver<(String, u64)>) {
    while applied.changed().await.is_ok() {
        let (watcher_id, seq) = applied.borrow_and_update().clone();
        if let Err(status) = client.ack_webhooks(AckWebhooksRequest { watcher_id, seq }).await {
            tracing::debug!(error = %status.message(), "cannot confirm applied definitions");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use hookd_proto::v1;

    use super::*;

    pub(crate) fn wire(id: &str, types: &[&str], active: bool) -> v1::Webhook {
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
        let mut ids: Vec<String> =
            defs.matching(DEFAULT_TENANT, &t).iter().map(|w| w.id.to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["wh_a", "wh_b"], "inactive wh_c must not match");

        defs.apply(Change::DeletedId("wh_a".into()), &mut pending);
        defs.apply(Change::Upserted(wire("wh_c", &["contact-created"], true)), &mut pending);
        let mut ids: Vec<String> =
            defs.matching(DEFAULT_TENANT, &t).iter().map(|w| w.id.to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["wh_b", "wh_c"]);
        assert!(defs.get(DEFAULT_TENANT, &WebhookId::from("wh_a")).is_none());
    }

    #[test]
    fn events_match_only_their_own_tenants_webhooks() {
        let defs = Definitions::default();
        let t = EventType::parse("contact-created").expect("valid");
        let of = |tenant: &str, id: &str, types: &[&str]| v1::Webhook {
            tenant: tenant.into(),
            ..wire(id, types, true)
        };
        defs.apply(
            Change::Snapshot(v1::SnapshotPage {
                webhooks: vec![
                    of("a", "wh_a", &["contact-created"]),
                    of("b", "wh_b", &["contact-created"]),
                    of("b", "wh_b_all", &["*"]),
                ],
                complete: true,
                event_types: vec![],
            }),
            &mut None,
        );
        let ids = |tenant: &str| {
            let mut ids: Vec<String> =
                defs.matching(tenant, &t).iter().map(|w| w.id.to_string()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids("a"), ["wh_a"]);
        assert_eq!(ids("b"), ["wh_b", "wh_b_all"]);
        assert!(ids("c").is_empty());
        assert!(defs.get("a", &WebhookId::from("wh_a")).is_some());
        assert!(defs.get("b", &WebhookId::from("wh_a")).is_none(), "not across tenants");
        // A webhook moved to another tenant (never by hookd, but the index must follow).
        defs.apply(Change::Upserted(of("b", "wh_a", &["contact-created"])), &mut None);
        assert!(ids("a").is_empty());
    }

    pub(crate) fn catalog_entry(name: &str, schema: Option<serde_json::Value>) -> v1::CatalogEntry {
        let def = hookd_core::catalog::EventTypeDef {
            spec: hookd_core::catalog::EventTypeSpec {
                name: EventType::parse(name).expect("valid"),
                description: String::new(),
                schema,
                example: None,
            },
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            rejected: 0,
        };
        v1::CatalogEntry {
            tenant: DEFAULT_TENANT.into(),
            event_type: Some(hookd_proto::convert::event_type_to_proto(&def)),
        }
    }

    #[test]
    fn the_catalog_keeps_a_compiled_schema_per_type() {
        let defs = Definitions::default();
        let mut pending = None;
        let t = EventType::parse("contact-created").expect("valid");
        let schema = serde_json::json!({"type": "object", "required": ["email"]});
        defs.apply(
            Change::Snapshot(v1::SnapshotPage {
                webhooks: vec![wire("wh_a", &["contact-created"], true)],
                complete: true,
                event_types: vec![
                    catalog_entry("contact-created", Some(schema)),
                    catalog_entry("basket-submitted", None),
                ],
            }),
            &mut pending,
        );
        let s = defs.schema(DEFAULT_TENANT, &t).expect("schema kept");
        assert!(s.check(&serde_json::json!({"email": "a@b.c"})).is_ok());
        assert!(s.check(&serde_json::json!({})).is_err());
        let basket = EventType::parse("basket-submitted").expect("valid");
        assert!(defs.schema(DEFAULT_TENANT, &basket).is_none(), "no schema, no check");
        assert!(defs.schema("other", &t).is_none(), "schemas are per tenant");

        // Webhook changes keep the catalog; catalog changes keep the webhooks.
        defs.apply(Change::Upserted(wire("wh_b", &["*"], true)), &mut pending);
        assert!(defs.schema(DEFAULT_TENANT, &t).is_some());
        let loose = serde_json::json!({"type": "object"});
        defs.apply(
            Change::EventTypeUpserted(catalog_entry("basket-submitted", Some(loose))),
            &mut pending,
        );
        assert!(defs.schema(DEFAULT_TENANT, &basket).is_some());
        assert_eq!(defs.len(), 2);
        defs.apply(Change::EventTypeDeleted(catalog_entry("contact-created", None)), &mut pending);
        assert!(defs.schema(DEFAULT_TENANT, &t).is_none());
        defs.apply(
            Change::EventTypeUpserted(catalog_entry("basket-submitted", None)),
            &mut pending,
        );
        assert!(defs.schema(DEFAULT_TENANT, &basket).is_none(), "schema removed by an update");
    }
}
