//! The command-line client: each subcommand is one gRPC call to the control plane.
//!
//! Webhook, credential, event-type and access commands live in the `client/` modules; events and the
//! delivery history, the connection options and the shared output helpers are here.

mod access;
mod args;
mod credential;
mod event_type;
mod table;
mod webhook;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use hookd_proto::{
    convert::{from_timestamp, json_to_value, timestamp},
    v1::{
        self, delivery_service_client::DeliveryServiceClient,
        event_service_client::EventServiceClient,
    },
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

pub use access::AccessCommand;
pub use credential::CredentialCommand;
pub use event_type::EventTypeCommand;
pub use webhook::WebhookCommand;

#[derive(Subcommand)]
pub enum Command {
    /// Manage webhook definitions.
    // Boxed: the create and update options make these variants far larger than the others.
    #[command(subcommand)]
    Webhook(Box<WebhookCommand>),
    /// Manage OAuth2 credentials that webhooks authenticate with.
    #[command(subcommand)]
    Credential(Box<CredentialCommand>),
    /// Manage the event-type catalog (descriptions, JSON Schemas, examples).
    #[command(subcommand, name = "event-type")]
    EventType(EventTypeCommand),
    /// Publish events.
    #[command(subcommand)]
    Event(EventCommand),
    /// Inspect delivery history.
    #[command(subcommand)]
    Delivery(DeliveryCommand),
    /// Manage the tenant's roles and API tokens; `access whoami` shows the token in use.
    #[command(subcommand)]
    Access(AccessCommand),
}

#[derive(Args, Clone)]
pub struct Connection {
    /// gRPC address of the control plane.
    #[arg(
        long,
        visible_alias = "addr",
        env = "HOOKD_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    server: String,
    /// API token, sent as `authorization: Bearer <token>` on every call; it decides the
    /// tenant and what the call may do.
    #[arg(long, env = "HOOKD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format: a human-readable table (`text`, alias `table`) or one JSON document.
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
    #[value(alias = "table")]
    Text,
    Json,
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

/// Adds the API token to every call. The metadata value is built once, when connecting, so a
/// token that cannot be a header value fails before any call is made.
#[derive(Clone)]
struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// What every service client of the CLI runs on.
type Transport = InterceptedService<Channel, BearerToken>;

fn bearer_token(token: Option<&str>) -> anyhow::Result<BearerToken> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(BearerToken(None));
    };
    let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
        .parse()
        .map_err(|_| anyhow::anyhow!("--token (HOOKD_TOKEN) must be printable ASCII"))?;
    // Keeps the token out of any debug output of the request.
    value.set_sensitive(true);
    Ok(BearerToken(Some(value)))
}

async fn connect(conn: &Connection) -> anyhow::Result<Transport> {
    let token = bearer_token(conn.token.as_deref())?;
    let channel = Endpoint::from_shared(conn.server.clone())
        .with_context(|| format!("invalid --server {:?}", conn.server))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("cannot reach the control plane at {}", conn.server))?;
    Ok(InterceptedService::new(channel, token))
}

/// The gRPC code first, so scripts and people see at once what kind of failure it is.
fn status_error(status: tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::Unimplemented => " (this control plane does not offer that call yet)",
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            " (check --token or HOOKD_TOKEN)"
        }
        _ => "",
    };
    let message = match status.message() {
        "" => String::new(),
        m => format!(": {m}"),
    };
    anyhow::anyhow!("the control plane answered {:?}{message}{hint}", status.code())
}

fn parse_json(flag: &str, text: &str) -> anyhow::Result<prost_types::Value> {
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{flag} is not valid JSON"))?;
    Ok(json_to_value(value))
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Webhook(c) => webhook::run(*c).await,
        Command::Credential(c) => credential::run(*c).await,
        Command::EventType(c) => event_type::run(c).await,
        Command::Event(c) => event(c).await,
        Command::Delivery(c) => delivery(c).await,
        Command::Access(c) => access::run(c).await,
    }
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
                            "  attempt {} at {}: {}",
                            a.number,
                            at.unwrap_or_default(),
                            attempt_summary(a)
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

pub(crate) fn status_name(status: i32) -> &'static str {
    match v1::DeliveryStatus::try_from(status) {
        Ok(v1::DeliveryStatus::Pending) => "pending",
        Ok(v1::DeliveryStatus::Delivered) => "delivered",
        Ok(v1::DeliveryStatus::Failed) => "failed",
        _ => "unknown",
    }
}

pub(crate) fn time_json(t: Option<&prost_types::Timestamp>) -> serde_json::Value {
    t.and_then(from_timestamp).map_or(serde_json::Value::Null, |t| t.to_rfc3339().into())
}

fn attempt_json(a: &v1::Attempt) -> serde_json::Value {
    serde_json::json!({
        "number": a.number, "started_at": time_json(a.started_at.as_ref()),
        "http_status": a.http_status, "latency_ms": a.latency_ms, "error": a.error,
        "response_body": a.response_body, "success": a.success,
        "request_headers": a.request_headers.iter().map(|h| [&h.name, &h.value]).collect::<Vec<_>>(),
    })
}

/// `HTTP 200 in 12 ms`, or `no answer in 10000 ms (timed out)`.
fn attempt_summary(a: &v1::Attempt) -> String {
    format!(
        "{} in {} ms{}",
        if a.http_status == 0 { "no answer".to_owned() } else { format!("HTTP {}", a.http_status) },
        a.latency_ms,
        if a.error.is_empty() { String::new() } else { format!(" ({})", a.error) },
    )
}

fn delivery_json(d: &v1::Delivery) -> serde_json::Value {
    let attempts: Vec<_> = d.attempts.iter().map(attempt_json).collect();
    serde_json::json!({
        "id": d.id, "webhook_id": d.webhook_id, "event_id": d.event_id, "event_type": d.event_type,
        "status": status_name(d.status), "attempt_count": d.attempt_count,
        "created_at": time_json(d.created_at.as_ref()), "last_attempt_at": time_json(d.last_attempt_at.as_ref()),
        "next_attempt_at": time_json(d.next_attempt_at.as_ref()), "payload": d.payload, "attempts": attempts,
    })
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    #[test]
    fn the_token_goes_in_the_authorization_metadata_of_every_call() -> anyhow::Result<()> {
        let mut token = bearer_token(Some("t0ken"))?;
        let request = token.call(tonic::Request::new(()))?;
        let value = request.metadata().get("authorization").context("no authorization")?;
        assert_eq!(value.to_str()?, "Bearer t0ken");

        let mut none = bearer_token(Some(""))?;
        assert!(none.call(tonic::Request::new(()))?.metadata().get("authorization").is_none());
        assert!(bearer_token(Some("bad\ntoken")).is_err());
        Ok(())
    }
}
