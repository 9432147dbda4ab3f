//! Rate limits per webhook (B8), shared by every dispatcher: one token bucket per limited
//! webhook in the NATS key-value bucket `hookd_rate_limits`, taken from with compare-and-set
//! writes (`hookd_core::rate_limit::TokenBucket` does the arithmetic). Each attempt takes one
//! token, whichever dispatcher makes it, so the limit holds for all of them together; no
//! dispatcher needs to know how many others there are, and one that has all the work gets the
//! whole rate.
//!
//! Within a dispatcher the jobs of one webhook queue for its bucket behind a local lock (one
//! of them asks NATS at a time). Only a bounded number wait in the dispatcher, about two
//! seconds' worth: the rest are put back as stored messages due when their turn would come,
//! with their attempt numbers unchanged, so a limited webhook with a backlog never fills the
//! dispatcher's slots and holds up the others.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::kv;
use bytes::Bytes;
use chrono::Utc;
use hookd_core::rate_limit::{RateLimit, TokenBucket};
use tokio::sync::watch;

/// Most jobs of one webhook waiting for a token in one dispatcher.
const MAX_LOCAL_WAITING: usize = 512;

/// What a job may do about its webhook's rate limit.
pub enum Permit {
    /// A token: attempt now.
    Go,
    /// Over the limit: put the job back until then.
    Later(chrono::DateTime<Utc>),
    Stopped,
}

#[derive(Default)]
struct Local {
    /// Serialises this dispatcher's takers of one bucket.
    turn: Arc<tokio::sync::Mutex<()>>,
    waiting: Arc<AtomicUsize>,
}

pub struct RateLimits {
    kv: kv::Store,
    local: Mutex<HashMap<String, Local>>,
}

fn bucket_key(tenant: &str, webhook: &hookd_core::WebhookId) -> String {
    format!("{tenant}.{webhook}")
}

impl RateLimits {
    pub fn new(kv: kv::Store) -> Self {
        Self { kv, local: Mutex::default() }
    }

    /// One token of the webhook's bucket, waiting for it if it comes soon enough.
    pub async fn acquire(
        &self,
        tenant: &str,
        webhook: &hookd_core::Webhook,
        limit: RateLimit,
        stopping: &mut watch::Receiver<bool>,
    ) -> Permit {
        let key = bucket_key(tenant, &webhook.id);
        let (turn, waiting) = {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            let l = local.entry(key.clone()).or_default();
            (l.turn.clone(), l.waiting.clone())
        };
        let cap = usize::try_from(limit.per_second.saturating_mul(2))
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_LOCAL_WAITING);
        let ahead = waiting.fetch_add(1, Ordering::SeqCst);
        let _counted = Counted(&waiting);
        if ahead >= cap {
            // Its turn would come in about ahead / rate seconds: wait for it as a stored
            // message.
            let secs = ahead as f64 / f64::from(limit.per_second.max(1));
            let delay = chrono::Duration::milliseconds((secs * 1000.0) as i64 + 100);
            return Permit::Later(Utc::now() + delay);
        }
        let _turn = tokio::select! {
            guard = turn.lock_owned() => guard,
            true = stopped(stopping) => return Permit::Stopped,
        };
        loop {
            match self.take(&key, limit).await {
                Ok(None) => return Permit::Go,
                Ok(Some(wait)) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        true = stopped(stopping) => return Permit::Stopped,
                    }
                }
                Err(error) => {
                    // Without the bucket the limit cannot be kept: wait rather than flood.
                    tracing::warn!(%error, "cannot take from the rate limit's bucket; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        true = stopped(stopping) => return Permit::Stopped,
                    }
                }
            }
        }
    }

    /// Takes one token: `None` when taken, or how long until one may be.
    async fn take(&self, key: &str, limit: RateLimit) -> Result<Option<Duration>, String> {
        loop {
            let now = Utc::now().timestamp_millis();
            let entry = self.kv.entry(key).await.map_err(|e| e.to_string())?;
            let (revision, mut bucket) = match entry {
                Some(e) if e.operation == kv::Operation::Put => (
                    e.revision,
                    serde_json::from_slice(&e.value).unwrap_or(TokenBucket::full(&limit, now)),
                ),
                _ => (0, TokenBucket::full(&limit, now)),
            };
            let granted = bucket.take(&limit, now, 1);
            let value = Bytes::from(serde_json::to_vec(&bucket).unwrap_or_default());
            let written = if revision == 0 {
                match self.kv.create(key, value).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(e) => return Err(e.to_string()),
                }
            } else if granted == 0 {
                // Nothing taken: nothing to write.
                true
            } else {
                match self.kv.update(key, value, revision).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(e) => return Err(e.to_string()),
                }
            };
            if !written {
                continue;
            }
            return Ok(if granted == 1 {
                None
            } else {
                Some(Duration::from_millis(bucket.wait_ms(&limit)))
            });
        }
    }
}

struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn stopped(stopping: &mut watch::Receiver<bool>) -> bool {
    stopping.wait_for(|s| *s).await.is_ok()
}
