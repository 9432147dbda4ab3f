//! OAuth2 access tokens for deliveries to webhooks with a credential. The control plane
//! fetches tokens (it holds the client secret); this cache keeps each credential's token for
//! every attempt of this process and asks again only shortly before it expires, or once when
//! an endpoint refuses it.
//!
//! Invariants: at most one request per credential is in flight (single-flight), and a caller
//! that waited for someone else's request takes that request's result, token or error, so N
//! concurrent callers cause one request. Tokens are never logged.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::ControlClient;
use chrono::{DateTime, Utc};
use hookd_core::CredentialId;
use hookd_proto::{convert::from_timestamp, v1::GetAccessTokenRequest};

/// A token is not used within this margin of its expiry: it could expire in flight.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Longest wait for the control plane's answer.
const TOKEN_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// An access token; shared, as every attempt of the credential sends the same one.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: Arc<str>,
    /// `None`: the control plane knows no expiry; the token is used until an endpoint refuses it.
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The message is the attempt's error, as the history shows it.
    #[error("oauth2 token for credential {credential_id} unavailable: {reason}")]
    Unavailable { credential_id: CredentialId, reason: String },
}

/// Where tokens come from: the control plane, or a fake in tests.
pub trait TokenSource: Send + Sync + 'static {
    /// A token for `credential`. `rejected` is a token an endpoint refused with 401: the
    /// source should replace it rather than answer it again.
    fn fetch(
        &self,
        tenant: &str,
        credential: &CredentialId,
        rejected: Option<&str>,
    ) -> impl Future<Output = Result<AccessToken, TokenError>> + Send;
}

/// `DispatchService.GetAccessToken` on the control plane.
#[derive(Clone)]
pub struct ControlTokens {
    client: ControlClient,
}

impl ControlTokens {
    pub fn new(client: ControlClient) -> Self {
        Self { client }
    }
}

impl TokenSource for ControlTokens {
    async fn fetch(
        &self,
        tenant: &str,
        credential: &CredentialId,
        rejected: Option<&str>,
    ) -> Result<AccessToken, TokenError> {
        let unavailable =
            |reason: String| TokenError::Unavailable { credential_id: credential.clone(), reason };
        let mut request = tonic::Request::new(GetAccessTokenRequest {
            tenant: tenant.to_owned(),
            credential_id: credential.to_string(),
            rejected_token: rejected.unwrap_or_default().to_owned(),
        });
        request.set_timeout(TOKEN_RPC_TIMEOUT);
        let mut client = self.client.clone();
        let answer = tokio::time::timeout(TOKEN_RPC_TIMEOUT, client.get_access_token(request))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "no answer from the control plane within {} s",
                    TOKEN_RPC_TIMEOUT.as_secs()
                ))
            })?;
        let response = answer
            .map_err(|status| {
                let reason = if status.message().is_empty() {
                    format!("{:?}", status.code())
                } else {
                    status.message().to_owned()
                };
                unavailable(reason)
            })?
            .into_inner();
        if response.access_token.is_empty() {
            return Err(unavailable("the control plane sent an empty access token".to_owned()));
        }
        Ok(AccessToken {
            token: Arc::from(response.access_token),
            expires_at: response.expires_at.as_ref().and_then(from_timestamp),
        })
    }
}

/// The token cache, shared by every attempt of the process.
pub struct Tokens<S = ControlTokens> {
    source: S,
    slots: Mutex<HashMap<CredentialId, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    /// Held by the one caller fetching; the others queue on it and then use its result.
    flight: tokio::sync::Mutex<()>,
    last: Mutex<Last>,
}

/// The last fetch's result: at most one of the two is set.
#[derive(Default)]
struct Last {
    token: Option<(AccessToken, Instant)>,
    failure: Option<(TokenError, Instant)>,
}

impl Slot {
    fn last(&self) -> std::sync::MutexGuard<'_, Last> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token if it is still good for a while and is not `rejected`.
    fn fresh(&self, rejected: Option<&str>) -> Option<AccessToken> {
        let last = self.last();
        let (token, _) = last.token.as_ref()?;
        let margin = chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default();
        let fresh = token.expires_at.is_none_or(|at| Utc::now() + margin < at);
        (fresh && rejected.is_none_or(|r| *token.token != *r)).then(|| token.clone())
    }

    /// The result of a fetch that ended after `asked`, if there was one: a caller that waited
    /// for it takes it rather than asking again. A token equal to `rejected` does not count.
    fn since(
        &self,
        asked: Instant,
        rejected: Option<&str>,
    ) -> Option<Result<AccessToken, TokenError>> {
        let last = self.last();
        if let Some((error, at)) = &last.failure
            && *at >= asked
        {
            return Some(Err(error.clone()));
        }
        match &last.token {
            Some((token, at)) if *at >= asked && rejected.is_none_or(|r| *token.token != *r) => {
                Some(Ok(token.clone()))
            }
            _ => None,
        }
    }

    fn store(&self, result: &Result<AccessToken, TokenError>) {
        let now = Instant::now();
        let mut last = self.last();
        // A failed fetch drops the old token too: it was stale or refused.
        *last = match result {
            Ok(token) => Last { token: Some((token.clone(), now)), failure: None },
            Err(error) => Last { token: None, failure: Some((error.clone(), now)) },
        };
    }
}

impl<S: TokenSource> Tokens<S> {
    pub fn new(source: S) -> Self {
        Self { source, slots: Mutex::default() }
    }

