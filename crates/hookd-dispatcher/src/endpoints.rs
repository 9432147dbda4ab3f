//! Per-endpoint concurrency, shared fairly between the webhooks that point at one endpoint
//! (scheme, host, port) and adapted to how the endpoint copes (B4, B9).
//!
//! **Places.** An endpoint has a limit of attempts in progress at once. Jobs that wait for a
//! place wait in their *webhook's* line, and the endpoint hands freed places to its webhooks'
//! lines in turn (round robin), not in arrival order: a webhook with a hundred jobs waiting
//! does not delay one with a single job. No webhook may hold more than three quarters of its
//! endpoint's places (its *share*) while another waits, nor ever unless its last attempt
//! succeeded, so one URL that hangs cannot take every place while the others wait for its
//! timeouts: many customers of one platform point their webhooks at the
//! same SaaS host, and each must be served at that host's own pace.
//!
//! **Adaptive limits** (additive increase, multiplicative decrease). An endpoint starts at
//! `initial` places. It halves on the answers that say the *host* is overloaded (429, 502,
//! 503, 504) and loses a tenth when a webhook's answers take more than twice their usual time
//! (and 100 ms more); it gains a place after as many successes as it has places, while its
//! places are all in use, up to `max`. A webhook's share shrinks the same way on its own
//! failures that held a place long or asked for less (timeouts, 429, 502–504, and other 5xx
//! answers slower than usual), so a URL that hangs soon holds a single place while its
//! neighbours keep the rest; successes win the share back. A refused connection or a quick
//! 500 of the receiver's own code holds nothing: cutting the share for it would only make
//! the retries wait, so it does not. Failures of one webhook (a 500, a timeout of one URL)
//! are not the host's: they cut that webhook's share only. A cut counts once per round: only an attempt that started after
//! the last cut can cause another, so a burst of 503s answered together halves the limit once.
//!
//! **Waiting places.** Every endpoint may have `queue` jobs waiting beyond its places, each
//! webhook half of them, whatever the others do. A webhook whose last attempt succeeded may
//! borrow more from the dispatcher's common room (`capacity`, the in-flight bound) as long as
//! a quarter of that room stays free for the others: a platform's big integration catching up
//! drains at the endpoint's pace instead of having its overflow put back and fetched again. A
//! failing or hanging webhook, or one with no finished attempt yet, gets only its own places,
//! so its jobs cannot fill the dispatcher.
//!
//! **First attempts from the fan-out.** A healthy webhook whose endpoint has a free place and
//! nobody waiting may take a delivery's first attempt straight from the fan-out
//! ([`Endpoints::claim_soon`]), at most `inline` such attempts at once in the whole dispatcher,
//! so that an endpoint that suddenly hangs holds a bounded part of the fan-out for at most one
//! attempt timeout. When that bound is full (under load: a busy process' attempts take
//! longer) a fan-out waits a moment for room before it writes a job instead, since the job
//! costs a second JetStream stage. Health and limits are remembered while an endpoint is
//! idle, within a bound, so a steady trickle of events keeps taking that path.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use hookd_core::AttemptOutcome;
use hookd_metrics::{IntCounter, IntGauge};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The settings of [`Endpoints`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// An endpoint's places when first seen.
    pub initial: usize,
    /// The most places an endpoint's limit grows to.
    pub max: usize,
    /// Jobs that may wait for an endpoint beyond its places (half of them per webhook).
    pub queue: usize,
    /// The dispatcher's in-flight bound: the common room healthy webhooks borrow from.
    pub capacity: usize,
    /// First attempts the fan-out may make at once.
    pub inline: usize,
}

/// Counters and gauges the endpoints keep up to date.
#[derive(Clone)]
pub struct EndpointMetrics {
    /// Endpoint limit cuts on 429, 502, 503 or 504.
    pub overloaded: IntCounter,
    /// Endpoint limit cuts on answers slower than usual.
    pub slower: IntCounter,
    /// Webhook share cuts on the webhook's own failures.
    pub webhook_failing: IntCounter,
    /// Jobs waiting for a place at their endpoint.
    pub waiting: IntGauge,
}

/// A limit that grows by one per round of successes and is cut by a factor on trouble.
#[derive(Debug)]
struct Aimd {
    limit: usize,
    max: usize,
    successes: usize,
    /// Cuts so far: an attempt that started before the last one cannot cause another.
    round: u64,
}

impl Aimd {
    fn new(limit: usize, max: usize) -> Self {
        Self { limit: limit.clamp(1, max.max(1)), max: max.max(1), successes: 0, round: 0 }
    }

    fn grow(&mut self) {
        self.successes += 1;
        if self.successes >= self.limit && self.limit < self.max {
            self.limit += 1;
            self.successes = 0;
        }
    }

    /// Cuts to `percent` of the limit (at least 1); false if the attempt `started` in an
    /// earlier round than the last cut's.
    fn cut(&mut self, percent: usize, started: u64) -> bool {
        if started != self.round {
            return false;
        }
        self.limit = (self.limit * percent / 100).max(1);
        self.successes = 0;
        self.round += 1;
        true
    }
}

