//! The command-line client: each subcommand is one gRPC call to the control plane.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use hookd_proto::{
    convert::{from_timestamp, json_to_value, timestamp},
    v1::{
        self, delivery_service_client::DeliveryServiceClient,
        event_service_client::EventServiceClient, webhook_service_client::WebhookServiceClient,
    },
};
use tonic::transport::{Channel, Endpoint};

#[derive(Subcommand)]
pub enum Command {
    /// Manage webhook definitions.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Publish events.
    #[command(subcommand)]
    Event(EventCommand),
    /// Inspect delivery history.
    #[command(subcommand)]
    Delivery(DeliveryCommand),
}

#[derive(Args, Clone)]
pub struct Connection {
    /// gRPC address of the control plane.
    #[arg(long, env = "HOOKD_SERVER", default_value = "http://127.0.0.1:7070")]
    server: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Create a webhook.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        url: String,
        /// Event type to subscribe to; repeat it, or `*` for all.
        #[arg(long = "event-type", required = true)]
        event_types: Vec<String>,
        /// Start active (new webhooks are inactive otherwise).
        #[arg(long)]
        active: bool,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List webhooks.
    List {
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one webhook.
    Get {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Change some fields of a webhook.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        url: Option<String>,
        /// Replaces the subscribed event types; repeat it.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        #[arg(long)]
        active: Option<bool>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a webhook and its delivery history.
    Delete {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand)]
pub enum EventCommand {
    /// Publish one event (the same as publishing it to NATS).
    Publish {
        /// Event type, e.g. `contact-created`.
        #[arg(long = "type")]
        event_type: String,
        /// Event id; generated when omitted. Publishing an id again is a no-op.
        #[arg(long, default_value = "")]
        id: String,
        #[arg(long, default_value = "")]
        entity_id: String,
        /// Event data as JSON.
        #[arg(long, default_value = "{}")]
        data: String,
        /// Producer context as JSON.
        #[arg(long)]
        context: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand)]
pub enum DeliveryCommand {
    /// List a webhook's deliveries, newest first.
    List {
        #[arg(long)]
        webhook: String,
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one delivery with every attempt.
    Get {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

async fn connect(conn: &Connection) -> anyhow::Result<Channel> {
    Endpoint::from_shared(conn.server.clone())
        .with_context(|| format!("invalid --server {:?}", conn.server))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("cannot reach the control plane at {}", conn.server))
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}

fn parse_json(flag: &str, text: &str) -> anyhow::Result<prost_types::Value> {
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{flag} is not valid JSON"))?;
    Ok(json_to_value(value))
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Webhook(c) => webhook(c).await,
        Command::Event(c) => event(c).await,
        Command::Delivery(c) => delivery(c).await,
    }
}

async fn webhook(command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Create { name, url, event_types, active, description, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let request = v1::CreateWebhookRequest { name, url, event_types, active, description };
            let response = client.create_webhook(request).await.map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::List { page_size, page_token, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .list_webhooks(v1::ListWebhooksRequest { page_size, page_token })
                .await
                .map_err(status_error)?
                .into_inner();
            print_webhooks(conn.output, &response.webhooks, &response.next_page_token);
        }
        WebhookCommand::Get { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response =
                client.get_webhook(v1::GetWebhookRequest { id }).await.map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::Update { id, name, url, event_types, active, description, conn } => {
            let mut paths = Vec::new();
            let mut changes = v1::Webhook { id, ..Default::default() };
            if let Some(name) = name {
                changes.name = name;
                paths.push("name".to_owned());
            }
            if let Some(url) = url {
                changes.url = url;
                paths.push("url".to_owned());
            }
            if !event_types.is_empty() {
                changes.event_types = event_types;
                paths.push("event_types".to_owned());
            }
            if let Some(active) = active {
                changes.active = active;
                paths.push("active".to_owned());
            }
            if let Some(description) = description {
                changes.description = description;
                paths.push("description".to_owned());
            }
            if paths.is_empty() {
                anyhow::bail!(
                    "nothing to change: pass --name, --url, --event-type, --active or --description"
                );
            }
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let request = v1::UpdateWebhookRequest {
                webhook: Some(changes),
                update_mask: Some(prost_types::FieldMask { paths }),
            };
            let response = client.update_webhook(request).await.map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::Delete { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            client
                .delete_webhook(v1::DeleteWebhookRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            match conn.output {
                Output::Text => println!("deleted {id}"),
                Output::Json => println!("{}", serde_json::json!({ "deleted": id })),
            }
        }
    }
    Ok(())
}

async fn event(command: EventCommand) -> anyhow::Result<()> {
    let EventCommand::Publish { event_type, id, entity_id, data, context, conn } = command;
    let event = v1::Event {
        id,
        r#type: event_type,
        entity_id,
        timestamp: Some(timestamp(chrono::Utc::now())),
        context: context.as_deref().map(|c| parse_json("--context", c)).transpose()?,
        data: Some(parse_json("--data", &data)?),
    };
    let mut client = EventServiceClient::new(connect(&conn).await?);
    let response = client
        .publish_event(v1::PublishEventRequest { event: Some(event) })
        .await
        .map_err(status_error)?
        .into_inner();
    match conn.output {
        Output::Text => println!(
            "published {} (stream sequence {}{})",
            response.event_id,
            response.stream_sequence,
            if response.duplicate { ", duplicate: already published" } else { "" }
        ),
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "event_id": response.event_id,
                "stream_sequence": response.stream_sequence,
                "duplicate": response.duplicate,
            })
        ),
    }
    Ok(())
}

async fn delivery(command: DeliveryCommand) -> anyhow::Result<()> {
    match command {
        DeliveryCommand::List { webhook, page_size, page_token, conn } => {
            let mut client = DeliveryServiceClient::new(connect(&conn).await?);
            let response = client
                .list_deliveries(v1::ListDeliveriesRequest {
                    webhook_id: webhook,
                    page_size,
                    page_token,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match conn.output {
                Output::Json => {
                    let items: Vec<_> = response.deliveries.iter().map(delivery_json).collect();
                    println!(
                        "{}",
                        serde_json::json!({ "deliveries": items, "next_page_token": response.next_page_token })
                    );
                }
                Output::Text => {
                    println!(
                        "{:<38} {:<24} {:<20} {:<10} {:>8}",
                        "ID", "EVENT", "TYPE", "STATUS", "ATTEMPTS"
                    );
                    for d in &response.deliveries {
                        println!(
                            "{:<38} {:<24} {:<20} {:<10} {:>8}",
                            d.id,
                            d.event_id,
                            d.event_type,
                            status_name(d.status),
                            d.attempt_count
                        );
                    }
                    if !response.next_page_token.is_empty() {
                        println!("next page: --page-token {}", response.next_page_token);
                    }
                }
            }
        }
        DeliveryCommand::Get { id, conn } => {
            let mut client = DeliveryServiceClient::new(connect(&conn).await?);
            let delivery = client
                .get_delivery(v1::GetDeliveryRequest { id })
                .await
                .map_err(status_error)?
                .into_inner()
                .delivery
                .context("control plane sent no delivery")?;
            match conn.output {
                Output::Json => println!("{}", delivery_json(&delivery)),
                Output::Text => {
                    println!("delivery {}", delivery.id);
                    println!("  webhook   {}", delivery.webhook_id);
                    println!("  event     {} ({})", delivery.event_id, delivery.event_type);
                    println!("  status    {}", status_name(delivery.status));
                    if let Some(next) = delivery.next_attempt_at.as_ref().and_then(from_timestamp) {
                        println!("  next      {}", next.to_rfc3339());
                    }
                    println!("  payload   {}", delivery.payload);
                    for a in &delivery.attempts {
                        let at =
                            a.started_at.as_ref().and_then(from_timestamp).map(|t| t.to_rfc3339());
                        println!(
                            "  attempt {} at {}: {} in {} ms{}",
                            a.number,
                            at.unwrap_or_default(),
                            if a.http_status == 0 {
                                "no answer".to_owned()
                            } else {
                                format!("HTTP {}", a.http_status)
                            },
                            a.latency_ms,
                            if a.error.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", a.error)
                            },
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn status_name(status: i32) -> &'static str {
    match v1::DeliveryStatus::try_from(status) {
        Ok(v1::DeliveryStatus::Pending) => "pending",
        Ok(v1::DeliveryStatus::Delivered) => "delivered",
        Ok(v1::DeliveryStatus::Failed) => "failed",
        _ => "unknown",
    }
}

fn time_json(t: Option<&prost_types::Timestamp>) -> serde_json::Value {
    t.and_then(from_timestamp).map_or(serde_json::Value::Null, |t| t.to_rfc3339().into())
}

fn webhook_json(w: &v1::Webhook) -> serde_json::Value {
    serde_json::json!({
        "id": w.id, "name": w.name, "url": w.url, "event_types": w.event_types,
        "active": w.active, "description": w.description,
        "created_at": time_json(w.created_at.as_ref()), "updated_at": time_json(w.updated_at.as_ref()),
    })
}

fn delivery_json(d: &v1::Delivery) -> serde_json::Value {
    let attempts: Vec<_> = d
        .attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "number": a.number, "started_at": time_json(a.started_at.as_ref()),
                "http_status": a.http_status, "latency_ms": a.latency_ms, "error": a.error,
                "response_body": a.response_body, "success": a.success,
            })
        })
        .collect();
    serde_json::json!({
        "id": d.id, "webhook_id": d.webhook_id, "event_id": d.event_id, "event_type": d.event_type,
        "status": status_name(d.status), "attempt_count": d.attempt_count,
        "created_at": time_json(d.created_at.as_ref()), "last_attempt_at": time_json(d.last_attempt_at.as_ref()),
        "next_attempt_at": time_json(d.next_attempt_at.as_ref()), "payload": d.payload, "attempts": attempts,
    })
}

fn print_webhook(output: Output, webhook: Option<v1::Webhook>) -> anyhow::Result<()> {
    let webhook = webhook.context("control plane sent no webhook")?;
    match output {
        Output::Json => println!("{}", webhook_json(&webhook)),
        Output::Text => print_webhooks(output, &[webhook], ""),
    }
    Ok(())
}

fn print_webhooks(output: Output, webhooks: &[v1::Webhook], next_page_token: &str) {
    match output {
        Output::Json => {
            let items: Vec<_> = webhooks.iter().map(webhook_json).collect();
            println!(
                "{}",
                serde_json::json!({ "webhooks": items, "next_page_token": next_page_token })
            );
        }
        Output::Text => {
            println!("{:<36} {:<24} {:<7} {:<30} URL", "ID", "NAME", "ACTIVE", "EVENT TYPES");
            for w in webhooks {
                println!(
                    "{:<36} {:<24} {:<7} {:<30} {}",
                    w.id,
                    w.name,
                    if w.active { "yes" } else { "no" },
                    w.event_types.join(","),
                    w.url
                );
            }
            if !next_page_token.is_empty() {
                println!("next page: --page-token {next_page_token}");
            }
        }
    }
}
