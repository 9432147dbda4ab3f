//! Tests of the store against real databases: most run twice, on a fresh SQLite file and on a
//! fresh database of a throwaway PostgreSQL server (see `hookd-testpg`).

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use hookd_core::{
    AttemptRecord, AttemptReport, DeliveryId, DeliveryStatus, EventId, Webhook, WebhookId,
    WebhookSpec,
};
use tempfile::TempDir;

use crate::{
    DeliveryCursor, DeliveryFilter, DeliveryRecord, RecordSummary, StorageError, Store,
    WebhookFilter,
};

const TENANT: &str = "default";

/// The databases the store runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The URL of an empty database on `backend`, and the folder that holds it on SQLite.
pub(crate) fn empty_database(backend: Backend) -> (Option<TempDir>, String) {
    match backend {
        Backend::Sqlite => {
            let dir = TempDir::new().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("hookd.db").display());
            (Some(dir), url)
        }
        // One server per test process; it stops when the process ends.
        Backend::Postgres => (None, hookd_testpg::fresh_database_url()),
    }
}

/// A store on an empty database of `backend`, and what keeps the database.
pub(crate) async fn store_on(backend: Backend) -> (Option<TempDir>, Store) {
    let (dir, url) = empty_database(backend);
    (dir, Store::connect(&url).await.unwrap())
}

async fn file_store() -> (Option<TempDir>, Store) {
    store_on(Backend::Sqlite).await
}

/// Defines a test twice, in a module named after it: `sqlite` runs the body on a fresh SQLite
/// file, `postgres` on a fresh Postgres database; the body sees the store as `$store`.
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let (_db, $store) =
                    $crate::tests::store_on($crate::tests::Backend::Sqlite).await;
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let (_db, $store) =
                    $crate::tests::store_on($crate::tests::Backend::Postgres).await;
                $body
            }
        }
    };
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + Duration::seconds(secs)
}

fn webhook(name: &str) -> Webhook {
    Webhook {
        id: WebhookId::generate(),
        spec: WebhookSpec {
            name: name.to_owned(),
            url: format!("https://example.com/{name}"),
            event_types: vec!["contact-created".to_owned(), "contact-deleted".to_owned()],
            active: true,
            description: format!("the {name} hook"),
            attempt_timeout: Some(std::time::Duration::from_millis(2500)),
            retry_schedule: Some(hookd_core::RetrySchedule::from_secs(&[1, 2, 3])),
            ..WebhookSpec::default()
        },
        created_at: at(0),
        updated_at: at(0),
    }
}

