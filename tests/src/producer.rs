//! A producer that publishes events straight to NATS, as real producers do (not through
//! `PublishEvent`), waiting for each store ack.

use anyhow::Context as _;
use async_nats::jetstream;
use futures::{StreamExt as _, TryStreamExt as _};

/// Publishes one event of `event_type` with id `id` (data `{"id": id}`) to the default
/// tenant's subject, with `Nats-Msg-Id` = the id, and waits for the store ack.
pub async fn publish_to_nats(
    js: &jetstream::Context,
    event_type: &str,
    id: &str,
) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "id": id,
        "type": event_type,
        "entity_id": format!("entity-{id}"),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": {"id": id},
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers(
        format!("hookd.events.{}.{event_type}", crate::TENANT),
        headers,
        body.to_string().into(),
    )
    .await
    .with_context(|| format!("publishing {id}"))?
    .await
    .with_context(|| format!("store ack of {id}"))?;
    Ok(())
}

/// Publishes every id, at most `concurrency` at a time.
pub async fn publish_many_to_nats(
    js: jetstream::Context,
    event_type: String,
    ids: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<()> {
    futures::stream::iter(ids)
        .map(|id| {
            let js = js.clone();
            let event_type = event_type.clone();
            async move { publish_to_nats(&js, &event_type, &id).await }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await
}
