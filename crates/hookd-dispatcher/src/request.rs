//! Building the HTTP request of an attempt from a webhook's spec: method, body or query
//! parameters, hookd's own headers, custom headers and the endpoint's auth. Knows which
//! header or query parameter carries a secret, so what is recorded or shown is redacted.

use std::{borrow::Cow, time::Duration};

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use hookd_core::{
    Event, Webhook,
    endpoint::{ApiKeyLocation, EndpointAuth},
    payload,
};

use crate::http::{AttemptRequest, OutHeader, REDACTED};

/// The header an OAuth2 access token (and basic or bearer auth) travels in.
pub const AUTHORIZATION: &str = "authorization";

/// An attempt's request, ready to send, with what is needed to show it without secrets.
#[derive(Debug)]
pub struct Prepared<'a> {
    pub request: AttemptRequest<'a>,
    /// The query parameter carrying an API key, whose value [`Prepared::shown_url`] hides.
    secret_query: Option<&'a str>,
    /// Why the request cannot be sent; the attempt then fails without a call.
    pub invalid: Option<String>,
}

/// Builds the request of one attempt of `event` at `webhook`. `message_id` goes in
/// `webhook-id` (the delivery id; a test send's own id), `sent_at` in `webhook-timestamp`.
pub fn prepare<'a>(
    webhook: &'a Webhook,
    event: &'a Event,
    message_id: &'a str,
    sent_at: DateTime<Utc>,
    timeout: Duration,
) -> Prepared<'a> {
    let spec = &webhook.spec;
    let method = spec.method;
    let body = method.has_body().then(|| {
        // `select` clones the data, so without fields the data is rendered in place.
        let rendered = if spec.fields.is_empty() {
            payload::render(spec.format, &webhook.id, event, &event.data)
        } else {
            payload::render(
                spec.format,
                &webhook.id,
                event,
                &payload::select(&event.data, &spec.fields),
            )
        };
        Bytes::from(rendered)
    });

    let mut headers = Vec::with_capacity(6 + spec.headers.len());
    headers.push(OutHeader::plain("webhook-id", message_id));
    headers.push(OutHeader::plain("webhook-timestamp", sent_at.timestamp().to_string()));
    headers.push(OutHeader::plain("hookd-event-id", event.id.as_str()));
    headers.push(OutHeader::plain("hookd-event-type", event.event_type.as_str()));
    headers.push(OutHeader::plain(
        "hookd-event-timestamp",
        event.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    ));
    // Validated names are lowercase and cannot clash with hookd's own or the auth header.
    for h in &spec.headers {
        headers.push(OutHeader::plain(&h.name, h.value.as_str()));
    }

    let mut query: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
    if !method.has_body() {
        query.extend(
            payload::query_params(&event.data, &spec.fields)
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))),
        );
    }
    let mut secret_query = None;
    match &spec.auth {
        EndpointAuth::None => {}
        EndpointAuth::Header { name, value }
        | EndpointAuth::ApiKey { name, value, location: ApiKeyLocation::Header } => {
            headers.push(OutHeader::secret(name, value.expose()));
        }
        EndpointAuth::ApiKey { name, value, location: ApiKeyLocation::Query } => {
            query.push((Cow::Borrowed(name.as_str()), Cow::Borrowed(value.expose())));
            secret_query = Some(name.as_str());
        }
        EndpointAuth::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            headers.push(OutHeader::secret(AUTHORIZATION, format!("Basic {encoded}")));
        }
        EndpointAuth::Bearer { token } => {
            headers.push(OutHeader::secret(AUTHORIZATION, format!("Bearer {}", token.expose())));
        }
    }

    let mut invalid = None;
    let url = if query.is_empty() {
        Cow::Borrowed(spec.url.as_str())
    } else {
        match with_query(&spec.url, &query) {
            Ok(url) => Cow::Owned(url),
            Err(e) => {
                // Never the URL itself in the message: it may carry the API key.
                invalid = Some(format!("cannot build request: invalid url: {e}"));
                Cow::Borrowed(spec.url.as_str())
            }
        }
    };
    Prepared {
        request: AttemptRequest { method, url, body, headers, timeout },
        secret_query,
        invalid,
    }
}

/// `url` with `params` appended to any query it already has, form-encoded.
fn with_query(
    url: &str,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(url)?;
    url.query_pairs_mut().extend_pairs(params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
    Ok(url.into())
}

impl Prepared<'_> {
    /// Sets (or replaces) `Authorization: Bearer <token>`, as an OAuth2 credential does.
    pub fn set_bearer(&mut self, token: &str) {
        let value = Cow::Owned(format!("Bearer {token}"));
        match self.request.headers.iter_mut().find(|h| h.name == AUTHORIZATION) {
            Some(h) => {
                h.value = value;
                h.secret = true;
            }
            None => self.request.headers.push(OutHeader::secret(AUTHORIZATION, value)),
        }
    }

    /// The request body as text; empty for methods without one.
    pub fn payload_text(&self) -> String {
        self.request
            .body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// The URL as it may be shown or logged: an API key in the query replaced by
    /// `[redacted]`; the rest kept as sent.
    pub fn shown_url(&self) -> String {
        let url = self.request.url.as_ref();
        let Some(secret) = self.secret_query else { return url.to_owned() };
        let (base, query) = match url.split_once('?') {
            Some(parts) => parts,
            None => return url.to_owned(),
        };
        let shown: Vec<String> = query
            .split('&')
            .map(|pair| {
                let raw_name = pair.split_once('=').map_or(pair, |(n, _)| n);
                let name = url::form_urlencoded::parse(pair.as_bytes()).next().map(|(n, _)| n);
                if name.as_deref() == Some(secret) {
                    format!("{raw_name}={REDACTED}")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        format!("{base}?{}", shown.join("&"))
    }
}
