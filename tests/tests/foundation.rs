//! End to end, with real processes: an event travels NATS → dispatcher → HTTP endpoint →
//! control plane, and the delivery shows up over gRPC; bad input is refused with clear errors.

use std::time::Duration;

use anyhow::Context;
use hookd_proto::v1;
use hookd_tests::{Cluster, Receiver, wait_until};
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(20);

/// Publishes raw bytes to NATS the way a producer does.
async fn publish_raw(
    cluster: &Cluster,
    subject: &str,
    id: Option<&str>,
    body: &[u8],
) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = id {
        headers.insert("Nats-Msg-Id", id);
    }
    js.publish_with_headers(subject.to_owned(), headers, body.to_vec().into()).await?.await?;
    Ok(())
}

async fn deliveries_of(cluster: &Cluster, webhook_id: &str) -> anyhow::Result<Vec<v1::Delivery>> {
    Ok(cluster
        .deliveries()
        .await?
        .list_deliveries(v1::ListDeliveriesRequest {
            webhook_id: webhook_id.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .deliveries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_published_to_nats_is_delivered_and_recorded() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let webhook =
        cluster.create_webhook("crm", receiver.url("/hooks/crm"), &["contact-created"]).await?;

    let event = serde_json::json!({
        "id": "evt-1", "type": "contact-created", "entity_id": "contact-42",
        "timestamp": "2024-03-21T13:46:46Z", "context": {"user": "u1"}, "data": {"name": "Ada"}
    });
    publish_raw(
        &cluster,
        "hookd.events.default.contact-created",
        Some("evt-1"),
        event.to_string().as_bytes(),
    )
    .await?;

    // The same event id again, as a retrying producer would send it: stored once.
    publish_raw(
        &cluster,
        "hookd.events.default.contact-created",
        Some("evt-1"),
        event.to_string().as_bytes(),
    )
    .await?;

    let requests = receiver.wait_for(1, DEADLINE).await?;
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/crm");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let delivery_id = request.header("webhook-id").context("webhook-id header")?.to_owned();
    assert!(delivery_id.starts_with("dlv_"), "{delivery_id}");
    assert_eq!(
        request.json()?,
        serde_json::json!({
            "meta": {"webhookId": webhook.id, "eventId": "evt-1", "eventType": "contact-created",
                     "eventTimestamp": "2024-03-21T13:46:46Z", "entityId": "contact-42", "version": "1.0"},
            "data": {"name": "Ada"}
        })
    );

    let listed = wait_until("the delivery is recorded as delivered", DEADLINE, || async {
        let deliveries = deliveries_of(&cluster, &webhook.id).await?;
        Ok(deliveries.into_iter().find(|d| d.status == v1::DeliveryStatus::Delivered as i32))
    })
    .await?;
    assert_eq!(listed.id, delivery_id);
    assert_eq!(listed.event_id, "evt-1");
    assert_eq!(listed.attempt_count, 1);

    let delivery = cluster
        .deliveries()
        .await?
        .get_delivery(v1::GetDeliveryRequest { id: delivery_id.clone() })
        .await?
        .into_inner()
        .delivery
        .context("delivery")?;
    assert_eq!(delivery.attempts.len(), 1);
    let attempt = &delivery.attempts[0];
    assert_eq!((attempt.number, attempt.http_status, attempt.success), (1, 200, true));
    assert!(attempt.error.is_empty());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&delivery.payload)?, request.json()?);
    assert_eq!(receiver.count(), 1, "a duplicate publish is delivered once");
    assert_eq!(deliveries_of(&cluster, &webhook.id).await?.len(), 1);
    Ok(())
}

/// Results wait up to `report_linger_ms` to share a batch, and that holds up nothing but the
/// events' acknowledgements: with a 1 s linger and room for one first attempt at a time in
/// the fan-out, each event published after the previous one arrived is attempted by the
/// fan-out itself (no delivery job is written), and every result is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_results_hold_up_no_first_attempt() -> anyhow::Result<()> {
    const EVENTS: usize = 10;
    let cluster = Cluster::start(1, "report_linger_ms = 1000\nfanout_concurrency = 2")?;
    let receiver = Receiver::ok()?;
    let webhook =
        cluster.create_webhook("linger", receiver.url("/linger"), &["contact-created"]).await?;
    // An endpoint's first delivery takes the job path; once it succeeded the fan-out may
    // attempt the next ones itself.
    cluster.publish("contact-created", "linger-0").await?;
    receiver.wait_for(1, DEADLINE).await?;
    wait_until("the first delivery is recorded", DEADLINE, || async {
        Ok((deliveries_of(&cluster, &webhook.id).await?.len() == 1).then_some(()))
    })
    .await?;
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    let jobs = || async {
        let info = js.get_stream("HOOKD_DELIVERIES").await?.info().await?.clone();
        anyhow::Ok(info.state.last_sequence)
    };
    let jobs_before = jobs().await?;

    for i in 1..=EVENTS {
        cluster.publish("contact-created", &format!("linger-{i}")).await?;
        // Well within the linger: the previous event's result is not stored yet.
        receiver.wait_for(i + 1, Duration::from_millis(500)).await.with_context(|| {
            format!("event {i} was not attempted while earlier results lingered")
        })?;
    }
    assert_eq!(
        jobs().await?,
        jobs_before,
        "every first attempt was made by the fan-out, none written as a job"
    );
    wait_until("every result is stored", DEADLINE, || async {
        let deliveries = deliveries_of(&cluster, &webhook.id).await?;
        let delivered =
            deliveries.iter().filter(|d| d.status == v1::DeliveryStatus::Delivered as i32).count();
        Ok((delivered == EVENTS + 1).then_some(()))
    })
    .await?;
    assert_eq!(receiver.count(), EVENTS + 1, "one request per event");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_published_right_after_create_webhook_returns_is_delivered() -> anyhow::Result<()> {
    // The dispatcher learns of changes 300 ms late, as over a slow link; events published the
    // moment CreateWebhook returns must still reach the new webhook.
    let cluster = Cluster::start(1, "watch_apply_delay_ms = 300")?;
    let receiver = Receiver::ok()?;
    // Each round races a fresh webhook against an event published the moment it exists.
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let event_type = format!("type-{round}");
        cluster.create_webhook(&format!("hook-{round}"), receiver.url("/"), &[&event_type]).await?;
        let body = serde_json::json!({"id": format!("evt-{round}"), "type": event_type});
        publish_raw(
            &cluster,
            &format!("hookd.events.default.{event_type}"),
            Some(&format!("evt-{round}")),
            body.to_string().as_bytes(),
        )
        .await?;
    }
    receiver.wait_for(ROUNDS, DEADLINE).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_terminated_and_do_not_block_good_ones() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    cluster.create_webhook("all", receiver.url("/"), &["*"]).await?;

    let bad: [(&str, &[u8]); 4] = [
        ("not-json", b"this is not json"),
        ("no-id", br#"{"type":"contact-created","data":{}}"#),
        ("no-type", br#"{"id":"evt-no-type","data":{}}"#),
        ("bad-time", br#"{"id":"evt-bad-time","type":"t","timestamp":"soon"}"#),
    ];
    for (id, body) in bad {
        publish_raw(&cluster, "hookd.events.default.contact-created", Some(id), body).await?;
    }
    publish_raw(
        &cluster,
        "hookd.events.default.contact-created",
        Some("evt-good"),
        br#"{"id":"evt-good","type":"contact-created","data":{"ok":true}}"#,
    )
    .await?;

    let requests = receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(requests[0].json()?["meta"]["eventId"], "evt-good");

    // Nothing is left pending or being retried: the bad events were terminated, not NAK'd.
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    wait_until("the fan-out consumer has nothing pending", DEADLINE, || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream("hookd-fanout", "HOOKD_EVENTS").await?;
        let info = consumer.info().await?;
        Ok((info.num_pending == 0 && info.num_ack_pending == 0).then_some(()))
    })
    .await?;
    assert_eq!(receiver.count(), 1, "only the good event is delivered");
    // The dispatcher logged the refusals, to a file: plain text, no terminal colour codes.
    let log = std::fs::read_to_string(cluster.dispatchers[0].log_path())?;
    assert!(log.contains("evt-no-type") || log.contains("lacks required field"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a log file:\n{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_webhook_refuses_bad_input_and_stores_nothing() -> anyhow::Result<()> {
    let cluster = Cluster::start(0, "")?;
    let mut client = cluster.webhooks().await?;
    let valid = v1::CreateWebhookRequest {
        name: "crm".into(),
        url: "https://example.com/hooks".into(),
        event_types: vec!["contact-created".into()],
        active: true,
        description: String::new(),
        ..Default::default()
    };
    let cases = [
        ("name", v1::CreateWebhookRequest { name: "".into(), ..valid.clone() }),
        ("url", v1::CreateWebhookRequest { url: "/relative/path".into(), ..valid.clone() }),
        ("url", v1::CreateWebhookRequest { url: "ftp://example.com/x".into(), ..valid.clone() }),
        ("event_types", v1::CreateWebhookRequest { event_types: vec![], ..valid.clone() }),
    ];
    for (field, request) in cases {
        let status = client.create_webhook(request).await.expect_err("must be refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(field), "{:?} should name {field}", status.message());
    }
    client.create_webhook(valid.clone()).await?;
    let status = client.create_webhook(valid).await.expect_err("duplicate name");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("crm"));

    let listed = client.list_webhooks(v1::ListWebhooksRequest::default()).await?.into_inner();
    assert_eq!(listed.webhooks.len(), 1, "refused requests stored nothing");

    let missing = client
        .get_webhook(v1::GetWebhookRequest { id: "wh_missing".into() })
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_changes_reach_the_dispatcher_and_duplicate_publishes_deliver_once()
-> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let webhook = cluster.create_webhook("crm", receiver.url("/"), &["basket-submitted"]).await?;
    let mut events = cluster.events().await?;
    let publish = |id: &str| v1::PublishEventRequest {
        event: Some(v1::Event {
            id: id.into(),
            r#type: "basket-submitted".into(),
            entity_id: "basket-1".into(),
            data: Some(hookd_proto::convert::json_to_value(serde_json::json!({"total": 3}))),
            ..Default::default()
        }),
    };
    let first = events.publish_event(publish("evt-a")).await?.into_inner();
    assert!(!first.duplicate);
    let again = events.publish_event(publish("evt-a")).await?.into_inner();
    assert!(again.duplicate, "same id within the dedupe window");
    receiver.wait_for(1, DEADLINE).await?;

    // Deactivate: the dispatcher learns it through the watch, and the event is not delivered.
    let mut webhooks = cluster.webhooks().await?;
    let inactive = v1::Webhook { id: webhook.id.clone(), active: false, ..Default::default() };
    webhooks
        .update_webhook(v1::UpdateWebhookRequest {
            webhook: Some(inactive),
            update_mask: Some(prost_types::FieldMask { paths: vec!["active".into()] }),
        })
        .await?;
    let url_only = v1::Webhook {
        id: webhook.id.clone(),
        url: receiver.url("/moved"),
        active: true,
        ..Default::default()
    };
    // Reactivate at a new URL; only events after that arrive, at the new URL.
    wait_until("the update is visible", DEADLINE, || async {
        let w = cluster
            .webhooks()
            .await?
            .get_webhook(v1::GetWebhookRequest { id: webhook.id.clone() })
            .await?;
        Ok((!w.into_inner().webhook.context("webhook")?.active).then_some(()))
    })
    .await?;
    webhooks
        .update_webhook(v1::UpdateWebhookRequest {
            webhook: Some(url_only),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["url".into(), "active".into()],
            }),
        })
        .await?;
    // The dispatcher applies changes in order; a sentinel published after both updates must
    // arrive at the new URL.
    wait_until("a new event reaches the new URL", DEADLINE, || async {
        let id = format!("evt-{}", uuid::Uuid::now_v7().simple());
        events.clone().publish_event(publish(&id)).await?;
        let arrived = receiver.wait_for(receiver.count() + 1, Duration::from_secs(2)).await;
        Ok(arrived.ok().and_then(|r| r.last().filter(|r| r.path == "/moved").map(|_| ())))
    })
    .await?;
    let evt_a = receiver
        .requests()
        .iter()
        .filter(|r| r.json().map(|j| j["meta"]["eventId"] == "evt-a").unwrap_or(false))
        .count();
    assert_eq!(evt_a, 1, "a duplicate publish is delivered once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_without_proto_files() -> anyhow::Result<()> {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::{v1 as refl, v1alpha as refl_alpha};

    let cluster = Cluster::start(0, "")?;
    let channel =
        tonic::transport::Channel::from_shared(cluster.control.grpc_url())?.connect().await?;

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "hookd.v1.WebhookService", "hookd.v1.DispatchService"] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await?
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    let expected = ["hookd.v1.DeliveryService", "hookd.v1.EventService", "hookd.v1.WebhookService"];
    let mut v1_client =
        refl::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = refl::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(refl::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers =
        v1_client.server_reflection_info(tokio_stream::once(request)).await?.into_inner();
    let answer = answers.next().await.context("v1 reflection answer")??;
    let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        anyhow::bail!("unexpected v1 reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in expected {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }

    let mut alpha = refl_alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = refl_alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(refl_alpha::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = alpha.server_reflection_info(tokio_stream::once(request)).await?.into_inner();
    let answer = answers.next().await.context("v1alpha reflection answer")??;
    assert!(matches!(
        answer.message_response,
        Some(refl_alpha::server_reflection_response::MessageResponse::ListServicesResponse(l))
            if l.service.iter().any(|s| s.name == "hookd.v1.WebhookService")
    ));
    Ok(())
}
