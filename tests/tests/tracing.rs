//! End to end: W3C trace context from the producer (gRPC metadata on `PublishEvent`, or a
//! `traceparent` header on the NATS message) through the fan-out and every attempt into the
//! endpoint's `traceparent`, and the spans both services export over OTLP/gRPC to a real
//! collector, checked parent by parent: publish → fan-out → each attempt → its result write.

use std::time::Duration;

use anyhow::Context as _;
use hookd_proto::v1;
use hookd_tests::{
    Cluster, CollectedSpan, OtlpReceiver, ReceivedRequest, Receiver, Response, responder,
};

const DEADLINE: Duration = Duration::from_secs(30);
const CONTROL: &str = "hookd-control";
const DISPATCHER: &str = "hookd-dispatcher";

/// The producer's own span: the trace every hookd span below must join.
struct Producer {
    trace_id: &'static str,
    span_id: &'static str,
}

impl Producer {
    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// A cluster whose services export traces to `otlp`, in batches at most `batch_delay_ms` old.
fn traced_cluster(otlp: &OtlpReceiver, batch_delay_ms: &str) -> anyhow::Result<Cluster> {
    let endpoint = otlp.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", batch_delay_ms),
    ];
    Cluster::start_with_env(1, "", &env, &env)
}

/// A receiver that fails the first attempt and accepts the second, and an active webhook for
/// `event_type` that retries after a second.
async fn failing_once(
    cluster: &Cluster,
    event_type: &str,
) -> anyhow::Result<(Receiver, v1::Webhook)> {
    let receiver = Receiver::start(responder(|_, index| {
        if index == 0 { Response::status(500) } else { Response::ok() }
    }))?;
    let webhook = cluster
        .create(v1::CreateWebhookRequest {
            name: event_type.into(),
            url: receiver.url("/hook"),
            event_types: vec![event_type.into()],
            active: true,
            retry_policy: Some(v1::RetryPolicy { delay_seconds: vec![1] }),
            ..Default::default()
        })
        .await?;
    Ok((receiver, webhook))
}

