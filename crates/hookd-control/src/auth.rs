//! Authentication of every gRPC call and the permission checks of the handlers.
//!
//! API tokens: the interceptor on each public service hashes the bearer token (SHA-256) and
//! looks the hash up in [`TokenTable`], an in-memory copy of the `api_tokens` and `roles`
//! tables. It is reloaded after every change this process makes and every few seconds, so
//! several control planes on one database agree within that interval. A known token puts its
//! [`Caller`] into the request extensions; handlers then call [`require`] and take the tenant
//! from the caller only, never from the request body.
//!
//! Dispatchers present a separate shared secret (`dispatcher_token`) that only
//! `DispatchService` accepts; API tokens are refused there, and the dispatcher token
//! everywhere else (it is never in the token table).
//!
//! Token values are never logged or stored; logs name token ids.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use base64::Engine as _;
use hookd_core::access::{Permission, builtin_role};
use hookd_proto::auth::{TokenError, bearer_token};
use hookd_storage::{StorageError, Store};
use sha2::{Digest, Sha256};
use tonic::{Request, Status, service::Interceptor};

use crate::ControlError;

/// Who is calling: filled in by the interceptor from the token, read by handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub token_id: String,
    pub role: String,
    pub permissions: Vec<Permission>,
}

/// The prefix of every API token hookd generates, so they are easy to spot (and to scan for
/// in leaked text).
pub const TOKEN_PREFIX: &str = "hkd_";
/// The shortest configured token (bootstrap or dispatcher) accepted: shorter ones are
/// guessable.
pub const MIN_CONFIGURED_TOKEN_LEN: usize = 16;

/// SHA-256 of a token. A fast hash is enough: tokens are 256 random bits (or configured
/// secrets of at least 16 characters), not passwords.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The hash as stored: lowercase hex.
pub fn hash_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new API token: `hkd_` and 32 random bytes, base64url without padding.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn new_token_id() -> String {
    format!("tok_{}", uuid::Uuid::now_v7().simple())
}

/// The last four characters of a token, for display.
pub fn last_four(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Hash → caller, shared by every interceptor and the access service.
#[derive(Clone, Default)]
pub struct TokenTable {
    tokens: Arc<RwLock<HashMap<[u8; 32], Arc<Caller>>>>,
    /// Serialises reloads: a reload that read the database before a change committed must
    /// not overwrite the one that read it after.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl TokenTable {
    pub async fn load(store: &Store) -> Result<Self, StorageError> {
        let table = Self::default();
        table.reload(store).await?;
        Ok(table)
    }

    /// Reads every token and role again and replaces the table.
    pub async fn reload(&self, store: &Store) -> Result<(), StorageError> {
        let _one_at_a_time = self.reloading.lock().await;
        let roles: HashMap<(String, String), Vec<Permission>> = store
            .all_roles()
            .await?
            .into_iter()
            .map(|(tenant, role)| ((tenant, role.name), role.permissions))
            .collect();
        let mut tokens = HashMap::new();
        for t in store.all_api_tokens().await? {
            let Some(hash) = parse_hex(&t.hash) else {
                tracing::warn!(token_id = %t.id, "ignoring a token with a malformed hash");
                continue;
            };
            // A token whose role is gone (never by hookd, which refuses to delete a role in
            // use) still authenticates but may do nothing.
            let permissions = builtin_role(&t.role)
                .map(<[Permission]>::to_vec)
                .or_else(|| roles.get(&(t.tenant.clone(), t.role.clone())).cloned())
                .unwrap_or_default();
            tokens.insert(
                hash,
                Arc::new(Caller { tenant: t.tenant, token_id: t.id, role: t.role, permissions }),
            );
        }
        let count = tokens.len();
        *self.tokens.write().unwrap_or_else(std::sync::PoisonError::into_inner) = tokens;
        tracing::trace!(tokens = count, "token table loaded");
        Ok(())
    }

    /// Reloads every `interval` for ever (until the task is aborted).
    pub fn spawn_reloader(&self, store: Store, interval: Duration) -> tokio::task::JoinHandle<()> {
        let table = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = table.reload(&store).await {
                    // The last good table stays in force.
                    tracing::warn!(%error, "cannot reload the token table");
                }
            }
        })
    }

    pub fn lookup(&self, token: &str) -> Option<Arc<Caller>> {
        let hash = hash_token(token);
        self.tokens.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&hash).cloned()
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The token of `authorization: Bearer <token>`.
fn bearer<T>(request: &Request<T>) -> Result<&str, ControlError> {
    bearer_token(request.metadata()).map_err(|e| match e {
        TokenError::Missing => {
            ControlError::Unauthenticated("missing authorization: Bearer <token>")
        }
        TokenError::Malformed => {
            ControlError::Unauthenticated("authorization must be `Bearer <token>`")
        }
    })
}

