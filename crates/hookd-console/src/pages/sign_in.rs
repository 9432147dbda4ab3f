//! C1 and C9: signing in with an API token, signing out, and opening a portal link.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{Html, IntoResponse, Response},
};
use hookd_core::portal::{PortalClaims, PortalError};
use maud::{Markup, html};

use crate::{
    Shared,
    api::{Api, Failure},
    form::Form,
    redirect,
    session::{Cookies, Session},
    signed_out, view,
};

fn with_cookies(mut response: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn sign_in_page(token: &str, message: Option<&str>, error: Option<&str>) -> Markup {
    view::bare_page(
        "Sign in",
        html! {
            h1 { "Sign in to the console" }
            @if let Some(message) = message { div.notice role="status" { (message) } }
            form method="post" action="/sign-in" {
                input type="hidden" name="csrf" value=(token);
                div.field #field-token {
                    label for="in-token" { "API token" }
                    input #in-token type="password" name="token" required autocomplete="current-password"
                        spellcheck="false" autofocus
                        aria-invalid=[error.map(|_| "true")]
                        aria-describedby={ "hint-token" @if error.is_some() { " err-token" } };
                    p.hint #hint-token {
                        "An API token of your tenant (" code { "hkd_…" } "). It is kept in a sealed, "
                        "HttpOnly session cookie and never shown again."
                    }
                    @if let Some(error) = error { p.error #err-token role="alert" { (error) } }
                }
                button.primary type="submit" { "Sign in" }
            }
        },
    )
}

pub async fn show(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let secure = shared.is_secure(&headers);
    let jar = shared.jar(secure);
    let cookies = Cookies::parse(&headers);
    let now = chrono::Utc::now().timestamp();
    if jar.session(&cookies, now).is_some() {
        return redirect("/webhooks");
    }
    let (token, set) = jar.sign_in_token(&cookies);
    let flash = jar.flash(&cookies);
    let mut set_cookies: Vec<String> = set.into_iter().collect();
    if flash.is_some() {
        set_cookies.push(jar.clear_flash());
    }
    with_cookies(
        Html(sign_in_page(&token, flash.as_deref(), None).into_string()).into_response(),
        set_cookies,
    )
}

pub async fn submit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secure = shared.is_secure(&headers);
    let jar = shared.jar(secure);
    let cookies = Cookies::parse(&headers);
    let form = Form::parse(&body);
    let (csrf, _) = jar.sign_in_token(&cookies);
    if !jar.sign_in_token_matches(&cookies, form.raw("csrf")) {
        let failure = Failure::new(
            tonic::Code::PermissionDenied,
            "the sign-in form did not come from this console (its CSRF token is missing or wrong): reload the page",
        );
        return (StatusCode::FORBIDDEN, Html(view::bare_failure(&failure))).into_response();
    }
    let token = form.text("token");
    let refuse = |error: &str| {
        (StatusCode::UNAUTHORIZED, Html(sign_in_page(&csrf, None, Some(error)).into_string()))
            .into_response()
    };
    if token.is_empty() {
        return refuse("Enter an API token.");
    }
    // Grants are for portal links only: signing in takes API tokens.
    if token.starts_with(hookd_core::portal::GRANT_PREFIX) {
        return refuse("This is not an API token.");
    }
    let api = Api::new(shared.routes.clone(), token.clone());
    let who = match api.access().who_am_i(api.req(hookd_proto::v1::WhoAmIRequest {})).await {
        Ok(who) => who.into_inner(),
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            tracing::info!("console sign-in refused: unknown token");
            return refuse("This token is unknown or was revoked.");
        }
        Err(status) => {
            let failure = Failure::from(status);
            return (failure.http_status(), Html(view::bare_failure(&failure))).into_response();
        }
    };
    let now = chrono::Utc::now().timestamp();
    let expires = now + i64::try_from(shared.settings.session.as_secs()).unwrap_or(i64::MAX / 2);
    let session = Session::new(token, expires);
    tracing::info!(tenant = %who.tenant, token_id = %who.token_id, "console session started");
    with_cookies(
        redirect("/webhooks"),
        [
            jar.set_session(&session, now),
            jar.set_flash(&format!("Signed in to tenant {} as {}.", who.tenant, who.role)),
        ],
    )
}

pub async fn sign_out(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, _) = crate::try_page!(shared.post_ctx(&headers, &body).await);
    tracing::info!(tenant = %ctx.me.tenant, "console session ended");
    signed_out(&shared, ctx.secure, "Signed out.")
}

/// `GET /portal?link=…`: a portal link is checked (signature, expiry) and exchanged for a
/// session holding a portal grant; the answer then moves the browser on to a clean URL.
/// A meta refresh rather than a redirect: it is a navigation of this site's own page, so
/// the `SameSite=Strict` cookie goes along even when the link was followed from another site.
pub async fn portal(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    let secure = shared.is_secure(&headers);
    let jar = shared.jar(secure);
    let link = Form::from_query(&uri).text("link");
    let now = chrono::Utc::now().timestamp();
    let refused = |title: &str, why: &str| {
        let page = view::bare_page(
            title,
            html! {
                h1 { (title) }
                div.notice.error role="alert" { (why) }
                p { "Ask the platform that sent you here for a new link." }
            },
        );
        (StatusCode::FORBIDDEN, Html(page.into_string())).into_response()
    };
    let claims = match shared.portal.verify_link(&link, now) {
        Ok(claims) => claims,
        Err(PortalError::Expired) => {
            tracing::info!("portal link refused: expired");
            return refused("This link has expired", "The portal link has expired.");
        }
        Err(error) => {
            tracing::info!(%error, "portal link refused");
            return refused(
                "This link is not valid",
                "The portal link is not valid: it was changed or is incomplete.",
            );
        }
    };
    match shared.opened.first_opening(claims.nonce.clone()).await {
        Ok(true) => {}
        Ok(false) => {
            // Opened before: a reload of this page keeps the session it opened.
            if jar.session(&Cookies::parse(&headers), now).is_some() {
                return redirect("/webhooks");
            }
            tracing::info!(nonce = %claims.nonce, "portal link refused: already opened");
            return refused(
                "This link was already used",
                "A portal link opens one session only, and this one has been opened already.",
            );
        }
        Err(error) => {
            tracing::warn!(%error, "cannot tell whether a portal link was opened");
            let failure = Failure::new(
                tonic::Code::Unavailable,
                "the console cannot check this link right now; try again in a moment",
            );
            return (StatusCode::SERVICE_UNAVAILABLE, Html(view::bare_failure(&failure)))
                .into_response();
        }
    }
    let session_secs = i64::try_from(shared.settings.session.as_secs()).unwrap_or(i64::MAX / 2);
    let grant = shared
        .portal
        .sign_grant(&PortalClaims { expires_at: now + session_secs, ..claims.clone() });
    let session = Session::new(grant, now + session_secs);
    tracing::info!(tenant = %claims.tenant, role = %claims.role, app = %claims.app, nonce = %claims.nonce, "portal link opened");
    let page = view::bare_page_to(
        "Opening the console",
        html! {
            h1 { "Opening the console…" }
            p { a href="/webhooks" { "Continue to your webhooks" } }
        },
        Some("/webhooks"),
    );
    with_cookies(Html(page.into_string()).into_response(), [jar.set_session(&session, now)])
}
