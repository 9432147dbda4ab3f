//! A whole local hookd: nats-server, one control plane on SQLite and any number of
//! dispatchers, each a real process on its own loopback port.

use hookd_proto::v1::{
    self, access_service_client::AccessServiceClient,
    credential_service_client::CredentialServiceClient,
    delivery_service_client::DeliveryServiceClient, event_service_client::EventServiceClient,
    event_type_service_client::EventTypeServiceClient,
    webhook_service_client::WebhookServiceClient,
};
use tonic::transport::Channel;

use crate::{
    Authed, HookdProcess, NatsServer, OWNER_TOKEN, Role, authed, control_config, dispatcher_config,
};

pub struct Cluster {
    pub nats: NatsServer,
    pub control: HookdProcess,
    pub dispatchers: Vec<HookdProcess>,
    dispatcher_extra: String,
    control_toml: String,
    control_env: Vec<(String, String)>,
    dispatcher_env: Vec<(String, String)>,
    // Dropped last: it holds the database file.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts nats-server, the control plane and `dispatchers` dispatchers, each dispatcher
    /// with `dispatcher_extra` appended to its settings.
    pub fn start(dispatchers: usize, dispatcher_extra: &str) -> anyhow::Result<Self> {
        Self::start_with_env(dispatchers, dispatcher_extra, &[], &[])
    }

    /// Like [`Cluster::start`], with extra environment variables for the control plane and
    /// for each dispatcher (`HOOKD_*` settings override the config file).
    pub fn start_with_env(
        dispatchers: usize,
        dispatcher_extra: &str,
        control_env: &[(&str, &str)],
        dispatcher_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let owned = |env: &[(&str, &str)]| -> Vec<(String, String)> {
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let dir = tempfile::Builder::new().prefix("hookd-cluster-").tempdir()?;
        let nats = NatsServer::start()?;
        let control_toml = control_config(&nats.url(), &dir.path().join("hookd.db"));
        let control = HookdProcess::start_with_env(Role::Control, &control_toml, control_env)?;
        let mut cluster = Self {
            nats,
            control,
            dispatchers: Vec::new(),
            dispatcher_extra: dispatcher_extra.to_owned(),
            control_toml,
            control_env: owned(control_env),
            dispatcher_env: owned(dispatcher_env),
            _dir: dir,
        };
        for _ in 0..dispatchers {
            cluster.add_dispatcher()?;
        }
        Ok(cluster)
    }

    /// The control plane's SQLite database file.
    pub fn database_path(&self) -> std::path::PathBuf {
        self._dir.path().join("hookd.db")
    }

    pub fn add_dispatcher(&mut self) -> anyhow::Result<&mut HookdProcess> {
        let config = format!(
            "{}{}\n",
            dispatcher_config(&self.nats.url(), &self.control.grpc_url()),
            self.dispatcher_extra
        );
        let env: Vec<(&str, &str)> =
            self.dispatcher_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.dispatchers.push(HookdProcess::start_with_env(Role::Dispatcher, &config, &env)?);
        let last = self.dispatchers.len() - 1;
        Ok(&mut self.dispatchers[last])
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

    /// Creates a webhook from a full request (tests that set options beyond the defaults).
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
