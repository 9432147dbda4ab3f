//! When failed attempts are tried again, and what becomes of a delivery after an attempt.
//!
//! [`decide`] is the whole retry decision as a pure function (outcome, position in the
//! retry chain, schedule, now → delivered, retried when and how, or failed); the dispatcher
//! only carries it out.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AttemptOutcome, DeliveryStatus};

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

/// How a retry waits for its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPath {
    /// The message is NAKed with the delay: JetStream redelivers the same message, to the
    /// millisecond. For near retries only, because a NAKed message stays pending on its
    /// consumer and counts against `max_ack_pending`.
    Nak,
    /// A new message is stored as a JetStream message schedule due at the time, and the
    /// current one is acknowledged: a far retry waits as a stored message, not a pending one.
    Schedule,
}

/// What becomes of a delivery after one of its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// The endpoint answered 2xx.
    Delivered,
    /// The attempt failed and the schedule has another: tried again after `delay`, at `at`.
    Retry { delay: Duration, at: DateTime<Utc>, path: RetryPath },
    /// The attempt failed and was the schedule's last.
    Failed,
}

impl RetryDecision {
    /// Where the delivery stands.
    pub fn status(&self) -> DeliveryStatus {
        match self {
            Self::Delivered => DeliveryStatus::Delivered,
            Self::Retry { .. } => DeliveryStatus::Pending,
            Self::Failed => DeliveryStatus::Failed,
        }
    }

    /// When the next attempt is due, if there is one.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Retry { at, .. } => Some(*at),
            _ => None,
        }
    }
}

/// What becomes of delivery `delivery_id` after the attempt at `position` (1-based, within
/// its retry chain) ended with `outcome` at `now`: delivered on 2xx; otherwise retried after
/// [`next_delay`], by NAK when that is at most `nak_max_delay` and as a schedule beyond; or
/// failed when the schedule has no more attempts.
pub fn decide(
    outcome: &AttemptOutcome,
    position: u32,
    schedule: &RetrySchedule,
    delivery_id: &str,
    now: DateTime<Utc>,
    nak_max_delay: Duration,
) -> RetryDecision {
    if outcome.is_success() {
        return RetryDecision::Delivered;
    }
    let Some(delay) = next_delay(schedule, position, outcome, delivery_id) else {
        return RetryDecision::Failed;
    };
    // `next_delay` is at most MAX_RETRY_DELAY, which chrono represents.
    let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    let path = if delay <= nak_max_delay { RetryPath::Nak } else { RetryPath::Schedule };
    RetryDecision::Retry { delay, at, path }
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

    /// One row of the decision table: the outcome of the attempt at `position` of a chain
    /// with the default schedule, and what must follow.
    struct Case {
        name: &'static str,
        outcome: AttemptOutcome,
        position: u32,
        expected: Expected,
    }

    #[derive(Debug, PartialEq)]
    enum Expected {
        Delivered,
        Retry { about_secs: u64, path: RetryPath },
        Failed,
    }

    #[test]
    fn the_decision_table() {
        let failed = |error: &str| AttemptOutcome::Failed { error: error.into() };
        let cases = [
            Case {
                name: "2xx",
                outcome: answered(200, None),
                position: 1,
                expected: Expected::Delivered,
            },
            Case {
                name: "2xx on the last attempt",
                outcome: answered(204, None),
                position: 6,
                expected: Expected::Delivered,
            },
            Case {
                name: "500 first: near, NAK",
                outcome: answered(500, None),
                position: 1,
                expected: Expected::Retry { about_secs: 15, path: RetryPath::Nak },
            },
            Case {
                name: "connect error second: 60 s is still a NAK",
                outcome: failed("connection refused"),
                position: 2,
                expected: Expected::Retry { about_secs: 60, path: RetryPath::Nak },
            },
            Case {
                name: "timeout third: far, schedule",
                outcome: AttemptOutcome::TimedOut { after: Duration::from_secs(10) },
                position: 3,
                expected: Expected::Retry { about_secs: 225, path: RetryPath::Schedule },
            },
            Case {
                name: "429 with Retry-After beyond the NAK bound moves to a schedule",
                outcome: answered(429, Some(100)),
                position: 2,
                expected: Expected::Retry { about_secs: 100, path: RetryPath::Schedule },
            },
            Case {
                name: "3xx is a failure",
                outcome: answered(302, None),
                position: 1,
                expected: Expected::Retry { about_secs: 15, path: RetryPath::Nak },
            },
            Case {
                name: "the last attempt fails the delivery",
                outcome: answered(503, Some(10)),
                position: 6,
                expected: Expected::Failed,
            },
        ];
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let schedule = RetrySchedule::default();
        for case in cases {
            let decision = decide(
                &case.outcome,
                case.position,
                &schedule,
                "dlv_t",
                now,
                Duration::from_secs(60),
            );
            let got = match decision {
                RetryDecision::Delivered => Expected::Delivered,
                RetryDecision::Failed => Expected::Failed,
                RetryDecision::Retry { delay, at, path } => {
                    assert_eq!(
                        at - now,
                        chrono::Duration::from_std(delay).expect("delay"),
                        "{}",
                        case.name
                    );
                    let expected = match case.expected {
                        Expected::Retry { about_secs, .. } => Duration::from_secs(about_secs),
                        _ => delay,
                    };
                    assert!(within_jitter(delay, expected), "{}: {delay:?}", case.name);
                    Expected::Retry { about_secs: expected.as_secs(), path }
                }
            };
            assert_eq!(got, case.expected, "{}", case.name);
            let status = match case.expected {
                Expected::Delivered => DeliveryStatus::Delivered,
                Expected::Retry { .. } => DeliveryStatus::Pending,
                Expected::Failed => DeliveryStatus::Failed,
            };
            assert_eq!(decision.status(), status, "{}", case.name);
            assert_eq!(decision.next_attempt_at().is_some(), status == DeliveryStatus::Pending);
        }
    }

    #[test]
    fn an_empty_schedule_fails_at_the_first_failure() {
        let none = RetrySchedule::from_secs(&[]);
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let d = decide(&answered(500, None), 1, &none, "dlv_e", now, Duration::from_secs(60));
        assert_eq!(d, RetryDecision::Failed);
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
