//! End to end: endpoint health. The system deactivates a failing webhook (or one answering
//! 410) and says so on NATS, on `WatchNotifications` and to operational webhooks; events for
//! a deactivated webhook are kept in its buffer and replayed, in order, on reactivation, or
//! discarded; the buffer window drops old ones; a replay survives a dispatcher's death.

use std::{collections::HashSet, time::Duration};

use anyhow::Context;
use futures::StreamExt;
use hookd_proto::v1;
use hookd_tests::{Cluster, Receiver, Response, TENANT, responder, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

async fn webhook(cluster: &Cluster, name: &str, url: String) -> anyhow::Result<v1::Webhook> {
    cluster
        .create(v1::CreateWebhookRequest {
            name: name.into(),
            url,
            event_types: vec![name.into()],
            active: true,
            // One attempt per event, so each event is one failure.
            retry_policy: Some(v1::RetryPolicy { delay_seconds: vec![] }),
            ..Default::default()
        })
        .await
}

async fn get(cluster: &Cluster, id: &str) -> anyhow::Result<v1::Webhook> {
    cluster
        .webhooks()
        .await?
        .get_webhook(v1::GetWebhookRequest { id: id.into() })
        .await?
        .into_inner()
        .webhook
        .context("no webhook")
}

async fn health(cluster: &Cluster, id: &str) -> anyhow::Result<v1::WebhookHealth> {
    get(cluster, id).await?.health.context("no health")
}

fn event_ids(receiver: &Receiver) -> anyhow::Result<Vec<String>> {
    receiver
        .requests()
        .iter()
        .map(|r| {
            let json = r.json()?;
            json["meta"]["eventId"].as_str().map(str::to_owned).context("no event id")
        })
        .collect()
}

async fn wait_buffered(cluster: &Cluster, id: &str, n: u64) -> anyhow::Result<()> {
    wait_until(&format!("{n} events buffered"), DEADLINE, || async {
        Ok((health(cluster, id).await?.buffered == n).then_some(()))
    })
    .await
}

async fn activate(cluster: &Cluster, id: &str, replay: bool) -> anyhow::Result<(u64, u64)> {
    let r = cluster
        .webhooks()
        .await?
        .activate_webhook(v1::ActivateWebhookRequest { id: id.into(), replay })
        .await?
        .into_inner();
    Ok((r.replayed, r.discarded))
}

async fn deactivate(cluster: &Cluster, id: &str) -> anyhow::Result<()> {
    cluster
        .webhooks()
        .await?
        .deactivate_webhook(v1::DeactivateWebhookRequest { id: id.into() })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_deactivated_and_everyone_is_told() -> anyhow::Result<()> {
    let cluster = Cluster::start_with_env(
        1,
        "",
        &[("HOOKD_HEALTH_MAX_FAILURES", "3"), ("HOOKD_HEALTH_NO_SUCCESS_SECS", "1")],
        &[],
    )?;
    let failing = Receiver::start(responder(|_, _| Response::status(500)))?;
    let ops = Receiver::ok()?;
    let hook = webhook(&cluster, "orders", failing.url("/")).await?;
    cluster.create_webhook("ops", ops.url("/"), &["webhook-deactivated"]).await?;
    let nats = cluster.nats.client().await?;
    let mut system = nats.subscribe(format!("hookd.system.{TENANT}.webhook-deactivated")).await?;
    let mut watch = cluster
        .webhooks()
        .await?
        .watch_notifications(v1::WatchNotificationsRequest {})
        .await?
        .into_inner();

    // Both conditions: three failures are not enough within the first second.
    let created = tokio::time::Instant::now();
    for i in 0..3 {
        cluster.publish("orders", &format!("evt-early-{i}")).await?;
    }
    wait_until("three failures recorded", DEADLINE, || async {
        Ok((health(&cluster, &hook.id).await?.consecutive_failures == 3).then_some(()))
    })
    .await?;
    if created.elapsed() < Duration::from_secs(1) {
        assert!(get(&cluster, &hook.id).await?.active, "deactivated before the time condition");
    }

    // Past T, the next failure trips the rule.
    tokio::time::sleep_until(created + Duration::from_millis(1100)).await;
    let mut n = 0;
    let deactivated = wait_until("the system deactivates the webhook", DEADLINE, || {
        n += 1;
        let id = format!("evt-late-{n}");
        let cluster = &cluster;
        let hook_id = hook.id.clone();
        async move {
            let webhook = get(cluster, &hook_id).await?;
            if webhook.active {
                cluster.publish("orders", &id).await?;
                return Ok(None);
            }
            Ok(Some(webhook))
        }
    })
    .await?;
    let h = deactivated.health.context("no health")?;
    assert_eq!(h.deactivated_by, v1::DeactivatedBy::System as i32);
    assert!(h.deactivated_at.is_some());
    assert!(h.deactivation_reason.contains("consecutive failed attempts"), "{h:?}");
    assert!(h.last_error.contains("500"), "{h:?}");
    assert!(h.consecutive_failures >= 3);

    let msg = tokio::time::timeout(DEADLINE, system.next()).await?.context("no nats message")?;
    let body: serde_json::Value = serde_json::from_slice(&msg.payload)?;
    assert_eq!(body["webhook_id"], hook.id.as_str());
    assert!(body["last_error"].as_str().unwrap_or_default().contains("500"));

    let note = tokio::time::timeout(DEADLINE, watch.next()).await?.context("watch ended")??;
    assert_eq!(
        (note.kind.as_str(), note.webhook_id.as_str()),
        ("webhook-deactivated", hook.id.as_str())
    );

    let got = ops.wait_for(1, DEADLINE).await?;
    let json = got[0].json()?;
    assert_eq!(json["data"]["webhook_id"], hook.id.as_str(), "{json}");

    // Reactivating it is announced too, and restarts the rule's clock.
    activate(&cluster, &hook.id, false).await?;
    let note = tokio::time::timeout(DEADLINE, watch.next()).await?.context("watch ended")??;
    assert_eq!(
        (note.kind.as_str(), note.webhook_id.as_str()),
        ("webhook-reactivated", hook.id.as_str())
    );
    let h = health(&cluster, &hook.id).await?;
    assert_eq!(
        (h.deactivated_by, h.consecutive_failures),
        (v1::DeactivatedBy::Unspecified as i32, 0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_deactivates_at_once() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    // A tenant with a catalog may still subscribe to the system's own event types.
    cluster
        .event_types()
        .await?
        .create_event_type(v1::CreateEventTypeRequest {
            event_type: Some(v1::EventType { name: "gone".into(), ..Default::default() }),
        })
        .await?;
    let ops = Receiver::ok()?;
    cluster.create_webhook("ops", ops.url("/"), &["webhook-deactivated"]).await?;
    let gone = Receiver::start(responder(|_, _| Response::status(410)))?;
    let hook = webhook(&cluster, "gone", gone.url("/")).await?;
    cluster.publish("gone", "evt-gone").await?;
    let h = wait_until("410 deactivates", DEADLINE, || async {
        let w = get(&cluster, &hook.id).await?;
        Ok((!w.active).then_some(w.health))
    })
    .await?
    .context("no health")?;
    assert_eq!(h.deactivated_by, v1::DeactivatedBy::System as i32);
    assert!(h.deactivation_reason.contains("410"), "{h:?}");
    assert_eq!(gone.count(), 1);
    let got = ops.wait_for(1, DEADLINE).await?;
    assert_eq!(got[0].json()?["data"]["webhook_id"], hook.id.as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_events_are_replayed_in_order_or_discarded() -> anyhow::Result<()> {
    let cluster = Cluster::start_with_env(1, "", &[("HOOKD_REPLAY_RATE", "1000")], &[])?;
    let receiver = Receiver::ok()?;
    let hook = webhook(&cluster, "kept", receiver.url("/")).await?;
    deactivate(&cluster, &hook.id).await?;
    let h = health(&cluster, &hook.id).await?;
    assert_eq!(h.deactivated_by, v1::DeactivatedBy::User as i32);

    let ids: Vec<String> = (0..200).map(|i| format!("evt-{i:03}")).collect();
    for id in &ids {
        cluster.publish("kept", id).await?;
    }
    wait_buffered(&cluster, &hook.id, 200).await?;
    assert_eq!(receiver.count(), 0, "nothing is delivered while deactivated");

    assert_eq!(activate(&cluster, &hook.id, true).await?, (200, 0));
    receiver.wait_for(200, Duration::from_secs(120)).await?;
    // A later event marks the end: nothing of the replay may follow or repeat.
    cluster.publish("kept", "evt-after").await?;
    receiver.wait_for(201, DEADLINE).await?;
    let got = event_ids(&receiver)?;
    assert_eq!(&got[..200], &ids[..], "replayed in publish order, each once");
    assert_eq!(got.len(), 201);
    // Reactivating an active webhook changes nothing.
    assert_eq!(activate(&cluster, &hook.id, true).await?, (0, 0));

    // Without replay: kept events are discarded and counted; later ones are delivered.
    deactivate(&cluster, &hook.id).await?;
    for i in 0..20 {
        cluster.publish("kept", &format!("evt-dropped-{i}")).await?;
    }
    wait_buffered(&cluster, &hook.id, 20).await?;
    assert_eq!(activate(&cluster, &hook.id, false).await?, (0, 20));
    cluster.publish("kept", "evt-later").await?;
    receiver.wait_for(202, DEADLINE).await?;
    let got = event_ids(&receiver)?;
    assert_eq!(got.len(), 202);
    assert_eq!(got[201], "evt-later");
    // Every kept event was replayed or discarded: none counts as expired.
    let h = health(&cluster, &hook.id).await?;
    assert_eq!((h.buffered, h.expired), (0, 0), "{h:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_the_buffer_window_are_not_replayed() -> anyhow::Result<()> {
    let cluster = Cluster::start_with_env(1, "", &[("HOOKD_BUFFER_WINDOW_SECS", "2")], &[])?;
    let receiver = Receiver::ok()?;
    let hook = webhook(&cluster, "old", receiver.url("/")).await?;
    deactivate(&cluster, &hook.id).await?;
    for i in 0..5 {
        cluster.publish("old", &format!("evt-old-{i}")).await?;
    }
    wait_buffered(&cluster, &hook.id, 5).await?;
    // The stream's max age drops them, and they are counted.
    wait_buffered(&cluster, &hook.id, 0).await?;
    wait_until("five expired events counted", DEADLINE, || async {
        Ok((health(&cluster, &hook.id).await?.expired == 5).then_some(()))
    })
    .await?;
    assert_eq!(activate(&cluster, &hook.id, true).await?, (0, 0));
    assert_eq!(health(&cluster, &hook.id).await?.expired, 5, "the count outlives activation");
    cluster.publish("old", "evt-new").await?;
    receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(event_ids(&receiver)?, vec!["evt-new".to_owned()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_survives_a_dispatcher_and_a_control_plane_killed_midway() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with_env(1, "", &[("HOOKD_REPLAY_RATE", "20")], &[])?;
    let receiver = Receiver::ok()?;
    let hook = webhook(&cluster, "crash", receiver.url("/")).await?;
    deactivate(&cluster, &hook.id).await?;
    let ids: Vec<String> = (0..100).map(|i| format!("evt-{i:03}")).collect();
    for id in &ids {
        cluster.publish("crash", id).await?;
    }
    wait_buffered(&cluster, &hook.id, 100).await?;
    assert_eq!(activate(&cluster, &hook.id, true).await?, (100, 0));
    receiver.wait_for(20, DEADLINE).await?;
    cluster.dispatchers[0].kill()?;
    cluster.add_dispatcher()?;
    // The replay itself is the control plane's: killed midway, the new one resumes it.
    receiver.wait_for(50, Duration::from_secs(120)).await?;
    let _old = cluster.restart_control()?;
    wait_until("every kept event delivered", Duration::from_secs(120), || async {
        let got: HashSet<String> = event_ids(&receiver)?.into_iter().collect();
        Ok((got.len() == ids.len()).then_some(()))
    })
    .await?;
    let got: HashSet<String> = event_ids(&receiver)?.into_iter().collect();
    assert_eq!(got, ids.into_iter().collect::<HashSet<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_can_have_its_own_thresholds() -> anyhow::Result<()> {
    // The deployment's rule (10 failures, 24 h) would never trip within a test.
    let cluster = Cluster::start(1, "")?;
    let failing = Receiver::start(responder(|_, _| Response::status(500)))?;
    let strict = cluster
        .create(v1::CreateWebhookRequest {
            name: "strict".into(),
            url: failing.url("/strict"),
            event_types: vec!["strict".into()],
            active: true,
            retry_policy: Some(v1::RetryPolicy { delay_seconds: vec![] }),
            health_policy: Some(v1::HealthPolicy {
                max_failures: Some(2),
                no_success_secs: Some(0),
            }),
            ..Default::default()
        })
        .await?;
    let lenient = webhook(&cluster, "lenient", failing.url("/lenient")).await?;
    assert_eq!(
        strict.health_policy,
        Some(v1::HealthPolicy { max_failures: Some(2), no_success_secs: Some(0) })
    );
    assert_eq!(lenient.health_policy, None, "unset means the deployment's");
    for i in 0..3 {
        cluster.publish("strict", &format!("evt-s-{i}")).await?;
        cluster.publish("lenient", &format!("evt-l-{i}")).await?;
    }
    let h = wait_until("the strict webhook is deactivated", DEADLINE, || async {
        let w = get(&cluster, &strict.id).await?;
        Ok((!w.active).then_some(w.health))
    })
    .await?
    .context("no health")?;
    assert_eq!(h.deactivated_by, v1::DeactivatedBy::System as i32);
    // Two failures trip it; a third recorded in the same batch may be counted with them.
    assert!(h.deactivation_reason.contains("consecutive failed attempts"), "{h:?}");
    assert!((2..=3).contains(&h.consecutive_failures), "{h:?}");
    wait_until("three lenient failures recorded", DEADLINE, || async {
        Ok((health(&cluster, &lenient.id).await?.consecutive_failures == 3).then_some(()))
    })
    .await?;
    assert!(get(&cluster, &lenient.id).await?.active, "the deployment's rule holds for it");

    // The policy is updatable, and validated.
    let mut webhooks = cluster.webhooks().await?;
    let update = |policy: v1::HealthPolicy| v1::UpdateWebhookRequest {
        webhook: Some(v1::Webhook {
            id: lenient.id.clone(),
            health_policy: Some(policy),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["health_policy".into()] }),
    };
    let too_long = v1::HealthPolicy { max_failures: None, no_success_secs: Some(31 * 86_400) };
    let err = webhooks.update_webhook(update(too_long)).await.expect_err("too long");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("health_policy"), "{}", err.message());
    let off = v1::HealthPolicy { max_failures: Some(0), no_success_secs: None };
    let updated = webhooks.update_webhook(update(off)).await?.into_inner().webhook;
    assert_eq!(
        updated.and_then(|w| w.health_policy),
        Some(v1::HealthPolicy { max_failures: Some(0), no_success_secs: None })
    );

    // An update that sets `active` is an activation without replay: kept events are
    // discarded and counted as such, not left to expire.
    for i in 0..2 {
        cluster.publish("strict", &format!("evt-kept-{i}")).await?;
    }
    wait_buffered(&cluster, &strict.id, 2).await?;
    let reactivate = v1::UpdateWebhookRequest {
        webhook: Some(v1::Webhook { id: strict.id.clone(), active: true, ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["active".into()] }),
    };
    webhooks.update_webhook(reactivate).await?;
    let h = health(&cluster, &strict.id).await?;
    assert_eq!((h.buffered, h.expired), (0, 0), "{h:?}");
    Ok(())
}
