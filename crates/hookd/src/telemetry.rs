//! Logs and traces of the two services. Logs go to stderr as before (`RUST_LOG`,
//! `HOOKD_LOG_FORMAT=json`). Traces are exported over OTLP/gRPC only when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the other
//! standard variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_*`) are read by the OpenTelemetry SDK itself.
//!
//! The SDK lives here, at the edge; libraries only use the `tracing` and OpenTelemetry APIs
//! (`hookd_nats::trace`). Without an endpoint no OpenTelemetry layer is installed at all, so
//! spans have no trace context, nothing is propagated and nothing tries to connect.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// The longest a shutdown waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`init`] set up; [`Telemetry::shutdown`] exports the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Whether the environment asks for trace export: an OTLP endpoint is set, and the SDK is not
/// disabled (`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`).
fn export_requested(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT");
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    endpoint && !disabled
}

/// Installs the global subscriber: the log layer and, when export is requested, the
/// OpenTelemetry layer. `service` names the service unless `OTEL_SERVICE_NAME` (or
/// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) does. Must run inside the Tokio runtime: the
/// exporter's gRPC channel lives on it.
pub fn init(service: &'static str) -> anyhow::Result<Telemetry> {
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HOOKD_LOG_FORMAT").is_ok_and(|f| f == "json");
    // Colours only for a person at a terminal: files, pipes and log collectors get plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour);
    let log = if json { log.json().boxed() } else { log.boxed() };
    let log = log.with_filter(log_filter);

    let var = |name: &str| std::env::var(name).ok();
    if !export_requested(var) {
        tracing_subscriber::registry().with(log).init();
        return Ok(Telemetry { provider: None });
    }
    if let Some(protocol) = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .filter(|p| p.trim() != "grpc")
    {
        anyhow::bail!(
            "invalid OTEL_EXPORTER_OTLP_PROTOCOL {protocol:?}: hookd exports traces over grpc only"
        );
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .context("cannot set up the OTLP trace exporter (OTEL_EXPORTER_OTLP_*)")?;
    let resource = if var("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty())
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| v.contains("service.name"))
    {
        Resource::builder().build()
    } else {
        Resource::builder().with_service_name(service).build()
    };
    // The batch processor exports from its own thread, so spans cost the services a queue push.
    let provider =
        SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    // Spans of hookd's own crates at info (the ones named in the docs) and warnings from
    // anything, whatever `RUST_LOG` says: log verbosity and trace detail are separate choices.
    let traced =
        Targets::new().with_target("hookd", LevelFilter::INFO).with_default(LevelFilter::WARN);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("hookd"))
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(traced);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    tracing_subscriber::registry().with(log).with(otel).init();
    tracing::info!(service, "exporting traces over OTLP");
    Ok(Telemetry { provider: Some(provider) })
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporter; a service calls it last, on every
    /// way out (SIGTERM and Ctrl-C included), so the spans of its final moments are not lost.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else { return };
        // Blocks until the export thread is done; that export needs this runtime's threads.
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT));
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("hookd: cannot export the last spans: {error}"),
            Err(error) => eprintln!("hookd: cannot export the last spans: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn export_needs_an_endpoint_and_an_enabled_sdk() {
        assert!(!export_requested(env(&[])));
        assert!(!export_requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(export_requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")])));
        assert!(export_requested(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")])));
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        assert!(!export_requested(env(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!export_requested(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(export_requested(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")])));
    }
}
