//! W3C trace context across hookd's hops: a `traceparent` (a NATS message header, gRPC
//! metadata, a field of a delivery job or of an attempt report) made the parent of a `tracing`
//! span, and a span's own context written back out as a `traceparent`.
//!
//! Only the OpenTelemetry API is used here: whether spans are exported is the binary's choice
//! (an OpenTelemetry layer in its subscriber, see `crates/hookd/src/telemetry.rs`). Without that
//! layer a span has no trace context, so reading changes nothing and [`traceparent`] is `None`
//! without allocating: the cost per delivery with export off is a failed downcast.
//!
//! Parsing is done here rather than by the global propagator: it is a fixed W3C format, and
//! the global propagator sits behind a lock that every delivery would take. A malformed value
//! is ignored (the span becomes a root): tracing never fails an event or a delivery.
//! `tracestate` is not carried.

use async_nats::{HeaderMap, header::HeaderName};
use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState},
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C header (and gRPC metadata key) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// [`TRACEPARENT`] as a NATS header name, built without allocating.
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);

/// The remote span context a `traceparent` value names, or `None` unless it is well formed:
/// `<version>-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase, ids not all
/// zero, version not `ff` (a later version may append fields, which are ignored).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    if !is_lower_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !is_lower_hex(trace_id, 32) || !is_lower_hex(span_id, 16) || !is_lower_hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    // Only the sampled bit is defined; the others are not passed on.
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?) & TraceFlags::SAMPLED;
    let context = SpanContext::new(trace_id, span_id, flags, true, TraceState::NONE);
    context.is_valid().then_some(context)
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Makes the span `traceparent` names the parent of `span`. Call it before the span is first
/// entered: an OpenTelemetry span's parent is fixed once it starts. A malformed value, or no
/// OpenTelemetry layer, leaves `span` as it was.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let Some(parent) = parse_traceparent(traceparent) else { return };
    // Fails only without the layer or once started; either way the span keeps its parent.
    let _ = span.set_parent(Context::new().with_remote_span_context(parent));
}

/// Like [`set_parent`], from the `traceparent` header of a NATS message, if it has one.
pub fn set_parent_from_headers(span: &tracing::Span, headers: Option<&HeaderMap>) {
    if let Some(value) = headers.and_then(|h| h.get(TRACEPARENT_HEADER)) {
        set_parent(span, value.as_str());
    }
}

/// `span`'s own context as a `traceparent` value (version 00), or `None` when it has none: no
/// OpenTelemetry layer, or a span the subscriber disabled.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// `span`'s own context, when it has one (see [`traceparent`]), for [`add_link`].
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Links `span` to the span `to` names: related, but neither is the other's parent (a result
/// write and the batch call that carried it).
pub fn add_link(span: &tracing::Span, to: SpanContext) {
    span.add_link(to);
}

/// Puts [`traceparent`] of `span` on `headers`, if it has one.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    if let Some(value) = traceparent(span) {
        headers.insert(TRACEPARENT_HEADER, value.as_str());
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_parsed() {
        let context = parse_traceparent(PARENT).expect("valid");
        assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
        assert!(context.is_remote());
        // A later version may append fields.
        assert!(parse_traceparent(&format!("01{}-extra", &PARENT[2..])).is_some());
        let unsampled = parse_traceparent(&PARENT.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é1",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        // And setting it as a parent is a no-op, not a failure.
        set_parent(&tracing::info_span!("root"), "garbage");
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_propagated() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("fan_out");
            set_parent(&span, PARENT);
            assert_eq!(traceparent(&span), None);
            let mut headers = HeaderMap::new();
            inject(&span, &mut headers);
            assert!(headers.get(TRACEPARENT).is_none());
        });
    }

    #[test]
    fn a_span_continues_the_trace_of_its_header_and_passes_its_own_on() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let injected = tracing::subscriber::with_default(subscriber, || {
            let mut incoming = HeaderMap::new();
            incoming.insert(TRACEPARENT, PARENT);
            let span = tracing::info_span!("fan_out");
            set_parent_from_headers(&span, Some(&incoming));
            let mut outgoing = HeaderMap::new();
            inject(&span, &mut outgoing);
            let value = outgoing.get(TRACEPARENT).map(|v| v.as_str().to_owned());
            assert_eq!(value, traceparent(&span));
            value
        });
        let injected = injected.expect("the span has a context");
        let ours = parse_traceparent(&injected).expect("well formed");
        let parent = parse_traceparent(PARENT).expect("valid");
        assert_eq!(ours.trace_id(), parent.trace_id());
        assert_ne!(ours.span_id(), parent.span_id());
        assert!(ours.is_sampled());

        let spans = exporter.get_finished_spans().expect("exported");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "fan_out");
        assert_eq!(spans[0].parent_span_id, parent.span_id());
        assert_eq!(spans[0].span_context.span_id(), ours.span_id());
    }
}
