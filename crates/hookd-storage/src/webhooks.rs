//! Webhook definitions: create, read, list, update and delete.

use hookd_core::{Webhook, WebhookId, WebhookSpec};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Query,
};

use crate::entity::{attempt, delivery, webhook};
use crate::{StorageError, Store, db_time, is_unique_violation};

impl Store {
    /// Stores a new webhook. A webhook with the same name in `tenant` is
    /// [`StorageError::NameTaken`].
    pub async fn create_webhook(
        &self,
        tenant: &str,
        webhook: &Webhook,
    ) -> Result<(), StorageError> {
        let row = webhook::ActiveModel {
            id: Set(webhook.id.as_str().to_owned()),
            tenant: Set(tenant.to_owned()),
            name: Set(webhook.spec.name.clone()),
            url: Set(webhook.spec.url.clone()),
            event_types: Set(encode_event_types(&webhook.spec.event_types)),
            active: Set(webhook.spec.active),
            description: Set(webhook.spec.description.clone()),
            attempt_timeout_ms: Set(encode_timeout(&webhook.spec)),
            retry_schedule: Set(encode_schedule(&webhook.spec)),
            created_at: Set(db_time(webhook.created_at)),
            updated_at: Set(db_time(webhook.updated_at)),
        };
        webhook::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(|e| name_clash(e, &webhook.spec.name))?;
        Ok(())
    }

    pub async fn get_webhook(
        &self,
        tenant: &str,
        id: &WebhookId,
    ) -> Result<Option<Webhook>, StorageError> {
        webhook::Entity::find_by_id(id.as_str())
            .filter(webhook::Column::Tenant.eq(tenant))
            .one(&self.db)
            .await?
            .map(to_webhook)
            .transpose()
    }

    /// Ordered by id ascending (ids are time-ordered), ids strictly greater than `after`.
    pub async fn list_webhooks(
        &self,
        tenant: &str,
        after: Option<&WebhookId>,
        limit: u64,
    ) -> Result<Vec<Webhook>, StorageError> {
        let mut query = webhook::Entity::find().filter(webhook::Column::Tenant.eq(tenant));
        if let Some(after) = after {
            query = query.filter(webhook::Column::Id.gt(after.as_str()));
        }
        query
            .order_by_asc(webhook::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_webhook)
            .collect()
    }

    /// Every webhook of every tenant, ordered by id, for the dispatchers' snapshot.
    pub async fn all_webhooks(&self) -> Result<Vec<(String, Webhook)>, StorageError> {
        webhook::Entity::find()
            .order_by_asc(webhook::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                let tenant = row.tenant.clone();
                Ok((tenant, to_webhook(row)?))
            })
            .collect()
    }

    /// Replaces spec + updated_at of an existing webhook; `Ok(false)` if there is no such
    /// webhook; [`StorageError::NameTaken`] on a name clash.
    pub async fn update_webhook(
        &self,
        tenant: &str,
        webhook: &Webhook,
    ) -> Result<bool, StorageError> {
        let spec = &webhook.spec;
        let result = webhook::Entity::update_many()
            .col_expr(webhook::Column::Name, spec.name.clone().into())
            .col_expr(webhook::Column::Url, spec.url.clone().into())
            .col_expr(webhook::Column::EventTypes, encode_event_types(&spec.event_types).into())
            .col_expr(webhook::Column::Active, spec.active.into())
            .col_expr(webhook::Column::Description, spec.description.clone().into())
            .col_expr(webhook::Column::AttemptTimeoutMs, encode_timeout(spec).into())
            .col_expr(webhook::Column::RetrySchedule, encode_schedule(spec).into())
            .col_expr(webhook::Column::UpdatedAt, db_time(webhook.updated_at).into())
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(webhook::Column::Id.eq(webhook.id.as_str()))
            .exec(&self.db)
            .await
            .map_err(|e| name_clash(e, &spec.name))?;
        Ok(result.rows_affected > 0)
    }

    /// Deletes the webhook and its deliveries and their attempts in one transaction;
    /// `Ok(false)` if it did not exist.
    pub async fn delete_webhook(&self, tenant: &str, id: &WebhookId) -> Result<bool, StorageError> {
        let txn = self.begin_write().await?;
        let deleted = webhook::Entity::delete_many()
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(webhook::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?
            .rows_affected;
        // Deliveries are cleaned even when the webhook row is already gone: reports that
        // raced an earlier delete may have left some behind.
        let deliveries_of_webhook = Query::select()
            .column(delivery::Column::Id)
            .from(delivery::Entity)
            .and_where(delivery::Column::Tenant.eq(tenant))
            .and_where(delivery::Column::WebhookId.eq(id.as_str()))
            .to_owned();
        attempt::Entity::delete_many()
            .filter(attempt::Column::DeliveryId.in_subquery(deliveries_of_webhook))
            .exec(&txn)
            .await?;
        delivery::Entity::delete_many()
            .filter(delivery::Column::Tenant.eq(tenant))
            .filter(delivery::Column::WebhookId.eq(id.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted > 0)
    }
}

fn name_clash(err: DbErr, name: &str) -> StorageError {
    if is_unique_violation(&err) {
        StorageError::NameTaken { name: name.to_owned() }
    } else {
        StorageError::Database(err)
    }
}

fn encode_event_types(types: &[String]) -> String {
    // Serializing a list of strings cannot fail.
    serde_json::to_string(types).unwrap_or_else(|_| "[]".to_owned())
}

fn encode_timeout(spec: &WebhookSpec) -> Option<i32> {
    // Validated to at most 30 s, so it fits.
    spec.attempt_timeout.map(|t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX))
}

fn encode_schedule(spec: &WebhookSpec) -> Option<String> {
    spec.retry_schedule.as_ref().map(|s| {
        let secs: Vec<f64> = s.delays.iter().map(std::time::Duration::as_secs_f64).collect();
        // Serializing a list of finite numbers cannot fail.
        serde_json::to_string(&secs).unwrap_or_else(|_| "[]".to_owned())
    })
}

fn to_webhook(row: webhook::Model) -> Result<Webhook, StorageError> {
    let event_types: Vec<String> =
        serde_json::from_str(&row.event_types).map_err(|e| StorageError::Corrupt {
            table: "webhooks",
            reason: format!("event_types of {} is not a JSON array of strings: {e}", row.id),
        })?;
    let retry_schedule = match &row.retry_schedule {
        None => None,
        Some(text) => {
            let secs: Vec<f64> = serde_json::from_str(text).map_err(|e| StorageError::Corrupt {
                table: "webhooks",
                reason: format!("retry_schedule of {} is not a JSON array of numbers: {e}", row.id),
            })?;
            let delays = secs
                .into_iter()
                .map(|s| std::time::Duration::try_from_secs_f64(s).unwrap_or_default())
                .collect();
            Some(hookd_core::RetrySchedule { delays })
        }
    };
    let attempt_timeout = row
        .attempt_timeout_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(std::time::Duration::from_millis);
    Ok(Webhook {
        id: WebhookId::from(row.id),
        spec: WebhookSpec {
            name: row.name,
            url: row.url,
            event_types,
            active: row.active,
            description: row.description,
            attempt_timeout,
            retry_schedule,
            ..WebhookSpec::default()
        },
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
