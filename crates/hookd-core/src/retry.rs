//! When failed attempts are tried again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
