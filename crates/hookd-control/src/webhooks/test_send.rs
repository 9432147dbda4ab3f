//! Test sends: one attempt of a sample (or given) event at a webhook, now, through a
//! dispatcher's real HTTP path (NATS request-reply to any one dispatcher), answered with the
//! attempt as the history would show it. Nothing is recorded or counted.

use std::time::Duration;

use chrono::Utc;
use hookd_core::{Event, EventId, EventType, InvalidField, catalog};
use hookd_nats::test_send::{TEST_SEND_SUBJECT, TestSendReply, TestSendRequest};
use hookd_proto::{convert::value_to_json, v1};

use super::WebhookApi;
use crate::{ControlError, auth::Caller};

/// How long a test send may take beyond two HTTP tries (the second after an OAuth2 refresh):
/// two token fetches of up to 10 s each and queueing at the dispatcher.
const TEST_SEND_MARGIN: Duration = Duration::from_secs(25);
/// The dispatcher's default attempt timeout, for webhooks without their own.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

impl WebhookApi {
    pub(super) async fn test_send(
        &self,
        caller: &Caller,
        r: v1::TestWebhookRequest,
    ) -> Result<v1::TestWebhookResponse, ControlError> {
        let tenant = caller.tenant.as_str();
        let webhook = self.load(caller, &r.id).await?;
        let event_type = EventType::parse(r.event_type.trim())
            .map_err(|e| InvalidField::new("event_type", e.reason))?;
        if !webhook.spec.subscribes_to(&event_type) {
            return Err(InvalidField::new(
                "event_type",
                format!("webhook {} does not subscribe to \"{event_type}\"", webhook.id),
            )
            .into());
        }
        let catalogued = self.store.get_event_type(tenant, event_type.as_str()).await?;
        let data = match (r.data.map(value_to_json), &catalogued) {
            (Some(data), _) => data,
            (None, Some(def)) => def.spec.sample_data(),
            (None, None) => catalog::stock_sample(&event_type),
        };
        if let Some(schema) = self.catalog.schema(tenant, event_type.as_str()) {
            schema.check(&data).map_err(|e| InvalidField::new("data", e))?;
        }
        let event = Event {
            id: EventId::generate(),
            event_type,
            entity_id: "test".to_owned(),
            timestamp: Utc::now(),
            context: serde_json::json!({ "test": true }),
            data,
        };
        let payload = serde_json::to_vec(&TestSendRequest {
            tenant: tenant.to_owned(),
            webhook_id: webhook.id.clone(),
            event: serde_json::to_value(&event)
                .map_err(|e| ControlError::Internal(e.to_string()))?,
        })
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        let timeout =
            webhook.spec.attempt_timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT) + TEST_SEND_MARGIN;
        let answer = self
            .nats
            .send_request(
                TEST_SEND_SUBJECT,
                async_nats::Request::new().payload(payload.into()).timeout(Some(timeout)),
            )
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => ControlError::Unavailable(
                    "no dispatcher is running to make the test send".to_owned(),
                ),
                async_nats::RequestErrorKind::TimedOut => ControlError::Unavailable(format!(
                    "no dispatcher answered the test send within {} s",
                    timeout.as_secs()
                )),
                _ => ControlError::Unavailable(format!("cannot reach a dispatcher: {e}")),
            })?;
        let reply: TestSendReply = serde_json::from_slice(&answer.payload)
            .map_err(|e| ControlError::Internal(format!("unreadable test-send reply: {e}")))?;
        tracing::info!(
            http_status = reply.attempt.http_status,
            success = reply.attempt.success,
            "test send made"
        );
        Ok(v1::TestWebhookResponse {
            attempt: Some(reply.attempt.into()),
            payload: reply.payload,
            url: reply.url,
        })
    }
}
