//! Readiness and shutdown of the control plane. gRPC health (`grpc.health.v1.Health`, the
//! overall `""` service and every hookd service) says SERVING only while the database answers
//! and NATS is connected, checked every `readiness_interval_secs`; a shutdown turns it
//! NOT_SERVING for good and ends the long-lived streams, so the server's graceful shutdown
//! is not held up by them and dispatchers reconnect (to another replica, or to this one once
//! it is back).

use std::{future::Future, time::Duration};

use hookd_storage::Store;
use tokio::sync::watch;
use tonic_health::{ServingStatus, server::HealthReporter};

/// The services whose health is reported, besides the overall `""`.
pub const SERVICES: [&str; 7] = [
    "hookd.v1.WebhookService",
    "hookd.v1.EventService",
    "hookd.v1.DeliveryService",
    "hookd.v1.DispatchService",
    "hookd.v1.CredentialService",
    "hookd.v1.EventTypeService",
    "hookd.v1.AccessService",
];

/// Turns true once the control plane shuts down. Cheap to clone.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Completes when the shutdown begins (or its sender is gone): ends a response stream
    /// with `take_until`.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}

/// Sets every service's status, the overall one included.
pub async fn set_all(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICES {
        health.set_service_status(name, status).await;
    }
}

/// What readiness depends on, checked once.
async fn dependencies_up(
    store: &Store,
    nats: &async_nats::Client,
    timeout: Duration,
) -> Result<(), String> {
    if nats.connection_state() != async_nats::connection::State::Connected {
        return Err("nats is not connected".to_owned());
    }
    match tokio::time::timeout(timeout, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("the database does not answer: {error}")),
        Err(_) => Err(format!("the database does not answer within {} ms", timeout.as_millis())),
    }
}

/// Checks the dependencies now, sets the statuses accordingly, and then keeps them in line
/// every `interval` on a task, until the shutdown (which sets them NOT_SERVING itself and
/// aborts the task).
pub async fn spawn_readiness(
    health: HealthReporter,
    store: Store,
    nats: async_nats::Client,
    interval: Duration,
    stopping: Stopping,
) -> tokio::task::JoinHandle<()> {
    let mut serving = None;
    update(&health, &store, &nats, interval, &mut serving).await;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if stopping.is_stopping() {
                return;
            }
            update(&health, &store, &nats, interval, &mut serving).await;
        }
    })
}

/// One check; the statuses change (and a line is logged) only when the answer does.
async fn update(
    health: &HealthReporter,
    store: &Store,
    nats: &async_nats::Client,
    timeout: Duration,
    serving: &mut Option<bool>,
) {
    let up = dependencies_up(store, nats, timeout).await;
    if *serving == Some(up.is_ok()) {
        return;
    }
    match &up {
        Ok(()) => tracing::info!("database and nats reachable: serving"),
        Err(reason) => tracing::warn!(%reason, "not serving until the dependency is back"),
    }
    let status = if up.is_ok() { ServingStatus::Serving } else { ServingStatus::NotServing };
    set_all(health, status).await;
    *serving = Some(up.is_ok());
}
