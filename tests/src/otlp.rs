//! A real OTLP/gRPC trace receiver on loopback (the `TraceService` a collector serves), which
//! keeps every span it is sent, flattened to what tests assert on: service, name, ids, parent,
//! attributes and links.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use tokio::task::JoinHandle;

/// One span as exported, ids in lowercase hex (as in a `traceparent`).
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    /// The exporting process' `service.name` resource attribute.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
    /// (trace id, span id) of each linked span.
    pub links: Vec<(String, String)>,
}

impl CollectedSpan {
    /// The value of attribute `key`, as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Collected {
    spans: Mutex<Vec<CollectedSpan>>,
}

impl Collected {
    fn spans(&self) -> MutexGuard<'_, Vec<CollectedSpan>> {
        self.spans.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Service(Arc<Collected>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut collected = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            let service = attribute(&resource, "service.name").unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                collected.push(CollectedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                    links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                });
            }
        }
        self.0.spans().extend(collected);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).map(|kv| text(kv.value.as_ref()))
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// An OTLP/gRPC trace receiver on `127.0.0.1:<random port>`; stopped when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    collected: Arc<Collected>,
    server: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Binds a port and serves on the current tokio runtime (must be called inside one).
    pub fn start() -> anyhow::Result<OtlpReceiver> {
        let handle = tokio::runtime::Handle::try_current()
            .context("OtlpReceiver::start must be called inside a tokio runtime")?;
        let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let collected = Arc::new(Collected::default());
        let service = TraceServiceServer::new(Service(collected.clone()));
        let server = handle.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            // Ends only when aborted; a serve error leaves the spans collected so far.
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(OtlpReceiver { addr, collected, server })
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.collected.spans().clone()
    }

    /// The spans of trace `trace_id` received so far.
    pub fn trace(&self, trace_id: &str) -> Vec<CollectedSpan> {
        self.collected.spans().iter().filter(|s| s.trace_id == trace_id).cloned().collect()
    }

    /// Waits until the spans of `trace_id` satisfy `complete`, and returns them.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        complete: impl Fn(&[CollectedSpan]) -> bool,
    ) -> anyhow::Result<Vec<CollectedSpan>> {
        let what = format!("the spans of trace {trace_id}");
        let found = crate::wait_until(&what, timeout, || {
            let spans = self.trace(trace_id);
            let done = complete(&spans);
            async move { Ok(done.then_some(spans)) }
        })
        .await;
        found.with_context(|| {
            let names: Vec<String> = self
                .trace(trace_id)
                .iter()
                .map(|s| format!("{}/{} {}<-{}", s.service, s.name, s.span_id, s.parent_span_id))
                .collect();
            format!("spans received for the trace: {names:?}")
        })
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
