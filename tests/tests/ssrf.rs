//! End to end: the SSRF guard. Both layers are tested on their own: the early URL check at
//! webhook create/update (control plane with an empty allow-list), and the check at connect
//! time (webhooks created while the control plane allows everything, delivered by a
//! dispatcher whose allow-list is empty), plus a redirect that is never followed.
//!
//! Only loopback is ever contacted: every other address in here is refused before a
//! connection is opened, which is what these tests check.

use std::time::Duration;

use hookd_proto::v1;
use hookd_tests::{Cluster, Receiver, Response, responder};
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(30);
const EMPTY_ALLOW_LIST: (&str, &str) = ("HOOKD_ALLOW_CIDRS", "[]");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_ip_literals_are_refused_at_create_and_update() -> anyhow::Result<()> {
    let cluster = Cluster::start_with_env(0, "", &[EMPTY_ALLOW_LIST], &[])?;
    let mut webhooks = cluster.webhooks().await?;
    let cases = [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "it carries 127.0.0.1"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private (RFC 1918) address"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://169.254.169.254/latest/meta-data/", "the cloud metadata address"),
        ("https://[fd00::1]/", "unique local"),
        ("http://2130706433/", "127.0.0.1 is a loopback address"),
        ("http://0x7f.1/", "127.0.0.1 is a loopback address"),
        ("http://localhost:8080/", "localhost is a loopback name"),
    ];
    for (i, (url, reason)) in cases.iter().enumerate() {
        let refused = webhooks
            .create_webhook(v1::CreateWebhookRequest {
                name: format!("literal-{i}"),
                url: (*url).to_owned(),
                event_types: vec!["probe".into()],
                active: true,
                ..Default::default()
            })
            .await
            .expect_err(url);
        assert_eq!(refused.code(), Code::InvalidArgument, "{url}: {refused:?}");
        let message = refused.message();
        assert!(message.starts_with("invalid url: refused by the egress policy: "), "{message}");
        assert!(message.contains(reason), "{url}: {message:?} lacks {reason:?}");
    }

    // A host name passes the early check (it may resolve anywhere; the dispatcher decides),
    // but it cannot be changed to a forbidden literal.
    let created = cluster
        .create_webhook("by-name", "http://hooks.example.invalid/x".into(), &["probe"])
        .await?;
    let refused = webhooks
        .update_webhook(v1::UpdateWebhookRequest {
            webhook: Some(v1::Webhook {
                id: created.id.clone(),
                url: "http://169.254.169.254/".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["url".into()] }),
        })
        .await
        .expect_err("forbidden literal");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("cloud metadata"), "{}", refused.message());

    // Nothing was stored but the one webhook, unchanged.
    let all =
        webhooks.list_webhooks(v1::ListWebhooksRequest::default()).await?.into_inner().webhooks;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].url, "http://hooks.example.invalid/x");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_addresses_are_refused_at_connect_time() -> anyhow::Result<()> {
    // The control plane allows everything, so the webhooks exist; the dispatcher allows
    // nothing, so its check at connect time is the only one standing.
    let cluster = Cluster::start_with_env(
        1,
        "retry_schedule_secs = []\nattempt_timeout_secs = 2",
        &[("HOOKD_ALLOW_CIDRS", r#"["0.0.0.0/0", "::/0"]"#)],
        &[EMPTY_ALLOW_LIST],
    )?;
    let receiver = Receiver::ok()?;
    let port = receiver.addr().port();
    let cases = [
        (format!("http://127.0.0.1:{port}/"), "127.0.0.1 is a loopback address"),
        (format!("http://[::1]:{port}/"), "::1 is a loopback address"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "::ffff:127.0.0.1 is a loopback address (it carries 127.0.0.1)",
        ),
        (format!("http://0.0.0.0:{port}/"), "0.0.0.0 is an unspecified address"),
        (format!("http://10.0.0.1:{port}/"), "10.0.0.1 is a private (RFC 1918) address"),
        (format!("http://100.64.0.1:{port}/"), "100.64.0.1 is a shared (CGNAT"),
        (format!("http://169.254.169.254:{port}/"), "169.254.169.254 is the cloud metadata"),
        (format!("http://[fd00::1]:{port}/"), "fd00::1 is a unique local"),
        (format!("http://2130706433:{port}/"), "127.0.0.1 is a loopback address"),
        (format!("http://localhost:{port}/"), "every address of localhost is forbidden"),
    ];
    let mut created = Vec::new();
    for (i, (url, reason)) in cases.iter().enumerate() {
        let webhook =
            cluster.create_webhook(&format!("probe-{i}"), url.clone(), &["probe"]).await?;
        created.push((webhook.id, url, reason));
    }
    cluster.publish("probe", "evt-probe").await?;

    for (id, url, reason) in created {
        let delivery = cluster.settled_delivery(&id, DEADLINE).await?;
        assert_eq!(delivery.status, v1::DeliveryStatus::Failed as i32, "{url}");
        assert_eq!(delivery.attempts.len(), 1, "{url}");
        let attempt = &delivery.attempts[0];
        assert_eq!(attempt.http_status, 0, "{url}: no answer, no connection");
        assert!(
            attempt.error.starts_with("refused by the egress policy: "),
            "{url}: {:?}",
            attempt.error
        );
        assert!(attempt.error.contains(reason), "{url}: {:?} lacks {reason:?}", attempt.error);
        assert!(attempt.error.ends_with("(allow it with allow_cidrs)"), "{:?}", attempt.error);
    }
    assert_eq!(receiver.count(), 0, "the loopback receiver was never contacted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_the_answer_and_is_never_followed() -> anyhow::Result<()> {
    let allow_v6_loopback = ("HOOKD_ALLOW_CIDRS", r#"["::1/128"]"#);
    let cluster = Cluster::start_with_env(
        1,
        "retry_schedule_secs = []",
        &[allow_v6_loopback],
        &[allow_v6_loopback],
    )?;
    let target = Receiver::ok()?;
    let location = target.url("/internal");
    let redirecting = Receiver::start_on(
        std::net::Ipv6Addr::LOCALHOST.into(),
        responder(move |_, _| Response::status(302).with_header("location", location.clone())),
    )?;
    let webhook = cluster.create_webhook("redirect", redirecting.url("/hook"), &["probe"]).await?;
    cluster.publish("probe", "evt-redirect").await?;

    let delivery = cluster.settled_delivery(&webhook.id, DEADLINE).await?;
    assert_eq!(delivery.status, v1::DeliveryStatus::Failed as i32);
    assert_eq!(delivery.attempts.len(), 1);
    assert_eq!(delivery.attempts[0].http_status, 302, "{:?}", delivery.attempts[0]);
    assert_eq!(redirecting.count(), 1);
    // Give a follow-up request, were there one, time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(target.count(), 0, "the Location was not followed");
    Ok(())
}
