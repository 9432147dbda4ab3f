//! Tests of the history as a whole: the totals behind the gauges, and the retention purge.

use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{TENANT, report, webhook};
use crate::Store;
use crate::entity::{attempt, delivery};

on_both_backends! {
    async fn purge_removes_old_deliveries_with_their_attempts_in_batches(store) {
        purge_removes_old_deliveries(&store).await;
    }
}

on_both_backends! {
    async fn totals_count_webhooks_by_state_and_pending_deliveries(store) {
        totals_count(&store).await;
    }
}

async fn purge_removes_old_deliveries(store: &Store) {
    let hook = webhook("old");
    store.create_webhook(TENANT, &hook).await.unwrap();
    let now = Utc::now();
    let mut records = Vec::new();
    for i in 0..5 {
        // Two attempts each: a failure, then the success.
        records.push(report(&hook.id, &format!("e{i}"), 1, now));
        records.push(report(&hook.id, &format!("e{i}"), 3, now));
    }
    store.record_attempts(TENANT, &records).await.unwrap();
    // Three of the five were last touched 40 days ago.
    let old: Vec<String> =
        records.iter().step_by(2).take(3).map(|r| r.delivery_id.to_string()).collect();
    delivery::Entity::update_many()
        .col_expr(delivery::Column::UpdatedAt, crate::db_time(now - Duration::days(40)).into())
        .filter(delivery::Column::Id.is_in(old.clone()))
        .exec(&store.db)
        .await
        .unwrap();

    let cutoff = now - Duration::days(30);
    assert_eq!(store.purge_history(cutoff, 2).await.unwrap(), 2, "a batch is bounded");
    assert_eq!(store.purge_history(cutoff, 2).await.unwrap(), 1);
    assert_eq!(store.purge_history(cutoff, 2).await.unwrap(), 0);

    let left: Vec<String> =
        delivery::Entity::find().all(&store.db).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|id| !old.contains(id)), "only the old ones went");
    let attempts = attempt::Entity::find().all(&store.db).await.unwrap();
    assert_eq!(attempts.len(), 4, "the attempts of the purged deliveries went with them");
    assert!(attempts.iter().all(|a| left.contains(&a.delivery_id)));
}

async fn totals_count(store: &Store) {
    let active = webhook("on");
    let mut inactive = webhook("off");
    inactive.spec.active = false;
    store.create_webhook(TENANT, &active).await.unwrap();
    store.create_webhook(TENANT, &inactive).await.unwrap();
    let now = Utc::now();
    // e1 failed once (pending a retry); e2 succeeded at its third attempt.
    store
        .record_attempts(
            TENANT,
            &[report(&active.id, "e1", 1, now), report(&active.id, "e2", 3, now)],
        )
        .await
        .unwrap();
    let totals = store.totals().await.unwrap();
    assert_eq!(
        totals,
        crate::Totals { webhooks_active: 1, webhooks_inactive: 1, deliveries_pending: 1 }
    );
}
