//! The hookd control plane: gRPC services over the database. It owns webhook definitions and
//! delivery history, publishes events for gRPC producers, streams definitions to dispatchers
//! and records the attempt results they report.
//!
//! Architecture invariants: this is the only crate that depends on `hookd-storage`; every
//! hookd service is behind an authenticating interceptor (see [`auth`]) and takes the tenant
//! from the caller's token only.

mod access;
mod auth;
mod catalog;
mod changes;
mod config;
mod credentials;
mod deliveries;
mod dispatch;
mod error;
mod event_types;
mod events;
mod lifecycle;
mod metrics;
pub mod notify;
mod oauth;
mod portal_links;
mod recorder;
mod replay;
mod retention;
mod shared;
mod webhooks;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hookd_proto::v1::{
    access_service_server::AccessServiceServer, credential_service_server::CredentialServiceServer,
    delivery_service_server::DeliveryServiceServer, dispatch_service_server::DispatchServiceServer,
    event_service_server::EventServiceServer, event_type_service_server::EventTypeServiceServer,
    webhook_service_server::WebhookServiceServer,
};
use hookd_storage::Store;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use config::Config;
pub use error::ControlError;
use shared::Shared;

/// At shutdown, after the calls have finished, the longest wait for the recorder to commit
/// what it was given: the exit comes within `shutdown_grace_secs` plus this.
const RECORDER_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// A started control plane: database migrated, streams in place, ready to serve.
pub struct ControlPlane {
    config: Config,
    store: Store,
    jetstream: async_nats::jetstream::Context,
    metrics_listener: TcpListener,
    /// The web console's, when `console_listen` is set.
    console_listener: Option<TcpListener>,
    /// Notified each time the NATS link is (re)established: hints of other replicas may have
    /// been missed meanwhile.
    reconnected: std::sync::Arc<tokio::sync::Notify>,
}

