//! hookd on Postgres, with real processes: the main flow (publish, deliver, history, update,
//! delete), `hookd migrate`, and several control-plane replicas over one database, where a
//! change made through one replica reaches the dispatchers and checks of another.
//!
//! Each test takes a fresh database on the test process' throwaway PostgreSQL server.

use std::time::Duration;

use anyhow::Context;
use hookd_proto::{convert::json_to_value, v1};
use hookd_testpg::PgServer;
use hookd_tests::{
    Authed, Cluster, HookdProcess, OWNER_TOKEN, Receiver, authed, sample, scrape, wait_until,
};
use tonic::Code;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(20);

/// The database name of a `postgres://.../<name>` URL.
fn database_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

/// One value from SQL run in the cluster's database.
fn sql(cluster: &Cluster, query: &str) -> anyhow::Result<String> {
    let out = PgServer::shared().psql_in(database_name(cluster.database_url()), query)?;
    Ok(out.trim().to_owned())
}

/// A connection to `control` acting as the owner of the default tenant.
async fn owner_at(control: &HookdProcess) -> anyhow::Result<Authed> {
    Ok(authed(Channel::from_shared(control.grpc_url())?.connect().await?, Some(OWNER_TOKEN)))
}

fn status_of<T>(result: Result<T, tonic::Status>) -> anyhow::Result<tonic::Status> {
    result.err().context("the call should have failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_delivered_and_recorded_and_webhook_changes_apply_on_postgres()
-> anyhow::Result<()> {
    let cluster = Cluster::builder().postgres().dispatchers(1).start()?;
    let receiver = Receiver::ok()?;
    let webhook =
        cluster.create_webhook("crm", receiver.url("/first"), &["contact-created"]).await?;
    assert_eq!(sql(&cluster, "SELECT count(*) FROM webhooks")?, "1", "stored in Postgres");

    cluster.publish("contact-created", "evt-1").await?;
    let requests = receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(requests[0].path, "/first");
    let delivery = cluster.settled_delivery(&webhook.id, DEADLINE).await?;
    assert_eq!(delivery.status, v1::DeliveryStatus::Delivered as i32);
    assert_eq!(delivery.event_id, "evt-1");
    assert_eq!(delivery.attempts.len(), 1);
    assert_eq!((delivery.attempts[0].http_status, delivery.attempts[0].success), (200, true));
    let listed = cluster
        .webhooks()
        .await?
        .get_webhook(v1::GetWebhookRequest { id: webhook.id.clone() })
        .await?
        .into_inner()
        .webhook
        .context("webhook")?;
    let stats = listed.stats.context("stats")?;
    assert_eq!((stats.triggered, stats.succeeded), (1, 1));

    // An update moves the next delivery.
    cluster
        .webhooks()
        .await?
        .update_webhook(v1::UpdateWebhookRequest {
            webhook: Some(v1::Webhook {
                id: webhook.id.clone(),
                url: receiver.url("/moved"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["url".into()] }),
        })
        .await?;
    cluster.publish("contact-created", "evt-2").await?;
    let requests = receiver.wait_for(2, DEADLINE).await?;
    assert_eq!(requests[1].path, "/moved");
    // Recorded before the delete: a report arriving after it would store the delivery again.
    cluster
        .first_delivery_when(&webhook.id, "evt-2 recorded", DEADLINE, |d| {
            d.event_id == "evt-2" && d.status == v1::DeliveryStatus::Delivered as i32
        })
        .await?;

    // A delete removes the webhook and its history, and stops deliveries.
    cluster
        .webhooks()
        .await?
        .delete_webhook(v1::DeleteWebhookRequest { id: webhook.id.clone() })
        .await?;
    let gone = status_of(
        cluster
            .webhooks()
            .await?
            .get_webhook(v1::GetWebhookRequest { id: webhook.id.clone() })
            .await,
    )?;
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(sql(&cluster, "SELECT count(*) FROM deliveries")?, "0");
    let sentinel = cluster.create_webhook("sentinel", receiver.url("/sentinel"), &["*"]).await?;
    cluster.publish("contact-created", "evt-3").await?;
    cluster.settled_delivery(&sentinel.id, DEADLINE).await?;
    let paths: Vec<String> = receiver.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/first", "/moved", "/sentinel"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookd_migrate_prepares_a_fresh_database_and_a_second_run_changes_nothing()
-> anyhow::Result<()> {
    let server = PgServer::shared();
    let url = server.create_database()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("control.toml");
    // Only what `migrate` reads; everything else keeps its default.
    std::fs::write(&config, format!("database_url = {}\n", serde_json::Value::from(url.clone())))?;
    let migrate = || -> anyhow::Result<String> {
        let out = std::process::Command::new(hookd_tests::hookd_binary()?)
            .arg("--config")
            .arg(&config)
            .arg("migrate")
            .env("NO_COLOR", "1")
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            out.status.success(),
            "hookd migrate failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    };

    let first = migrate()?;
    assert!(first.contains("applied migration m0001_initial"), "{first}");
    assert!(first.contains("applied migration m0005_health_and_history"), "{first}");
    assert!(first.contains("applied migration m0006_delivery_controls"), "{first}");
    assert_eq!(first.lines().count(), 6, "{first}");
    let name = database_name(&url);
    let tables = server.psql_in(
        name,
        "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables \
         WHERE table_schema = 'public'",
    )?;
    assert_eq!(
        tables.trim(),
        "api_tokens,attempts,credentials,deliveries,event_types,roles,seaql_migrations,webhooks"
    );

    let second = migrate()?;
    assert_eq!(second.trim(), "database schema is up to date");
    assert_eq!(server.psql_in(name, "SELECT count(*) FROM seaql_migrations")?.trim(), "6");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_created_and_deleted_on_one_replica_reaches_the_dispatcher_of_another()
-> anyhow::Result<()> {
    let mut cluster = Cluster::builder().postgres().start()?;
    let replica = cluster.add_control()?;
    // The only dispatcher follows the second replica; every write goes to the first.
    cluster.add_dispatcher_for(&replica.grpc_url())?;
    let receiver = Receiver::ok()?;
    let hook = cluster.create_webhook("crm", receiver.url("/crm"), &["contact-created"]).await?;
    let sentinel = cluster.create_webhook("sentinel", receiver.url("/sentinel"), &["*"]).await?;

    // The second replica learns of the webhook from the first one's hint; until then the
    // dispatcher does not know it, so keep publishing until an event arrives.
    let mut probe = 0;
    wait_until(
        "an event for the new webhook delivered by the other replica's dispatcher",
        DEADLINE,
        || {
            probe += 1;
            let id = format!("probe-{probe}");
            let cluster = &cluster;
            let receiver = &receiver;
            async move {
                cluster.publish("contact-created", &id).await?;
                Ok(receiver.requests().iter().any(|r| r.path == "/crm").then_some(()))
            }
        },
    )
    .await?;

    cluster
        .webhooks()
        .await?
        .delete_webhook(v1::DeleteWebhookRequest { id: hook.id.clone() })
        .await?;
    // Deleted once an event reaches the sentinel and not the deleted webhook; fan-out makes
    // both jobs of an event at once, so the sentinel's delivery means the other was not made.
    let crm_count = || receiver.requests().iter().filter(|r| r.path == "/crm").count();
    wait_until("deliveries to the deleted webhook stop", DEADLINE, || {
        probe += 1;
        let id = format!("probe-{probe}");
        let before = crm_count();
        let cluster = &cluster;
        let receiver = &receiver;
        async move {
            cluster.publish("contact-created", &id).await?;
            wait_until("the sentinel's delivery", DEADLINE, || async {
                Ok(receiver
                    .requests()
                    .iter()
                    .any(|r| {
                        r.path == "/sentinel"
                            && r.json().is_ok_and(|j| j["meta"]["eventId"] == id.as_str())
                    })
                    .then_some(()))
            })
            .await?;
            Ok((crm_count() == before).then_some(()))
        }
    })
    .await?;
    let stopped_at = crm_count();
    for i in 0..2 {
        let id = format!("after-delete-{i}");
        cluster.publish("contact-created", &id).await?;
        wait_until("the sentinel gets the event", DEADLINE, || async {
            Ok(receiver
                .requests()
                .iter()
                .any(|r| r.json().is_ok_and(|j| j["meta"]["eventId"] == id.as_str()))
                .then_some(()))
        })
        .await?;
    }
    assert_eq!(crm_count(), stopped_at, "no delivery to the deleted webhook");
    cluster.settled_delivery(&sentinel.id, DEADLINE).await?;
    drop(replica);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_and_token_changes_on_one_replica_apply_on_another_at_once() -> anyhow::Result<()> {
    // Token reloads far apart: a revocation seen on the other replica came from the hint.
    let cluster = Cluster::builder()
        .postgres()
        .control_env(&[("HOOKD_TOKEN_RELOAD_SECS", "3600")])
        .start()?;
    let replica = cluster.add_control()?;
    let schema = serde_json::json!({"type": "object", "required": ["email"]});
    let prost_types::Value { kind: Some(prost_types::value::Kind::StructValue(schema)) } =
        json_to_value(schema)
    else {
        anyhow::bail!("a schema object converts to a Struct");
    };
    cluster
        .event_types()
        .await?
        .create_event_type(v1::CreateEventTypeRequest {
            event_type: Some(v1::EventType {
                name: "contact-created".into(),
                schema: Some(schema),
                ..Default::default()
            }),
        })
        .await?;
    let events =
        hookd_proto::v1::event_service_client::EventServiceClient::new(owner_at(&replica).await?);
    let mut n = 0;
    let refused = wait_until("the other replica enforces the new schema", DEADLINE, || {
        n += 1;
        let request = v1::PublishEventRequest {
            event: Some(v1::Event {
                id: format!("bad-{n}"),
                r#type: "contact-created".into(),
                data: Some(json_to_value(serde_json::json!({"name": "no email"}))),
                ..Default::default()
            }),
        };
        let mut events = events.clone();
        async move { Ok(events.publish_event(request).await.err()) }
    })
    .await?;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    let created = cluster
        .access()
        .await?
        .create_token(v1::CreateTokenRequest { name: "temp".into(), role: "viewer".into() })
        .await?
        .into_inner();
    let token = created.secret;
    let id = created.token.context("token")?.id;
    let channel = Channel::from_shared(replica.grpc_url())?.connect().await?;
    let viewer = hookd_proto::v1::webhook_service_client::WebhookServiceClient::new(authed(
        channel,
        Some(&token),
    ));
    wait_until("the other replica accepts the new token", DEADLINE, || {
        let mut viewer = viewer.clone();
        async move {
            Ok(viewer.list_webhooks(v1::ListWebhooksRequest::default()).await.ok().map(drop))
        }
    })
    .await?;
    cluster.access().await?.revoke_token(v1::RevokeTokenRequest { id }).await?;
    let rejected = wait_until("the other replica refuses the revoked token", DEADLINE, || {
        let mut viewer = viewer.clone();
        async move { Ok(viewer.list_webhooks(v1::ListWebhooksRequest::default()).await.err()) }
    })
    .await?;
    assert_eq!(rejected.code(), Code::Unauthenticated, "{rejected:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_write_returns_once_the_other_replicas_dispatchers_applied_it()
-> anyhow::Result<()> {
    // The only dispatcher follows the second replica, and applies every change 300 ms late.
    let mut cluster = Cluster::builder()
        .postgres()
        .dispatchers(0)
        .dispatcher_extra("watch_apply_delay_ms = 300")
        .control_env(&[("HOOKD_METRICS_REFRESH_SECS", "1")])
        .start()?;
    let replica = cluster.add_control()?;
    cluster.add_dispatcher_for(&replica.grpc_url())?;
    wait_until("the first replica hears from the second", DEADLINE, || async {
        let text = scrape(&cluster.control.metrics_url()).await?;
        Ok((sample(&text, "hookd_control_peer_replicas") == Some(1.0)).then_some(()))
    })
    .await?;
    let receiver = Receiver::ok()?;
    for i in 0..3 {
        let name = format!("crm-{i}");
        cluster.create_webhook(&name, receiver.url(&format!("/{name}")), &[name.as_str()]).await?;
        // At once: had the create returned before the other replica's dispatcher applied
        // it, the fan-out there would find no webhook and the event would go nowhere.
        cluster.publish(&name, &format!("evt-{i}")).await?;
    }
    let got = receiver.wait_for(3, DEADLINE).await?;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/crm-0", "/crm-1", "/crm-2"]);
    drop(replica);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_down_and_back() -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let cluster = Cluster::builder()
        .postgres()
        .dispatchers(0)
        .control_env(&[("HOOKD_READINESS_INTERVAL_SECS", "1")])
        .start()?;
    let channel = cluster.channel().await?;
    let status = || async {
        let answer = HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: "hookd.v1.WebhookService".into() })
            .await?
            .into_inner();
        anyhow::Ok(answer.status)
    };
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    wait_until("serving", DEADLINE, || async { Ok((status().await? == serving).then_some(())) })
        .await?;

    // The database goes away for this control plane: no new connection is allowed, and the
    // ones it holds are ended.
    let name = database_name(cluster.database_url()).to_owned();
    PgServer::shared().psql(&format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false; \
         SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'"
    ))?;
    wait_until("not serving without the database", DEADLINE, || async {
        Ok((status().await? == not_serving).then_some(()))
    })
    .await?;
    PgServer::shared().psql(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))?;
    wait_until("serving again", DEADLINE, || async {
        Ok((status().await? == serving).then_some(()))
    })
    .await?;
    // And it works again, not just says so.
    let receiver = Receiver::ok()?;
    let hook = cluster.create_webhook("back", receiver.url("/"), &["back"]).await?;
    assert!(!hook.id.is_empty());
    Ok(())
}
