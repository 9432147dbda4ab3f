//! `hookd webhook ...`: create, read, change, (de)activate, duplicate, test and delete
//! webhook definitions with every endpoint option (method, headers, auth, fields, format).
//! The commands and their calls are here; their arguments in `options`, printing in `show`.

mod options;
mod show;

use clap::Subcommand;
use hookd_proto::{
    convert::from_timestamp,
    v1::{self, webhook_service_client::WebhookServiceClient},
};

use options::{EndpointArgs, UpdateArgs, create_request};
use show::{print_test, print_webhook, print_webhook_with_secret, print_webhooks};

use super::{
    Connection, Output, Paging,
    args::{self, StatusFilterArg},
    connect,
    output::attempt_summary,
    status_error,
};

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
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// List webhooks, with their last attempt and delivery counts.
    List {
        /// Only webhooks whose name contains this text (case-insensitive).
        #[arg(long)]
        name_contains: Option<String>,
        /// Only webhooks with exactly this app label.
        #[arg(long)]
        app: Option<String>,
        /// Only webhooks that receive this event type (directly or through `*`).
        #[arg(long)]
        event_type: Option<String>,
        #[arg(long, value_enum)]
        status: Option<StatusFilterArg>,
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
    /// Change the fields given on the command line, and only those.
    Update {
        #[command(flatten)]
        changes: UpdateArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a webhook and its delivery history.
    Delete {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Start deliveries to a webhook.
    Activate {
        id: String,
        /// Deliver the events kept while it was deactivated (in order, at a bounded rate)
        /// instead of discarding them.
        #[arg(long)]
        replay: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Stop deliveries to a webhook.
    Deactivate {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Copy a webhook into a new, inactive one named "<name> (copy)", with its own signing
    /// secret.
    Duplicate {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print the webhook's current signing secret (`whsec_…`).
    Secret {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Issue a new signing secret; the old one keeps signing during a grace period.
    RotateSecret {
        id: String,
        /// Seconds the old secret keeps signing (default: the control plane's, 24 h).
        #[arg(long, conflicts_with = "expire_now")]
        grace_secs: Option<u32>,
        /// Stop signing with the old secret at once.
        #[arg(long)]
        expire_now: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Send a sample event now and show what happened; exits non-zero if the attempt failed.
    Test {
        id: String,
        /// The event type to send; one the webhook receives.
        #[arg(long)]
        event_type: String,
        /// Event data as JSON or `@file.json`; the catalog's example (or a sample) otherwise.
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Create { name, url, event_types, active, endpoint, conn } => {
            let request = create_request(name, url, event_types, active, endpoint)?;
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client.create_webhook(request).await.map_err(status_error)?.into_inner();
            print_webhook_with_secret(conn.output, response.webhook, &response.signing_secret)?;
        }
        WebhookCommand::List { name_contains, app, event_type, status, page, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .list_webhooks(v1::ListWebhooksRequest {
                    page_size: page.page_size,
                    page_token: page.page_token,
                    name_contains: name_contains.unwrap_or_default(),
                    app: app.unwrap_or_default(),
                    event_type: event_type.unwrap_or_default(),
                    status: status.map_or(0, |s| v1::StatusFilter::from(s).into()),
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
        WebhookCommand::Update { changes, conn } => {
            let request = changes.into_request()?;
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client.update_webhook(request).await.map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::Delete { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            client
                .delete_webhook(v1::DeleteWebhookRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            conn.output.done("deleted", "", &id);
        }
        WebhookCommand::Activate { id, replay, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .activate_webhook(v1::ActivateWebhookRequest { id, replay })
                .await
                .map_err(status_error)?
                .into_inner();
            if conn.output == Output::Text && (response.replayed > 0 || response.discarded > 0) {
                eprintln!(
                    "replaying {} kept events, discarded {}",
                    response.replayed, response.discarded
                );
            }
            print_webhook(conn.output, response.webhook)?;
        }
        WebhookCommand::Deactivate { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .deactivate_webhook(v1::DeactivateWebhookRequest { id })
                .await
                .map_err(status_error)?;
            print_webhook(conn.output, response.into_inner().webhook)?;
        }
        WebhookCommand::Duplicate { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .duplicate_webhook(v1::DuplicateWebhookRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_webhook_with_secret(conn.output, response.webhook, &response.signing_secret)?;
        }
        WebhookCommand::Secret { id, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let secret = client
                .get_webhook_secret(v1::GetWebhookSecretRequest { id })
                .await
                .map_err(status_error)?
                .into_inner()
                .signing_secret;
            match conn.output {
                Output::Json => println!("{}", serde_json::json!({ "signing_secret": secret })),
                Output::Text => println!("{secret}"),
            }
        }
        WebhookCommand::RotateSecret { id, grace_secs, expire_now, conn } => {
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let r = client
                .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
                    id,
                    grace_seconds: grace_secs.unwrap_or(0),
                    expire_now,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let until =
                r.previous_expires_at.as_ref().and_then(from_timestamp).map(|t| t.to_rfc3339());
            match conn.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "signing_secret": r.signing_secret,
                        "previous_expires_at": until,
                    })
                ),
                Output::Text => {
                    println!("new signing secret  {}", r.signing_secret);
                    match until {
                        Some(t) => println!("the old secret signs too until {t}"),
                        None => println!("the old secret no longer signs"),
                    }
                }
            }
        }
        WebhookCommand::Test { id, event_type, data, conn } => {
            // Parsed before connecting, so a typo in the JSON costs no round trip.
            let data = data
                .map(|d| args::json("--data", &d))
                .transpose()?
                .map(hookd_proto::convert::json_to_value);
            let mut client = WebhookServiceClient::new(connect(&conn).await?);
            let response = client
                .test_webhook(v1::TestWebhookRequest { id, event_type, data })
                .await
                .map_err(status_error)?
                .into_inner();
            print_test(conn.output, &response);
            let attempt = response.attempt.unwrap_or_default();
            anyhow::ensure!(
                attempt.success,
                "the test attempt failed: {}",
                attempt_summary(&attempt)
            );
        }
    }
    Ok(())
}
