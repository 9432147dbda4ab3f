//! Tests of the definitions added by m0002: every webhook field, webhook filters and
//! statistics, credentials with their token state, and the event-type catalog, each on SQLite
//! and on Postgres.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hookd_core::catalog::{EventTypeDef, EventTypeSpec};
use hookd_core::credential::{Credential, CredentialSpec, GrantType, TokenMethod};
use hookd_core::endpoint::{ApiKeyLocation, EndpointAuth, Header, HttpMethod, Secret};
use hookd_core::payload::PayloadFormat;
use hookd_core::{
    AttemptReport, CredentialId, DeliveryId, DeliveryStatus, EventId, EventType, Webhook,
    WebhookId, WebhookStats,
};
use serde_json::json;

use super::{Backend, TENANT, at, empty_database, report, webhook};
use crate::{StorageError, Store, TokenState, WebhookFilter};

/// A second tenant, distinct per run like `tenant`.
fn other_tenant(tenant: &str) -> String {
    format!("{tenant}-other")
}

fn full_webhook(name: &str) -> Webhook {
    let mut hook = webhook(name);
    hook.spec.app = "crm".to_owned();
    hook.spec.method = HttpMethod::Put;
    hook.spec.headers = vec![
        Header { name: "x-first".to_owned(), value: "1".to_owned() },
        Header { name: "x-second".to_owned(), value: "two".to_owned() },
    ];
    hook.spec.auth =
        EndpointAuth::Basic { username: "user".to_owned(), password: Secret::new("p@ss\"word%_") };
    hook.spec.credential_id = Some(CredentialId::from("cred_abc"));
    hook.spec.fields = vec!["/contact/email".to_owned(), "/contact/id".to_owned()];
    hook.spec.format = PayloadFormat::Flat;
    hook.spec.signing = hookd_core::signing::SigningKeys::generate();
    hook
}

async fn every_webhook_field_round_trips(store: &Store, tenant: &str) {
    let hook = full_webhook("full");
    store.create_webhook(tenant, &hook).await.unwrap();
    assert_eq!(store.get_webhook(tenant, &hook.id).await.unwrap(), Some(hook.clone()));
    let (got, stats) = store.get_webhook_with_stats(tenant, &hook.id).await.unwrap().unwrap();
    assert_eq!(got, hook);
    assert_eq!(stats, WebhookStats::default());

    let mut changed = hook.clone();
    changed.spec.app = "billing".to_owned();
    changed.spec.method = HttpMethod::Patch;
    changed.spec.headers = vec![Header { name: "x-only".to_owned(), value: "v".to_owned() }];
    changed.spec.auth = EndpointAuth::ApiKey {
        name: "key".to_owned(),
        value: Secret::new("secret-api-key"),
        location: ApiKeyLocation::Query,
    };
    changed.spec.credential_id = None;
    changed.spec.fields = vec![];
    changed.spec.format = PayloadFormat::Data;
    changed.spec.signing.rotate(at(60), chrono::Duration::hours(1));
    changed.updated_at = at(60);
    assert!(store.update_webhook(tenant, &changed).await.unwrap());
    assert_eq!(store.get_webhook(tenant, &changed.id).await.unwrap(), Some(changed.clone()));
    let all = store.all_webhooks().await.unwrap();
    assert!(all.contains(&(tenant.to_owned(), changed.clone())));

    let mut bearer = changed.clone();
    bearer.spec.auth = EndpointAuth::Bearer { token: Secret::new("tok") };
    assert!(store.update_webhook(tenant, &bearer).await.unwrap());
    let (got, _) = store.get_webhook_with_stats(tenant, &bearer.id).await.unwrap().unwrap();
    assert_eq!(got.spec.auth, EndpointAuth::Bearer { token: Secret::new("tok") });
    assert!(store.get_webhook_with_stats("elsewhere", &bearer.id).await.unwrap().is_none());
}

on_both_backends! {
    async fn every_webhook_field_round_trips(store) {
        every_webhook_field_round_trips(&store, TENANT).await;
    }
}

fn hook_with(name: &str, app: &str, types: &[&str], active: bool) -> Webhook {
    let mut hook = webhook(name);
    hook.spec.app = app.to_owned();
    hook.spec.event_types = types.iter().map(|t| (*t).to_owned()).collect();
    hook.spec.active = active;
    hook
}

