//! A real HTTP/1.1 endpoint on loopback that records every request and answers as scripted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    /// Path and query, e.g. `/hook?x=1`.
    pub path: String,
    /// In arrival order; names lower-case (as hyper normalises them), values lossily decoded.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub received_at: Instant,
    pub received_wall: DateTime<Utc>,
}

impl ReceivedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!("request body is not JSON: {:?}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Held before answering (on this connection's own task), to simulate a slow endpoint.
    pub delay: Duration,
}

impl Response {
    /// 200 with an empty body.
    pub fn ok() -> Response {
        Response::status(200)
    }

    pub fn status(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Response {
        self.body = body.into();
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Response {
        self.delay = delay;
        self
    }
}

/// Decides the answer to a request; the `usize` is the request's 0-based index among all
/// requests this receiver got (so "fail the first two, then succeed" is `|_, i| if i < 2 ...`).
pub type Responder = Arc<dyn Fn(&ReceivedRequest, usize) -> Response + Send + Sync>;

/// Wraps a closure as a [`Responder`].
pub fn responder<F>(f: F) -> Responder
where
    F: Fn(&ReceivedRequest, usize) -> Response + Send + Sync + 'static,
{
    Arc::new(f)
}

struct Shared {
    requests: Mutex<Vec<ReceivedRequest>>,
    /// The number of recorded requests, so `wait_for` is woken instead of polling.
    count: watch::Sender<usize>,
    responder: Responder,
    /// Requests being answered now, and the most at once so far.
    in_flight: Mutex<(usize, usize)>,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<ReceivedRequest>> {
        // A panicking responder cannot poison this lock (it is not held while responding), but
        // stay usable regardless.
        self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An HTTP server on `127.0.0.1:<random port>`; stopped when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Binds a port and serves on the current tokio runtime (must be called inside one).
    pub fn start(responder: Responder) -> anyhow::Result<Receiver> {
        Receiver::start_on(std::net::Ipv4Addr::LOCALHOST.into(), responder)
    }

    /// Like [`Receiver::start`] on another loopback address (`::1`).
    pub fn start_on(ip: std::net::IpAddr, responder: Responder) -> anyhow::Result<Receiver> {
        anyhow::ensure!(ip.is_loopback(), "receivers listen on loopback only, not {ip}");
        let handle = tokio::runtime::Handle::try_current()
            .context("Receiver::start must be called inside a tokio runtime")?;
        let listener = std::net::TcpListener::bind((ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // Fine without `handle.enter()`: `try_current` succeeding means we are in the runtime.
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (count, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            count,
            responder,
            in_flight: Mutex::default(),
        });
        let server = handle.spawn(serve(listener, shared.clone()));
        Ok(Receiver { addr, shared, server })
    }

    /// A receiver that answers every request with 200.
    pub fn ok() -> anyhow::Result<Receiver> {
        Receiver::start(responder(|_, _| Response::ok()))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.requests().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.requests().len()
    }

    /// The most requests this receiver was answering at once (from arrival to the answer).
    pub fn peak_concurrency(&self) -> usize {
        self.shared.in_flight.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Waits until at least `n` requests arrived and returns all of them.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedRequest>> {
        let mut count = self.shared.count.subscribe();
        // The guard `wait_for` returns holds the channel's read lock; it must be gone before
        // `requests()` takes the mutex, since `serve` takes them in the other order.
        let waited = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n))
            .await
            .map(|seen| seen.map(drop));
        match waited {
            Ok(Ok(_)) => Ok(self.requests()),
            // The sender lives in `self.shared`, so the channel cannot close while we borrow it.
            Ok(Err(_closed)) => anyhow::bail!("receiver {} shut down", self.addr),
            Err(_elapsed) => anyhow::bail!(
                "receiver {}: expected {n} requests within {timeout:?}, got {}",
                self.addr,
                self.count()
            ),
        }
    }

    /// Stops accepting and drops open connections, so the endpoint becomes unreachable.
    /// Recorded requests stay available.
    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Accept loop. Connections live in a `JoinSet` owned by this task, so aborting the task (stop
/// or drop) also aborts every connection, including ones sleeping in a response delay.
async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            // E.g. EMFILE; back off briefly instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, request).await) }
            });
            // Errors are the client's business (reset, malformed request); nothing to record.
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Counts a request as being answered until dropped (also when its connection is aborted).
struct Answering<'a>(&'a Shared);

impl<'a> Answering<'a> {
    fn new(shared: &'a Shared) -> Self {
        let mut counts = shared.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        counts.0 += 1;
        counts.1 = counts.1.max(counts.0);
        Answering(shared)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.in_flight.lock().unwrap_or_else(|p| p.into_inner()).0 -= 1;
    }
}

async fn handle(
    shared: &Shared,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let _answering = Answering::new(shared);
    let received_at = Instant::now();
    let received_wall = Utc::now();
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return plain(400, format!("reading request body: {e}")),
    };
    let request = ReceivedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .collect(),
        body,
        received_at,
        received_wall,
    };
    let index = {
        let mut requests = shared.requests();
        requests.push(request.clone());
        let index = requests.len() - 1;
        // Inside the lock so counts are published in order.
        shared.count.send_replace(requests.len());
        index
    };
    let response = (shared.responder)(&request, index);
    if !response.delay.is_zero() {
        tokio::time::sleep(response.delay).await;
    }
    let mut builder = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::from(response.body))).unwrap_or_else(|e| {
        plain(500, format!("the test's responder built an invalid response: {e}"))
    })
}

