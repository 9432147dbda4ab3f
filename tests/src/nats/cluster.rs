//! The NATS of a local hookd: one `nats-server`, or several routed into one JetStream cluster
//! (servers `n1`, `n2`, ... on loopback), with what the fault tests need: which server leads
//! the JetStream meta group or a stream, killing one (SIGKILL) and starting it again on the
//! same ports and store.

use std::time::Duration;

use anyhow::Context as _;

use super::{Membership, NatsOptions, NatsServer};
use crate::wait_until;

/// How many times a cluster start is tried when a reserved route port was taken meanwhile.
const START_TRIES: usize = 3;

/// One server or a cluster. Every server is killed (and its store deleted) on drop.
pub struct Nats {
    servers: Vec<NatsServer>,
}

impl Nats {
    /// One server, no cluster.
    pub fn single(options: NatsOptions) -> anyhow::Result<Nats> {
        Ok(Nats { servers: vec![NatsServer::start_with(options)?] })
    }

    /// `n` servers routed to each other, each with JetStream, and waits (up to 30 s) until
    /// they have elected a meta leader: streams of up to `n` replicas can then be created.
    /// Blocks, like the other `start` functions of the runner.
    pub fn cluster(n: usize, options: NatsOptions) -> anyhow::Result<Nats> {
        anyhow::ensure!(n >= 2, "a cluster has at least two servers");
        let mut last_error = None;
        for _ in 0..START_TRIES {
            match Self::start_cluster(n, &options) {
                Ok(nats) => {
                    crate::process::block_on(nats.wait_ready(Duration::from_secs(30)))?;
                    return Ok(nats);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no cluster start was tried")))
    }

    /// Route ports must be known before the servers start (each lists the others), so they
    /// are reserved from the kernel and released just before use; if another process takes
    /// one meanwhile, that server fails to start and the caller tries again.
    fn start_cluster(n: usize, options: &NatsOptions) -> anyhow::Result<Nats> {
        let reserved: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
            .collect::<Result<_, _>>()?;
        let ports: Vec<u16> =
            reserved.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        drop(reserved);
        let servers = (0..n)
            .map(|i| {
                let membership = Membership {
                    name: format!("n{}", i + 1),
                    cluster_port: ports[i],
                    routes: ports
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, p)| *p)
                        .collect(),
                };
                NatsServer::start_member(options.clone(), Some(membership))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Nats { servers })
    }

    /// Every server's client URL, comma-separated: hookd's `nats_url` for this NATS.
    pub fn url(&self) -> String {
        self.servers.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    pub fn server(&self, i: usize) -> &NatsServer {
        &self.servers[i]
    }

    pub fn servers(&self) -> &[NatsServer] {
        &self.servers
    }

    /// The first server's process id (the only one, alone).
    pub fn pid(&self) -> u32 {
        self.servers[0].pid()
    }

    /// Stops every server (SIGKILL), keeping their stores. Idempotent.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.servers.iter_mut().try_for_each(NatsServer::stop)
    }

    /// Starts every server again on its ports and store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.servers.iter_mut().try_for_each(NatsServer::restart)
    }

    /// Kills server `i` (SIGKILL, like `kill -9`), keeping its store.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.servers[i].stop()
    }

    /// Starts server `i` again on its ports and store; it rejoins the cluster.
    pub fn restart_server(&mut self, i: usize) -> anyhow::Result<()> {
        self.servers[i].restart()
    }

