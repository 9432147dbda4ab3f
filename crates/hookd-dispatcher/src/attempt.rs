//! One attempt at an endpoint, the same for deliveries and test sends: the request built from
//! the webhook's spec, an OAuth2 token when the webhook has a credential (asked for again once
//! if the endpoint answers 401), and the HTTP exchange.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hookd_core::{AttemptOutcome, AttemptRecord, Event, Webhook};

use crate::{
    http::{AttemptResult, HttpClient, recorded_headers},
    request::{Prepared, prepare},
    tokens::{TokenSource, Tokens},
};

/// What every attempt needs, shared by the whole process.
pub struct Attempter<S = crate::tokens::ControlTokens> {
    pub http: HttpClient,
    pub tokens: Tokens<S>,
}

/// An attempt made: the request as sent (last, if it was sent twice) and how it went.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub prepared: Prepared<'a>,
    pub result: AttemptResult,
}

impl Attempt<'_> {
    /// The record of this attempt as attempt `number` of its delivery, started at
    /// `started_at`: what the history stores and a test send shows.
    pub fn record(&self, number: u32, started_at: DateTime<Utc>) -> AttemptRecord {
        AttemptRecord::new(
            number,
            started_at,
            &self.result.outcome,
            self.result.latency,
            recorded_headers(&self.prepared.request),
        )
    }
}

