//! OAuth2 access tokens for webhooks that reference a credential. The control plane talks to
//! token endpoints because it holds what must outlive a dispatcher and be shared by all of
//! them: the client secret, the refresh token of an `authorization_code` grant (a code can be
//! redeemed once), and the current access token. Dispatchers ask through
//! `DispatchService.GetAccessToken` and cache the answer until shortly before it expires.
//!
//! Token URLs are user input like webhook URLs: token requests connect only where the egress
//! policy allows (the control plane's `allow_cidrs`), checked at connect time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hookd_core::egress::EgressPolicy;
use hookd_core::{
    CredentialId,
    credential::{CredentialSpec, GrantType, TokenMethod},
    endpoint::Secret,
};
use hookd_storage::{Store, TokenState};
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde::Deserialize;

use crate::ControlError;

/// A cached token is handed out only while it has at least this long to live.
const FRESH_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the token endpoint does not say (`expires_in` is optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Fetches, stores and hands out access tokens; one token request per credential at a time.
#[derive(Clone)]
pub struct Tokens {
    store: Store,
    client: Client<hookd_egress::Connector, Full<Bytes>>,
    locks: Arc<Mutex<HashMap<CredentialId, Arc<tokio::sync::Mutex<()>>>>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl Tokens {
    pub fn new(store: Store, egress: Arc<EgressPolicy>) -> Self {
        let connector = hookd_egress::connector(egress, TOKEN_REQUEST_TIMEOUT);
        let client = Client::builder(TokioExecutor::new())
            // A token endpoint's answer head is small; an endless one fails fast.
            .http1_max_buf_size(MAX_TOKEN_RESPONSE)
            .build(connector);
        Self { store, client, locks: Arc::default() }
    }

    fn lock_for(&self, id: &CredentialId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(id.clone()).or_default().clone()
    }

    /// Drops the per-credential lock of a changed or deleted credential (its stored token
    /// state is cleared by the storage).
    pub fn forget(&self, id: &CredentialId) {
        self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    /// A fresh access token. `rejected` is a token an endpoint refused: if it is still the
    /// stored one, a new one is fetched; concurrent callers wait for that one fetch.
    pub async fn get(
        &self,
        tenant: &str,
        id: &CredentialId,
        rejected: &str,
    ) -> Result<(Secret, DateTime<Utc>), ControlError> {
        let lock = self.lock_for(id);
        let _one_at_a_time = lock.lock().await;
        let (credential, mut state) = self
            .store
            .get_credential(tenant, id)
            .await?
            .ok_or_else(|| ControlError::NotFound { what: "credential", id: id.to_string() })?;
        let now = Utc::now();
        if let (Some(token), Some(expires_at)) = (&state.access_token, state.expires_at)
            && expires_at > now + FRESH_MARGIN
            && token.expose() != rejected
        {
            return Ok((token.clone(), expires_at));
        }
        let result = self.fetch(&credential.spec, state.refresh_token.as_ref()).await;
        match result {
            Ok(answer) => {
                let lifetime = answer
                    .expires_in
                    .as_ref()
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
                    .map_or(DEFAULT_LIFETIME, Duration::from_secs);
                let expires_at =
                    now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
                let token = Secret::new(answer.access_token);
                state = TokenState {
                    access_token: Some(token.clone()),
                    expires_at: Some(expires_at),
                    // A server may keep the refresh token the same and not send it again.
                    refresh_token: answer.refresh_token.map(Secret::new).or(state.refresh_token),
                    last_error: String::new(),
                };
                self.store.save_token_state(tenant, id, &state).await?;
                tracing::info!(credential_id = %id, expires_at = %expires_at, "oauth2 token fetched");
                Ok((token, expires_at))
            }
            Err(reason) => {
                tracing::warn!(credential_id = %id, error = %reason, "oauth2 token request failed");
                state.last_error.clone_from(&reason);
                state.access_token = None;
                self.store.save_token_state(tenant, id, &state).await?;
                Err(ControlError::Unavailable(format!(
                    "oauth2 token request for credential {id} failed: {reason}"
                )))
            }
        }
    }

    /// One token request. `Err` is a description fit for the attempt history: it never
    /// carries the client secret, the code or a token.
    async fn fetch(
        &self,
        spec: &CredentialSpec,
        refresh_token: Option<&Secret>,
    ) -> Result<TokenResponse, String> {
        let params = token_params(spec, refresh_token)?;
        let mut url =
            url::Url::parse(&spec.token_url).map_err(|e| format!("token url is not valid: {e}"))?;
        let builder = Request::builder().header(header::ACCEPT, "application/json");
        let request = match spec.method {
            TokenMethod::Post => builder
                .method(Method::POST)
                .uri(url.as_str())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(params))),
            TokenMethod::Get => {
                let query = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{params}"),
                    _ => params,
                };
                url.set_query(Some(&query));
                builder.method(Method::GET).uri(url.as_str()).body(Full::new(Bytes::new()))
            }
        }
        .map_err(|e| format!("cannot build the token request: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("cannot reach the token endpoint: {}", innermost(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_TOKEN_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("cannot read the token response: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(TOKEN_REQUEST_TIMEOUT, exchange).await.map_err(|_| {
                format!(
                    "the token endpoint did not answer within {} s",
                    TOKEN_REQUEST_TIMEOUT.as_secs()
                )
            })??;
        if !status.is_success() {
            let detail = match serde_json::from_slice::<TokenError>(&body) {
                Ok(e) => match e.error_description {
                    Some(d) => format!("{}: {d}", e.error),
                    None => e.error,
                },
                Err(_) => String::from_utf8_lossy(&body).chars().take(200).collect(),
            };
            return Err(format!("the token endpoint answered {}: {detail}", status.as_u16()));
        }
        serde_json::from_slice::<TokenResponse>(&body)
            .map_err(|e| format!("the token response is not an OAuth2 token: {e}"))
            .and_then(|t| {
                if t.access_token.is_empty() {
                    Err("the token response has an empty access_token".to_owned())
                } else {
                    Ok(t)
                }
            })
    }
}

/// The form parameters of a token request (RFC 6749 section 4.4, 4.1.3 and 6), with the
/// client authenticated by parameters (`client_secret_post`), as the seed products send them.
fn token_params(spec: &CredentialSpec, refresh_token: Option<&Secret>) -> Result<String, String> {
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    match (spec.grant_type, refresh_token, &spec.code) {
        (GrantType::AuthorizationCode, Some(refresh), _) => {
            params.append_pair("grant_type", "refresh_token");
            params.append_pair("refresh_token", refresh.expose());
        }
        (GrantType::AuthorizationCode, None, Some(code)) => {
            params.append_pair("grant_type", "authorization_code");
            params.append_pair("code", code.expose());
        }
        (GrantType::AuthorizationCode, None, None) => {
            return Err("the credential has no authorization code".to_owned());
        }
        (GrantType::ClientCredentials, ..) => {
            params.append_pair("grant_type", "client_credentials");
        }
    }
    params.append_pair("client_id", &spec.client_id);
    params.append_pair("client_secret", spec.client_secret.expose());
    if !spec.scope.is_empty() {
        params.append_pair("scope", &spec.scope);
    }
    for (k, v) in &spec.extra_params {
        params.append_pair(k, v);
    }
    Ok(params.finish())
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
