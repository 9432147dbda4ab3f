//! Test sends: the control plane asks any one dispatcher (NATS request-reply to a queue
//! group) to make one attempt right now through its real HTTP path, and gets the outcome back.

use hookd_core::{AttemptRecord, WebhookId};
use serde::{Deserialize, Serialize};

/// Subject of test-send requests; dispatchers subscribe in [`TEST_SEND_QUEUE`], so exactly one
/// answers each request.
pub const TEST_SEND_SUBJECT: &str = "hookd.control.test-send";
pub const TEST_SEND_QUEUE: &str = "hookd-dispatchers";

/// Deliver `event` to `webhook_id` once, whatever the webhook's status. Nothing is recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestSendRequest {
    pub tenant: String,
    pub webhook_id: WebhookId,
    /// The event in its published JSON form (see `hookd_core::Event::to_json`).
    pub event: serde_json::Value,
}

/// How the attempt went: the attempt as the history would show it (number 1), with the
/// request body and URL, which a test send shows and the history does not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestSendReply {
    /// Flattened, so the reply keeps the field names it had before attempts had one shape:
    /// control planes and dispatchers of either version understand each other in a rollout.
    #[serde(flatten)]
    pub attempt: AttemptRecord,
    /// The request body; empty for methods without one.
    pub payload: String,
    /// The URL requested, query included, API keys in it redacted.
    pub url: String,
}