fn named<'a>(spans: &'a [CollectedSpan], name: &str) -> Vec<&'a CollectedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The trace as an indented tree, for failure messages and `--nocapture` runs.
fn tree(trace: &[CollectedSpan]) -> String {
    fn below(trace: &[CollectedSpan], parent: &str, depth: usize, out: &mut String) {
        for span in trace.iter().filter(|s| s.parent_span_id == parent) {
            let attempt = span.attribute("attempt").map(|a| format!(" attempt={a}"));
            out.push_str(&format!(
                "{:indent$}{} [{}] {}{}\n",
                "",
                span.name,
                span.service,
                span.span_id,
                attempt.unwrap_or_default(),
                indent = depth * 2
            ));
            below(trace, &span.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    let ids: Vec<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    // Roots here: spans whose parent is outside the collected trace (the producer's).
    let mut parents: Vec<&str> =
        trace.iter().map(|s| s.parent_span_id.as_str()).filter(|p| !ids.contains(p)).collect();
    parents.dedup();
    for parent in parents {
        out.push_str(&format!("(parent {parent})\n"));
        below(trace, parent, 1, &mut out);
    }
    out
}

/// Whether the trace has every span of a delivery that took two attempts.
fn delivery_complete(spans: &[CollectedSpan]) -> bool {
    named(spans, "fan_out").len() == 1
        && named(spans, "delivery_attempt").len() == 2
        && named(spans, "record_attempt").len() == 2
}

/// Checks the tree below the fan-out: each attempt is its child and is what the endpoint saw
/// as `traceparent`, and each attempt's result write is the attempt's child, linked to the
/// batch call that carried it.
fn assert_delivery_tree(
    all: &[CollectedSpan],
    trace: &[CollectedSpan],
    trace_id: &str,
    requests: &[ReceivedRequest],
) -> anyhow::Result<()> {
    let fan_out = named(trace, "fan_out")[0];
    assert_eq!(fan_out.service, DISPATCHER);
    assert!(fan_out.attribute("event_id").is_some(), "{fan_out:?}");
    assert_eq!(requests.len(), 2);
    for (number, request) in (1..=2).zip(requests) {
        let attempt = named(trace, "delivery_attempt")
            .into_iter()
            .find(|s| s.attribute("attempt") == Some(&number.to_string()))
            .with_context(|| format!("attempt {number}"))?;
        assert_eq!(attempt.service, DISPATCHER);
        assert_eq!(attempt.parent_span_id, fan_out.span_id, "attempt {number}'s parent");
        let expected_outcome = if number == 1 { "pending" } else { "delivered" };
        assert_eq!(attempt.attribute("outcome"), Some(expected_outcome));
        let expected_status = if number == 1 { "500" } else { "200" };
        assert_eq!(attempt.attribute("http_status"), Some(expected_status));
        assert_eq!(
            request.header("traceparent"),
            Some(format!("00-{trace_id}-{}-01", attempt.span_id).as_str()),
            "the endpoint sees attempt {number}'s context"
        );

        let record = named(trace, "record_attempt")
            .into_iter()
            .find(|s| s.parent_span_id == attempt.span_id)
            .with_context(|| format!("the result write of attempt {number}"))?;
        assert_eq!(record.service, CONTROL);
        assert_eq!(record.attribute("attempt"), Some(number.to_string().as_str()));
        // The batch call is in a trace of its own; the write links to it.
        let (link_trace, link_span) = record.links.first().context("a link to the batch")?;
        let batch = all
            .iter()
            .find(|s| &s.trace_id == link_trace && &s.span_id == link_span)
            .context("the linked batch span was exported")?;
        assert_eq!((batch.name.as_str(), batch.service.as_str()), ("report_attempts", CONTROL));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_publish_is_traced_through_fan_out_attempts_and_result_writes() -> anyhow::Result<()>
{
    let otlp = OtlpReceiver::start()?;
    let cluster = traced_cluster(&otlp, "100")?;
    let (receiver, _webhook) = failing_once(&cluster, "contact-created").await?;
    let producer =
        Producer { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736", span_id: "00f067aa0ba902b7" };

    let mut request = tonic::Request::new(v1::PublishEventRequest {
        event: Some(v1::Event {
            id: "evt-traced".into(),
            r#type: "contact-created".into(),
            ..Default::default()
        }),
    });
    request.metadata_mut().insert("traceparent", producer.traceparent().parse()?);
    cluster.events().await?.publish_event(request).await?;

    let requests = receiver.wait_for(2, DEADLINE).await?;
    let trace = otlp
        .wait_for_trace(producer.trace_id, DEADLINE, |spans| {
            delivery_complete(spans) && named(spans, "publish_event").len() == 1
        })
        .await?;

    eprintln!("{}", tree(&trace));
    let publish = named(&trace, "publish_event")[0];
    assert_eq!(publish.service, CONTROL);
    assert_eq!(publish.parent_span_id, producer.span_id, "publish continues the producer's span");
    assert_eq!(publish.attribute("event_id"), Some("evt-traced"));
    let fan_out = named(&trace, "fan_out")[0];
    assert_eq!(fan_out.parent_span_id, publish.span_id, "fan-out continues the publish");
    assert_delivery_tree(&otlp.spans(), &trace, producer.trace_id, &requests)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_traceparent_is_continued_and_spans_are_flushed_at_sigterm() -> anyhow::Result<()> {
    let otlp = OtlpReceiver::start()?;
    // No batch is due during the test: every span arrives with the flush at shutdown.
    let mut cluster = traced_cluster(&otlp, "600000")?;
    let (receiver, webhook) = failing_once(&cluster, "contact-created").await?;
    let producer =
        Producer { trace_id: "0af7651916cd43dd8448eb211c80319c", span_id: "b7ad6b7169203331" };

    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "evt-nats-traced");
    headers.insert("traceparent", producer.traceparent().as_str());
    let body = br#"{"id":"evt-nats-traced","type":"contact-created","data":{}}"#;
    js.publish_with_headers("hookd.events.default.contact-created", headers, body.to_vec().into())
        .await?
        .await?;

    let requests = receiver.wait_for(2, DEADLINE).await?;
    // Both results stored: the spans of their writes have ended.
    cluster
        .first_delivery_when(&webhook.id, "both attempts recorded", DEADLINE, |d| {
            d.attempts.len() == 2
        })
        .await?;
    assert!(otlp.trace(producer.trace_id).is_empty(), "nothing exported before shutdown");

    cluster.dispatchers[0].terminate()?;
    cluster.control.terminate()?;
    let trace = otlp.wait_for_trace(producer.trace_id, DEADLINE, delivery_complete).await?;
    eprintln!("{}", tree(&trace));
    let fan_out = named(&trace, "fan_out")[0];
    assert_eq!(fan_out.parent_span_id, producer.span_id, "fan-out continues the producer's span");
    assert!(named(&trace, "publish_event").is_empty(), "published to NATS directly");
    assert_delivery_tree(&otlp.spans(), &trace, producer.trace_id, &requests)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_otlp_endpoint_nothing_is_traced_or_complained_about() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    cluster.create_webhook("crm", receiver.url("/hook"), &["contact-created"]).await?;
    let mut request = tonic::Request::new(v1::PublishEventRequest {
        event: Some(v1::Event {
            id: "evt-untraced".into(),
            r#type: "contact-created".into(),
            ..Default::default()
        }),
    });
    let producer =
        Producer { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736", span_id: "00f067aa0ba902b7" };
    request.metadata_mut().insert("traceparent", producer.traceparent().parse()?);
    cluster.events().await?.publish_event(request).await?;

    let requests = receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(requests[0].header("traceparent"), None, "no context without export");
    for process in [&cluster.control, &cluster.dispatchers[0]] {
        let log = std::fs::read_to_string(process.log_path())?.to_lowercase();
        for word in ["opentelemetry", "otlp"] {
            assert!(!log.contains(word), "{} logged {word:?}:\n{log}", process.role());
        }
    }
    Ok(())
}
