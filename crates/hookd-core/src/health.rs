//! Endpoint health: when the system deactivates a webhook whose endpoint keeps failing. The
//! rule is pure so the control plane can evaluate it inside the transaction that records the
//! attempts that may trip it (no polling scan over all webhooks).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The deactivation rule: both conditions must hold, so a burst of failures on an endpoint
/// that worked an hour ago does not deactivate it, and neither does one failure a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRule {
    /// At least this many consecutive failed attempts (0 disables the rule).
    pub max_failures: u32,
    /// And no success (nor activation) for at least this long.
    pub no_success_for: Duration,
}

impl Default for HealthRule {
    fn default() -> Self {
        Self { max_failures: 10, no_success_for: Duration::from_secs(24 * 3600) }
    }
}

/// A webhook's own thresholds; each unset one is the deployment's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthPolicy {
    /// Consecutive failed attempts (0 turns the rule off for this webhook; `410 Gone` still
    /// deactivates it).
    #[serde(default)]
    pub max_failures: Option<u32>,
    #[serde(default)]
    pub no_success_for: Option<Duration>,
}

/// The longest `no_success_for` a webhook may set: longer than the buffer window would only
/// mean more events expire before anyone notices.
pub const MAX_NO_SUCCESS_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

impl HealthPolicy {
    pub fn is_default(&self) -> bool {
        self.max_failures.is_none() && self.no_success_for.is_none()
    }
}

/// What the control plane knows of a webhook's health after recording a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub consecutive_failures: u32,
    /// The later of the last success, the last (re)activation and the creation: the rule's
    /// clock starts there, so a freshly reactivated webhook gets a full window again.
    pub healthy_since: DateTime<Utc>,
    /// The endpoint answered `410 Gone` after its last success: it says it is gone for good.
    pub gone: bool,
}

/// Who deactivated a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeactivatedBy {
    User,
    System,
}

impl DeactivatedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

impl HealthRule {
    /// This rule with a webhook's own thresholds in place of the deployment's.
    pub fn with(self, policy: &HealthPolicy) -> Self {
        Self {
            max_failures: policy.max_failures.unwrap_or(self.max_failures),
            no_success_for: policy.no_success_for.unwrap_or(self.no_success_for),
        }
    }

    /// Why the webhook must be deactivated now, or `None` while it is healthy enough.
    pub fn verdict(&self, state: &HealthState, now: DateTime<Utc>) -> Option<String> {
        if state.gone {
            return Some("the endpoint answered 410 gone".to_owned());
        }
        if self.max_failures == 0 || state.consecutive_failures < self.max_failures {
            return None;
        }
        let quiet = (now - state.healthy_since).to_std().unwrap_or_default();
        (quiet >= self.no_success_for).then(|| {
            format!(
                "{} consecutive failed attempts and no success for {} s",
                state.consecutive_failures,
                quiet.as_secs()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(failures: u32, quiet_secs: i64, gone: bool) -> (HealthState, DateTime<Utc>) {
        let now = Utc::now();
        let since = now - chrono::Duration::seconds(quiet_secs);
        (HealthState { consecutive_failures: failures, healthy_since: since, gone }, now)
    }

    #[test]
    fn both_conditions_are_needed() {
        let rule = HealthRule { max_failures: 3, no_success_for: Duration::from_secs(60) };
        let (s, now) = state(3, 61, false);
        assert!(rule.verdict(&s, now).is_some());
        let (s, now) = state(2, 3600, false);
        assert!(rule.verdict(&s, now).is_none(), "too few failures");
        let (s, now) = state(100, 59, false);
        assert!(rule.verdict(&s, now).is_none(), "a success too recent");
    }

    #[test]
    fn a_webhook_policy_overrides_only_what_it_sets() {
        let base = HealthRule { max_failures: 10, no_success_for: Duration::from_secs(86_400) };
        let own = HealthPolicy { max_failures: Some(2), no_success_for: None };
        assert_eq!(
            base.with(&own),
            HealthRule { max_failures: 2, no_success_for: Duration::from_secs(86_400) }
        );
        assert_eq!(base.with(&HealthPolicy::default()), base);
    }

    #[test]
    fn gone_deactivates_at_once_and_zero_disables_the_rule() {
        let rule = HealthRule { max_failures: 0, no_success_for: Duration::ZERO };
        let (s, now) = state(1000, 1_000_000, false);
        assert!(rule.verdict(&s, now).is_none());
        let (s, now) = state(1, 0, true);
        assert!(rule.verdict(&s, now).expect("gone").contains("410"));
    }
}
