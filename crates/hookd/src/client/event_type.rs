//! `hookd event-type ...`: the tenant's event-type catalog, with a description, an optional
//! JSON Schema for `data` (inline or `@file.json`) and an example for test sends.

use anyhow::Context;
use clap::Subcommand;
use hookd_proto::{
    convert::{json_to_value, value_to_json},
    v1::{self, event_type_service_client::EventTypeServiceClient},
};
use prost_types::value::Kind;

use super::{
    Connection, Output, Paging, args, connect,
    output::{UpdateMask, time_json},
    status_error,
    table::Table,
};

#[derive(Subcommand)]
pub enum EventTypeCommand {
    /// Add an event type to the catalog.
    Create {
        /// The type, such as `contact-created`.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// JSON Schema for the event data: JSON, or `@file.json` (`@-`: stdin).
        #[arg(long)]
        schema: Option<String>,
        /// Sample data for test sends: JSON, or `@file.json`; must satisfy the schema.
        #[arg(long)]
        example: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the catalog, by name.
    List {
        #[command(flatten)]
        page: Paging,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one event type with its schema and example.
    Get {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Change the description, schema or example given on the command line.
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// JSON Schema: JSON, or `@file.json`.
        #[arg(long)]
        schema: Option<String>,
        /// Accept any data again.
        #[arg(long, conflicts_with = "schema")]
        no_schema: bool,
        /// Sample data: JSON, or `@file.json`.
        #[arg(long)]
        example: Option<String>,
        /// Remove the example (test sends then generate data from the schema).
        #[arg(long, conflicts_with = "example")]
        no_example: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove an event type no webhook subscribes to by name.
    Delete {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

/// A schema must be a JSON object (the proto carries it as a `Struct`).
fn schema_struct(text: &str) -> anyhow::Result<prost_types::Struct> {
    match json_to_value(args::json("--schema", text)?).kind {
        Some(Kind::StructValue(s)) => Ok(s),
        _ => anyhow::bail!("--schema must be a JSON object (a JSON Schema)"),
    }
}

pub async fn run(command: EventTypeCommand) -> anyhow::Result<()> {
    match command {
        EventTypeCommand::Create { name, description, schema, example, conn } => {
            let event_type = v1::EventType {
                name,
                description,
                schema: schema.as_deref().map(schema_struct).transpose()?,
                example: example
                    .as_deref()
                    .map(|e| args::json("--example", e).map(json_to_value))
                    .transpose()?,
                ..Default::default()
            };
            let mut client = EventTypeServiceClient::new(connect(&conn).await?);
            let response = client
                .create_event_type(v1::CreateEventTypeRequest { event_type: Some(event_type) })
                .await
                .map_err(status_error)?;
            print_event_type(conn.output, response.into_inner().event_type)?;
        }
        EventTypeCommand::List { page, conn } => {
            let mut client = EventTypeServiceClient::new(connect(&conn).await?);
            let response = client
                .list_event_types(v1::ListEventTypesRequest {
                    page_size: page.page_size,
                    page_token: page.page_token,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_event_types(conn.output, &response.event_types, &response.next_page_token);
        }
        EventTypeCommand::Get { name, conn } => {
            let mut client = EventTypeServiceClient::new(connect(&conn).await?);
            let response = client
                .get_event_type(v1::GetEventTypeRequest { name })
                .await
                .map_err(status_error)?;
            print_event_type(conn.output, response.into_inner().event_type)?;
        }
        EventTypeCommand::Update {
            name,
            description,
            schema,
            no_schema,
            example,
            no_example,
            conn,
        } => {
            let mut mask = UpdateMask::default();
            let mut changes = v1::EventType { name, ..Default::default() };
            if let Some(description) = description {
                changes.description = description;
                mask.set("description");
            }
            if let Some(schema) = schema {
                changes.schema = Some(schema_struct(&schema)?);
                mask.set("schema");
            } else {
                mask.set_if(no_schema, "schema");
            }
            if let Some(example) = example {
                changes.example = Some(json_to_value(args::json("--example", &example)?));
                mask.set("example");
            } else {
                mask.set_if(no_example, "example");
            }
            let update_mask = Some(mask.finish()?);
            let mut client = EventTypeServiceClient::new(connect(&conn).await?);
            let response = client
                .update_event_type(v1::UpdateEventTypeRequest {
                    event_type: Some(changes),
                    update_mask,
                })
                .await
                .map_err(status_error)?;
            print_event_type(conn.output, response.into_inner().event_type)?;
        }
        EventTypeCommand::Delete { name, conn } => {
            let mut client = EventTypeServiceClient::new(connect(&conn).await?);
            client
                .delete_event_type(v1::DeleteEventTypeRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            conn.output.done("deleted", "", &name);
        }
    }
    Ok(())
}

fn schema_json(t: &v1::EventType) -> serde_json::Value {
    t.schema.clone().map_or(serde_json::Value::Null, |s| {
        value_to_json(prost_types::Value { kind: Some(Kind::StructValue(s)) })
    })
}

fn event_type_json(t: &v1::EventType) -> serde_json::Value {
    serde_json::json!({
        "name": t.name, "description": t.description, "schema": schema_json(t),
        "example": t.example.clone().map_or(serde_json::Value::Null, value_to_json),
        "rejected": t.rejected,
        "created_at": time_json(t.created_at.as_ref()), "updated_at": time_json(t.updated_at.as_ref()),
    })
}

fn print_event_type(output: Output, event_type: Option<v1::EventType>) -> anyhow::Result<()> {
    let t = event_type.context("control plane sent no event type")?;
    if output == Output::Json {
        println!("{}", event_type_json(&t));
        return Ok(());
    }
    println!("event type {}", t.name);
    if !t.description.is_empty() {
        println!("  description  {}", t.description);
    }
    println!("  rejected     {} events whose data did not match the schema", t.rejected);
    match &t.schema {
        None => println!("  schema       none: any data"),
        Some(_) => println!(
            "  schema       {}",
            serde_json::to_string_pretty(&schema_json(&t))?.replace('\n', "\n               ")
        ),
    }
    if let Some(example) = t.example.clone() {
        println!("  example      {}", value_to_json(example));
    }
    Ok(())
}

fn print_event_types(output: Output, types: &[v1::EventType], next_page_token: &str) {
    if output == Output::Json {
        let items: Vec<_> = types.iter().map(event_type_json).collect();
        println!(
            "{}",
            serde_json::json!({ "event_types": items, "next_page_token": next_page_token })
        );
        return;
    }
    let mut table = Table::new(&["NAME", "SCHEMA", "REJECTED", "DESCRIPTION"]);
    for t in types {
        table.row(vec![
            t.name.clone(),
            if t.schema.is_some() { "yes" } else { "no" }.to_owned(),
            t.rejected.to_string(),
            t.description.clone(),
        ]);
    }
    table.print();
    if !next_page_token.is_empty() {
        println!("next page: --page-token {next_page_token}");
    }
}
