//! The machine's ceiling: the bare pipeline hookd is built on, with nothing else. Publish to a
//! JetStream file stream, one pull consumer, HTTP POST with hyper to the same sink, ack. No
//! fan-out, no results, no database.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub const STREAM: &str = "BENCH_CEILING";
pub const SUBJECT: &str = "bench.ceiling.events";

/// Creates the ceiling's stream: file storage, work-queue retention, like hookd's.
pub async fn create_stream(js: &jetstream::Context) -> anyhow::Result<()> {
    js.get_or_create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![format!("{SUBJECT}.>"), SUBJECT.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .context("creating the ceiling stream")?;
    Ok(())
}

/// Starts the consumer loop: each message is POSTed to `url` (at most `concurrency` at a time)
/// and acked on a 2xx answer, NAK'd otherwise. Runs until the handle is aborted.
pub async fn start_consumer(
    js: &jetstream::Context,
    url: String,
    concurrency: usize,
) -> anyhow::Result<JoinHandle<()>> {
    let stream = js.get_stream(STREAM).await?;
    let consumer = stream
        .get_or_create_consumer(
            "bench-ceiling",
            consumer::pull::Config {
                durable_name: Some("bench-ceiling".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .context("creating the ceiling consumer")?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .context("pulling from the ceiling consumer")?;
    let uri: hyper::Uri = url.parse()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(concurrency).build(connector);
    let permits = Arc::new(Semaphore::new(concurrency));
    Ok(tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let client = client.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                let request = hyper::Request::post(uri)
                    .header("content-type", "application/json")
                    .body(Full::new(message.payload.clone()));
                let ok = match request {
                    Ok(request) => match client.request(request).await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            // Drain the (empty) body so the connection goes back to the pool.
                            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                            ok
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                let _ = if ok {
                    message.ack().await
                } else {
                    message.ack_with(jetstream::AckKind::Nak(None)).await
                };
                drop(permit);
            });
        }
    }))
}
