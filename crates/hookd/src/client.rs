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

/// Paging of list commands.
#[derive(Args, Clone)]
pub struct Paging {
    #[arg(long, default_value_t = 50)]
    page_size: u32,
    /// The `next page` token a previous listing printed.
    #[arg(long, default_value = "")]
    page_token: String,
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
        /// Attempt timeout in milliseconds (1 to 30000); the dispatcher's default otherwise.
        #[arg(long)]
        timeout_ms: Option<u32>,
        /// Retry delays in seconds, comma separated (e.g. `15,60,225`); empty for no retries.
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        retry_schedule: Option<Vec<u32>>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List webhooks.
    List {
        #[command(flatten)]
        page: Paging,
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
        /// Attempt timeout in milliseconds; 0 for the dispatcher's default.
        #[arg(long)]
        timeout_ms: Option<u32>,
        /// Retry delays in seconds, comma separated.
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        retry_schedule: Option<Vec<u32>>,
        /// Go back to the dispatcher's default retry schedule.
        #[arg(long, conflicts_with = "retry_schedule")]
        default_retry_schedule: bool,
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
        /// Only deliveries in this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only deliveries created at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        page: Paging,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one delivery with every attempt.
    Get {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Deliver a delivered or failed delivery again, now.
    Resend {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Resend every failed delivery of a webhook created since a time.
    Recover {
        #[arg(long)]
        webhook: String,
        /// RFC 3339 time, e.g. 2026-11-23T00:00:00Z.
        #[arg(long)]
        since: chrono::DateTime<chrono::Utc>,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Pending,
    Delivered,
    Failed,
}

impl From<StatusArg> for v1::DeliveryStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Pending => Self::Pending,
            StatusArg::Delivered => Self::Delivered,
            StatusArg::Failed => Self::Failed,
        }
    }
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
        WebhookCommand::Create {
            name,
            url,
            event_types,
            active,
            description,
            timeout_ms,
            retry_schedule,
            conn,
        } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let request = v1::CreateWebhookRequest {
                name,
                url,
                event_types,
                active,
                description,
                attempt_timeout_ms: timeout_ms.unwrap_or(0),
                retry_policy: retry_schedule.map(|delay_seconds| v1::RetryPolicy { delay_seconds }),
                ..Default::default()
            };
            let response = client.create_webhook(request).await.map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::List { page, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .list_webhooks(v1::ListWebhooksRequest {
                    page_size: page.page_size,
                    page_token: page.page_token,
                    ..Default::default()
                })
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
        WebhookCommand::Update {
            id,
            name,
            url,
            event_types,
            active,
            description,
            timeout_ms,
            retry_schedule,
            default_retry_schedule,
            conn,
        } => {
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
            if let Some(ms) = timeout_ms {
                changes.attempt_timeout_ms = ms;
                paths.push("attempt_timeout_ms".to_owned());
            }
            if let Some(delay_seconds) = retry_schedule {
                changes.retry_policy = Some(v1::RetryPolicy { delay_seconds });
                paths.push("retry_policy".to_owned());
            } else if default_retry_schedule {
                paths.push("retry_policy".to_owned());
            }
            if paths.is_empty() {
                anyhow::bail!("nothing to change: pass at least one field to change (see --help)");
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
        DeliveryCommand::List { webhook, status, since, page, conn } => {
            let mut client = DeliveryServiceClient::new(connect(&conn).await?);
            let response = client
                .list_deliveries(v1::ListDeliveriesRequest {
                    webhook_id: webhook,
                    page_size: page.page_size,
                    page_token: page.page_token,
                    status: status.map_or(0, |s| v1::DeliveryStatus::from(s).into()),
                    since: since.map(timestamp),
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
        DeliveryCommand::Resend { id, conn } => {
            let mut client = DeliveryServiceClient::new(connect(&conn).await?);
            client
                .resend_delivery(v1::ResendDeliveryRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            match conn.output {
                Output::Text => println!("resent {id}"),
                Output::Json => println!("{}", serde_json::json!({ "resent": id })),
            }
        }
        DeliveryCommand::Recover { webhook, since, conn } => {
            let mut client = DeliveryServiceClient::new(connect(&conn).await?);
            let response = client
                .recover_failed_deliveries(v1::RecoverFailedDeliveriesRequest {
                    webhook_id: webhook,
                    since: Some(timestamp(since)),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match conn.output {
                Output::Text => println!("resent {} failed deliveries", response.resent),
                Output::Json => println!("{}", serde_json::json!({ "resent": response.resent })),
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
        "attempt_timeout_ms": w.attempt_timeout_ms,
        "retry_schedule": w.retry_policy.as_ref().map(|p| p.delay_seconds.clone()),
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
                "request_headers": a.request_headers.iter().map(|h| [&h.name, &h.value]).collect::<Vec<_>>(),
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
