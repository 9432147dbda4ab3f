//! The delivery history as a whole: the counts the metrics show, and the retention purge that
//! removes deliveries (with their attempts) nobody has touched for longer than the retention.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::entity::{attempt, delivery, webhook};
use crate::{StorageError, Store, db_time};

/// Counts of the whole installation, for gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub webhooks_active: u64,
    pub webhooks_inactive: u64,
    /// Deliveries waiting for a retry.
    pub deliveries_pending: u64,
}

impl Store {
    pub async fn totals(&self) -> Result<Totals, StorageError> {
        let active = webhook::Entity::find()
            .filter(webhook::Column::Active.eq(true))
            .count(&self.db)
            .await?;
        let inactive = webhook::Entity::find()
            .filter(webhook::Column::Active.eq(false))
            .count(&self.db)
            .await?;
        let pending = delivery::Entity::find()
            .filter(delivery::Column::Status.eq("pending"))
            .count(&self.db)
            .await?;
        Ok(Totals {
            webhooks_active: active,
            webhooks_inactive: inactive,
            deliveries_pending: pending,
        })
    }

    /// Removes up to `limit` of the deliveries last changed before `cutoff`, oldest first,
    /// with their attempts, in one short transaction; how many went. Callers repeat until it
    /// returns less than `limit`, pausing in between so result writes are never held up for
    /// more than one batch.
    pub async fn purge_history(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StorageError> {
        let cutoff = db_time(cutoff);
        let txn = self.db.begin().await?;
        let ids: Vec<String> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::Id)
            .filter(delivery::Column::UpdatedAt.lt(cutoff))
            .order_by_asc(delivery::Column::UpdatedAt)
            .limit(limit)
            // Locked on Postgres (SQLite's write transaction excludes writers anyway), so no
            // attempt is recorded for these between the select and the deletes.
            .lock_exclusive()
            .into_tuple()
            .all(&txn)
            .await?;
        if ids.is_empty() {
            txn.commit().await?;
            return Ok(0);
        }
        attempt::Entity::delete_many()
            .filter(attempt::Column::DeliveryId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        let deleted = delivery::Entity::delete_many()
            .filter(delivery::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected)
    }
}
