//! Deliveries (one event to one webhook) and the attempts made at them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; another attempt is scheduled.
    Pending,
    /// An attempt got a 2xx answer.
    Delivered,
    /// Every scheduled attempt failed.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// How one HTTP attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered; `status` decides success (2xx only). `retry_after` is the
    /// endpoint's `Retry-After`, if it sent a valid one.
    Answered { status: u16, body_excerpt: String, retry_after: Option<Duration> },
    /// No complete answer within the attempt timeout.
    TimedOut { after: Duration },
    /// Could not connect, TLS failed, or the connection broke before an answer.
    Failed { error: String },
}

impl AttemptOutcome {
    /// 2xx is delivered; everything else, including 3xx (redirects are not followed), fails.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Answered { status, .. } if (200..300).contains(status))
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short reason for people, empty on success.
    pub fn error(&self) -> String {
        match self {
            Self::Answered { status, .. } if (200..300).contains(status) => String::new(),
            Self::Answered { status, .. } if (300..400).contains(status) => {
                format!("endpoint answered {status}: redirects are not followed")
            }
            Self::Answered { status, .. } => format!("endpoint answered {status}"),
            Self::TimedOut { after } => format!("no answer within {} ms", after.as_millis()),
            Self::Failed { error } => error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> AttemptOutcome {
        AttemptOutcome::Answered { status, body_excerpt: String::new(), retry_after: None }
    }

    #[test]
    fn only_2xx_is_success() {
        assert!(answered(200).is_success());
        assert!(answered(204).is_success());
        assert!(!answered(301).is_success());
        assert!(answered(302).error().contains("redirects are not followed"));
        assert!(!answered(429).is_success());
        assert!(!answered(500).is_success());
        assert!(!AttemptOutcome::TimedOut { after: Duration::from_secs(10) }.is_success());
        assert!(!AttemptOutcome::Failed { error: "refused".into() }.is_success());
    }

    #[test]
    fn status_round_trips_through_text() {
        for s in [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("lost"), None);
    }
}
