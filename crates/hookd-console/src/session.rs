//! Console sessions: a sealed cookie, so any control-plane replica with the same
//! `encryption_key` can read it and none needs shared session state.
//!
//! The cookie holds the session's bearer token (the API token signed in with, or the portal
//! grant a link was exchanged for), its CSRF token and its expiry, sealed with
//! ChaCha20-Poly1305 under a key derived from the master key: the browser can neither read
//! the token nor change anything. It is `HttpOnly` and `SameSite=Strict`, `Secure` (with the
//! `__Host-` prefix) when the console is reached over https. Every form that changes
//! something carries the CSRF token, compared in constant time with the sealed one.

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// The session cookie's name over http; over https the `__Host-` prefixed one.
const SESSION: &str = "hookd_session";
/// The short-lived cookie that carries a flash message to the page after a redirect.
const FLASH: &str = "hookd_flash";
/// The sign-in form's CSRF cookie (login CSRF: nobody can sign a browser into their session).
const SIGN_IN: &str = "hookd_sign_in";

/// What the session cookie carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Sent as `authorization: Bearer` on every call: an API token or a portal grant.
    #[serde(rename = "b")]
    pub bearer: String,
    /// The form token of this session.
    #[serde(rename = "c")]
    pub csrf: String,
    /// Unix seconds; the session is refused from then on.
    #[serde(rename = "e")]
    pub expires_at: i64,
}

impl Session {
    pub fn new(bearer: String, expires_at: i64) -> Self {
        Self { bearer, csrf: random_token(), expires_at }
    }

    /// Whether `given` (a form's `csrf` field) is this session's token.
    pub fn csrf_matches(&self, given: &str) -> bool {
        constant_time_eq(self.csrf.as_bytes(), given.as_bytes())
    }
}

/// 24 random bytes, base64url.
pub fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    B64.encode(bytes)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seals and opens cookie values; the cookie's name is bound in as associated data, so a
/// sealed flash message never opens as a session.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        // A 32-byte key is exactly what ChaCha20-Poly1305 takes.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key"));
        Self { key: std::sync::Arc::new(LessSafeKey::new(unbound)) }
    }

    fn seal(&self, name: &str, plain: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut buf = plain.to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        // Sealing in place into a Vec cannot fail for cookie-sized input.
        let _ = self.key.seal_in_place_append_tag(nonce, Aad::from(name.as_bytes()), &mut buf);
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        B64.encode(out)
    }

    fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = B64.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut rest = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut rest).ok()?;
        Some(plain.to_vec())
    }
}

/// How cookies are written for one request: `Secure` and `__Host-` over https.
#[derive(Debug, Clone, Copy)]
pub struct CookieJar<'a> {
    pub sealer: &'a Sealer,
    pub secure: bool,
}

impl CookieJar<'_> {
    fn name(&self, base: &str) -> String {
        if self.secure { format!("__Host-{base}") } else { base.to_owned() }
    }

    fn set(&self, base: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
            self.name(base)
        )
    }

    /// The session in the request's cookies, if it opens and has not expired at `now`.
    pub fn session(&self, cookies: &Cookies, now: i64) -> Option<Session> {
        let sealed = cookies.get(&self.name(SESSION))?;
        let plain = self.sealer.open(SESSION, sealed)?;
        let session: Session = serde_json::from_slice(&plain).ok()?;
        (now < session.expires_at).then_some(session)
    }

    /// `Set-Cookie` for `session`, lasting until it expires.
    pub fn set_session(&self, session: &Session, now: i64) -> String {
        let json = serde_json::to_vec(session).unwrap_or_default();
        self.set(SESSION, &self.sealer.seal(SESSION, &json), (session.expires_at - now).max(0))
    }

    pub fn clear_session(&self) -> String {
        self.set(SESSION, "", 0)
    }

    /// A message for the next page (after a redirect); a minute at most.
    pub fn set_flash(&self, message: &str) -> String {
        self.set(FLASH, &self.sealer.seal(FLASH, message.as_bytes()), 60)
    }

    pub fn flash(&self, cookies: &Cookies) -> Option<String> {
        let sealed = cookies.get(&self.name(FLASH))?;
        String::from_utf8(self.sealer.open(FLASH, sealed)?).ok()
    }

    pub fn clear_flash(&self) -> String {
        self.set(FLASH, "", 0)
    }

    /// The sign-in form's CSRF token: the cookie's, or a new one to set.
    pub fn sign_in_token(&self, cookies: &Cookies) -> (String, Option<String>) {
        match cookies.get(&self.name(SIGN_IN)) {
            Some(token) if token.len() >= 32 => (token.to_owned(), None),
            _ => {
                let token = random_token();
                let cookie = self.set(SIGN_IN, &token, 3600);
                (token, Some(cookie))
            }
        }
    }

    pub fn sign_in_token_matches(&self, cookies: &Cookies, given: &str) -> bool {
        cookies
            .get(&self.name(SIGN_IN))
            .is_some_and(|t| t.len() >= 32 && constant_time_eq(t.as_bytes(), given.as_bytes()))
    }
}

/// The request's cookies, parsed from its `Cookie` headers.
#[derive(Debug, Default)]
pub struct Cookies(Vec<(String, String)>);

impl Cookies {
    pub fn parse(headers: &http::HeaderMap) -> Self {
        let mut pairs = Vec::new();
        for value in headers.get_all(http::header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for part in value.split(';') {
                if let Some((k, v)) = part.trim().split_once('=') {
                    pairs.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
        }
        Self(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(set_cookie: &str) -> Cookies {
        let pair = set_cookie.split(';').next().expect("pair");
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, pair.parse().expect("header"));
        Cookies::parse(&headers)
    }

    #[test]
    fn a_session_round_trips_and_cannot_be_read_or_changed() {
        let sealer = Sealer::new([7; 32]);
        let jar = CookieJar { sealer: &sealer, secure: false };
        let session = Session::new("hkd_secret-token".into(), 1_000);
        let set = jar.set_session(&session, 400);
        assert!(!set.contains("hkd_secret-token"), "{set}");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        assert!(set.contains("Max-Age=600") && !set.contains("Secure"), "{set}");
        assert_eq!(jar.session(&cookies(&set), 999), Some(session.clone()));
        assert_eq!(jar.session(&cookies(&set), 1_000), None, "expired");
        let tampered = set.replacen("hookd_session=", "hookd_session=A", 1);
        assert_eq!(jar.session(&cookies(&tampered), 0), None);
        let other = Sealer::new([8; 32]);
        assert_eq!(CookieJar { sealer: &other, secure: false }.session(&cookies(&set), 0), None);
        // A flash cookie's value does not open as a session.
        let flash = jar.set_flash("hello").replacen("hookd_flash", "hookd_session", 1);
        assert_eq!(jar.session(&cookies(&flash), 0), None);
        assert!(session.csrf_matches(&session.csrf) && !session.csrf_matches("nope"));
    }

    #[test]
    fn over_https_cookies_are_secure_and_host_prefixed() {
        let sealer = Sealer::new([7; 32]);
        let jar = CookieJar { sealer: &sealer, secure: true };
        let set = jar.set_session(&Session::new("t".into(), 10), 0);
        assert!(set.starts_with("__Host-hookd_session=") && set.ends_with("; Secure"), "{set}");
        assert!(jar.session(&cookies(&set), 0).is_some());
        let plain = CookieJar { sealer: &sealer, secure: false };
        assert!(plain.session(&cookies(&set), 0).is_none());
    }
}
