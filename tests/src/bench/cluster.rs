//! The hookd under test: like [`crate::Cluster`], but every `hookd` process logs at `warn`
//! (`$HOOKD_BENCH_LOG` overrides), because the test runner's default (`info,hookd=debug`, a
//! line per attempt) would make the benchmark measure log writing.

use hookd_proto::v1::{
    delivery_service_client::DeliveryServiceClient, dispatch_service_client::DispatchServiceClient,
    webhook_service_client::WebhookServiceClient,
};
use tonic::transport::Channel;

use crate::{
    Authed, DISPATCHER_TOKEN, HookdProcess, Nats, NatsOptions, OWNER_TOKEN, Role, authed,
    control_config, control_config_for_url, dispatcher_config,
};

/// Where the control plane under test keeps its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A fresh database on the test process' throwaway PostgreSQL 15 (`hookd-testpg`).
    Postgres,
}

pub struct BenchCluster {
    pub nats: Nats,
    pub control: HookdProcess,
    pub dispatchers: Vec<HookdProcess>,
    /// The PostgreSQL server's postmaster, whose backends do the control plane's writes.
    postgres: Option<u32>,
    dispatcher_toml: String,
    log: String,
    // Dropped last: it holds the database file.
    _dir: tempfile::TempDir,
}

impl BenchCluster {
    /// nats-server, the control plane on SQLite, and `dispatchers` dispatchers with
    /// `dispatcher_extra` appended to their settings.
    pub fn start(dispatchers: usize, dispatcher_extra: &str) -> anyhow::Result<Self> {
        Self::start_on(Backend::Sqlite, dispatchers, dispatcher_extra)
    }

    /// As [`BenchCluster::start`], on `backend`.
    pub fn start_on(
        backend: Backend,
        dispatchers: usize,
        dispatcher_extra: &str,
    ) -> anyhow::Result<Self> {
        let nats = Nats::single(NatsOptions::default())?;
        Self::start_with(nats, backend, dispatchers, dispatcher_extra)
    }

    /// As [`BenchCluster::start_on`], on the given NATS (a cluster, or settings other than
    /// the defaults); streams get `min(servers, 3)` replicas.
    pub fn start_with(
        nats: Nats,
        backend: Backend,
        dispatchers: usize,
        dispatcher_extra: &str,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("hookd-bench-").tempdir()?;
        let log = std::env::var("HOOKD_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned());
        let (mut control_toml, postgres) = match backend {
            Backend::Sqlite => (control_config(&nats.url(), &dir.path().join("hookd.db")), None),
            Backend::Postgres => {
                let server = hookd_testpg::PgServer::shared();
                let url = server.create_database().map_err(|e| anyhow::anyhow!("{e}"))?;
                (control_config_for_url(&nats.url(), &url), server.pid())
            }
        };
        if nats.len() > 1 {
            control_toml.push_str(&format!("stream_replicas = {}\n", nats.len().min(3)));
        }
        let control =
            HookdProcess::start_with_env(Role::Control, &control_toml, &[("RUST_LOG", &log)])?;
        let dispatcher_toml = format!(
            "{}{}\n",
            dispatcher_config(&nats.url(), &control.grpc_url()),
            dispatcher_extra
        );
        let mut cluster = Self {
            nats,
            control,
            dispatchers: Vec::new(),
            postgres,
            dispatcher_toml,
            log,
            _dir: dir,
        };
        for _ in 0..dispatchers {
            cluster.add_dispatcher()?;
        }
        Ok(cluster)
    }

    /// Starts one more dispatcher and waits until it is ready.
    pub fn add_dispatcher(&mut self) -> anyhow::Result<()> {
        let d = HookdProcess::start_with_env(
            Role::Dispatcher,
            &self.dispatcher_toml,
            &[("RUST_LOG", &self.log)],
        )?;
        self.dispatchers.push(d);
        Ok(())
    }

    /// Stops every dispatcher gracefully (SIGTERM, then SIGKILL after 10 s).
    pub fn stop_dispatchers(&mut self) {
        for mut d in self.dispatchers.drain(..) {
            let _ = d.terminate();
        }
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(self.control.grpc_url())?.connect().await?)
    }

    /// As the owner of the default tenant.
    pub async fn webhooks(&self) -> anyhow::Result<WebhookServiceClient<Authed>> {
        Ok(WebhookServiceClient::new(authed(self.channel().await?, Some(OWNER_TOKEN))))
    }

    pub async fn deliveries(&self) -> anyhow::Result<DeliveryServiceClient<Authed>> {
        Ok(DeliveryServiceClient::new(authed(self.channel().await?, Some(OWNER_TOKEN))))
    }

    /// As a dispatcher: the dispatch service takes only the dispatcher token.
    pub async fn dispatch(&self) -> anyhow::Result<DispatchServiceClient<Authed>> {
        Ok(DispatchServiceClient::new(authed(self.channel().await?, Some(DISPATCHER_TOKEN))))
    }

    /// The processes sampled for CPU, memory and sockets, by name; the benchmark itself
    /// (load generator and sink) last.
    pub fn procs(&self) -> Vec<(String, u32)> {
        let mut procs: Vec<(String, u32)> = if self.nats.len() == 1 {
            vec![("nats-server".to_owned(), self.nats.pid())]
        } else {
            let servers = self.nats.servers().iter();
            servers.enumerate().map(|(i, s)| (format!("nats{}", i + 1), s.pid())).collect()
        };
        procs.push(("control".to_owned(), self.control.pid()));
        for (i, d) in self.dispatchers.iter().enumerate() {
            procs.push((format!("dispatcher{}", i + 1), d.pid()));
        }
        if let Some(pid) = self.postgres {
            // Sampled with its backends (see `procs::cpu_seconds`).
            procs.push((crate::bench::procs::POSTGRES.to_owned(), pid));
        }
        procs.push(("bench (load+sink)".to_owned(), std::process::id()));
        procs
    }
}
