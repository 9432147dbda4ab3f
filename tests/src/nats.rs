//! A real `nats-server` with JetStream on kernel-chosen loopback ports, killed on drop: alone
//! ([`NatsServer`]), or three of them routed into a JetStream cluster ([`Nats`], in
//! `nats/cluster.rs`), the shape hookd runs on in production.

mod cluster;

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tempfile::TempDir;

use crate::process::{ChildGuard, blocking, file_tail, tool_binary};

pub use cluster::Nats;

/// How long `start`/`restart` wait for the server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `nats-server` binary: `$HOOKD_NATS_SERVER`, else `<workspace>/.tools/bin/nats-server`
/// (installed by `make tools`), else `nats-server` from `PATH`.
pub fn nats_server_binary() -> PathBuf {
    tool_binary("HOOKD_NATS_SERVER", "nats-server")
}

/// JetStream settings of a server, beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsOptions {
    /// `sync_interval: always`: every write is fsynced before it is acknowledged. The default
    /// (false) is nats-server's: an fsync every 2 minutes, the OS page cache in between.
    pub sync_always: bool,
    /// `max_file_store`: the bytes JetStream may store on this server (its "disk"); a stream
    /// that would need more is refused writes. `None`: the server's default (the disk).
    pub max_file_store: Option<u64>,
}

/// A server's place in a cluster: its name, its route port and the other servers' routes.
#[derive(Debug, Clone)]
struct Membership {
    name: String,
    cluster_port: u16,
    routes: Vec<u16>,
}

/// The ports a server listens on, once it has started.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    monitoring: u16,
}

/// A running `nats-server` with JetStream, whose settings file, store and log live in its own
/// temporary directory.
///
/// Dropping it kills the process and deletes the directory (JetStream store included).
pub struct NatsServer {
    // Field order matters: the process must die before its directory is removed.
    child: Option<ChildGuard>,
    ports: Ports,
    options: NatsOptions,
    membership: Option<Membership>,
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server on `127.0.0.1` with random ports and waits (up to 10 s) until it
    /// accepts TCP connections.
    pub fn start() -> anyhow::Result<NatsServer> {
        NatsServer::start_with(NatsOptions::default())
    }

    /// Like [`NatsServer::start`], with JetStream `options`.
    pub fn start_with(options: NatsOptions) -> anyhow::Result<NatsServer> {
        NatsServer::start_member(options, None)
    }

    fn start_member(
        options: NatsOptions,
        membership: Option<Membership>,
    ) -> anyhow::Result<NatsServer> {
        let dir = tempfile::Builder::new().prefix("hookd-nats-").tempdir()?;
        // Port -1 lets nats-server pick; it reports the ports in the ports file.
        let (child, ports) = blocking(|| spawn(dir.path(), None, &options, membership.as_ref()))?;
        Ok(NatsServer { child: Some(child), ports, options, membership, dir })
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.ports.client)
    }

    pub fn port(&self) -> u16 {
        self.ports.client
    }

    /// `http://127.0.0.1:PORT`: the monitoring endpoint (`/varz`, `/jsz`, ...).
    pub fn monitoring_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.monitoring)
    }

    /// The server's name in its cluster (`n1`, ...), or `None` alone.
    pub fn name(&self) -> Option<&str> {
        self.membership.as_ref().map(|m| m.name.as_str())
    }

    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// The process id, or 0 while stopped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, ChildGuard::pid)
    }

    /// The JetStream store (for its size on disk).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// The server's log file (kept across restarts; each start appends).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path(), lines)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Kills the server (SIGKILL) and waits for it to exit. The JetStream store is kept, so
    /// [`NatsServer::restart`] brings the same streams back. Idempotent.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
        }
        Ok(())
    }

    /// Stops the server if it runs, then starts it again on the same ports with the same
    /// store and settings, so clients configured with [`NatsServer::url`] can reconnect. Use
    /// `stop` + `restart` to simulate an outage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let (child, ports) = blocking(|| {
            spawn(self.dir.path(), Some(self.ports), &self.options, self.membership.as_ref())
        })?;
        self.child = Some(child);
        self.ports = ports;
        Ok(())
    }

    /// A connected client.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(self.url())
            .await
            .with_context(|| format!("connecting to nats-server at {}", self.url()))
    }

    /// `GET <monitoring>/<path>` as JSON (`varz`, `jsz`, ...).
    pub async fn monitor(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/{path}", self.monitoring_url());
        let text = crate::scrape::get_text(&url).await?;
        serde_json::from_str(&text).with_context(|| format!("GET {url}: not JSON"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- nats-server {} log tail ----\n{}\n---- end ----",
                self.url(),
                self.log_tail(30)
            );
        }
        // ChildGuard's drop kills and reaps; then `dir` is removed.
        self.child.take();
    }
}

/// The settings file: ports (`-1`: the kernel's choice), JetStream, and the cluster block.
fn config(
    dir: &Path,
    ports: Option<Ports>,
    options: &NatsOptions,
    m: Option<&Membership>,
) -> String {
    let (client, monitoring) = ports.map_or(("-1".to_owned(), "-1".to_owned()), |p| {
        (p.client.to_string(), p.monitoring.to_string())
    });
    let store = serde_json::Value::from(dir.join("js").display().to_string());
    let mut conf = format!("listen: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitoring}\n");
    let _ = write!(conf, "jetstream {{\n  store_dir: {store}\n");
    if options.sync_always {
        conf.push_str("  sync_interval: always\n");
    }
    if let Some(bytes) = options.max_file_store {
        let _ = writeln!(conf, "  max_file_store: {bytes}");
    }
    conf.push_str("}\n");
    if let Some(m) = m {
        let routes: Vec<String> =
            m.routes.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
        let _ = write!(
            conf,
            "server_name: {}\ncluster {{\n  name: hookd-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
            m.name,
            m.cluster_port,
            routes.join(", ")
        );
    }
    conf
}

