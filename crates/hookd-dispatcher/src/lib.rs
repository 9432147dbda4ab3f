//! The hookd dispatcher: fans events out into deliveries, makes the HTTP attempts, and
//! reports every attempt to the control plane. Stateless; any number run side by side,
//! sharing the work through durable JetStream consumers.
//!
//! Architecture invariants: the dispatcher never touches the database (results go to the
//! control plane over gRPC), and a NATS message is acknowledged only after its result is
//! stored.

mod attempt;
mod config;
mod controls;
mod definitions;
mod delivery;
mod endpoints;
mod failover;
mod fanout;
mod health;
mod http;
mod metrics;
mod ordering;
mod pull;
mod rate_limit;
mod reporter;
mod request;
mod resume;
mod test_send;
#[cfg(test)]
mod test_server;
mod tokens;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{
    Subject,
    jetstream::{self, AckKind, consumer::PullConsumer},
};
use bytes::Bytes;
use hookd_proto::{auth::Bearer, v1::dispatch_service_client::DispatchServiceClient};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tonic::{service::interceptor::InterceptedService, transport::Endpoint};

pub use config::{Config, ConfigError};

use crate::{
    attempt::Attempter,
    definitions::Definitions,
    delivery::Deliverer,
    endpoints::Endpoints,
    failover::ControlChannel,
    health::Readiness,
    http::HttpClient,
    metrics::Metrics,
    pull::Puller,
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

/// The dispatcher's client of the control plane (one replica of those it knows at a time):
/// every call carries the dispatcher token, which is all `DispatchService` accepts.
pub(crate) type ControlClient = DispatchServiceClient<InterceptedService<ControlChannel, Bearer>>;

/// A control-plane client sending `token`. [`Config::validate`] has checked that it fits a
/// header; one that does not is left out, and the control plane answers UNAUTHENTICATED.
pub(crate) fn control_client(channel: impl Into<ControlChannel>, token: &str) -> ControlClient {
    DispatchServiceClient::with_interceptor(
        channel.into(),
        Bearer::new(Some(token)).unwrap_or_default(),
    )
}

/// A lazily connected channel to each control plane of `control_url`, in its order. Each
/// dispatcher starts at a replica chosen by its process id, so a fleet spreads over them.
fn control_channel(control_url: &str) -> Result<ControlChannel, DispatcherError> {
    let replicas = hookd_core::servers::split(control_url)
        .map(|url| {
            let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| {
                DispatcherError::ControlUrl { url: url.to_owned(), reason: e.to_string() }
            })?;
            let channel = endpoint
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true)
                .connect_lazy();
            Ok((url.to_owned(), channel))
        })
        .collect::<Result<Vec<_>, DispatcherError>>()?;
    Ok(ControlChannel::new(replicas, std::process::id() as usize))
}

/// Beyond the grace period, how long the stages may take to NAK what they abandon (a publish
/// each, no round trip); only reached if NATS is gone.
const STAGE_STOP_SLACK: Duration = Duration::from_secs(5);
/// How often scheduled retries stuck by a full stream are looked for, and for how long after
/// the last refusal for lack of room (see `hookd_nats::schedules`).
const REARM_EVERY: Duration = Duration::from_secs(5);
const REARM_WINDOW: Duration = Duration::from_secs(600);