async fn names(store: &Store, tenant: &str, filter: &WebhookFilter) -> Vec<String> {
    let page = store.list_webhooks(tenant, None, 100, filter).await.unwrap();
    let mut names: Vec<String> = page.into_iter().map(|(w, _)| w.spec.name).collect();
    names.sort();
    names
}

async fn filters_select_webhooks(store: &Store, tenant: &str) {
    let hooks = [
        hook_with("CRM Sync", "crm", &["contact-created"], true),
        hook_with("crm_backup", "crm", &["*"], false),
        hook_with("crmXbackup", "other", &["contact-created-v2"], true),
        hook_with("100% billing", "billing", &["Contact-Created", "invoice-paid"], true),
        hook_with("1000 things", "billing", &["contact_created"], true),
    ];
    for hook in &hooks {
        store.create_webhook(tenant, hook).await.unwrap();
    }
    store
        .create_webhook(&other_tenant(tenant), &hook_with("crm elsewhere", "crm", &["*"], true))
        .await
        .unwrap();
    let all = WebhookFilter::default();
    assert_eq!(names(store, tenant, &all).await.len(), 5);

    let name = |s: &str| WebhookFilter { name_contains: Some(s.to_owned()), ..all.clone() };
    assert_eq!(names(store, tenant, &name("crm")).await, ["CRM Sync", "crmXbackup", "crm_backup"]);
    assert_eq!(names(store, tenant, &name("SYNC")).await, ["CRM Sync"]);
    // `_` and `%` are literal, not LIKE wildcards.
    assert_eq!(names(store, tenant, &name("m_b")).await, ["crm_backup"]);
    assert_eq!(names(store, tenant, &name("0%")).await, ["100% billing"]);
    assert_eq!(names(store, tenant, &name("\\")).await, Vec::<String>::new());

    let app = WebhookFilter { app: Some("crm".to_owned()), ..all.clone() };
    assert_eq!(names(store, tenant, &app).await, ["CRM Sync", "crm_backup"]);

    // Exactly the type or `*`: not another case, a longer type or `_` as a wildcard.
    let created = WebhookFilter { event_type: Some("contact-created".to_owned()), ..all.clone() };
    assert_eq!(names(store, tenant, &created).await, ["CRM Sync", "crm_backup"]);
    let upper = WebhookFilter { event_type: Some("Contact-Created".to_owned()), ..all.clone() };
    assert_eq!(names(store, tenant, &upper).await, ["100% billing", "crm_backup"]);

    let inactive = WebhookFilter { active: Some(false), ..all.clone() };
    assert_eq!(names(store, tenant, &inactive).await, ["crm_backup"]);
    let active = WebhookFilter { active: Some(true), ..all.clone() };
    assert_eq!(names(store, tenant, &active).await.len(), 4);

    let combined = WebhookFilter {
        name_contains: Some("CRM".to_owned()),
        app: Some("crm".to_owned()),
        event_type: Some("contact-created".to_owned()),
        active: Some(true),
    };
    assert_eq!(names(store, tenant, &combined).await, ["CRM Sync"]);
    let none = WebhookFilter { app: Some("billing".to_owned()), ..created.clone() };
    assert_eq!(names(store, tenant, &none).await, Vec::<String>::new());

    // Pages of a filtered list are full and ordered by id, past rows the filter drops.
    let mut expected: Vec<&Webhook> = hooks[..2].iter().collect();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    let first = store.list_webhooks(tenant, None, 1, &created).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(&first[0].0, expected[0]);
    let second = store.list_webhooks(tenant, Some(&first[0].0.id), 1, &created).await.unwrap();
    assert_eq!(&second[0].0, expected[1]);
    let rest = store.list_webhooks(tenant, Some(&second[0].0.id), 1, &created).await.unwrap();
    assert!(rest.is_empty());
    assert!(store.list_webhooks(tenant, None, 0, &all).await.unwrap().is_empty());

    // Exact subscriptions only: `*` does not pin a type.
    let subscribed = store.webhooks_subscribed_to(tenant, "contact-created").await.unwrap();
    assert_eq!(subscribed, [hooks[0].id.clone()]);
    let subscribed = store.webhooks_subscribed_to(tenant, "contact_created").await.unwrap();
    assert_eq!(subscribed, [hooks[4].id.clone()]);
    assert!(store.webhooks_subscribed_to(tenant, "contact").await.unwrap().is_empty());
}

on_both_backends! {
    async fn filters_select_webhooks(store) {
        filters_select_webhooks(&store, TENANT).await;
    }
}

