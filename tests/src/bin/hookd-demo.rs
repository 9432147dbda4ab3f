//! `make run`: a whole hookd on this machine (nats-server, control plane on SQLite, one
//! dispatcher) with a demo HTTP receiver; it creates a webhook, publishes sample events from
//! the seed catalog, shows them delivered and in the history, and runs until Ctrl-C.

use std::time::Duration;

use anyhow::Context;
use hookd_proto::v1;
use hookd_tests::{Cluster, Receiver, Response, responder, wait_until};

const SAMPLES: [(&str, &str, &str); 4] = [
    (
        "basket-submitted",
        "basket-1001",
        r#"{"basketId":"basket-1001","total":249.5,"currency":"EUR"}"#,
    ),
    (
        "contact-created",
        "contact-42",
        r#"{"contactId":"contact-42","name":"Ada Lovelace","email":"ada@example.com"}"#,
    ),
    (
        "company-created",
        "company-7",
        r#"{"companyId":"company-7","name":"Analytical Engines Ltd"}"#,
    ),
    (
        "company-note-created",
        "company-7",
        r#"{"companyId":"company-7","note":"Call back on Monday"}"#,
    ),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // Installed first, so a Ctrl-C at any moment still stops every process started below.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    };
    tokio::pin!(stop);
    let demo = Demo::start();
    tokio::pin!(demo);
    let demo = tokio::select! {
        demo = &mut demo => demo?,
        () = &mut stop => {
            println!("\nstopping ...");
            return Ok(());
        }
    };
    println!("(hookd is at $CARGO_TARGET_DIR/debug/hookd.) Press Ctrl-C to stop everything.");
    stop.await;
    println!("\nstopping ...");
    drop(demo);
    Ok(())
}

/// Everything the demo started; dropping it stops every process.
struct Demo {
    _cluster: Cluster,
    _receiver: Receiver,
}

impl Demo {
    async fn start() -> anyhow::Result<Self> {
        println!("starting nats-server, hookd control and hookd dispatcher ...");
        let cluster = Cluster::start(1, "")?;
        let receiver = Receiver::start(responder(|request, index| {
            let body = request.json().map(|j| j.to_string()).unwrap_or_default();
            println!(
                "  receiver got #{}: webhook-id={} {}",
                index + 1,
                request.header("webhook-id").unwrap_or("-"),
                body
            );
            Response::ok()
        }))?;
        println!("nats-server     {}", cluster.nats.url());
        println!("control plane   {} (gRPC)", cluster.control.grpc_url());
        println!("dispatcher      http://{} (/healthz, /readyz)", cluster.dispatchers[0].addr());
        println!("demo receiver   {}", receiver.url("/webhooks"));

        let webhook = cluster
            .webhooks()
            .await?
            .create_webhook(v1::CreateWebhookRequest {
                name: "demo".into(),
                url: receiver.url("/webhooks"),
                event_types: SAMPLES.iter().map(|(t, _, _)| (*t).to_owned()).collect(),
                active: true,
                description: "created by make run".into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .webhook
            .context("no webhook in the answer")?;
        println!("\ncreated webhook {} for {}", webhook.id, webhook.event_types.join(", "));

        println!("\npublishing {} sample events to NATS ...", SAMPLES.len());
        let js = async_nats::jetstream::new(cluster.nats.client().await?);
        for (i, (event_type, entity_id, data)) in SAMPLES.iter().enumerate() {
            let id = format!("demo-{}-{}", i + 1, uuid::Uuid::now_v7().simple());
            let event = serde_json::json!({
                "id": id, "type": event_type, "entity_id": entity_id,
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "context": {"source": "make run"}, "data": serde_json::from_str::<serde_json::Value>(data)?,
            });
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            js.publish_with_headers(
                format!("hookd.events.default.{event_type}"),
                headers,
                event.to_string().into(),
            )
            .await?
            .await?;
        }
        receiver.wait_for(SAMPLES.len(), Duration::from_secs(30)).await?;

        let mut deliveries = cluster.deliveries().await?;
        let history =
            wait_until("every delivery is in the history", Duration::from_secs(30), || {
                let mut deliveries = deliveries.clone();
                let webhook_id = webhook.id.clone();
                async move {
                    let list = deliveries
                        .list_deliveries(v1::ListDeliveriesRequest {
                            webhook_id,
                            ..Default::default()
                        })
                        .await?
                        .into_inner()
                        .deliveries;
                    Ok((list.len() >= SAMPLES.len()).then_some(list))
                }
            })
            .await?;
        println!("\ndelivery history of webhook {}:", webhook.id);
        for d in &history {
            let detail = deliveries
                .get_delivery(v1::GetDeliveryRequest { id: d.id.clone() })
                .await?
                .into_inner()
                .delivery
                .context("delivery")?;
            let last = detail.attempts.last();
            println!(
                "  {} {:<22} {:<10} attempts={} last: HTTP {} in {} ms",
                d.id,
                d.event_type,
                v1::DeliveryStatus::try_from(d.status).map(|s| s.as_str_name()).unwrap_or("?"),
                d.attempt_count,
                last.map_or(0, |a| a.http_status),
                last.map_or(0, |a| a.latency_ms),
            );
        }
        let server = cluster.control.grpc_url();
        println!("\nhookd is running. Try, in another terminal:");
        println!("  hookd webhook list --server {server}");
        println!(
            "  hookd event publish --server {server} --type contact-created --data '{{\"name\":\"Grace\"}}'"
        );
        println!("  hookd delivery list --server {server} --webhook {}", webhook.id);
        println!("  grpcurl -plaintext {} list", cluster.control.addr());
        Ok(Demo { _cluster: cluster, _receiver: receiver })
    }
}
