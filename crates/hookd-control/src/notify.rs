//! System notifications about webhooks (`webhook-deactivated`, `webhook-reactivated`).
//!
//! Each is published twice: on `hookd.system.<tenant>.<kind>` (plain NATS, for operators and
//! for `WatchNotifications`), and as an ordinary event of type `<kind>` on the tenant's events
//! subject, so the tenant's own webhooks can subscribe to it like to any event type
//! (operational webhooks) and get it with retries and history. The event id is derived from
//! the webhook and the time, so a repeated publish is deduplicated by the events stream.

use chrono::{DateTime, Utc};
use hookd_core::{Event, EventId, EventType, WebhookId};
use hookd_storage::Store;

use crate::changes::{Change, Changes};

pub const DEACTIVATED: &str = "webhook-deactivated";
pub const REACTIVATED: &str = "webhook-reactivated";
/// The event types hookd itself emits: any webhook may subscribe to them, whether or not the
/// tenant's catalog lists them.
pub const SYSTEM_EVENT_TYPES: [&str; 2] = [DEACTIVATED, REACTIVATED];
pub const SYSTEM_PREFIX: &str = "hookd.system";

/// `hookd.system.<tenant>.<kind>`
pub fn system_subject(tenant: &str, kind: &str) -> String {
    format!("{SYSTEM_PREFIX}.{tenant}.{kind}")
}

/// One notification's content.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    pub kind: String,
    pub webhook_id: String,
    pub reason: String,
    pub last_error: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Notifier {
    pub js: async_nats::jetstream::Context,
    pub changes: Changes,
    pub store: Store,
}

impl Notifier {
    /// Tells the dispatchers (so they stop attempting and start buffering) and the tenant
    /// about a webhook the health rule has just deactivated.
    pub async fn system_deactivated(&self, tenant: &str, d: hookd_storage::SystemDeactivation) {
        tracing::warn!(webhook_id = %d.webhook_id, reason = %d.reason, last_error = %d.last_error, "webhook deactivated by the system");
        match self.store.get_webhook(tenant, &d.webhook_id).await {
            Ok(Some(webhook)) => {
                self.changes
                    .publish(Change::Upserted {
                        tenant: tenant.to_owned(),
                        webhook: Box::new(webhook),
                    })
                    .await;
            }
            Ok(None) => return,
            Err(error) => {
                // The dispatchers learn it with their next snapshot; attempts meanwhile
                // are recorded as usual.
                tracing::warn!(%error, "cannot load the deactivated webhook");
            }
        }
        let n = Notification {
            kind: DEACTIVATED.to_owned(),
            webhook_id: d.webhook_id.to_string(),
            reason: d.reason,
            last_error: d.last_error,
            at: d.at,
        };
        self.publish(tenant, n).await;
    }

    /// Publishes `n` on the system subject and as an event of its kind.
    pub async fn publish(&self, tenant: &str, n: Notification) {
        let body = serde_json::to_vec(&n).unwrap_or_default();
        if let Err(error) =
            self.js.client().publish(system_subject(tenant, &n.kind), body.into()).await
        {
            tracing::warn!(%error, "cannot publish a system notification");
        }
        let Ok(event_type) = EventType::parse(&n.kind) else { return };
        let event = Event {
            id: EventId::from(format!("{}-{}-{}", n.kind, n.webhook_id, n.at.timestamp_millis())),
            event_type,
            entity_id: n.webhook_id.clone(),
            timestamp: n.at,
            context: serde_json::Value::Null,
            data: serde_json::json!({
                "webhook_id": n.webhook_id,
                "reason": n.reason,
                "last_error": n.last_error,
                "at": n.at,
            }),
        };
        if let Err(error) = hookd_nats::publish_event(&self.js, tenant, &event).await {
            tracing::warn!(%error, "cannot publish a system notification as an event");
        }
    }

    /// Announces that a webhook was activated again.
    pub async fn reactivated(&self, tenant: &str, id: &WebhookId, reason: String) {
        let n = Notification {
            kind: REACTIVATED.to_owned(),
            webhook_id: id.to_string(),
            reason,
            last_error: String::new(),
            at: Utc::now(),
        };
        self.publish(tenant, n).await;
    }
}