/// The most places one webhook may hold at an endpoint whose limit is `limit`: a quarter
/// always stays for the others (and at least one place for the webhook).
fn share(limit: usize) -> usize {
    (limit - limit / 4).max(1)
}

/// Answers that speak for the whole host: it (or the gateway before it) is overloaded.
fn host_overloaded(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A latency is *slower* than the usual `baseline` when it is more than twice it and more
/// than this much above it (a 1 ms endpoint answering in 3 ms is not struggling).
const SLOWER_MARGIN: Duration = Duration::from_millis(100);
/// The baseline follows each new latency by this fraction (an exponential moving average).
const BASELINE_WEIGHT: f64 = 1.0 / 16.0;

/// A wait for a place, shared by the waiting claim and the endpoint that grants it.
#[derive(Default)]
struct Waiter {
    grant: Mutex<Option<Grant>>,
    woken: Notify,
}

impl Waiter {
    fn granted(&self) -> Option<Grant> {
        *self.grant.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A place held: the limits' rounds when it was given, so that trouble it meets cuts each
/// limit at most once per round.
#[derive(Debug, Clone, Copy)]
struct Grant {
    endpoint_round: u64,
    webhook_round: u64,
}

/// One webhook at one endpoint.
struct Line {
    limit: Aimd,
    /// Places held.
    in_use: usize,
    /// Claims holding or waiting for a place.
    holders: usize,
    /// Whether its last finished attempt succeeded. A webhook proves itself first: one that
    /// hangs must not borrow before its first attempt times out.
    healthy: bool,
    /// The usual latency of its successful attempts.
    baseline: Option<Duration>,
    waiting: VecDeque<Arc<Waiter>>,
    /// Whether it is in its endpoint's `turns`.
    has_turn: bool,
}

impl Line {
    /// The places it may hold: a healthy webhook with nobody else waiting may use every
    /// place (a platform's big integration catching up runs at the endpoint's full pace);
    /// otherwise its share, so the others always have room.
    fn cap(&self, endpoint_limit: usize, alone: bool) -> usize {
        let most = if alone && self.healthy { endpoint_limit } else { share(endpoint_limit) };
        self.limit.limit.min(most)
    }

    /// Whether `latency` is slower than usual: more than twice the usual and more than
    /// [`SLOWER_MARGIN`] above it (with no usual yet, more than the margin).
    fn held_long(&self, latency: Duration) -> bool {
        let usual = self.baseline.unwrap_or_default();
        latency > usual * 2 && latency > usual + SLOWER_MARGIN
    }

    /// Whether `latency` (of a success) is slower than usual; then takes it into the usual.
    fn slower(&mut self, latency: Duration) -> bool {
        let Some(usual) = self.baseline else {
            self.baseline = Some(latency);
            return false;
        };
        let slower = self.held_long(latency);
        let usual = usual.as_secs_f64();
        let next = usual + (latency.as_secs_f64() - usual) * BASELINE_WEIGHT;
        self.baseline = Some(Duration::from_secs_f64(next.max(0.0)));
        slower
    }
}

struct Endpoint {
    limit: Aimd,
    /// Places held.
    in_use: usize,
    /// Claims holding or waiting for a place.
    holders: usize,
    lines: HashMap<String, Line>,
    /// Webhooks with jobs waiting, in the order they get the next free places.
    turns: VecDeque<String>,
}

impl Endpoint {
    fn new(limits: &Limits) -> Self {
        Self {
            limit: Aimd::new(limits.initial, limits.max),
            in_use: 0,
            holders: 0,
            lines: HashMap::new(),
            turns: VecDeque::new(),
        }
    }

    fn line(&mut self, webhook: &str) -> &mut Line {
        let (limit, max) = (self.limit.limit, self.limit.max);
        self.lines.entry(webhook.to_owned()).or_insert_with(|| Line {
            limit: Aimd::new(limit, max),
            in_use: 0,
            holders: 0,
            healthy: false,
            baseline: None,
            waiting: VecDeque::new(),
            has_turn: false,
        })
    }

    /// A place for a job of `webhook` now, if one is free and nobody waits for it.
    fn take_now(&mut self, webhook: &str) -> Option<Grant> {
        if !self.free_for(webhook) {
            return None;
        }
        let endpoint_round = self.limit.round;
        let line = self.lines.get_mut(webhook)?;
        line.in_use += 1;
        self.in_use += 1;
        Some(Grant { endpoint_round, webhook_round: line.limit.round })
    }

    /// Whether a place is free for `webhook` now, with nobody waiting for one.
    fn free_for(&self, webhook: &str) -> bool {
        let limit = self.limit.limit;
        self.in_use < limit
            && self.turns.is_empty()
            && self.lines.get(webhook).is_some_and(|line| line.in_use < line.cap(limit, true))
    }

    /// Gives free places to waiting jobs, one webhook's turn at a time. A webhook at its
    /// share leaves the turns until one of its places is given back.
    fn hand_out(&mut self) -> usize {
        let mut granted = 0;
        while self.in_use < self.limit.limit {
            let Some(webhook) = self.turns.pop_front() else { break };
            let Some(line) = self.lines.get_mut(&webhook) else { continue };
            line.has_turn = false;
            if line.in_use >= line.cap(self.limit.limit, self.turns.is_empty()) {
                continue;
            }
            let Some(waiter) = line.waiting.pop_front() else { continue };
            line.in_use += 1;
            self.in_use += 1;
            let grant = Grant { endpoint_round: self.limit.round, webhook_round: line.limit.round };
            *waiter.grant.lock().unwrap_or_else(PoisonError::into_inner) = Some(grant);
            waiter.woken.notify_one();
            granted += 1;
            if !line.waiting.is_empty() {
                line.has_turn = true;
                self.turns.push_back(webhook);
            }
        }
        granted
    }

    /// Puts `webhook` in the turns if it has jobs waiting and is not there yet.
    fn wants_turn(&mut self, webhook: &str) {
        if let Some(line) = self.lines.get_mut(webhook)
            && !line.has_turn
            && !line.waiting.is_empty()
        {
            line.has_turn = true;
            self.turns.push_back(webhook.to_owned());
        }
    }

    /// Whether it can be forgotten: nothing held or waiting, and nothing learned worth
    /// keeping (no healthy webhook, its limit where it started).
    fn forgettable(&self, limits: &Limits) -> bool {
        self.holders == 0 && self.lines.is_empty() && self.limit.limit == limits.initial
    }
}

#[derive(Default)]
struct State {
    endpoints: HashMap<String, Endpoint>,
    /// Claims at any endpoint.
    holders: usize,
    /// Webhook lines remembered at all endpoints.
    lines: usize,
}

pub struct Endpoints {
    limits: Limits,
    inline: Arc<Semaphore>,
    metrics: EndpointMetrics,
    state: Mutex<State>,
}

/// A place taken now for a first attempt made by the fan-out: the claim holding it, and a
/// share of the fan-out's inline bound.
pub struct Place<'a> {
    pub claim: Claim<'a>,
    _inline: OwnedSemaphorePermit,
}

/// Idle webhook lines remembered (for their health and share) at most this many times the
/// in-flight bound; beyond it the idle ones are forgotten.
const REMEMBERED_PER_SLOT: usize = 4;

/// A claim on a place at an endpoint for one webhook's job: wait on it for the right to make
/// the attempt, then say how it went ([`Claim::finished`]). Dropping it, at any point, gives
/// back whatever it holds.
pub struct Claim<'a> {
    endpoints: &'a Endpoints,
    endpoint: String,
    webhook: String,
    stage: Stage,
}

enum Stage {
    /// In its webhook's line's admission, not waiting for a place yet.
    Admitted,
    Waiting(Arc<Waiter>),
    Holding(Grant),
    Finished,
}

impl Endpoints {
    pub fn new(limits: Limits, metrics: EndpointMetrics) -> Self {
        let limits = Limits {
            initial: limits.initial.max(1),
            max: limits.max.max(limits.initial).max(1),
            ..limits
        };
        Self {
            limits,
            inline: Arc::new(Semaphore::new(limits.inline)),
            metrics,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The endpoint of `url`: `scheme://host:port`, the unit of connection reuse.
    pub fn key(url: &str) -> String {
        match url::Url::parse(url) {
            Ok(u) => format!(
                "{}://{}:{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port_or_known_default().unwrap_or_default()
            ),
            Err(_) => url.to_owned(),
        }
    }

    /// A place in `webhook`'s line at the endpoint of `url`, or `None` when it has no place
    /// left: the endpoint's or the webhook's own are taken, and the webhook may not borrow
    /// (it is failing, or the common room is down to its reserve).
    pub fn claim(&self, url: &str, webhook: &str) -> Option<Claim<'_>> {
        let key = Self::key(url);
        let limits = &self.limits;
        let mut guard = self.state();
        let state = &mut *guard;
        let total = state.holders;
        let endpoint = state.endpoints.entry(key.clone()).or_insert_with(|| Endpoint::new(limits));
        let endpoint_room = endpoint.holders < endpoint.limit.limit + limits.queue;
        let endpoint_limit = endpoint.limit.limit;
        let known = endpoint.lines.contains_key(webhook);
        let line = endpoint.line(webhook);
        let own =
            endpoint_room && line.holders < line.cap(endpoint_limit, false) + limits.queue / 2;
        let borrow = line.healthy && total < limits.capacity - limits.capacity / 4;
        if !own && !borrow {
            if !known {
                endpoint.lines.remove(webhook);
                if endpoint.forgettable(limits) {
                    state.endpoints.remove(&key);
                }
            }
            return None;
        }
        line.holders += 1;
        endpoint.holders += 1;
        state.holders += 1;
        if !known {
            state.lines += 1;
        }
        Some(Claim {
            endpoints: self,
            endpoint: key,
            webhook: webhook.to_owned(),
            stage: Stage::Admitted,
        })
    }

    /// A place for an attempt now, only for a healthy webhook whose endpoint has a free place
    /// that nobody waits for, and while the fan-out's inline bound has room: the fan-out
    /// makes the first attempt itself. (The fan-out uses [`Endpoints::claim_soon`].)
    #[cfg(test)]
    pub fn claim_now(&self, url: &str, webhook: &str) -> Option<Place<'_>> {
        let inline = self.inline.clone().try_acquire_owned().ok()?;
        self.claim_with(url, webhook, inline)
    }

    /// As [`Endpoints::claim_now`], but when only the inline bound is full, waits for a share
    /// of it until `deadline` (with none, does not wait). Under load the bound is what runs
    /// out first (the attempts of a busy process take longer), and a delivery sent to the job
    /// path instead costs a second JetStream stage, more CPU than the wait; a bound held by a
    /// hanging endpoint costs each fan-out at most the wait.
    pub async fn claim_soon(
        &self,
        url: &str,
        webhook: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<Place<'_>> {
        let inline = match (self.inline.clone().try_acquire_owned(), deadline) {
            (Ok(inline), _) => inline,
            (Err(_), None) => return None,
            (Err(_), Some(deadline)) => {
                // Only worth waiting for where the place would then be given.
                if !self.may_claim(url, webhook) {
                    return None;
                }
                let wait = self.inline.clone().acquire_owned();
                tokio::time::timeout_at(deadline, wait).await.ok()?.ok()?
            }
        };
        self.claim_with(url, webhook, inline)
    }

    /// Whether `webhook` is healthy at its endpoint and a place there is free for it now.
    fn may_claim(&self, url: &str, webhook: &str) -> bool {
        let state = self.state();
        state.endpoints.get(&Self::key(url)).is_some_and(|endpoint| {
            endpoint.lines.get(webhook).is_some_and(|line| line.healthy)
                && endpoint.free_for(webhook)
        })
    }

    fn claim_with(
        &self,
        url: &str,
        webhook: &str,
        inline: OwnedSemaphorePermit,
    ) -> Option<Place<'_>> {
        let key = Self::key(url);
        let mut state = self.state();
        let endpoint = state.endpoints.get_mut(&key)?;
        if !endpoint.lines.get(webhook).is_some_and(|line| line.healthy) {
            return None;
        }
        let grant = endpoint.take_now(webhook)?;
        endpoint.holders += 1;
        if let Some(line) = endpoint.lines.get_mut(webhook) {
            line.holders += 1;
        }
        state.holders += 1;
        let claim = Claim {
            endpoints: self,
            endpoint: key,
            webhook: webhook.to_owned(),
            stage: Stage::Holding(grant),
        };
        Some(Place { claim, _inline: inline })
    }

    /// The limit of the endpoint of `url` now, and the share of `webhook` there.
    #[cfg(test)]
    fn limits_of(&self, url: &str, webhook: &str) -> (usize, usize) {
        let state = self.state();
        let endpoint = &state.endpoints[&Self::key(url)];
        let share = endpoint.lines.get(webhook).map_or(0, |l| l.cap(endpoint.limit.limit, false));
        (endpoint.limit.limit, share)
    }
}

