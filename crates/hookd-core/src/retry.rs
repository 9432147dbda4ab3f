//! When failed attempts are tried again.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::AttemptOutcome;

/// No retry is ever scheduled further out than this, whatever a schedule or an endpoint's
/// `Retry-After` says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Delays before each retry, counted from the failure of the previous attempt. A delivery
/// gets `1 + delays.len()` attempts; after the last failure it is failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySchedule {
    #[serde(with = "secs")]
    pub delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// The Mimeeq schedule: 15 s, 60 s, 225 s, 900 s, 3600 s.
    fn default() -> Self {
        Self::from_secs(&[15, 60, 225, 900, 3600])
    }
}

impl RetrySchedule {
    pub fn from_secs(secs: &[u64]) -> Self {
        Self { delays: secs.iter().map(|s| Duration::from_secs(*s)).collect() }
    }

    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// The delay before attempt `attempt + 1` after attempt `attempt` (1-based) failed, or
    /// `None` when that was the last attempt.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        self.delays.get(index).copied()
    }
}

/// When to try again after attempt `attempt` (1-based) of delivery `delivery_id` failed
/// with `outcome`, or `None` when that was the last attempt.
///
/// The schedule gives the base delay. On 429 and 503 an endpoint's `Retry-After` is honoured
/// within [base, 2 × base], so a receiver can slow hookd down but neither stall a delivery
/// for ever nor make it retry sooner than planned. Then ±5 % jitter spreads retries of many
/// deliveries that failed together, and the result is clamped to [`MAX_RETRY_DELAY`].
pub fn next_delay(
    schedule: &RetrySchedule,
    attempt: u32,
    outcome: &AttemptOutcome,
    delivery_id: &str,
) -> Option<Duration> {
    let base = schedule.delay_after(attempt)?;
    let delay = match outcome {
        AttemptOutcome::Answered { status: 429 | 503, retry_after: Some(asked), .. } => {
            (*asked).clamp(base, base.saturating_mul(2))
        }
        _ => base,
    };
    Some(jitter(delay, delivery_id, attempt).min(MAX_RETRY_DELAY))
}

/// Up to ±5 % of `delay`, fixed per (delivery, attempt): retries of deliveries that failed
/// together spread out, and computing it again gives the same answer.
pub fn jitter(delay: Duration, delivery_id: &str, attempt: u32) -> Duration {
    let mut h = DefaultHasher::new();
    (delivery_id, attempt).hash(&mut h);
    let unit = (h.finish() % 10_001) as f64 / 10_000.0; // 0.0 ..= 1.0
    delay.mul_f64(0.95 + 0.1 * unit)
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(delays: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(delays.iter().map(Duration::as_secs_f64))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let secs = Vec::<f64>::deserialize(d)?;
        secs.into_iter()
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| serde::de::Error::custom(format!("invalid delay {s} s")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, retry_after: Option<u64>) -> AttemptOutcome {
        AttemptOutcome::Answered {
            status,
            body_excerpt: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn within_jitter(actual: Duration, expected: Duration) -> bool {
        actual >= expected.mul_f64(0.95) && actual <= expected.mul_f64(1.05)
    }

    #[test]
    fn retry_after_is_honoured_within_one_to_two_times_the_schedule() {
        let s = RetrySchedule::default(); // 15 s after attempt 1
        let d = |status, ra| next_delay(&s, 1, &answered(status, ra), "dlv_1").expect("retry");
        assert!(within_jitter(d(429, Some(20)), Duration::from_secs(20)));
        assert!(
            within_jitter(d(503, Some(1)), Duration::from_secs(15)),
            "never sooner than planned"
        );
        assert!(
            within_jitter(d(429, Some(999)), Duration::from_secs(30)),
            "at most twice the plan"
        );
        assert!(within_jitter(d(500, Some(20)), Duration::from_secs(15)), "only on 429 and 503");
        assert!(within_jitter(d(429, None), Duration::from_secs(15)));
        assert_eq!(next_delay(&s, 6, &answered(500, None), "dlv_1"), None, "after the last");
    }

    #[test]
    fn jitter_stays_within_five_percent_and_is_stable() {
        let d = Duration::from_secs(60);
        for attempt in 1..200 {
            let j = jitter(d, "dlv_x", attempt);
            assert!(within_jitter(j, d), "{j:?}");
            assert_eq!(j, jitter(d, "dlv_x", attempt));
        }
    }

    #[test]
    fn default_schedule_is_five_retries() {
        let s = RetrySchedule::default();
        assert_eq!(s.max_attempts(), 6);
        assert_eq!(s.delay_after(1), Some(Duration::from_secs(15)));
        assert_eq!(s.delay_after(5), Some(Duration::from_secs(3600)));
        assert_eq!(s.delay_after(6), None);
        assert_eq!(s.delay_after(0), None);
    }
}
