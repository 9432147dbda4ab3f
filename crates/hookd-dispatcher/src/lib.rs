//! The hookd dispatcher: fans events out into deliveries, makes the HTTP attempts, and
//! reports every attempt to the control plane. Stateless; any number run side by side,
//! sharing the work through durable JetStream consumers.
//!
//! Architecture invariants: the dispatcher never touches the database (results go to the
//! control plane over gRPC), and a NATS message is acknowledged only after its result is
//! stored.

mod attempt;
mod config;
mod definitions;
mod delivery;
mod endpoints;
mod fanout;
mod health;
mod http;
mod metrics;
mod reporter;
mod request;
mod test_send;
#[cfg(test)]
mod test_server;
mod tokens;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use hookd_proto::v1::dispatch_service_client::DispatchServiceClient;
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

pub use config::{Config, ConfigError};

use crate::{
    attempt::Attempter,
    definitions::Definitions,
    delivery::Deliverer,
    endpoints::Endpoints,
    http::HttpClient,
    metrics::Metrics,
    reporter::{Reporter, Tallies},
    test_send::TestSends,
    tokens::{ControlTokens, Tokens},
};

#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid control_url {url:?}: {reason}")]
    ControlUrl { url: String, reason: String },
    #[error("cannot connect to nats at {url}: {reason}")]
    NatsConnect { url: String, reason: String },
    #[error(transparent)]
    Nats(#[from] hookd_nats::NatsError),
    #[error("no definitions snapshot from the control plane at {url} within {secs} s")]
    NoSnapshot { url: String, secs: u64 },
}

/// Adds the dispatcher token to every call to the control plane: `DispatchService` accepts
/// nothing else.
#[derive(Clone)]
pub(crate) struct ControlToken(Option<MetadataValue<Ascii>>);

impl Interceptor for ControlToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The dispatcher's client of the control plane.
pub(crate) type ControlClient = DispatchServiceClient<InterceptedService<Channel, ControlToken>>;

/// A control-plane client sending `token`. [`Config::validate`] has checked that it fits a
/// header; one that does not is left out, and the control plane answers UNAUTHENTICATED.
pub(crate) fn control_client(channel: Channel, token: &str) -> ControlClient {
    let value = format!("Bearer {token}").parse::<MetadataValue<Ascii>>().ok().map(|mut v| {
        // Keeps the token out of any debug output of a request.
        v.set_sensitive(true);
        v
    });
    DispatchServiceClient::with_interceptor(channel, ControlToken(value))
}

/// A started dispatcher: definitions loaded, consumers in place.
pub struct Dispatcher {
    config: Config,
    jetstream: jetstream::Context,
    definitions: Definitions,
    watch: tokio::task::JoinHandle<()>,
    control: ControlClient,
    fanout: PullConsumer,
    deliveries: PullConsumer,
}

