//! A whole local hookd: nats-server (one, or a JetStream cluster of several), one control
//! plane on SQLite (or on a fresh database of a throwaway Postgres server, with as many
//! control-plane replicas as a test adds) and any number of dispatchers, each a real process
//! on its own loopback port.

use hookd_proto::v1::{
    self, access_service_client::AccessServiceClient,
    credential_service_client::CredentialServiceClient,
    delivery_service_client::DeliveryServiceClient, event_service_client::EventServiceClient,
    event_type_service_client::EventTypeServiceClient,
    webhook_service_client::WebhookServiceClient,
};
use tonic::transport::Channel;

use crate::{
    Authed, HookdProcess, Nats, NatsOptions, OWNER_TOKEN, Role, authed, control_config_for_url,
    dispatcher_config,
};

/// Where the control plane keeps its data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file in the cluster's temporary folder.
    #[default]
    Sqlite,
    /// A fresh database on the test process' throwaway PostgreSQL server (started at first
    /// use, stopped when the process ends; see `hookd-testpg`).
    Postgres,
}

/// How a [`Cluster`] starts; [`Cluster::builder`].
#[derive(Debug, Default)]
pub struct ClusterBuilder {
    dispatchers: usize,
    dispatcher_extra: String,
    control_env: Vec<(String, String)>,
    dispatcher_env: Vec<(String, String)>,
    database: Database,
    nats_servers: usize,
    nats_options: NatsOptions,
    database_url: Option<String>,
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl ClusterBuilder {
    /// Dispatchers started with the cluster, all watching the first control plane.
    pub fn dispatchers(mut self, n: usize) -> Self {
        self.dispatchers = n;
        self
    }

    /// Appended to each dispatcher's settings.
    pub fn dispatcher_extra(mut self, toml: &str) -> Self {
        toml.clone_into(&mut self.dispatcher_extra);
        self
    }

    /// Extra environment of every control plane (`HOOKD_*` settings override the file).
    pub fn control_env(mut self, env: &[(&str, &str)]) -> Self {
        self.control_env = owned(env);
        self
    }

    /// Extra environment of every dispatcher.
    pub fn dispatcher_env(mut self, env: &[(&str, &str)]) -> Self {
        self.dispatcher_env = owned(env);
        self
    }

    pub fn database(mut self, database: Database) -> Self {
        self.database = database;
        self
    }

    /// A JetStream cluster of `n` nats-servers instead of one (n ≥ 2); the control plane
    /// creates its streams with `min(n, 3)` replicas, and every process is given every
    /// server's URL.
    pub fn nats_cluster(mut self, n: usize) -> Self {
        self.nats_servers = n;
        self
    }

    /// JetStream settings of every nats-server (fsync, storage limit).
    pub fn nats_options(mut self, options: NatsOptions) -> Self {
        self.nats_options = options;
        self
    }

    /// A Postgres database of the test's own server (one it may restart), instead of the
    /// shared server's.
    pub fn postgres_url(mut self, url: String) -> Self {
        self.database = Database::Postgres;
        self.database_url = Some(url);
        self
    }

    /// Shorthand for `.database(Database::Postgres)`.
    pub fn postgres(self) -> Self {
        self.database(Database::Postgres)
    }

    /// Starts nats-server(s), the control plane and the dispatchers.
    pub fn start(self) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("hookd-cluster-").tempdir()?;
        let database_url = match (self.database, self.database_url) {
            (_, Some(url)) => url,
            (Database::Sqlite, None) => {
                format!("sqlite://{}?mode=rwc", dir.path().join("hookd.db").display())
            }
            (Database::Postgres, None) => crate::process::blocking(|| {
                hookd_testpg::PgServer::shared()
                    .create_database()
                    .map_err(|e| anyhow::anyhow!("cannot create a Postgres database: {e}"))
            })?,
        };
        let nats = if self.nats_servers > 1 {
            Nats::cluster(self.nats_servers, self.nats_options.clone())?
        } else {
            Nats::single(self.nats_options.clone())?
        };
        let mut control_toml = control_config_for_url(&nats.url(), &database_url);
        if nats.len() > 1 {
            control_toml.push_str(&format!("stream_replicas = {}\n", nats.len().min(3)));
        }
        let env: Vec<(&str, &str)> =
            self.control_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let control = HookdProcess::start_with_env(Role::Control, &control_toml, &env)?;
        let mut cluster = Cluster {
            nats,
            control,
            dispatchers: Vec::new(),
            dispatcher_extra: self.dispatcher_extra,
            control_toml,
            control_env: self.control_env,
            dispatcher_env: self.dispatcher_env,
            database_url,
            _dir: dir,
        };
        for _ in 0..self.dispatchers {
            cluster.add_dispatcher()?;
        }
        Ok(cluster)
    }
}

