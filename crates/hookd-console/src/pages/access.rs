//! C8 and C9: roles and API tokens of the tenant (a new token is shown once), and portal
//! links, for callers with `tenant.admin`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use hookd_proto::v1;
use maud::{Markup, html};

use crate::{
    Ctx, Shared,
    api::Failure,
    call, try_page,
    view::{self, Input, Section},
};

const PERMISSIONS: [(&str, &str); 4] = [
    ("webhooks.read", "read webhooks, deliveries, credentials, event types"),
    ("webhooks.manage", "change them"),
    ("events.publish", "publish events"),
    ("tenant.admin", "manage roles, tokens and portal links"),
];

/// What a form post produced, shown at the top of the page.
#[derive(Default)]
struct Shown {
    new_token: Option<(String, String)>,
    portal_link: Option<(String, Option<prost_types::Timestamp>)>,
    failure: Option<Failure>,
    /// Which form the failure belongs to.
    form: &'static str,
}

pub async fn show(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    render(&ctx, Shown::default()).await
}

async fn render(ctx: &Ctx, shown: Shown) -> Response {
    let roles = call!(ctx, ctx.api.access().list_roles(ctx.api.req(v1::ListRolesRequest {}))).roles;
    let tokens =
        call!(ctx, ctx.api.access().list_tokens(ctx.api.req(v1::ListTokensRequest {}))).tokens;
    let failure_of = |form: &str| shown.failure.as_ref().filter(|_| shown.form == form);
    let role_options: Vec<(&str, &str)> =
        roles.iter().map(|r| (r.name.as_str(), r.name.as_str())).collect();
    let status = shown.failure.as_ref().map_or(StatusCode::OK, Failure::http_status);
    let body = html! {
        h1 { "Access" }
        p.muted { "Roles grant permissions; API tokens carry a role. The tenant comes from the token." }
        @if let Some((name, secret)) = &shown.new_token {
            div.notice.ok role="status" {
                p { "Token " strong { (name) } " created. Copy it now: it is shown only once." }
                (view::secret_box("New API token", secret, "new-token"))
            }
        }
        @if let Some((url, expires)) = &shown.portal_link {
            div.notice.ok role="status" {
                p { "Portal link created; it works until " (view::time(expires.as_ref())) "." }
                (view::secret_box("Portal link", url, "portal-link"))
            }
        }
        section.card aria-labelledby="tokens-h" {
            h2 #tokens-h { "API tokens" }
            table.list {
                caption.visually-hidden { "API tokens" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Ends in" } th scope="col" { "Created" } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td data-label="Name" { (t.name) div.small.muted { (t.id) } }
                            td data-label="Role" { span.badge { (t.role) } }
                            td data-label="Ends in" { code { "…" (t.last_four) } }
                            td data-label="Created" { (view::time(t.created_at.as_ref())) }
                            td data-label="Actions" {
                                form.inline method="post" action={ "/access/tokens/" (t.id) "/revoke" } {
                                    (view::csrf(ctx))
                                    button.danger-outline.small type="submit" data-confirm={ "Revoke token " (t.name) "? It stops working at once." }
                                        aria-label={ "Revoke token " (t.name) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "New token" }
            (view::form_error(failure_of("token")))
            form.inlineform method="post" action="/access/tokens" {
                (view::csrf(ctx))
                (Input::new("name", "Name", "").required().placeholder("ci deploy").render(failure_of("token")))
                (view::select_in("role", "", "Role", &role_options, "viewer", ("role", failure_of("token"))))
                button.primary type="submit" { "Create token" }
            }
        }
        section.card aria-labelledby="roles-h" {
            h2 #roles-h { "Roles" }
            @for r in &roles { (role_row(ctx, r)) }
            h3 { "New role" }
            (view::form_error(failure_of("role")))
            form method="post" action="/access/roles" {
                (view::csrf(ctx))
                (Input::new("name", "Name", "").id_suffix("-role").required().placeholder("support").hint("Lowercase letters, digits, - and _.").render(failure_of("role")))
                (permission_boxes("new", &[]))
                button.primary type="submit" { "Create role" }
            }
        }
        section.card aria-labelledby="portal-h" {
            h2 #portal-h { "Portal links" }
            p.hint { "A short-lived link that opens this console for one role, optionally limited to the webhooks of one app label: "
                "send each of your customers to a page with only their own webhooks. It gets the role's webhook permissions only." }
            (view::form_error(failure_of("portal")))
            form.inlineform method="post" action="/access/portal-links" {
                (view::csrf(ctx))
                (view::select_in("role", "-portal", "Role", &role_options, "owner", ("role", failure_of("portal"))))
                (Input::new("app", "App label (optional)", "").render(failure_of("portal")))
                (Input::new("ttl_minutes", "Valid for (minutes)", "15").kind("number").field("ttl_seconds").render(failure_of("portal")))
                button.primary type="submit" { "Create link" }
            }
        }
    };
    ctx.page(status, view::page(ctx, Section::Access, "Access", body))
}

fn permission_boxes(prefix: &str, checked: &[String]) -> Markup {
    html! {
        fieldset.plain {
            legend { "Permissions" }
            @for (p, what) in PERMISSIONS {
                div.check {
                    input id={ (prefix) "-" (p) } type="checkbox" name="permission" value=(p) checked[checked.iter().any(|c| c == p)];
                    label for={ (prefix) "-" (p) } { code { (p) } span.muted { " — " (what) } }
                }
            }
        }
    }
}

fn role_row(ctx: &Ctx, r: &v1::Role) -> Markup {
    html! {
        div.role {
            h3 { (r.name) @if r.builtin { " " span.badge.off { "built in" } } }
            @if r.builtin {
                p { @for p in &r.permissions { code { (p) } " " } }
            } @else {
                form method="post" action={ "/access/roles/" (r.name) } {
                    (view::csrf(ctx))
                    (permission_boxes(&r.name, &r.permissions))
                    div.actions { button.secondary.small type="submit" { "Save permissions" } }
                }
                form.inline method="post" action={ "/access/roles/" (r.name) "/delete" } {
                    (view::csrf(ctx))
                    button.danger-outline.small type="submit" data-confirm={ "Delete role " (r.name) "?" } { "Delete role" }
                }
            }
        }
    }
}

fn permissions(form: &crate::form::Form) -> Vec<String> {
    form.all("permission").into_iter().map(str::to_owned).collect()
}

pub async fn create_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let request = v1::CreateTokenRequest { name: form.text("name"), role: form.text("role") };
    match ctx.api.access().create_token(ctx.api.req(request)).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            let name = answer.token.map(|t| t.name).unwrap_or_default();
            render(&ctx, Shown { new_token: Some((name, answer.secret)), ..Shown::default() }).await
        }
        Err(status) => form_failure(&ctx, status.into(), "token").await,
    }
}

async fn form_failure(ctx: &Ctx, failure: Failure, form: &'static str) -> Response {
    if matches!(
        failure.code,
        tonic::Code::InvalidArgument | tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition
    ) {
        render(ctx, Shown { failure: Some(failure), form, ..Shown::default() }).await
    } else {
        ctx.failure(&failure)
    }
}

pub async fn revoke_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, _) = try_page!(shared.post_ctx(&headers, &body).await);
    call!(ctx, ctx.api.access().revoke_token(ctx.api.req(v1::RevokeTokenRequest { id })));
    ctx.redirect_with("/access", "Token revoked.")
}

