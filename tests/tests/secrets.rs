//! End to end, with real processes: every secret hookd is given or creates (endpoint auth
//! values, OAuth2 client secret, authorization code and tokens, signing secrets) is used for
//! real deliveries, then looked for in every log and in the database files: none may appear.

use std::time::Duration;

use anyhow::Context;
use hookd_proto::{convert::json_to_value, v1};
use hookd_tests::{Cluster, Receiver, Response, responder, wait_until};

const DEADLINE: Duration = Duration::from_secs(20);
const BEARER: &str = "bearer-secret-9f8e7d6c5b4a";
const HEADER: &str = "header-secret-1a2b3c4d5e6f";
const CLIENT_SECRET: &str = "client-secret-0a9b8c7d6e5f";
const CODE: &str = "authorization-code-5e4d3c2b1a";
const ACCESS_TOKEN: &str = "access-token-6f5e4d3c2b1a";
const REFRESH_TOKEN: &str = "refresh-token-7a6b5c4d3e2f";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_or_the_database_in_clear() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let endpoint = Receiver::ok()?;
    let tokens = Receiver::start(responder(|_, _| {
        Response::ok().with_header("content-type", "application/json").with_body(format!(
            r#"{{"access_token":"{ACCESS_TOKEN}","expires_in":3600,"refresh_token":"{REFRESH_TOKEN}"}}"#
        ))
    }))?;
    let credential = cluster
        .credentials()
        .await?
        .create_credential(v1::CreateCredentialRequest {
            credential: Some(v1::Credential {
                name: "oauth".into(),
                token_url: tokens.url("/token"),
                client_id: "hookd".into(),
                client_secret: CLIENT_SECRET.into(),
                grant_type: v1::GrantType::AuthorizationCode.into(),
                code: CODE.into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .credential
        .context("credential")?;
    let auth = |kind| Some(v1::EndpointAuth { kind: Some(kind) });
    let mut signing = Vec::new();
    for (name, request) in [
        (
            "bearer",
            v1::CreateWebhookRequest {
                auth: auth(v1::endpoint_auth::Kind::Bearer(v1::BearerAuth {
                    token: BEARER.into(),
                })),
                ..Default::default()
            },
        ),
        (
            "header",
            v1::CreateWebhookRequest {
                auth: auth(v1::endpoint_auth::Kind::Header(v1::HeaderAuth {
                    name: "x-webhook-secret".into(),
                    value: HEADER.into(),
                })),
                credential_id: credential.id.clone(),
                ..Default::default()
            },
        ),
    ] {
        let created = cluster
            .webhooks()
            .await?
            .create_webhook(v1::CreateWebhookRequest {
                name: name.into(),
                url: endpoint.url(&format!("/{name}")),
                event_types: vec!["contact-created".into()],
                active: true,
                ..request
            })
            .await?
            .into_inner();
        let id = created.webhook.context("webhook")?.id;
        signing.push(created.signing_secret);
        // Reads, a test send and a rotation exercise the other paths secrets travel.
        let mut webhooks = cluster.webhooks().await?;
        webhooks.get_webhook(v1::GetWebhookRequest { id: id.clone() }).await?;
        webhooks
            .test_webhook(v1::TestWebhookRequest {
                id: id.clone(),
                event_type: "contact-created".into(),
                data: None,
            })
            .await?;
        let rotated = webhooks
            .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
                id,
                grace_seconds: 60,
                expire_now: false,
            })
            .await?;
        signing.push(rotated.into_inner().signing_secret);
    }
    cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: "evt-secret".into(),
                r#type: "contact-created".into(),
                data: Some(json_to_value(serde_json::json!({"n": 1}))),
                ..Default::default()
            }),
        })
        .await?;
    // Two test sends and two deliveries, all with their credentials attached.
    let got = endpoint.wait_for(4, DEADLINE).await?;
    assert!(got.iter().any(|r| r.header("authorization") == Some(&format!("Bearer {BEARER}"))));
    assert!(got.iter().any(|r| r.header("x-webhook-secret") == Some(HEADER)));
    assert!(
        got.iter().any(|r| r.header("authorization") == Some(&format!("Bearer {ACCESS_TOKEN}")))
    );
    // The history is written in batches; wait until both deliveries are in it.
    let deliveries = cluster.deliveries().await?;
    let webhooks =
        cluster.webhooks().await?.list_webhooks(v1::ListWebhooksRequest::default()).await?;
    for w in webhooks.into_inner().webhooks {
        wait_until("the delivery is recorded", DEADLINE, || {
            let mut deliveries = deliveries.clone();
            let id = w.id.clone();
            async move {
                let list = deliveries
                    .list_deliveries(v1::ListDeliveriesRequest {
                        webhook_id: id,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                Ok((!list.deliveries.is_empty()).then_some(()))
            }
        })
        .await?;
    }

    let mut secrets: Vec<String> =
        [BEARER, HEADER, CLIENT_SECRET, CODE, ACCESS_TOKEN, REFRESH_TOKEN]
            .map(String::from)
            .to_vec();
    // A `whsec_` secret is looked for by its key part, in any of its spellings.
    secrets.extend(signing.iter().map(|s| s.trim_start_matches("whsec_").to_owned()));

    let mut logs = vec![
        ("control", std::fs::read(cluster.control.log_path())?),
        ("nats", std::fs::read(cluster.nats.server(0).log_path())?),
    ];
    for d in &cluster.dispatchers {
        logs.push(("dispatcher", std::fs::read(d.log_path())?));
    }
    let db = cluster.database_path();
    let dir = db.parent().context("database directory")?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().contains("hookd.db") {
            logs.push(("database file", std::fs::read(&path)?));
        }
    }
    for (what, bytes) in &logs {
        assert!(!bytes.is_empty() || *what == "nats", "{what} is empty");
        for secret in &secrets {
            assert!(!contains(bytes, secret), "{what} contains a secret in clear");
        }
    }
    Ok(())
}