pub struct Cluster {
    pub nats: Nats,
    pub control: HookdProcess,
    pub dispatchers: Vec<HookdProcess>,
    dispatcher_extra: String,
    control_toml: String,
    control_env: Vec<(String, String)>,
    dispatcher_env: Vec<(String, String)>,
    database_url: String,
    // Dropped last: it holds the database file.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A cluster with no dispatcher on SQLite, to be configured and started.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Starts nats-server, the control plane and `dispatchers` dispatchers, each dispatcher
    /// with `dispatcher_extra` appended to its settings.
    pub fn start(dispatchers: usize, dispatcher_extra: &str) -> anyhow::Result<Self> {
        Self::builder().dispatchers(dispatchers).dispatcher_extra(dispatcher_extra).start()
    }

    /// Like [`Cluster::start`], with extra environment variables for the control plane and
    /// for each dispatcher (`HOOKD_*` settings override the config file).
    pub fn start_with_env(
        dispatchers: usize,
        dispatcher_extra: &str,
        control_env: &[(&str, &str)],
        dispatcher_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::builder()
            .dispatchers(dispatchers)
            .dispatcher_extra(dispatcher_extra)
            .control_env(control_env)
            .dispatcher_env(dispatcher_env)
            .start()
    }

    /// The control plane's SQLite database file (on SQLite).
    pub fn database_path(&self) -> std::path::PathBuf {
        self._dir.path().join("hookd.db")
    }

    /// The `database_url` every control plane of this cluster uses.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The settings file of the control plane (`hookd --config` for `hookd migrate`, say).
    pub fn control_toml(&self) -> &str {
        &self.control_toml
    }

    /// A dispatcher watching the first control plane.
    pub fn add_dispatcher(&mut self) -> anyhow::Result<&mut HookdProcess> {
        let control_url = self.control.grpc_url();
        self.add_dispatcher_for(&control_url)
    }

    /// A dispatcher watching the control plane at `control_url` (another replica, say).
    pub fn add_dispatcher_for(&mut self, control_url: &str) -> anyhow::Result<&mut HookdProcess> {
        let config = format!(
            "{}{}\n",
            dispatcher_config(&self.nats.url(), control_url),
            self.dispatcher_extra
        );
        let env: Vec<(&str, &str)> =
            self.dispatcher_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.dispatchers.push(HookdProcess::start_with_env(Role::Dispatcher, &config, &env)?);
        let last = self.dispatchers.len() - 1;
        Ok(&mut self.dispatchers[last])
    }

    /// Another control plane over the same database and NATS, on its own port: a replica.
    /// Only Postgres serves several control planes. The caller owns (and so stops) it.
    pub fn add_control(&self) -> anyhow::Result<HookdProcess> {
        anyhow::ensure!(
            self.database_url.starts_with("postgres"),
            "control-plane replicas need the Postgres database (Cluster::builder().postgres())"
        );
        let env: Vec<(&str, &str)> =
            self.control_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        HookdProcess::start_with_env(Role::Control, &self.control_toml, &env)
    }

    /// Kills the control plane (SIGKILL; a no-op if already killed) and starts a new one with
    /// the same settings, database file and gRPC port, so dispatchers reconnect to the same URL.
    /// Returns the old process, whose log stays readable until it is dropped.
    pub fn restart_control(&mut self) -> anyhow::Result<HookdProcess> {
        self.control.kill()?;
        let listen = format!("listen = \"{}\"", self.control.addr());
        let config = self.control_toml.replacen("listen = \"127.0.0.1:0\"", &listen, 1);
        anyhow::ensure!(config != self.control_toml, "control config has no listen line to pin");
        let env: Vec<(&str, &str)> =
            self.control_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let new = HookdProcess::start_with_env(Role::Control, &config, &env)?;
        Ok(std::mem::replace(&mut self.control, new))
    }