impl Claim<'_> {
    /// The right to make the attempt if it is free now: the common case, with no waiting
    /// machinery (timers, stop signal) set up.
    pub fn try_acquire(&mut self) -> bool {
        match &self.stage {
            Stage::Holding(_) => true,
            Stage::Waiting(waiter) => match waiter.granted() {
                Some(grant) => {
                    self.endpoints.metrics.waiting.dec();
                    self.stage = Stage::Holding(grant);
                    true
                }
                None => false,
            },
            Stage::Admitted => {
                let mut state = self.endpoints.state();
                let grant = state
                    .endpoints
                    .get_mut(&self.endpoint)
                    .and_then(|endpoint| endpoint.take_now(&self.webhook));
                drop(state);
                grant.is_some_and(|grant| {
                    self.stage = Stage::Holding(grant);
                    true
                })
            }
            Stage::Finished => false,
        }
    }

    /// Waits for the right to make the attempt, in the webhook's line. Cancel-safe: a claim
    /// dropped while waiting, or just after its place was given, gives the place back.
    pub async fn acquire(&mut self) {
        if self.try_acquire() {
            return;
        }
        let waiter = match &self.stage {
            Stage::Waiting(waiter) => waiter.clone(),
            Stage::Admitted => {
                let waiter = Arc::new(Waiter::default());
                let mut state = self.endpoints.state();
                let Some(endpoint) = state.endpoints.get_mut(&self.endpoint) else { return };
                endpoint.line(&self.webhook).waiting.push_back(waiter.clone());
                endpoint.wants_turn(&self.webhook);
                endpoint.hand_out();
                self.endpoints.metrics.waiting.inc();
                waiter
            }
            Stage::Holding(_) | Stage::Finished => return,
        };
        self.stage = Stage::Waiting(waiter.clone());
        while !self.try_acquire() {
            waiter.woken.notified().await;
        }
    }

    /// Tells how the attempt made with this claim went and gives its place back: the
    /// endpoint's limit and the webhook's share adapt, and only a succeeding webhook
    /// borrows.
    pub fn finished(mut self, outcome: &AttemptOutcome, latency: Duration) {
        let Stage::Holding(grant) = self.stage else { return };
        self.stage = Stage::Finished;
        let mut state = self.endpoints.state();
        let Some(endpoint) = state.endpoints.get_mut(&self.endpoint) else { return };
        self.endpoints.adapt(&self.endpoint, endpoint, &self.webhook, grant, outcome, latency);
        release(endpoint, &self.webhook);
    }
}

