//! End to end: tenants, roles and API tokens against real processes.
//!
//! For every RPC of the public services: a token of another tenant neither sees nor changes
//! the first tenant's resources (NOT_FOUND, as for a missing id, never PERMISSION_DENIED,
//! which would tell that the resource exists), a viewer token reads but changes nothing
//! (PERMISSION_DENIED), a missing or unknown token is UNAUTHENTICATED, and none of the
//! refused calls changed anything. Then the NATS path: an event under one tenant's subject
//! reaches only that tenant's webhooks; a publish-only role; revocation.

use std::time::Duration;

use anyhow::Context;
use hookd_proto::v1::{
    self, access_service_client::AccessServiceClient,
    credential_service_client::CredentialServiceClient,
    delivery_service_client::DeliveryServiceClient, dispatch_service_client::DispatchServiceClient,
    event_service_client::EventServiceClient, event_type_service_client::EventTypeServiceClient,
    webhook_service_client::WebhookServiceClient,
};
use hookd_tests::{
    Authed, Cluster, DISPATCHER_TOKEN, OTHER_OWNER_TOKEN, OTHER_TENANT, OWNER_TOKEN, Receiver,
    TENANT, wait_until,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

/// Tenant A's resources, which the other callers aim at.
struct Ids {
    webhook: String,
    delivery: String,
    credential: String,
    event_type: String,
    role: String,
    token: String,
}

/// Every RPC of the public services, by name, from the compiled contract: an RPC without a
/// case in [`call`] fails this test (and, before it, the architecture test).
fn rpcs() -> Vec<String> {
    hookd_tests::contract::public_rpcs().into_iter().map(|rpc| rpc.method).collect()
}

/// What a viewer (`webhooks.read` only) may call.
const VIEWER_MAY: &[&str] = &[
    "GetWebhook",
    "ListWebhooks",
    "WatchNotifications",
    "ListDeliveries",
    "GetDelivery",
    "GetCredential",
    "ListCredentials",
    "GetEventType",
    "ListEventTypes",
    "WhoAmI",
];

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

fn credential(name: &str) -> v1::Credential {
    v1::Credential {
        name: name.into(),
        token_url: "http://127.0.0.1:9/token".into(),
        client_id: "client".into(),
        client_secret: "s3cret".into(),
        ..Default::default()
    }
}

/// Calls `rpc` aimed at A's resources over `ch`; the answer as debug text for list checks.
async fn call(rpc: &str, ch: Authed, ids: &Ids) -> Result<String, tonic::Status> {
    let mut webhooks = WebhookServiceClient::new(ch.clone());
    let mut deliveries = DeliveryServiceClient::new(ch.clone());
    let mut credentials = CredentialServiceClient::new(ch.clone());
    let mut event_types = EventTypeServiceClient::new(ch.clone());
    let mut events = EventServiceClient::new(ch.clone());
    let mut access = AccessServiceClient::new(ch);
    let id = ids.webhook.clone();
    let since = Some(prost_types::Timestamp { seconds: 0, nanos: 0 });
    let text = match rpc {
        "CreateWebhook" => format!(
            "{:?}",
            webhooks
                .create_webhook(v1::CreateWebhookRequest {
                    name: format!("made-by-{}", uuid::Uuid::now_v7().simple()),
                    url: "http://127.0.0.1:9/x".into(),
                    event_types: vec!["*".into()],
                    // Another tenant's credential must look missing.
                    credential_id: ids.credential.clone(),
                    ..Default::default()
                })
                .await?
        ),
        "GetWebhook" => format!("{:?}", webhooks.get_webhook(v1::GetWebhookRequest { id }).await?),
        "ListWebhooks" => format!(
            "{:?}",
            webhooks.list_webhooks(v1::ListWebhooksRequest::default()).await?.into_inner()
        ),
        "UpdateWebhook" => format!(
            "{:?}",
            webhooks
                .update_webhook(v1::UpdateWebhookRequest {
                    webhook: Some(v1::Webhook { id, name: "renamed".into(), ..Default::default() }),
                    update_mask: mask(&["name"]),
                })
                .await?
        ),
        "DeleteWebhook" => {
            format!("{:?}", webhooks.delete_webhook(v1::DeleteWebhookRequest { id }).await?)
        }
        "ActivateWebhook" => {
            format!(
                "{:?}",
                webhooks.activate_webhook(v1::ActivateWebhookRequest { id, replay: false }).await?
            )
        }
        "DeactivateWebhook" => {
            format!("{:?}", webhooks.deactivate_webhook(v1::DeactivateWebhookRequest { id }).await?)
        }
        "DuplicateWebhook" => {
            format!("{:?}", webhooks.duplicate_webhook(v1::DuplicateWebhookRequest { id }).await?)
        }
        "GetWebhookSecret" => {
            format!("{:?}", webhooks.get_webhook_secret(v1::GetWebhookSecretRequest { id }).await?)
        }
        "RotateWebhookSecret" => format!(
            "{:?}",
            webhooks
                .rotate_webhook_secret(v1::RotateWebhookSecretRequest {
                    id,
                    grace_seconds: 0,
                    expire_now: true,
                })
                .await?
        ),
        "WatchNotifications" => {
            // What the watch carries in its first moments: nothing of another tenant's.
            let mut stream =
                webhooks.watch_notifications(v1::WatchNotificationsRequest {}).await?.into_inner();
            let mut seen = Vec::new();
            while let Ok(item) =
                tokio::time::timeout(Duration::from_millis(300), stream.message()).await
            {
                match item? {
                    Some(notification) => seen.push(notification),
                    None => break,
                }
            }
            format!("{seen:?}")
        }
        "TestWebhook" => format!(
            "{:?}",
            webhooks
                .test_webhook(v1::TestWebhookRequest {
                    id,
                    event_type: "order-placed".into(),
                    data: None,
                })
                .await?
        ),
        "ListDeliveries" => format!(
            "{:?}",
            deliveries
                .list_deliveries(v1::ListDeliveriesRequest { webhook_id: id, ..Default::default() })
                .await?
                .into_inner()
        ),
        "GetDelivery" => format!(
            "{:?}",
            deliveries.get_delivery(v1::GetDeliveryRequest { id: ids.delivery.clone() }).await?
        ),
        "ResendDelivery" => format!(
            "{:?}",
            deliveries
                .resend_delivery(v1::ResendDeliveryRequest { id: ids.delivery.clone() })
                .await?
        ),
        "RecoverFailedDeliveries" => format!(
            "{:?}",
            deliveries
                .recover_failed_deliveries(v1::RecoverFailedDeliveriesRequest {
                    webhook_id: id,
                    since,
                })
                .await?
        ),
        "CreateCredential" => format!(
            "{:?}",
            credentials
                .create_credential(v1::CreateCredentialRequest {
                    credential: Some(credential(&format!(
                        "made-by-{}",
                        uuid::Uuid::now_v7().simple()
                    ))),
                })
                .await?
        ),
        "GetCredential" => format!(
            "{:?}",
            credentials
                .get_credential(v1::GetCredentialRequest { id: ids.credential.clone() })
                .await?
        ),
        "ListCredentials" => format!(
            "{:?}",
            credentials.list_credentials(v1::ListCredentialsRequest::default()).await?.into_inner()
        ),
        "UpdateCredential" => format!(
            "{:?}",
            credentials
                .update_credential(v1::UpdateCredentialRequest {
                    credential: Some(v1::Credential {
                        id: ids.credential.clone(),
                        client_id: "stolen".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["client_id"]),
                })
                .await?
        ),
        "DeleteCredential" => format!(
            "{:?}",
            credentials
                .delete_credential(v1::DeleteCredentialRequest { id: ids.credential.clone() })
                .await?
        ),
        "CreateEventType" => format!(
            "{:?}",
            event_types
                .create_event_type(v1::CreateEventTypeRequest {
                    event_type: Some(v1::EventType {
                        name: format!("made-by-{}", uuid::Uuid::now_v7().simple()),
                        ..Default::default()
                    }),
                })
                .await?
        ),
        "GetEventType" => format!(
            "{:?}",
            event_types
                .get_event_type(v1::GetEventTypeRequest { name: ids.event_type.clone() })
                .await?
        ),
        "ListEventTypes" => format!(
            "{:?}",
            event_types.list_event_types(v1::ListEventTypesRequest::default()).await?.into_inner()
        ),
        "UpdateEventType" => format!(
            "{:?}",
            event_types
                .update_event_type(v1::UpdateEventTypeRequest {
                    event_type: Some(v1::EventType {
                        name: ids.event_type.clone(),
                        description: "changed".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["description"]),
                })
                .await?
        ),
        "DeleteEventType" => format!(
            "{:?}",
            event_types
                .delete_event_type(v1::DeleteEventTypeRequest { name: ids.event_type.clone() })
                .await?
        ),
        "PublishEvent" => format!(
            "{:?}",
            events
                .publish_event(v1::PublishEventRequest {
                    event: Some(v1::Event { r#type: "order-placed".into(), ..Default::default() }),
                })
                .await?
        ),
        "CreateRole" => format!(
            "{:?}",
            access
                .create_role(v1::CreateRoleRequest {
                    role: Some(v1::Role {
                        name: format!("made-{}", uuid::Uuid::now_v7().simple()),
                        permissions: vec!["webhooks.read".into()],
                        builtin: false,
                    }),
                })
                .await?
        ),
        "ListRoles" => format!("{:?}", access.list_roles(v1::ListRolesRequest {}).await?),
        "UpdateRole" => format!(
            "{:?}",
            access
                .update_role(v1::UpdateRoleRequest {
                    name: ids.role.clone(),
                    permissions: vec!["tenant.admin".into()],
                })
                .await?
        ),
        "DeleteRole" => format!(
            "{:?}",
            access.delete_role(v1::DeleteRoleRequest { name: ids.role.clone() }).await?
        ),
        "CreateToken" => format!(
            "{:?}",
            access
                .create_token(v1::CreateTokenRequest {
                    name: "made".into(),
                    // Another tenant's custom role must look missing.
                    role: ids.role.clone(),
                })
                .await?
        ),
        "ListTokens" => format!("{:?}", access.list_tokens(v1::ListTokensRequest {}).await?),
        "RevokeToken" => format!(
            "{:?}",
            access.revoke_token(v1::RevokeTokenRequest { id: ids.token.clone() }).await?
        ),
        "WhoAmI" => format!("{:?}", access.who_am_i(v1::WhoAmIRequest {}).await?),
        "CreatePortalLink" => format!(
            "{:?}",
            access
                .create_portal_link(v1::CreatePortalLinkRequest {
                    // Another tenant's custom role must look missing.
                    role: ids.role.clone(),
                    app: "shop-7".into(),
                    ttl_seconds: 0,
                })
                .await?
        ),
        other => panic!("no such rpc {other}"),
    };
    Ok(text)
}

/// Everything of tenant A the refused calls could have changed, as comparable text.
async fn state_of_a(cluster: &Cluster, ids: &Ids) -> anyhow::Result<String> {
    let mut webhooks = cluster.webhooks().await?;
    let mut listed = webhooks.list_webhooks(v1::ListWebhooksRequest::default()).await?.into_inner();
    for w in &mut listed.webhooks {
        // Counters move with deliveries, which are not what this compares.
        w.stats = None;
    }
    let delivery = cluster
        .deliveries()
        .await?
        .get_delivery(v1::GetDeliveryRequest { id: ids.delivery.clone() })
        .await?
        .into_inner();
    let credentials = cluster
        .credentials()
        .await?
        .list_credentials(v1::ListCredentialsRequest::default())
        .await?
        .into_inner();
    let mut types = cluster
        .event_types()
        .await?
        .list_event_types(v1::ListEventTypesRequest::default())
        .await?
        .into_inner();
    for t in &mut types.event_types {
        t.rejected = 0;
    }
    let mut access = cluster.access().await?;
    let roles = access.list_roles(v1::ListRolesRequest {}).await?.into_inner();
    let tokens = access.list_tokens(v1::ListTokensRequest {}).await?.into_inner();
    Ok(format!("{listed:?}\n{delivery:?}\n{credentials:?}\n{types:?}\n{roles:?}\n{tokens:?}"))
}

/// Tenant A: a webhook with one delivered event, a credential, an event type, a custom role
/// and a token holding it.
async fn tenant_a(cluster: &Cluster, receiver: &Receiver) -> anyhow::Result<Ids> {
    let webhook = cluster.create_webhook("a-orders", receiver.url("/a"), &["order-placed"]).await?;
    let published = cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event { r#type: "order-placed".into(), ..Default::default() }),
        })
        .await?
        .into_inner();
    receiver.wait_for(1, WAIT).await?;
    let delivery = wait_until("tenant A's delivery recorded", WAIT, || async {
        let page = cluster
            .deliveries()
            .await?
            .list_deliveries(v1::ListDeliveriesRequest {
                webhook_id: webhook.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(page
            .deliveries
            .into_iter()
            .find(|d| d.event_id == published.event_id && d.attempt_count > 0)
            .map(|d| d.id))
    })
    .await?;
    let credential = cluster
        .credentials()
        .await?
        .create_credential(v1::CreateCredentialRequest { credential: Some(credential("a-cred")) })
        .await?
        .into_inner()
        .credential
        .context("credential")?
        .id;
    cluster
        .event_types()
        .await?
        .create_event_type(v1::CreateEventTypeRequest {
            event_type: Some(v1::EventType { name: "a-only-type".into(), ..Default::default() }),
        })
        .await?;
    let mut access = cluster.access().await?;
    access
        .create_role(v1::CreateRoleRequest {
            role: Some(v1::Role {
                name: "a-auditor".into(),
                permissions: vec!["webhooks.read".into()],
                builtin: false,
            }),
        })
        .await?;
    let token = access
        .create_token(v1::CreateTokenRequest { name: "a-audit".into(), role: "a-auditor".into() })
        .await?
        .into_inner()
        .token
        .context("token")?
        .id;
    Ok(Ids {
        webhook: webhook.id,
        delivery,
        credential,
        event_type: "a-only-type".into(),
        role: "a-auditor".into(),
        token,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_keeps_tenants_apart_and_enforces_roles() -> anyhow::Result<()> {
    let known = rpcs();
    let unknown: Vec<_> = VIEWER_MAY.iter().filter(|r| !known.iter().any(|k| k == *r)).collect();
    assert!(unknown.is_empty(), "VIEWER_MAY names RPCs the contract lacks: {unknown:?}");
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let ids = tenant_a(&cluster, &receiver).await?;
    let viewer = cluster
        .access()
        .await?
        .create_token(v1::CreateTokenRequest { name: "a-viewer".into(), role: "viewer".into() })
        .await?
        .into_inner()
        .secret;
    let before = state_of_a(&cluster, &ids).await?;
    let mut failures = Vec::new();

    // No token, an unknown one, and the dispatcher's: UNAUTHENTICATED everywhere.
    for (who, token) in [
        ("no token", None),
        ("unknown token", Some("hkd_not-a-real-token-000000000000000")),
        ("dispatcher token", Some(DISPATCHER_TOKEN)),
    ] {
        for rpc in &rpcs() {
            match call(rpc, cluster.authed(token).await?, &ids).await {
                Err(s) if s.code() == Code::Unauthenticated => {}
                other => failures.push(format!("{who} {rpc}: {other:?}")),
            }
        }
    }

    // A viewer of tenant A: reads work, every change is PERMISSION_DENIED naming the
    // permission.
    for rpc in &rpcs() {
        let answer = call(rpc, cluster.authed(Some(&viewer)).await?, &ids).await;
        match (VIEWER_MAY.contains(&rpc.as_str()), answer) {
            (true, Ok(_)) => {}
            (false, Err(s))
                if s.code() == Code::PermissionDenied
                    && (s.message().contains("webhooks.manage")
                        || s.message().contains("events.publish")
                        || s.message().contains("tenant.admin")) => {}
            (_, other) => failures.push(format!("viewer {rpc}: {other:?}")),
        }
    }

    // The owner of tenant B aiming at A's resources: NOT_FOUND as for a missing id; lists
    // and creations work but only ever show or touch B's own.
    let other = cluster.authed(Some(OTHER_OWNER_TOKEN)).await?;
    for rpc in &rpcs() {
        let answer = call(rpc, other.clone(), &ids).await;
        let ok = match rpc.as_str() {
            "ListWebhooks" | "ListCredentials" | "ListEventTypes" | "ListRoles" | "ListTokens"
            | "WatchNotifications" => answer.as_ref().is_ok_and(|text| {
                ![&ids.webhook, &ids.credential, &ids.event_type, &ids.role, &ids.token]
                    .iter()
                    .any(|id| text.contains(id.as_str()))
            }),
            "WhoAmI" => answer.as_ref().is_ok_and(|t| t.contains(&format!("{OTHER_TENANT:?}"))),
            // Creations land in B; those naming A's credential or role find none.
            "CreateWebhook" | "CreateToken" | "CreatePortalLink" => answer
                .as_ref()
                .is_err_and(|s| s.code() == Code::InvalidArgument && s.message().contains("no ")),
            "CreateCredential" | "CreateEventType" | "CreateRole" | "PublishEvent" => {
                answer.is_ok()
            }
            _ => answer.as_ref().is_err_and(|s| s.code() == Code::NotFound),
        };
        if !ok {
            failures.push(format!("tenant {OTHER_TENANT} {rpc}: {answer:?}"));
        }
    }
    // API tokens cannot act as a dispatcher.
    for token in [OWNER_TOKEN, OTHER_OWNER_TOKEN, viewer.as_str()] {
        let mut dispatch = DispatchServiceClient::new(cluster.authed(Some(token)).await?);
        let answer = dispatch
            .report_attempts(v1::ReportAttemptsRequest::default())
            .await
            .map(|_| ())
            .map_err(|s| s.code());
        if answer != Err(Code::Unauthenticated) {
            failures.push(format!("DispatchService with an API token: {answer:?}"));
        }
    }
    assert!(failures.is_empty(), "{} unexpected answers:\n{}", failures.len(), failures.join("\n"));

    let after = state_of_a(&cluster, &ids).await?;
    assert_eq!(before, after, "a refused or foreign call changed tenant {TENANT}");
    // B's publish of the type A subscribes to reached nobody of A: still one request.
    cluster
        .authed(Some(OTHER_OWNER_TOKEN))
        .await
        .map(EventServiceClient::new)?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event { r#type: "order-placed".into(), ..Default::default() }),
        })
        .await?;
    let a_marker = cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event { r#type: "order-placed".into(), ..Default::default() }),
        })
        .await?
        .into_inner();
    let seen = receiver.wait_for(2, WAIT).await?;
    let event_ids: Vec<String> = seen
        .iter()
        .filter_map(|r| r.json().ok())
        .filter_map(|j| j["meta"]["eventId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(event_ids.len(), 2, "{event_ids:?}");
    assert_eq!(event_ids[1], a_marker.event_id, "only A's own events reach A: {event_ids:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_events_reach_only_their_tenant_and_roles_and_revocation_hold() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let a = Receiver::ok()?;
    let b = Receiver::ok()?;
    let a_hook = cluster.create_webhook("orders", a.url("/a"), &["order-placed"]).await?;
    let mut b_webhooks = WebhookServiceClient::new(cluster.authed(Some(OTHER_OWNER_TOKEN)).await?);
    let b_hook = b_webhooks
        .create_webhook(v1::CreateWebhookRequest {
            // The same name and type in the other tenant: names are per tenant.
            name: "orders".into(),
            url: b.url("/b"),
            event_types: vec!["order-placed".into()],
            active: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .webhook
        .context("webhook")?;
    assert_eq!(b_hook.tenant, OTHER_TENANT);
    assert_eq!(a_hook.tenant, TENANT);

    // Straight to NATS, as producers do: first B's event, then a marker for A.
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    for (tenant, id) in [(OTHER_TENANT, "evt-for-b"), (TENANT, "evt-for-a")] {
        let body = serde_json::json!({"id": id, "type": "order-placed", "data": {"n": 1}});
        js.publish(format!("hookd.events.{tenant}.order-placed"), body.to_string().into())
            .await?
            .await?;
    }
    let got_b = b.wait_for(1, WAIT).await?;
    let got_a = a.wait_for(1, WAIT).await?;
    let event_of = |r: &hookd_tests::ReceivedRequest| {
        r.json().ok().and_then(|j| j["meta"]["eventId"].as_str().map(str::to_owned))
    };
    assert_eq!(got_b.iter().filter_map(event_of).collect::<Vec<_>>(), ["evt-for-b"]);
    assert_eq!(got_a.iter().filter_map(event_of).collect::<Vec<_>>(), ["evt-for-a"]);
    // The history agrees, recorded under each tenant.
    for (client, hook, event) in [
        (cluster.deliveries().await?, &a_hook.id, "evt-for-a"),
        (
            DeliveryServiceClient::new(cluster.authed(Some(OTHER_OWNER_TOKEN)).await?),
            &b_hook.id,
            "evt-for-b",
        ),
    ] {
        let events = wait_until("the delivery recorded under its tenant", WAIT, || {
            let mut client = client.clone();
            async move {
                let page = client
                    .list_deliveries(v1::ListDeliveriesRequest {
                        webhook_id: hook.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let events: Vec<String> = page.deliveries.into_iter().map(|d| d.event_id).collect();
                Ok((!events.is_empty()).then_some(events))
            }
        })
        .await?;
        assert_eq!(events, [event]);
    }

    // A custom role that may only publish.
    let mut access = cluster.access().await?;
    access
        .create_role(v1::CreateRoleRequest {
            role: Some(v1::Role {
                name: "publisher".into(),
                permissions: vec!["events.publish".into()],
                builtin: false,
            }),
        })
        .await?;
    let created = access
        .create_token(v1::CreateTokenRequest { name: "producer".into(), role: "publisher".into() })
        .await?
        .into_inner();
    let token = created.token.context("token")?;
    let publisher = cluster.authed(Some(&created.secret)).await?;
    EventServiceClient::new(publisher.clone())
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: "evt-by-publisher".into(),
                r#type: "order-placed".into(),
                ..Default::default()
            }),
        })
        .await?;
    a.wait_for(2, WAIT).await?;
    let denied = WebhookServiceClient::new(publisher.clone())
        .list_webhooks(v1::ListWebhooksRequest::default())
        .await
        .expect_err("publish-only");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("webhooks.read"), "{}", denied.message());
    let me = AccessServiceClient::new(publisher.clone())
        .who_am_i(v1::WhoAmIRequest {})
        .await?
        .into_inner();
    assert_eq!((me.tenant.as_str(), me.role.as_str()), (TENANT, "publisher"));
    assert_eq!(me.token_id, token.id);

    // In use: the role stays until its token is revoked; then the token stops working.
    let in_use = access
        .delete_role(v1::DeleteRoleRequest { name: "publisher".into() })
        .await
        .expect_err("in use");
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    let builtin = access
        .delete_role(v1::DeleteRoleRequest { name: "owner".into() })
        .await
        .expect_err("built in");
    assert_eq!(builtin.code(), Code::FailedPrecondition);
    access.revoke_token(v1::RevokeTokenRequest { id: token.id.clone() }).await?;
    wait_until("the revoked token refused", WAIT, || {
        let mut client = AccessServiceClient::new(publisher.clone());
        async move {
            match client.who_am_i(v1::WhoAmIRequest {}).await {
                Err(s) if s.code() == Code::Unauthenticated => Ok(Some(())),
                other => anyhow::bail!("still answered: {other:?}"),
            }
        }
    })
    .await?;
    access.delete_role(v1::DeleteRoleRequest { name: "publisher".into() }).await?;
    Ok(())
}
