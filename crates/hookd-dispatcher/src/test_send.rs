//! Test sends: the control plane asks one dispatcher (core NATS request-reply, queue group) to
//! make one attempt of an event at a webhook right now, through the same request building,
//! OAuth2 and HTTP path as deliveries, and gets the outcome back. Nothing is recorded; the
//! webhook's status does not matter.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use hookd_core::{AttemptOutcome, AttemptRecord, Event};
use hookd_nats::test_send::{TEST_SEND_QUEUE, TEST_SEND_SUBJECT, TestSendReply, TestSendRequest};
use tokio::{sync::watch, task::JoinSet};
use tracing::Instrument;

use crate::{attempt::Attempter, definitions::Definitions};

/// How long a test send waits for a webhook this dispatcher has not heard of yet.
const DEFINITIONS_WAIT: Duration = Duration::from_secs(1);
/// Test sends answered at once; more wait in the subscription.
const CONCURRENCY: usize = 16;

/// What answering needs.
pub struct TestSends {
    pub definitions: Definitions,
    pub attempter: Arc<Attempter>,
    pub default_timeout: Duration,
}

impl TestSends {
    /// Answers test-send requests until `stop`, then lets the ones in progress finish.
    pub async fn serve(
        self: Arc<Self>,
        client: async_nats::Client,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut requests = loop {
            match client.queue_subscribe(TEST_SEND_SUBJECT, TEST_SEND_QUEUE.to_owned()).await {
                Ok(s) => break s,
                Err(error) => {
                    tracing::warn!(%error, "cannot subscribe to test sends; retrying");
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut tasks = JoinSet::new();
        loop {
            let msg = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                msg = requests.next() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
            };
            while tasks.len() >= CONCURRENCY {
                tasks.join_next().await;
            }
            let Some(reply_to) = msg.reply else {
                tracing::warn!("test-send request without a reply subject; ignoring it");
                continue;
            };
            let this = self.clone();
            let client = client.clone();
            tasks.spawn(async move {
                let reply = this.answer(&msg.payload).await;
                // A reply struct of strings and numbers always serializes.
                let body = serde_json::to_vec(&reply).unwrap_or_default();
                if let Err(error) = client.publish(reply_to, Bytes::from(body)).await {
                    tracing::warn!(%error, "cannot reply to a test send");
                }
            });
        }
        let _ = requests.unsubscribe().await;
        while tasks.join_next().await.is_some() {}
    }

    /// The reply to one request. Never fails: every problem is in the reply's `error`.
    pub async fn answer(&self, payload: &[u8]) -> TestSendReply {
        let started_at = Utc::now();
        let request: TestSendRequest = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => return refusal(started_at, format!("malformed test-send request: {e}")),
        };
        let span = tracing::info_span!(
            "test_send",
            webhook_id = %request.webhook_id,
            event_id = tracing::field::Empty,
        );
        self.attempt(request, started_at).instrument(span).await
    }

    async fn attempt(
        &self,
        request: TestSendRequest,
        started_at: chrono::DateTime<Utc>,
    ) -> TestSendReply {
        let tenant = request.tenant.as_str();
        let Some(webhook) =
            self.definitions.wait_for(tenant, &request.webhook_id, DEFINITIONS_WAIT).await
        else {
            let error = format!("webhook {} is not known to this dispatcher", request.webhook_id);
            return refusal(started_at, error);
        };
        let event = match serde_json::to_vec(&request.event)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Event::from_json(&bytes, started_at).map_err(|e| e.to_string()))
        {
            Ok(event) => event,
            Err(e) => return refusal(started_at, format!("the test event is not valid: {e}")),
        };
        tracing::Span::current().record("event_id", event.id.as_str());
        let message_id = format!("test_{}", uuid::Uuid::now_v7().simple());
        let timeout = webhook.spec.attempt_timeout.unwrap_or(self.default_timeout);
        let traceparent = hookd_nats::trace::traceparent(&tracing::Span::current());
        let made = self
            .attempter
            .attempt(
                tenant,
                &webhook,
                &event,
                &message_id,
                started_at,
                timeout,
                traceparent.as_deref(),
            )
            .await;
        let outcome = &made.result.outcome;
        tracing::info!(
            http_status = outcome.http_status(),
            success = outcome.is_success(),
            "test send made"
        );
        TestSendReply {
            attempt: made.record(1, started_at),
            payload: made.prepared.payload_text(),
            url: made.prepared.shown_url(),
        }
    }
}

