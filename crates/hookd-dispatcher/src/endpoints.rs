//! Per-endpoint concurrency: at most `limit` attempts at one endpoint (scheme, host, port) at
//! a time, with jobs waiting for it in arrival order, so a slow endpoint holds a bounded share
//! of the dispatcher and never starves the others, while a healthy one with a backlog runs at
//! its own speed.
//!
//! Waiting places: every endpoint may have `queue` jobs waiting, whatever the others do. A
//! *healthy* endpoint (its last finished attempt succeeded) may borrow more from the dispatcher's
//! common room (`capacity`, the in-flight bound) as long as a quarter of that room stays free
//! for the others: a platform's big integration catching up drains at the endpoint's pace
//! instead of having its overflow put back and fetched again. A failing or hanging endpoint,
//! or one with no finished attempt yet, gets only its own places, so its jobs cannot fill the
//! dispatcher.
//!
//! A healthy endpoint with a free place right now may also take a delivery's first attempt
//! straight from the fan-out ([`Endpoints::claim_now`]), at most `inline` such attempts at
//! once in the whole dispatcher, so that an endpoint that suddenly hangs holds a bounded part
//! of the fan-out for at most one attempt timeout. Health is remembered while an endpoint is
//! idle (its places all free), so a steady trickle of events keeps taking that path.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

struct Endpoint {
    permits: Arc<Semaphore>,
    /// Jobs holding or waiting for a permit.
    holders: usize,
    /// Whether the last attempt that finished here succeeded. An endpoint proves itself
    /// first: one that hangs must not borrow before its first attempt times out.
    healthy: bool,
}

#[derive(Default)]
struct State {
    endpoints: HashMap<String, Endpoint>,
    /// Jobs holding a place at any endpoint.
    holders: usize,
}

pub struct Endpoints {
    limit: usize,
    queue: usize,
    /// The dispatcher's in-flight bound: the common room endpoints borrow from.
    capacity: usize,
    /// First attempts the fan-out may make at once.
    inline: Arc<Semaphore>,
    state: Mutex<State>,
}

/// A place taken now for a first attempt made by the fan-out: the claim, its permit, and a
/// share of the fan-out's inline bound.
pub struct Place<'a> {
    pub claim: Claim<'a>,
    pub permit: OwnedSemaphorePermit,
    _inline: OwnedSemaphorePermit,
}

/// Idle endpoints remembered (for their health) at most this many times the in-flight bound;
/// beyond it the idle ones are forgotten.
const REMEMBERED_PER_SLOT: usize = 4;

/// A claim on an endpoint: wait on it for the right to make the attempt. Dropping it (with
/// or without the permit) gives the place back.
pub struct Claim<'a> {
    endpoints: &'a Endpoints,
    key: String,
    permits: Arc<Semaphore>,
}

impl Endpoints {
    pub fn new(limit: usize, queue: usize, capacity: usize, inline: usize) -> Self {
        Self {
            limit: limit.max(1),
            queue,
            capacity,
            inline: Arc::new(Semaphore::new(inline)),
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

    /// A place in the endpoint's line, or `None` when it has no place left: its own are
    /// taken, and it may not borrow (it is failing, or the common room is down to its
    /// reserve).
    pub fn claim(&self, url: &str) -> Option<Claim<'_>> {
        let key = Self::key(url);
        let mut state = self.state();
        let total = state.holders;
        let endpoint = state.endpoints.entry(key.clone()).or_insert_with(|| Endpoint {
            permits: Arc::new(Semaphore::new(self.limit)),
            holders: 0,
            healthy: false,
        });
        let own = endpoint.holders < self.limit + self.queue;
        let borrow = endpoint.healthy && total < self.capacity - self.capacity / 4;
        if !own && !borrow {
            return None;
        }
        endpoint.holders += 1;
        let permits = endpoint.permits.clone();
        state.holders += 1;
        Some(Claim { endpoints: self, key, permits })
    }
}

impl Endpoints {
    /// A place for an attempt now, only at a healthy endpoint with a free permit and while
    /// the fan-out's inline bound has room: the fan-out makes the first attempt itself.
    pub fn claim_now(&self, url: &str) -> Option<Place<'_>> {
        let inline = self.inline.clone().try_acquire_owned().ok()?;
        let key = Self::key(url);
        let mut state = self.state();
        let endpoint = state.endpoints.get_mut(&key).filter(|e| e.healthy)?;
        let permit = endpoint.permits.clone().try_acquire_owned().ok()?;
        endpoint.holders += 1;
        state.holders += 1;
        let claim = Claim { endpoints: self, key, permits: permit.semaphore().clone() };
        Some(Place { claim, permit, _inline: inline })
    }
}

