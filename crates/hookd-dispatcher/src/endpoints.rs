//! Per-endpoint concurrency: at most `limit` attempts at one endpoint (scheme, host, port) at
//! a time, and at most `queue` more waiting for it, so a slow endpoint holds a bounded share of
//! the dispatcher and never starves the others.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

struct Endpoint {
    permits: Arc<Semaphore>,
    /// Jobs holding or waiting for a permit.
    holders: usize,
}

pub struct Endpoints {
    limit: usize,
    queue: usize,
    endpoints: Mutex<HashMap<String, Endpoint>>,
}

/// A claim on an endpoint: wait on it for the right to make the attempt. Dropping it (with
/// or without the permit) gives the place back.
pub struct Claim<'a> {
    endpoints: &'a Endpoints,
    key: String,
    permits: Arc<Semaphore>,
}

impl Endpoints {
    pub fn new(limit: usize, queue: usize) -> Self {
        Self { limit: limit.max(1), queue, endpoints: Mutex::default() }
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

    /// A place in the endpoint's line, or `None` when its line is full.
    pub fn claim(&self, url: &str) -> Option<Claim<'_>> {
        let key = Self::key(url);
        let mut endpoints =
            self.endpoints.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let endpoint = endpoints.entry(key.clone()).or_insert_with(|| Endpoint {
            permits: Arc::new(Semaphore::new(self.limit)),
            holders: 0,
        });
        if endpoint.holders >= self.limit + self.queue {
            return None;
        }
        endpoint.holders += 1;
        Some(Claim { endpoints: self, key, permits: endpoint.permits.clone() })
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
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut endpoints =
            self.endpoints.endpoints.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(endpoint) = endpoints.get_mut(&self.key) {
            endpoint.holders -= 1;
            if endpoint.holders == 0 {
                endpoints.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_line_refuses_and_a_released_place_is_given_back() {
        let endpoints = Endpoints::new(1, 1);
        let a = endpoints.claim("http://127.0.0.1:9/a").expect("first");
        let _b = endpoints.claim("http://127.0.0.1:9/b").expect("queued");
        assert!(endpoints.claim("http://127.0.0.1:9/c").is_none(), "line is full");
        assert!(endpoints.claim("http://127.0.0.1:10/").is_some(), "other endpoints are free");
        drop(a);
        assert!(endpoints.claim("http://127.0.0.1:9/c").is_some());
    }

    #[test]
    fn endpoint_is_scheme_host_and_port() {
        assert_eq!(Endpoints::key("https://Example.com/x?y"), "https://example.com:443");
        assert_eq!(Endpoints::key("http://127.0.0.1:8080/a"), "http://127.0.0.1:8080");
    }
}
