//! Secrets at rest: values that hold credentials (a webhook's options with its endpoint auth
//! and signing keys, a credential's spec and tokens) are sealed with ChaCha20-Poly1305 under
//! a key from configuration before they reach the database.
//!
//! A sealed value reads `enc:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`. The key id lets
//! keys rotate: values sealed under an older key still open while that key is configured, and
//! [`Store::reseal_secrets`](crate::Store::reseal_secrets) rewrites them under the current one.
//! The associated data is the row's identity and column (`webhooks/wh_…/options`), so a
//! sealed value copied into another row or column does not open.

use std::{collections::HashMap, fmt, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::StorageError;

const PREFIX: &str = "enc:v1:";
/// Key bytes of ChaCha20-Poly1305.
pub const KEY_LEN: usize = 32;

/// The keys secrets are sealed with: one current key that seals, older ones that only open.
#[derive(Clone)]
pub struct Cipher(Arc<Keys>);

struct Keys {
    current: String,
    by_id: HashMap<String, LessSafeKey>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher").field("current_key_id", &self.0.current).finish_non_exhaustive()
    }
}

/// Why configured key material cannot be used. Never carries the key itself.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("encryption key {id:?} is not base64")]
    NotBase64 { id: String },
    #[error(
        "encryption key {id:?} has {len} bytes; it must have exactly 32 (generate one with `openssl rand -base64 32`)"
    )]
    WrongLength { id: String, len: usize },
    #[error("encryption key id {id:?} must be 1 to 32 letters, digits, '-' or '_'")]
    BadId { id: String },
}

impl Cipher {
    /// `current` seals; `older` (id → base64 key) only open values sealed before a rotation.
    pub fn new(
        current_id: &str,
        current_key_base64: &str,
        older: &[(String, String)],
    ) -> Result<Self, KeyError> {
        let mut by_id = HashMap::new();
        for (id, key) in std::iter::once((current_id, current_key_base64))
            .chain(older.iter().map(|(id, key)| (id.as_str(), key.as_str())))
        {
            by_id.insert(id.to_owned(), key_from_base64(id, key)?);
        }
        Ok(Self(Arc::new(Keys { current: current_id.to_owned(), by_id })))
    }

    pub fn current_key_id(&self) -> &str {
        &self.0.current
    }

    /// Seals `plaintext` under the current key, bound to `aad`.
    pub(crate) fn seal(&self, aad: &str, plaintext: &str) -> String {
        let Some(key) = self.0.by_id.get(&self.0.current) else {
            // `new` always inserts the current key.
            return plaintext.to_owned();
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut sealed = plaintext.as_bytes().to_vec();
        // Sealing in place cannot fail for inputs below the algorithm's ~256 GiB limit.
        if key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut sealed,
            )
            .is_err()
        {
            return plaintext.to_owned();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.0.current, STANDARD.encode(out))
    }

    /// Opens a sealed value; a value without the `enc:` prefix (written before encryption
    /// was enabled) is returned as it is and resealed by the next write or
    /// [`Store::reseal_secrets`](crate::Store::reseal_secrets).
    #[cfg(test)]
    pub(crate) fn open(&self, aad: &str, stored: &str) -> Result<String, StorageError> {
        open_with(Some(self), aad, stored)
    }

    /// Whether `stored` is sealed under the current key.
    pub(crate) fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.0.current)
    }
}

/// Opens `stored` with `cipher`; without a cipher only unsealed values can be read.
pub(crate) fn open_with(
    cipher: Option<&Cipher>,
    aad: &str,
    stored: &str,
) -> Result<String, StorageError> {
    let Some(rest) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_owned());
    };
    let corrupt = |reason: String| StorageError::Corrupt { table: "secrets", reason };
    let (id, encoded) =
        rest.split_once(':').ok_or_else(|| corrupt(format!("{aad}: malformed sealed value")))?;
    let cipher = cipher.ok_or_else(|| {
        corrupt(format!("{aad} is encrypted but no encryption key is configured"))
    })?;
    let key = cipher.0.by_id.get(id).ok_or_else(|| {
        corrupt(format!("{aad} is sealed with key {id:?}, which is not configured"))
    })?;
    let mut bytes = STANDARD
        .decode(encoded)
        .map_err(|_| corrupt(format!("{aad}: sealed value is not base64")))?;
    if bytes.len() < NONCE_LEN {
        return Err(corrupt(format!("{aad}: sealed value is too short")));
    }
    let mut ciphertext = bytes.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&bytes)
        .map_err(|_| corrupt(format!("{aad}: bad nonce")))?;
    let plain =
        key.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut ciphertext).map_err(|_| {
            corrupt(format!("{aad} does not open with key {id:?} (wrong key or tampered)"))
        })?;
    String::from_utf8(plain.to_vec()).map_err(|_| corrupt(format!("{aad}: not UTF-8 once opened")))
}

fn key_from_base64(id: &str, key: &str) -> Result<LessSafeKey, KeyError> {
    if id.is_empty()
        || id.len() > 32
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(KeyError::BadId { id: id.to_owned() });
    }
    let bytes =
        STANDARD.decode(key.trim()).map_err(|_| KeyError::NotBase64 { id: id.to_owned() })?;
    if bytes.len() != KEY_LEN {
        return Err(KeyError::WrongLength { id: id.to_owned(), len: bytes.len() });
    }
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
        .map_err(|_| KeyError::WrongLength { id: id.to_owned(), len: bytes.len() })?;
    Ok(LessSafeKey::new(unbound))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    #[test]
    fn seals_opens_and_binds_to_the_row() {
        let c = Cipher::new("k1", K1, &[]).expect("valid key");
        let sealed = c.seal("webhooks/wh_1/options", "s3cret");
        assert!(sealed.starts_with("enc:v1:k1:"));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(c.open("webhooks/wh_1/options", &sealed).expect("opens"), "s3cret");
        assert_ne!(c.seal("a", "x"), c.seal("a", "x"), "a fresh nonce each time");
        assert!(c.open("webhooks/wh_2/options", &sealed).is_err(), "another row's value");
        assert_eq!(c.open("x", "legacy plaintext").expect("passes"), "legacy plaintext");
        assert!(open_with(None, "webhooks/wh_1/options", &sealed).is_err());
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = Cipher::new("k1", K1, &[]).expect("valid");
        let sealed = old.seal("a", "v");
        let new = Cipher::new("k2", K2, &[("k1".to_owned(), K1.to_owned())]).expect("valid");
        assert!(!new.is_current(&sealed));
        assert_eq!(new.open("a", &sealed).expect("old key opens"), "v");
        assert!(new.is_current(&new.seal("a", "v")));
        let without_old = Cipher::new("k2", K2, &[]).expect("valid");
        assert!(without_old.open("a", &sealed).is_err());
    }

    #[test]
    fn refuses_bad_keys_without_echoing_them() {
        let err = Cipher::new("k1", "c2hvcnQ=", &[]).expect_err("short");
        assert!(err.to_string().contains("32") && !err.to_string().contains("c2hvcnQ"));
        assert!(Cipher::new("k 1", K1, &[]).is_err());
        assert!(Cipher::new("k1", "%%%", &[]).is_err());
    }
}