/// Spawns the server in `dir` and waits until it is ready; returns it with its ports.
fn spawn(
    dir: &Path,
    ports: Option<Ports>,
    options: &NatsOptions,
    membership: Option<&Membership>,
) -> anyhow::Result<(ChildGuard, Ports)> {
    let binary = nats_server_binary();
    let conf_path = dir.join("nats.conf");
    std::fs::write(&conf_path, config(dir, ports, options, membership))
        .with_context(|| format!("writing {}", conf_path.display()))?;
    let log = dir.join("nats-server.log");
    let child = Command::new(&binary)
        .arg("-c")
        .arg(&conf_path)
        .arg("--ports_file_dir")
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("starting {} (run `make tools` or set HOOKD_NATS_SERVER)", binary.display())
        })?;
    let mut child = ChildGuard::new(child);
    let pid = child.pid();
    let deadline = Instant::now() + READY_TIMEOUT;

    // nats-server writes `<exe name>_<pid>.ports` once it listens; the name depends on how the
    // binary is called, so match on the pid suffix only. It deletes the file on clean shutdown.
    let suffix = format!("_{pid}.ports");
    let mut last_problem = String::from("no ports file yet");
    let ports = loop {
        if let Some(status) = child.try_wait() {
            anyhow::bail!(
                "nats-server exited before becoming ready ({status}); log tail:\n{}",
                file_tail(&log, 30)
            );
        }
        match read_ports_file(dir, &suffix) {
            Ok(Some(ports)) => break ports,
            Ok(None) => {}
            // Possibly a half-written file; retry until the deadline.
            Err(e) => last_problem = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "nats-server did not report its port within {READY_TIMEOUT:?} ({last_problem}); \
                 log tail:\n{}",
                file_tail(&log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    let addr = SocketAddr::from(([127, 0, 0, 1], ports.client));
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            anyhow::bail!(
                "nats-server did not accept connections on {addr} within {READY_TIMEOUT:?}; \
                 log tail:\n{}",
                file_tail(&log, 30)
            );
        }
        if TcpStream::connect_timeout(&addr, remaining.min(Duration::from_secs(1))).is_ok() {
            return Ok((child, ports));
        }
        if let Some(status) = child.try_wait() {
            anyhow::bail!(
                "nats-server exited before becoming ready ({status}); log tail:\n{}",
                file_tail(&log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the client and monitoring ports from the ports file ending in `suffix`, if it
/// exists yet.
fn read_ports_file(dir: &Path, suffix: &str) -> anyhow::Result<Option<Ports>> {
    let Some(path) =
        std::fs::read_dir(dir)?.filter_map(Result::ok).map(|entry| entry.path()).find(|path| {
            path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(suffix))
        })
    else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}: {text:?}", path.display()))?;
    let port = |key: &str| -> anyhow::Result<u16> {
        let url = json[key]
            .get(0)
            .and_then(serde_json::Value::as_str)
            .with_context(|| format!("no `{key}` url in {}: {text}", path.display()))?;
        url.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no port in {url:?} from {}", path.display()))
    };
    Ok(Some(Ports { client: port("nats")?, monitoring: port("monitoring")? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True while `/proc/<pid>` exists (the process or its zombie).
    fn proc_exists(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[tokio::test]
    async fn starts_with_jetstream_and_dies_on_drop() -> anyhow::Result<()> {
        let server = NatsServer::start()?;
        assert!(server.port() > 0);
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        let pid = server.pid();
        assert!(proc_exists(pid));

        let client = server.client().await?;
        let js = async_nats::jetstream::new(client.clone());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "T".to_owned(),
            subjects: vec!["t.>".to_owned()],
            ..Default::default()
        })
        .await?;
        let ack = js.publish("t.one", "hello".into()).await?.await?;
        assert_eq!(ack.stream, "T");
        assert_eq!(ack.sequence, 1);

        let dir = server.dir.path().to_path_buf();
        assert!(dir.join("js").is_dir());
        drop(client);
        drop(server);
        assert!(!proc_exists(pid), "nats-server {pid} still exists after drop");
        assert!(!dir.exists(), "store dir {} not removed", dir.display());
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_keeps_port_and_streams() -> anyhow::Result<()> {
        let mut server = NatsServer::start()?;
        let port = server.port();
        let old_pid = server.pid();
        {
            let js = async_nats::jetstream::new(server.client().await?);
            js.create_stream(async_nats::jetstream::stream::Config {
                name: "T".to_owned(),
                subjects: vec!["t.>".to_owned()],
                ..Default::default()
            })
            .await?;
            js.publish("t.one", "hello".into()).await?.await?;
        }
        server.stop()?;
        assert!(!server.is_running());
        assert!(!proc_exists(old_pid));
        server.restart()?;
        assert_eq!(server.port(), port);
        assert!(server.is_running());

        let js = async_nats::jetstream::new(server.client().await?);
        let mut stream = js.get_stream("T").await?;
        assert_eq!(stream.info().await?.state.messages, 1);
        let ack = js.publish("t.two", "again".into()).await?.await?;
        assert_eq!(ack.sequence, 2);
        Ok(())
    }
}
