//! End to end, with real processes: every delivery is signed per Standard Webhooks and checked
//! here by an independent verifier (the `standardwebhooks` crate); rotation sends two
//! signatures during its grace period and only the new one after it.

use std::time::Duration;

use anyhow::Context;
use hookd_proto::{convert::json_to_value, v1};
use hookd_tests::{Cluster, ReceivedRequest, Receiver, wait_until};

const DEADLINE: Duration = Duration::from_secs(20);

async fn publish(cluster: &Cluster, id: &str) -> anyhow::Result<()> {
    cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: id.into(),
                r#type: "contact-created".into(),
                data: Some(json_to_value(serde_json::json!({"email": "ada@example.com"}))),
                ..Default::default()
            }),
        })
        .await?;
    Ok(())
}

/// Whether `secret` verifies the request as a Standard Webhooks receiver would.
fn verifies(secret: &str, request: &ReceivedRequest) -> bool {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &request.headers {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
        {
            headers.append(name, value);
        }
    }
    standardwebhooks::Webhook::new(secret).and_then(|w| w.verify(&request.body, &headers)).is_ok()
}

fn signatures(request: &ReceivedRequest) -> usize {
    request.header("webhook-signature").map_or(0, |s| s.split(' ').count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_and_rotation_has_a_grace_period() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let mut webhooks = cluster.webhooks().await?;
    let created = webhooks
        .create_webhook(v1::CreateWebhookRequest {
            name: "signed".into(),
            url: receiver.url("/hook"),
            event_types: vec!["contact-created".into()],
            active: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let first = created.signing_secret.clone();
    let id = created.webhook.context("webhook")?.id;
    assert!(first.starts_with("whsec_"), "{first}");
    let shown = webhooks.get_webhook(v1::GetWebhookRequest { id: id.clone() }).await?.into_inner();
    assert!(!format!("{shown:?}").contains(&first[6..]), "reads never carry the secret");
    let asked = webhooks.get_webhook_secret(v1::GetWebhookSecretRequest { id: id.clone() }).await?;
    assert_eq!(asked.into_inner().signing_secret, first);

    publish(&cluster, "evt-s1").await?;
    let got = receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(signatures(&got[0]), 1);
    assert!(verifies(&first, &got[0]), "the independent verifier accepts the delivery");
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(!verifies(other, &got[0]), "another secret does not verify");

    // Rotation with a grace period: both secrets verify, the header has two signatures.
    let rotated = webhooks
        .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
            id: id.clone(),
            grace_seconds: 3,
            expire_now: false,
        })
        .await?
        .into_inner();
    let second = rotated.signing_secret;
    assert_ne!(second, first);
    assert!(rotated.previous_expires_at.is_some());
    publish(&cluster, "evt-s2").await?;
    let got = receiver.wait_for(2, DEADLINE).await?;
    assert_eq!(signatures(&got[1]), 2, "{:?}", got[1].header("webhook-signature"));
    assert!(verifies(&first, &got[1]) && verifies(&second, &got[1]));

    // After the grace period only the new secret signs.
    let mut n = 2;
    let last = wait_until("the old secret stops signing", DEADLINE, || {
        n += 1;
        let (cluster, receiver) = (&cluster, &receiver);
        let id = format!("evt-s{n}");
        let expected = n;
        async move {
            publish(cluster, &id).await?;
            let got = receiver.wait_for(expected, DEADLINE).await?;
            let last = got[expected - 1].clone();
            Ok((signatures(&last) == 1).then_some(last))
        }
    })
    .await?;
    assert!(verifies(&second, &last));
    assert!(!verifies(&first, &last), "the old secret no longer verifies");

    // expire_now ends the old secret at once; a duplicate has its own secret.
    let third = webhooks
        .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
            id: id.clone(),
            grace_seconds: 0,
            expire_now: true,
        })
        .await?
        .into_inner();
    assert!(third.previous_expires_at.is_none());
    let copy = webhooks
        .duplicate_webhook(v1::DuplicateWebhookRequest { id: id.clone() })
        .await?
        .into_inner();
    assert!(copy.signing_secret.starts_with("whsec_"));
    assert_ne!(copy.signing_secret, third.signing_secret);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_body_is_signed_over_the_empty_body() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let created = cluster
        .webhooks()
        .await?
        .create_webhook(v1::CreateWebhookRequest {
            name: "get".into(),
            url: receiver.url("/hook"),
            event_types: vec!["contact-created".into()],
            active: true,
            method: v1::HttpMethod::Get.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    publish(&cluster, "evt-g1").await?;
    let got = receiver.wait_for(1, DEADLINE).await?;
    assert!(got[0].body.is_empty());
    assert!(verifies(&created.signing_secret, &got[0]));
    Ok(())
}