impl Dispatcher {
    /// Connects to the control plane and NATS, waits for the first definitions snapshot
    /// (without it every event would look unsubscribed), and sets up the consumers.
    pub async fn start(config: Config) -> Result<Self, DispatcherError> {
        config.validate()?;
        let startup = Duration::from_secs(config.startup_timeout_secs.max(1));
        let channel = Endpoint::from_shared(config.control_url.clone())
            .map_err(|e| DispatcherError::ControlUrl {
                url: config.control_url.clone(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let control = control_client(channel, &config.control_token);
        let definitions = Definitions::default();
        let watch = tokio::spawn(
            definitions
                .clone()
                .follow(control.clone(), Duration::from_millis(config.watch_apply_delay_ms)),
        );

        let nats_err =
            |reason: String| DispatcherError::NatsConnect { url: config.nats_url.clone(), reason };
        let client = tokio::time::timeout(
            startup,
            async_nats::ConnectOptions::new()
                .name("hookd-dispatcher")
                .retry_on_initial_connect()
                .connect(&config.nats_url),
        )
        .await
        .map_err(|_| nats_err(format!("no answer within {} s", startup.as_secs())))?
        .map_err(|e| nats_err(e.to_string()))?;
        let jetstream = jetstream::new(client);
        // The control plane creates the streams before it serves, and the snapshot wait
        // below needs it anyway; until then keep asking.
        let (events, deliveries) = tokio::time::timeout(startup, async {
            loop {
                match hookd_nats::open_streams(&jetstream).await {
                    Ok(streams) => break streams,
                    Err(error) => {
                        tracing::info!(%error, "waiting for the control plane to create the streams");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        })
        .await
        .map_err(|_| nats_err("the hookd streams do not exist; is the control plane running?".to_owned()))?;
        let settings = hookd_nats::ConsumerSettings {
            ack_wait: config.ack_wait(),
            max_ack_pending: config.max_ack_pending,
        };
        let fanout =
            hookd_nats::ensure_consumer(&events, hookd_nats::FANOUT_CONSUMER, &settings).await?;
        let deliveries =
            hookd_nats::ensure_consumer(&deliveries, hookd_nats::DELIVERY_CONSUMER, &settings)
                .await?;

        if tokio::time::timeout(startup, definitions.wait_ready()).await.is_err() {
            watch.abort();
            return Err(DispatcherError::NoSnapshot {
                url: config.control_url.clone(),
                secs: startup.as_secs(),
            });
        }
        tracing::info!(webhooks = definitions.len(), "dispatcher started");
        Ok(Self { config, jetstream, definitions, watch, control, fanout, deliveries })
    }

    /// Runs both stages and the test-send responder until `shutdown`, then stops taking work, lets in-flight deliveries
    /// finish (up to the grace period) and reports their results.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DispatcherError> {
        let ready = Arc::new(AtomicBool::new(true));
        let metrics = Arc::new(Metrics::new());
        let health = tokio::spawn(health::serve(listener, ready.clone(), metrics.registry.clone()));
        let poller = {
            let metrics = metrics.clone();
            let js = self.jetstream.clone();
            let consumers =
                [("fanout", self.fanout.clone()), ("delivery", self.deliveries.clone())];
            let streams = [
                hookd_nats::EVENTS_STREAM,
                hookd_nats::DELIVERIES_STREAM,
                hookd_nats::BUFFER_STREAM,
            ];
            let every = Duration::from_secs(self.config.metrics_refresh_secs);
            tokio::spawn(async move { metrics.poll(js, consumers, streams, every).await })
        };
        let tallies = Tallies::default();
        let (reporter, reporter_task) = Reporter::spawn(
            self.control.clone(),
            self.config.report_batch_max,
            self.config.report_buffer,
            tallies.clone(),
            metrics.clone(),
        );
        // One HTTP client and one token cache for deliveries and test sends alike.
        let egress = Arc::new(self.config.egress_policy()?);
        if egress.allowed().is_empty() {
            tracing::info!("egress policy: only public addresses");
        } else {
            let allowed: Vec<String> = egress.allowed().iter().map(ToString::to_string).collect();
            tracing::info!(allow_cidrs = ?allowed, "egress policy: public addresses and the allow-list");
        }
        let attempter = Arc::new(Attempter {
            http: HttpClient::new(egress),
            tokens: Tokens::new(ControlTokens::new(self.control.clone())),
        });
        let deliverer = Arc::new(Deliverer {
            js: self.jetstream.clone(),
            definitions: self.definitions.clone(),
            attempter: attempter.clone(),
            endpoints: Endpoints::new(self.config.endpoint_concurrency, self.config.endpoint_queue),
            reporter,
            tallies: tallies.clone(),
            metrics: metrics.clone(),
            default_schedule: self.config.retry_schedule(),
            default_timeout: self.config.attempt_timeout(),
            nak_max_delay: self.config.nak_max_delay(),
            ack_wait: self.config.ack_wait(),
        });

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let fanout_stage = {
            let js = self.jetstream.clone();
            let definitions = self.definitions.clone();
            let tallies = tallies.clone();
            let metrics = metrics.clone();
            let max_event_bytes = self.config.max_event_bytes;
            run_stage(
                "fan-out",
                self.fanout,
                self.config.fanout_concurrency,
                stop_rx.clone(),
                move |msg| {
                    let js = js.clone();
                    let definitions = definitions.clone();
                    let tallies = tallies.clone();
                    let metrics = metrics.clone();
                    async move {
                        let outcome =
                            fanout::fan_out(&js, &definitions, &tallies, max_event_bytes, msg)
                                .await;
                        metrics.event(outcome.0, outcome.1);
                    }
                },
            )
        };
        let delivery_stage = {
            let deliverer = deliverer.clone();
            run_stage(
                "delivery",
                self.deliveries,
                self.config.max_in_flight,
                stop_rx.clone(),
                move |msg| deliverer.clone().deliver(msg),
            )
        };
        let test_sends = Arc::new(TestSends {
            definitions: self.definitions.clone(),
            attempter,
            default_timeout: self.config.attempt_timeout(),
        })
        .serve(self.jetstream.client(), stop_rx.clone());
        let stages = tokio::spawn(async move {
            tokio::join!(fanout_stage, delivery_stage, test_sends);
        });

        shutdown.await;
        tracing::info!("dispatcher shutting down");
        ready.store(false, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        if tokio::time::timeout(grace, stages).await.is_err() {
            tracing::warn!("in-flight deliveries did not finish within the grace period");
        }
        // Dropping the last reporter handle lets the report loop drain and end.
        drop(deliverer);
        if tokio::time::timeout(grace, reporter_task).await.is_err() {
            tracing::warn!("attempt results still unreported at shutdown; they will be retried");
        }
        self.watch.abort();
        poller.abort();
        health.abort();
        tracing::info!("dispatcher stopped");
        Ok(())
    }
}

/// Starts a dispatcher and runs it until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DispatcherError> {
    Dispatcher::start(config).await?.serve(listener, shutdown).await
}

/// Pulls messages from `consumer` and handles each on its own task, at most `concurrency`
/// at a time, so one slow message never holds up the others. On stop, waits for the tasks
/// already started.
async fn run_stage<F, Fut>(
    name: &'static str,
    consumer: PullConsumer,
    concurrency: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(jetstream::Message) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let batch = concurrency.clamp(1, 256);
    'outer: loop {
        let mut messages = match consumer.stream().max_messages_per_batch(batch).messages().await {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(stage = name, %error, "cannot pull messages; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break 'outer,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue 'outer,
                }
            }
        };
        loop {
            // Take a slot first: while every slot is busy nothing more is pulled.
            let permit = tokio::select! {
                _ = stop.wait_for(|s| *s) => break 'outer,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break 'outer,
                },
            };
            let next = tokio::select! {
                _ = stop.wait_for(|s| *s) => break 'outer,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(msg)) => {
                    // Boxed: a delivery future is several KB, and spawning moves it more than once.
                    let work = Box::pin(handle(msg));
                    tasks.spawn(async move {
                        work.await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(stage = name, %error, "message stream error");
                }
                None => continue 'outer,
            }
            while tasks.try_join_next().is_some() {}
        }
    }
    tracing::debug!(stage = name, in_flight = tasks.len(), "stage stopping");
    while tasks.join_next().await.is_some() {}
}
