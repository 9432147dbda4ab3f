//! Endpoint health of webhooks: updated by the transactions that record attempts (so the
//! rule is evaluated exactly when results arrive), read for listings, reset on activation.

use chrono::{DateTime, Utc};
use hookd_core::{DeactivatedBy, HealthRule, HealthState, WebhookId};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

use crate::entity::webhook;
use crate::webhooks::health_policy_of;
use crate::{StorageError, Store, db_time};

/// A webhook's health and deactivation as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookHealth {
    pub consecutive_failures: u32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: String,
    pub deactivated_by: Option<DeactivatedBy>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub deactivation_reason: String,
    /// Jobs ever kept in the webhook's buffer, and ever released from it (replayed or
    /// discarded).
    pub buffer_kept: u64,
    pub buffer_released: u64,
}

impl WebhookHealth {
    /// Kept jobs that expired: neither released nor among the `buffered` still there. Reports
    /// of kept jobs trail the buffer a little, so this never goes below zero.
    pub fn expired(&self, buffered: u64) -> u64 {
        self.buffer_kept.saturating_sub(self.buffer_released).saturating_sub(buffered)
    }
}

/// A webhook the system has just deactivated, for the notification.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemDeactivation {
    pub webhook_id: WebhookId,
    pub reason: String,
    pub last_error: String,
    pub at: DateTime<Utc>,
}

/// One new attempt's part in a webhook's health.
#[derive(Debug, Clone)]
pub(crate) struct HealthSample {
    pub started_at: DateTime<Utc>,
    pub success: bool,
    pub gone: bool,
    pub error: String,
}

pub(crate) fn health_of(row: &webhook::Model) -> WebhookHealth {
    WebhookHealth {
        consecutive_failures: u32::try_from(row.consecutive_failures.max(0)).unwrap_or(u32::MAX),
        last_success_at: row.last_success_at,
        last_error: row.last_error.clone(),
        deactivated_by: row.deactivated_by.as_deref().and_then(DeactivatedBy::parse),
        deactivated_at: row.deactivated_at,
        deactivation_reason: row.deactivation_reason.clone(),
        buffer_kept: u64::try_from(row.buffer_kept).unwrap_or_default(),
        buffer_released: u64::try_from(row.buffer_released).unwrap_or_default(),
    }
}

/// Folds a batch's new attempts of one webhook into its row and, when `rule` says so and the
/// webhook is active, deactivates it in the same transaction. Attempts are ordered by start
/// time, so a late report of an older failure does not undo a newer success.
pub(crate) async fn apply_health(
    txn: &DatabaseTransaction,
    tenant: &str,
    webhook_id: &str,
    samples: &mut [HealthSample],
    rule: Option<&HealthRule>,
) -> Result<Option<SystemDeactivation>, StorageError> {
    use webhook::Column as C;
    if samples.is_empty() {
        return Ok(None);
    }
    samples.sort_by_key(|s| s.started_at);
    let last_success = samples.iter().rposition(|s| s.success);
    let after = &samples[last_success.map_or(0, |i| i + 1)..];
    let failures = i64::try_from(after.len()).unwrap_or(i64::MAX);
    let gone = after.iter().any(|s| s.gone);
    // Locked on Postgres, so two control planes recording the same webhook add up.
    let Some(row) = webhook::Entity::find()
        .filter(C::Tenant.eq(tenant))
        .filter(C::Id.eq(webhook_id))
        .lock_exclusive()
        .one(txn)
        .await?
    else {
        return Ok(None); // Deleted; reports may outlive it.
    };
    let (consecutive, last_success_at) = match last_success {
        Some(i) => {
            let at = samples[i].started_at;
            let newer = row.last_success_at.map_or(at, |old| old.max(at));
            (failures, Some(newer))
        }
        None => (row.consecutive_failures.saturating_add(failures), row.last_success_at),
    };
    let last_error = after.last().map_or_else(|| row.last_error.clone(), |s| s.error.clone());
    let mut update = webhook::Entity::update_many()
        .col_expr(C::ConsecutiveFailures, consecutive.into())
        .col_expr(C::LastSuccessAt, last_success_at.into())
        .col_expr(C::LastError, last_error.clone().into());

    let now = db_time(Utc::now());
    let healthy_since = [last_success_at, row.activated_at]
        .into_iter()
        .flatten()
        .fold(row.created_at, DateTime::max);
    let state = HealthState {
        consecutive_failures: u32::try_from(consecutive.max(0)).unwrap_or(u32::MAX),
        healthy_since,
        gone,
    };
    let verdict = rule
        .filter(|_| row.active)
        .and_then(|rule| rule.with(&health_policy_of(&row)).verdict(&state, now));
    if let Some(reason) = &verdict {
        update = update
            .col_expr(C::Active, false.into())
            .col_expr(C::DeactivatedBy, Some(DeactivatedBy::System.as_str()).into())
            .col_expr(C::DeactivatedAt, Some(now).into())
            .col_expr(C::DeactivationReason, reason.clone().into())
            .col_expr(C::UpdatedAt, now.into());
    }
    update.filter(C::Tenant.eq(tenant)).filter(C::Id.eq(webhook_id)).exec(txn).await?;
    Ok(verdict.map(|reason| SystemDeactivation {
        webhook_id: WebhookId::from(webhook_id),
        reason,
        last_error,
        at: now,
    }))
}

