//! The benchmark's HTTP sink: a lean hyper HTTP/1.1 server on any number of loopback ports
//! that answers at once and keeps only counters and latency histograms (never the requests).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::{JoinHandle, JoinSet};

use super::now_ns;

/// How the ports of one group answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behavior {
    /// 200 at once.
    Ok,
    /// 500 the first time a `webhook-id` is seen, then 200; measures how late the retry came
    /// against `retry_delay` plus hookd's deterministic jitter.
    FailFirst { retry_delay: Duration },
    /// 500, always.
    AlwaysFail,
    /// 200 after this long.
    Hang(Duration),
}

/// A latency histogram in microseconds (1 µs to 1 h, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Retry lateness is recorded with this offset so early retries (negative, at most the 5 %
/// jitter of a short delay) fit a u64 histogram.
pub const LATENESS_OFFSET_US: u64 = 5_000_000;

/// Counters and histograms of one group of ports.
pub struct Group {
    pub behavior: Behavior,
    pub ports: Vec<u16>,
    requests: AtomicU64,
    /// Requests whose body carried `sent_at_ns` (all of the benchmark's).
    timed: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    /// `webhook-id` → first receive time (ns), for `FailFirst`.
    first_seen: Mutex<HashMap<Box<str>, u64>>,
    retries: AtomicU64,
    /// Retry receive time minus scheduled time, µs, plus [`LATENESS_OFFSET_US`].
    lateness_us: Mutex<Histogram<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Group {
    fn new(behavior: Behavior, ports: Vec<u16>) -> Self {
        Self {
            behavior,
            ports,
            requests: AtomicU64::new(0),
            timed: AtomicU64::new(0),
            latency_us: Mutex::new(latency_histogram()),
            first_seen: Mutex::new(HashMap::new()),
            retries: AtomicU64::new(0),
            // 4 significant digits: 0.5 ms resolution around the offset.
            lateness_us: Mutex::new(
                Histogram::new_with_bounds(1, 120_000_000, 4).expect("valid histogram bounds"),
            ),
        }
    }

    /// Every request received, whatever the answer.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Retries seen (`FailFirst` only).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// A copy of the publish → receipt histogram (µs).
    pub fn latency(&self) -> Histogram<u64> {
        lock(&self.latency_us).clone()
    }

    /// A copy of the retry lateness histogram (µs + [`LATENESS_OFFSET_US`]).
    pub fn lateness(&self) -> Histogram<u64> {
        lock(&self.lateness_us).clone()
    }

    /// Forgets the latencies and counts so far (e.g. after a warm-up).
    pub fn reset(&self) {
        lock(&self.latency_us).reset();
        lock(&self.lateness_us).reset();
        self.requests.store(0, Ordering::Relaxed);
        self.timed.store(0, Ordering::Relaxed);
        self.retries.store(0, Ordering::Relaxed);
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("http://127.0.0.1:{p}/hook")).collect()
    }
}

/// The sink: groups of ports, served until dropped.
pub struct Sink {
    pub groups: Vec<Arc<Group>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sink {
    /// Binds `ports` loopback ports per group and serves them on the current runtime.
    pub fn start(groups: &[(usize, Behavior)]) -> anyhow::Result<Sink> {
        let mut out = Vec::new();
        let mut tasks = Vec::new();
        for (n, behavior) in groups {
            let mut listeners = Vec::new();
            for _ in 0..*n {
                let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
                listener.set_nonblocking(true)?;
                listeners.push(listener);
            }
            let ports = listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<Result<Vec<_>, _>>()?;
            let group = Arc::new(Group::new(*behavior, ports));
            for listener in listeners {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                tasks.push(tokio::spawn(serve(listener, group.clone())));
            }
            out.push(group);
        }
        Ok(Sink { groups: out, tasks })
    }

    /// One group, serving one port that answers 200.
    pub fn single() -> anyhow::Result<Sink> {
        Sink::start(&[(1, Behavior::Ok)])
    }

    pub fn group(&self, i: usize) -> &Arc<Group> {
        &self.groups[i]
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, group: Arc<Group>) {
    // Owned here, so aborting the accept loop aborts every connection too.
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let group = group.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let group = group.clone();
                async move { Ok::<_, Infallible>(handle(&group, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(group: &Group, request: Request<Incoming>) -> Response<Empty<Bytes>> {
    let received_ns = now_ns();
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|c| c.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    group.requests.fetch_add(1, Ordering::Relaxed);
    let mut code = StatusCode::OK;
    let mut record_latency = true;
    match group.behavior {
        Behavior::Ok => {}
        Behavior::AlwaysFail => code = StatusCode::INTERNAL_SERVER_ERROR,
        Behavior::Hang(delay) => tokio::time::sleep(delay).await,
        Behavior::FailFirst { retry_delay } => {
            let id =
                parts.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let first = {
                let mut seen = lock(&group.first_seen);
                match seen.get(id) {
                    Some(first) => Some(*first),
                    None => {
                        seen.insert(id.into(), received_ns);
                        None
                    }
                }
            };
            match first {
                None => code = StatusCode::INTERNAL_SERVER_ERROR,
                Some(first_ns) => {
                    record_latency = false;
                    group.retries.fetch_add(1, Ordering::Relaxed);
                    let planned = hookd_core::retry::jitter(retry_delay, id, 1);
                    let actual_us = received_ns.saturating_sub(first_ns) as i128 / 1000;
                    let late_us = actual_us - planned.as_micros() as i128;
                    let value = (late_us + LATENESS_OFFSET_US as i128).max(1) as u64;
                    lock(&group.lateness_us).saturating_record(value);
                }
            }
        }
    }
    if record_latency && let Some(sent_ns) = find_u64(&body, b"\"sent_at_ns\":") {
        group.timed.fetch_add(1, Ordering::Relaxed);
        let us = received_ns.saturating_sub(sent_ns) / 1000;
        lock(&group.latency_us).saturating_record(us.max(1));
    }
    status(code)
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}

/// The unsigned integer right after `key` in `haystack` (spaces allowed), without parsing JSON.
pub fn find_u64(haystack: &[u8], key: &[u8]) -> Option<u64> {
    let start = haystack.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = haystack[start..].iter().skip_while(|b| b.is_ascii_whitespace());
    let mut value: u64 = 0;
    let mut digits = 0;
    for b in rest {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_timestamp_without_parsing() {
        let body = br#"{"meta":{"eventId":"b-1"},"data":{"sent_at_ns": 1234567890123}}"#;
        assert_eq!(find_u64(body, b"\"sent_at_ns\":"), Some(1_234_567_890_123));
        assert_eq!(find_u64(b"{}", b"\"sent_at_ns\":"), None);
    }
}
