//! C7: OAuth2 credentials: list with token state, create, edit (secrets write-only: left
//! empty, they stay as they are), delete.

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
    call,
    form::Form,
    try_page,
    view::{self, Input, Section},
};

fn grant_name(g: i32) -> &'static str {
    match v1::GrantType::try_from(g).unwrap_or_default() {
        v1::GrantType::AuthorizationCode => "authorization_code",
        _ => "client_credentials",
    }
}

fn token_state(c: &v1::Credential) -> Markup {
    html! {
        @if !c.last_error.is_empty() {
            span.badge.bad { "token request failed" } div.small { (c.last_error) }
        } @else if c.token_expires_at.is_some() {
            span.badge.ok { "token cached" } div.small { "until " (view::time(c.token_expires_at.as_ref())) }
        } @else {
            span.muted { "no token yet" }
        }
    }
}

pub async fn list(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    let answer = call!(
        ctx,
        ctx.api.credentials().list_credentials(
            ctx.api.req(v1::ListCredentialsRequest { page_size: 500, page_token: String::new() })
        )
    );
    let body = html! {
        div.titlebar {
            h1 { "OAuth2 credentials" }
            @if ctx.can_manage() { a.button.primary href="/credentials/new" { "New credential" } }
        }
        p.muted { "Token endpoints webhooks can authenticate with: hookd fetches an access token, shares it until shortly before it expires, and refreshes it once on a 401." }
        @if answer.credentials.is_empty() {
            div.empty { p { "No credentials yet." } }
        } @else {
            table.list {
                caption.visually-hidden { "OAuth2 credentials" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Token URL" } th scope="col" { "Grant" } th scope="col" { "Token" } } }
                tbody {
                    @for c in &answer.credentials {
                        tr {
                            td data-label="Name" { a href={ "/credentials/" (c.id) } { (c.name) } }
                            td data-label="Token URL" { code.break { (c.token_url) } }
                            td data-label="Grant" { (grant_name(c.grant_type)) }
                            td data-label="Token" { (token_state(c)) }
                        }
                    }
                }
            }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::Credentials, "OAuth2 credentials", body))
}

pub async fn show(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    let c = call!(
        ctx,
        ctx.api.credentials().get_credential(ctx.api.req(v1::GetCredentialRequest { id }))
    )
    .credential
    .unwrap_or_default();
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/credentials" { "OAuth2 credentials" } " / " span { (c.name) } }
        div.titlebar {
            h1 { (c.name) }
            @if ctx.can_manage() {
                div.actions {
                    a.button.secondary href={ "/credentials/" (c.id) "/edit" } { "Edit" }
                    a.button.danger-outline href={ "/credentials/" (c.id) "/delete" } { "Delete" }
                }
            }
        }
        dl.details.card {
            dt { "Token URL" } dd { code.break { (c.token_url) } }
            dt { "Method" } dd { (if c.method == v1::TokenMethod::Get as i32 { "GET (query string)" } else { "POST (form body)" }) }
            dt { "Client id" } dd { code { (c.client_id) } }
            dt { "Client secret" } dd { code { (c.client_secret) } span.muted { " (write-only)" } }
            dt { "Grant type" } dd { (grant_name(c.grant_type)) }
            @if !c.code.is_empty() { dt { "Authorization code" } dd { code { (c.code) } } }
            dt { "Scope" } dd { @if c.scope.is_empty() { span.muted { "none" } } @else { code { (c.scope) } } }
            dt { "Extra parameters" } dd { @if c.extra_params.is_empty() { span.muted { "none" } } @for (k, v) in &c.extra_params { code { (k) "=" (v) } br; } }
            dt { "Token" } dd { (token_state(&c)) }
            dt { "Id" } dd { code { (c.id) } }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::Credentials, &c.name, body))
}

#[derive(Default)]
struct Draft {
    name: String,
    token_url: String,
    method: String,
    client_id: String,
    client_secret: String,
    grant_type: String,
    code: String,
    scope: String,
    params: String,
    /// Masked secrets of the stored credential, for hints.
    masked_secret: String,
}

