//! Test sends: the control plane asks any one dispatcher (NATS request-reply to a queue
//! group) to make one attempt right now through its real HTTP path, and gets the outcome back.

use chrono::{DateTime, Utc};
use hookd_core::WebhookId;
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

/// How the attempt went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestSendReply {
    pub started_at: DateTime<Utc>,
    /// The HTTP status of the answer; `None` when there was none.
    pub http_status: Option<u16>,
    pub success: bool,
    pub latency_ms: u64,
    /// Why the attempt failed (or why it could not be made); empty on success.
    pub error: String,
    /// The first bytes of the answer.
    pub response_body: String,
    /// Request headers as sent, secrets redacted.
    pub request_headers: Vec<(String, String)>,
    /// The request body; empty for methods without one.
    pub payload: String,
    /// The URL requested, query included, API keys in it redacted.
    pub url: String,
}