    /// A connection to the control plane without a token (health, reflection).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(self.control.grpc_url())?.connect().await?)
    }

    /// A connection that sends `token` (none: no authorization header) on every call; wrap
    /// it in any service client.
    pub async fn authed(&self, token: Option<&str>) -> anyhow::Result<Authed> {
        Ok(authed(self.channel().await?, token))
    }

    /// The clients below act as the owner of the default tenant.
    async fn owner(&self) -> anyhow::Result<Authed> {
        self.authed(Some(OWNER_TOKEN)).await
    }

    pub async fn webhooks(&self) -> anyhow::Result<WebhookServiceClient<Authed>> {
        Ok(WebhookServiceClient::new(self.owner().await?))
    }

    pub async fn events(&self) -> anyhow::Result<EventServiceClient<Authed>> {
        Ok(EventServiceClient::new(self.owner().await?))
    }

    pub async fn deliveries(&self) -> anyhow::Result<DeliveryServiceClient<Authed>> {
        Ok(DeliveryServiceClient::new(self.owner().await?))
    }

    pub async fn credentials(&self) -> anyhow::Result<CredentialServiceClient<Authed>> {
        Ok(CredentialServiceClient::new(self.owner().await?))
    }

    pub async fn event_types(&self) -> anyhow::Result<EventTypeServiceClient<Authed>> {
        Ok(EventTypeServiceClient::new(self.owner().await?))
    }

    pub async fn access(&self) -> anyhow::Result<AccessServiceClient<Authed>> {
        Ok(AccessServiceClient::new(self.owner().await?))
    }

    /// Publishes an event of `event_type` with no data over gRPC, as the default tenant.
    pub async fn publish(&self, event_type: &str, id: &str) -> anyhow::Result<()> {
        self.events()
            .await?
            .publish_event(v1::PublishEventRequest {
                event: Some(v1::Event {
                    id: id.into(),
                    r#type: event_type.into(),
                    ..Default::default()
                }),
            })
            .await?;
        Ok(())
    }

    /// The webhook's first delivery, with its attempts, once `done` holds for it.
    pub async fn first_delivery_when(
        &self,
        webhook_id: &str,
        what: &str,
        timeout: std::time::Duration,
        done: impl Fn(&v1::Delivery) -> bool,
    ) -> anyhow::Result<v1::Delivery> {
        crate::wait_until(what, timeout, || async {
            let mut client = self.deliveries().await?;
            let list = client
                .list_deliveries(v1::ListDeliveriesRequest {
                    webhook_id: webhook_id.into(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .deliveries;
            let Some(first) = list.first() else { return Ok(None) };
            let full = client
                .get_delivery(v1::GetDeliveryRequest { id: first.id.clone() })
                .await?
                .into_inner()
                .delivery
                .ok_or_else(|| anyhow::anyhow!("no delivery in the answer"))?;
            Ok(done(&full).then_some(full))
        })
        .await
    }

    /// The webhook's first delivery once its status is final and an attempt is recorded.
    pub async fn settled_delivery(
        &self,
        webhook_id: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<v1::Delivery> {
        self.first_delivery_when(
            webhook_id,
            &format!("a settled delivery for {webhook_id}"),
            timeout,
            |d| d.status != v1::DeliveryStatus::Pending as i32 && !d.attempts.is_empty(),
        )
        .await
    }

    /// Creates a webhook from a full request (tests that set options beyond the defaults).
    pub async fn create(&self, request: v1::CreateWebhookRequest) -> anyhow::Result<v1::Webhook> {
        let response = self.webhooks().await?.create_webhook(request).await?;
        response.into_inner().webhook.ok_or_else(|| anyhow::anyhow!("no webhook in the answer"))
    }

    /// Creates an active webhook for `event_types` with every other setting at its default.
    pub async fn create_webhook(
        &self,
        name: &str,
        url: String,
        event_types: &[&str],
    ) -> anyhow::Result<v1::Webhook> {
        let request = v1::CreateWebhookRequest {
            name: name.into(),
            url,
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            active: true,
            ..Default::default()
        };
        let response = self.webhooks().await?.create_webhook(request).await?;
        response.into_inner().webhook.ok_or_else(|| anyhow::anyhow!("no webhook in the answer"))
    }
}