impl Endpoints {
    /// The endpoint's limit and the webhook's share after an attempt that held `grant`.
    fn adapt(
        &self,
        key: &str,
        endpoint: &mut Endpoint,
        webhook: &str,
        grant: Grant,
        outcome: &AttemptOutcome,
        latency: Duration,
    ) {
        // Measured before the place is given back: were all places in use?
        let saturated = endpoint.in_use >= endpoint.limit.limit || !endpoint.turns.is_empty();
        let Some(line) = endpoint.lines.get_mut(webhook) else { return };
        let success = outcome.is_success();
        line.healthy = success;
        let overloaded = outcome.http_status().is_some_and(host_overloaded);
        // What held a place long or asked for less. A refused connection, or a quick 500 of
        // the receiver's own code, fails at once and costs nobody anything: cutting its share
        // would only delay the retries that may succeed (a connect that hangs ends as a
        // timeout, a 500 after a long wait is held long).
        let webhook_failing = match outcome {
            AttemptOutcome::Answered { status, .. } => {
                *status == 429
                    || host_overloaded(*status)
                    || (*status >= 500 && line.held_long(latency))
            }
            AttemptOutcome::TimedOut { .. } => true,
            AttemptOutcome::Failed { .. } => false,
        };
        let slower = success && line.slower(latency);
        if success {
            line.limit.grow();
        } else if webhook_failing && line.limit.cut(50, grant.webhook_round) {
            self.metrics.webhook_failing.inc();
        }
        let limit = &mut endpoint.limit;
        let cut = if overloaded {
            Some((50, &self.metrics.overloaded, "overloaded"))
        } else if slower {
            Some((90, &self.metrics.slower, "slower than usual"))
        } else {
            None
        };
        match cut {
            Some((percent, counter, reason)) if limit.cut(percent, grant.endpoint_round) => {
                counter.inc();
                tracing::debug!(
                    endpoint = key,
                    limit = limit.limit,
                    reason,
                    "endpoint limit cut: fewer attempts at once"
                );
            }
            None if success && saturated => limit.grow(),
            _ => {}
        }
    }
}

