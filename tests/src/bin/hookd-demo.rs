//! `make run`: a whole hookd on this machine (nats-server, control plane on SQLite, one
//! dispatcher) with a demo HTTP receiver; it loads the seed event-type catalog
//! (`demo-catalog.json`), creates a webhook, publishes sample events, shows them delivered and
//! in the history, prints the web console's address with a one-time sign-in link, and runs
//! until Ctrl-C.

use std::time::Duration;

use anyhow::Context;
use hookd_proto::{convert::json_to_value, v1};
use hookd_tests::{Cluster, OWNER_TOKEN, Receiver, Response, TENANT, responder, wait_until};
use prost_types::value::Kind;

/// The seed products' event types: name, description, JSON Schema for `data`, example. Kept
/// as data so it can be read (and reused with `hookd event-type create`) without the code.
const CATALOG: &str = include_str!("demo-catalog.json");

/// The events the demo publishes; each satisfies its type's schema in the catalog (the test
/// at the bottom checks it, since the control plane would reject them otherwise).
const SAMPLES: [(&str, &str, &str); 4] = [
    (
        "basket-submitted",
        "basket-1001",
        r#"{"basketId":"basket-1001","contactId":"contact-42","total":249.5,"currency":"EUR","items":[{"sku":"SKU-7","quantity":2,"price":124.75}]}"#,
    ),
    (
        "contact-created",
        "contact-42",
        r#"{"contactId":"contact-42","email":"ada@example.com","firstName":"Ada","lastName":"Lovelace"}"#,
    ),
    (
        "company-created",
        "company-7",
        r#"{"companyId":"company-7","name":"Analytical Engines Ltd","domain":"engines.example"}"#,
    ),
    (
        "company-note-created",
        "company-7",
        r#"{"noteId":"note-3","companyId":"company-7","text":"Call back on Monday"}"#,
    ),
];

/// The entries of `demo-catalog.json` as `EventType` messages.
fn catalog() -> anyhow::Result<Vec<v1::EventType>> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(CATALOG).context("demo-catalog.json is not a JSON array")?;
    entries
        .into_iter()
        .map(|e| {
            let text = |key: &str| e[key].as_str().map(str::to_owned);
            let name = text("name").context("a catalog entry has no name")?;
            let schema = match json_to_value(e["schema"].clone()).kind {
                Some(Kind::StructValue(s)) => Some(s),
                _ => None,
            };
            Ok(v1::EventType {
                description: text("description").unwrap_or_default(),
                schema,
                example: Some(json_to_value(e["example"].clone())),
                name,
                ..Default::default()
            })
        })
        .collect()
}

/// Creates every catalog entry. A control plane without the catalog (UNIMPLEMENTED) only
/// gets a note, so the demo still runs against it.
async fn load_catalog(cluster: &Cluster) -> anyhow::Result<()> {
    let mut client = cluster.event_types().await?;
    let entries = catalog()?;
    let count = entries.len();
    for event_type in entries {
        let name = event_type.name.clone();
        match client
            .create_event_type(v1::CreateEventTypeRequest { event_type: Some(event_type) })
            .await
        {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                println!("(this control plane has no event-type catalog yet: skipped)");
                return Ok(());
            }
            Err(status) => {
                anyhow::bail!(
                    "cannot create event type {name}: {} ({:?})",
                    status.message(),
                    status.code()
                )
            }
        }
    }
    println!("\nloaded {count} event types into the catalog (hookd event-type list)");
    Ok(())
}

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
    println!("Press Ctrl-C to stop everything.");
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
        if let Some(console) = cluster.control.console_url() {
            println!("web console     {console}");
        }
        println!("dispatcher      http://{} (/healthz, /readyz)", cluster.dispatchers[0].addr());
        println!("demo receiver   {}", receiver.url("/webhooks"));

        load_catalog(&cluster).await?;
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
        if let Some(console) = cluster.control.console_url() {
            // A portal link is exchanged for a session cookie on first use and expires, so
            // printing it leaves no reusable token in the terminal's scrollback.
            let link = cluster
                .access()
                .await?
                .create_portal_link(v1::CreatePortalLinkRequest {
                    role: "owner".into(),
                    app: String::new(),
                    ttl_seconds: 3600,
                })
                .await?
                .into_inner()
                .url;
            println!("\nweb console     {console}");
            println!("  open this one-time sign-in link (valid for an hour) in a browser:");
            println!("  {link}");
            println!("  or sign in at {console}/sign-in with the owner token below.");
        }
        // The binary this demo runs, by its real path: these commands work as printed, with
        // nothing installed (`make install` puts `hookd` on PATH for good).
        let hookd = hookd_tests::hookd_binary()?;
        let hookd = hookd.display();
        println!("\nhookd is running. Every call needs an API token; this demo's owner token");
        println!("of tenant {TENANT:?} (bootstrap_tokens in the control plane's settings) is:");
        println!("  {OWNER_TOKEN}");
        println!("Try, in another terminal (or `make install` first, then plain `hookd ...`):");
        println!("  export HOOKD_TOKEN={OWNER_TOKEN} HOOKD_SERVER={server}");
        println!("  {hookd} access whoami");
        println!("  {hookd} webhook list");
        println!("  {hookd} event-type list");
        println!(
            "  {hookd} event publish --type contact-created --data '{{\"contactId\":\"contact-43\",\"email\":\"grace@example.com\",\"firstName\":\"Grace\"}}'"
        );
        println!("  {hookd} delivery list --webhook {}", webhook.id);
        println!("  grpcurl -plaintext {} list", cluster.control.addr());
        Ok(Demo { _cluster: cluster, _receiver: receiver })
    }
}

#[cfg(test)]
mod tests {
    use hookd_core::catalog::Schema;

    use super::*;

    fn schemas() -> anyhow::Result<Vec<(String, Schema, serde_json::Value)>> {
        let entries: Vec<serde_json::Value> = serde_json::from_str(CATALOG)?;
        entries
            .into_iter()
            .map(|e| {
                let name = e["name"].as_str().context("name")?.to_owned();
                let schema = Schema::compile(&e["schema"]).map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok((name, schema, e["example"].clone()))
            })
            .collect()
    }

    #[test]
    fn the_catalog_has_every_seed_type_with_a_valid_schema_and_example() -> anyhow::Result<()> {
        let types = catalog()?;
        let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 13, "{names:?}");
        for t in &types {
            assert!(!t.description.is_empty() && t.schema.is_some(), "{}", t.name);
        }
        for (name, schema, example) in schemas()? {
            schema.check(&example).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        }
        Ok(())
    }

    #[test]
    fn the_published_samples_satisfy_their_schemas() -> anyhow::Result<()> {
        let schemas = schemas()?;
        for (event_type, _, data) in SAMPLES {
            let (_, schema, _) =
                schemas.iter().find(|(n, _, _)| n == event_type).context(event_type)?;
            let data: serde_json::Value = serde_json::from_str(data)?;
            schema.check(&data).map_err(|e| anyhow::anyhow!("{event_type}: {e}"))?;
            // The schema is really checked: data without the required fields fails.
            assert!(schema.check(&serde_json::json!({})).is_err(), "{event_type}");
        }
        Ok(())
    }
}
