//! Identifiers. Webhook and generated event ids are time-ordered UUIDs (v7) so that ordering
//! by id is ordering by creation; delivery ids are derived, so every dispatcher computes the
//! same id for the same (event, webhook) pair without asking anyone.

use std::fmt;

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
    /// The id of the delivery of `event` to `webhook`. Deterministic: a redelivered event
    /// (after a crash, or published twice) maps to the same delivery.
    pub fn for_event(event: &EventId, webhook: &WebhookId) -> Self {
        // The separator cannot occur in a webhook id, so (a, b) pairs map to distinct names.
        let name = format!("{}\u{0}{}", webhook.as_str(), event.as_str());
        Self(format!("dlv_{}", Uuid::new_v5(&DELIVERY_NAMESPACE, name.as_bytes()).simple()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_id_is_stable_and_distinct_per_pair() {
        let (e1, e2) = (EventId::from("e1"), EventId::from("e2"));
        let (w1, w2) = (WebhookId::from("wh_a"), WebhookId::from("wh_b"));
        assert_eq!(DeliveryId::for_event(&e1, &w1), DeliveryId::for_event(&e1, &w1));
        assert_ne!(DeliveryId::for_event(&e1, &w1), DeliveryId::for_event(&e2, &w1));
        assert_ne!(DeliveryId::for_event(&e1, &w1), DeliveryId::for_event(&e1, &w2));
        assert!(DeliveryId::for_event(&e1, &w1).as_str().starts_with("dlv_"));
    }

    #[test]
    fn generated_webhook_ids_sort_by_creation() {
        let a = WebhookId::generate();
        let b = WebhookId::generate();
        assert!(a < b, "{a} should sort before {b}");
    }
}
