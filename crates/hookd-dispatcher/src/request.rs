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
use hookd_nats::trace::TRACEPARENT;

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
/// `webhook-id` (the delivery id; a test send's own id), `sent_at` in `webhook-timestamp`,
/// `traceparent` (the attempt's trace context, when traces are exported) in `traceparent`.
pub fn prepare<'a>(
    webhook: &'a Webhook,
    event: &'a Event,
    message_id: &'a str,
    sent_at: DateTime<Utc>,
    timeout: Duration,
    traceparent: Option<&'a str>,
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

    let mut headers = Vec::with_capacity(7 + spec.headers.len());
    headers.push(OutHeader::plain("webhook-id", message_id));
    headers.push(OutHeader::plain("webhook-timestamp", sent_at.timestamp().to_string()));
    // Standard Webhooks: HMAC over "<id>.<timestamp>.<body>" (an empty body without one), one
    // signature per key still in force, so a receiver mid-rotation accepts either secret.
    let signed_body = body.as_deref().unwrap_or_default();
    if let Some(signature) =
        spec.signing.header(sent_at, message_id, sent_at.timestamp(), signed_body)
    {
        headers.push(OutHeader::plain("webhook-signature", signature));
    }
    headers.push(OutHeader::plain("hookd-event-id", event.id.as_str()));
    headers.push(OutHeader::plain("hookd-event-type", event.event_type.as_str()));
    headers.push(OutHeader::plain(
        "hookd-event-timestamp",
        event.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    ));
    if let Some(traceparent) = traceparent {
        headers.push(OutHeader::plain(TRACEPARENT, traceparent));
    }
    // Validated names are lowercase and cannot clash with hookd's own or the auth header.
    for h in &spec.headers {
        // Reserved since hookd propagates trace context; a webhook stored earlier may have
        // them. hookd's own `traceparent` wins; a stored `tracestate` would describe another
        // trace, so it goes too.
        if (traceparent.is_some() && h.name == TRACEPARENT) || h.name == "tracestate" {
            continue;
        }
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
    // The ASCII form (punycode host): the one reads show and the egress policy checks.
    let url = if query.is_empty() {
        spec.ascii_url()
    } else {
        match with_query(&spec.url, &query) {
            Ok(url) => Cow::Owned(url),
            Err(e) => {
                // Never the URL itself in the message: it may carry the API key.
                invalid = Some(format!("cannot build request: invalid url: {e}"));
                spec.ascii_url()
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

#[cfg(test)]
pub(crate) mod tests {
    use hookd_core::{
        WebhookId, WebhookSpec,
        endpoint::{Header, HttpMethod, Secret},
        payload::PayloadFormat,
    };

    use super::*;
    use crate::{
        http::{HttpClient, recorded_headers},
        test_server::TestServer,
    };

    pub(crate) fn webhook(url: String, method: HttpMethod) -> Webhook {
        let now = Utc::now();
        Webhook {
            id: WebhookId::from("wh_1"),
            spec: WebhookSpec {
                name: "crm".into(),
                url,
                event_types: vec!["contact-created".into()],
                active: true,
                method,
                ..WebhookSpec::default()
            },
            created_at: now,
            updated_at: now,
        }
    }

    pub(crate) fn event() -> Event {
        Event::from_json(
            br#"{"id":"e1","type":"contact-created","timestamp":"2024-03-21T13:46:46Z",
                "data":{"contact":{"email":"a+b@c.d","name":"Ada & Bob"},"n":2}}"#,
            Utc::now(),
        )
        .expect("valid event")
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn methods_with_a_body_send_the_rendered_selection() {
        let mut server = TestServer::start(|_| 200).await;
        let http = HttpClient::loopback();
        let e = event();
        for method in [HttpMethod::Post, HttpMethod::Put, HttpMethod::Patch] {
            let mut w = webhook(format!("{}/hook?x=1", server.base), method);
            w.spec.fields = vec!["/contact/email".into()];
            w.spec.format = PayloadFormat::Data;
            w.spec.headers = vec![Header { name: "x-tenant".into(), value: "acme".into() }];
            let p = prepare(&w, &e, "dlv_1", Utc::now(), TIMEOUT, None);
            let result = http.attempt(&p.request).await;
            assert!(result.outcome.is_success(), "{method}: {:?}", result.outcome);
            let seen = server.next().await;
            assert_eq!(seen.method, method.as_str());
            assert_eq!(seen.target, "/hook?x=1", "{method}: no query parameters with a body");
            let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json body");
            assert_eq!(body, serde_json::json!({"contact": {"email": "a+b@c.d"}}));
            assert_eq!(seen.header("content-type"), Some("application/json"));
            assert_eq!(seen.header("webhook-id"), Some("dlv_1"));
            assert!(seen.header("webhook-timestamp").is_some());
            assert_eq!(seen.header("hookd-event-id"), Some("e1"));
            assert_eq!(seen.header("hookd-event-type"), Some("contact-created"));
            assert_eq!(seen.header("hookd-event-timestamp"), Some("2024-03-21T13:46:46Z"));
            assert_eq!(seen.header("x-tenant"), Some("acme"));
            assert_eq!(p.payload_text(), String::from_utf8_lossy(&seen.body));
        }
        // No fields: the whole data, in the default envelope.
        let w = webhook(format!("{}/hook", server.base), HttpMethod::Post);
        let p = prepare(&w, &e, "dlv_1", Utc::now(), TIMEOUT, None);
        http.attempt(&p.request).await;
        let body: serde_json::Value =
            serde_json::from_slice(&server.next().await.body).expect("json body");
        assert_eq!(body["data"], e.data);
        assert_eq!(body["meta"]["webhookId"], "wh_1");
    }

    #[tokio::test]
    async fn get_and_delete_send_fields_as_query_parameters_and_no_body() {
        let mut server = TestServer::start(|_| 204).await;
        let http = HttpClient::loopback();
        let e = event();
        for method in [HttpMethod::Get, HttpMethod::Delete] {
            let mut w = webhook(format!("{}/hook?x=1", server.base), method);
            w.spec.fields = vec!["/contact/name".into(), "/n".into()];
            let p = prepare(&w, &e, "dlv_1", Utc::now(), TIMEOUT, None);
            assert!(p.request.body.is_none());
            let result = http.attempt(&p.request).await;
            assert!(result.outcome.is_success(), "{method}: {:?}", result.outcome);
            let seen = server.next().await;
            assert_eq!(seen.method, method.as_str());
            assert_eq!(seen.target, "/hook?x=1&contact.name=Ada+%26+Bob&n=2");
            assert!(seen.body.is_empty(), "{method} has no body");
            assert_eq!(seen.header("content-type"), None);
            assert_eq!(seen.header("hookd-event-id"), Some("e1"));
            assert_eq!(p.payload_text(), "");
            assert!(!recorded_headers(&p.request).iter().any(|(n, _)| n == "content-type"));
        }
    }

    #[tokio::test]
    async fn each_auth_mode_sends_its_credential_and_records_it_redacted() {
        let mut server = TestServer::start(|_| 200).await;
        let http = HttpClient::loopback();
        let e = event();
        let cases = [
            (
                EndpointAuth::Header { name: "x-webhook-key".into(), value: Secret::new("hv") },
                "x-webhook-key",
                "hv",
            ),
            (
                EndpointAuth::ApiKey {
                    name: "x-api-key".into(),
                    value: Secret::new("kv"),
                    location: ApiKeyLocation::Header,
                },
                "x-api-key",
                "kv",
            ),
            (
                EndpointAuth::Basic { username: "ada".into(), password: Secret::new("pw") },
                "authorization",
                "Basic YWRhOnB3",
            ),
            (EndpointAuth::Bearer { token: Secret::new("tk") }, "authorization", "Bearer tk"),
        ];
        for (auth, header, value) in cases {
            let mut w = webhook(format!("{}/hook", server.base), HttpMethod::Post);
            w.spec.auth = auth;
            let p = prepare(&w, &e, "dlv_1", Utc::now(), TIMEOUT, None);
            http.attempt(&p.request).await;
            let seen = server.next().await;
            assert_eq!(seen.header(header), Some(value), "{}", w.spec.auth.kind());
            let recorded = recorded_headers(&p.request);
            assert!(recorded.contains(&(header.to_owned(), REDACTED.to_owned())), "{recorded:?}");
            assert!(!format!("{recorded:?}{p:?}").contains(value), "secret leaked");
            assert_eq!(p.shown_url(), w.spec.url);
        }
    }

    #[test]
    fn requests_go_to_the_ascii_url_reads_show() {
        let e = event();
        let typed = "https://Bücher.example/wä?x=1".to_owned();
        let post = webhook(typed.clone(), HttpMethod::Post);
        let p = prepare(&post, &e, "dlv_1", Utc::now(), TIMEOUT, None);
        assert_eq!(p.request.url, "https://xn--bcher-kva.example/w%C3%A4?x=1");
        let mut get = webhook(typed, HttpMethod::Get);
        get.spec.fields = vec!["/n".into()];
        let p = prepare(&get, &e, "dlv_1", Utc::now(), TIMEOUT, None);
        assert_eq!(p.request.url, "https://xn--bcher-kva.example/w%C3%A4?x=1&n=2");
    }

    #[tokio::test]
    async fn an_api_key_in_the_query_is_sent_but_never_shown() {
        let mut server = TestServer::start(|_| 200).await;
        let http = HttpClient::loopback();
        let e = event();
        for method in [HttpMethod::Post, HttpMethod::Get] {
            let mut w = webhook(format!("{}/hook?x=1", server.base), method);
            w.spec.fields = vec!["/n".into()];
            w.spec.auth = EndpointAuth::ApiKey {
                name: "key".into(),
                value: Secret::new("s3cr&t"),
                location: ApiKeyLocation::Query,
            };
            let p = prepare(&w, &e, "dlv_1", Utc::now(), TIMEOUT, None);
            http.attempt(&p.request).await;
            let seen = server.next().await;
            let expected = match method {
                HttpMethod::Get => "/hook?x=1&n=2&key=s3cr%26t",
                _ => "/hook?x=1&key=s3cr%26t",
            };
            assert_eq!(seen.target, expected);
            let shown = p.shown_url();
            assert_eq!(shown, format!("{}{}", server.base, expected.replace("s3cr%26t", REDACTED)));
            assert!(!format!("{p:?}").contains("s3cr"), "Debug shows no secret");
        }
    }

    #[test]
    fn a_bearer_token_replaces_the_authorization_header() {
        let w = webhook("http://127.0.0.1:9/".into(), HttpMethod::Post);
        let e = event();
        let mut p = prepare(&w, &e, "dlv_1", Utc::now(), TIMEOUT, None);
        p.set_bearer("t1");
        p.set_bearer("t2");
        let auth: Vec<_> = p.request.headers.iter().filter(|h| h.name == AUTHORIZATION).collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].value, "Bearer t2");
        assert!(auth[0].secret);
    }

    #[test]
    fn the_attempts_traceparent_replaces_a_stored_one() {
        let mut w = webhook("http://127.0.0.1:9/".into(), HttpMethod::Post);
        // Stored before the names were reserved.
        w.spec.headers = vec![
            Header { name: "traceparent".into(), value: "00-old".into() },
            Header { name: "tracestate".into(), value: "old=1".into() },
            Header { name: "x-tenant".into(), value: "acme".into() },
        ];
        let e = event();
        let ours = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let traced = |p: &Prepared<'_>| -> Vec<(String, String)> {
            p.request
                .headers
                .iter()
                .filter(|h| h.name.starts_with("trace") || h.name == "x-tenant")
                .map(|h| (h.name.to_owned(), h.value.to_string()))
                .collect()
        };
        let p = prepare(&w, &e, "dlv_1", Utc::now(), TIMEOUT, Some(ours));
        assert_eq!(
            traced(&p),
            [("traceparent".into(), ours.into()), ("x-tenant".into(), "acme".into())]
        );
        // Without traces exported the stored value goes as it always did.
        let p = prepare(&w, &e, "dlv_1", Utc::now(), TIMEOUT, None);
        assert_eq!(
            traced(&p),
            [("traceparent".into(), "00-old".into()), ("x-tenant".into(), "acme".into())]
        );
    }
}