/// A reply for a test send that could not be made.
fn refusal(started_at: chrono::DateTime<Utc>, error: String) -> TestSendReply {
    tracing::info!(%error, "test send refused");
    let outcome = AttemptOutcome::Failed { error };
    TestSendReply {
        attempt: AttemptRecord::new(1, started_at, &outcome, Duration::ZERO, Vec::new()),
        payload: String::new(),
        url: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use hookd_core::{
        WebhookId,
        endpoint::{ApiKeyLocation, EndpointAuth, HttpMethod, Secret},
    };
    use hookd_proto::{
        convert::{Secrets, webhook_to_proto},
        v1::{self, watch_webhooks_response::Change},
    };

    use super::*;
    use crate::{
        http::HttpClient,
        request::tests::webhook,
        test_server::TestServer,
        tokens::{ControlTokens, Tokens},
    };

    fn test_sends(webhooks: Vec<hookd_core::Webhook>) -> TestSends {
        let definitions = Definitions::default();
        definitions.apply(
            Change::Snapshot(v1::SnapshotPage {
                webhooks: webhooks.iter().map(|w| webhook_to_proto(w, Secrets::Revealed)).collect(),
                complete: true,
                event_types: vec![],
            }),
            &mut None,
        );
        // Never dialled: none of these webhooks has an OAuth2 credential.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let control = crate::control_client(channel, "test-dispatcher-token");
        TestSends {
            definitions,
            attempter: Arc::new(Attempter {
                http: HttpClient::loopback(),
                tokens: Tokens::new(ControlTokens::new(control)),
            }),
            default_timeout: Duration::from_secs(5),
        }
    }

    fn request(webhook_id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "tenant": "default",
            "webhook_id": webhook_id,
            "event": {"id": "e1", "type": "contact-created", "data": {"n": 2}},
        }))
        .expect("json")
    }

    #[tokio::test]
    async fn a_test_send_makes_one_attempt_even_for_an_inactive_webhook() {
        let mut server = TestServer::start(|_| 202).await;
        let mut w = webhook(format!("{}/hook", server.base), HttpMethod::Get);
        w.spec.active = false;
        w.spec.fields = vec!["/n".into()];
        w.spec.auth = EndpointAuth::ApiKey {
            name: "key".into(),
            value: Secret::new("s3cret"),
            location: ApiKeyLocation::Query,
        };
        let sends = test_sends(vec![w]);
        let reply = sends.answer(&request("wh_1")).await;
        let seen = server.next().await;
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.target, "/hook?n=2&key=s3cret");
        assert!(seen.header("webhook-id").is_some_and(|id| id.starts_with("test_")));
        assert!(server.idle(), "exactly one request");
        assert!(reply.attempt.success, "{reply:?}");
        assert_eq!(reply.attempt.http_status, Some(202));
        assert_eq!(reply.attempt.response_body, "ok");
        assert_eq!(reply.attempt.error, "");
        assert_eq!(reply.payload, "");
        assert_eq!(reply.url, format!("{}/hook?n=2&key=[redacted]", server.base));
        assert!(reply.attempt.request_headers.contains(&("hookd-event-id".into(), "e1".into())));
        assert!(!serde_json::to_string(&reply).expect("json").contains("s3cret"));
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_reported_not_retried() {
        let mut server = TestServer::start(|_| 500).await;
        let w = webhook(format!("{}/hook", server.base), HttpMethod::Post);
        let reply = test_sends(vec![w]).answer(&request("wh_1")).await;
        server.next().await;
        assert!(server.idle());
        assert!(!reply.attempt.success);
        assert_eq!(reply.attempt.http_status, Some(500));
        assert_eq!(reply.attempt.error, "endpoint answered 500");
        assert!(reply.payload.contains("\"eventId\":\"e1\""), "{}", reply.payload);
    }

    #[tokio::test]
    async fn unknown_webhooks_and_malformed_requests_get_an_error_reply() {
        let sends = test_sends(vec![]);
        let reply = sends.answer(&request("wh_nope")).await;
        assert!(!reply.attempt.success);
        assert_eq!(reply.attempt.error, "webhook wh_nope is not known to this dispatcher");
        let reply = sends.answer(b"{not json").await;
        assert!(
            reply.attempt.error.starts_with("malformed test-send request"),
            "{}",
            reply.attempt.error
        );
        let w = webhook("http://127.0.0.1:9/".into(), HttpMethod::Post);
        let bad_event = serde_json::to_vec(&serde_json::json!({
            "tenant": "default", "webhook_id": WebhookId::from("wh_1"), "event": {"type": "x"},
        }))
        .expect("json");
        let reply = test_sends(vec![w]).answer(&bad_event).await;
        assert!(
            reply.attempt.error.starts_with("the test event is not valid"),
            "{}",
            reply.attempt.error
        );
    }
}