async fn webhooks_using_a_credential_are_found(store: &Store, tenant: &str) {
    let cred = CredentialId::from(format!("cred_{}", WebhookId::generate()));
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut hook = webhook(&format!("uses{i}"));
        hook.spec.credential_id = Some(cred.clone());
        store.create_webhook(tenant, &hook).await.unwrap();
        ids.push(hook.id);
    }
    store.create_webhook(tenant, &webhook("no credential")).await.unwrap();
    ids.sort();
    let using = store.webhooks_using_credential(tenant, &cred).await.unwrap();
    assert_eq!(using, ids[..10]);
    assert!(
        store.webhooks_using_credential(&other_tenant(tenant), &cred).await.unwrap().is_empty()
    );
}

on_both_backends! {
    async fn webhooks_using_a_credential_are_found(store) {
        webhooks_using_a_credential_are_found(&store, TENANT).await;
    }
}

/// A report of attempt `number` of `event` that leaves the delivery in `status`.
fn outcome(
    hook: &WebhookId,
    event: &str,
    number: u32,
    started: DateTime<Utc>,
    status: DeliveryStatus,
) -> AttemptReport {
    let mut r = report(hook, event, number, started);
    let success = status == DeliveryStatus::Delivered;
    r.attempt.success = success;
    r.attempt.http_status = Some(if success { 200 } else { 503 });
    r.status_after = status;
    r.next_attempt_at = (status == DeliveryStatus::Pending).then_some(started);
    r
}

async fn stats(store: &Store, tenant: &str, id: &WebhookId) -> WebhookStats {
    store.get_webhook_with_stats(tenant, id).await.unwrap().unwrap().1
}

fn expect(
    last: Option<(i64, u16, bool)>,
    triggered: u64,
    succeeded: u64,
    failed: u64,
) -> WebhookStats {
    WebhookStats {
        last_attempt_at: last.map(|(t, _, _)| at(t)),
        last_attempt_status: last.map(|(_, s, _)| s),
        last_attempt_succeeded: last.is_some_and(|(_, _, ok)| ok),
        triggered,
        succeeded,
        failed,
        filtered: 0,
    }
}

async fn statistics_follow_the_history(store: &Store, tenant: &str) {
    use DeliveryStatus::{Delivered, Failed, Pending};
    let hook = webhook("stats");
    let other = webhook("other stats");
    store.create_webhook(tenant, &hook).await.unwrap();
    store.create_webhook(tenant, &other).await.unwrap();
    let h = &hook.id;

    store.record_attempts(tenant, &[outcome(h, "e1", 1, at(10), Pending)]).await.unwrap();
    assert_eq!(stats(store, tenant, h).await, expect(Some((10, 503, false)), 1, 0, 0));

    // One batch over two webhooks and several deliveries.
    let batch = [
        outcome(h, "e1", 2, at(20), Delivered),
        outcome(h, "e2", 1, at(30), Failed),
        outcome(&other.id, "e9", 1, at(25), Delivered),
        // Older than what is stored: counted, but the last attempt stays at 30.
        outcome(h, "e3", 1, at(5), Delivered),
    ];
    let summary = store.record_attempts(tenant, &batch).await.unwrap();
    assert_eq!(summary.recorded, 4);
    let after_batch = expect(Some((30, 503, false)), 3, 2, 1);
    assert_eq!(stats(store, tenant, h).await, after_batch);
    assert_eq!(stats(store, tenant, &other.id).await, expect(Some((25, 200, true)), 1, 1, 0));

    // Re-reporting stored attempts changes nothing.
    let summary = store.record_attempts(tenant, &batch).await.unwrap();
    assert_eq!(summary.duplicates, 4);
    assert_eq!(stats(store, tenant, h).await, after_batch);

    // A late report of an older attempt of e2 neither regresses it nor the last attempt.
    store.record_attempts(tenant, &[outcome(h, "e2", 0, at(1), Pending)]).await.unwrap();
    store.record_attempts(tenant, &[outcome(h, "e4", 1, at(29), Pending)]).await.unwrap();
    assert_eq!(stats(store, tenant, h).await, expect(Some((30, 503, false)), 4, 2, 1));

    // Resend moves a delivery back to pending; a restore puts it back.
    let e1 = DeliveryId::for_event(&EventId::from("e1"), chrono::DateTime::UNIX_EPOCH, h);
    let e2 = DeliveryId::for_event(&EventId::from("e2"), chrono::DateTime::UNIX_EPOCH, h);
    let before = store.mark_resent(tenant, &e1, at(40)).await.unwrap().unwrap();
    assert_eq!(stats(store, tenant, h).await, expect(Some((30, 503, false)), 4, 1, 1));
    store.restore_status(tenant, &before).await.unwrap();
    assert_eq!(stats(store, tenant, h).await, expect(Some((30, 503, false)), 4, 2, 1));

    // A failed delivery resent and then delivered moves from failed to succeeded.
    store.mark_resent(tenant, &e2, at(40)).await.unwrap().unwrap();
    assert_eq!(stats(store, tenant, h).await, expect(Some((30, 503, false)), 4, 2, 0));
    store.record_attempts(tenant, &[outcome(h, "e2", 2, at(41), Delivered)]).await.unwrap();
    assert_eq!(stats(store, tenant, h).await, expect(Some((41, 200, true)), 4, 3, 0));
    let (record, _) = store.get_delivery(tenant, &e2).await.unwrap().unwrap();
    assert_eq!(record.status, Delivered);

    // Stats live on the webhook row and go with it.
    assert!(store.delete_webhook(tenant, h).await.unwrap());
    assert!(store.get_webhook_with_stats(tenant, h).await.unwrap().is_none());
}

