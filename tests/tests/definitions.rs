//! End to end, with real processes: every webhook option (method, headers, auth, OAuth2,
//! field selection, formats), status changes, duplicates, list filters and counts, the
//! event-type catalog on both ingest paths, and test sends.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use hookd_proto::{convert::json_to_value, v1};
use hookd_tests::{Cluster, ReceivedRequest, Receiver, Response, responder, wait_until};
use prost_types::FieldMask;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(20);

fn contact() -> serde_json::Value {
    serde_json::json!({"contact": {"email": "ada@example.com", "name": "Ada", "id": 42}, "source": "form"})
}

async fn publish(
    cluster: &Cluster,
    id: &str,
    event_type: &str,
    data: serde_json::Value,
) -> anyhow::Result<()> {
    cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: id.into(),
                r#type: event_type.into(),
                entity_id: "c-42".into(),
                context: Some(json_to_value(serde_json::json!({"user": "u1"}))),
                data: Some(json_to_value(data)),
                ..Default::default()
            }),
        })
        .await?;
    Ok(())
}

fn request(name: &str, url: String) -> v1::CreateWebhookRequest {
    v1::CreateWebhookRequest {
        name: name.into(),
        url,
        event_types: vec!["contact-created".into()],
        active: true,
        ..Default::default()
    }
}

fn auth(kind: v1::endpoint_auth::Kind) -> Option<v1::EndpointAuth> {
    Some(v1::EndpointAuth { kind: Some(kind) })
}

