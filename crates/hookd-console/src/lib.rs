//! The hookd web console and customer portal (features C1–C9): server-rendered HTML pages
//! over the control plane's own gRPC services, served by `hookd control` on its own listener.
//!
//! Architecture invariants:
//! - **No second source of truth.** Every read and change goes through the gRPC services (in
//!   process, through the same authenticating interceptors, see [`api`]) with the session's
//!   bearer token: tenants, permissions, validation and messages are the API's. This crate
//!   depends on `hookd-proto` and `hookd-core`, never on the control plane or storage.
//! - **Stateless sessions.** A session is a sealed cookie ([`session`]); any replica with the
//!   same `encryption_key` serves it.
//! - **Nothing secret in a URL or a log.** Tokens travel in POST bodies and sealed cookies;
//!   requests are logged by path only (a portal link's query is never logged).
//! - **Strict CSP.** No inline script or style: one embedded script and one stylesheet, so
//!   `script-src 'self'` holds; frames only from the origins the operator lists.

mod api;
mod assets;
mod form;
mod pages;
mod session;
mod view;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hookd_core::portal::PortalKeys;
use tokio::net::TcpListener;

use crate::{
    api::{Api, Failure},
    form::Form,
    session::{CookieJar, Cookies, Sealer, Session},
};

/// The console's settings (the control plane's `console_*` settings).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The console's address as browsers reach it (`https://hooks.example.com`): portal links
    /// start with it, and an `https` one makes cookies `Secure`. Empty: `http://<listen>`.
    pub public_url: String,
    /// Origins that may show the console in a frame (CSP `frame-ancestors`); none by default.
    pub frame_ancestors: Vec<String>,
    /// Believe `X-Forwarded-Proto: https` from the proxy in front (then cookies are `Secure`).
    pub trust_forwarded_proto: bool,
    /// How long a session lasts after signing in or opening a portal link.
    pub session: Duration,
}

impl Settings {
    /// The checks that need no connection; the error names the setting and what is allowed.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.public_url.is_empty() {
            let url = url::Url::parse(&self.public_url).map_err(|e| {
                ("console_public_url", format!("{:?} is not a URL: {e}", self.public_url))
            })?;
            if !matches!(url.scheme(), "http" | "https")
                || url.host_str().is_none()
                || url.query().is_some()
                || url.fragment().is_some()
            {
                return Err((
                    "console_public_url",
                    format!(
                        "{:?} must be an http(s) URL with a host and no query or fragment, such as https://hooks.example.com",
                        self.public_url
                    ),
                ));
            }
        }
        for origin in &self.frame_ancestors {
            if !is_csp_origin(origin) {
                return Err((
                    "console_frame_ancestors",
                    format!(
                        "{origin:?} is not an origin: write scheme://host[:port] (https://app.example.com; a leading *. for subdomains), nothing else"
                    ),
                ));
            }
        }
        if self.session.is_zero() {
            return Err(("console_session_secs", "must be at least 1".to_owned()));
        }
        Ok(())
    }

    /// The base of portal links: `public_url`, else the bound address over http.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        if self.public_url.is_empty() {
            format!("http://{bound}")
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}

/// `scheme://host[:port]`, host letters, digits, `-`, `.`, optionally starting with `*.`: what
/// can go into a CSP source list without changing its meaning.
fn is_csp_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Remembers which portal links were opened, so each link opens one session only, on any
/// replica (the control plane keeps them in a NATS key-value bucket).
pub trait OpenedLinks: Send + Sync + 'static {
    /// `Ok(true)` the first time `nonce` is seen, `Ok(false)` afterwards; an error when it
    /// cannot be told (then the link is not opened).
    fn first_opening(
        &self,
        nonce: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, String>> + Send>>;
}

/// The console: its settings, keys and the services it calls.
pub struct Console {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("settings", &self.shared.settings).finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub settings: Settings,
    pub sealer: Sealer,
    pub portal: Arc<PortalKeys>,
    pub opened: Arc<dyn OpenedLinks>,
    /// The authenticated gRPC services of this control plane.
    pub routes: tonic::service::Routes,
    /// Content security policy, built once from the settings.
    pub csp: HeaderValue,
}