on_both_backends! {
    async fn statistics_follow_the_history(store) {
        statistics_follow_the_history(&store, TENANT).await;
    }
}

on_both_backends! {
    async fn statistics_of_a_large_batch_are_counted_once_per_delivery(store) {
        let hook = webhook("bulk");
        store.create_webhook(TENANT, &hook).await.unwrap();
        let mut batch = Vec::new();
        for i in 0..1200 {
            let status = if i % 3 == 0 { DeliveryStatus::Failed } else { DeliveryStatus::Delivered };
            batch.push(outcome(&hook.id, &format!("e{i}"), 1, at(i), status));
        }
        store.record_attempts(TENANT, &batch).await.unwrap();
        store.record_attempts(TENANT, &batch).await.unwrap();
        assert_eq!(
            stats(&store, TENANT, &hook.id).await,
            expect(Some((1199, 200, true)), 1200, 800, 400)
        );
    }
}

fn credential(name: &str) -> Credential {
    Credential {
        id: CredentialId::generate(),
        spec: CredentialSpec {
            name: name.to_owned(),
            token_url: "https://auth.example.com/token".to_owned(),
            method: TokenMethod::Get,
            client_id: "client".to_owned(),
            client_secret: Secret::new("client-secret-1234"),
            grant_type: GrantType::AuthorizationCode,
            code: Some(Secret::new("the-code")),
            scope: "webhooks read".to_owned(),
            extra_params: BTreeMap::from([("audience".to_owned(), "api".to_owned())]),
        },
        created_at: at(0),
        updated_at: at(0),
    }
}

