//! Identifiers. Webhook and generated event ids are time-ordered UUIDs (v7) so that ordering
//! by id is ordering by creation; delivery ids are derived, so every dispatcher computes the
//! same id for the same (event, webhook) pair without asking anyone.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

string_id!(
    /// `wh_` followed by a UUID v7.
    WebhookId
);
string_id!(
    /// Chosen by the producer; any non-empty string of at most 256 bytes.
    EventId
);
string_id!(
    /// `dlv_` followed by a UUID v5 of the event id and webhook id.
    DeliveryId
);
string_id!(
    /// `cred_` followed by a UUID v7.
    CredentialId
);

/// Namespace for delivery ids, so they cannot collide with other v5 UUIDs.
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x6b6f_6f68_6464_4000_8000_6465_6c69_7672);

impl WebhookId {
    pub fn generate() -> Self {
        Self(format!("wh_{}", Uuid::now_v7().simple()))
    }
}

impl CredentialId {
    pub fn generate() -> Self {
        Self(format!("cred_{}", Uuid::now_v7().simple()))
    }
}

impl EventId {
    pub fn generate() -> Self {
        Self(format!("evt_{}", Uuid::now_v7().simple()))
    }
}

impl DeliveryId {
    /// The id of the delivery to `webhook` of the event `event` with timestamp `at`.
    /// Deterministic: a redelivered event (after a crash, or published again with the same
    /// id and timestamp) maps to the same delivery.
    ///
    /// `dlv_`, the timestamp's milliseconds (12 hex digits), then 20 hex digits of a name-based
    /// UUID of the pair: ids sort by event time, so the database's indexes on them (the
    /// deliveries' key, the attempts' key) grow at their end instead of at a random page per
    /// row, which is most of what storing a result costs.
    pub fn for_event(event: &EventId, at: DateTime<Utc>, webhook: &WebhookId) -> Self {
        // The separator cannot occur in a webhook id, so (a, b) pairs map to distinct names.
        let name = format!("{}\u{0}{}", webhook.as_str(), event.as_str());
        let hash = Uuid::new_v5(&DELIVERY_NAMESPACE, name.as_bytes()).simple().to_string();
        // Before 1970 or after 10889 (the 48 bits' end) clamps: still deterministic.
        let ms = at.timestamp_millis().clamp(0, 0xffff_ffff_ffff);
        Self(format!("dlv_{ms:012x}{}", &hash[..20]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_id_is_stable_and_distinct_per_pair() {
        let (e1, e2) = (EventId::from("e1"), EventId::from("e2"));
        let (w1, w2) = (WebhookId::from("wh_a"), WebhookId::from("wh_b"));
        let at = DateTime::from_timestamp_millis(1_767_225_600_123).expect("in range");
        let id = |e, w| DeliveryId::for_event(e, at, w);
        assert_eq!(id(&e1, &w1), id(&e1, &w1));
        assert_ne!(id(&e1, &w1), id(&e2, &w1));
        assert_ne!(id(&e1, &w1), id(&e1, &w2));
        // The event's milliseconds first; the same length and alphabet as the ids before them.
        assert!(id(&e1, &w1).as_str().starts_with("dlv_019b76daa87b"), "{}", id(&e1, &w1));
        assert_eq!(id(&e1, &w1).as_str().len(), 36);
        assert!(id(&e1, &w1).as_str()[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn delivery_ids_sort_by_event_time() {
        let w = WebhookId::from("wh_a");
        let ids: Vec<DeliveryId> = (0..100)
            .map(|i| {
                let at = DateTime::from_timestamp_millis(1_767_225_600_000 + i).expect("in range");
                // Event ids that sort the other way round.
                DeliveryId::for_event(&EventId::from(format!("e{}", 1000 - i)), at, &w)
            })
            .collect();
        assert!(ids.windows(2).all(|p| p[0] < p[1]), "{ids:?}");
        let early = DateTime::from_timestamp_millis(-5).expect("in range");
        assert!(
            DeliveryId::for_event(&EventId::from("e"), early, &w)
                .as_str()
                .starts_with("dlv_000000000000")
        );
    }

    #[test]
    fn generated_webhook_ids_sort_by_creation() {
        let a = WebhookId::generate();
        let b = WebhookId::generate();
        assert!(a < b, "{a} should sort before {b}");
    }
}
