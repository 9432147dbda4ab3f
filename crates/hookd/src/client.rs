//! The command-line client: each subcommand is one gRPC call to the control plane.
//!
//! Each resource's commands live in their `client/` module (arguments, requests, printing);
//! this file holds the command tree, the connection options and the error report. Shared
//! argument parsers are in `args`, shared printing in `output`, tables in `table`.

mod access;
mod args;
mod credential;
mod delivery;
mod event;
mod event_type;
mod output;
mod table;
mod webhook;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use hookd_proto::{auth::Bearer, convert::json_to_value};
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

pub use access::AccessCommand;
pub use credential::CredentialCommand;
pub use delivery::DeliveryCommand;
pub use event::EventCommand;
pub use event_type::EventTypeCommand;
use output::Output;
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

/// What every service client of the CLI runs on: a channel that sends the API token.
type Transport = InterceptedService<Channel, Bearer>;

async fn connect(conn: &Connection) -> anyhow::Result<Transport> {
    let token = Bearer::new(conn.token.as_deref())
        .map_err(|e| anyhow::anyhow!("--token (HOOKD_TOKEN): {e}"))?;
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
        Command::Event(c) => event::run(c).await,
        Command::Delivery(c) => delivery::run(c).await,
        Command::Access(c) => access::run(c).await,
    }
}
