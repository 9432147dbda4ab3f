//! The open-loop load generator: publishes events to NATS on a fixed schedule, whatever the
//! consumers do, with async publishes and a bound on store acks outstanding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::Semaphore;

use super::now_ns;

/// What to publish.
#[derive(Debug, Clone)]
pub struct Load {
    /// Subject per message, chosen by sequence number (round-robin over the list).
    pub subjects: Vec<String>,
    /// Event type per subject (same index), put in the event's `type`.
    pub event_types: Vec<String>,
    /// Event ids are `<id_prefix>-<seq>`; must be unique within the dedupe window.
    pub id_prefix: String,
    /// Events per second; `None` publishes as fast as the outstanding-ack bound allows.
    pub rate: Option<f64>,
    pub count: u64,
    /// Stops early after this long, whatever was sent.
    pub max_duration: Duration,
    /// Publishes whose store ack has not come back yet, at most.
    pub max_outstanding: usize,
    /// Entity ids (`e<k>`) cycle over this many keys; `None`: one per event (`e<seq>`).
    pub keys: Option<u64>,
}

impl Load {
    /// Events of one type on `hookd.events.default.<type>`.
    pub fn events(event_type: &str, id_prefix: &str, rate: Option<f64>, count: u64) -> Load {
        Load {
            subjects: vec![format!("hookd.events.default.{event_type}")],
            event_types: vec![event_type.to_owned()],
            id_prefix: id_prefix.to_owned(),
            rate,
            count,
            max_duration: Duration::from_secs(600),
            max_outstanding: 8192,
            keys: None,
        }
    }

    pub fn with_max_duration(mut self, d: Duration) -> Load {
        self.max_duration = d;
        self
    }
}

/// What the generator did.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// The furthest the generator fell behind its schedule (the ack bound or the client was
    /// the limit); near zero means the load really was open-loop.
    pub max_behind: Duration,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One event as a producer publishes it, about entity `e<entity>`; `data.sent_at_ns` is the
/// send time (wall clock, ns).
pub fn event_body(id: &str, event_type: &str, seq: u64, entity: u64) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!(
        r#"{{"id":"{id}","type":"{event_type}","entity_id":"e{entity}","timestamp":"{ts}","data":{{"seq":{seq},"sent_at_ns":{}}}}}"#,
        now_ns()
    )
}

/// Publishes `load` and waits (at most 60 s more) for every store ack.
pub async fn publish(js: &jetstream::Context, load: &Load) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(!load.subjects.is_empty(), "no subject to publish to");
    let permits = Arc::new(Semaphore::new(load.max_outstanding));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut seq = 0u64;
    let mut max_behind = Duration::ZERO;
    while seq < load.count {
        let elapsed = started.elapsed();
        if elapsed >= load.max_duration {
            break;
        }
        let due = match load.rate {
            Some(rate) => ((elapsed.as_secs_f64() * rate) as u64 + 1).min(load.count),
            None => load.count,
        };
        if let Some(rate) = load.rate
            && due > seq + 1
        {
            max_behind = max_behind.max(Duration::from_secs_f64((due - seq - 1) as f64 / rate));
        }
        // In the unbounded case publish in slices so the duration bound is still checked.
        let until = due.min(seq + 2000);
        while seq < until {
            let permit = permits.clone().acquire_owned().await?;
            let k = (seq as usize) % load.subjects.len();
            let id = format!("{}-{seq}", load.id_prefix);
            let entity = load.keys.map_or(seq, |keys| seq % keys.max(1));
            let body = event_body(&id, &load.event_types[k], seq, entity);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let ack =
                js.publish_with_headers(load.subjects[k].clone(), headers, body.into()).await?;
            let (acked, failed) = (acked.clone(), failed.clone());
            tokio::spawn(async move {
                match ack.await {
                    Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                drop(permit);
            });
            seq += 1;
        }
        if load.rate.is_some() && seq < load.count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let elapsed = started.elapsed();
    let all = u32::try_from(load.max_outstanding).unwrap_or(u32::MAX);
    tokio::time::timeout(Duration::from_secs(60), permits.acquire_many(all))
        .await
        .map_err(|_| anyhow::anyhow!("store acks still outstanding after 60 s"))??
        .forget();
    Ok(LoadResult {
        sent: seq,
        acked: acked.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        max_behind,
    })
}