impl Draft {
    fn from_form(form: &Form) -> Self {
        Self {
            name: form.text("name"),
            token_url: form.text("token_url"),
            method: form.text("method"),
            client_id: form.text("client_id"),
            client_secret: form.raw("client_secret").to_owned(),
            grant_type: form.text("grant_type"),
            code: form.raw("code").trim().to_owned(),
            scope: form.text("scope"),
            params: form.raw("extra_params").to_owned(),
            masked_secret: String::new(),
        }
    }

    fn from_credential(c: &v1::Credential) -> Self {
        Self {
            name: c.name.clone(),
            token_url: c.token_url.clone(),
            method: if c.method == v1::TokenMethod::Get as i32 { "get" } else { "post" }.into(),
            client_id: c.client_id.clone(),
            client_secret: String::new(),
            grant_type: grant_name(c.grant_type).into(),
            code: String::new(),
            scope: c.scope.clone(),
            params: c
                .extra_params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            masked_secret: c.client_secret.clone(),
        }
    }

    fn credential(&self) -> Result<v1::Credential, Failure> {
        let mut extra_params = std::collections::HashMap::new();
        for line in self.params.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| {
                Failure::invalid("extra_params", format!("{line:?} is not key=value"))
            })?;
            extra_params.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(v1::Credential {
            name: self.name.clone(),
            token_url: self.token_url.clone(),
            method: (if self.method == "get" {
                v1::TokenMethod::Get
            } else {
                v1::TokenMethod::Post
            }) as i32,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            grant_type: (if self.grant_type == "authorization_code" {
                v1::GrantType::AuthorizationCode
            } else {
                v1::GrantType::ClientCredentials
            }) as i32,
            code: self.code.clone(),
            scope: self.scope.clone(),
            extra_params,
            ..v1::Credential::default()
        })
    }
}

fn form_page(ctx: &Ctx, id: Option<&str>, d: &Draft, failure: Option<&Failure>) -> Markup {
    let title = if id.is_some() { "Edit credential" } else { "New OAuth2 credential" };
    let action = id.map_or("/credentials/new".to_owned(), |id| format!("/credentials/{id}/edit"));
    let keep = match (id, d.masked_secret.as_str()) {
        (None, _) => "Write-only: never shown again.".to_owned(),
        (Some(_), "") => "Write-only. Leave empty to keep the current value.".to_owned(),
        (Some(_), masked) => {
            format!("Write-only. Leave empty to keep the current value ({masked}).")
        }
    };
    view::page(
        ctx,
        Section::Credentials,
        title,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href="/credentials" { "OAuth2 credentials" } }
            h1 { (title) }
            (view::form_error(failure))
            form method="post" action=(action) novalidate {
                (view::csrf(ctx))
                (Input::new("name", "Name", &d.name).required().render(failure))
                (Input::new("token_url", "Token URL", &d.token_url).kind("url").required().placeholder("https://auth.example.com/oauth/token").render(failure))
                div.row {
                    (view::select("method", "Token request", &[("post", "POST, form body"), ("get", "GET, query string")], &d.method, "method", failure))
                    (view::select("grant_type", "Grant type", &[("client_credentials", "client_credentials"), ("authorization_code", "authorization_code")], &d.grant_type, "grant_type", failure))
                }
                div.row {
                    (Input::new("client_id", "Client id", &d.client_id).required().render(failure))
                    (Input::new("client_secret", "Client secret", "").kind("password")
                        .hint(&keep).render(failure))
                }
                (Input::new("code", "Authorization code", "").kind("password").hint("authorization_code only: redeemed once. Write-only.").render(failure))
                (Input::new("scope", "Scope", &d.scope).placeholder("contacts:write").hint("Space-separated; empty sends none.").render(failure))
                (view::textarea("extra_params", "Extra parameters", &d.params, 3, Some("One key=value per line, sent with every token request."), "extra_params", failure))
                div.actions {
                    button.primary type="submit" { (if id.is_some() { "Save changes" } else { "Create credential" }) }
                    a href="/credentials" { "Cancel" }
                }
            }
        },
    )
}