pub async fn create_role(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let role =
        v1::Role { name: form.text("name"), permissions: permissions(&form), builtin: false };
    match ctx
        .api
        .access()
        .create_role(ctx.api.req(v1::CreateRoleRequest { role: Some(role) }))
        .await
    {
        Ok(_) => ctx.redirect_with("/access", "Role created."),
        Err(status) => form_failure(&ctx, status.into(), "role").await,
    }
}

pub async fn update_role(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let request = v1::UpdateRoleRequest { name, permissions: permissions(&form) };
    match ctx.api.access().update_role(ctx.api.req(request)).await {
        Ok(_) => ctx.redirect_with("/access", "Role updated."),
        Err(status) => form_failure(&ctx, status.into(), "role").await,
    }
}

pub async fn delete_role(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, _) = try_page!(shared.post_ctx(&headers, &body).await);
    match ctx.api.access().delete_role(ctx.api.req(v1::DeleteRoleRequest { name })).await {
        Ok(_) => ctx.redirect_with("/access", "Role deleted."),
        Err(status) => form_failure(&ctx, status.into(), "role").await,
    }
}

pub async fn create_portal_link(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let minutes = form.text("ttl_minutes");
    let ttl_seconds = match minutes.as_str() {
        "" => 0,
        m => match m.parse::<u32>() {
            Ok(m) => m.saturating_mul(60),
            Err(_) => {
                return form_failure(
                    &ctx,
                    Failure::invalid("ttl_seconds", "give the minutes as a whole number"),
                    "portal",
                )
                .await;
            }
        },
    };
    let request =
        v1::CreatePortalLinkRequest { role: form.text("role"), app: form.text("app"), ttl_seconds };
    match ctx.api.access().create_portal_link(ctx.api.req(request)).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            render(
                &ctx,
                Shown { portal_link: Some((answer.url, answer.expires_at)), ..Shown::default() },
            )
            .await
        }
        Err(status) => form_failure(&ctx, status.into(), "portal").await,
    }
}
