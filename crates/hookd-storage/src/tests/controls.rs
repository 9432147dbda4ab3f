//! Tests of the delivery controls added by m0006: ordering key, filter and rate limit round
//! trip through create and update, and the filtered count adds up, on SQLite and Postgres.

use hookd_core::{filter::Filter, ordering::OrderingKey, rate_limit::RateLimit};
use serde_json::json;

use super::{TENANT, webhook};
use crate::Store;

on_both_backends! {
    async fn delivery_controls_round_trip_and_filtered_events_are_counted(store) {
        controls_round_trip(&store).await;
    }
}

async fn controls_round_trip(store: &Store) {
    let plain = webhook("plain");
    store.create_webhook(TENANT, &plain).await.unwrap();
    let read = store.get_webhook(TENANT, &plain.id).await.unwrap().unwrap();
    assert_eq!((read.spec.ordering, read.spec.filter, read.spec.rate_limit), (None, None, None));

    let mut hook = webhook("controlled");
    hook.spec.ordering = Some(OrderingKey::parse("/data/order/id").unwrap());
    hook.spec.filter = Some(
        Filter::parse(json!({"/data/amount": {"$gte": 10.5}, "$or": [{"/type": "a"}, {"/entity_id": {"$exists": true}}]}))
            .unwrap(),
    );
    hook.spec.rate_limit = Some(RateLimit { per_second: 20, burst: 5 });
    store.create_webhook(TENANT, &hook).await.unwrap();
    assert_eq!(store.get_webhook(TENANT, &hook.id).await.unwrap(), Some(hook.clone()));

    let mut changed = hook.clone();
    changed.spec.ordering = Some(OrderingKey::EntityId);
    changed.spec.filter = None;
    changed.spec.rate_limit = Some(RateLimit { per_second: 1, burst: 0 });
    assert!(store.update_webhook(TENANT, &changed).await.unwrap());
    assert_eq!(store.get_webhook(TENANT, &hook.id).await.unwrap(), Some(changed.clone()));

    store.add_filtered(&[(TENANT.to_owned(), hook.id.clone(), 3)]).await.unwrap();
    store.add_filtered(&[(TENANT.to_owned(), hook.id.clone(), 4)]).await.unwrap();
    // Another tenant's report names no webhook of this one.
    store.add_filtered(&[("elsewhere".to_owned(), hook.id.clone(), 100)]).await.unwrap();
    let (_, stats) = store.get_webhook_with_stats(TENANT, &hook.id).await.unwrap().unwrap();
    assert_eq!(stats.filtered, 7);
}
