//! hookd's domain: webhooks, events, deliveries, attempts and retry schedules, with the rules
//! that decide what is valid. Pure data and logic: no I/O, no async, no wire formats.

pub mod access;
pub mod catalog;
pub mod credential;
pub mod delivery;
pub mod egress;
pub mod endpoint;
pub mod event;
pub mod filter;
pub mod health;
pub mod ids;
pub mod ordering;
pub mod payload;
pub mod portal;
pub mod rate_limit;
pub mod retry;
pub mod servers;
pub mod signing;
pub mod text;
pub mod webhook;

pub use delivery::{AttemptOutcome, AttemptRecord, AttemptReport, DeliveryStatus};
pub use event::{Event, EventError, EventType};
pub use health::{DeactivatedBy, HealthPolicy, HealthRule, HealthState};
pub use ids::{CredentialId, DeliveryId, EventId, WebhookId};
pub use retry::{RetryDecision, RetryPath, RetrySchedule, decide, next_delay};
pub use webhook::{Webhook, WebhookSpec, WebhookStats};

/// The tenant of a single-tenant setup (`make run`, the tests' first tenant); nothing in hookd
/// falls back to it: the tenant always comes from the caller's token.
pub const DEFAULT_TENANT: &str = "default";

/// A value a user gave that hookd cannot accept, naming the field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}