impl<S: TokenSource> Attempter<S> {
    /// Makes one attempt of `event` at `webhook`. Never fails: every problem is an outcome.
    /// `latency` covers the whole attempt, token requests and a repeated exchange included.
    /// `traceparent` (the attempt span's) is sent to the endpoint.
    #[expect(
        clippy::too_many_arguments,
        reason = "each is the caller's: deliveries and test sends differ in all of them"
    )]
    pub async fn attempt<'a>(
        &self,
        tenant: &str,
        webhook: &'a Webhook,
        event: &'a Event,
        message_id: &'a str,
        sent_at: DateTime<Utc>,
        timeout: Duration,
        traceparent: Option<&'a str>,
    ) -> Attempt<'a> {
        let started = Instant::now();
        let mut prepared = prepare(webhook, event, message_id, sent_at, timeout, traceparent);
        let failed = |prepared, error: String| Attempt {
            prepared,
            result: AttemptResult {
                outcome: AttemptOutcome::Failed { error },
                latency: started.elapsed(),
            },
        };
        if let Some(error) = prepared.invalid.clone() {
            return failed(prepared, error);
        }
        let Some(credential) = &webhook.spec.credential_id else {
            let result = self.http.attempt(&prepared.request).await;
            return Attempt { prepared, result };
        };
        let token = match self.tokens.get(tenant, credential).await {
            Ok(token) => token,
            Err(error) => return failed(prepared, error.to_string()),
        };
        prepared.set_bearer(&token.token);
        let first = self.http.attempt(&prepared.request).await;
        if first.outcome.http_status() != Some(401) {
            return Attempt {
                prepared,
                result: AttemptResult { latency: started.elapsed(), ..first },
            };
        }
        // The token may have been revoked or expired early: one new token, one more try; a
        // second 401 is the attempt's answer.
        tracing::debug!(credential_id = %credential, "endpoint refused the access token; refreshing");
        let token = match self.tokens.refresh(tenant, credential, &token.token).await {
            Ok(token) => token,
            Err(error) => return failed(prepared, error.to_string()),
        };
        prepared.set_bearer(&token.token);
        let second = self.http.attempt(&prepared.request).await;
        Attempt { prepared, result: AttemptResult { latency: started.elapsed(), ..second } }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        sync::{Arc, Mutex},
    };

    use hookd_core::{CredentialId, endpoint::HttpMethod};
    use hookd_proto::v1::{
        self,
        dispatch_service_server::{DispatchService, DispatchServiceServer},
    };
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::{
        http::recorded_headers,
        request::tests::{event, webhook},
        test_server::TestServer,
        tokens::ControlTokens,
    };

    /// A loopback control plane that answers only GetAccessToken: `t1` first, `t2` once a
    /// token is rejected, or an error while `failing`.
    #[derive(Clone, Default)]
    struct Control {
        asked: Arc<Mutex<Vec<v1::GetAccessTokenRequest>>>,
        failing: bool,
    }

    #[tonic::async_trait]
    impl DispatchService for Control {
        type WatchWebhooksStream =
            Pin<Box<dyn futures::Stream<Item = Result<v1::WatchWebhooksResponse, Status>> + Send>>;

        async fn watch_webhooks(
            &self,
            _: Request<v1::WatchWebhooksRequest>,
        ) -> Result<Response<Self::WatchWebhooksStream>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn ack_webhooks(
            &self,
            _: Request<v1::AckWebhooksRequest>,
        ) -> Result<Response<v1::AckWebhooksResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn report_attempts(
            &self,
            _: Request<v1::ReportAttemptsRequest>,
        ) -> Result<Response<v1::ReportAttemptsResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn get_delivery_progress(
            &self,
            _: Request<v1::GetDeliveryProgressRequest>,
        ) -> Result<Response<v1::GetDeliveryProgressResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn get_access_token(
            &self,
            request: Request<v1::GetAccessTokenRequest>,
        ) -> Result<Response<v1::GetAccessTokenResponse>, Status> {
            let request = request.into_inner();
            let token = if request.rejected_token.is_empty() { "t1" } else { "t2" };
            self.asked.lock().expect("not poisoned").push(request);
            if self.failing {
                return Err(Status::unavailable("token endpoint down"));
            }
            Ok(Response::new(v1::GetAccessTokenResponse {
                access_token: token.into(),
                expires_at: Some(hookd_proto::convert::timestamp(
                    Utc::now() + chrono::Duration::hours(1),
                )),
            }))
        }
    }

    async fn attempter(control: Control) -> Attempter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DispatchServiceServer::new(control))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("valid url")
            .connect_lazy();
        Attempter {
            http: HttpClient::loopback(),
            tokens: Tokens::new(ControlTokens::new(crate::control_client(
                channel,
                "test-dispatcher-token",
            ))),
        }
    }

    fn oauth_webhook(base: &str) -> Webhook {
        let mut w = webhook(format!("{base}/hook"), HttpMethod::Post);
        w.spec.credential_id = Some(CredentialId::from("cred_1"));
        w
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_refused_token_is_replaced_once_within_the_attempt() {
        let mut server = TestServer::start(|seen| {
            if seen.header("authorization") == Some("Bearer t2") { 200 } else { 401 }
        })
        .await;
        let control = Control::default();
        let attempter = attempter(control.clone()).await;
        let (w, e) = (oauth_webhook(&server.base), event());
        let made = attempter.attempt("default", &w, &e, "dlv_1", Utc::now(), TIMEOUT, None).await;
        assert!(made.result.outcome.is_success(), "{:?}", made.result.outcome);
        assert_eq!(server.next().await.header("authorization"), Some("Bearer t1"));
        assert_eq!(server.next().await.header("authorization"), Some("Bearer t2"));
        assert!(server.idle());
        let asked = control.asked.lock().expect("not poisoned").clone();
        assert_eq!(asked.len(), 2);
        assert_eq!(
            (asked[0].tenant.as_str(), asked[0].credential_id.as_str()),
            ("default", "cred_1")
        );
        assert_eq!(asked[0].rejected_token, "");
        assert_eq!(asked[1].rejected_token, "t1");
        let recorded = recorded_headers(&made.prepared.request);
        assert!(recorded.contains(&("authorization".into(), "[redacted]".into())));

        // The new token is cached for the next attempt.
        let made = attempter.attempt("default", &w, &e, "dlv_2", Utc::now(), TIMEOUT, None).await;
        assert!(made.result.outcome.is_success());
        assert_eq!(server.next().await.header("authorization"), Some("Bearer t2"));
        assert_eq!(control.asked.lock().expect("not poisoned").len(), 2);
    }

    #[tokio::test]
    async fn a_second_401_is_the_outcome() {
        let mut server = TestServer::start(|_| 401).await;
        let attempter = attempter(Control::default()).await;
        let (w, e) = (oauth_webhook(&server.base), event());
        let made = attempter.attempt("default", &w, &e, "dlv_1", Utc::now(), TIMEOUT, None).await;
        assert_eq!(made.result.outcome.http_status(), Some(401));
        server.next().await;
        server.next().await;
        assert!(server.idle(), "one retry only");
    }

    #[tokio::test]
    async fn no_token_fails_the_attempt_without_a_call() {
        let mut server = TestServer::start(|_| 200).await;
        let attempter = attempter(Control { failing: true, ..Control::default() }).await;
        let (w, e) = (oauth_webhook(&server.base), event());
        let made = attempter.attempt("default", &w, &e, "dlv_1", Utc::now(), TIMEOUT, None).await;
        assert_eq!(
            made.result.outcome,
            AttemptOutcome::Failed {
                error: "oauth2 token for credential cred_1 unavailable: token endpoint down".into()
            }
        );
        assert!(server.idle());
    }
}
