//! The HTTP side of an attempt: one shared hyper client (connections reused per host), a
//! deadline over the whole exchange, no redirects followed, and a capped read of the answer.
//!
//! Hostile endpoints are expected. Connections go only to addresses the egress policy allows
//! (checked at connect time, after resolution, by `hookd_egress`). A 3xx is just the answer:
//! nothing here reads `Location`. The deadline covers connecting, the response head and the
//! body, so a slow drip cannot extend it. The response head is bounded in size and header
//! count, at most [`RESPONSE_EXCERPT_BYTES`] of the body are read, and no `accept-encoding`
//! is sent and nothing is inflated: a gzip bomb stays its compressed bytes.

use std::{
    borrow::Cow,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use hookd_core::{AttemptOutcome, egress::EgressPolicy, endpoint::HttpMethod};
use http::{HeaderName, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// The first bytes of an answer kept for the history; the rest is never read.
pub const RESPONSE_EXCERPT_BYTES: usize = 16 * 1024;
/// The most a response head (status line and headers) may take in the read buffer; an
/// endless header stream fails the attempt once it is full. Also the largest body chunk read.
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// The most headers a response may have.
const MAX_RESPONSE_HEADERS: usize = 100;

const USER_AGENT: &str = concat!("hookd/", env!("CARGO_PKG_VERSION"));

/// What to send in one attempt. Borrows from the webhook definition where it can: this is
/// built once per delivery on the hot path. `Debug` shows neither the URL nor secret values.
pub struct AttemptRequest<'a> {
    pub method: HttpMethod,
    /// The full URL, query included (an API key in the query too: never log this field, use
    /// [`crate::request::Prepared::shown_url`]).
    pub url: Cow<'a, str>,
    /// `None` for methods without a body: then no `content-type` is sent either.
    pub body: Option<Bytes>,
    pub headers: Vec<OutHeader<'a>>,
    pub timeout: Duration,
}

/// One request header. `secret` marks credentials (the endpoint auth, an OAuth2 token): their
/// values are redacted in the history and marked sensitive for hyper.
#[derive(Clone)]
pub struct OutHeader<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
    pub secret: bool,
}

impl<'a> OutHeader<'a> {
    pub fn plain(name: &'a str, value: impl Into<Cow<'a, str>>) -> Self {
        Self { name, value: value.into(), secret: false }
    }

    pub fn secret(name: &'a str, value: impl Into<Cow<'a, str>>) -> Self {
        Self { name, value: value.into(), secret: true }
    }
}

impl std::fmt::Debug for AttemptRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptRequest")
            .field("method", &self.method)
            .field("body_bytes", &self.body.as_ref().map(Bytes::len))
            .field("headers", &self.headers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OutHeader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret { REDACTED } else { &self.value };
        write!(f, "{}: {value}", self.name)
    }
}

/// How an attempt went, with its measured latency.
#[derive(Debug)]
pub struct AttemptResult {
    pub outcome: AttemptOutcome,
    pub latency: Duration,
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<hookd_egress::Connector, Full<Bytes>>,
}

impl HttpClient {
    /// A client that connects only where `policy` allows.
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        let connector = hookd_egress::connector(policy, Duration::from_secs(10));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .http1_max_buf_size(MAX_RESPONSE_HEAD_BYTES)
            .http1_max_headers(MAX_RESPONSE_HEADERS)
            .build(connector);
        Self { client }
    }

    /// A client for tests against servers on loopback.
    #[cfg(test)]
    pub fn loopback() -> Self {
        Self::new(Arc::new(EgressPolicy::new(&["127.0.0.0/8", "::1/128"]).expect("valid cidrs")))
    }

    /// Makes one exchange, within the request's timeout. Never fails: every problem is an
    /// [`AttemptOutcome`]. Borrows the request so it can be sent again (OAuth2 refresh).
    pub async fn attempt(&self, req: &AttemptRequest<'_>) -> AttemptResult {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(req.timeout, self.exchange(req)).await {
            Ok(outcome) => outcome,
            Err(_) => AttemptOutcome::TimedOut { after: req.timeout },
        };
        AttemptResult { outcome, latency: started.elapsed() }
    }

    async fn exchange(&self, req: &AttemptRequest<'_>) -> AttemptOutcome {
        let request = match build(req) {
            Ok(r) => r,
            // The message names the problem, never a header value (it may be a secret).
            Err(error) => return AttemptOutcome::Failed { error },
        };
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) => return AttemptOutcome::Failed { error: describe(&e) },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let body_excerpt = read_excerpt(response.into_body()).await;
        AttemptOutcome::Answered { status, body_excerpt, retry_after }
    }
}