/// The interceptor of the public services: a known API token, or UNAUTHENTICATED.
#[derive(Clone)]
pub struct Authenticate {
    pub table: TokenTable,
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self
            .table
            .lookup(bearer(&request)?)
            .ok_or(ControlError::Unauthenticated("unknown or revoked token"))?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The interceptor of `DispatchService`: the dispatcher token, or UNAUTHENTICATED.
#[derive(Clone)]
pub struct AuthenticateDispatcher {
    pub hash: [u8; 32],
}

impl Interceptor for AuthenticateDispatcher {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        // Comparing hashes: the time taken says nothing about the secret's characters.
        if hash_token(bearer(&request)?) != self.hash {
            return Err(ControlError::Unauthenticated(
                "the dispatch service needs the dispatcher token",
            )
            .into());
        }
        Ok(request)
    }
}

/// The caller the interceptor authenticated.
pub fn caller<T>(request: &Request<T>) -> Result<Arc<Caller>, ControlError> {
    // Only reachable if a service were mounted without the interceptor: fail closed.
    request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or(ControlError::Unauthenticated("no authenticated caller"))
}

/// The caller, if their role grants `permission`; PERMISSION_DENIED naming it otherwise.
/// Checked before any lookup, so a refusal never depends on whether a resource exists.
pub fn require<T>(
    request: &Request<T>,
    permission: Permission,
) -> Result<Arc<Caller>, ControlError> {
    let caller = caller(request)?;
    if !caller.permissions.contains(&permission) {
        tracing::info!(tenant = %caller.tenant, token_id = %caller.token_id, %permission, "permission denied");
        return Err(ControlError::PermissionDenied(permission));
    }
    tracing::debug!(tenant = %caller.tenant, token_id = %caller.token_id, %permission, "caller authorised");
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", value.parse().expect("ascii"));
        request
    }

    #[test]
    fn generated_tokens_are_prefixed_random_and_hash_round_trips() {
        let a = generate_token();
        let b = generate_token();
        assert!(a.starts_with(TOKEN_PREFIX) && a != b);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43, "32 bytes in unpadded base64");
        assert!(!a.contains(['+', '/', '=']), "url-safe: {a}");
        let hash = hash_token(&a);
        assert_eq!(parse_hex(&hash_hex(&hash)), Some(hash));
        assert_eq!(last_four("hkd_abcdef"), "cdef");
        assert_eq!(last_four("ab"), "ab");
    }

    #[test]
    fn the_interceptors_want_a_bearer_token_they_know() {
        let table = TokenTable::default();
        let caller = Arc::new(Caller {
            tenant: "a".into(),
            token_id: "tok_1".into(),
            role: "viewer".into(),
            permissions: vec![Permission::WebhooksRead],
        });
        table.tokens.write().expect("lock").insert(hash_token("hkd_known"), caller.clone());
        let mut auth = Authenticate { table };
        let ok = auth.call(with_auth("Bearer hkd_known")).expect("known token");
        assert_eq!(ok.extensions().get::<Arc<Caller>>(), Some(&caller));
        assert!(require(&ok, Permission::WebhooksRead).is_ok());
        let denied = require(&ok, Permission::WebhooksManage).expect_err("viewer");
        assert!(matches!(denied, ControlError::PermissionDenied(Permission::WebhooksManage)));
        for bad in ["Bearer hkd_other", "Basic abc", "Bearer "] {
            let status = auth.call(with_auth(bad)).expect_err(bad);
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        assert_eq!(
            auth.call(Request::new(())).expect_err("none").code(),
            tonic::Code::Unauthenticated
        );

        let mut dispatcher = AuthenticateDispatcher { hash: hash_token("dispatcher-secret-1") };
        assert!(dispatcher.call(with_auth("Bearer dispatcher-secret-1")).is_ok());
        assert!(dispatcher.call(with_auth("Bearer hkd_known")).is_err(), "api tokens refused");
    }
}