    /// A client that knows every server (and reconnects to another when its own dies).
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let urls: Vec<String> = self.servers.iter().map(NatsServer::url).collect();
        async_nats::ConnectOptions::new()
            .connect(urls)
            .await
            .with_context(|| format!("connecting to nats-server at {}", self.url()))
    }

    fn index_of(&self, name: &str) -> anyhow::Result<usize> {
        self.servers
            .iter()
            .position(|s| s.name() == Some(name))
            .with_context(|| format!("no server named {name:?}"))
    }

    /// The server leading the JetStream meta group (which places streams and consumers), as
    /// one running server reports it.
    pub async fn meta_leader(&mut self) -> anyhow::Result<usize> {
        let mut last = None;
        for i in 0..self.servers.len() {
            if !self.servers[i].is_running() {
                continue;
            }
            match self.servers[i].monitor("jsz").await {
                Ok(jsz) => {
                    if let Some(leader) = jsz["meta_cluster"]["leader"].as_str() {
                        return self.index_of(leader);
                    }
                    last = Some(anyhow::anyhow!("n{} knows no meta leader: {jsz}", i + 1));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no server is running")))
    }

    /// The server leading `stream`'s replicas (where its writes are ordered).
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<usize> {
        let js = async_nats::jetstream::new(self.client().await?);
        let info = js.get_stream(stream).await?.info().await?.clone();
        let leader = info
            .cluster
            .and_then(|c| c.leader)
            .with_context(|| format!("stream {stream} has no leader"))?;
        self.index_of(&leader)
    }

    /// Waits until every running server names the same meta leader and it sees every
    /// running server as a current peer: the cluster can place and serve streams.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_until("the NATS cluster to elect a meta leader", timeout, || async {
            let mut leaders = Vec::new();
            let mut current = 0usize;
            for server in &self.servers {
                if server.pid() == 0 {
                    continue;
                }
                let jsz = server.monitor("jsz").await?;
                let meta = &jsz["meta_cluster"];
                let Some(leader) = meta["leader"].as_str() else { return Ok(None) };
                if server.name() == Some(leader) {
                    current = meta["replicas"]
                        .as_array()
                        .map_or(0, |r| r.iter().filter(|p| p["current"] == true).count());
                }
                leaders.push(leader.to_owned());
            }
            let running = self.servers.iter().filter(|s| s.pid() != 0).count();
            let agreed = leaders.windows(2).all(|w| w[0] == w[1]);
            Ok((agreed && leaders.len() == running && current + 1 == running).then_some(()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use async_nats::jetstream;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_servers_keep_a_replicated_stream_through_the_loss_of_its_leader()
    -> anyhow::Result<()> {
        let mut nats = Nats::cluster(3, NatsOptions::default())?;
        assert_eq!(nats.url().split(',').count(), 3);
        let js = jetstream::new(nats.client().await?);
        js.create_stream(jetstream::stream::Config {
            name: "T".to_owned(),
            subjects: vec!["t.>".to_owned()],
            num_replicas: 3,
            ..Default::default()
        })
        .await?;
        js.publish("t.one", "before".into()).await?.await?;
        let leader = nats.stream_leader("T").await?;
        let meta = nats.meta_leader().await?;
        println!("stream leader n{}, meta leader n{}", leader + 1, meta + 1);

        nats.kill(leader)?;
        let killed = Instant::now();
        // A new leader is elected among the other two; the client reconnects if it was on
        // the killed server.
        wait_until("a publish after the leader died", Duration::from_secs(30), || async {
            Ok(Some(js.publish("t.two", "after".into()).await?.await?))
        })
        .await?;
        println!("writes resumed {:?} after the kill", killed.elapsed());
        assert_ne!(nats.stream_leader("T").await?, leader);

        nats.restart_server(leader)?;
        nats.wait_ready(Duration::from_secs(30)).await?;
        // Stream info right after the restart may come from a server still catching up:
        // both messages must be there once it has (neither lost nor doubled).
        let counted = wait_until("both messages in the stream", Duration::from_secs(30), || {
            let js = js.clone();
            async move {
                let messages = js.get_stream("T").await?.info().await?.state.messages;
                anyhow::ensure!(messages <= 2, "{messages} messages: a publish was doubled");
                Ok((messages == 2).then_some(messages))
            }
        })
        .await?;
        assert_eq!(counted, 2);
        Ok(())
    }
}