impl ControlPlane {
    /// Connects to the database (running migrations) and to NATS (creating the streams).
    pub async fn start(config: Config) -> Result<Self, ControlError> {
        config.validate()?;
        config.egress_policy()?;
        let cipher = config
            .cipher()
            .map_err(|reason| ControlError::Config { setting: "encryption_key", reason })?;
        let store = Store::connect_with(&config.database_url, &config.pool_options())
            .await
            .map_err(ControlError::Storage)?
            .with_cipher(cipher);
        let resealed = store.reseal_secrets().await.map_err(ControlError::Storage)?;
        if resealed > 0 {
            tracing::info!(rows = resealed, key_id = %config.encryption_key_id, "secrets resealed under the current key");
        }
        give_every_webhook_a_signing_key(&store).await?;
        for (tenant, token) in &config.bootstrap_tokens {
            access::ensure_bootstrap_token(&store, tenant, token).await?;
        }
        let reconnected = std::sync::Arc::new(tokio::sync::Notify::new());
        let on_connect = reconnected.clone();
        let nats = async_nats::ConnectOptions::new()
            .name("hookd-control")
            .event_callback(move |event| {
                let on_connect = on_connect.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        on_connect.notify_one();
                    }
                }
            })
            .retry_on_initial_connect()
            .connection_timeout(config.nats_connect_timeout())
            .connect(config.nats_servers()?);
        // `retry_on_initial_connect` returns at once; the first request waits for the link.
        let nats = nats.await.map_err(|e| ControlError::NatsConnect(e.to_string()))?;
        let jetstream = async_nats::jetstream::new(nats);
        tokio::time::timeout(
            config.nats_connect_timeout(),
            hookd_nats::ensure_stream(&jetstream, &config.stream_settings()),
        )
        .await
        .map_err(|_| ControlError::NatsConnect(format!("no answer from {}", config.nats_url)))?
        .map_err(ControlError::Nats)?;
        hookd_nats::ensure_buffer_stream(&jetstream, &config.stream_settings())
            .await
            .map_err(ControlError::Nats)?;
        hookd_nats::ensure_buckets(&jetstream, config.stream_settings().replicas)
            .await
            .map_err(ControlError::Nats)?;
        let metrics_listener =
            TcpListener::bind(config.metrics_listen).await.map_err(|e| ControlError::Config {
                setting: "metrics_listen",
                reason: format!("cannot listen on {}: {e}", config.metrics_listen),
            })?;
        let console_listener = match config.console_listen()? {
            None => None,
            Some(addr) => {
                Some(TcpListener::bind(addr).await.map_err(|e| ControlError::Config {
                    setting: "console_listen",
                    reason: format!("cannot listen on {addr}: {e}"),
                })?)
            }
        };
        Ok(Self { config, store, jetstream, metrics_listener, console_listener, reconnected })
    }

    /// Where `/metrics` is served (the bound address, when `metrics_listen` has port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.local_addr().ok()
    }

    /// Where the web console is served (the bound address), `None` when it is off.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves gRPC on `listener` until `shutdown` completes, then drains in-flight calls.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ControlError> {
        let local_addr: Option<SocketAddr> = listener.local_addr().ok();
        let changes = changes::Changes::new();
        let metrics = Arc::new(metrics::Metrics::new());
        let metrics_server =
            tokio::spawn(hookd_metrics::serve(self.metrics_listener, metrics.registry.clone()));
        let metrics_poller = {
            let (metrics, store, changes) = (metrics.clone(), self.store.clone(), changes.clone());
            let every = Duration::from_secs(self.config.metrics_refresh_secs);
            tokio::spawn(async move { metrics.poll(store, changes, every).await })
        };
        let purger = retention::spawn(
            self.store.clone(),
            Duration::from_secs(self.config.history_retention_secs),
            Duration::from_secs(self.config.history_purge_interval_secs),
            self.config.history_purge_batch,
            metrics.clone(),
        );
        changes.connect_peers(self.jetstream.client());
        let catalog = catalog::Catalog::load(&self.store).await.map_err(ControlError::Storage)?;
        let egress = std::sync::Arc::new(self.config.egress_policy()?);
        let notifier = notify::Notifier {
            js: self.jetstream.clone(),
            changes: changes.clone(),
            store: self.store.clone(),
        };
        let (recorder, recorder_task) = recorder::Recorder::spawn(
            self.store.clone(),
            self.config.record_batch_max,
            Some((self.config.health_rule(), notifier.clone())),
            metrics.clone(),
        );
        let replays = replay::Replays::new(
            self.jetstream.clone(),
            self.store.clone(),
            self.config.replay_rate,
            self.config.stream_replicas,
            recorder.watch().clone(),
        )
        .await?;
        let resumer = replays.resume_forever();
        let table = auth::TokenTable::load(&self.store).await.map_err(ControlError::Storage)?;
        let reloader =
            table.spawn_reloader(self.store.clone(), self.config.token_reload_interval());
        let follower = changes::peers::Follower {
            nats: self.jetstream.client(),
            changes: changes.clone(),
            store: self.store.clone(),
            catalog: catalog.clone(),
            tokens: table.clone(),
        }
        .spawn(&self.jetstream.client(), self.reconnected.clone())
        .await?;
        let portal = Arc::new(hookd_core::portal::PortalKeys::derive(&self.config.master_key()?));
        let authenticate = auth::Authenticate { table: table.clone(), portal: portal.clone() };
        let dispatcher =
            auth::AuthenticateDispatcher { hash: auth::hash_token(&self.config.dispatcher_token) };

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let (stop_tx, stopping) = lifecycle::Stopping::new();
        let readiness = lifecycle::spawn_readiness(
            health_reporter.clone(),
            self.store.clone(),
            self.jetstream.client(),
            self.config.readiness_interval(),
            stopping.clone(),
        )
        .await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(hookd_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(hookd_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| ControlError::Internal(e.to_string()))?;

        let console_stopping = stopping.clone();
        let shared = Shared {
            config: Arc::new(self.config.clone()),
            store: self.store.clone(),
            jetstream: self.jetstream.clone(),
            changes,
            catalog,
            token_table: table,
            access_tokens: oauth::Tokens::new(self.store.clone(), egress.clone()),
            egress,
            recorder,
            replays,
            notifier,
            metrics,
            stopping,
        };
        let webhook_service = webhooks::WebhookApi::new(&shared);
        let event_service = events::EventApi::new(&shared);
        let credential_service = credentials::CredentialApi::new(&shared);
        let event_type_service = event_types::EventTypeApi::new(&shared);
        let delivery_service = deliveries::DeliveryApi::new(&shared);
        let mut access_service = access::AccessApi::new(&shared);
        let console_url = self
            .console_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|addr| self.config.console_settings().base_url(addr));
        if let Some(url) = &console_url {
            access_service = access_service.with_portal(portal.clone(), url.clone());
        }
        let dispatch_service = dispatch::DispatchApi::new(&shared);
        // The services hold what they need; the recorder's last handles must go with them
        // (so its write loop ends once they are dropped at shutdown).
        drop(shared);

        // The shutdown, in order: NOT_SERVING first (probes and balancers stop sending new
        // calls), then the watch streams end (dispatchers reconnect elsewhere) and the server
        // stops accepting calls while those in progress finish, then the recorder commits
        // what it holds.
        let grace = self.config.shutdown_grace();
        let (begun_tx, begun) = tokio::sync::oneshot::channel();
        let signal = {
            let health = health_reporter.clone();
            async move {
                shutdown.await;
                tracing::info!(grace_secs = grace.as_secs(), "control plane shutting down");
                readiness.abort();
                lifecycle::set_all(&health, tonic_health::ServingStatus::NotServing).await;
                let _ = stop_tx.send(true);
                let _ = begun_tx.send(std::time::Instant::now());
            }
        };

        // The public services, each behind the token interceptor. The console calls these
        // very services in process, so it sees exactly what a gRPC client sees.
        let webhooks =
            WebhookServiceServer::with_interceptor(webhook_service, authenticate.clone());
        let events = tonic::service::interceptor::InterceptedService::new(
            EventServiceServer::new(event_service)
                .max_decoding_message_size(events::request_limit(self.config.max_event_bytes)),
            authenticate.clone(),
        );
        let deliveries =
            DeliveryServiceServer::with_interceptor(delivery_service, authenticate.clone());
        let credentials =
            CredentialServiceServer::with_interceptor(credential_service, authenticate.clone());
        let event_types =
            EventTypeServiceServer::with_interceptor(event_type_service, authenticate.clone());
        let access = AccessServiceServer::with_interceptor(access_service, authenticate);
        let console = match self.console_listener {
            Some(listener) => {
                let routes = tonic::service::Routes::new(webhooks.clone())
                    .add_service(events.clone())
                    .add_service(deliveries.clone())
                    .add_service(credentials.clone())
                    .add_service(event_types.clone())
                    .add_service(access.clone());
                let opened =
                    portal_links::OpenedLinks::new(&self.jetstream, self.config.stream_replicas)
                        .await?;
                let console = hookd_console::Console::new(
                    self.config.console_settings(),
                    &self.config.master_key()?,
                    portal,
                    Arc::new(opened),
                    routes,
                );
                let stopped = console_stopping.stopped();
                Some(tokio::spawn(async move {
                    if let Err(error) = console.serve(listener, stopped).await {
                        tracing::error!(%error, "the console stopped");
                    }
                }))
            }
            None => None,
        };

        tracing::info!(addr = ?local_addr, console = ?console_url, "control plane serving");
        let server = tonic::transport::Server::builder()
            // Finds dispatchers that vanished without closing their connection, so webhook
            // changes stop waiting for them.
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
            // tonic's own refusals (too large, undecodable) answered like hookd's, and every
            // error message bounded.
            .layer(error::ClientErrorsLayer { max_event_bytes: self.config.max_event_bytes })
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            // Health and reflection stay open: probes and tools carry no token.
            .add_service(webhooks)
            .add_service(events)
            .add_service(deliveries)
            .add_service(DispatchServiceServer::with_interceptor(dispatch_service, dispatcher))
            .add_service(credentials)
            .add_service(event_types)
            .add_service(access)
            .serve_with_incoming_shutdown(incoming(listener), signal);
        // Boxed so that dropping it (after the grace period) really drops the services and
        // with them the recorder's handles.
        let mut server = Box::pin(server);
        // A client that never finishes its call cannot hold the exit beyond the grace period.
        let overdue = async {
            match begun.await {
                Ok(at) => tokio::time::sleep_until((at + grace).into()).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            served = &mut server => served.map_err(|e| ControlError::Internal(e.to_string()))?,
            () = overdue => {
                tracing::warn!("calls still in progress after the grace period; stopping anyway");
            }
        }
        drop(server);
        if let Some(console) = console {
            // Its copies of the services go with it (and with them any recorder handle).
            console.abort();
            let _ = console.await;
        }
        reloader.abort();
        resumer.abort();
        follower.abort();
        purger.abort();
        metrics_poller.abort();
        metrics_server.abort();
        // Every service (and with it every recorder handle) is gone with the server, so the
        // write loop ends once it has committed what was queued.
        if tokio::time::timeout(RECORDER_FLUSH, recorder_task).await.is_err() {
            tracing::warn!(
                "attempt results still uncommitted at exit; dispatchers report them again"
            );
        }
        if let Err(error) =
            tokio::time::timeout(std::time::Duration::from_secs(2), self.jetstream.client().flush())
                .await
        {
            tracing::warn!(%error, "cannot flush the nats connection");
        }
        tracing::info!("control plane stopped");
        Ok(())
    }
}

