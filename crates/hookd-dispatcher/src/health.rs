//! The dispatcher's HTTP endpoints for orchestrators: `/healthz` (the process runs),
//! `/readyz` (connected to NATS, the definitions watch connected to a control plane, and not
//! shutting down; each probe reads the current state, nothing is polled in between) and
//! `/metrics` (Prometheus).

use std::{
    convert::Infallible,
    sync::Arc,
    sync::atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::definitions::Definitions;

/// What `/readyz` answers from.
pub struct Readiness {
    pub nats: async_nats::Client,
    pub definitions: Definitions,
    /// Set at the start of a shutdown: no new work should be routed here.
    pub stopping: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed)
            && self.nats.connection_state() == async_nats::connection::State::Connected
            && self.definitions.is_watching()
    }
}

/// Serves the health endpoints until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    metrics: hookd_metrics::Registry,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let answer = if req.uri().path() == "/metrics" {
                    hookd_metrics::response(&metrics)
                } else {
                    answer(req.uri().path(), readiness.is_ready())
                };
                async move { Ok::<_, Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(path: &str, ready: bool) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if ready => (StatusCode::OK, "ready\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}