impl Claim<'_> {
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// The right to make the attempt if it is free now: the common case, with no waiting
    /// machinery (timers, stop signal) set up.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Tells how the attempt made with this claim went: only a succeeding endpoint borrows.
    pub fn finished(&self, success: bool) {
        if let Some(endpoint) = self.endpoints.state().endpoints.get_mut(&self.key) {
            endpoint.healthy = success;
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut state = self.endpoints.state();
        state.holders -= 1;
        if let Some(endpoint) = state.endpoints.get_mut(&self.key) {
            endpoint.holders -= 1;
            // A healthy endpoint is remembered while idle; an unproven or failing one is not
            // worth remembering (forgotten, it is unproven: the same to `claim`).
            if endpoint.holders == 0 && !endpoint.healthy {
                state.endpoints.remove(&self.key);
            }
        }
        let remembered = self.endpoints.capacity.max(1) * REMEMBERED_PER_SLOT;
        if state.endpoints.len() > remembered {
            state.endpoints.retain(|_, e| e.holders > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_line_refuses_and_a_released_place_is_given_back() {
        // No common room to borrow from: each endpoint has its own places only.
        let endpoints = Endpoints::new(1, 1, 0, 0);
        let a = endpoints.claim("http://127.0.0.1:9/a").expect("first");
        let _b = endpoints.claim("http://127.0.0.1:9/b").expect("queued");
        assert!(endpoints.claim("http://127.0.0.1:9/c").is_none(), "line is full");
        assert!(endpoints.claim("http://127.0.0.1:10/").is_some(), "other endpoints are free");
        drop(a);
        assert!(endpoints.claim("http://127.0.0.1:9/c").is_some());
    }

    #[test]
    fn a_healthy_endpoint_borrows_until_a_quarter_of_the_room_is_left() {
        let endpoints = Endpoints::new(2, 2, 100, 0);
        let busy = "http://127.0.0.1:9/";
        let first = endpoints.claim(busy).expect("own place");
        let unproven: Vec<_> = (0..10).map_while(|_| endpoints.claim(busy)).collect();
        assert_eq!(unproven.len(), 3, "unproven: its own places only");
        drop(unproven);
        first.finished(true);
        let mut held: Vec<_> = (0..75).map_while(|_| endpoints.claim(busy)).collect();
        held.push(first);
        assert_eq!(held.len(), 75, "4 own places, then borrowed up to 75 of 100");
        assert!(endpoints.claim(busy).is_none(), "the reserve is not lent");
        let others: Vec<_> = (0..4)
            .map(|_| endpoints.claim("http://127.0.0.1:10/"))
            .collect::<Option<_>>()
            .expect("own places");
        assert_eq!(others.len(), 4, "another endpoint still gets its own places");
    }

    #[test]
    fn a_failing_endpoint_gets_only_its_own_places() {
        let endpoints = Endpoints::new(2, 2, 100, 0);
        let failing = "http://127.0.0.1:9/";
        let first = endpoints.claim(failing).expect("own place");
        first.finished(true);
        first.finished(false);
        let held: Vec<_> = (0..10).map_while(|_| endpoints.claim(failing)).collect();
        assert_eq!(held.len(), 3, "4 places in all, no borrowing");
        held[0].finished(true);
        assert!(endpoints.claim(failing).is_some(), "healthy again: borrows");
    }

    #[test]
    fn endpoint_is_scheme_host_and_port() {
        assert_eq!(Endpoints::key("https://Example.com/x?y"), "https://example.com:443");
        assert_eq!(Endpoints::key("http://127.0.0.1:8080/a"), "http://127.0.0.1:8080");
    }

    #[test]
    fn only_a_healthy_endpoint_with_a_free_place_takes_a_first_attempt_now() {
        let endpoints = Endpoints::new(2, 2, 100, 3);
        let url = "http://127.0.0.1:9/";
        assert!(endpoints.claim_now(url).is_none(), "unknown: not proven");
        let first = endpoints.claim(url).expect("own place");
        first.finished(true);
        drop(first);
        let a = endpoints.claim_now(url).expect("healthy and idle: remembered");
        let b = endpoints.claim_now(url).expect("a second permit");
        assert!(endpoints.claim_now(url).is_none(), "both permits taken");
        drop(b);
        let other = endpoints.claim("http://127.0.0.1:10/").expect("own place");
        other.finished(true);
        drop(other);
        let c = endpoints.claim_now(url).expect("a permit again");
        let d = endpoints.claim_now("http://127.0.0.1:10/").expect("the third inline place");
        assert!(endpoints.claim_now("http://127.0.0.1:10/").is_none(), "the inline bound");
        a.claim.finished(false);
        drop((a, c, d));
        assert!(endpoints.claim_now(url).is_none(), "failed: no longer takes first attempts");
    }
}