impl Console {
    /// `master_key` is the control plane's `encryption_key` (decoded); the session and portal
    /// keys are derived from it, so every replica agrees on them.
    pub fn new(
        settings: Settings,
        master_key: &[u8],
        portal: Arc<PortalKeys>,
        opened: Arc<dyn OpenedLinks>,
        routes: tonic::service::Routes,
    ) -> Self {
        let frame_ancestors = if settings.frame_ancestors.is_empty() {
            "'none'".to_owned()
        } else {
            settings.frame_ancestors.join(" ")
        };
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}"
        );
        let shared = Shared {
            sealer: Sealer::new(hookd_core::portal::derive_key(
                master_key,
                "hookd console session v1",
            )),
            portal,
            opened,
            routes,
            // Validated origins and fixed text: always a valid header value.
            csp: HeaderValue::from_str(&csp)
                .unwrap_or(HeaderValue::from_static("default-src 'none'")),
            settings,
        };
        Self { shared: Arc::new(shared) }
    }

    pub fn router(&self) -> Router {
        router(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown` completes; requests in progress finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = ?listener.local_addr().ok(), "console serving");
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }
}

fn router(shared: Arc<Shared>) -> Router {
    use pages::{access, credentials, deliveries, event_types, sign_in, webhook, webhooks};
    Router::new()
        .route("/", get(pages::home))
        .route("/sign-in", get(sign_in::show).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/portal", get(sign_in::portal))
        .route("/assets/{file}", get(assets::serve))
        .route("/webhooks", get(webhooks::list))
        .route("/webhooks/new", get(webhook::new_form).post(webhook::create))
        .route("/webhooks/{id}", get(webhook::show))
        .route("/webhooks/{id}/edit", get(webhook::edit_form).post(webhook::update))
        .route("/webhooks/{id}/status", post(webhook::set_status))
        .route("/webhooks/{id}/activate", post(webhook::activate))
        .route("/webhooks/{id}/secret", post(webhook::reveal_secret))
        .route("/webhooks/{id}/rotate", post(webhook::rotate_secret))
        .route("/webhooks/{id}/test", post(webhook::test_send))
        .route("/webhooks/{id}/duplicate", post(webhook::duplicate))
        .route("/webhooks/{id}/delete", get(webhook::confirm_delete).post(webhook::delete))
        .route("/webhooks/{id}/deliveries", get(deliveries::list))
        .route("/webhooks/{id}/recover", post(deliveries::recover))
        .route("/deliveries/{id}", get(deliveries::show))
        .route("/deliveries/{id}/resend", post(deliveries::resend))
        .route("/event-types", get(event_types::list))
        .route("/event-types/new", get(event_types::new_form).post(event_types::create))
        .route("/event-types/{name}", get(event_types::show))
        .route("/event-types/{name}/edit", get(event_types::edit_form).post(event_types::update))
        .route(
            "/event-types/{name}/delete",
            get(event_types::confirm_delete).post(event_types::delete),
        )
        .route("/credentials", get(credentials::list))
        .route("/credentials/new", get(credentials::new_form).post(credentials::create))
        .route("/credentials/{id}", get(credentials::show))
        .route("/credentials/{id}/edit", get(credentials::edit_form).post(credentials::update))
        .route(
            "/credentials/{id}/delete",
            get(credentials::confirm_delete).post(credentials::delete),
        )
        .route("/access", get(access::show))
        .route("/access/tokens", post(access::create_token))
        .route("/access/tokens/{id}/revoke", post(access::revoke_token))
        .route("/access/roles", post(access::create_role))
        .route("/access/roles/{name}", post(access::update_role))
        .route("/access/roles/{name}/delete", post(access::delete_role))
        .route("/access/portal-links", post(access::create_portal_link))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), protect))
        .with_state(shared)
}

/// Security headers on every answer, and one log line per request: method, path (never the
/// query, which may hold a portal link) and status.
async fn protect(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, shared.csp.clone());
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    if shared.settings.frame_ancestors.is_empty() {
        // For browsers that predate CSP frame-ancestors.
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !path.starts_with("/assets/") {
        // Pages may show secrets (a revealed signing secret, a new token): never cached.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    tracing::debug!(%method, %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, "console request");
    response
}

/// One signed-in request: the caller as the API knows them, and their services.
pub(crate) struct Ctx {
    pub api: Api,
    pub me: Me,
    pub session: Session,
    pub flash: Option<String>,
    pub secure: bool,
    pub shared: Arc<Shared>,
}

/// The caller, from `WhoAmI`.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub tenant: String,
    pub role: String,
    pub permissions: Vec<String>,
    /// A portal session limited to this app label.
    pub app: Option<String>,
    pub portal: bool,
}

impl Ctx {
    pub fn can_manage(&self) -> bool {
        self.me.permissions.iter().any(|p| p == "webhooks.manage")
    }

    pub fn is_admin(&self) -> bool {
        self.me.permissions.iter().any(|p| p == "tenant.admin")
    }

    pub fn jar(&self) -> CookieJar<'_> {
        CookieJar { sealer: &self.shared.sealer, secure: self.secure }
    }

    /// A redirect to `to` that shows `message` on the next page.
    pub fn redirect_with(&self, to: &str, message: &str) -> Response {
        let mut response = redirect(to);
        if let Ok(cookie) = HeaderValue::from_str(&self.jar().set_flash(message)) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    /// A full page; clears the flash message it showed.
    pub fn page(&self, status: StatusCode, markup: maud::Markup) -> Response {
        let mut response = (status, axum::response::Html(markup.into_string())).into_response();
        if self.flash.is_some()
            && let Ok(cookie) = HeaderValue::from_str(&self.jar().clear_flash())
        {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    /// The page for a failed call that is not a form's field error.
    pub fn failure(&self, failure: &Failure) -> Response {
        if failure.code == tonic::Code::Unauthenticated {
            return signed_out(&self.shared, self.secure, "Your session has ended: sign in again.");
        }
        self.page(failure.http_status(), view::failure_page(self, failure))
    }
}

impl Shared {
    /// Whether this request reached the console over https (for `Secure` cookies).
    pub fn is_secure(&self, headers: &HeaderMap) -> bool {
        self.settings.public_url.starts_with("https://")
            || (self.settings.trust_forwarded_proto
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("https")))
    }

    pub fn jar(&self, secure: bool) -> CookieJar<'_> {
        CookieJar { sealer: &self.sealer, secure }
    }

    /// The signed-in caller, or the answer that sends the browser to sign in.
    pub async fn ctx(self: &Arc<Self>, headers: &HeaderMap) -> Result<Ctx, Response> {
        let secure = self.is_secure(headers);
        let cookies = Cookies::parse(headers);
        let jar = self.jar(secure);
        let now = chrono::Utc::now().timestamp();
        let Some(session) = jar.session(&cookies, now) else {
            return Err(redirect("/sign-in"));
        };
        let flash = jar.flash(&cookies);
        let api = Api::new(self.routes.clone(), session.bearer.clone());
        let who = match api.access().who_am_i(api.req(hookd_proto::v1::WhoAmIRequest {})).await {
            Ok(who) => who.into_inner(),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Err(signed_out(self, secure, "Your session has ended: sign in again."));
            }
            Err(status) => {
                let failure = Failure::from(status);
                return Err((failure.http_status(), view::bare_failure(&failure)).into_response());
            }
        };
        let me = Me {
            portal: session.bearer.starts_with(hookd_core::portal::GRANT_PREFIX),
            tenant: who.tenant,
            role: who.role,
            permissions: who.permissions,
            app: (!who.app.is_empty()).then_some(who.app),
        };
        Ok(Ctx { api, me, session, flash, secure, shared: self.clone() })
    }

    /// [`Shared::ctx`] for a form post: the body parsed and its CSRF token checked. A post
    /// without the session's token is refused (403) before anything is called.
    pub async fn post_ctx(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<(Ctx, Form), Response> {
        let ctx = self.ctx(headers).await?;
        let form = Form::parse(body);
        if !ctx.session.csrf_matches(form.raw("csrf")) {
            tracing::info!(tenant = %ctx.me.tenant, "console form refused: missing or wrong CSRF token");
            let failure = Failure::new(
                tonic::Code::PermissionDenied,
                "this form did not come from this console session (its CSRF token is missing or \
                 wrong): reload the page and try again",
            );
            return Err(ctx.page(StatusCode::FORBIDDEN, view::failure_page(&ctx, &failure)));
        }
        Ok((ctx, form))
    }
}

/// A `303 See Other` to `to` (after a form post, the browser then GETs it).
pub(crate) fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Clears the session and sends the browser to sign in, with `message` shown there.
pub(crate) fn signed_out(shared: &Shared, secure: bool, message: &str) -> Response {
    let jar = shared.jar(secure);
    let mut response = redirect("/sign-in");
    for cookie in [jar.clear_session(), jar.set_flash(message)] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            public_url: String::new(),
            frame_ancestors: Vec::new(),
            trust_forwarded_proto: false,
            session: Duration::from_secs(60),
        }
    }

    #[test]
    fn settings_are_checked_naming_the_setting() {
        settings().validate().expect("defaults");
        let ok = Settings {
            public_url: "https://hooks.example.com/".into(),
            frame_ancestors: vec![
                "https://app.example.com".into(),
                "https://*.example.com:8443".into(),
            ],
            ..settings()
        };
        ok.validate().expect("valid");
        assert_eq!(ok.base_url(SocketAddr::from(([127, 0, 0, 1], 1))), "https://hooks.example.com");
        for bad in ["https://a.example.com; script-src *", "app.example.com", "https://a/b", "*"] {
            let s = Settings { frame_ancestors: vec![bad.into()], ..settings() };
            assert_eq!(s.validate().expect_err(bad).0, "console_frame_ancestors");
        }
        for bad in ["ftp://x", "https://x/?a=1", "not a url"] {
            let s = Settings { public_url: bad.into(), ..settings() };
            assert_eq!(s.validate().expect_err(bad).0, "console_public_url");
        }
        assert_eq!(
            settings().base_url(SocketAddr::from(([127, 0, 0, 1], 7080))),
            "http://127.0.0.1:7080"
        );
    }
}
