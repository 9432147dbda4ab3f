//! Prometheus metrics for the hookd services: a registry per service, the metric types the
//! services fill, and an HTTP endpoint that serves the registry as `GET /metrics` in the text
//! exposition format.
//!
//! Each service owns its metrics in a struct built on its own [`Registry`] (no process-wide
//! default registry), so several services in one test process never mix their numbers.
//! Names follow the Prometheus conventions, checked by `promtool check metrics` in the tests:
//! `hookd_<service>_<what>_total` for counters, base units (`_seconds`) for durations.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The content type of the text exposition format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, in seconds, from 1 ms to the 30 s attempt timeout limit.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Buckets for counts of things per unit of work (webhooks per event, reports per batch).
pub const SIZE_BUCKETS: &[f64] =
    &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0];

/// Registers a metric built by the caller. The names are fixed strings chosen in the code, so
/// a clash or an invalid name is a bug that shows in every test; it is logged, not fatal,
/// because metrics must never stop deliveries.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    if let Err(error) = registry.register(Box::new(metric.clone())) {
        tracing::error!(%error, "cannot register a metric");
    }
    metric
}

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|e| bad(name, &e)),
    )
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bad(name, &e)),
    )
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::with_opts(Opts::new(name, help)).unwrap_or_else(|e| bad(name, &e)))
}

pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bad(name, &e)),
    )
}

pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(registry, Histogram::with_opts(opts).unwrap_or_else(|e| bad(name, &e)))
}

pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(registry, HistogramVec::new(opts, labels).unwrap_or_else(|e| bad(name, &e)))
}

/// Metric options are literals in the code: an invalid one is a programming error caught by
/// the first test that builds the service's metrics.
fn bad<T>(name: &str, error: &prometheus::Error) -> T {
    panic!("invalid metric {name}: {error}")
}

/// Seconds as a histogram observation.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The registry in the text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(error) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(%error, "cannot encode the metrics");
    }
    out
}

/// The answer to `GET /metrics`.
pub fn response(registry: &Registry) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(encode(registry))));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(TEXT_FORMAT));
    response
}

fn not_found() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, registry: Registry) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let answer = if req.method() == Method::GET && req.uri().path() == "/metrics" {
                    response(&registry)
                } else {
                    not_found()
                };
                async move { Ok::<_, Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_help_type_and_samples() {
        let registry = Registry::new();
        let c = counter_vec(&registry, "hookd_test_things_total", "Things done.", &["outcome"]);
        c.with_label_values(&["ok"]).inc_by(3);
        let h = histogram(&registry, "hookd_test_wait_seconds", "Waits.", LATENCY_BUCKETS);
        h.observe(0.02);
        let text = encode(&registry);
        assert!(text.contains("# HELP hookd_test_things_total Things done."), "{text}");
        assert!(text.contains("# TYPE hookd_test_things_total counter"), "{text}");
        assert!(text.contains("hookd_test_things_total{outcome=\"ok\"} 3"), "{text}");
        assert!(text.contains("hookd_test_wait_seconds_bucket{le=\"0.025\"} 1"), "{text}");
        assert!(text.contains("hookd_test_wait_seconds_count 1"), "{text}");
    }

    #[test]
    fn a_second_registration_of_a_name_is_logged_not_fatal() {
        let registry = Registry::new();
        let _a = counter(&registry, "hookd_test_once_total", "Once.");
        let _b = counter(&registry, "hookd_test_once_total", "Once.");
        assert_eq!(registry.gather().len(), 1);
    }
}