/// Publishes again the scheduled retries nats-server failed to fire while a stream was full,
/// as long as this process has seen a write refused for lack of room recently.
async fn rearm_stuck_retries(js: jetstream::Context) {
    let mut every = tokio::time::interval(REARM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rearmer = hookd_nats::schedules::Rearmer::default();
    loop {
        every.tick().await;
        if hookd_nats::schedules::last_refused_for_room().is_none_or(|ago| ago >= REARM_WINDOW) {
            continue;
        }
        match rearmer.sweep(&js, chrono::Utc::now()).await {
            Ok(sweep) if sweep.rearmed > 0 || sweep.left > 0 => tracing::info!(
                scanned = sweep.scanned,
                rearmed = sweep.rearmed,
                left = sweep.left,
                "scheduled retries the server had not fired published again"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot look for stuck scheduled retries"),
        }
    }
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
    /// The delivery controls' key-value buckets: ordering lines and rate limits.
    buckets: (async_nats::jetstream::kv::Store, async_nats::jetstream::kv::Store),
}

impl Dispatcher {
    /// Connects to the control plane and NATS, waits for the first definitions snapshot
    /// (without it every event would look unsubscribed), and sets up the consumers.
    pub async fn start(config: Config) -> Result<Self, DispatcherError> {
        config.validate()?;
        let startup = Duration::from_secs(config.startup_timeout_secs.max(1));
        let replicas = control_channel(&config.control_url)?;
        let control = control_client(replicas.clone(), &config.control_token);
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
                .connect(config.nats_servers()?),
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

        let buckets = tokio::time::timeout(startup, async {
            loop {
                match hookd_nats::open_buckets(&jetstream).await {
                    Ok(buckets) => break buckets,
                    Err(error) => {
                        tracing::info!(%error, "waiting for the control plane to create the key-value buckets");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        })
        .await
        .map_err(|_| nats_err("the hookd key-value buckets do not exist; is the control plane up to date?".to_owned()))?;

        if tokio::time::timeout(startup, definitions.wait_ready()).await.is_err() {
            watch.abort();
            return Err(DispatcherError::NoSnapshot {
                url: config.control_url.clone(),
                secs: startup.as_secs(),
            });
        }
        tracing::info!(
            webhooks = definitions.len(),
            control_plane = replicas.active_url(),
            "dispatcher started"
        );
        Ok(Self { config, jetstream, definitions, watch, control, fanout, deliveries, buckets })
    }

    /// Runs both stages and the test-send responder until `shutdown`, then shuts down without
    /// losing work:
    /// 1. `/readyz` turns false and the stages stop pulling;
    /// 2. messages received but not started, and delivery jobs still waiting for their
    ///    endpoint, are handed back at once (another dispatcher takes them now, not after
    ///    `ack_wait`);
    /// 3. attempts in progress finish (each is bounded by its timeout), are reported and
    ///    settled, for up to `shutdown_grace_secs`; whatever still runs then is handed back;
    /// 4. the reporter sends the results it holds, for up to `shutdown_flush_secs`.
    ///
    /// So the process exits within `shutdown_grace_secs + shutdown_flush_secs` plus at most
    /// 7 s (NAKs and the final flush, when NATS does not answer).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DispatcherError> {
        let readiness = Arc::new(Readiness {
            nats: self.jetstream.client(),
            definitions: self.definitions.clone(),
            stopping: AtomicBool::new(false),
        });
        let metrics = Arc::new(Metrics::new());
        let health =
            tokio::spawn(health::serve(listener, readiness.clone(), metrics.registry.clone()));
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
        let rearmer = tokio::spawn(rearm_stuck_retries(self.jetstream.clone()));
        let tallies = Tallies::default();
        let (reporter, reporter_task) = Reporter::spawn(
            self.control.clone(),
            reporter::Batching {
                max: self.config.report_batch_max,
                linger: self.config.report_linger(),
            },
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
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (ordering_kv, rates_kv) = self.buckets.clone();
        let ordering = ordering::Ordering::new(
            ordering_kv,
            self.fanout.clone(),
            self.config.ordering_stale(),
            self.config.max_in_flight / 2,
        );
        let controls = controls::Controls {
            ordering: ordering.clone(),
            rates: rate_limit::RateLimits::new(rates_kv),
            ack_wait: self.config.ack_wait(),
        };
        let deliverer = Arc::new(Deliverer {
            controls,
            js: self.jetstream.clone(),
            definitions: self.definitions.clone(),
            attempter: attempter.clone(),
            endpoints: Endpoints::new(
                endpoints::Limits {
                    initial: self.config.endpoint_concurrency,
                    max: self.config.endpoint_concurrency_max(),
                    queue: self.config.endpoint_queue,
                    capacity: self.config.max_in_flight,
                    inline: self.config.inline_bound(),
                },
                metrics.endpoints.clone(),
            ),
            reporter,
            control: self.control.clone(),
            tallies: tallies.clone(),
            metrics: metrics.clone(),
            default_schedule: self.config.retry_schedule(),
            default_timeout: self.config.attempt_timeout(),
            nak_max_delay: self.config.nak_max_delay(),
            ack_wait: self.config.ack_wait(),
            inline_wait: self.config.inline_wait(),
            stopping: stop_rx.clone(),
        });

        let grace = self.config.shutdown_grace();
        let fanout_stage = {
            let js = self.jetstream.clone();
            let definitions = self.definitions.clone();
            let tallies = tallies.clone();
            let metrics = metrics.clone();
            let ordering = ordering.clone();
            let max_event_bytes = self.config.max_event_bytes;
            let deliverer = deliverer.clone();
            let stage = Stage {
                name: "fan-out",
                js: self.jetstream.clone(),
                consumer: self.fanout,
                concurrency: self.config.fanout_concurrency,
                grace,
            };
            stage.run(
                stop_rx.clone(),
                move |msg, slot| {
                    let fanout = fanout::FanOut {
                        js: js.clone(),
                        definitions: definitions.clone(),
                        tallies: tallies.clone(),
                        ordering: ordering.clone(),
                        max_event_bytes,
                        deliverer: deliverer.clone(),
                    };
                    let metrics = metrics.clone();
                    async move {
                        let outcome = fanout.fan_out(msg, slot).await;
                        metrics.event(outcome.0, outcome.1);
                    }
                },
                // A repeated fan-out stores no second job, so an event goes back as it is.
                |msg| async move {
                    if let Err(error) = msg.ack_with(AckKind::Nak(None)).await {
                        tracing::warn!(%error, "cannot hand back an event");
                    }
                },
            )
        };
        let delivery_stage = {
            let deliver = deliverer.clone();
            let hand_back = deliverer.clone();
            let stage = Stage {
                name: "delivery",
                js: self.jetstream.clone(),
                consumer: self.deliveries,
                concurrency: self.config.max_in_flight,
                grace,
            };
            stage.run(
                stop_rx.clone(),
                // A delivery keeps its slot until its message is settled: `max_in_flight` is
                // large, and an ordered key's next job waits for that anyway.
                move |msg, slot| {
                    let deliver = deliver.clone();
                    async move {
                        let _slot = slot;
                        deliver.deliver(msg).await;
                    }
                },
                move |msg| hand_back.clone().hand_back(msg),
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
        let started = std::time::Instant::now();
        tracing::info!(
            grace_secs = grace.as_secs(),
            flush_secs = self.config.shutdown_flush_secs,
            "dispatcher shutting down"
        );
        readiness.stopping.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        // The stages keep to the grace period themselves; this bound only covers a hand-back
        // that hangs (NATS gone).
        if tokio::time::timeout(grace + STAGE_STOP_SLACK, stages).await.is_err() {
            tracing::warn!("the stages did not stop within the grace period");
        }
        // Dropping the last reporter handle lets the report loop drain and end.
        drop(deliverer);
        if tokio::time::timeout(self.config.shutdown_flush(), reporter_task).await.is_err() {
            tracing::warn!(
                "attempt results still unreported at shutdown; their jobs come back after ack_wait"
            );
        }
        // Settlements and hand-backs sent without confirmation must leave before the exit.
        if let Err(error) =
            tokio::time::timeout(Duration::from_secs(2), self.jetstream.client().flush()).await
        {
            tracing::warn!(%error, "cannot flush the nats connection");
        }
        self.watch.abort();
        rearmer.abort();
        poller.abort();
        health.abort();
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "dispatcher stopped");
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

/// Messages a stage holds at once, per work slot: those whose work is done and that only wait
/// for their result to be stored and their settlement (see [`Slot::release`]).
const HELD_PER_SLOT: usize = 16;

/// One stage: a shared durable consumer and the work done per message.
struct Stage {
    name: &'static str,
    js: jetstream::Context,
    consumer: PullConsumer,
    concurrency: usize,
    grace: Duration,
}

impl Stage {
    /// Pulls messages and handles each on its own task, at most `concurrency` working at a
    /// time, so one slow message never holds up the others. A task may give its work slot
    /// back before it ends ([`Slot::release`]) once all that is left is waiting for its result
    /// to be stored and settling its message; at most `HELD_PER_SLOT` × `concurrency` messages
    /// are held in all. On stop: stops pulling and hands back (`hand_back`) what was received
    /// but not started, waits up to the grace period for the tasks already started, and then
    /// NAKs the messages of those still running.
    async fn run<F, Fut, H, HFut>(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
        handle: F,
        hand_back: H,
    ) where
        F: Fn(jetstream::Message, Slot) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
        H: Fn(jetstream::Message) -> HFut,
        HFut: Future<Output = ()>,
    {
        let name = self.name;
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let held = Arc::new(Semaphore::new(self.concurrency.saturating_mul(HELD_PER_SLOT)));
        let mut tasks = JoinSet::new();
        // The reply subject (the ack address) of each running task's message, to hand it back
        // if the task has to be abandoned.
        let mut running: HashMap<tokio::task::Id, Subject> =
            HashMap::with_capacity(self.concurrency.min(4096));
        let batch = self.concurrency.clamp(1, 256);
        let mut puller = None;
        'pull: loop {
            let Some(pull) = puller.as_mut() else {
                match Puller::open(&self.js, self.consumer.clone(), batch).await {
                    Ok(p) => puller = Some(p),
                    Err(error) => {
                        tracing::warn!(stage = name, %error, "cannot pull messages; retrying");
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => break 'pull,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
                continue;
            };
            // Take a slot first: while every slot is busy, or too many messages wait to be
            // settled, nothing more is pulled.
            let (hold, permit) = tokio::select! {
                _ = stop.wait_for(|s| *s) => break 'pull,
                both = async {
                    let hold = held.clone().acquire_owned().await?;
                    Ok::<_, tokio::sync::AcquireError>((hold, permits.clone().acquire_owned().await?))
                } => match both {
                    Ok(both) => both,
                    Err(_) => break 'pull,
                },
            };
            // Only as many as can start now: the slot just taken and the free ones.
            let room = permits.available_permits().min(held.available_permits()) + 1;
            let next = tokio::select! {
                _ = stop.wait_for(|s| *s) => break 'pull,
                next = pull.next(room) => next,
            };
            match next {
                Some(Ok(msg)) => {
                    let reply = msg.reply.clone();
                    // Boxed: a delivery future is several KB, and spawning moves it more than once.
                    let work = Box::pin(handle(msg, Slot(Some(permit))));
                    let task = tasks.spawn(async move {
                        work.await;
                        drop(hold);
                    });
                    if let Some(reply) = reply {
                        running.insert(task.id(), reply);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(stage = name, %error, "cannot pull messages; retrying");
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break 'pull,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                None => {
                    tracing::warn!(stage = name, "the nats connection is closed");
                    let _ = stop.wait_for(|s| *s).await;
                    break 'pull;
                }
            }
            while let Some(done) = tasks.try_join_next_with_id() {
                running.remove(&finished_id(&done));
            }
        }

        // The grace period counts from the stop, hand-backs included.
        let deadline = tokio::time::sleep(self.grace);
        let held = match puller {
            Some(puller) => puller.stop().await,
            None => Vec::new(),
        };
        while let Some(done) = tasks.try_join_next_with_id() {
            running.remove(&finished_id(&done));
        }
        tracing::info!(
            stage = name,
            in_progress = tasks.len(),
            handed_back = held.len(),
            "stage stopping"
        );
        futures::future::join_all(held.into_iter().map(&hand_back)).await;

        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = tasks.join_next_with_id() => match done {
                    Some(done) => { running.remove(&finished_id(&done)); }
                    None => return,
                },
                () = &mut deadline => break,
            }
        }
        // Abandoned: a NAK makes the message due again at once for another dispatcher, rather
        // than after ack_wait. An attempt cut off here may be repeated; that is what the grace
        // period keeps rare.
        tasks.abort_all();
        while let Some(done) = tasks.join_next_with_id().await {
            if done.is_ok() {
                running.remove(&finished_id(&done));
            }
        }
        tracing::warn!(
            stage = name,
            abandoned = running.len(),
            "messages still in progress after the grace period handed back"
        );
        let client = self.js.client();
        for reply in running.into_values() {
            if let Err(error) = client.publish(reply, Bytes::from_static(b"-NAK")).await {
                tracing::warn!(stage = name, %error, "cannot hand back a message");
            }
        }
    }
}

/// A message's work slot in its stage, given back when its task ends or, earlier, by
/// [`Slot::release`].
pub(crate) struct Slot(Option<tokio::sync::OwnedSemaphorePermit>);

impl Slot {
    /// Gives the work slot back while the task goes on waiting (for its result to be stored,
    /// for the settlement): another message can start meanwhile. The message still counts
    /// against the stage's bound on messages held.
    pub(crate) fn release(&mut self) {
        self.0 = None;
    }
}

/// The id of a finished task, whether it ended or was cancelled.
fn finished_id(done: &Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match done {
        Ok((id, ())) => *id,
        Err(error) => error.id(),
    }
}
