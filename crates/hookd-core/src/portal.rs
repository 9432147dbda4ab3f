//! Portal links and portal grants: signed, expiring statements that "tenant T, role R,
//! optionally app label A" may use the console until a time.
//!
//! A *link* (`hkdl_…`) is what `CreatePortalLink` hands a platform to send one customer into
//! the console; the console opens it once and keeps a *grant* (`hkdg_…`) in the session,
//! which it presents to the gRPC services as its bearer token. Both are
//! `<prefix><base64url(JSON claims)>.<base64url(HMAC-SHA256)>`, under two different keys
//! derived from the control plane's `encryption_key`, so a link is never a grant, and
//! changing any byte (say, the app label) voids the signature. Nothing is stored: every
//! control-plane replica with the same key verifies them.

use base64::Engine as _;
use ring::{hkdf, hmac};
use serde::{Deserialize, Serialize};

/// The prefix of a portal link token.
pub const LINK_PREFIX: &str = "hkdl_";
/// The prefix of a portal grant (a console session's bearer token).
pub const GRANT_PREFIX: &str = "hkdg_";
/// How long a link can be opened when the request names no time.
pub const DEFAULT_LINK_TTL_SECS: u64 = 15 * 60;
/// The longest a link may stay valid.
pub const MAX_LINK_TTL_SECS: u64 = 7 * 24 * 3600;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a link or grant says. Short field names keep links short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalClaims {
    #[serde(rename = "t")]
    pub tenant: String,
    #[serde(rename = "r")]
    pub role: String,
    /// Empty: every webhook of the tenant.
    #[serde(rename = "a", default, skip_serializing_if = "String::is_empty")]
    pub app: String,
    /// Unix seconds after which it is refused.
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// Random; names this link (and the grants opened from it) in logs, and lets the
    /// console tell a second opening of the same link.
    #[serde(rename = "n")]
    pub nonce: String,
}

impl PortalClaims {
    pub fn new(tenant: &str, role: &str, app: &str, expires_at: i64) -> Self {
        let nonce: [u8; 12] = rand::random();
        Self {
            tenant: tenant.to_owned(),
            role: role.to_owned(),
            app: app.to_owned(),
            expires_at,
            nonce: B64.encode(nonce),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortalError {
    #[error("not a portal token")]
    Malformed,
    /// Edited, or signed under another key (a rotated `encryption_key`).
    #[error("the signature does not match")]
    BadSignature,
    #[error("expired")]
    Expired,
}

/// The two signing keys, derived from the control plane's master key.
#[derive(Clone)]
pub struct PortalKeys {
    link: hmac::Key,
    grant: hmac::Key,
}

impl std::fmt::Debug for PortalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortalKeys(..)")
    }
}

/// A 32-byte key for `purpose`, derived from `master` with HKDF-SHA256: one master key
/// serves several purposes without one key's use revealing another.
pub fn derive_key(master: &[u8], purpose: &str) -> [u8; 32] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"hookd").extract(master);
    let info = [purpose.as_bytes()];
    let mut out = [0u8; 32];
    // Expanding to 32 bytes of SHA-256 output cannot fail (the limit is 255 × 32).
    if let Ok(okm) = prk.expand(&info, hkdf::HKDF_SHA256) {
        let _ = okm.fill(&mut out);
    }
    out
}

impl PortalKeys {
    pub fn derive(master: &[u8]) -> Self {
        let key = |purpose| hmac::Key::new(hmac::HMAC_SHA256, &derive_key(master, purpose));
        Self { link: key("hookd portal link v1"), grant: key("hookd portal grant v1") }
    }

    pub fn sign_link(&self, claims: &PortalClaims) -> String {
        sign(&self.link, LINK_PREFIX, claims)
    }

    pub fn sign_grant(&self, claims: &PortalClaims) -> String {
        sign(&self.grant, GRANT_PREFIX, claims)
    }

    /// The claims of a link, if it is intact and not expired at `now` (unix seconds).
    pub fn verify_link(&self, token: &str, now: i64) -> Result<PortalClaims, PortalError> {
        verify(&self.link, LINK_PREFIX, token, now)
    }

    pub fn verify_grant(&self, token: &str, now: i64) -> Result<PortalClaims, PortalError> {
        verify(&self.grant, GRANT_PREFIX, token, now)
    }
}

fn sign(key: &hmac::Key, prefix: &str, claims: &PortalClaims) -> String {
    // Serialising a struct of strings and integers cannot fail.
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let body = format!("{prefix}{}", B64.encode(json));
    let tag = hmac::sign(key, body.as_bytes());
    format!("{body}.{}", B64.encode(tag.as_ref()))
}

fn verify(
    key: &hmac::Key,
    prefix: &str,
    token: &str,
    now: i64,
) -> Result<PortalClaims, PortalError> {
    let (body, tag) = token.rsplit_once('.').ok_or(PortalError::Malformed)?;
    let payload = body.strip_prefix(prefix).ok_or(PortalError::Malformed)?;
    let tag = B64.decode(tag).map_err(|_| PortalError::Malformed)?;
    // Checked before the claims are even parsed: an edited token says nothing.
    hmac::verify(key, body.as_bytes(), &tag).map_err(|_| PortalError::BadSignature)?;
    let json = B64.decode(payload).map_err(|_| PortalError::Malformed)?;
    let claims: PortalClaims = serde_json::from_slice(&json).map_err(|_| PortalError::Malformed)?;
    if now >= claims.expires_at {
        return Err(PortalError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> PortalKeys {
        PortalKeys::derive(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_link_round_trips_until_it_expires() {
        let claims = PortalClaims::new("acme", "owner", "shop-7", 1_000);
        let link = keys().sign_link(&claims);
        assert!(link.starts_with(LINK_PREFIX));
        assert_eq!(keys().verify_link(&link, 999), Ok(claims));
        assert_eq!(keys().verify_link(&link, 1_000), Err(PortalError::Expired));
    }

    #[test]
    fn an_edited_link_is_refused() {
        let link = keys().sign_link(&PortalClaims::new("acme", "viewer", "shop-7", 1_000));
        let (body, tag) = link.rsplit_once('.').expect("dot");
        // A wider link: the same signature over claims without the app label.
        let wider =
            PortalClaims { app: String::new(), ..keys().verify_link(&link, 0).expect("ok") };
        let forged_body =
            format!("{LINK_PREFIX}{}", B64.encode(serde_json::to_vec(&wider).expect("json")));
        assert_eq!(
            keys().verify_link(&format!("{forged_body}.{tag}"), 0),
            Err(PortalError::BadSignature)
        );
        let mut flipped = body.to_owned();
        flipped.push('A');
        assert!(keys().verify_link(&format!("{flipped}.{tag}"), 0).is_err());
        assert_eq!(keys().verify_link("hkdl_nodot", 0), Err(PortalError::Malformed));
    }

    #[test]
    fn links_grants_and_keys_do_not_mix() {
        let claims = PortalClaims::new("acme", "owner", "", 1_000);
        let link = keys().sign_link(&claims);
        let grant = keys().sign_grant(&claims);
        assert!(keys().verify_grant(&link, 0).is_err(), "a link is no grant");
        assert!(keys().verify_link(&grant, 0).is_err(), "a grant is no link");
        let other = PortalKeys::derive(b"another master key of 32 bytes!!");
        assert_eq!(other.verify_grant(&grant, 0), Err(PortalError::BadSignature));
        assert_ne!(derive_key(b"k", "a"), derive_key(b"k", "b"));
    }
}
