//! Steady load for the fault tests: a producer that publishes events at a fixed rate straight
//! to NATS, as real producers do, retrying a publish that gets no store ack (as a producer
//! with a retry policy does, under the same `Nats-Msg-Id`), and remembering which events were
//! acknowledged; and [`Arrivals`], what an endpoint received of them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;

use crate::{ReceivedRequest, Receiver};

/// What to publish.
#[derive(Debug, Clone)]
pub struct SteadyLoad {
    /// Event ids are `<prefix>-<n>`, n from 0.
    pub prefix: String,
    pub count: usize,
    /// Events go round-robin to these types (one webhook per type, say).
    pub event_types: Vec<String>,
    /// Events per second, started on schedule whatever the broker does (publishes still
    /// waiting for an ack run side by side, up to `in_flight`).
    pub rate: f64,
    pub in_flight: usize,
    /// How long one event is retried before the producer gives up on it.
    pub give_up_after: Duration,
}

impl SteadyLoad {
    /// The id and type of event `n`.
    pub fn event(&self, n: usize) -> (String, String) {
        let event_type = self.event_types[n % self.event_types.len()].clone();
        (format!("{}-{n:05}", self.prefix), event_type)
    }
}

/// What the producer got back.
#[derive(Debug, Default)]
pub struct Published {
    /// Events the stream acknowledged (possibly after retries), with the time of the ack.
    pub acked: HashMap<String, Instant>,
    /// Events never acknowledged within `give_up_after`.
    pub unacked: Vec<String>,
    /// Publishes that failed and were tried again.
    pub retries: usize,
}

impl Published {
    /// The longest time without a store ack inside `[from, until]`: how long producers were
    /// held up.
    pub fn longest_gap(&self, from: Instant, until: Instant) -> Duration {
        longest_gap(self.acked.values().copied(), from, until)
    }
}

/// Publishes `load` and waits until every event is acknowledged or given up.
pub async fn publish_steadily(js: jetstream::Context, load: SteadyLoad) -> Published {
    let published = Arc::new(Mutex::new(Published::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(load.in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / load.rate.max(0.001)));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for n in 0..load.count {
        pace.tick().await;
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let (js, published, load) = (js.clone(), published.clone(), load.clone());
        tasks.spawn(async move {
            let (id, event_type) = load.event(n);
            let outcome = publish_until_acked(&js, &event_type, &id, load.give_up_after).await;
            let mut published = published.lock().unwrap_or_else(PoisonError::into_inner);
            published.retries += outcome.1;
            if let Some(at) = outcome.0 {
                published.acked.insert(id, at);
            } else {
                published.unacked.push(id);
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut published = published.lock().unwrap_or_else(PoisonError::into_inner);
    std::mem::take(&mut *published)
}

/// One event, retried every 200 ms until acked or `give_up_after`; the ack time and the
/// number of retries.
async fn publish_until_acked(
    js: &jetstream::Context,
    event_type: &str,
    id: &str,
    give_up_after: Duration,
) -> (Option<Instant>, usize) {
    let started = Instant::now();
    let mut retries = 0;
    loop {
        if crate::publish_to_nats(js, event_type, id).await.is_ok() {
            return (Some(Instant::now()), retries);
        }
        if started.elapsed() >= give_up_after {
            return (None, retries);
        }
        retries += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The longest stretch without any of `times` inside `[from, until]`, counting from `from`
/// to the first one and from the last one to `until`.
fn longest_gap(times: impl Iterator<Item = Instant>, from: Instant, until: Instant) -> Duration {
    let mut inside: Vec<Instant> = times.filter(|t| *t >= from && *t <= until).collect();
    inside.sort_unstable();
    let mut longest = Duration::ZERO;
    let mut previous = from;
    for t in inside.into_iter().chain(std::iter::once(until)) {
        longest = longest.max(t.duration_since(previous));
        previous = t;
    }
    longest
}

/// What one endpoint received: every copy of every event, with its `webhook-id`.
#[derive(Default)]
pub struct Arrivals {
    seen: usize,
    /// event id → the `webhook-id` of each copy, in arrival order.
    pub copies: HashMap<String, Vec<String>>,
    /// When each request arrived.
    pub times: Vec<Instant>,
}

impl Arrivals {
    /// Takes in the requests the receiver got since the last call.
    pub fn update(&mut self, receiver: &Receiver) -> anyhow::Result<()> {
        let requests = receiver.requests();
        for request in &requests[self.seen.min(requests.len())..] {
            let (event, webhook_id) = identity(request)?;
            self.copies.entry(event).or_default().push(webhook_id);
            self.times.push(request.received_at);
        }
        self.seen = requests.len();
        Ok(())
    }

    /// The events of `expected` that never arrived.
    pub fn missing<'a>(&self, expected: impl IntoIterator<Item = &'a String>) -> Vec<&'a String> {
        expected.into_iter().filter(|id| !self.copies.contains_key(*id)).collect()
    }

    /// Copies beyond the first, summed over all events.
    pub fn extra_copies(&self) -> usize {
        self.copies.values().map(|c| c.len() - 1).sum()
    }

    /// Events whose copies do not all carry the same `webhook-id`.
    pub fn inconsistent(&self) -> Vec<(&String, &Vec<String>)> {
        self.copies.iter().filter(|(_, c)| c.iter().any(|id| *id != c[0])).collect()
    }

    /// HTTP requests per delivery (`webhook-id`).
    pub fn requests_per_delivery(&self) -> HashMap<&str, usize> {
        let mut counts = HashMap::new();
        for copy in self.copies.values().flatten() {
            *counts.entry(copy.as_str()).or_default() += 1;
        }
        counts
    }

    /// The longest time without an arrival inside `[from, until]`.
    pub fn longest_gap(&self, from: Instant, until: Instant) -> Duration {
        longest_gap(self.times.iter().copied(), from, until)
    }

    /// Distinct events received.
    pub fn events(&self) -> HashSet<&str> {
        self.copies.keys().map(String::as_str).collect()
    }
}

/// The event id (from the envelope) and the `webhook-id` header of a delivery request.
fn identity(request: &ReceivedRequest) -> anyhow::Result<(String, String)> {
    let event = request.json()?["meta"]["eventId"]
        .as_str()
        .map(str::to_owned)
        .context("request body without meta.eventId")?;
    let webhook_id =
        request.header("webhook-id").map(str::to_owned).context("request without webhook-id")?;
    Ok((event, webhook_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_the_edges_of_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let times = [at(100), at(150), at(900), at(2000)];
        assert_eq!(longest_gap(times.into_iter(), at(0), at(1000)), Duration::from_millis(750));
        assert_eq!(longest_gap(times.into_iter(), at(950), at(1000)), Duration::from_millis(50));
        assert_eq!(longest_gap(std::iter::empty(), at(0), at(10)), Duration::from_millis(10));
    }

    #[test]
    fn events_round_robin_over_the_types() {
        let load = SteadyLoad {
            prefix: "e".into(),
            count: 4,
            event_types: vec!["a".into(), "b".into()],
            rate: 1.0,
            in_flight: 1,
            give_up_after: Duration::from_secs(1),
        };
        assert_eq!(load.event(0), ("e-00000".to_owned(), "a".to_owned()));
        assert_eq!(load.event(3), ("e-00003".to_owned(), "b".to_owned()));
    }
}