    fn slot(&self, credential: &CredentialId) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // Credentials are few and long-lived: a slot per credential ever used is kept.
        match slots.get(credential) {
            Some(slot) => slot.clone(),
            None => slots.entry(credential.clone()).or_default().clone(),
        }
    }

    /// A token for `credential`: the cached one while it is fresh, else a new one.
    pub async fn get(
        &self,
        tenant: &str,
        credential: &CredentialId,
    ) -> Result<AccessToken, TokenError> {
        let slot = self.slot(credential);
        if let Some(token) = slot.fresh(None) {
            return Ok(token);
        }
        let asked = Instant::now();
        let _flight = slot.flight.lock().await;
        if let Some(result) = slot.since(asked, None) {
            return result;
        }
        if let Some(token) = slot.fresh(None) {
            return Ok(token);
        }
        tracing::debug!(credential_id = %credential, "fetching an oauth2 access token");
        let result = self.source.fetch(tenant, credential, None).await;
        slot.store(&result);
        result
    }

    /// A replacement for `rejected`, which an endpoint refused with 401. If another caller
    /// has already replaced it, that replacement is used without asking again.
    pub async fn refresh(
        &self,
        tenant: &str,
        credential: &CredentialId,
        rejected: &str,
    ) -> Result<AccessToken, TokenError> {
        let slot = self.slot(credential);
        let asked = Instant::now();
        let _flight = slot.flight.lock().await;
        if let Some(result) = slot.since(asked, Some(rejected)) {
            return result;
        }
        if let Some(token) = slot.fresh(Some(rejected)) {
            return Ok(token);
        }
        tracing::debug!(credential_id = %credential, "access token refused; asking for a new one");
        let result = self.source.fetch(tenant, credential, Some(rejected)).await;
        slot.store(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;

    use super::*;

    /// Hands out `t1`, `t2`, … expiring `lifetime` from now, or fails while `failing`.
    struct Fake {
        calls: AtomicUsize,
        rejected: Mutex<Vec<String>>,
        lifetime: chrono::Duration,
        failing: std::sync::atomic::AtomicBool,
    }

    impl Fake {
        fn new(lifetime: chrono::Duration) -> Self {
            Self {
                calls: AtomicUsize::new(0),
                rejected: Mutex::default(),
                lifetime,
                failing: false.into(),
            }
        }
    }

    impl TokenSource for Fake {
        async fn fetch(
            &self,
            _tenant: &str,
            credential: &CredentialId,
            rejected: Option<&str>,
        ) -> Result<AccessToken, TokenError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(r) = rejected {
                self.rejected.lock().expect("not poisoned").push(r.to_owned());
            }
            // Lets every other caller run up to the flight lock before this one ends.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            if self.failing.load(Ordering::SeqCst) {
                return Err(TokenError::Unavailable {
                    credential_id: credential.clone(),
                    reason: "token endpoint said no".into(),
                });
            }
            Ok(AccessToken {
                token: Arc::from(format!("t{n}")),
                expires_at: Some(Utc::now() + self.lifetime),
            })
        }
    }

    fn cred() -> CredentialId {
        CredentialId::from("cred_1")
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_reuse_a_fresh_token() {
        let tokens = Tokens::new(Fake::new(chrono::Duration::hours(1)));
        let c = cred();
        let got = join_all((0..50).map(|_| tokens.get("default", &c))).await;
        assert!(got.iter().all(|t| t.as_ref().map(|t| &*t.token) == Ok("t1")), "{got:?}");
        assert_eq!(tokens.source.calls.load(Ordering::SeqCst), 1);
        let again = tokens.get("default", &cred()).await.expect("token");
        assert_eq!(&*again.token, "t1");
        assert_eq!(tokens.source.calls.load(Ordering::SeqCst), 1, "fresh token reused");
        // Another credential has its own token.
        let other = tokens.get("default", &CredentialId::from("cred_2")).await.expect("token");
        assert_eq!(&*other.token, "t2");
    }

    #[tokio::test]
    async fn a_token_within_30_s_of_expiry_is_replaced() {
        let tokens = Tokens::new(Fake::new(chrono::Duration::seconds(29)));
        assert_eq!(&*tokens.get("default", &cred()).await.expect("token").token, "t1");
        assert_eq!(&*tokens.get("default", &cred()).await.expect("token").token, "t2");
        assert_eq!(tokens.source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_rejected_token_is_replaced_once_for_all_who_saw_it_refused() {
        let tokens = Tokens::new(Fake::new(chrono::Duration::hours(1)));
        let first = tokens.get("default", &cred()).await.expect("token");
        let c = cred();
        let refreshed =
            join_all((0..20).map(|_| tokens.refresh("default", &c, &first.token))).await;
        assert!(refreshed.iter().all(|t| t.as_ref().map(|t| &*t.token) == Ok("t2")));
        assert_eq!(tokens.source.calls.load(Ordering::SeqCst), 2);
        assert_eq!(*tokens.source.rejected.lock().expect("not poisoned"), ["t1"]);
        // A late caller that still holds the old token gets the new one without a fetch.
        let late = tokens.refresh("default", &cred(), "t1").await.expect("token");
        assert_eq!(&*late.token, "t2");
        assert_eq!(tokens.source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failure_is_shared_by_the_waiters_and_not_cached() {
        let tokens = Tokens::new(Fake::new(chrono::Duration::hours(1)));
        tokens.source.failing.store(true, Ordering::SeqCst);
        let c = cred();
        let got = join_all((0..10).map(|_| tokens.get("default", &c))).await;
        assert_eq!(tokens.source.calls.load(Ordering::SeqCst), 1);
        let error = got[9].clone().expect_err("failed");
        assert_eq!(
            error.to_string(),
            "oauth2 token for credential cred_1 unavailable: token endpoint said no"
        );
        tokens.source.failing.store(false, Ordering::SeqCst);
        assert_eq!(&*tokens.get("default", &cred()).await.expect("token").token, "t2");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = AccessToken { token: Arc::from("s3cret"), expires_at: None };
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
