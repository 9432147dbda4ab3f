//! One attempt at an endpoint, the same for deliveries and test sends: the request built from
//! the webhook's spec, an OAuth2 token when the webhook has a credential (asked for again once
//! if the endpoint answers 401), and the HTTP exchange.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hookd_core::{AttemptOutcome, Event, Webhook};

use crate::{
    http::{AttemptResult, HttpClient},
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

impl<S: TokenSource> Attempter<S> {
    /// Makes one attempt of `event` at `webhook`. Never fails: every problem is an outcome.
    /// `latency` covers the whole attempt, token requests and a repeated exchange included.
    pub async fn attempt<'a>(
        &self,
        tenant: &str,
        webhook: &'a Webhook,
        event: &'a Event,
        message_id: &'a str,
        sent_at: DateTime<Utc>,
        timeout: Duration,
    ) -> Attempt<'a> {
        let started = Instant::now();
        let mut prepared = prepare(webhook, event, message_id, sent_at, timeout);
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