/// Gives back a place `webhook` held at `endpoint`, to whoever's turn it is.
fn release(endpoint: &mut Endpoint, webhook: &str) {
    endpoint.in_use -= 1;
    if let Some(line) = endpoint.lines.get_mut(webhook) {
        line.in_use -= 1;
    }
    endpoint.wants_turn(webhook);
    endpoint.hand_out();
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let endpoints = self.endpoints;
        let mut guard = endpoints.state();
        let state = &mut *guard;
        state.holders -= 1;
        let Some(endpoint) = state.endpoints.get_mut(&self.endpoint) else { return };
        match std::mem::replace(&mut self.stage, Stage::Finished) {
            Stage::Holding(_) => release(endpoint, &self.webhook),
            Stage::Waiting(waiter) => {
                if waiter.granted().is_some() {
                    release(endpoint, &self.webhook);
                } else if let Some(line) = endpoint.lines.get_mut(&self.webhook) {
                    line.waiting.retain(|w| !Arc::ptr_eq(w, &waiter));
                }
                endpoints.metrics.waiting.dec();
            }
            Stage::Admitted | Stage::Finished => {}
        }
        endpoint.holders -= 1;
        if let Some(line) = endpoint.lines.get_mut(&self.webhook) {
            line.holders -= 1;
            // A healthy webhook is remembered while idle, and one whose share was cut; an
            // unproven or failing one is not worth remembering (forgotten, it is unproven:
            // the same).
            if line.holders == 0 && !line.healthy && line.limit.limit >= endpoint.limit.limit {
                endpoint.lines.remove(&self.webhook);
                state.lines -= 1;
            }
        }
        if endpoint.forgettable(&endpoints.limits) {
            state.endpoints.remove(&self.endpoint);
        }
        let remembered = endpoints.limits.capacity.max(1) * REMEMBERED_PER_SLOT;
        if state.lines + state.endpoints.len() > remembered {
            forget_idle(state);
        }
    }
}