fn report(webhook: &WebhookId, event: &str, number: u32, started: DateTime<Utc>) -> AttemptReport {
    let event_id = EventId::from(event);
    let success = number >= 3;
    AttemptReport {
        delivery_id: DeliveryId::for_event(&event_id, DateTime::UNIX_EPOCH, webhook),
        webhook_id: webhook.clone(),
        event_id,
        event_type: "contact-created".to_owned(),
        payload: format!(r#"{{"event":"{event}"}}"#),
        event: format!(r#"{{"id":"{event}","type":"contact-created"}}"#),
        attempt: AttemptRecord {
            request_headers: vec![("webhook-id".to_owned(), "dlv".to_owned())],
            number,
            started_at: started,
            http_status: if success { Some(200) } else { None },
            latency_ms: 10 * u64::from(number),
            error: if success { String::new() } else { "connection refused".to_owned() },
            response_body: if success { "ok".to_owned() } else { String::new() },
            success,
        },
        status_after: if success { DeliveryStatus::Delivered } else { DeliveryStatus::Pending },
        next_attempt_at: if success { None } else { Some(started + Duration::seconds(15)) },
    }
}

/// The webhooks of a page without filters, statistics dropped.
async fn list(store: &Store, tenant: &str, after: Option<&WebhookId>, limit: u64) -> Vec<Webhook> {
    let page = store.list_webhooks(tenant, after, limit, &WebhookFilter::default()).await.unwrap();
    page.into_iter().map(|(webhook, _)| webhook).collect()
}

async fn delivery(
    store: &Store,
    tenant: &str,
    id: &DeliveryId,
) -> (DeliveryRecord, Vec<AttemptRecord>) {
    store.get_delivery(tenant, id).await.unwrap().expect("delivery should exist")
}

/// Create, read, list, update, record and delete: the flow the control plane relies on.
async fn crud_and_record_flow(store: &Store, tenant: &str) {
    let hook = webhook("crm");
    store.create_webhook(tenant, &hook).await.unwrap();
    assert_eq!(store.get_webhook(tenant, &hook.id).await.unwrap(), Some(hook.clone()));
    let err = store.create_webhook(tenant, &webhook("crm")).await.unwrap_err();
    assert!(matches!(err, StorageError::NameTaken { ref name } if name == "crm"), "{err}");

    let mut changed = hook.clone();
    changed.spec.active = false;
    changed.spec.event_types = vec!["*".to_owned()];
    changed.updated_at = at(60);
    assert!(store.update_webhook(tenant, &changed).await.unwrap());
    assert_eq!(list(store, tenant, None, 10).await, vec![changed.clone()]);

    let batch = [report(&hook.id, "e1", 1, at(1)), report(&hook.id, "e1", 3, at(3))];
    let summary = store.record_attempts(tenant, &batch).await.unwrap();
    assert_eq!(summary, RecordSummary { recorded: 2, duplicates: 0 });
    let summary = store.record_attempts(tenant, &batch).await.unwrap();
    assert_eq!(summary, RecordSummary { recorded: 0, duplicates: 2 });
    let (record, attempts) = delivery(store, tenant, &batch[0].delivery_id).await;
    assert_eq!(record.status, DeliveryStatus::Delivered);
    assert_eq!(record.attempt_count, 3);
    assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 3]);
    let listed = store
        .list_deliveries(tenant, &hook.id, &DeliveryFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(listed, vec![record]);

    assert!(store.delete_webhook(tenant, &hook.id).await.unwrap());
    assert!(!store.delete_webhook(tenant, &hook.id).await.unwrap());
    assert_eq!(store.get_webhook(tenant, &hook.id).await.unwrap(), None);
    assert_eq!(store.get_delivery(tenant, &batch[0].delivery_id).await.unwrap(), None);
}

on_both_backends! {
    async fn crud_and_record_flow_works(store) {
        store.ping().await.unwrap();
        crud_and_record_flow(&store, TENANT).await;
    }
}

#[tokio::test]
async fn memory_database_is_one_database_for_every_query() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let hooks: Vec<Webhook> = (0..5).map(|i| webhook(&format!("h{i}"))).collect();
    let clones: Vec<_> = hooks
        .iter()
        .map(|h| {
            let (store, h) = (store.clone(), h.clone());
            tokio::spawn(async move { store.create_webhook(TENANT, &h).await })
        })
        .collect();
    for task in clones {
        task.await.unwrap().unwrap();
    }
    assert_eq!(list(&store, TENANT, None, 10).await.len(), 5);
}

#[tokio::test]
async fn sqlite_file_is_created_and_runs_in_wal_mode_with_its_tuning() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    let (dir, store) = file_store().await;
    assert!(dir.as_ref().unwrap().path().join("hookd.db").exists());
    let pragma = |name: &str| {
        let sql = format!("PRAGMA {name}");
        let db = store.connection();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0)
                .map(|n| n.to_string())
                .or_else(|_| row.try_get_by_index::<String>(0))
                .unwrap()
        }
    };
    assert_eq!(pragma("journal_mode").await, "wal");
    assert_eq!(pragma("synchronous").await, "1", "NORMAL");
    assert_eq!(pragma("mmap_size").await, super::SQLITE_MMAP_BYTES.to_string());
    assert_eq!(pragma("cache_size").await, format!("-{}", super::SQLITE_CACHE_KIB));
    assert_eq!(pragma("wal_autocheckpoint").await, super::SQLITE_AUTOCHECKPOINT_PAGES.to_string());
}