fn plain(status: u16, body: String) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;

    fn client() -> Client<HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    async fn send(
        client: &Client<HttpConnector, Full<Bytes>>,
        method: &str,
        url: &str,
        body: &str,
    ) -> anyhow::Result<(u16, Vec<(String, String)>, Bytes)> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .header("X-Hookd-Test", "yes")
            .body(Full::new(Bytes::from(body.to_owned())))?;
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, headers, body))
    }

    #[tokio::test]
    async fn records_requests_and_applies_responses() -> anyhow::Result<()> {
        let receiver = Receiver::start(responder(|request, index| {
            if index == 0 {
                Response::status(503).with_header("retry-after", "1").with_body("busy")
            } else if request.path.starts_with("/teapot") {
                Response::status(418)
            } else {
                Response::ok()
            }
        }))?;
        let client = client();

        let (status, headers, body) =
            send(&client, "POST", &receiver.url("/hook?a=1"), r#"{"n":1}"#).await?;
        assert_eq!(status, 503);
        assert!(headers.iter().any(|(k, v)| k == "retry-after" && v == "1"));
        assert_eq!(&body[..], b"busy");
        assert_eq!(send(&client, "PUT", &receiver.url("/teapot"), "{}").await?.0, 418);
        assert_eq!(send(&client, "POST", &receiver.url("/hook"), r#"{"n":3}"#).await?.0, 200);

        let requests = receiver.wait_for(3, Duration::from_secs(5)).await?;
        assert_eq!(requests.len(), 3);
        assert_eq!(receiver.count(), 3);
        let first = &requests[0];
        assert_eq!(first.method, "POST");
        assert_eq!(first.path, "/hook?a=1");
        assert_eq!(first.header("x-hookd-test"), Some("yes"));
        assert_eq!(first.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(first.header("missing"), None);
        assert_eq!(first.json()?, serde_json::json!({"n": 1}));
        assert_eq!(requests[1].method, "PUT");
        assert!(requests[0].received_at <= requests[2].received_at);
        assert!(requests[0].received_wall <= requests[2].received_wall);
        Ok(())
    }

    #[tokio::test]
    async fn wait_for_times_out_with_count() -> anyhow::Result<()> {
        let receiver = Receiver::ok()?;
        send(&client(), "POST", &receiver.url("/"), "x").await?;
        let error = receiver.wait_for(2, Duration::from_millis(100)).await.expect_err("only 1");
        let message = error.to_string();
        assert!(message.contains("expected 2") && message.contains("got 1"), "{message}");
        assert!(receiver.requests()[0].json().is_err());
        Ok(())
    }

    #[tokio::test]
    async fn a_delayed_response_does_not_delay_others() -> anyhow::Result<()> {
        let receiver = Receiver::start(responder(|request, _| {
            if request.path == "/slow" {
                Response::ok().with_delay(Duration::from_secs(2))
            } else {
                Response::status(202)
            }
        }))?;
        let client = client();
        let started = Instant::now();
        let slow = tokio::spawn({
            let client = client.clone();
            let url = receiver.url("/slow");
            async move { send(&client, "POST", &url, "slow").await.map(|r| (r.0, Instant::now())) }
        });
        // The slow request must be in flight before the fast one is sent.
        receiver.wait_for(1, Duration::from_secs(5)).await?;
        let (status, _, _) = send(&client, "POST", &receiver.url("/fast"), "fast").await?;
        let fast_done = started.elapsed();
        assert_eq!(status, 202);
        assert!(fast_done < Duration::from_secs(1), "fast request took {fast_done:?}");

        let (slow_status, slow_done) = slow.await??;
        assert_eq!(slow_status, 200);
        assert!(slow_done.duration_since(started) >= Duration::from_secs(2));
        Ok(())
    }

    #[tokio::test]
    async fn stop_makes_the_endpoint_unreachable() -> anyhow::Result<()> {
        let receiver = Receiver::ok()?;
        let client = client();
        assert_eq!(send(&client, "GET", &receiver.url("/"), "").await?.0, 200);
        receiver.stop();
        // Aborting is asynchronous; a fresh client avoids reusing the pooled connection.
        let fresh = self::client();
        crate::wait_until("the receiver to refuse connections", Duration::from_secs(5), || {
            let fresh = fresh.clone();
            let url = receiver.url("/");
            async move { Ok(send(&fresh, "GET", &url, "").await.is_err().then_some(())) }
        })
        .await?;
        assert_eq!(receiver.count(), 1);
        Ok(())
    }
}
