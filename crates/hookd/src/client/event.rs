//! `hookd event publish`: one event through the control plane, exactly as if it had been
//! published on NATS.

use clap::Subcommand;
use hookd_proto::{
    convert::timestamp,
    v1::{self, event_service_client::EventServiceClient},
};

use super::{Connection, Output, connect, parse_json, status_error};

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

pub async fn run(command: EventCommand) -> anyhow::Result<()> {
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