impl Store {
    /// The health of a webhook, `None` if there is no such webhook.
    pub async fn get_webhook_health(
        &self,
        tenant: &str,
        id: &WebhookId,
    ) -> Result<Option<WebhookHealth>, StorageError> {
        let row = webhook::Entity::find()
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(webhook::Column::Id.eq(id.as_str()))
            .one(&self.db)
            .await?;
        Ok(row.as_ref().map(health_of))
    }

    /// The health of each of `ids` that exists, in one query (a page of a listing).
    pub async fn get_webhooks_health(
        &self,
        tenant: &str,
        ids: &[&WebhookId],
    ) -> Result<std::collections::HashMap<WebhookId, WebhookHealth>, StorageError> {
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let rows = webhook::Entity::find()
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(webhook::Column::Id.is_in(ids.iter().map(|id| id.as_str())))
            .all(&self.db)
            .await?;
        Ok(rows.iter().map(|row| (WebhookId::from(row.id.as_str()), health_of(row))).collect())
    }

    /// Records who deactivated the webhook (call after storing `active = false`), or, with
    /// `None`, that it was (re)activated: the failure count restarts and the rule's clock
    /// starts now, so a reactivated webhook gets a full window before it can trip again.
    pub async fn set_deactivation(
        &self,
        tenant: &str,
        id: &WebhookId,
        by: Option<(DeactivatedBy, &str)>,
    ) -> Result<(), StorageError> {
        use webhook::Column as C;
        let now = db_time(Utc::now());
        let mut update = webhook::Entity::update_many();
        update = match by {
            Some((by, reason)) => update
                .col_expr(C::DeactivatedBy, Some(by.as_str()).into())
                .col_expr(C::DeactivatedAt, Some(now).into())
                .col_expr(C::DeactivationReason, reason.to_owned().into()),
            None => update
                .col_expr(C::DeactivatedBy, Option::<String>::None.into())
                .col_expr(C::DeactivatedAt, Option::<DateTime<Utc>>::None.into())
                .col_expr(C::DeactivationReason, String::new().into())
                .col_expr(C::ConsecutiveFailures, 0i64.into())
                .col_expr(C::ActivatedAt, Some(now).into()),
        };
        update
            .filter(C::Tenant.eq(tenant))
            .filter(C::Id.eq(id.as_str()))
            .exec(&self.db)
            .await
            .map(drop)
            .map_err(Into::into)
    }

    /// Counts jobs newly kept in webhooks' buffers: (tenant, webhook, count).
    pub async fn add_buffer_kept(
        &self,
        kept: &[(String, WebhookId, u64)],
    ) -> Result<(), StorageError> {
        for (tenant, id, count) in kept {
            self.add_to_counter(tenant, id, webhook::Column::BufferKept, *count).await?;
        }
        Ok(())
    }

    /// Counts jobs taken out of a webhook's buffer by a replay or a discard.
    pub async fn add_buffer_released(
        &self,
        tenant: &str,
        id: &WebhookId,
        count: u64,
    ) -> Result<(), StorageError> {
        self.add_to_counter(tenant, id, webhook::Column::BufferReleased, count).await
    }

    async fn add_to_counter(
        &self,
        tenant: &str,
        id: &WebhookId,
        column: webhook::Column,
        count: u64,
    ) -> Result<(), StorageError> {
        use sea_orm::sea_query::ExprTrait;
        if count == 0 {
            return Ok(());
        }
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        webhook::Entity::update_many()
            .col_expr(column, Expr::col(column).add(count))
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(webhook::Column::Id.eq(id.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