async fn reconnecting_keeps_data_and_reapplies_no_migration(backend: Backend) {
    let (_dir, url) = empty_database(backend);
    let hook = webhook("crm");
    Store::connect(&url).await.unwrap().create_webhook(TENANT, &hook).await.unwrap();
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(again.get_webhook(TENANT, &hook.id).await.unwrap(), Some(hook));
    let applied = crate::migration::applied(again.connection()).await.unwrap();
    assert_eq!(applied, crate::migration::names(), "every migration applied once, in order");
}

#[tokio::test]
async fn reconnecting_keeps_data_and_reapplies_no_migration_on_sqlite() {
    reconnecting_keeps_data_and_reapplies_no_migration(Backend::Sqlite).await;
}

#[tokio::test]
async fn reconnecting_keeps_data_and_reapplies_no_migration_on_postgres() {
    reconnecting_keeps_data_and_reapplies_no_migration(Backend::Postgres).await;
}

on_both_backends! {
    async fn webhook_round_trips_with_timestamps_truncated_to_microseconds(store) {
        let mut hook = webhook("crm");
        hook.created_at = at(0) + Duration::nanoseconds(123_456_789);
        hook.updated_at = at(1) + Duration::nanoseconds(500_000_000);
        store.create_webhook(TENANT, &hook).await.unwrap();
        let stored = store.get_webhook(TENANT, &hook.id).await.unwrap().unwrap();
        assert_eq!(stored.created_at, at(0) + Duration::nanoseconds(123_456_000));
        assert_eq!(stored.updated_at, hook.updated_at);
        assert_eq!(stored.spec, hook.spec);
    }
}

on_both_backends! {
    async fn webhooks_are_invisible_to_other_tenants(store) {
        let hook = webhook("crm");
        store.create_webhook("a", &hook).await.unwrap();
        assert_eq!(store.get_webhook("b", &hook.id).await.unwrap(), None);
        assert!(list(&store, "b", None, 10).await.is_empty());
        assert!(!store.update_webhook("b", &hook).await.unwrap());
        assert!(!store.delete_webhook("b", &hook.id).await.unwrap());
        assert!(store.get_webhook("a", &hook.id).await.unwrap().is_some());
    }
}