/// Forgets every idle webhook line, and the endpoints left with nothing to remember.
fn forget_idle(state: &mut State) {
    let mut lines = 0;
    state.endpoints.retain(|_, endpoint| {
        endpoint.lines.retain(|_, line| line.holders > 0);
        lines += endpoint.lines.len();
        !(endpoint.holders == 0 && endpoint.lines.is_empty())
    });
    state.lines = lines;
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:9/";

    fn endpoints(initial: usize, queue: usize, capacity: usize, inline: usize) -> Endpoints {
        let limits = Limits { initial, max: initial * 4, queue, capacity, inline };
        Endpoints::new(limits, crate::metrics::Metrics::new().endpoints)
    }

    fn answered(status: u16) -> AttemptOutcome {
        AttemptOutcome::Answered { status, body_excerpt: String::new(), retry_after: None }
    }

    fn timed_out() -> AttemptOutcome {
        AttemptOutcome::TimedOut { after: Duration::from_secs(10) }
    }

    const FAST: Duration = Duration::from_millis(10);

    /// `n` claims of `webhook` holding a place now.
    fn hold<'a>(endpoints: &'a Endpoints, webhook: &str, n: usize) -> Vec<Claim<'a>> {
        (0..n)
            .map(|i| {
                let mut claim = endpoints.claim(URL, webhook).expect("admitted");
                assert!(claim.try_acquire(), "{webhook}: place {i} of {n} is free");
                claim
            })
            .collect()
    }

    /// Proves `webhook` healthy with one successful attempt.
    fn prove(endpoints: &Endpoints, webhook: &str) {
        hold(endpoints, webhook, 1).pop().expect("held").finished(&answered(200), FAST);
    }

    #[test]
    fn a_full_line_refuses_and_a_released_place_is_given_back() {
        // One place, one waiting place per webhook, no common room to borrow from.
        let endpoints = endpoints(1, 2, 0, 0);
        let a = endpoints.claim(URL, "a").expect("first");
        let _b = endpoints.claim(URL, "a").expect("queued");
        assert!(endpoints.claim(URL, "a").is_none(), "the webhook's line is full");
        assert!(endpoints.claim(URL, "b").is_some(), "another webhook has places of its own");
        assert!(endpoints.claim("http://127.0.0.1:10/", "a").is_some(), "other endpoints too");
        drop(a);
        assert!(endpoints.claim(URL, "a").is_some());
    }

    #[test]
    fn a_healthy_webhook_borrows_until_a_quarter_of_the_room_is_left() {
        // Limit 4 (a webhook's share 3), 4 waiting places (2 a webhook).
        let endpoints = endpoints(4, 4, 100, 0);
        let unproven: Vec<_> = (0..10).map_while(|_| endpoints.claim(URL, "busy")).collect();
        assert_eq!(unproven.len(), 5, "unproven: its share and its waiting places only");
        drop(unproven);
        prove(&endpoints, "busy");
        let held: Vec<_> = (0..100).map_while(|_| endpoints.claim(URL, "busy")).collect();
        assert_eq!(held.len(), 75, "borrowed up to 75 of 100");
        assert!(endpoints.claim(URL, "busy").is_none(), "the reserve is not lent");
        let others: Vec<_> = (0..4).map_while(|_| endpoints.claim(URL, "other")).collect();
        assert!(others.is_empty(), "the endpoint's own places are all taken by the borrower");
        let elsewhere: Vec<_> =
            (0..4).map_while(|_| endpoints.claim("http://127.0.0.1:10/", "x")).collect();
        assert_eq!(elsewhere.len(), 4, "another endpoint still gets its own places");
    }

    #[test]
    fn a_failing_webhook_gets_only_its_own_places() {
        let endpoints = endpoints(4, 4, 100, 0);
        prove(&endpoints, "failing");
        hold(&endpoints, "failing", 1).pop().expect("held").finished(&answered(404), FAST);
        let held: Vec<_> = (0..10).map_while(|_| endpoints.claim(URL, "failing")).collect();
        assert_eq!(held.len(), 5, "its share and its waiting places, no borrowing");
        drop(held);
        prove(&endpoints, "failing");
        assert_eq!((0..10).map_while(|_| endpoints.claim(URL, "failing")).count(), 10);
    }

    #[test]
    fn endpoint_is_scheme_host_and_port() {
        assert_eq!(Endpoints::key("https://Example.com/x?y"), "https://example.com:443");
        assert_eq!(Endpoints::key("http://127.0.0.1:8080/a"), "http://127.0.0.1:8080");
    }

    #[test]
    fn only_a_healthy_webhook_with_a_free_place_takes_a_first_attempt_now() {
        let endpoints = endpoints(4, 4, 100, 4);
        assert!(endpoints.claim_now(URL, "a").is_none(), "unknown: not proven");
        prove(&endpoints, "a");
        assert!(endpoints.claim_now(URL, "b").is_none(), "b is not proven at this endpoint");
        let places: Vec<_> = (0..4).map_while(|_| endpoints.claim_now(URL, "a")).collect();
        assert_eq!(places.len(), 4, "healthy and alone: every place");
        drop(places);
        let place = endpoints.claim_now(URL, "a").expect("healthy and idle: remembered");
        place.claim.finished(&timed_out(), Duration::from_secs(10));
        assert!(endpoints.claim_now(URL, "a").is_none(), "timed out: no longer goes inline");
    }

    #[test]
    fn a_first_attempt_from_the_fan_out_never_jumps_the_line() {
        let endpoints = endpoints(4, 4, 100, 4);
        prove(&endpoints, "a");
        prove(&endpoints, "b");
        let _a = hold(&endpoints, "a", 3);
        let _b = hold(&endpoints, "b", 1);
        let mut waiting = endpoints.claim(URL, "b").expect("admitted");
        assert!(!waiting.try_acquire(), "all four places taken");
        let mut wait = Box::pin(waiting.acquire());
        assert!(futures::FutureExt::now_or_never(wait.as_mut()).is_none(), "waits");
        drop(_b);
        assert!(endpoints.claim_now(URL, "b").is_none(), "the freed place is the waiter's");
        assert!(futures::FutureExt::now_or_never(wait.as_mut()).is_some(), "given to the waiter");
    }

    #[tokio::test]
    async fn a_fan_out_waits_for_the_inline_bound_only_until_its_deadline() {
        use tokio::time::Instant;
        const WAIT: Duration = Duration::from_millis(50);
        // One inline place in the whole dispatcher.
        let endpoints = endpoints(4, 4, 100, 1);
        prove(&endpoints, "a");
        let first = endpoints.claim_now(URL, "a").expect("the inline place");
        let started = Instant::now();
        assert!(endpoints.claim_soon(URL, "a", Some(started + WAIT)).await.is_none(), "still held");
        assert!(started.elapsed() >= WAIT, "waited until the deadline");
        let started = Instant::now();
        assert!(endpoints.claim_soon(URL, "a", None).await.is_none(), "no deadline: no wait");
        assert!(started.elapsed() < WAIT);

        // Given back meanwhile: the waiting fan-out takes it.
        let started = Instant::now();
        let release = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(first);
        };
        let (place, ()) = tokio::join!(
            endpoints.claim_soon(URL, "a", Some(started + Duration::from_secs(5))),
            release
        );
        assert!(place.is_some(), "the freed share is taken");
        assert!(started.elapsed() < Duration::from_secs(1), "without waiting out the deadline");

        // Nothing to wait for where no place would be given: an unproven webhook.
        let started = Instant::now();
        let unproven = endpoints.claim_soon(URL, "b", Some(started + Duration::from_secs(5))).await;
        assert!(unproven.is_none());
        assert!(started.elapsed() < Duration::from_secs(1), "refused at once");
    }

    #[test]
    fn freed_places_go_to_the_webhooks_in_turn() {
        let endpoints = endpoints(4, 8, 100, 0);
        let mut x = hold(&endpoints, "x", 3);
        let _y = hold(&endpoints, "y", 1);
        // a's jobs arrive first, then b's: a line in arrival order would serve a, a, b, b.
        let mut waiting: Vec<(&str, Claim<'_>)> = ["a", "a", "b", "b"]
            .into_iter()
            .map(|w| (w, endpoints.claim(URL, w).expect("admitted")))
            .collect();
        for (_, claim) in &mut waiting {
            let mut wait = Box::pin(claim.acquire());
            assert!(futures::FutureExt::now_or_never(wait.as_mut()).is_none(), "all taken");
        }
        let mut served = Vec::new();
        let mut holding = [false; 4];
        while let Some(claim) = x.pop() {
            claim.finished(&answered(200), FAST);
            for (i, (webhook, claim)) in waiting.iter_mut().enumerate() {
                if !holding[i] && claim.try_acquire() {
                    holding[i] = true;
                    served.push(*webhook);
                }
            }
        }
        assert_eq!(served, ["a", "b", "a"], "one webhook's turn at a time");
    }

    #[test]
    fn a_healthy_webhook_alone_uses_every_place_until_another_waits() {
        let endpoints = endpoints(4, 8, 100, 0);
        prove(&endpoints, "big");
        let mut big = hold(&endpoints, "big", 4);
        let mut more = endpoints.claim(URL, "big").expect("a waiting place");
        let mut other = endpoints.claim(URL, "other").expect("a waiting place");
        for claim in [&mut more, &mut other] {
            let mut wait = Box::pin(claim.acquire());
            assert!(futures::FutureExt::now_or_never(wait.as_mut()).is_none(), "all taken");
        }
        big.pop().expect("held").finished(&answered(200), FAST);
        assert!(other.try_acquire(), "the freed place goes to the webhook that waits");
        assert!(!more.try_acquire());
        big.pop().expect("held").finished(&answered(200), FAST);
        assert!(more.try_acquire(), "nobody else waits: big may take it");
    }

    #[test]
    fn a_webhook_never_holds_more_than_its_share() {
        let endpoints = endpoints(8, 16, 100, 0);
        let hanging = hold(&endpoints, "hanging", 6);
        let mut seventh = endpoints.claim(URL, "hanging").expect("a waiting place");
        assert!(!seventh.try_acquire(), "6 of 8 is its share");
        let others = hold(&endpoints, "fast", 2);
        assert_eq!(others.len(), 2, "the last quarter stays for the other webhooks");
        drop(hanging);
        assert!(seventh.try_acquire());
    }

    #[test]
    fn a_hanging_webhooks_share_is_cut_once_per_round_down_to_one() {
        let endpoints = endpoints(8, 16, 100, 0);
        let rounds = [(6, 4), (4, 2), (2, 1), (1, 1)];
        for (round, (held, share_after)) in rounds.into_iter().enumerate() {
            for claim in hold(&endpoints, "hanging", held) {
                claim.finished(&timed_out(), Duration::from_secs(10));
            }
            let (limit, share) = endpoints.limits_of(URL, "hanging");
            assert_eq!(share, share_after, "round {round}: halved once, however many timed out");
            assert_eq!(limit, 8, "a timeout of one URL is not the host's trouble");
        }
        let mut extra = endpoints.claim(URL, "hanging").expect("a waiting place");
        let _one = hold(&endpoints, "hanging", 1);
        assert!(!extra.try_acquire(), "one place at a time now");
        // Successes win the share back, a place per round of them.
        drop(extra);
        drop(_one);
        for _ in 0..10 {
            hold(&endpoints, "hanging", 1).pop().expect("held").finished(&answered(200), FAST);
        }
        assert!(endpoints.limits_of(URL, "hanging").1 >= 4, "recovering");
    }

    #[test]
    fn a_quick_500_leaves_the_share_and_a_slow_one_cuts_it() {
        let endpoints = endpoints(8, 16, 100, 0);
        prove(&endpoints, "buggy");
        // One claim stays, so the line (forgotten when idle and failing) can be looked at.
        let _kept = hold(&endpoints, "buggy", 1);
        // Answered at once: the receiver's own bug holds nothing, its retries must not wait.
        for claim in hold(&endpoints, "buggy", 5) {
            claim.finished(&answered(500), FAST);
        }
        assert_eq!(endpoints.limits_of(URL, "buggy"), (8, 6), "share and limit unchanged");
        // Answered after a long wait: the place was held, as by a hanging URL.
        for claim in hold(&endpoints, "buggy", 5) {
            claim.finished(&answered(500), Duration::from_secs(5));
        }
        assert_eq!(endpoints.limits_of(URL, "buggy"), (8, 4), "halved once; the host untouched");
    }

    #[test]
    fn an_overloaded_endpoint_halves_once_per_round_and_grows_back_while_busy() {
        let endpoints = endpoints(8, 16, 100, 0);
        let mut held = hold(&endpoints, "a", 6);
        held.extend(hold(&endpoints, "b", 2));
        for claim in held {
            claim.finished(&answered(503), FAST);
        }
        assert_eq!(endpoints.limits_of(URL, "a").0, 4, "eight 503s of one round: one cut");
        for claim in hold(&endpoints, "b", 2) {
            claim.finished(&answered(500), FAST);
        }
        assert_eq!(endpoints.limits_of(URL, "b").0, 4, "a 500 is one webhook's, not the host's");
        // All four places in use: each success counts towards one more place.
        for _ in 0..4 {
            let mut held = hold(&endpoints, "a", 3);
            held.extend(hold(&endpoints, "c", 1));
            held.pop().expect("held").finished(&answered(200), FAST);
        }
        assert_eq!(endpoints.limits_of(URL, "a").0, 5, "a round of successes: one more");
        // Idle, successes do not raise it.
        for _ in 0..20 {
            prove(&endpoints, "c");
        }
        assert_eq!(endpoints.limits_of(URL, "a").0, 5);
    }

    #[test]
    fn slower_answers_cut_the_endpoint_by_a_tenth() {
        let endpoints = endpoints(10, 16, 100, 0);
        prove(&endpoints, "a");
        hold(&endpoints, "a", 1).pop().expect("held").finished(&answered(200), FAST * 3);
        assert_eq!(endpoints.limits_of(URL, "a").0, 10, "30 ms after 10 ms is noise");
        let slow = Duration::from_millis(400);
        hold(&endpoints, "a", 1).pop().expect("held").finished(&answered(200), slow);
        assert_eq!(endpoints.limits_of(URL, "a").0, 9);
    }

    #[test]
    fn a_claim_dropped_while_waiting_or_just_granted_gives_its_place_back() {
        let endpoints = endpoints(1, 8, 100, 0);
        let held = hold(&endpoints, "a", 1);
        let mut granted = endpoints.claim(URL, "b").expect("admitted");
        let mut never = endpoints.claim(URL, "c").expect("admitted");
        for claim in [&mut granted, &mut never] {
            let mut wait = Box::pin(claim.acquire());
            assert!(futures::FutureExt::now_or_never(wait.as_mut()).is_none());
        }
        drop(held);
        // b was given the place while nobody polled it; dropping it gives it on to c.
        drop(granted);
        assert!(never.try_acquire(), "the place went on");
        drop(never);
        assert_eq!(hold(&endpoints, "d", 1).len(), 1, "and back");
    }
}