fn refuse(ctx: &Ctx) -> Option<Response> {
    (!ctx.can_manage()).then(|| {
        ctx.failure(&Failure::new(
            tonic::Code::PermissionDenied,
            "permission denied: this role cannot change credentials (it lacks webhooks.manage)",
        ))
    })
}

pub async fn new_form(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(r) = refuse(&ctx) {
        return r;
    }
    let d = Draft {
        method: "post".into(),
        grant_type: "client_credentials".into(),
        ..Draft::default()
    };
    ctx.page(StatusCode::OK, form_page(&ctx, None, &d, None))
}

pub async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let d = Draft::from_form(&form);
    let result = match d.credential() {
        Ok(c) => ctx
            .api
            .credentials()
            .create_credential(ctx.api.req(v1::CreateCredentialRequest { credential: Some(c) }))
            .await
            .map(|a| a.into_inner().credential.unwrap_or_default())
            .map_err(Failure::from),
        Err(f) => Err(f),
    };
    match result {
        Ok(c) => ctx.redirect_with(&format!("/credentials/{}", c.id), "Credential created."),
        Err(f) if matches!(f.code, tonic::Code::InvalidArgument | tonic::Code::AlreadyExists) => {
            ctx.page(f.http_status(), form_page(&ctx, None, &d, Some(&f)))
        }
        Err(f) => ctx.failure(&f),
    }
}

pub async fn edit_form(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(r) = refuse(&ctx) {
        return r;
    }
    let c = call!(
        ctx,
        ctx.api
            .credentials()
            .get_credential(ctx.api.req(v1::GetCredentialRequest { id: id.clone() }))
    )
    .credential
    .unwrap_or_default();
    ctx.page(StatusCode::OK, form_page(&ctx, Some(&id), &Draft::from_credential(&c), None))
}

pub async fn update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let d = Draft::from_form(&form);
    let mut paths =
        vec!["name", "token_url", "method", "client_id", "grant_type", "scope", "extra_params"];
    if !d.client_secret.is_empty() {
        paths.push("client_secret");
    }
    if !d.code.is_empty() {
        paths.push("code");
    }
    let result = match d.credential() {
        Ok(mut c) => {
            c.id.clone_from(&id);
            ctx.api
                .credentials()
                .update_credential(ctx.api.req(v1::UpdateCredentialRequest {
                    credential: Some(c),
                    update_mask: Some(prost_types::FieldMask {
                        paths: paths.into_iter().map(str::to_owned).collect(),
                    }),
                }))
                .await
                .map(|_| ())
                .map_err(Failure::from)
        }
        Err(f) => Err(f),
    };
    match result {
        Ok(()) => ctx.redirect_with(
            &format!("/credentials/{id}"),
            "Changes saved; the cached token was dropped.",
        ),
        Err(f) if matches!(f.code, tonic::Code::InvalidArgument | tonic::Code::AlreadyExists) => {
            ctx.page(f.http_status(), form_page(&ctx, Some(&id), &d, Some(&f)))
        }
        Err(f) => ctx.failure(&f),
    }
}

pub async fn confirm_delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(r) = refuse(&ctx) {
        return r;
    }
    let body = html! {
        h1 { "Delete credential?" }
        p { "Refused while a webhook uses it." }
        form method="post" action={ "/credentials/" (id) "/delete" } {
            (view::csrf(&ctx))
            div.actions { button.danger type="submit" { "Delete credential" } a href={ "/credentials/" (id) } { "Cancel" } }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::Credentials, "Delete credential", body))
}

pub async fn delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, _) = try_page!(shared.post_ctx(&headers, &body).await);
    call!(
        ctx,
        ctx.api.credentials().delete_credential(ctx.api.req(v1::DeleteCredentialRequest { id }))
    );
    ctx.redirect_with("/credentials", "Credential deleted.")
}