async fn credentials_crud_and_token_state(store: &Store, tenant: &str) {
    let cred = credential("crm oauth");
    store.create_credential(tenant, &cred).await.unwrap();
    let got = store.get_credential(tenant, &cred.id).await.unwrap();
    assert_eq!(got, Some((cred.clone(), TokenState::default())));
    assert!(store.get_credential(&other_tenant(tenant), &cred.id).await.unwrap().is_none());

    let err = store.create_credential(tenant, &credential("crm oauth")).await.unwrap_err();
    assert!(matches!(err, StorageError::NameTaken { ref name } if name == "crm oauth"), "{err}");
    // Names are unique per tenant only.
    store.create_credential(&other_tenant(tenant), &credential("crm oauth")).await.unwrap();

    let state = TokenState {
        access_token: Some(Secret::new("access-xyz")),
        expires_at: Some(at(3600)),
        refresh_token: Some(Secret::new("refresh-xyz")),
        last_error: String::new(),
    };
    assert!(store.save_token_state(tenant, &cred.id, &state).await.unwrap());
    assert_eq!(store.get_credential(tenant, &cred.id).await.unwrap().unwrap().1, state);
    let failed = TokenState { last_error: "token endpoint said 401".to_owned(), ..state.clone() };
    assert!(store.save_token_state(tenant, &cred.id, &failed).await.unwrap());
    assert_eq!(store.get_credential(tenant, &cred.id).await.unwrap().unwrap().1, failed);
    assert!(
        !store.save_token_state(tenant, &CredentialId::from("cred_none"), &state).await.unwrap()
    );
    let printed = format!("{failed:?}");
    assert!(!printed.contains("xyz"), "{printed}");

    let second = credential("second");
    store.create_credential(tenant, &second).await.unwrap();
    let mut renamed = cred.clone();
    renamed.spec.name = "second".to_owned();
    let err = store.update_credential(tenant, &renamed).await.unwrap_err();
    assert!(matches!(err, StorageError::NameTaken { ref name } if name == "second"), "{err}");

    // An update replaces the spec and forgets the token fetched with the old one.
    let mut changed = cred.clone();
    changed.spec.name = "crm oauth v2".to_owned();
    changed.spec.grant_type = GrantType::ClientCredentials;
    changed.spec.code = None;
    changed.spec.method = TokenMethod::Post;
    changed.updated_at = at(60);
    assert!(store.update_credential(tenant, &changed).await.unwrap());
    let got = store.get_credential(tenant, &cred.id).await.unwrap();
    assert_eq!(got, Some((changed.clone(), TokenState::default())));
    let mut missing = credential("missing");
    missing.id = CredentialId::from("cred_missing");
    assert!(!store.update_credential(tenant, &missing).await.unwrap());

    let mut expected = [changed.clone(), second.clone()];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    let page = store.list_credentials(tenant, None, 1).await.unwrap();
    assert_eq!(page.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(), expected[..1]);
    let page = store.list_credentials(tenant, Some(&expected[0].id), 10).await.unwrap();
    assert_eq!(page.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(), expected[1..]);

    assert!(store.delete_credential(tenant, &cred.id).await.unwrap());
    assert!(!store.delete_credential(tenant, &cred.id).await.unwrap());
    assert!(store.get_credential(tenant, &cred.id).await.unwrap().is_none());
    // The name is free again.
    store.create_credential(tenant, &credential("crm oauth")).await.unwrap();
}

on_both_backends! {
    async fn credentials_crud_and_token_state(store) {
        credentials_crud_and_token_state(&store, TENANT).await;
    }
}

fn event_type(name: &str) -> EventTypeDef {
    EventTypeDef {
        spec: EventTypeSpec {
            name: EventType::parse(name).unwrap(),
            description: format!("{name} happened"),
            schema: Some(json!({"type": "object", "required": ["id"]})),
            example: Some(json!({"id": 7, "name": "ünïcode \"quoted\""})),
        },
        created_at: at(0),
        updated_at: at(0),
        rejected: 0,
    }
}