fn build(req: &AttemptRequest<'_>) -> Result<Request<Full<Bytes>>, String> {
    let method = match req.method {
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Get => Method::GET,
        HttpMethod::Delete => Method::DELETE,
    };
    let uri: http::Uri =
        req.url.parse().map_err(|e| format!("cannot build request: invalid url: {e}"))?;
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    if req.body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    }
    for h in &req.headers {
        if h.name.eq_ignore_ascii_case(header::ACCEPT_ENCODING.as_str()) {
            // Reserved since hookd stopped allowing it; a webhook stored earlier may have it.
            continue;
        }
        let name = HeaderName::try_from(h.name)
            .map_err(|_| format!("cannot build request: invalid header name {:?}", h.name))?;
        let mut value = HeaderValue::from_str(&h.value)
            .map_err(|_| format!("cannot build request: invalid value for header {:?}", h.name))?;
        // Keeps it out of HPACK tables and out of `Debug` output.
        value.set_sensitive(h.secret);
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(req.body.clone().unwrap_or_default()))
        .map_err(|e| format!("cannot build request: {e}"))
}

const JSON: &str = "application/json";

/// The headers of an attempt as the history shows them: every header hookd sends, with the
/// values of credentials replaced. A header is a credential when the request says so (it
/// knows which header carries the auth) or, as a safety net, when its name looks like one.
pub fn recorded_headers(req: &AttemptRequest<'_>) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(req.headers.len() + 2);
    if req.body.is_some() {
        headers.push(("content-type".to_owned(), JSON.to_owned()));
    }
    headers.push(("user-agent".to_owned(), USER_AGENT.to_owned()));
    for h in &req.headers {
        let value = if h.secret || is_secret(h.name) {
            REDACTED.to_owned()
        } else {
            h.value.clone().into_owned()
        };
        headers.push((h.name.to_owned(), value));
    }
    headers
}

/// What the history and test sends show instead of a secret.
pub const REDACTED: &str = "[redacted]";

fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["authorization", "api-key", "apikey", "secret", "token", "signature", "cookie"]
        .iter()
        .any(|s| name.contains(s))
}

/// `Retry-After` as delay-seconds or an HTTP date; `None` if it is neither.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
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

/// A short, stable description of a client error (the innermost cause says the most). A
/// refusal by the egress policy is said as it is: it is the operator's or the user's to fix.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    if let Some(refused) = hookd_egress::find_egress_error(e) {
        return refused.to_string();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .expect("valid");
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn credentials_are_redacted_in_the_history() {
        let req = AttemptRequest {
            method: HttpMethod::Post,
            url: "http://127.0.0.1:1/".into(),
            body: Some(Bytes::new()),
            headers: vec![
                OutHeader::plain("webhook-id", "dlv_1"),
                OutHeader::plain("x-webhook-secret", "s3cret"),
                OutHeader::secret("x-custom-auth", "k3y"),
            ],
            timeout: Duration::from_secs(1),
        };
        let recorded = recorded_headers(&req);
        assert!(recorded.contains(&("webhook-id".into(), "dlv_1".into())));
        assert!(recorded.contains(&("content-type".into(), "application/json".into())));
        assert!(recorded.contains(&("x-webhook-secret".into(), "[redacted]".into())));
        assert!(recorded.contains(&("x-custom-auth".into(), "[redacted]".into())));
    }

    #[tokio::test]
    async fn forbidden_addresses_are_refused_without_a_connection() {
        let mut server = crate::test_server::TestServer::start(|_| 200).await;
        let port = server.base.rsplit(':').next().unwrap_or_default().to_owned();
        let client = HttpClient::new(Arc::new(EgressPolicy::default()));
        for url in [
            format!("{}/", server.base),
            format!("http://localhost:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
        ] {
            let req = AttemptRequest {
                method: HttpMethod::Post,
                url: url.clone().into(),
                body: Some(Bytes::new()),
                headers: vec![],
                timeout: Duration::from_secs(5),
            };
            let AttemptOutcome::Failed { error } = client.attempt(&req).await.outcome else {
                panic!("{url}: not refused");
            };
            assert!(error.starts_with("refused by the egress policy: "), "{url}: {error}");
            assert!(error.contains("127.0.0.1 is a loopback address"), "{url}: {error}");
        }
        assert!(server.idle(), "nothing reached the server");
    }
}