on_both_backends! {
    async fn duplicate_name_is_taken_within_a_tenant_only(store) {
        store.create_webhook("a", &webhook("crm")).await.unwrap();
        let err = store.create_webhook("a", &webhook("crm")).await.unwrap_err();
        assert!(matches!(err, StorageError::NameTaken { ref name } if name == "crm"), "{err}");
        assert_eq!(err.to_string(), r#"name "crm" is already taken"#);
        store.create_webhook("b", &webhook("crm")).await.unwrap();
    }
}

on_both_backends! {
    async fn list_webhooks_pages_in_id_order_after_the_cursor(store) {
        let mut hooks: Vec<Webhook> = (0..5).map(|i| webhook(&format!("h{i}"))).collect();
        // Insert out of id order to prove the order comes from the query.
        for h in hooks.iter().rev() {
            store.create_webhook(TENANT, h).await.unwrap();
        }
        store.create_webhook("other", &webhook("elsewhere")).await.unwrap();
        hooks.sort_by(|a, b| a.id.cmp(&b.id));

        let first = list(&store, TENANT, None, 2).await;
        assert_eq!(first, hooks[..2]);
        let second = list(&store, TENANT, Some(&first[1].id), 2).await;
        assert_eq!(second, hooks[2..4]);
        let last = list(&store, TENANT, Some(&second[1].id), 2).await;
        assert_eq!(last, hooks[4..]);
        assert!(list(&store, TENANT, Some(&last[0].id), 2).await.is_empty());
    }
}

on_both_backends! {
    async fn all_webhooks_returns_every_tenant_in_id_order(store) {
        let (a, b, c) = (webhook("a"), webhook("b"), webhook("c"));
        store.create_webhook("t2", &c).await.unwrap();
        store.create_webhook("t1", &a).await.unwrap();
        store.create_webhook("t2", &b).await.unwrap();
        let all = store.all_webhooks().await.unwrap();
        assert_eq!(all, vec![("t1".to_owned(), a), ("t2".to_owned(), b), ("t2".to_owned(), c)]);
    }
}

on_both_backends! {
    async fn update_replaces_the_spec_but_not_created_at(store) {
        let hook = webhook("crm");
        store.create_webhook(TENANT, &hook).await.unwrap();
        let changed = Webhook {
            spec: WebhookSpec {
                name: "crm-v2".to_owned(),
                url: "https://example.org/v2".to_owned(),
                event_types: vec!["*".to_owned()],
                active: false,
                description: String::new(),
                attempt_timeout: None,
                retry_schedule: None,
                ..WebhookSpec::default()
            },
            created_at: at(1000),
            updated_at: at(90),
            ..hook.clone()
        };
        assert!(store.update_webhook(TENANT, &changed).await.unwrap());
        let stored = store.get_webhook(TENANT, &hook.id).await.unwrap().unwrap();
        assert_eq!(stored, Webhook { created_at: hook.created_at, ..changed });
    }
}

on_both_backends! {
    async fn update_of_a_missing_webhook_is_false(store) {
        assert!(!store.update_webhook(TENANT, &webhook("ghost")).await.unwrap());
    }
}

on_both_backends! {
    async fn update_to_a_taken_name_is_name_taken_and_changes_nothing(store) {
        let (one, two) = (webhook("one"), webhook("two"));
        store.create_webhook(TENANT, &one).await.unwrap();
        store.create_webhook(TENANT, &two).await.unwrap();
        let mut clash = two.clone();
        clash.spec.name = "one".to_owned();
        let err = store.update_webhook(TENANT, &clash).await.unwrap_err();
        assert!(matches!(err, StorageError::NameTaken { ref name } if name == "one"), "{err}");
        assert_eq!(store.get_webhook(TENANT, &two.id).await.unwrap(), Some(two));
    }
}

on_both_backends! {
    async fn delete_cascades_to_deliveries_and_attempts_of_that_webhook_only(store) {
        let (gone, kept) = (webhook("gone"), webhook("kept"));
        store.create_webhook(TENANT, &gone).await.unwrap();
        store.create_webhook(TENANT, &kept).await.unwrap();
        let batch = [
            report(&gone.id, "e1", 1, at(1)),
            report(&gone.id, "e2", 1, at(2)),
            report(&kept.id, "e1", 1, at(3)),
        ];
        store.record_attempts(TENANT, &batch).await.unwrap();

        assert!(store.delete_webhook(TENANT, &gone.id).await.unwrap());
        assert!(
            store
                .list_deliveries(TENANT, &gone.id, &DeliveryFilter::default(), None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.get_delivery(TENANT, &batch[0].delivery_id).await.unwrap(), None);
        // The attempts are gone too: recording the same attempt again stores it anew.
        let again = store.record_attempts(TENANT, &batch[..1]).await.unwrap();
        assert_eq!(again, RecordSummary { recorded: 1, duplicates: 0 });
        assert_eq!(delivery(&store, TENANT, &batch[2].delivery_id).await.1.len(), 1);
        assert!(!store.delete_webhook(TENANT, &gone.id).await.unwrap());
    }
}

on_both_backends! {
    async fn reports_for_an_unknown_webhook_are_still_recorded(store) {
        let ghost = WebhookId::generate();
        let summary = store.record_attempts(TENANT, &[report(&ghost, "e1", 1, at(1))]).await.unwrap();
        assert_eq!(summary, RecordSummary { recorded: 1, duplicates: 0 });
    }
}

on_both_backends! {
    async fn first_attempt_creates_the_delivery_from_the_report(store) {
        let hook = WebhookId::generate();
        let r = report(&hook, "e1", 1, at(10));
        store.record_attempts(TENANT, std::slice::from_ref(&r)).await.unwrap();
        let (record, attempts) = delivery(&store, TENANT, &r.delivery_id).await;
        assert_eq!(record.id, r.delivery_id);
        assert_eq!(record.webhook_id, hook);
        assert_eq!(record.event_id, r.event_id);
        assert_eq!(record.event_type, r.event_type);
        assert_eq!(record.payload, r.payload);
        assert_eq!(record.status, DeliveryStatus::Pending);
        assert_eq!(record.attempt_count, 1);
        assert_eq!(record.created_at, at(10));
        assert_eq!(record.last_attempt_at, Some(at(10)));
        assert_eq!(record.next_attempt_at, Some(at(25)));
        assert_eq!(attempts, vec![r.attempt]);
        assert_eq!(store.get_delivery("other", &r.delivery_id).await.unwrap(), None);
    }
}

on_both_backends! {
    async fn recording_the_same_batch_twice_counts_duplicates_and_changes_nothing(store) {
        let hook = WebhookId::generate();
        let batch: Vec<_> = (1..=3).map(|i| report(&hook, &format!("e{i}"), 1, at(i))).collect();
        let first = store.record_attempts(TENANT, &batch).await.unwrap();
        assert_eq!(first, RecordSummary { recorded: 3, duplicates: 0 });
        let before =
            store.list_deliveries(TENANT, &hook, &DeliveryFilter::default(), None, 10).await.unwrap();

        let second = store.record_attempts(TENANT, &batch).await.unwrap();
        assert_eq!(second, RecordSummary { recorded: 0, duplicates: 3 });
        assert_eq!(
            store.list_deliveries(TENANT, &hook, &DeliveryFilter::default(), None, 10).await.unwrap(),
            before
        );
        assert_eq!(delivery(&store, TENANT, &batch[0].delivery_id).await.1.len(), 1);
    }
}

on_both_backends! {
    async fn an_attempt_repeated_within_a_batch_is_a_duplicate(store) {
        let r = report(&WebhookId::generate(), "e1", 1, at(1));
        let summary = store.record_attempts(TENANT, &[r.clone(), r.clone()]).await.unwrap();
        assert_eq!(summary, RecordSummary { recorded: 1, duplicates: 1 });
    }
}

on_both_backends! {
    async fn an_empty_batch_records_nothing(store) {
        assert_eq!(store.record_attempts(TENANT, &[]).await.unwrap(), RecordSummary::default());
    }
}

on_both_backends! {
    async fn a_late_report_of_an_older_attempt_does_not_regress_the_delivery(store) {
        let hook = WebhookId::generate();
        let first = report(&hook, "e1", 1, at(1));
        let third = report(&hook, "e1", 3, at(100));
        let second = report(&hook, "e1", 2, at(50));
        store.record_attempts(TENANT, &[first]).await.unwrap();
        store.record_attempts(TENANT, std::slice::from_ref(&third)).await.unwrap();
        let (before, _) = delivery(&store, TENANT, &third.delivery_id).await;
        assert_eq!(before.status, DeliveryStatus::Delivered);

        let summary = store.record_attempts(TENANT, &[second]).await.unwrap();
        assert_eq!(summary, RecordSummary { recorded: 1, duplicates: 0 });
        let (after, attempts) = delivery(&store, TENANT, &third.delivery_id).await;
        assert_eq!(after, before);
        assert_eq!(after.attempt_count, 3);
        assert_eq!(after.last_attempt_at, Some(at(100)));
        assert_eq!(after.next_attempt_at, None);
        assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
    }
}

on_both_backends! {
    async fn a_late_first_attempt_creates_the_delivery_at_its_start_without_regressing(store) {
        let hook = WebhookId::generate();
        let (first, second) = (report(&hook, "e1", 1, at(1)), report(&hook, "e1", 2, at(20)));
        store.record_attempts(TENANT, std::slice::from_ref(&second)).await.unwrap();
        store.record_attempts(TENANT, &[first]).await.unwrap();
        let (record, _) = delivery(&store, TENANT, &second.delivery_id).await;
        assert_eq!(record.attempt_count, 2);
        assert_eq!(record.last_attempt_at, Some(at(20)));
        // created_at comes from the first report that reached the store.
        assert_eq!(record.created_at, at(20));
    }
}

on_both_backends! {
    async fn several_attempts_of_one_delivery_in_one_batch_end_in_the_newest_state(store) {
        let hook = WebhookId::generate();
        // Out of order inside the batch, for a new and for an existing delivery.
        let existing = report(&hook, "e0", 1, at(0));
        store.record_attempts(TENANT, std::slice::from_ref(&existing)).await.unwrap();
        let batch = [
            report(&hook, "e1", 2, at(20)),
            report(&hook, "e0", 3, at(30)),
            report(&hook, "e1", 3, at(30)),
            report(&hook, "e0", 2, at(20)),
            report(&hook, "e1", 1, at(10)),
        ];
        let summary = store.record_attempts(TENANT, &batch).await.unwrap();
        assert_eq!(summary, RecordSummary { recorded: 5, duplicates: 0 });

        for (id, created) in [(&existing.delivery_id, at(0)), (&batch[0].delivery_id, at(10))] {
            let (record, attempts) = delivery(&store, TENANT, id).await;
            assert_eq!(record.status, DeliveryStatus::Delivered);
            assert_eq!(record.attempt_count, 3);
            assert_eq!(record.created_at, created);
            assert_eq!(record.last_attempt_at, Some(at(30)));
            assert_eq!(record.next_attempt_at, None);
            assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
        }
    }
}

on_both_backends! {
    async fn a_large_batch_is_recorded_across_several_inserts(store) {
        let hook = WebhookId::generate();
        let batch: Vec<_> = (0..1200).map(|i| report(&hook, &format!("e{i}"), 1, at(i))).collect();
        let summary = store.record_attempts(TENANT, &batch).await.unwrap();
        assert_eq!(summary, RecordSummary { recorded: 1200, duplicates: 0 });
        let again = store.record_attempts(TENANT, &batch).await.unwrap();
        assert_eq!(again, RecordSummary { recorded: 0, duplicates: 1200 });
        assert_eq!(
            store
                .list_deliveries(TENANT, &hook, &DeliveryFilter::default(), None, 5000)
                .await
                .unwrap()
                .len(),
            1200
        );
    }
}

on_both_backends! {
    async fn list_deliveries_pages_newest_first_with_ties_broken_by_id(store) {
        let hook = WebhookId::generate();
        // Two deliveries per second, so pages must break created_at ties by id. Sub-second
        // starts check that text-stored timestamps still compare in time order.
        let batch: Vec<_> = (0..10)
            .map(|i| report(&hook, &format!("e{i}"), 1, at(i / 2) + Duration::microseconds(i % 2 * 5)))
            .chain([report(&WebhookId::generate(), "elsewhere", 1, at(3))])
            .collect();
        store.record_attempts(TENANT, &batch).await.unwrap();

        let mut expected: Vec<_> =
            batch[..10].iter().map(|r| (r.attempt.started_at, r.delivery_id.clone())).collect();
        expected.sort();
        expected.reverse();

        let mut seen = Vec::new();
        let mut cursor: Option<DeliveryCursor> = None;
        loop {
            let page = store
                .list_deliveries(TENANT, &hook, &DeliveryFilter::default(), cursor.as_ref(), 3)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            cursor = page.last().map(DeliveryCursor::from);
            seen.extend(page.into_iter().map(|d| (d.created_at, d.id)));
        }
        assert_eq!(seen, expected);
    }
}

on_both_backends! {
    async fn get_delivery_returns_attempts_ordered_by_number(store) {
        let hook = WebhookId::generate();
        for number in [3, 1, 2] {
            let r = report(&hook, "e1", number, at(i64::from(number)));
            store.record_attempts(TENANT, &[r]).await.unwrap();
        }
        let id = DeliveryId::for_event(&EventId::from("e1"), DateTime::UNIX_EPOCH, &hook);
        let (record, attempts) = delivery(&store, TENANT, &id).await;
        assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(attempts[2].http_status, Some(200));
        assert_eq!(attempts[0].error, "connection refused");
        assert_eq!(record.attempt_count, 3);
        assert_eq!(store.get_delivery(TENANT, &DeliveryId::from("dlv_missing")).await.unwrap(), None);
    }
}

on_both_backends! {
    async fn list_filters_by_status_and_time_and_resend_reopens_only_finished_deliveries(store) {
        let hook = WebhookId::from("wh_filter");
        // e1 fails at attempt 1 (pending), e2 succeeds at attempt 3 (delivered).
        store.record_attempts(TENANT, &[report(&hook, "e1", 1, at(10))]).await.unwrap();
        store.record_attempts(TENANT, &[report(&hook, "e2", 3, at(20))]).await.unwrap();
        let list = |filter: DeliveryFilter| {
            let store = store.clone();
            let hook = hook.clone();
            async move {
                let rows = store.list_deliveries(TENANT, &hook, &filter, None, 10).await.unwrap();
                rows.into_iter().map(|d| d.event_id.into_string()).collect::<Vec<_>>()
            }
        };
        let pending = DeliveryFilter { status: Some(DeliveryStatus::Pending), since: None };
        assert_eq!(list(pending).await, ["e1"]);
        assert_eq!(list(DeliveryFilter { status: None, since: Some(at(15)) }).await, ["e2"]);

        let e1 = DeliveryId::for_event(&EventId::from("e1"), DateTime::UNIX_EPOCH, &hook);
        let e2 = DeliveryId::for_event(&EventId::from("e2"), DateTime::UNIX_EPOCH, &hook);
        assert!(store.mark_resent(TENANT, &e1, at(30)).await.unwrap().is_none(), "pending: no resend");
        let before = store.mark_resent(TENANT, &e2, at(30)).await.unwrap().expect("delivered");
        assert_eq!(before.status, DeliveryStatus::Delivered);
        assert!(before.event.contains("\"e2\""));
        let (after, attempts) = store.get_delivery(TENANT, &e2).await.unwrap().expect("exists");
        assert_eq!(after.status, DeliveryStatus::Pending);
        assert_eq!(after.next_attempt_at, Some(at(30)));
        assert_eq!(attempts[0].request_headers, [("webhook-id".to_owned(), "dlv".to_owned())]);
    }
}

/// Two control planes over one database: each has its own pool, both record the same
/// attempts at once, and every attempt still counts once.
async fn two_stores_recording_the_same_attempts_count_each_once(backend: Backend) {
    let (_dir, url) = empty_database(backend);
    let (a, b) = (Store::connect(&url).await.unwrap(), Store::connect(&url).await.unwrap());
    let hook = webhook("shared");
    a.create_webhook(TENANT, &hook).await.unwrap();
    let batch: Vec<_> = (0..50).map(|i| report(&hook.id, &format!("e{i}"), 3, at(i))).collect();
    let (first, second) =
        tokio::join!(a.record_attempts(TENANT, &batch), b.record_attempts(TENANT, &batch[25..]));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.recorded + second.recorded, 50, "{first:?} {second:?}");
    assert_eq!(first.duplicates + second.duplicates, 25, "{first:?} {second:?}");
    let (_, stats) = b.get_webhook_with_stats(TENANT, &hook.id).await.unwrap().unwrap();
    assert_eq!((stats.triggered, stats.succeeded), (50, 50));
}

#[tokio::test]
async fn two_stores_recording_the_same_attempts_count_each_once_on_sqlite() {
    two_stores_recording_the_same_attempts_count_each_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn two_stores_recording_the_same_attempts_count_each_once_on_postgres() {
    two_stores_recording_the_same_attempts_count_each_once(Backend::Postgres).await;
}

#[tokio::test]
async fn migrate_applies_every_migration_once_even_when_replicas_start_together() {
    let (_dir, url) = empty_database(Backend::Postgres);
    let pool = crate::PoolOptions::default();
    let (one, two, three) =
        tokio::join!(crate::migrate(&url, &pool), crate::migrate(&url, &pool), async {
            Store::connect(&url).await.map(drop)
        });
    let mut applied = [one.unwrap(), two.unwrap()];
    three.unwrap();
    applied.sort();
    // One of the two migrated (or neither, when the connecting store was first).
    assert!(applied[0].is_empty(), "{applied:?}");
    assert!(applied[1].is_empty() || applied[1] == crate::migration::names(), "{applied:?}");
    assert!(crate::migrate(&url, &pool).await.unwrap().is_empty(), "a second run is a no-op");
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        crate::migration::applied(store.connection()).await.unwrap(),
        crate::migration::names()
    );
}

#[tokio::test]
async fn a_database_url_of_another_kind_is_refused_by_name() {
    let err = Store::connect("mysql://localhost/hookd").await.expect_err("not supported");
    assert!(err.to_string().contains("database_url"), "{err}");
}

mod access;
mod controls;
mod definitions;
mod history;
mod secrets;