/// Webhooks stored before deliveries were signed get their first key, so every delivery is
/// signed from now on. Idempotent: a webhook that has keys is left alone.
async fn give_every_webhook_a_signing_key(store: &Store) -> Result<(), ControlError> {
    for (tenant, mut webhook) in store.all_webhooks().await.map_err(ControlError::Storage)? {
        if webhook.spec.signing.current().is_none() {
            webhook.spec.signing = hookd_core::signing::SigningKeys::generate();
            store.update_webhook(&tenant, &webhook).await.map_err(ControlError::Storage)?;
            tracing::info!(webhook_id = %webhook.id, "signing key created for an older webhook");
        }
    }
    Ok(())
}

/// Accepted connections with Nagle's algorithm off: the definitions watch and its acks are
/// small frames that must not wait for a delayed ACK.
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    })
}

/// Applies the pending database migrations and returns their names (`hookd migrate`); the
/// control plane also migrates at start, so this is for deployments that migrate first.
pub async fn migrate(config: &Config) -> Result<Vec<String>, ControlError> {
    hookd_storage::migrate(&config.database_url, &config.pool_options())
        .await
        .map_err(ControlError::Storage)
}

/// Starts the control plane and serves until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    ControlPlane::start(config).await?.serve(listener, shutdown).await
}
