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
//! Portal grants (`hkdg_…`, see [`hookd_core::portal`]) are the bearer tokens of console
//! sessions opened from a portal link: signed, expiring, naming a tenant, a role and maybe an
//! app label. They authenticate like tokens, with the role's webhook permissions only, and
//! the caller they make carries the app label, which every service then enforces.
//!
//! Token values are never logged or stored; logs name token ids.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use base64::Engine as _;
use hookd_core::{
    access::{Permission, builtin_role},
    portal::{GRANT_PREFIX, PortalKeys},
};
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
    /// A portal session limited to the webhooks with this app label: lists are filtered to
    /// it, other webhooks (and their deliveries) are NOT_FOUND, new webhooks get it, and
    /// tenant-wide resources are out of reach.
    pub app: Option<String>,
}

impl Caller {
    /// Whether a webhook labelled `app` is within this caller's reach.
    pub fn reaches_app(&self, app: &str) -> bool {
        self.app.as_deref().is_none_or(|mine| mine == app)
    }

    /// Refuses a caller limited to one app label a tenant-wide resource (credentials, the
    /// catalog's changes): PERMISSION_DENIED, naming the label.
    pub fn require_whole_tenant(&self, what: &'static str) -> Result<(), ControlError> {
        match &self.app {
            None => Ok(()),
            Some(app) => Err(ControlError::OutOfScope { what, app: app.clone() }),
        }
    }
}

/// What a portal session may do at most, whatever its role: configure webhooks, not
/// administer the tenant or publish events.
const PORTAL_PERMISSIONS: [Permission; 2] = [Permission::WebhooksRead, Permission::WebhooksManage];

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

/// (tenant, custom role name) → the role's permissions.
type RolePermissions = HashMap<(String, String), Vec<Permission>>;

/// Hash → caller, shared by every interceptor and the access service.
#[derive(Clone, Default)]
pub struct TokenTable {
    tokens: Arc<RwLock<HashMap<[u8; 32], Arc<Caller>>>>,
    /// (tenant, custom role) → permissions, for portal grants, which name a role.
    roles: Arc<RwLock<RolePermissions>>,
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
        let roles: RolePermissions = store
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
                Arc::new(Caller {
                    tenant: t.tenant,
                    token_id: t.id,
                    role: t.role,
                    permissions,
                    app: None,
                }),
            );
        }
        let count = tokens.len();
        *self.tokens.write().unwrap_or_else(std::sync::PoisonError::into_inner) = tokens;
        *self.roles.write().unwrap_or_else(std::sync::PoisonError::into_inner) = roles;
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

    /// The caller of a verified portal grant: its role's webhook permissions (none for a role
    /// that no longer exists) and its app label.
    fn portal_caller(&self, claims: hookd_core::portal::PortalClaims) -> Caller {
        let permissions = builtin_role(&claims.role)
            .map(<[Permission]>::to_vec)
            .or_else(|| {
                self.roles
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&(claims.tenant.clone(), claims.role.clone()))
                    .cloned()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|p| PORTAL_PERMISSIONS.contains(p))
            .collect();
        Caller {
            token_id: format!("portal:{}", claims.nonce),
            tenant: claims.tenant,
            role: claims.role,
            permissions,
            app: (!claims.app.is_empty()).then_some(claims.app),
        }
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

/// The interceptor of the public services: a known API token, a valid portal grant, or
/// UNAUTHENTICATED.
#[derive(Clone)]
pub struct Authenticate {
    pub table: TokenTable,
    pub portal: Arc<PortalKeys>,
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let token = bearer(&request)?;
        let caller = if token.starts_with(GRANT_PREFIX) {
            let claims = self
                .portal
                .verify_grant(token, chrono::Utc::now().timestamp())
                .map_err(|_| ControlError::Unauthenticated("invalid or expired portal session"))?;
            Arc::new(self.table.portal_caller(claims))
        } else {
            self.table
                .lookup(token)
                .ok_or(ControlError::Unauthenticated("unknown or revoked token"))?
        };
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

    fn portal_keys() -> PortalKeys {
        PortalKeys::derive(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_portal_grant_gets_its_roles_webhook_permissions_and_app_label() {
        use hookd_core::portal::PortalClaims;
        let table = TokenTable::default();
        table.roles.write().expect("lock").insert(
            ("acme".into(), "support".into()),
            vec![Permission::WebhooksRead, Permission::EventsPublish],
        );
        let keys = portal_keys();
        let mut auth = Authenticate { table, portal: Arc::new(keys.clone()) };
        let far = chrono::Utc::now().timestamp() + 600;
        let grant = |role: &str, app: &str| {
            let token = keys.sign_grant(&PortalClaims::new("acme", role, app, far));
            auth.clone().call(with_auth(&format!("Bearer {token}"))).expect("valid grant")
        };
        let owner = grant("owner", "shop-7");
        let caller = caller(&owner).expect("caller");
        assert_eq!(caller.tenant, "acme");
        assert_eq!(caller.permissions, [Permission::WebhooksRead, Permission::WebhooksManage]);
        assert_eq!(caller.app.as_deref(), Some("shop-7"));
        assert!(caller.reaches_app("shop-7") && !caller.reaches_app("shop-8"));
        assert!(caller.require_whole_tenant("credentials").is_err());
        let support = caller_of(&grant("support", ""));
        assert_eq!(support.permissions, [Permission::WebhooksRead], "never events.publish");
        assert!(support.app.is_none() && support.reaches_app("anything"));
        assert!(caller_of(&grant("gone", "")).permissions.is_empty());
        let expired = keys.sign_grant(&PortalClaims::new("acme", "owner", "", 1));
        let status = auth.call(with_auth(&format!("Bearer {expired}"))).expect_err("expired");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let link = keys.sign_link(&PortalClaims::new("acme", "owner", "", far));
        assert!(auth.call(with_auth(&format!("Bearer {link}"))).is_err(), "a link is no token");
    }

    fn caller_of(request: &Request<()>) -> Arc<Caller> {
        caller(request).expect("caller")
    }

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
            app: None,
        });
        table.tokens.write().expect("lock").insert(hash_token("hkd_known"), caller.clone());
        let mut auth = Authenticate { table, portal: Arc::new(portal_keys()) };
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

        assert_eq!(
            auth.call(with_auth("Bearer hkdg_forged.AAAA")).expect_err("forged").code(),
            tonic::Code::Unauthenticated
        );

        let mut dispatcher = AuthenticateDispatcher { hash: hash_token("dispatcher-secret-1") };
        assert!(dispatcher.call(with_auth("Bearer dispatcher-secret-1")).is_ok());
        assert!(dispatcher.call(with_auth("Bearer hkd_known")).is_err(), "api tokens refused");
    }
}
