//! Signed deliveries per the Standard Webhooks specification: `whsec_` secrets and the
//! `webhook-signature` header (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`), with
//! rotation: during a grace period the previous secret signs too, space-separated.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidField;

const PREFIX: &str = "whsec_";
/// Bytes of a generated secret (the specification allows 24 to 64).
const GENERATED_LEN: usize = 32;
const MIN_LEN: usize = 24;
const MAX_LEN: usize = 64;

/// A webhook's signing key. `Debug` never shows it; serialized as its `whsec_` form.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_LEN];
        rand::fill(key.as_mut_slice());
        Self(key)
    }

    /// Parses `whsec_<base64 of 24 to 64 bytes>`.
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        let encoded = value
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| InvalidField::new("secret", format!("must start with {PREFIX:?}")))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| InvalidField::new("secret", "is not base64 after the whsec_ prefix"))?;
        if !(MIN_LEN..=MAX_LEN).contains(&key.len()) {
            return Err(InvalidField::new(
                "secret",
                format!("must hold {MIN_LEN} to {MAX_LEN} bytes, not {}", key.len()),
            ));
        }
        Ok(Self(key))
    }

    /// The `whsec_…` form handed to the receiver.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(msg_id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

impl TryFrom<String> for SigningSecret {
    type Error = InvalidField;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SigningSecret> for String {
    fn from(value: SigningSecret) -> Self {
        value.expose()
    }
}

/// One key of a webhook: the current one has no expiry; a rotated-out one signs until
/// `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    pub secret: SigningSecret,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A webhook's keys, current first. Set by the control plane, never by a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SigningKeys(pub Vec<SigningKey>);

impl SigningKeys {
    /// A single new random key.
    pub fn generate() -> Self {
        Self(vec![SigningKey { secret: SigningSecret::generate(), expires_at: None }])
    }

    pub fn current(&self) -> Option<&SigningSecret> {
        self.0.first().map(|k| &k.secret)
    }

    /// Makes a new key current; the old current key keeps signing until `now + grace`
    /// (not at all for a zero grace). Keys already expired are dropped. Returns the new secret.
    pub fn rotate(&mut self, now: DateTime<Utc>, grace: chrono::Duration) -> SigningSecret {
        let fresh = SigningSecret::generate();
        let mut keys = vec![SigningKey { secret: fresh.clone(), expires_at: None }];
        if let Some(old) = self.0.first()
            && grace > chrono::Duration::zero()
        {
            keys.push(SigningKey { secret: old.secret.clone(), expires_at: Some(now + grace) });
        }
        keys.extend(
            self.0.iter().skip(1).filter(|k| k.expires_at.is_some_and(|t| t > now)).cloned(),
        );
        self.0 = keys;
        fresh
    }

    /// The `webhook-signature` header value: one `v1,…` per key still in force at `now`,
    /// space-separated; `None` without keys.
    pub fn header(
        &self,
        now: DateTime<Utc>,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Option<String> {
        let signatures: Vec<String> = self
            .0
            .iter()
            .filter(|k| k.expires_at.is_none_or(|t| t > now))
            .map(|k| k.secret.sign(msg_id, timestamp, body))
            .collect();
        (!signatures.is_empty()).then(|| signatures.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let signature =
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_round_trip_and_are_validated() {
        let s = SigningSecret::generate();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(&s.expose()).expect("valid"), s);
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ="] {
            assert_eq!(SigningSecret::parse(bad).expect_err("refused").field, "secret", "{bad}");
        }
    }

    #[test]
    fn rotation_signs_with_both_keys_until_the_grace_period_ends() {
        let now = Utc::now();
        let mut keys = SigningKeys::generate();
        let old = keys.current().cloned().expect("a key");
        let new = keys.rotate(now, chrono::Duration::seconds(60));
        let header = keys.header(now, "m", 1, b"x").expect("signed");
        assert_eq!(header, format!("{} {}", new.sign("m", 1, b"x"), old.sign("m", 1, b"x")));
        let later = now + chrono::Duration::seconds(61);
        assert_eq!(keys.header(later, "m", 1, b"x"), Some(new.sign("m", 1, b"x")));
        // A second rotation after the grace period drops the expired key.
        keys.rotate(later, chrono::Duration::zero());
        assert_eq!(keys.0.len(), 1);
    }
}