async fn event_type_catalog(store: &Store, tenant: &str) {
    assert!(!store.has_catalog(tenant).await.unwrap());
    let created = event_type("contact-created");
    store.create_event_type(tenant, &created).await.unwrap();
    assert!(store.has_catalog(tenant).await.unwrap());
    assert_eq!(
        store.get_event_type(tenant, "contact-created").await.unwrap(),
        Some(created.clone())
    );
    assert!(
        store.get_event_type(&other_tenant(tenant), "contact-created").await.unwrap().is_none()
    );
    let err = store.create_event_type(tenant, &event_type("contact-created")).await.unwrap_err();
    assert!(
        matches!(err, StorageError::AlreadyExists { what: "event type", ref name } if name == "contact-created"),
        "{err}"
    );

    let mut bare = event_type("basket-submitted");
    bare.spec.schema = None;
    bare.spec.example = None;
    bare.spec.description = String::new();
    store.create_event_type(tenant, &bare).await.unwrap();
    store.create_event_type(tenant, &event_type("zebra")).await.unwrap();

    let names = |defs: Vec<EventTypeDef>| {
        defs.into_iter().map(|d| d.spec.name.as_str().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list_event_types(tenant, None, 2).await.unwrap()),
        ["basket-submitted", "contact-created"]
    );
    assert_eq!(
        names(store.list_event_types(tenant, Some("contact-created"), 2).await.unwrap()),
        ["zebra"]
    );
    assert_eq!(store.get_event_type(tenant, "basket-submitted").await.unwrap(), Some(bare.clone()));

    store
        .add_rejected(&[
            (tenant.to_owned(), "contact-created".to_owned(), 3),
            (tenant.to_owned(), "contact-created".to_owned(), 2),
            (tenant.to_owned(), "not-catalogued".to_owned(), 9),
            (other_tenant(tenant), "contact-created".to_owned(), 100),
        ])
        .await
        .unwrap();
    store.add_rejected(&[]).await.unwrap();
    // The other tenant had no such type when its count came: ignored. Now it has one.
    let other = other_tenant(tenant);
    assert!(store.get_event_type(&other, "contact-created").await.unwrap().is_none());
    store.create_event_type(&other, &event_type("contact-created")).await.unwrap();
    store.add_rejected(&[(other.clone(), "contact-created".to_owned(), 100)]).await.unwrap();
    let got = store.get_event_type(&other, "contact-created").await.unwrap().unwrap();
    assert_eq!(got.rejected, 100);
    let got = store.get_event_type(tenant, "contact-created").await.unwrap().unwrap();
    assert_eq!(got.rejected, 5);
    assert!(store.get_event_type(tenant, "not-catalogued").await.unwrap().is_none());

    // An update changes the spec and updated_at, never created_at or the rejected count.
    let mut changed = created.clone();
    changed.spec.description = "changed".to_owned();
    changed.spec.schema = None;
    changed.spec.example = Some(json!([1, 2]));
    changed.updated_at = at(60);
    changed.created_at = at(30);
    changed.rejected = 0;
    assert!(store.update_event_type(tenant, &changed).await.unwrap());
    let got = store.get_event_type(tenant, "contact-created").await.unwrap().unwrap();
    assert_eq!(got.spec, changed.spec);
    assert_eq!((got.created_at, got.updated_at, got.rejected), (at(0), at(60), 5));
    assert!(!store.update_event_type(tenant, &event_type("unknown")).await.unwrap());

    let all: Vec<_> = store
        .all_event_types()
        .await
        .unwrap()
        .into_iter()
        .filter(|(t, _)| t == tenant)
        .map(|(_, d)| d.spec.name.as_str().to_owned())
        .collect();
    assert_eq!(all, ["basket-submitted", "contact-created", "zebra"]);

    for name in ["basket-submitted", "contact-created", "zebra"] {
        assert!(store.delete_event_type(tenant, name).await.unwrap());
    }
    assert!(!store.delete_event_type(tenant, "zebra").await.unwrap());
    assert!(!store.has_catalog(tenant).await.unwrap());
}

on_both_backends! {
    async fn event_type_catalog(store) {
        event_type_catalog(&store, TENANT).await;
    }
}

/// A webhook stored before m0002 reads back with default options and empty statistics.
async fn webhooks_from_before_m0002_keep_their_fields_and_get_defaults(backend: Backend) {
    use sea_orm::sea_query::{Expr, Query};
    use sea_orm::{ConnectionTrait, Database};
    use sea_orm_migration::MigratorTrait;

    let (_dir, url) = empty_database(backend);
    let old = webhook("old");
    {
        let db = Database::connect(&url).await.unwrap();
        crate::Migrator::up(&db, Some(1)).await.unwrap();
        let mut insert = Query::insert();
        insert
            .into_table("webhooks")
            .columns([
                "id",
                "tenant",
                "name",
                "url",
                "event_types",
                "active",
                "description",
                "attempt_timeout_ms",
                "retry_schedule",
                "created_at",
                "updated_at",
            ])
            .values([
                Expr::val(old.id.as_str()),
                Expr::val(TENANT),
                Expr::val("old"),
                Expr::val(old.spec.url.as_str()),
                Expr::val(r#"["contact-created","contact-deleted"]"#),
                Expr::val(true),
                Expr::val(old.spec.description.as_str()),
                Expr::val(2500),
                Expr::val("[1.0,2.0,3.0]"),
                Expr::val(at(0)),
                Expr::val(at(0)),
            ])
            .unwrap();
        db.execute(&insert).await.unwrap();
        db.close().await.unwrap();
    }
    let store = Store::connect(&url).await.unwrap();
    let (got, stats) = store.get_webhook_with_stats(TENANT, &old.id).await.unwrap().unwrap();
    assert_eq!(got, old);
    assert_eq!(stats, WebhookStats::default());
}

#[tokio::test]
async fn webhooks_from_before_m0002_keep_their_fields_and_get_defaults_on_sqlite() {
    webhooks_from_before_m0002_keep_their_fields_and_get_defaults(Backend::Sqlite).await;
}

#[tokio::test]
async fn webhooks_from_before_m0002_keep_their_fields_and_get_defaults_on_postgres() {
    webhooks_from_before_m0002_keep_their_fields_and_get_defaults(Backend::Postgres).await;
}
