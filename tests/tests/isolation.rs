//! End to end: a slow endpoint holds a bounded share of a dispatcher and never delays the
//! deliveries to other endpoints.

use std::time::Duration;

use anyhow::Context;
use hookd_proto::v1;
use hookd_tests::{Cluster, Receiver, Response, responder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoint_never_delays_other_endpoints() -> anyhow::Result<()> {
    // 16 slots in all; the slow endpoint may hold 4 attempts and 4 waiting jobs of them.
    let cluster = Cluster::start(
        1,
        "max_in_flight = 16\nendpoint_concurrency = 4\nendpoint_queue = 4\nattempt_timeout_secs = 15\nack_wait_secs = 30",
    )?;
    let slow =
        Receiver::start(responder(|_, _| Response::ok().with_delay(Duration::from_secs(10))))?;
    let fast = Receiver::ok()?;
    let mut webhooks = cluster.webhooks().await?;
    for (name, url) in [("slow", slow.url("/")), ("fast", fast.url("/"))] {
        webhooks
            .create_webhook(v1::CreateWebhookRequest {
                name: name.into(),
                url,
                event_types: vec![name.into()],
                active: true,
                ..Default::default()
            })
            .await?;
    }
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    let publish = |event_type: &'static str, id: String| {
        let js = js.clone();
        async move {
            let body = serde_json::json!({"id": id, "type": event_type});
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            js.publish_with_headers(
                format!("hookd.events.default.{event_type}"),
                headers,
                body.to_string().into(),
            )
            .await?
            .await?;
            anyhow::Ok(())
        }
    };
    // Far more slow deliveries than slots: without per-endpoint limits they would fill all 16.
    for i in 0..60 {
        publish("slow", format!("slow-{i}")).await?;
    }
    slow.wait_for(4, Duration::from_secs(20)).await?;

    let mut latencies = Vec::new();
    for i in 0..20 {
        let sent = chrono::Utc::now();
        publish("fast", format!("fast-{i}")).await?;
        let got = fast.wait_for(i + 1, Duration::from_secs(20)).await?;
        let received = got.last().context("a request")?.received_wall;
        latencies.push((received - sent).to_std().unwrap_or_default());
    }
    latencies.sort();
    let worst = latencies.last().copied().unwrap_or_default();
    eprintln!(
        "fast endpoint next to a 10 s endpoint: median {:?}, worst {:?}; slow endpoint in flight: {}",
        latencies[latencies.len() / 2],
        worst,
        slow.count()
    );
    assert!(worst < Duration::from_secs(2), "a delivery to the fast endpoint took {worst:?}");
    assert!(
        slow.count() <= 8,
        "the slow endpoint got {} concurrent attempts, limit 4",
        slow.count()
    );
    Ok(())
}