fn query(req: &ReceivedRequest) -> Vec<(String, String)> {
    let url = url::Url::parse(&format!("http://x{}", req.path)).expect("path is a valid URL path");
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn status_of<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Status {
    result.expect_err("the call must be refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_method_and_format_shapes_the_request() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let fields = vec!["/contact/email".to_owned(), "/missing".to_owned()];
    let cases = [
        (v1::HttpMethod::Post, v1::PayloadFormat::Envelope, vec![]),
        (v1::HttpMethod::Put, v1::PayloadFormat::Flat, fields.clone()),
        (v1::HttpMethod::Patch, v1::PayloadFormat::Data, fields.clone()),
        (v1::HttpMethod::Get, v1::PayloadFormat::Envelope, fields.clone()),
        (v1::HttpMethod::Delete, v1::PayloadFormat::Envelope, fields.clone()),
    ];
    for (method, format, fields) in &cases {
        let name = method.as_str_name().to_ascii_lowercase();
        cluster
            .create(v1::CreateWebhookRequest {
                method: (*method).into(),
                format: (*format).into(),
                fields: fields.clone(),
                ..request(&name, receiver.url(&format!("/{name}?fixed=1")))
            })
            .await?;
    }
    publish(&cluster, "evt-m1", "contact-created", contact()).await?;
    let got = receiver.wait_for(cases.len(), DEADLINE).await?;
    let by_method = |m: &str| got.iter().find(|r| r.method == m).context(format!("no {m}"));

    let post = by_method("POST")?;
    let body = post.json()?;
    assert_eq!(body["data"], contact(), "raw data in the envelope");
    assert_eq!(body["meta"]["eventId"], "evt-m1");
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(post.header("hookd-event-type"), Some("contact-created"));

    let put = by_method("PUT")?.json()?;
    assert_eq!(put["event_type"], "contact-created");
    assert_eq!(put["current_context"], serde_json::json!({"user": "u1"}));
    assert_eq!(put["data"], serde_json::json!({"contact": {"email": "ada@example.com"}}));
    assert!(put["event_time"].is_string());

    let patch = by_method("PATCH")?.json()?;
    assert_eq!(patch, serde_json::json!({"contact": {"email": "ada@example.com"}}));

    for m in ["GET", "DELETE"] {
        let r = by_method(m)?;
        assert!(r.body.is_empty(), "{m} carries no body");
        assert_eq!(r.header("content-type"), None, "{m} has no content type");
        assert_eq!(r.header("hookd-event-id"), Some("evt-m1"));
        assert_eq!(r.header("hookd-event-type"), Some("contact-created"));
        let q = query(r);
        assert!(q.contains(&("fixed".into(), "1".into())), "{m} keeps the URL's query: {q:?}");
        assert!(q.contains(&("contact.email".into(), "ada@example.com".into())), "{q:?}");
        assert_eq!(q.len(), 2, "a missing field is left out: {q:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_modes_and_headers_reach_the_endpoint_but_reads_mask_them() -> anyhow::Result<()> {
    use v1::endpoint_auth::Kind;
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let secret = "s3cret-value-0123456789";
    let modes = [
        (
            "header",
            Kind::Header(v1::HeaderAuth { name: "X-Webhook-Secret".into(), value: secret.into() }),
        ),
        (
            "apikey",
            Kind::ApiKey(v1::ApiKeyAuth {
                name: String::new(),
                value: secret.into(),
                in_query: false,
            }),
        ),
        (
            "apikeyq",
            Kind::ApiKey(v1::ApiKeyAuth {
                name: "key".into(),
                value: secret.into(),
                in_query: true,
            }),
        ),
        ("basic", Kind::Basic(v1::BasicAuth { username: "hookd".into(), password: secret.into() })),
        ("bearer", Kind::Bearer(v1::BearerAuth { token: secret.into() })),
    ];
    let mut ids = Vec::new();
    for (name, kind) in &modes {
        let w = cluster
            .create(v1::CreateWebhookRequest {
                auth: auth(kind.clone()),
                headers: vec![v1::HttpHeader { name: "X-Tenant".into(), value: "acme".into() }],
                ..request(name, receiver.url(&format!("/{name}")))
            })
            .await?;
        // Reads never return the secret.
        let shown = format!("{:?}", w.auth);
        assert!(!shown.contains(secret), "{name}: create answered the secret: {shown}");
        assert!(shown.contains("****6789"), "{name}: mask expected: {shown}");
        ids.push((name.to_owned(), w.id));
    }
    publish(&cluster, "evt-a1", "contact-created", contact()).await?;
    let got = receiver.wait_for(modes.len(), DEADLINE).await?;
    let at = |p: &str| {
        got.iter().find(|r| r.path.split('?').next() == Some(p)).context(format!("nothing at {p}"))
    };
    assert_eq!(at("/header")?.header("x-webhook-secret"), Some(secret));
    assert_eq!(at("/apikey")?.header("x-api-key"), Some(secret));
    assert!(query(at("/apikeyq")?).contains(&("key".into(), secret.into())));
    assert_eq!(
        at("/basic")?.header("authorization"),
        Some("Basic aG9va2Q6czNjcmV0LXZhbHVlLTAxMjM0NTY3ODk=")
    );
    assert_eq!(at("/bearer")?.header("authorization"), Some(format!("Bearer {secret}").as_str()));
    for r in &got {
        assert_eq!(r.header("x-tenant"), Some("acme"), "custom header on {}", r.path);
    }

    let mut webhooks = cluster.webhooks().await?;
    let deliveries = cluster.deliveries().await?;
    for (name, id) in &ids {
        let w = webhooks.get_webhook(v1::GetWebhookRequest { id: id.clone() }).await?.into_inner();
        assert!(!format!("{w:?}").contains(secret), "{name}: get answered the secret");
        // The history keeps the headers sent, with the credential redacted.
        let history = wait_until("the attempt is recorded", DEADLINE, || {
            let mut deliveries = deliveries.clone();
            let id = id.clone();
            async move {
                let list = deliveries
                    .list_deliveries(v1::ListDeliveriesRequest {
                        webhook_id: id,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let Some(d) = list.deliveries.into_iter().next() else { return Ok(None) };
                let d = deliveries.get_delivery(v1::GetDeliveryRequest { id: d.id }).await?;
                Ok(d.into_inner().delivery.filter(|d| !d.attempts.is_empty()))
            }
        })
        .await?;
        let recorded = format!("{history:?}");
        assert!(!recorded.contains(secret), "{name}: the history shows the secret: {recorded}");
    }
    let listed = webhooks.list_webhooks(v1::ListWebhooksRequest::default()).await?.into_inner();
    assert!(!format!("{listed:?}").contains(secret), "list answered a secret");
    Ok(())
}

/// A token endpoint that hands out `token-1`, `token-2`, ... and counts its calls.
struct TokenEndpoint {
    receiver: Receiver,
}

impl TokenEndpoint {
    fn start() -> anyhow::Result<Self> {
        let receiver = Receiver::start(responder(|req, i| {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
            if !(has("client_id", "hookd") && has("client_secret", "client-s3cret")) {
                return Response::status(401)
                    .with_header("content-type", "application/json")
                    .with_body(r#"{"error":"invalid_client","error_description":"bad client"}"#);
            }
            Response::ok().with_header("content-type", "application/json").with_body(format!(
                r#"{{"access_token":"token-{}","token_type":"Bearer","expires_in":3600}}"#,
                i + 1
            ))
        }))?;
        Ok(Self { receiver })
    }
}

async fn create_credential(
    cluster: &Cluster,
    name: &str,
    token_url: String,
    secret: &str,
) -> anyhow::Result<String> {
    let c = cluster
        .credentials()
        .await?
        .create_credential(v1::CreateCredentialRequest {
            credential: Some(v1::Credential {
                name: name.into(),
                token_url,
                client_id: "hookd".into(),
                client_secret: secret.into(),
                scope: "webhooks".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .credential
        .context("no credential")?;
    assert!(!format!("{c:?}").contains(secret), "create answered the client secret");
    Ok(c.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_token_is_fetched_once_shared_and_refreshed_on_401() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let tokens = TokenEndpoint::start()?;
    // The endpoint takes token-1 in the requests before the one numbered `revoked_from`, then
    // only a newer token. By number, not by when the answer is made: the last of the first
    // twenty requests is counted before it is answered, and revoking it too would make its
    // delivery refresh the token before the test's own event.
    let revoked_from = Arc::new(AtomicUsize::new(usize::MAX));
    let endpoint = Receiver::start(responder({
        let revoked_from = revoked_from.clone();
        move |req, index| match req.header("authorization") {
            Some("Bearer token-1") if index < revoked_from.load(Ordering::SeqCst) => Response::ok(),
            Some(t) if t.starts_with("Bearer token-") && t != "Bearer token-1" => Response::ok(),
            _ => Response::status(401),
        }
    }))?;
    let credential =
        create_credential(&cluster, "crm oauth", tokens.receiver.url("/token"), "client-s3cret")
            .await?;
    let webhook = cluster
        .create(v1::CreateWebhookRequest {
            credential_id: credential.clone(),
            ..request("oauth", endpoint.url("/hook"))
        })
        .await?;

    for i in 0..20 {
        publish(&cluster, &format!("evt-o{i}"), "contact-created", contact()).await?;
    }
    endpoint.wait_for(20, DEADLINE).await?;
    assert_eq!(tokens.receiver.count(), 1, "one token for twenty deliveries");
    let token_request = &tokens.receiver.requests()[0];
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&token_request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert!(form.contains(&("grant_type".into(), "client_credentials".into())), "{form:?}");
    assert!(form.contains(&("scope".into(), "webhooks".into())), "{form:?}");

    revoked_from.store(20, Ordering::SeqCst);
    // The first event after the revocation is refused with token-1, and delivered with token-2
    // within the same attempt; the later ones use token-2 from the dispatcher's cache.
    publish(&cluster, "evt-o20", "contact-created", contact()).await?;
    let got = endpoint.wait_for(22, DEADLINE).await?;
    assert_eq!(got[20].header("authorization").unwrap_or_default(), "Bearer token-1");
    assert_eq!(got[21].header("authorization").unwrap_or_default(), "Bearer token-2");
    for i in 21..25 {
        publish(&cluster, &format!("evt-o{i}"), "contact-created", contact()).await?;
    }
    let got = endpoint.wait_for(26, DEADLINE).await?;
    let with_2 = got.iter().filter(|r| r.header("authorization") == Some("Bearer token-2")).count();
    assert_eq!(with_2, 5, "the five later events went out with the refreshed token");
    assert_eq!(tokens.receiver.count(), 2, "one refresh however many deliveries saw the 401");

    // Every delivery succeeded on its first attempt: the refresh happens within the attempt.
    let deliveries = cluster.deliveries().await?;
    wait_until("all 25 deliveries are recorded as delivered", DEADLINE, || {
        let mut deliveries = deliveries.clone();
        let id = webhook.id.clone();
        async move {
            let list = deliveries
                .list_deliveries(v1::ListDeliveriesRequest {
                    webhook_id: id,
                    page_size: 100,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert!(list.deliveries.iter().all(|d| d.attempt_count <= 1), "no retries were needed");
            let delivered = list
                .deliveries
                .iter()
                .filter(|d| d.status() == v1::DeliveryStatus::Delivered)
                .count();
            Ok((delivered == 25).then_some(()))
        }
    })
    .await?;

    // A token endpoint that refuses: the attempt says why, and the credential shows it.
    let bad =
        create_credential(&cluster, "bad oauth", tokens.receiver.url("/token"), "wrong-secret")
            .await?;
    let failing = cluster
        .create(v1::CreateWebhookRequest {
            credential_id: bad.clone(),
            retry_policy: Some(v1::RetryPolicy { delay_seconds: vec![] }),
            event_types: vec!["contact-deleted".into()],
            ..request("oauth-bad", endpoint.url("/bad"))
        })
        .await?;
    publish(&cluster, "evt-bad", "contact-deleted", contact()).await?;
    let attempt = wait_until("the failed attempt is recorded", DEADLINE, || {
        let mut deliveries = deliveries.clone();
        let id = failing.id.clone();
        async move {
            let list = deliveries
                .list_deliveries(v1::ListDeliveriesRequest { webhook_id: id, ..Default::default() })
                .await?
                .into_inner();
            let Some(d) = list.deliveries.into_iter().next() else { return Ok(None) };
            let d = deliveries.get_delivery(v1::GetDeliveryRequest { id: d.id }).await?;
            Ok(d.into_inner().delivery.and_then(|d| d.attempts.into_iter().next()))
        }
    })
    .await?;
    assert!(attempt.error.contains("oauth2 token"), "{}", attempt.error);
    assert!(attempt.error.contains("invalid_client"), "{}", attempt.error);
    assert!(!attempt.error.contains("wrong-secret"));
    let shown = cluster
        .credentials()
        .await?
        .get_credential(v1::GetCredentialRequest { id: bad })
        .await?
        .into_inner();
    assert!(shown.credential.context("credential")?.last_error.contains("invalid_client"));

    // A credential in use cannot be deleted.
    let refused = status_of(
        cluster
            .credentials()
            .await?
            .delete_credential(v1::DeleteCredentialRequest { id: credential })
            .await,
    );
    assert_eq!(refused.code(), Code::FailedPrecondition);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_is_redeemed_once_then_refreshed() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    // Tokens live one second, so every delivery needs a fresh one: the first from the code,
    // the rest from the refresh token the first answer carried.
    let tokens = Receiver::start(responder(|req, i| {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
        let valid = if i == 0 {
            has("grant_type", "authorization_code") && has("code", "the-code")
        } else {
            has("grant_type", "refresh_token") && has("refresh_token", "refresh-1")
        };
        if !valid || !has("redirect_uri", "https://app.example.com/cb") {
            return Response::status(400).with_body(r#"{"error":"invalid_grant"}"#);
        }
        Response::ok().with_header("content-type", "application/json").with_body(format!(
            r#"{{"access_token":"token-{}","expires_in":1,"refresh_token":"refresh-1"}}"#,
            i + 1
        ))
    }))?;
    let endpoint = Receiver::ok()?;
    let credential = cluster
        .credentials()
        .await?
        .create_credential(v1::CreateCredentialRequest {
            credential: Some(v1::Credential {
                name: "code grant".into(),
                token_url: tokens.url("/token"),
                client_id: "hookd".into(),
                client_secret: "client-s3cret".into(),
                grant_type: v1::GrantType::AuthorizationCode.into(),
                code: "the-code".into(),
                extra_params: [(
                    "redirect_uri".to_owned(),
                    "https://app.example.com/cb".to_owned(),
                )]
                .into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .credential
        .context("credential")?;
    assert_eq!(credential.code, "****", "the code is masked");
    cluster
        .create(v1::CreateWebhookRequest {
            credential_id: credential.id.clone(),
            ..request("code", endpoint.url("/hook"))
        })
        .await?;
    for i in 0..3 {
        publish(&cluster, &format!("evt-ac{i}"), "contact-created", contact()).await?;
        let got = endpoint.wait_for(i + 1, DEADLINE).await?;
        assert_eq!(
            got[i].header("authorization"),
            Some(format!("Bearer token-{}", i + 1).as_str()),
            "delivery {i} uses a token fetched for it"
        );
    }
    let calls = tokens.requests();
    assert_eq!(calls.len(), 3, "one token request per delivery, as each token expired");
    let shown = cluster
        .credentials()
        .await?
        .get_credential(v1::GetCredentialRequest { id: credential.id })
        .await?
        .into_inner()
        .credential
        .context("credential")?;
    assert!(shown.last_error.is_empty(), "{}", shown.last_error);
    assert!(shown.token_expires_at.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_duplicate_filters_and_counts() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let fail_count = Arc::new(AtomicUsize::new(0));
    let receiver = Receiver::start(responder({
        let fail_count = fail_count.clone();
        move |req, _| {
            if req.path.starts_with("/failing") {
                fail_count.fetch_add(1, Ordering::SeqCst);
                Response::status(500)
            } else {
                Response::ok()
            }
        }
    }))?;
    let mut webhooks = cluster.webhooks().await?;
    let no_retries = Some(v1::RetryPolicy { delay_seconds: vec![] });
    let shop = cluster
        .create(v1::CreateWebhookRequest {
            app: "shop".into(),
            method: v1::HttpMethod::Put.into(),
            fields: vec!["/contact".into()],
            headers: vec![v1::HttpHeader { name: "x-a".into(), value: "1".into() }],
            ..request("Shop Contacts", receiver.url("/shop"))
        })
        .await?;
    let failing = cluster
        .create(v1::CreateWebhookRequest {
            app: "crm".into(),
            retry_policy: no_retries,
            event_types: vec!["*".into()],
            ..request("CRM all", receiver.url("/failing"))
        })
        .await?;
    let idle = cluster
        .create(v1::CreateWebhookRequest {
            active: false,
            app: "crm".into(),
            event_types: vec!["company-created".into()],
            ..request("crm companies", receiver.url("/idle"))
        })
        .await?;
    assert!(!idle.active, "created inactive as asked");

    // Status changes; doing it twice changes nothing.
    for _ in 0..2 {
        let w = webhooks
            .activate_webhook(v1::ActivateWebhookRequest { id: idle.id.clone(), replay: false })
            .await?
            .into_inner();
        assert!(w.webhook.context("webhook")?.active);
    }
    for _ in 0..2 {
        let w = webhooks
            .deactivate_webhook(v1::DeactivateWebhookRequest { id: idle.id.clone() })
            .await?
            .into_inner();
        assert!(!w.webhook.context("webhook")?.active);
    }

    // Duplicates: every setting, new id, inactive, a unique name.
    let copy = webhooks
        .duplicate_webhook(v1::DuplicateWebhookRequest { id: shop.id.clone() })
        .await?
        .into_inner()
        .webhook
        .context("copy")?;
    let copy2 = webhooks
        .duplicate_webhook(v1::DuplicateWebhookRequest { id: shop.id.clone() })
        .await?
        .into_inner()
        .webhook
        .context("copy")?;
    assert_eq!(copy.name, "Shop Contacts (copy)");
    assert_eq!(copy2.name, "Shop Contacts (copy 2)");
    assert_ne!(copy.id, shop.id);
    assert!(!copy.active);
    assert_eq!(
        (copy.url.as_str(), copy.method, &copy.fields, &copy.headers, copy.app.as_str()),
        (shop.url.as_str(), shop.method, &shop.fields, &shop.headers, "shop")
    );

    // Traffic: two contact events reach shop (ok) and the failing webhook (fails, no retries).
    publish(&cluster, "evt-c1", "contact-created", contact()).await?;
    publish(&cluster, "evt-c2", "contact-created", contact()).await?;
    let lister = webhooks.clone();
    let list = |filter: v1::ListWebhooksRequest| {
        let mut webhooks = lister.clone();
        async move { anyhow::Ok(webhooks.list_webhooks(filter).await?.into_inner().webhooks) }
    };
    let counted = wait_until("counts reflect the four deliveries", DEADLINE, || async {
        let all = list(v1::ListWebhooksRequest::default()).await?;
        let stats = |id: &str| all.iter().find(|w| w.id == id).and_then(|w| w.stats);
        match (stats(&shop.id), stats(&failing.id)) {
            (Some(a), Some(b)) if a.succeeded == 2 && b.failed == 2 => Ok(Some((a, b))),
            _ => Ok(None),
        }
    })
    .await?;
    let (shop_stats, failing_stats) = counted;
    assert_eq!((shop_stats.triggered, shop_stats.failed), (2, 0));
    assert!(
        shop_stats.last_attempt_success
            && shop_stats.last_attempt_status == 200
            && shop_stats.last_attempt_at.is_some()
    );
    assert_eq!((failing_stats.triggered, failing_stats.succeeded), (2, 0));
    assert_eq!(failing_stats.last_attempt_status, 500);
    assert!(!failing_stats.last_attempt_success);

    // A test send is not counted and does not become the last attempt.
    let before = fail_count.load(Ordering::SeqCst);
    let test = webhooks
        .test_webhook(v1::TestWebhookRequest {
            id: failing.id.clone(),
            event_type: "contact-created".into(),
            data: None,
        })
        .await?
        .into_inner();
    assert_eq!(test.attempt.context("attempt")?.http_status, 500);
    assert_eq!(fail_count.load(Ordering::SeqCst), before + 1);
    let again = webhooks
        .get_webhook(v1::GetWebhookRequest { id: failing.id.clone() })
        .await?
        .into_inner()
        .webhook
        .context("webhook")?;
    assert_eq!(again.stats, Some(failing_stats), "test sends stay out of the counts");

    // Filters.
    let names = |ws: Vec<v1::Webhook>| {
        let mut n: Vec<String> = ws.into_iter().map(|w| w.name).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(list(v1::ListWebhooksRequest { app: "crm".into(), ..Default::default() }).await?),
        ["CRM all", "crm companies"]
    );
    assert_eq!(
        names(
            list(v1::ListWebhooksRequest { name_contains: "CRM".into(), ..Default::default() })
                .await?
        ),
        ["CRM all", "crm companies"]
    );
    assert_eq!(
        names(
            list(v1::ListWebhooksRequest { name_contains: "copy".into(), ..Default::default() })
                .await?
        ),
        ["Shop Contacts (copy 2)", "Shop Contacts (copy)"]
    );
    assert_eq!(
        names(
            list(v1::ListWebhooksRequest {
                event_type: "company-created".into(),
                ..Default::default()
            })
            .await?
        ),
        ["CRM all", "crm companies"],
        "the * subscriber receives it too"
    );
    assert_eq!(
        names(
            list(v1::ListWebhooksRequest {
                status: v1::StatusFilter::Inactive.into(),
                ..Default::default()
            })
            .await?
        ),
        ["Shop Contacts (copy 2)", "Shop Contacts (copy)", "crm companies"]
    );
    assert_eq!(
        names(
            list(v1::ListWebhooksRequest {
                status: v1::StatusFilter::Active.into(),
                app: "crm".into(),
                ..Default::default()
            })
            .await?
        ),
        ["CRM all"]
    );
    // Paging with a filter.
    let page1 = webhooks
        .list_webhooks(v1::ListWebhooksRequest {
            page_size: 1,
            status: v1::StatusFilter::Inactive.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(page1.webhooks.len(), 1);
    let page2 = webhooks
        .list_webhooks(v1::ListWebhooksRequest {
            page_size: 5,
            page_token: page1.next_page_token,
            status: v1::StatusFilter::Inactive.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(page2.webhooks.len(), 2);
    assert!(page2.next_page_token.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_schemas_are_enforced_on_both_ingest_paths() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let mut catalog = cluster.event_types().await?;
    let schema = serde_json::json!({
        "type": "object", "required": ["contact"],
        "properties": {"contact": {"type": "object", "required": ["email"],
            "properties": {"email": {"type": "string"}}}}
    });
    let prost_types::Value { kind: Some(prost_types::value::Kind::StructValue(schema)) } =
        json_to_value(schema)
    else {
        anyhow::bail!("a schema object converts to a Struct");
    };
    catalog
        .create_event_type(v1::CreateEventTypeRequest {
            event_type: Some(v1::EventType {
                name: "contact-created".into(),
                description: "a contact was created".into(),
                schema: Some(schema),
                ..Default::default()
            }),
        })
        .await?;
    catalog
        .create_event_type(v1::CreateEventTypeRequest {
            event_type: Some(v1::EventType {
                name: "contact-deleted".into(),
                ..Default::default()
            }),
        })
        .await?;
    let dup = status_of(
        catalog
            .create_event_type(v1::CreateEventTypeRequest {
                event_type: Some(v1::EventType {
                    name: "contact-deleted".into(),
                    ..Default::default()
                }),
            })
            .await,
    );
    assert_eq!(dup.code(), Code::AlreadyExists);

    // Once there is a catalog, webhooks subscribe only to catalogued types (or *).
    let refused = status_of(
        cluster
            .webhooks()
            .await?
            .create_webhook(v1::CreateWebhookRequest {
                event_types: vec!["basket-submitted".into()],
                ..request("nope", receiver.url("/nope"))
            })
            .await,
    );
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("event_types"), "{}", refused.message());
    let webhook = cluster.create(request("contacts", receiver.url("/c"))).await?;

    // gRPC path: refused with the schema error.
    let bad = serde_json::json!({"contact": {"name": "no email"}});
    let err = status_of(
        cluster
            .events()
            .await?
            .publish_event(v1::PublishEventRequest {
                event: Some(v1::Event {
                    id: "evt-bad-grpc".into(),
                    r#type: "contact-created".into(),
                    data: Some(json_to_value(bad.clone())),
                    ..Default::default()
                }),
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("event.data") && err.message().contains("email"),
        "{}",
        err.message()
    );

    // NATS path: dropped and counted; a good event after it is delivered.
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    let raw = serde_json::json!({"id": "evt-bad-nats", "type": "contact-created", "data": bad});
    js.publish("hookd.events.default.contact-created", raw.to_string().into()).await?.await?;
    publish(&cluster, "evt-good", "contact-created", contact()).await?;
    let got = receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(got[0].json()?["meta"]["eventId"], "evt-good");
    wait_until("the rejection is counted", DEADLINE, || {
        let mut catalog = catalog.clone();
        async move {
            let t = catalog
                .get_event_type(v1::GetEventTypeRequest { name: "contact-created".into() })
                .await?
                .into_inner()
                .event_type;
            Ok(t.filter(|t| t.rejected == 1))
        }
    })
    .await?;
    assert_eq!(receiver.count(), 1, "the invalid event was never delivered");

    // Test sends use a sample that satisfies the schema.
    let test = cluster
        .webhooks()
        .await?
        .test_webhook(v1::TestWebhookRequest {
            id: webhook.id.clone(),
            event_type: "contact-created".into(),
            data: None,
        })
        .await?
        .into_inner();
    assert!(test.attempt.context("attempt")?.success);
    let payload: serde_json::Value = serde_json::from_str(&test.payload)?;
    assert!(payload["data"]["contact"]["email"].is_string(), "{payload}");

    // A type in use cannot be deleted; an unused one can.
    let in_use = status_of(
        catalog
            .delete_event_type(v1::DeleteEventTypeRequest { name: "contact-created".into() })
            .await,
    );
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    catalog
        .delete_event_type(v1::DeleteEventTypeRequest { name: "contact-deleted".into() })
        .await?;
    let listed = catalog.list_event_types(v1::ListEventTypesRequest::default()).await?.into_inner();
    assert_eq!(
        listed.event_types.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["contact-created"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_send_works_on_an_inactive_webhook_and_records_nothing() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::start(responder(|_, _| Response::status(202).with_body("thanks")))?;
    let webhook = cluster
        .create(v1::CreateWebhookRequest {
            active: false,
            auth: auth(v1::endpoint_auth::Kind::Bearer(v1::BearerAuth {
                token: "test-token-abcdefgh".into(),
            })),
            format: v1::PayloadFormat::Flat.into(),
            ..request("inactive", receiver.url("/t"))
        })
        .await?;
    let mut webhooks = cluster.webhooks().await?;
    let data = serde_json::json!({"contact": {"email": "given@example.com"}});
    let answer = webhooks
        .test_webhook(v1::TestWebhookRequest {
            id: webhook.id.clone(),
            event_type: "contact-created".into(),
            data: Some(json_to_value(data.clone())),
        })
        .await?
        .into_inner();
    let attempt = answer.attempt.context("attempt")?;
    assert!(attempt.success, "{attempt:?}");
    assert_eq!(attempt.http_status, 202);
    assert_eq!(attempt.response_body, "thanks");
    assert!(!format!("{attempt:?}").contains("test-token-abcdefgh"), "headers are redacted");
    let got = receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(got[0].header("authorization"), Some("Bearer test-token-abcdefgh"));
    assert_eq!(got[0].json()?["data"], data);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&answer.payload)?["data"], data);

    let shown = webhooks
        .get_webhook(v1::GetWebhookRequest { id: webhook.id.clone() })
        .await?
        .into_inner()
        .webhook
        .context("webhook")?;
    let stats = shown.stats.context("stats")?;
    assert_eq!((stats.triggered, stats.last_attempt_at), (0, None), "a test send is not history");
    let history = cluster
        .deliveries()
        .await?
        .list_deliveries(v1::ListDeliveriesRequest {
            webhook_id: webhook.id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(history.deliveries.is_empty());

    // A type the webhook does not receive is refused.
    let refused = status_of(
        webhooks
            .test_webhook(v1::TestWebhookRequest {
                id: webhook.id.clone(),
                event_type: "basket-submitted".into(),
                data: None,
            })
            .await,
    );
    assert_eq!(refused.code(), Code::InvalidArgument);
    // Named as the user wrote it, not as Rust's debug output of it.
    assert!(
        refused.message().ends_with("does not subscribe to \"basket-submitted\""),
        "{}",
        refused.message()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_new_rpcs_names_the_field_and_changes_nothing() -> anyhow::Result<()> {
    use v1::endpoint_auth::Kind;
    let cluster = Cluster::start(0, "")?;
    let mut webhooks = cluster.webhooks().await?;
    let url = "https://example.com/hook".to_owned();
    let cases: Vec<(&str, v1::CreateWebhookRequest)> = vec![
        ("method", v1::CreateWebhookRequest { method: 99, ..request("a", url.clone()) }),
        ("format", v1::CreateWebhookRequest { format: 99, ..request("a", url.clone()) }),
        (
            "headers",
            v1::CreateWebhookRequest {
                headers: vec![v1::HttpHeader { name: "Host".into(), value: "x".into() }],
                ..request("a", url.clone())
            },
        ),
        (
            "headers",
            v1::CreateWebhookRequest {
                headers: vec![v1::HttpHeader {
                    name: "webhook-signature".into(),
                    value: "x".into(),
                }],
                ..request("a", url.clone())
            },
        ),
        (
            "auth",
            v1::CreateWebhookRequest {
                auth: auth(Kind::Bearer(v1::BearerAuth { token: String::new() })),
                ..request("a", url.clone())
            },
        ),
        (
            "auth",
            v1::CreateWebhookRequest {
                auth: auth(Kind::Basic(v1::BasicAuth {
                    username: "a:b".into(),
                    password: "p".into(),
                })),
                ..request("a", url.clone())
            },
        ),
        (
            "fields",
            v1::CreateWebhookRequest {
                fields: vec!["no-slash".into()],
                ..request("a", url.clone())
            },
        ),
        (
            "credential_id",
            v1::CreateWebhookRequest {
                credential_id: "cred_missing".into(),
                ..request("a", url.clone())
            },
        ),
        ("app", v1::CreateWebhookRequest { app: "x".repeat(200), ..request("a", url.clone()) }),
    ];
    for (field, req) in cases {
        let err = status_of(webhooks.create_webhook(req).await);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let listed = webhooks.list_webhooks(v1::ListWebhooksRequest::default()).await?.into_inner();
    assert!(listed.webhooks.is_empty(), "nothing was stored");

    let w = cluster.create(request("ok", url.clone())).await?;
    let err = status_of(
        webhooks
            .update_webhook(v1::UpdateWebhookRequest {
                webhook: Some(v1::Webhook { id: w.id.clone(), method: 42, ..Default::default() }),
                update_mask: Some(FieldMask { paths: vec!["method".into()] }),
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    let unchanged = webhooks
        .get_webhook(v1::GetWebhookRequest { id: w.id.clone() })
        .await?
        .into_inner()
        .webhook
        .context("webhook")?;
    assert_eq!(unchanged.method, w.method);
    for (what, err) in [
        (
            "activate",
            status_of(
                webhooks
                    .activate_webhook(v1::ActivateWebhookRequest {
                        id: String::new(),
                        replay: false,
                    })
                    .await,
            ),
        ),
        (
            "duplicate",
            status_of(
                webhooks.duplicate_webhook(v1::DuplicateWebhookRequest { id: String::new() }).await,
            ),
        ),
        (
            "test",
            status_of(
                webhooks
                    .test_webhook(v1::TestWebhookRequest {
                        id: w.id.clone(),
                        event_type: "a b".into(),
                        data: None,
                    })
                    .await,
            ),
        ),
        (
            "filter",
            status_of(
                webhooks
                    .list_webhooks(v1::ListWebhooksRequest {
                        event_type: "a.b".into(),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
    ] {
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    assert_eq!(
        status_of(
            webhooks
                .activate_webhook(v1::ActivateWebhookRequest {
                    id: "wh_nope".into(),
                    replay: false
                })
                .await
        )
        .code(),
        Code::NotFound
    );

    let mut credentials = cluster.credentials().await?;
    let cred = |f: fn(&mut v1::Credential)| {
        let mut c = v1::Credential {
            name: "c".into(),
            token_url: "https://auth.example.com/token".into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            ..Default::default()
        };
        f(&mut c);
        v1::CreateCredentialRequest { credential: Some(c) }
    };
    for (field, req) in [
        ("token_url", cred(|c| c.token_url = "ftp://x".into())),
        ("client_secret", cred(|c| c.client_secret = String::new())),
        ("code", cred(|c| c.grant_type = v1::GrantType::AuthorizationCode.into())),
        (
            "extra_params",
            cred(|c| {
                c.extra_params.insert("client_id".into(), "x".into());
            }),
        ),
        ("grant_type", cred(|c| c.grant_type = 9)),
    ] {
        let err = status_of(credentials.create_credential(req).await);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    assert!(
        credentials
            .list_credentials(v1::ListCredentialsRequest::default())
            .await?
            .into_inner()
            .credentials
            .is_empty()
    );

    let mut catalog = cluster.event_types().await?;
    for (field, t) in [
        ("name", v1::EventType { name: "a.b".into(), ..Default::default() }),
        (
            "schema",
            v1::EventType {
                name: "x".into(),
                schema: Some(prost_types::Struct {
                    fields: [("type".to_owned(), json_to_value(serde_json::json!(12)))].into(),
                }),
                ..Default::default()
            },
        ),
    ] {
        let err = status_of(
            catalog.create_event_type(v1::CreateEventTypeRequest { event_type: Some(t) }).await,
        );
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    assert!(
        catalog
            .list_event_types(v1::ListEventTypesRequest::default())
            .await?
            .into_inner()
            .event_types
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_values_are_refused_naming_the_field() -> anyhow::Result<()> {
    let cluster = Cluster::start(0, "")?;
    let mut webhooks = cluster.webhooks().await?;
    let url = "https://example.com/hook".to_owned();
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, v1::CreateWebhookRequest)> = vec![
        ("name", v1::CreateWebhookRequest { name: long(129), ..request("a", url.clone()) }),
        ("name", v1::CreateWebhookRequest { name: "a\u{7}b".into(), ..request("a", url.clone()) }),
        ("url", request("a", format!("https://example.com/{}", long(2100)))),
        ("url", request("a", "not a url".into())),
        (
            "description",
            v1::CreateWebhookRequest { description: long(1025), ..request("a", url.clone()) },
        ),
        (
            "event_types",
            v1::CreateWebhookRequest {
                event_types: (0..300).map(|i| format!("t{i}")).collect(),
                ..request("a", url.clone())
            },
        ),
        (
            "headers",
            v1::CreateWebhookRequest {
                headers: vec![v1::HttpHeader { name: "x-big".into(), value: long(5000) }],
                ..request("a", url.clone())
            },
        ),
        (
            "fields",
            v1::CreateWebhookRequest {
                fields: (0..65).map(|i| format!("/f{i}")).collect(),
                ..request("a", url.clone())
            },
        ),
        (
            "attempt_timeout_ms",
            v1::CreateWebhookRequest { attempt_timeout_ms: 30_001, ..request("a", url.clone()) },
        ),
        (
            "retry_schedule",
            v1::CreateWebhookRequest {
                retry_policy: Some(v1::RetryPolicy { delay_seconds: vec![1; 21] }),
                ..request("a", url.clone())
            },
        ),
    ];
    for (field, req) in cases {
        let err = status_of(webhooks.create_webhook(req).await);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    assert!(
        webhooks
            .list_webhooks(v1::ListWebhooksRequest::default())
            .await?
            .into_inner()
            .webhooks
            .is_empty(),
        "nothing was stored"
    );

    let w = cluster.create(request("ok", url)).await?;
    let err = status_of(
        webhooks
            .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
                id: w.id.clone(),
                grace_seconds: 8 * 24 * 3600,
                expire_now: false,
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("grace_seconds"), "{}", err.message());

    let mut catalog = cluster.event_types().await?;
    let big_schema = prost_types::Struct {
        fields: [(
            "description".to_owned(),
            json_to_value(serde_json::Value::String(long(70_000))),
        )]
        .into(),
    };
    for (field, t) in [
        (
            "description",
            v1::EventType { name: "a".into(), description: long(1025), ..Default::default() },
        ),
        (
            "schema",
            v1::EventType { name: "b".into(), schema: Some(big_schema), ..Default::default() },
        ),
        ("name", v1::EventType { name: long(129), ..Default::default() }),
    ] {
        let err = status_of(
            catalog.create_event_type(v1::CreateEventTypeRequest { event_type: Some(t) }).await,
        );
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    assert!(
        catalog
            .list_event_types(v1::ListEventTypesRequest::default())
            .await?
            .into_inner()
            .event_types
            .is_empty()
    );

    let mut credentials = cluster.credentials().await?;
    for (field, c) in [
        ("scope", v1::Credential { scope: long(1025), ..Default::default() }),
        ("name", v1::Credential { name: long(129), ..Default::default() }),
    ] {
        let c = v1::Credential {
            name: if c.name.is_empty() { "c".into() } else { c.name },
            token_url: "https://auth.example.com/token".into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            ..c
        };
        let err = status_of(
            credentials
                .create_credential(v1::CreateCredentialRequest { credential: Some(c) })
                .await,
        );
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }

    let mut access = cluster.access().await?;
    let err = status_of(
        access
            .create_role(v1::CreateRoleRequest {
                role: Some(v1::Role {
                    name: "ops".into(),
                    permissions: vec!["webhooks.destroy".into()],
                    builtin: false,
                }),
            })
            .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("permissions"), "{}", err.message());
    Ok(())
}
