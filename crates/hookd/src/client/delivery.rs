//! `hookd delivery ...`: a webhook's delivery history, one delivery with every attempt,
//! resending one and recovering the failed ones since a time.

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use hookd_proto::{
    convert::{from_timestamp, timestamp},
    v1::{self, delivery_service_client::DeliveryServiceClient},
};

use super::{
    Connection, Output, Paging, connect,
    output::{attempt_json, attempt_summary, status_name, time_json},
    status_error,
};

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

pub async fn run(command: DeliveryCommand) -> anyhow::Result<()> {
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
            conn.output.done("resent", "", &id);
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

fn delivery_json(d: &v1::Delivery) -> serde_json::Value {
    let attempts: Vec<_> = d.attempts.iter().map(attempt_json).collect();
    serde_json::json!({
        "id": d.id, "webhook_id": d.webhook_id, "event_id": d.event_id, "event_type": d.event_type,
        "status": status_name(d.status), "attempt_count": d.attempt_count,
        "created_at": time_json(d.created_at.as_ref()), "last_attempt_at": time_json(d.last_attempt_at.as_ref()),
        "next_attempt_at": time_json(d.next_attempt_at.as_ref()), "payload": d.payload, "attempts": attempts,
    })
}
