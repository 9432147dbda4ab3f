//! The dispatcher's connection to the control plane when it knows several replicas
//! (`control_url = "http://a:7070,http://b:7070"`): one replica is used at a time, and a call
//! that cannot reach it moves every later call to the next one.
//!
//! Why failover and not balancing: results and definitions must keep flowing when a replica
//! dies (kill -9, a node lost), and that needs nothing more than "use one that answers". A
//! balancer (tonic's `balance_list`, p2c over lazily connected endpoints) keeps sending part
//! of the calls to a replica that refuses connections, because a lazy connection that failed
//! still reports itself ready; here a connection failure is the signal to move. The replicas
//! share one database, so which one takes a call changes nothing but load, and dispatchers
//! spread over them by starting at a random one.
//!
//! The calls themselves are not repeated here: the reporter retries a batch until it is
//! stored and the definitions watch reconnects, so a failed call costs one retry, which goes
//! to the next replica.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{body::Body, transport::Channel};
use tower_service::Service;

/// The control-plane replicas, each a lazily connected channel, and which one is in use.
#[derive(Clone)]
pub struct ControlChannel {
    replicas: Arc<[Replica]>,
    /// Index into `replicas` of the one calls go to.
    active: Arc<AtomicUsize>,
}

struct Replica {
    url: String,
    channel: Channel,
}

impl ControlChannel {
    /// `replicas` (address, channel) in the order of the setting; calls start at `first`
    /// (taken modulo their number).
    pub fn new(replicas: Vec<(String, Channel)>, first: usize) -> Self {
        assert!(!replicas.is_empty(), "a control channel needs at least one replica");
        let first = first % replicas.len();
        let replicas: Arc<[Replica]> =
            replicas.into_iter().map(|(url, channel)| Replica { url, channel }).collect();
        Self { replicas, active: Arc::new(AtomicUsize::new(first)) }
    }

    /// The address calls go to now.
    pub fn active_url(&self) -> &str {
        &self.replicas[self.active.load(Ordering::Relaxed) % self.replicas.len()].url
    }

    /// After a call to replica `failed` could not reach it: the next replica, unless another
    /// call has moved on already (many calls fail together when a replica dies; they must
    /// move once, not once each).
    fn move_on_from(&self, failed: usize) {
        let n = self.replicas.len();
        if n < 2 {
            return;
        }
        let next = (failed + 1) % n;
        if self.active.compare_exchange(failed, next, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            tracing::warn!(
                unreachable = %self.replicas[failed].url,
                now_using = %self.replicas[next].url,
                "control plane unreachable; moving to the next replica"
            );
        }
    }
}

/// One control plane at one address: the usual case.
impl From<Channel> for ControlChannel {
    fn from(channel: Channel) -> Self {
        Self::new(vec![(String::new(), channel)], 0)
    }
}

impl Service<http::Request<Body>> for ControlChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    /// Always ready: the replica is chosen, and waited for, when the call is made, because
    /// the choice may change between the two.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let index = self.active.load(Ordering::Acquire) % self.replicas.len();
        let mut channel = self.replicas[index].channel.clone();
        let this = self.clone();
        Box::pin(async move {
            let result = async {
                futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            }
            .await;
            // An error here is the transport's (no connection, connection lost); an answer
            // with a gRPC error status is a response and keeps the replica.
            if result.is_err() {
                this.move_on_from(index);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hookd_proto::v1::{self, dispatch_service_client::DispatchServiceClient};
    use tonic::transport::Endpoint;

    use super::*;

    fn lazy(addr: SocketAddr) -> (String, Channel) {
        let url = format!("http://{addr}");
        let channel = Endpoint::from_shared(url.clone()).expect("valid url").connect_lazy();
        (url, channel)
    }

    /// A loopback address where nothing listens.
    fn dead() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    }

    /// A gRPC server with no service: it answers every call with UNIMPLEMENTED, an answer
    /// and not a transport error.
    async fn answering() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::default())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    #[tokio::test]
    async fn a_replica_that_refuses_connections_is_left_for_the_next_one() {
        let (live, gone) = (answering().await, dead());
        let channel = ControlChannel::new(vec![lazy(gone), lazy(live)], 0);
        let mut client = DispatchServiceClient::new(channel.clone());
        let call = || v1::ReportAttemptsRequest::default();
        let first = client.report_attempts(call()).await.expect_err("nothing listens");
        assert_eq!(first.code(), tonic::Code::Unavailable, "{first:?}");
        assert_eq!(channel.active_url(), format!("http://{live}"));
        // The live one answers (UNIMPLEMENTED: only health is served), and is kept.
        let second = client.report_attempts(call()).await.expect_err("not served");
        assert_eq!(second.code(), tonic::Code::Unimplemented, "{second:?}");
        let third = client.report_attempts(call()).await.expect_err("not served");
        assert_eq!(third.code(), tonic::Code::Unimplemented, "{third:?}");
        assert_eq!(channel.active_url(), format!("http://{live}"));
    }

    #[test]
    fn concurrent_failures_move_once() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let _guard = runtime.as_ref().map(tokio::runtime::Runtime::enter);
        let channel = ControlChannel::new(vec![lazy(dead()), lazy(dead()), lazy(dead())], 4);
        assert_eq!(channel.active.load(Ordering::Relaxed), 1, "starts at `first` mod n");
        channel.move_on_from(1);
        channel.move_on_from(1);
        assert_eq!(channel.active.load(Ordering::Relaxed), 2);
        channel.move_on_from(2);
        assert_eq!(channel.active.load(Ordering::Relaxed), 0, "wraps around");
    }
}
