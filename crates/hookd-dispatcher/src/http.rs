//! The HTTP side of an attempt: one shared hyper client (connections reused per host), a
//! deadline over the whole exchange, no redirects followed, and a capped read of the answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hookd_core::AttemptOutcome;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// The first bytes of an answer kept for the history.
pub const RESPONSE_EXCERPT_BYTES: usize = 16 * 1024;

const USER_AGENT: &str = concat!("hookd/", env!("CARGO_PKG_VERSION"));

/// What to send in one attempt.
#[derive(Debug)]
pub struct AttemptRequest<'a> {
    pub url: &'a str,
    pub body: Bytes,
    pub headers: Vec<(&'static str, String)>,
    pub timeout: Duration,
}

/// How an attempt went, with its measured latency.
#[derive(Debug)]
pub struct AttemptResult {
    pub outcome: AttemptOutcome,
    pub latency: Duration,
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build(https);
        Self { client }
    }

    /// Makes one attempt. Never fails: every problem is an [`AttemptOutcome`].
    pub async fn attempt(&self, req: AttemptRequest<'_>) -> AttemptResult {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(req.timeout, self.exchange(&req)).await {
            Ok(outcome) => outcome,
            Err(_) => AttemptOutcome::TimedOut { after: req.timeout },
        };
        AttemptResult { outcome, latency: started.elapsed() }
    }

    async fn exchange(&self, req: &AttemptRequest<'_>) -> AttemptOutcome {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(req.url)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        let request = match builder.body(Full::new(req.body.clone())) {
            Ok(r) => r,
            Err(e) => {
                return AttemptOutcome::Failed { error: format!("cannot build request: {e}") };
            }
        };
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) => return AttemptOutcome::Failed { error: describe(&e) },
        };
        let status = response.status().as_u16();
        let body_excerpt = read_excerpt(response.into_body()).await;
        AttemptOutcome::Answered { status, body_excerpt }
    }
}

/// Reads at most [`RESPONSE_EXCERPT_BYTES`] of the answer; the rest is not read, and the
/// connection is then dropped rather than reused.
async fn read_excerpt(mut body: hyper::body::Incoming) -> String {
    let mut excerpt = Vec::new();
    while excerpt.len() < RESPONSE_EXCERPT_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = RESPONSE_EXCERPT_BYTES - excerpt.len();
                    excerpt.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            // A body cut short still leaves the status, which decides the outcome.
            Some(Err(_)) | None => break,
        }
    }
    String::from_utf8_lossy(&excerpt).into_owned()
}

/// A short, stable description of a client error (the innermost cause says the most).
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut innermost = None;
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    let kind = if e.is_connect() { "connect error" } else { "request failed" };
    match innermost {
        Some(cause) => format!("{kind}: {cause}"),
        None => format!("{kind}: {e}"),
    }
}
