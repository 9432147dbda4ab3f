//! Activation and deactivation of webhooks: a user's switch, and the activation of a webhook
//! the system deactivated, which replays or discards the events kept meanwhile and announces
//! the end of the deactivation.

use chrono::Utc;
use hookd_core::{WebhookId, health::DeactivatedBy};
use hookd_proto::v1;

use super::WebhookApi;
use crate::{ControlError, auth::Caller, changes::Change};

impl WebhookApi {
    /// Activates the webhook, then replays (`replay`) or discards what was kept for it. A
    /// no-op for an active webhook: nothing is buffered for it.
    pub(super) async fn activate(
        &self,
        caller: &Caller,
        id: &str,
        replay: bool,
    ) -> Result<v1::ActivateWebhookResponse, ControlError> {
        let tenant = caller.tenant.as_str();
        let current = self.load(caller, id).await?;
        if current.spec.active {
            let webhook = self.shown(tenant, &current).await?;
            return Ok(v1::ActivateWebhookResponse {
                webhook: Some(webhook),
                replayed: 0,
                discarded: 0,
            });
        }
        let by_system = self.deactivated_by_system(tenant, &current.id).await?;
        // set_active returns once the dispatchers applied the activation.
        let webhook = self.set_active(caller, id, true).await?;
        let (replayed, discarded) =
            self.after_activation(tenant, &current.id, replay, by_system).await?;
        Ok(v1::ActivateWebhookResponse { webhook: Some(webhook), replayed, discarded })
    }

    /// Stores `webhook` with `active` set and tells the dispatchers; no-op when it already is.
    pub(super) async fn set_active(
        &self,
        caller: &Caller,
        id: &str,
        active: bool,
    ) -> Result<v1::Webhook, ControlError> {
        let tenant = caller.tenant.as_str();
        let mut webhook = self.load(caller, id).await?;
        if webhook.spec.active != active {
            webhook.spec.active = active;
            webhook.updated_at = Utc::now();
            if !self.store.update_webhook(tenant, &webhook).await? {
                return Err(ControlError::NotFound { what: "webhook", id: id.to_owned() });
            }
            tracing::info!(active, "webhook status changed");
            self.record_status_change(tenant, &webhook.id, active).await?;
            self.changes
                .publish(Change::Upserted {
                    tenant: tenant.to_owned(),
                    webhook: Box::new(webhook.clone()),
                })
                .await;
        }
        self.shown(tenant, &webhook).await
    }

    /// Records a user's activation or deactivation (call after storing `active`).
    pub(super) async fn record_status_change(
        &self,
        tenant: &str,
        id: &WebhookId,
        active: bool,
    ) -> Result<(), ControlError> {
        if !active {
            self.metrics.webhooks_deactivated.with_label_values(&["user"]).inc();
        }
        let by = (!active).then_some((DeactivatedBy::User, "deactivated by a user"));
        Ok(self.store.set_deactivation(tenant, id, by).await?)
    }

    /// Whether the system (the health rule), not a user, deactivated the webhook.
    pub(super) async fn deactivated_by_system(
        &self,
        tenant: &str,
        id: &WebhookId,
    ) -> Result<bool, ControlError> {
        let health = self.store.get_webhook_health(tenant, id).await?;
        Ok(health.is_some_and(|h| h.deactivated_by == Some(DeactivatedBy::System)))
    }

    /// What follows an activation, once the dispatchers applied it (so nothing more is kept
    /// after the replay or the purge has looked): the kept events are replayed or discarded,
    /// and the end of a system deactivation is announced, pairing with its
    /// `webhook-deactivated` (a user's own off and on needs none). `(replayed, discarded)`.
    pub(super) async fn after_activation(
        &self,
        tenant: &str,
        id: &WebhookId,
        replay: bool,
        by_system: bool,
    ) -> Result<(u64, u64), ControlError> {
        let (replayed, discarded) = if replay {
            (self.replays.start(tenant, id).await?, 0)
        } else {
            (0, self.replays.discard(tenant, id).await?)
        };
        tracing::info!(replayed, discarded, "webhook reactivated");
        if by_system {
            let reason = if replay {
                format!("reactivated; replaying {replayed} kept events")
            } else {
                format!("reactivated; discarded {discarded} kept events")
            };
            self.notifier.reactivated(tenant, id, reason).await;
        }
        Ok((replayed, discarded))
    }
}
