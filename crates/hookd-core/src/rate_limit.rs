//! Rate limits per webhook (B8): requests per second with a burst, as a token bucket. The
//! bucket's arithmetic is here, pure; the dispatchers share one bucket per webhook in NATS
//! key-value (see the dispatcher's `rate_limit` module).

use serde::{Deserialize, Serialize};

use crate::InvalidField;

/// The highest rate a webhook may be limited to.
pub const MAX_PER_SECOND: u32 = 10_000;
/// The largest burst.
pub const MAX_BURST: u32 = 100_000;

/// At most `per_second` requests per second on average, and at most `burst` at once after a
/// quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: u32,
    /// 0 means the default: one second's worth (`per_second`).
    #[serde(default)]
    pub burst: u32,
}

impl RateLimit {
    pub fn validate(self) -> Result<Self, InvalidField> {
        if self.per_second == 0 || self.per_second > MAX_PER_SECOND {
            return Err(InvalidField::new(
                "rate_limit",
                format!("per_second must be between 1 and {MAX_PER_SECOND}"),
            ));
        }
        if self.burst > MAX_BURST {
            return Err(InvalidField::new(
                "rate_limit",
                format!("burst must be at most {MAX_BURST} (0: one second's worth)"),
            ));
        }
        Ok(self)
    }

    /// The bucket's capacity.
    pub fn capacity(&self) -> f64 {
        f64::from(if self.burst == 0 { self.per_second } else { self.burst }.max(1))
    }
}

/// A token bucket's state: `tokens` as of `at_ms` (milliseconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenBucket {
    pub tokens: f64,
    pub at_ms: i64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(limit: &RateLimit, now_ms: i64) -> Self {
        Self { tokens: limit.capacity(), at_ms: now_ms }
    }

    /// Refills for the time since `at_ms` (never beyond the capacity; a clock that went back
    /// refills nothing) and takes up to `want` whole tokens; how many it took.
    pub fn take(&mut self, limit: &RateLimit, now_ms: i64, want: u32) -> u32 {
        let elapsed = (now_ms - self.at_ms).max(0);
        #[allow(clippy::cast_precision_loss)]
        let refill = elapsed as f64 / 1000.0 * f64::from(limit.per_second);
        self.tokens = (self.tokens + refill).min(limit.capacity());
        self.at_ms = self.at_ms.max(now_ms);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let granted = (self.tokens.floor().max(0.0) as u32).min(want);
        self.tokens -= f64::from(granted);
        granted
    }

    /// How long until the next whole token, in milliseconds.
    pub fn wait_ms(&self, limit: &RateLimit) -> u64 {
        let missing = (1.0 - self.tokens).max(0.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = (missing * 1000.0 / f64::from(limit.per_second.max(1))).ceil() as u64;
        ms.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_grants_the_burst_then_the_rate() {
        let limit = RateLimit { per_second: 20, burst: 5 };
        let mut bucket = TokenBucket::full(&limit, 0);
        assert_eq!(bucket.take(&limit, 0, 100), 5, "the burst");
        assert_eq!(bucket.take(&limit, 0, 1), 0);
        assert_eq!(bucket.wait_ms(&limit), 50);
        assert_eq!(bucket.take(&limit, 49, 1), 0);
        assert_eq!(bucket.take(&limit, 50, 1), 1);
        // Over ten seconds, 200 tokens however they are asked for.
        let mut total = 0;
        for ms in (60..10_060).step_by(7) {
            total += bucket.take(&limit, ms, 3);
        }
        assert!((199..=201).contains(&total), "{total}");
        // A quiet spell refills the burst, no more.
        assert_eq!(bucket.take(&limit, 100_000, 100), 5);
        // A clock going back refills nothing.
        assert_eq!(bucket.take(&limit, 90_000, 100), 0);
    }

    #[test]
    fn limits_are_bounded_and_burst_defaults_to_the_rate() {
        assert!(RateLimit { per_second: 0, burst: 0 }.validate().is_err());
        assert!(RateLimit { per_second: MAX_PER_SECOND + 1, burst: 0 }.validate().is_err());
        assert!(RateLimit { per_second: 1, burst: MAX_BURST + 1 }.validate().is_err());
        assert_eq!(RateLimit { per_second: 20, burst: 0 }.capacity(), 20.0);
        assert_eq!(RateLimit { per_second: 20, burst: 3 }.capacity(), 3.0);
    }
}
