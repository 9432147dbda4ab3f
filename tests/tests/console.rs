//! The web console and customer portal (C1–C9) end to end: real nats-server, real `hookd
//! control` (which serves the console) and dispatcher, a real HTTP receiver, and headless
//! Chromium driven through chromedriver. Every page visited is screenshotted into
//! `$CARGO_TARGET_DIR/console-screenshots/`.

#[path = "console/browser.rs"]
mod browser;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use std::time::{Duration, Instant};

use browser::Browser;
use bytes::Bytes;
use hookd_proto::{convert::json_to_value, v1};
use hookd_tests::{
    Cluster, OTHER_OWNER_TOKEN, OWNER_TOKEN, Receiver, Response, authed, responder, wait_until,
};
use http_body_util::{BodyExt as _, Full};

const DEADLINE: Duration = Duration::from_secs(30);

/// One browser test at a time: Chromium is heavy for a 2-core machine.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn console(cluster: &Cluster) -> anyhow::Result<String> {
    cluster
        .control
        .console_url()
        .ok_or_else(|| anyhow::anyhow!("the control plane printed no console address"))
}

/// A plain HTTP request to the console (what a forged or scripted request would be).
async fn http(
    method: &str,
    url: &str,
    cookie: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, http::HeaderMap, String)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder().method(method).uri(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if method == "POST" {
        request = request.header("content-type", "application/x-www-form-urlencoded");
    }
    let response = client.request(request.body(Full::new(Bytes::from(body.to_owned())))?).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Signs the browser in with `token` and waits for the webhooks list.
async fn sign_in(browser: &mut Browser, console: &str, token: &str) -> anyhow::Result<()> {
    browser.goto(&format!("{console}/sign-in")).await?;
    browser.fill("#in-token", token).await?;
    browser.click_text("Sign in").await?;
    anyhow::ensure!(
        browser.path().await? == "/webhooks",
        "sign-in ended at {}",
        browser.path().await?
    );
    Ok(())
}

/// The hidden CSRF token of the page the browser shows.
async fn page_csrf(browser: &Browser) -> anyhow::Result<String> {
    let value = browser
        .client
        .execute("return document.querySelector('input[name=csrf]').value;", vec![])
        .await?;
    value.as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no csrf input on the page"))
}

async fn webhook(cluster: &Cluster, token: &str, id: &str) -> anyhow::Result<v1::Webhook> {
    let mut client =
        v1::webhook_service_client::WebhookServiceClient::new(cluster.authed(Some(token)).await?);
    Ok(client
        .get_webhook(v1::GetWebhookRequest { id: id.into() })
        .await?
        .into_inner()
        .webhook
        .unwrap_or_default())
}

/// The id in a `/webhooks/<id>` path.
fn webhook_id(path: &str) -> anyhow::Result<String> {
    path.strip_prefix("/webhooks/")
        .map(|rest| rest.split('/').next().unwrap_or_default().to_owned())
        .filter(|id| id.starts_with("wh_"))
        .ok_or_else(|| anyhow::anyhow!("{path} is not a webhook page"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_creates_activates_and_follows_a_webhook_in_the_browser() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let receiver =
        Receiver::start(responder(|_, _| Response::ok().with_body("thanks from the receiver")))?;
    let cluster = Cluster::start(1, "")?;
    let console = console(&cluster)?;
    let mut b = Browser::start().await?;

    b.goto(&format!("{console}/sign-in")).await?;
    b.check_page().await?;
    b.shot("sign-in").await?;
    b.fill("#in-token", OWNER_TOKEN).await?;
    b.click_text("Sign in").await?;
    assert_eq!(b.path().await?, "/webhooks");
    assert!(b.text().await?.contains("No webhooks yet"));

    // Create: custom headers, basic auth, selected fields.
    b.click_text("New webhook").await?;
    b.fill("#in-name", "crm").await?;
    b.fill("#in-url", &receiver.url("/hook")).await?;
    b.fill("#in-event_types_text", "contact-created").await?;
    b.fill("#hn-0", "x-tenant").await?;
    b.fill("#hv-0", "acme").await?;
    b.click("#in-auth-basic").await?;
    b.fill("#in-basic_username", "hookd").await?;
    b.fill("#in-basic_password", "s3cret-pass").await?;
    b.click("#in-payload-fields").await?;
    b.fill("#in-fields", "/contactId\n/email").await?;
    b.check_page().await?;
    b.shot("webhook-form").await?;
    b.click_text("Create webhook").await?;
    let id = webhook_id(&b.path().await?)?;
    assert!(b.text().await?.contains("Webhook crm created."));
    let created = webhook(&cluster, OWNER_TOKEN, &id).await?;
    assert_eq!(created.fields, ["/contactId", "/email"]);
    assert_eq!(created.headers, [v1::HttpHeader { name: "x-tenant".into(), value: "acme".into() }]);
    assert!(!created.active);

    // The list shows it inactive; the switch activates it.
    b.goto(&format!("{console}/webhooks")).await?;
    let row = b.text().await?;
    assert!(row.contains("crm") && row.contains("Inactive"), "{row}");
    b.click_to("button[aria-label='Activate crm']").await?;
    assert!(b.text().await?.contains("Webhook crm activated."));
    assert!(webhook(&cluster, OWNER_TOKEN, &id).await?.active);

    // An event: delivered with the options from the form; the list shows it.
    cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: "evt-console-1".into(),
                r#type: "contact-created".into(),
                data: Some(json_to_value(serde_json::json!({"contactId": "c-1", "email": "ada@example.com", "phone": "secret"}))),
                ..Default::default()
            }),
        })
        .await?;
    let first = receiver.wait_for(1, DEADLINE).await?[0].clone();
    assert_eq!(first.header("x-tenant"), Some("acme"));
    assert_eq!(first.header("authorization"), Some("Basic aG9va2Q6czNjcmV0LXBhc3M="));
    assert_eq!(
        first.json()?["data"],
        serde_json::json!({"contactId": "c-1", "email": "ada@example.com"})
    );
    let list = b.wait_for_text("HTTP 200", DEADLINE).await?;
    assert!(list.contains("1 / 1 / 0"), "triggered / succeeded / failed: {list}");
    b.check_page().await?;
    b.shot("webhooks").await?;
    b.resize(390, 844).await?;
    b.check_page().await?;
    b.shot("webhooks-390px").await?;
    b.resize(1280, 900).await?;

    // The history shows the attempt; resending delivers again with the same webhook-id.
    b.click_to(&format!("a[href='/webhooks/{id}/deliveries']")).await?;
    let history = b.wait_for_text("delivered", DEADLINE).await?;
    assert!(history.contains("contact-created"), "{history}");
    b.check_page().await?;
    b.click_to("table.deliveries a").await?;
    let delivery = b.text().await?;
    assert!(delivery.contains("Attempt 1") && delivery.contains("HTTP 200"), "{delivery}");
    assert!(delivery.contains("thanks from the receiver"), "{delivery}");
    assert!(!delivery.contains("s3cret-pass"), "credentials are redacted: {delivery}");
    b.check_page().await?;
    b.shot("delivery").await?;
    b.click_text("Resend").await?;
    let again = receiver.wait_for(2, DEADLINE).await?;
    assert_eq!(again[1].header("webhook-id"), first.header("webhook-id"));
    b.wait_for_text("Attempt 2", DEADLINE).await?;

    // A test send shows the receiver's answer.
    b.goto(&format!("{console}/webhooks/{id}")).await?;
    b.fill("#in-data", r#"{"contactId": "c-test", "email": "test@example.com"}"#).await?;
    b.click_text("Send test").await?;
    let result = b.client.find(fantoccini::Locator::Css("#test-result")).await?.text().await?;
    assert!(result.contains("Delivered") && result.contains("HTTP 200"), "{result}");
    assert!(result.contains("thanks from the receiver"), "{result}");
    assert_eq!(receiver.wait_for(3, DEADLINE).await?[2].json()?["data"]["contactId"], "c-test");
    b.check_page().await?;
    b.shot("webhook").await?;

    // The signing secret is revealed on request.
    b.click_text("Reveal secret").await?;
    let secret =
        b.client.find(fantoccini::Locator::Css("#signing-secret")).await?.prop("value").await?;
    assert!(secret.is_some_and(|s| s.starts_with("whsec_")));

    // Duplicate: a new, inactive webhook with the same settings.
    b.click_text("Duplicate").await?;
    let copy_id = webhook_id(&b.path().await?)?;
    let copy = webhook(&cluster, OWNER_TOKEN, &copy_id).await?;
    assert_eq!((copy.name.as_str(), copy.active, copy.fields.len()), ("crm (copy)", false, 2));

    // An invalid URL on edit: the error at the URL field, nothing changed.
    b.goto(&format!("{console}/webhooks/{id}/edit")).await?;
    b.fill("#in-url", "not a url").await?;
    b.fill("#in-description", "changed").await?;
    b.click_text("Save changes").await?;
    let page = b.text().await?;
    let error = b
        .client
        .find(fantoccini::Locator::Css("#field-url p.error"))
        .await
        .map_err(|e| anyhow::anyhow!("no error at the URL field ({e}); the page shows:\n{page}"))?
        .text()
        .await?;
    assert!(!error.is_empty(), "no error at the URL field");
    let invalid =
        b.client.find(fantoccini::Locator::Css("#in-url")).await?.attr("aria-invalid").await?;
    assert_eq!(invalid.as_deref(), Some("true"));
    b.check_page().await?;
    b.shot("webhook-form-error").await?;
    let unchanged = webhook(&cluster, OWNER_TOKEN, &id).await?;
    assert_eq!(
        (unchanged.url.as_str(), unchanged.description.as_str()),
        (receiver.url("/hook").as_str(), "")
    );

    // Delete, after a confirmation page.
    b.goto(&format!("{console}/webhooks/{copy_id}")).await?;
    b.click_text("Delete").await?;
    assert!(b.text().await?.contains("Delete webhook crm (copy)?"));
    b.click_text("Delete webhook").await?;
    assert!(b.text().await?.contains("Webhook deleted."));

    // Nothing secret in any URL the browser was at.
    for url in &b.visited {
        assert!(
            !url.contains(OWNER_TOKEN) && !url.contains("hkd_") && !url.contains("whsec_"),
            "{url}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_deactivated_by_the_system_is_reactivated_with_replay_in_the_browser()
-> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start(responder({
        let healthy = healthy.clone();
        move |_, _| {
            if healthy.load(Ordering::SeqCst) { Response::ok() } else { Response::status(410) }
        }
    }))?;
    let cluster = Cluster::start(1, "")?;
    let console = console(&cluster)?;
    let hook =
        cluster.create_webhook("gone-then-back", receiver.url("/hook"), &["order-placed"]).await?;
    cluster.publish("order-placed", "evt-gone-1").await?;
    wait_until("410 deactivates the webhook", DEADLINE, || async {
        let w = webhook(&cluster, OWNER_TOKEN, &hook.id).await?;
        Ok((!w.active).then_some(()))
    })
    .await?;
    for i in 2..=3 {
        cluster.publish("order-placed", &format!("evt-gone-{i}")).await?;
    }
    wait_until("two events kept", DEADLINE, || async {
        let w = webhook(&cluster, OWNER_TOKEN, &hook.id).await?;
        Ok((w.health.unwrap_or_default().buffered >= 2).then_some(()))
    })
    .await?;
    let before = receiver.count();

    let mut b = Browser::start().await?;
    sign_in(&mut b, &console, OWNER_TOKEN).await?;
    let list = b.text().await?;
    assert!(list.contains("Deactivated by the system") && list.contains("2 events kept"), "{list}");
    b.goto(&format!("{console}/webhooks/{}", hook.id)).await?;
    let banner = b.client.find(fantoccini::Locator::Css("#deactivated")).await?.text().await?;
    assert!(banner.contains("410") && banner.contains("2 events kept"), "{banner}");
    b.check_page().await?;
    b.shot("deactivated").await?;
    healthy.store(true, Ordering::SeqCst);
    b.click("#replay-yes").await?;
    b.click_text("Activate").await?;
    assert!(b.text().await?.contains("2 kept events are being replayed"), "{}", b.text().await?);
    let all = receiver.wait_for(before + 2, DEADLINE).await?;
    let replayed: Vec<String> = all[before..]
        .iter()
        .map(|r| r.json().map(|j| j["meta"]["eventId"].to_string()))
        .collect::<Result<_, _>>()?;
    assert_eq!(replayed, ["\"evt-gone-2\"", "\"evt-gone-3\""], "in their original order");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_edit_controls_and_its_forged_posts_are_refused() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let receiver = Receiver::ok()?;
    let cluster = Cluster::start(0, "")?;
    let console = console(&cluster)?;
    let hook = cluster.create_webhook("watched", receiver.url("/hook"), &["a"]).await?;
    let viewer = cluster
        .access()
        .await?
        .create_token(v1::CreateTokenRequest { name: "auditor".into(), role: "viewer".into() })
        .await?
        .into_inner()
        .secret;

    let mut b = Browser::start().await?;
    sign_in(&mut b, &console, &viewer).await?;
    let list = b.text().await?;
    assert!(
        list.contains("watched") && list.contains("read-only")
            || b.source().await?.contains("read-only")
    );
    assert!(!b.exists("a[href='/webhooks/new']").await?, "no create button");
    assert!(!b.exists("form[action$='/status']").await?, "no status switch");
    b.shot("viewer-webhooks").await?;
    b.goto(&format!("{console}/webhooks/{}", hook.id)).await?;
    for control in [
        "a[href$='/edit']",
        "form[action$='/duplicate']",
        "a[href$='/delete']",
        "form[action$='/test']",
        "form[action$='/secret']",
    ] {
        assert!(!b.exists(control).await?, "a viewer sees {control}");
    }
    b.check_page().await?;

    // A hand-made POST with the viewer's own session and a valid form token: refused by the
    // API's permission check, and the page says so.
    let session = b.cookie("hookd_session").await?;
    let csrf = page_csrf(&b).await?;
    let cookie = format!("hookd_session={session}");
    let (status, _, body) = http(
        "POST",
        &format!("{console}/webhooks/{}/status", hook.id),
        Some(&cookie),
        &format!("csrf={csrf}&active=false"),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("webhooks.manage"), "{body}");
    assert!(webhook(&cluster, OWNER_TOKEN, &hook.id).await?.active, "nothing changed");
    let (status, _, _) = http("GET", &format!("{console}/webhooks/new"), Some(&cookie), "").await?;
    assert_eq!(status, 403);
    let (status, _, _) = http(
        "POST",
        &format!("{console}/webhooks/{}/delete", hook.id),
        Some(&cookie),
        &format!("csrf={csrf}"),
    )
    .await?;
    assert_eq!(status, 403);
    assert!(webhook(&cluster, OWNER_TOKEN, &hook.id).await.is_ok(), "not deleted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_link_shows_only_its_tenants_app_opens_once_and_cannot_be_widened_or_used_late()
-> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let receiver = Receiver::ok()?;
    // Pages that embed the console: one origin listed by the operator, one not.
    let link_cell: Arc<std::sync::Mutex<String>> = Arc::default();
    let embed = |cell: Arc<std::sync::Mutex<String>>| {
        responder(move |_, _| {
            let link = cell.lock().map(|l| l.clone()).unwrap_or_default();
            Response::ok()
                .with_header("content-type", "text/html")
                .with_body(format!("<!doctype html><title>platform</title><iframe id=portal src=\"{link}\" width=1200 height=800></iframe>"))
        })
    };
    let listed = Receiver::start(embed(link_cell.clone()))?;
    let unlisted = Receiver::start(embed(link_cell.clone()))?;
    let ancestors = format!("[\"http://{}\"]", listed.addr());
    let cluster =
        Cluster::builder().control_env(&[("HOOKD_CONSOLE_FRAME_ANCESTORS", &ancestors)]).start()?;
    let console = console(&cluster)?;
    let create = |name: &'static str, app: &'static str| v1::CreateWebhookRequest {
        name: name.into(),
        url: receiver.url("/hook"),
        event_types: vec!["a".into()],
        app: app.into(),
        ..Default::default()
    };
    let mine = cluster.create(create("shop-x-orders", "x")).await?;
    let others = cluster.create(create("shop-y-orders", "y")).await?;
    let mut other_tenant = v1::webhook_service_client::WebhookServiceClient::new(
        cluster.authed(Some(OTHER_OWNER_TOKEN)).await?,
    );
    other_tenant.create_webhook(create("tenant-b-orders", "x")).await?;
    let access = cluster.access().await?;
    let link = |app: &str, ttl: u32| {
        let request =
            v1::CreatePortalLinkRequest { role: "owner".into(), app: app.into(), ttl_seconds: ttl };
        let mut access = access.clone();
        async move { anyhow::Ok(access.create_portal_link(request).await?.into_inner().url) }
    };
    // The first link comes from the CLI: `hookd access portal-link`.
    let output = std::process::Command::new(hookd_tests::hookd_binary()?)
        .args(["access", "portal-link", "--role", "owner", "--app", "x", "--ttl-secs", "300"])
        .args(["--server", &cluster.control.grpc_url(), "--output", "json"])
        .env("HOOKD_TOKEN", OWNER_TOKEN)
        .output()?;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let url = printed["url"].as_str().unwrap_or_default().to_owned();
    assert!(url.starts_with(&format!("{console}/portal?link=hkdl_")), "{url}");
    assert!(printed["expires_at"].is_string(), "{printed}");

    let mut b = Browser::start().await?;
    b.goto(&url).await?;
    b.wait_for_text("shop-x-orders", DEADLINE).await?;
    assert_eq!(
        b.client.current_url().await?.as_str(),
        format!("{console}/webhooks"),
        "a clean URL"
    );
    let page = b.text().await?;
    assert!(!page.contains("shop-y-orders") && !page.contains("tenant-b-orders"), "{page}");
    assert!(!b.exists("a[href='/credentials']").await? && !b.exists("a[href='/access']").await?);
    b.check_page().await?;
    b.shot("portal").await?;
    // Another label's webhook is not found, even by its URL.
    let (status, _, _) = http(
        "GET",
        &format!("{console}/webhooks/{}", others.id),
        Some(&format!("hookd_session={}", b.cookie("hookd_session").await?)),
        "",
    )
    .await?;
    assert_eq!(status, 404);
    // What the portal creates gets its label.
    b.goto(&format!("{console}/webhooks/new")).await?;
    b.fill("#in-name", "shop-x-refunds").await?;
    b.fill("#in-url", &receiver.url("/refunds")).await?;
    b.fill("#in-event_types_text", "a").await?;
    b.click_text("Create webhook").await?;
    let (path, page) = (b.path().await?, b.text().await?);
    let id = webhook_id(&path).map_err(|e| anyhow::anyhow!("{e}; the page shows:\n{page}"))?;
    let created = webhook(&cluster, OWNER_TOKEN, &id).await?;
    assert_eq!(created.app, "x");
    assert!(webhook(&cluster, OWNER_TOKEN, &mine.id).await.is_ok());

    // An edited link (the app label removed from its claims) is refused; so is a late one.
    let wide = link("", 300).await?;
    let (x_body, x_tag) = url.rsplit_once('.').unwrap_or_default();
    let (wide_body, _) = wide.rsplit_once('.').unwrap_or_default();
    assert_ne!(x_body, wide_body);
    let forged = format!("{wide_body}.{x_tag}");
    let mut fresh = Browser::start().await?;
    // A link opens one session: a second browser is refused; the first keeps its session.
    fresh.goto(&url).await?;
    assert!(fresh.text().await?.contains("already used"), "{}", fresh.text().await?);
    b.goto(&url).await?;
    b.wait_for_text("shop-x-orders", DEADLINE).await?;
    fresh.goto(&forged).await?;
    assert!(fresh.text().await?.contains("not valid"), "{}", fresh.text().await?);
    let short = link("x", 1).await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    fresh.goto(&short).await?;
    assert!(fresh.text().await?.contains("expired"), "{}", fresh.text().await?);
    let (status, _, _) = http("GET", &short, None, "").await?;
    assert_eq!(status, 403);
    fresh.shot("portal-expired").await?;
    assert!(!x_body.is_empty());

    // Embedding: a listed origin shows the portal in its frame; another origin's frame is blocked.
    *link_cell.lock().map_err(|_| anyhow::anyhow!("lock"))? = link("x", 300).await?;
    let mut framed = Browser::start().await?;
    framed.goto(&listed.url("/embed")).await?;
    framed.client.enter_frame(0).await?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let source = framed.source().await.unwrap_or_default();
        if source.contains("shop-x-orders") {
            assert!(!source.contains("shop-y-orders"));
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the listed origin's frame never showed the portal:\n{source}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    framed.client.enter_parent_frame().await?;
    *link_cell.lock().map_err(|_| anyhow::anyhow!("lock"))? = link("x", 300).await?;
    let mut blocked = Browser::start().await?;
    blocked.goto(&unlisted.url("/embed").replace("127.0.0.1", "localhost")).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocked.client.enter_frame(0).await?;
    let source = blocked.source().await.unwrap_or_default();
    assert!(!source.contains("shop-x-orders"), "an unlisted origin framed the portal");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_their_csrf_token_names_are_text_the_csp_is_strict_and_no_token_is_logged()
-> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let receiver = Receiver::ok()?;
    let cluster = Cluster::start(0, "")?;
    let console = console(&cluster)?;
    let mut b = Browser::start().await?;
    // By keyboard alone: the token field has the focus, Enter signs in; Tab then reaches the
    // "Skip to content" link first.
    b.goto(&format!("{console}/sign-in")).await?;
    let focused = b.client.active_element().await?;
    assert_eq!(
        focused.attr("id").await?.as_deref(),
        Some("in-token"),
        "the token field has the focus"
    );
    focused.send_keys(&format!("{OWNER_TOKEN}\u{E007}")).await?;
    b.wait_for_text("Webhooks", DEADLINE).await?;
    assert_eq!(b.path().await?, "/webhooks");
    b.client.find(fantoccini::Locator::Css("body")).await?.send_keys("\u{E004}").await?;
    let first = b.client.active_element().await?;
    assert_eq!(first.text().await?, "Skip to content");
    b.click_text("New webhook").await?;
    b.fill("#in-name", "<script>alert(1)</script>").await?;
    b.fill("#in-url", &receiver.url("/x")).await?;
    b.fill("#in-event_types_text", "a").await?;
    b.click_text("Create webhook").await?;
    let id = webhook_id(&b.path().await?)?;
    b.goto(&format!("{console}/webhooks")).await?;
    let name = b.client.find(fantoccini::Locator::Css("a.name")).await?.text().await?;
    assert_eq!(name, "<script>alert(1)</script>");
    assert!(b.client.get_alert_text().await.is_err(), "no script ran");
    assert!(b.source().await?.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // A state-changing request without the form's CSRF token is refused.
    let cookie = format!("hookd_session={}", b.cookie("hookd_session").await?);
    let (status, _, body) =
        http("POST", &format!("{console}/webhooks/{id}/delete"), Some(&cookie), "").await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, _, _) =
        http("POST", &format!("{console}/webhooks/{id}/delete"), Some(&cookie), "csrf=guessed")
            .await?;
    assert_eq!(status, 403);
    assert!(webhook(&cluster, OWNER_TOKEN, &id).await.is_ok(), "still there");
    // Signing in needs the sign-in form's own token too (no login CSRF).
    let (status, _, _) =
        http("POST", &format!("{console}/sign-in"), None, &format!("token={OWNER_TOKEN}")).await?;
    assert_eq!(status, 403);

    // The headers of every answer.
    let (_, headers, _) = http("GET", &format!("{console}/sign-in"), None, "").await?;
    let csp =
        headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers.get("x-frame-options").map(|v| v.as_bytes()), Some(&b"DENY"[..]));
    let set_cookie = headers.get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let (_, headers, _) = http("GET", &format!("{console}/webhooks"), Some(&cookie), "").await?;
    assert_eq!(headers.get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]));

    // Signing out ends the session; the old cookie no longer opens pages after the token goes.
    b.click_text("Sign out").await?;
    assert_eq!(b.path().await?, "/sign-in");

    // No token in a URL or a log line.
    for url in &b.visited {
        assert!(!url.contains(OWNER_TOKEN) && !url.contains("hkd_"), "{url}");
    }
    let log = std::fs::read_to_string(cluster.control.log_path())?;
    for secret in [OWNER_TOKEN, "hkdg_", "hkdl_"] {
        assert!(!log.contains(secret), "the control plane logged {secret}");
    }
    assert!(
        log.contains("console request") || log.contains("console session started"),
        "the console logs requests"
    );
    Ok(())
}

/// Not a browser test: how long the webhooks page takes with 10 000 webhooks (printed; the
/// figure is in the README), and that it is paged by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhooks_page_stays_paged_and_fast_with_ten_thousand_webhooks() -> anyhow::Result<()> {
    const WEBHOOKS: usize = 10_000;
    let cluster = Cluster::start(0, "")?;
    let console = console(&cluster)?;
    let channel = cluster.channel().await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let mut client = v1::webhook_service_client::WebhookServiceClient::new(authed(
            channel.clone(),
            Some(OWNER_TOKEN),
        ));
        tasks.spawn(async move {
            for i in (worker..WEBHOOKS).step_by(8) {
                client
                    .create_webhook(v1::CreateWebhookRequest {
                        name: format!("hook-{i:05}"),
                        url: format!("https://h{i}.example.com/hook"),
                        event_types: vec![if i % 2 == 0 { "even" } else { "odd" }.into()],
                        app: format!("app-{}", i % 100),
                        active: i % 3 == 0,
                        ..Default::default()
                    })
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!("created {WEBHOOKS} webhooks in {:?}", started.elapsed());

    // Signed in over plain HTTP: the sign-in form's token and cookie first.
    let (_, headers, page) = http("GET", &format!("{console}/sign-in"), None, "").await?;
    let sign_in_cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default();
    let (status, headers, _) = http(
        "POST",
        &format!("{console}/sign-in"),
        Some(&sign_in_cookie),
        &format!("csrf={csrf}&token={OWNER_TOKEN}"),
    )
    .await?;
    assert_eq!(status, 303);
    let session = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hookd_session="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();

    for (what, path) in [
        ("first page", "/webhooks"),
        ("name filter", "/webhooks?name=hook-09"),
        ("app + status + event type", "/webhooks?app=app-7&status=active&event_type=odd"),
    ] {
        let mut times = Vec::new();
        let mut body = String::new();
        for _ in 0..5 {
            let started = Instant::now();
            let (status, _, page) =
                http("GET", &format!("{console}{path}"), Some(&session), "").await?;
            times.push(started.elapsed());
            assert_eq!(status, 200);
            body = page;
        }
        times.sort();
        let rows = body.matches("<tr>").count().saturating_sub(1);
        println!("{what}: {rows} rows, median {:?}, max {:?} ({path})", times[2], times[4]);
        assert!(rows <= 50, "{what}: one page of at most 50 rows, got {rows}");
        assert!(rows > 0, "{what}: no rows");
        assert!(times[2] < Duration::from_secs(2), "{what} took {:?}", times[2]);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_credential_and_access_pages_create_and_show_what_the_api_holds()
-> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let cluster = Cluster::start(0, "")?;
    let console = console(&cluster)?;
    let mut b = Browser::start().await?;
    sign_in(&mut b, &console, OWNER_TOKEN).await?;

    // C6: a schema the API refuses is shown at the schema field; a good one is stored.
    b.click_text("Event types").await?;
    b.click_text("New event type").await?;
    b.fill("#in-name", "contact-created").await?;
    b.fill("#in-description", "A contact was added").await?;
    b.fill("#in-schema", r#"{"type": "not-a-type"}"#).await?;
    b.click_text("Create event type").await?;
    let error =
        b.client.find(fantoccini::Locator::Css("#field-schema p.error")).await?.text().await?;
    assert!(!error.is_empty());
    b.fill("#in-schema", r#"{"type": "object", "required": ["contactId"], "properties": {"contactId": {"type": "string"}}}"#).await?;
    b.fill("#in-example", r#"{"contactId": "c-1"}"#).await?;
    b.click_text("Create event type").await?;
    assert_eq!(b.path().await?, "/event-types/contact-created");
    let page = b.text().await?;
    assert!(page.contains("\"required\"") && page.contains("c-1"), "{page}");
    b.check_page().await?;
    b.shot("event-type").await?;
    b.click_text("Edit").await?;
    b.fill("#in-example", r#"{"email": "no id"}"#).await?;
    b.click_text("Save changes").await?;
    assert!(
        b.exists("#field-example p.error").await?,
        "an example that breaks the schema is refused at its field"
    );
    b.goto(&format!("{console}/event-types")).await?;
    assert!(b.text().await?.contains("A contact was added"));
    b.check_page().await?;
    b.shot("event-types").await?;
    // The webhook form offers the catalog with descriptions.
    b.goto(&format!("{console}/webhooks/new")).await?;
    assert!(b.text().await?.contains("contact-created — A contact was added"));

    // C7: the client secret is write-only.
    b.goto(&format!("{console}/credentials/new")).await?;
    b.fill("#in-name", "crm-oauth").await?;
    b.fill("#in-token_url", "https://auth.example.com/oauth/token").await?;
    b.fill("#in-client_id", "hookd").await?;
    b.fill("#in-client_secret", "client-s3cret-value").await?;
    b.fill("#in-scope", "contacts:write").await?;
    b.fill("#in-extra_params", "audience=crm").await?;
    b.click_text("Create credential").await?;
    let page = b.text().await?;
    assert!(
        page.contains("crm-oauth")
            && page.contains("audience=crm")
            && page.contains("no token yet"),
        "{page}"
    );
    assert!(!b.source().await?.contains("client-s3cret-value"), "the secret is never shown");
    b.check_page().await?;
    b.shot("credential").await?;
    b.click_text("Edit").await?;
    assert!(!b.source().await?.contains("client-s3cret-value"));
    b.fill("#in-scope", "contacts:read").await?;
    b.click_text("Save changes").await?;
    assert!(b.text().await?.contains("contacts:read"));

    // C8: a new token is shown once; roles; a portal link.
    b.click_text("Access").await?;
    b.fill("#in-name", "ci deploy").await?;
    b.click_text("Create token").await?;
    let token = b
        .client
        .find(fantoccini::Locator::Css("#new-token"))
        .await?
        .prop("value")
        .await?
        .unwrap_or_default();
    assert!(token.starts_with("hkd_"), "{token}");
    let mut who =
        v1::access_service_client::AccessServiceClient::new(cluster.authed(Some(&token)).await?);
    assert_eq!(who.who_am_i(v1::WhoAmIRequest {}).await?.into_inner().role, "viewer");
    b.shot("access").await?;
    b.goto(&format!("{console}/access")).await?;
    assert!(!b.source().await?.contains(&token), "shown once");
    assert!(b.text().await?.contains("ci deploy"));
    b.click_text("Create link").await?;
    let link = b
        .client
        .find(fantoccini::Locator::Css("#portal-link"))
        .await?
        .prop("value")
        .await?
        .unwrap_or_default();
    assert!(link.starts_with(&format!("{console}/portal?link=hkdl_")), "{link}");
    b.check_page().await?;
    Ok(())
}
