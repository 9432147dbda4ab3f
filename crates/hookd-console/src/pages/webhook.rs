//! C3 and C4: the create and edit form with every webhook option, and the webhook's page
//! (details, signing secret, test send, duplicate, delete, activation with or without replay).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use hookd_proto::{convert::json_to_value, v1};
use maud::{Markup, html};

use crate::{
    Ctx, Shared,
    api::Failure,
    call,
    form::Form,
    pages::webhooks::{catalog_names, method_name},
    try_page,
    view::{self, Input, Section},
};

const METHODS: [(&str, &str); 5] = [
    ("post", "POST"),
    ("put", "PUT"),
    ("patch", "PATCH"),
    ("get", "GET (no body)"),
    ("delete", "DELETE (no body)"),
];
const FORMATS: [(&str, &str); 3] = [
    ("envelope", "Envelope: {\"meta\": {…}, \"data\": …}"),
    ("flat", "Flat: {event_time, event_type, current_context, data}"),
    ("data", "Data only"),
];
const AUTH_KINDS: [(&str, &str); 5] = [
    ("none", "None (signature only)"),
    ("header", "Custom header"),
    ("api_key", "API key"),
    ("basic", "Basic"),
    ("bearer", "Bearer token"),
];

/// The form's values: from a webhook (edit), a submitted form, or the defaults (new).
#[derive(Debug, Clone, Default)]
struct Draft {
    name: String,
    url: String,
    description: String,
    app: String,
    active: bool,
    event_types: Vec<String>,
    method: String,
    format: String,
    headers: Vec<(String, String)>,
    auth: String,
    auth_header_name: String,
    auth_header_value: String,
    api_key_name: String,
    api_key_value: String,
    api_key_in_query: bool,
    basic_username: String,
    basic_password: String,
    bearer_token: String,
    /// What reads show of the current secret (`****abcd`), as a hint on edit.
    masked: String,
    credential_id: String,
    payload: String,
    fields: String,
    retry: String,
    retry_schedule: String,
    timeout_ms: String,
    max_failures: String,
    no_success_secs: String,
}

impl Draft {
    fn new_webhook(app: Option<&str>) -> Self {
        Self {
            method: "post".into(),
            format: "envelope".into(),
            auth: "none".into(),
            payload: "all".into(),
            retry: "default".into(),
            app: app.unwrap_or_default().to_owned(),
            ..Self::default()
        }
    }

    fn from_webhook(w: &v1::Webhook) -> Self {
        let mut d = Self {
            name: w.name.clone(),
            url: w.url.clone(),
            description: w.description.clone(),
            app: w.app.clone(),
            active: w.active,
            event_types: w.event_types.clone(),
            method: method_name(w.method).to_lowercase(),
            format: match v1::PayloadFormat::try_from(w.format).unwrap_or_default() {
                v1::PayloadFormat::Flat => "flat",
                v1::PayloadFormat::Data => "data",
                _ => "envelope",
            }
            .into(),
            headers: w.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
            auth: "none".into(),
            credential_id: w.credential_id.clone(),
            payload: if w.fields.is_empty() { "all" } else { "fields" }.into(),
            fields: w.fields.join("\n"),
            retry: match &w.retry_policy {
                None => "default",
                Some(p) if p.delay_seconds.is_empty() => "none",
                Some(_) => "custom",
            }
            .into(),
            retry_schedule: w
                .retry_policy
                .as_ref()
                .map(|p| p.delay_seconds.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            timeout_ms: if w.attempt_timeout_ms == 0 {
                String::new()
            } else {
                w.attempt_timeout_ms.to_string()
            },
            max_failures: w
                .health_policy
                .and_then(|p| p.max_failures)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            no_success_secs: w
                .health_policy
                .and_then(|p| p.no_success_secs)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            ..Self::default()
        };
        if let Some(kind) = w.auth.as_ref().and_then(|a| a.kind.as_ref()) {
            use v1::endpoint_auth::Kind;
            match kind {
                Kind::None(_) => {}
                Kind::Header(h) => {
                    d.auth = "header".into();
                    d.auth_header_name.clone_from(&h.name);
                    d.masked.clone_from(&h.value);
                }
                Kind::ApiKey(k) => {
                    d.auth = "api_key".into();
                    d.api_key_name.clone_from(&k.name);
                    d.api_key_in_query = k.in_query;
                    d.masked.clone_from(&k.value);
                }
                Kind::Basic(b) => {
                    d.auth = "basic".into();
                    d.basic_username.clone_from(&b.username);
                    d.masked.clone_from(&b.password);
                }
                Kind::Bearer(b) => {
                    d.auth = "bearer".into();
                    d.masked.clone_from(&b.token);
                }
            }
        }
        d
    }

    fn from_form(form: &Form) -> Self {
        let names = form.all("header_name");
        let values = form.all("header_value");
        let mut event_types: Vec<String> = form
            .all("event_types")
            .into_iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        event_types.extend(
            form.text("event_types_text")
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
        Self {
            name: form.text("name"),
            url: form.text("url"),
            description: form.text("description"),
            app: form.text("app"),
            active: form.checked("active"),
            event_types,
            method: form.text("method"),
            format: form.text("format"),
            headers: names
                .iter()
                .zip(values.iter().chain(std::iter::repeat(&"")))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .filter(|(n, v)| !n.is_empty() || !v.is_empty())
                .collect(),
            auth: form.text("auth"),
            auth_header_name: form.text("auth_header_name"),
            auth_header_value: form.raw("auth_header_value").to_owned(),
            api_key_name: form.text("api_key_name"),
            api_key_value: form.raw("api_key_value").to_owned(),
            api_key_in_query: form.checked("api_key_in_query"),
            basic_username: form.text("basic_username"),
            basic_password: form.raw("basic_password").to_owned(),
            bearer_token: form.raw("bearer_token").to_owned(),
            masked: String::new(),
            credential_id: form.text("credential_id"),
            payload: form.text("payload"),
            fields: form.raw("fields").to_owned(),
            retry: form.text("retry"),
            retry_schedule: form.text("retry_schedule"),
            timeout_ms: form.text("timeout_ms"),
            max_failures: form.text("max_failures"),
            no_success_secs: form.text("no_success_secs"),
        }
    }

    /// Whether a secret of the chosen auth mode was typed in.
    fn secret_given(&self) -> bool {
        match self.auth.as_str() {
            "header" => !self.auth_header_value.is_empty(),
            "api_key" => !self.api_key_value.is_empty(),
            "basic" => !self.basic_password.is_empty(),
            "bearer" => !self.bearer_token.is_empty(),
            _ => false,
        }
    }

    fn auth(&self) -> Result<Option<v1::EndpointAuth>, Failure> {
        use v1::endpoint_auth::Kind;
        let kind = match self.auth.as_str() {
            "" | "none" => return Ok(None),
            "header" => Kind::Header(v1::HeaderAuth {
                name: self.auth_header_name.clone(),
                value: self.auth_header_value.clone(),
            }),
            "api_key" => Kind::ApiKey(v1::ApiKeyAuth {
                name: self.api_key_name.clone(),
                value: self.api_key_value.clone(),
                in_query: self.api_key_in_query,
            }),
            "basic" => Kind::Basic(v1::BasicAuth {
                username: self.basic_username.clone(),
                password: self.basic_password.clone(),
            }),
            "bearer" => Kind::Bearer(v1::BearerAuth { token: self.bearer_token.clone() }),
            other => {
                return Err(Failure::invalid(
                    "auth",
                    format!("{other:?} is not an authentication mode"),
                ));
            }
        };
        Ok(Some(v1::EndpointAuth { kind: Some(kind) }))
    }

    fn method(&self) -> Result<i32, Failure> {
        let method = match self.method.as_str() {
            "" | "post" => v1::HttpMethod::Post,
            "put" => v1::HttpMethod::Put,
            "patch" => v1::HttpMethod::Patch,
            "get" => v1::HttpMethod::Get,
            "delete" => v1::HttpMethod::Delete,
            other => {
                return Err(Failure::invalid(
                    "method",
                    format!("{other:?} is not one of post, put, patch, get, delete"),
                ));
            }
        };
        Ok(method as i32)
    }

    fn format(&self) -> i32 {
        let format = match self.format.as_str() {
            "flat" => v1::PayloadFormat::Flat,
            "data" => v1::PayloadFormat::Data,
            _ => v1::PayloadFormat::Envelope,
        };
        format as i32
    }

    fn retry_policy(&self) -> Result<Option<v1::RetryPolicy>, Failure> {
        match self.retry.as_str() {
            "none" => Ok(Some(v1::RetryPolicy { delay_seconds: Vec::new() })),
            "custom" => {
                let delays = self
                    .retry_schedule
                    .split([',', ' '])
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| Failure::invalid("retry_schedule", "write the delays as whole seconds separated by commas, such as 15, 60, 225"))?;
                if delays.is_empty() {
                    return Err(Failure::invalid(
                        "retry_schedule",
                        "give at least one delay, or choose no retries",
                    ));
                }
                Ok(Some(v1::RetryPolicy { delay_seconds: delays }))
            }
            _ => Ok(None),
        }
    }

    fn timeout(&self) -> Result<u32, Failure> {
        if self.timeout_ms.is_empty() {
            return Ok(0);
        }
        self.timeout_ms.parse().map_err(|_| {
            Failure::invalid(
                "attempt_timeout_ms",
                "must be a whole number of milliseconds, 1 to 30000",
            )
        })
    }

    fn health_policy(&self) -> Result<Option<v1::HealthPolicy>, Failure> {
        let max_failures = match self.max_failures.as_str() {
            "" => None,
            n => Some(n.parse::<u32>().map_err(|_| {
                Failure::invalid(
                    "health_policy",
                    "consecutive failures must be a whole number (0 turns the rule off)",
                )
            })?),
        };
        let no_success_secs = match self.no_success_secs.as_str() {
            "" => None,
            n => Some(n.parse::<u64>().map_err(|_| {
                Failure::invalid("health_policy", "seconds without success must be a whole number")
            })?),
        };
        Ok((max_failures.is_some() || no_success_secs.is_some())
            .then_some(v1::HealthPolicy { max_failures, no_success_secs }))
    }

    fn fields(&self) -> Vec<String> {
        if self.payload != "fields" {
            return Vec::new();
        }
        self.fields.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }

    fn headers(&self) -> Vec<v1::HttpHeader> {
        self.headers
            .iter()
            .map(|(n, v)| v1::HttpHeader { name: n.clone(), value: v.clone() })
            .collect()
    }

    fn create_request(&self) -> Result<v1::CreateWebhookRequest, Failure> {
        Ok(v1::CreateWebhookRequest {
            name: self.name.clone(),
            url: self.url.clone(),
            event_types: self.event_types.clone(),
            active: self.active,
            description: self.description.clone(),
            attempt_timeout_ms: self.timeout()?,
            retry_policy: self.retry_policy()?,
            app: self.app.clone(),
            method: self.method()?,
            headers: self.headers(),
            auth: self.auth()?,
            credential_id: self.credential_id.clone(),
            fields: self.fields(),
            format: self.format(),
            health_policy: self.health_policy()?,
        })
    }

    /// The update of every option on the form. Authentication changes only when its mode
    /// changed or a new secret was typed: reads show secrets masked, so an untouched form
    /// must not overwrite them with the mask.
    fn update_request(
        &self,
        id: &str,
        before: &Draft,
        scoped: bool,
    ) -> Result<v1::UpdateWebhookRequest, Failure> {
        let mut paths = vec![
            "name",
            "url",
            "event_types",
            "description",
            "attempt_timeout_ms",
            "retry_policy",
            "method",
            "headers",
            "fields",
            "format",
            "health_policy",
        ];
        if !scoped {
            paths.extend(["app", "credential_id"]);
        }
        if self.auth != before.auth || self.secret_given() {
            paths.push("auth");
        } else if self.auth == "header" && self.auth_header_name != before.auth_header_name {
            return Err(Failure::invalid(
                "auth",
                "type the header's value again to change its name",
            ));
        }
        let webhook = v1::Webhook {
            id: id.to_owned(),
            name: self.name.clone(),
            url: self.url.clone(),
            event_types: self.event_types.clone(),
            description: self.description.clone(),
            attempt_timeout_ms: self.timeout()?,
            retry_policy: self.retry_policy()?,
            app: self.app.clone(),
            method: self.method()?,
            headers: self.headers(),
            auth: self.auth()?,
            credential_id: self.credential_id.clone(),
            fields: self.fields(),
            format: self.format(),
            health_policy: self.health_policy()?,
            ..v1::Webhook::default()
        };
        Ok(v1::UpdateWebhookRequest {
            webhook: Some(webhook),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.into_iter().map(str::to_owned).collect(),
            }),
        })
    }
}

/// What the form needs besides the draft: the catalog and the credentials to pick from.
struct Choices {
    event_types: Vec<(String, String)>,
    credentials: Vec<(String, String)>,
}

async fn choices(ctx: &Ctx) -> Choices {
    let credentials = if ctx.me.app.is_some() {
        Vec::new()
    } else {
        match ctx
            .api
            .credentials()
            .list_credentials(
                ctx.api
                    .req(v1::ListCredentialsRequest { page_size: 500, page_token: String::new() }),
            )
            .await
        {
            Ok(a) => a.into_inner().credentials.into_iter().map(|c| (c.id, c.name)).collect(),
            Err(_) => Vec::new(),
        }
    };
    Choices { event_types: catalog_names(ctx).await, credentials }
}

fn form_page(
    ctx: &Ctx,
    id: Option<&str>,
    draft: &Draft,
    choices: &Choices,
    failure: Option<&Failure>,
) -> Markup {
    let title = if id.is_some() { "Edit webhook" } else { "New webhook" };
    let action = id.map_or("/webhooks/new".to_owned(), |id| format!("/webhooks/{id}/edit"));
    let editing = id.is_some();
    let secret_hint = if editing && !draft.masked.is_empty() {
        format!("Leave empty to keep the current value ({}).", draft.masked)
    } else {
        "Write-only: never shown again once saved.".to_owned()
    };
    let credential_options: Vec<(&str, &str)> = std::iter::once(("", "None"))
        .chain(choices.credentials.iter().map(|(id, name)| (id.as_str(), name.as_str())))
        .collect();
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/webhooks" { "Webhooks" }
            @if let Some(id) = id { " / " a href={ "/webhooks/" (id) } { (draft.name) } }
        }
        h1 { (title) }
        (view::form_error(failure))
        form.webhook method="post" action=(action) novalidate {
            (view::csrf(ctx))
            fieldset {
                legend { "Endpoint" }
                (Input::new("name", "Name", &draft.name).required().hint("Unique in your tenant, up to 128 characters.").render(failure))
                (Input::new("url", "URL", &draft.url).kind("url").required().placeholder("https://example.com/webhooks")
                    .hint("Full http(s) URL; https is recommended.").render(failure))
                (view::textarea("description", "Description", &draft.description, 2, None, "description", failure))
                @if ctx.me.app.is_none() {
                    (Input::new("app", "App label", &draft.app).hint("Free label that lists filter on, such as the app or customer this webhook belongs to.").render(failure))
                } @else {
                    input type="hidden" name="app" value=(draft.app);
                }
                @if !editing {
                    div.field.check {
                        input #in-active type="checkbox" name="active" checked[draft.active];
                        label for="in-active" { "Active: start delivering at once" }
                    }
                }
            }
            fieldset #field-event_types {
                legend { "Events" }
                (event_type_picker(draft, &choices.event_types, failure))
            }
            fieldset {
                legend { "Request" }
                div.row {
                    (view::select("method", "HTTP method", &METHODS, &draft.method, "method", failure))
                    (view::select("format", "Payload format", &FORMATS, &draft.format, "format", failure))
                }
                (Input::new("timeout_ms", "Timeout (ms)", &draft.timeout_ms).kind("number").field("attempt_timeout_ms")
                    .hint("1 to 30000; empty for the default (10 s).").render(failure))
                (headers_editor(draft, failure))
            }
            fieldset #field-auth {
                legend { "Authentication" }
                (auth_editor(draft, &secret_hint, failure))
                @if ctx.me.app.is_none() {
                                        (view::select("credential_id", "OAuth2 credential", &credential_options, &draft.credential_id, "credential_id", failure))
                    p.hint { "Sends " code { "Authorization: Bearer <access token>" } " from the credential. "
                        a href="/credentials" { "Manage credentials" } }
                }
            }
            fieldset #field-fields {
                legend { "Payload" }
                div.radios role="radiogroup" aria-label="Data sent" {
                    div.check {
                        input #in-payload-all type="radio" name="payload" value="all" checked[draft.payload != "fields"] data-toggles="payload-fields";
                        label for="in-payload-all" { "Raw data: all the event's data" }
                    }
                    div.check {
                        input #in-payload-fields type="radio" name="payload" value="fields" checked[draft.payload == "fields"] data-toggles="payload-fields";
                        label for="in-payload-fields" { "Selected fields only" }
                    }
                }
                div #payload-fields data-shown-when="in-payload-fields" {
                    (view::textarea("fields", "Fields (JSON pointers, one per line)", &draft.fields, 3,
                        Some("Such as /contactId or /contact/email; a field an event lacks is left out."), "fields", failure))
                }
            }
            fieldset #field-retry_schedule {
                legend { "Retries and health" }
                div.radios role="radiogroup" aria-label="Retry schedule" {
                    @for (value, label) in [("default", "Default: 15 s, 60 s, 225 s, 900 s, 3600 s"), ("custom", "Custom"), ("none", "No retries")] {
                        div.check {
                            input id={ "in-retry-" (value) } type="radio" name="retry" value=(value) checked[draft.retry == value];
                            label for={ "in-retry-" (value) } { (label) }
                        }
                    }
                }
                (Input::new("retry_schedule", "Custom delays (seconds)", &draft.retry_schedule).placeholder("15, 60, 225")
                    .hint("Used with Custom: the wait before each retry, up to 20 delays of at most 7 days.").render(failure))
                div.row #field-health_policy {
                    (Input::new("max_failures", "Deactivate after failures", &draft.max_failures).kind("number").field("health_policy")
                        .hint("Consecutive failed attempts; empty: the deployment's rule (10); 0: never.").render(failure))
                    (Input::new("no_success_secs", "…and no success for (s)", &draft.no_success_secs).kind("number").field("health_policy")
                        .hint("Empty: the deployment's rule (86400).").render(failure))
                }
            }
            div.actions {
                button.primary type="submit" { (if editing { "Save changes" } else { "Create webhook" }) }
                a href=(id.map_or("/webhooks".to_owned(), |id| format!("/webhooks/{id}"))) { "Cancel" }
            }
        }
    };
    view::page(ctx, Section::Webhooks, title, body)
}

fn event_type_picker(
    draft: &Draft,
    catalog: &[(String, String)],
    failure: Option<&Failure>,
) -> Markup {
    let error = view::field_error(failure, "event_types");
    let extra: Vec<&String> = draft
        .event_types
        .iter()
        .filter(|t| *t != "*" && !catalog.iter().any(|(n, _)| n == *t))
        .collect();
    html! {
        @if catalog.is_empty() {
            @let text = draft.event_types.join(", ");
            (Input::new("event_types_text", "Event types", &text).field("event_types")
                .hint("Comma-separated, such as contact-created, basket-submitted; * for every type.").render(failure))
        } @else {
            p.hint #hint-event_types { "Pick the events this webhook receives." }
            @if catalog.len() > 8 {
                div.field.filterbox hidden {
                    label for="event-filter" { "Find an event type" }
                    input #event-filter type="search" data-filter-list="event-list";
                }
            }
            ul.checklist #event-list aria-describedby="hint-event_types" {
                li {
                    input #et-all type="checkbox" name="event_types" value="*" checked[draft.event_types.iter().any(|t| t == "*")];
                    label for="et-all" { strong { "All events" } " " code { "*" } span.muted { " — every type, including ones added later" } }
                }
                @for (i, (name, description)) in catalog.iter().enumerate() {
                    li {
                        input id={ "et-" (i) } type="checkbox" name="event_types" value=(name) checked[draft.event_types.contains(name)];
                        label for={ "et-" (i) } { code { (name) } @if !description.is_empty() { span.muted { " — " (description) } } }
                    }
                }
                @for (i, name) in extra.iter().enumerate() {
                    li {
                        input id={ "et-x" (i) } type="checkbox" name="event_types" value=(name) checked;
                        label for={ "et-x" (i) } { code { (name) } span.muted { " — not in the catalog" } }
                    }
                }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
        }
    }
}

fn headers_editor(draft: &Draft, failure: Option<&Failure>) -> Markup {
    let error = view::field_error(failure, "headers");
    // Two empty rows to fill in without the script; the script adds more on demand.
    let rows =
        draft.headers.iter().cloned().chain(std::iter::repeat_n((String::new(), String::new()), 2));
    html! {
        div.field #field-headers {
            span.label #headers-label { "Custom headers" }
            p.hint #hint-headers { "Sent with every delivery and shown in full to readers: no secrets here (use Authentication)." }
            div.headers role="group" aria-labelledby="headers-label" aria-describedby="hint-headers" data-rows {
                @for (i, (name, value)) in rows.enumerate() {
                    div.hrow {
                        label.visually-hidden for={ "hn-" (i) } { "Header name " (i + 1) }
                        input id={ "hn-" (i) } type="text" name="header_name" value=(name) placeholder="x-tenant" spellcheck="false";
                        label.visually-hidden for={ "hv-" (i) } { "Header value " (i + 1) }
                        input id={ "hv-" (i) } type="text" name="header_value" value=(value) placeholder="value" spellcheck="false";
                    }
                }
            }
            button.secondary.small type="button" data-add-row hidden { "Add a header" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
        }
    }
}

fn auth_editor(draft: &Draft, secret_hint: &str, failure: Option<&Failure>) -> Markup {
    let error = view::field_error(failure, "auth");
    html! {
        div.radios role="radiogroup" aria-label="Authentication mode" {
            @for (value, label) in AUTH_KINDS {
                div.check {
                    input id={ "in-auth-" (value) } type="radio" name="auth" value=(value) checked[draft.auth == value];
                    label for={ "in-auth-" (value) } { (label) }
                }
            }
        }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        div.authmode data-auth="header" {
            h3 { "Custom header" }
            div.row {
                (Input::new("auth_header_name", "Header name", &draft.auth_header_name).placeholder("x-webhook-secret").field("auth").render(None))
                (Input::new("auth_header_value", "Header value", &draft.auth_header_value).kind("password").hint(secret_hint).field("auth").render(None))
            }
        }
        div.authmode data-auth="api_key" {
            h3 { "API key" }
            div.row {
                (Input::new("api_key_name", "Header or parameter name", &draft.api_key_name).placeholder("x-api-key").field("auth").render(None))
                (Input::new("api_key_value", "Key", &draft.api_key_value).kind("password").hint(secret_hint).field("auth").render(None))
            }
            div.field.check {
                input #in-api_key_in_query type="checkbox" name="api_key_in_query" checked[draft.api_key_in_query];
                label for="in-api_key_in_query" { "Send as a query parameter instead of a header" }
            }
        }
        div.authmode data-auth="basic" {
            h3 { "Basic" }
            div.row {
                (Input::new("basic_username", "Username", &draft.basic_username).field("auth").render(None))
                (Input::new("basic_password", "Password", &draft.basic_password).kind("password").hint(secret_hint).field("auth").render(None))
            }
        }
        div.authmode data-auth="bearer" {
            h3 { "Bearer token" }
            (Input::new("bearer_token", "Token", &draft.bearer_token).kind("password").hint(secret_hint).field("auth").render(None))
        }
    }
}

fn forbidden_unless_manage(ctx: &Ctx) -> Option<Response> {
    (!ctx.can_manage()).then(|| {
        ctx.failure(&Failure::new(
            tonic::Code::PermissionDenied,
            "permission denied: this role cannot change webhooks (it lacks webhooks.manage)",
        ))
    })
}

pub async fn new_form(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(denied) = forbidden_unless_manage(&ctx) {
        return denied;
    }
    let choices = choices(&ctx).await;
    let draft = Draft::new_webhook(ctx.me.app.as_deref());
    ctx.page(StatusCode::OK, form_page(&ctx, None, &draft, &choices, None))
}

pub async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let draft = Draft::from_form(&form);
    let result = match draft.create_request() {
        Ok(request) => {
            ctx.api.webhooks().create_webhook(ctx.api.req(request)).await.map_err(Failure::from)
        }
        Err(failure) => Err(failure),
    };
    match result {
        Ok(answer) => {
            let webhook = answer.into_inner().webhook.unwrap_or_default();
            ctx.redirect_with(
                &format!("/webhooks/{}", webhook.id),
                &format!("Webhook {} created.", webhook.name),
            )
        }
        Err(failure) if is_form_error(&failure) => {
            let choices = choices(&ctx).await;
            ctx.page(failure.http_status(), form_page(&ctx, None, &draft, &choices, Some(&failure)))
        }
        Err(failure) => ctx.failure(&failure),
    }
}

fn is_form_error(failure: &Failure) -> bool {
    matches!(failure.code, tonic::Code::InvalidArgument | tonic::Code::AlreadyExists)
}

async fn get(ctx: &Ctx, id: &str) -> Result<v1::Webhook, Response> {
    match ctx
        .api
        .webhooks()
        .get_webhook(ctx.api.req(v1::GetWebhookRequest { id: id.to_owned() }))
        .await
    {
        Ok(answer) => Ok(answer.into_inner().webhook.unwrap_or_default()),
        Err(status) => Err(ctx.failure(&Failure::from(status))),
    }
}

pub async fn edit_form(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(denied) = forbidden_unless_manage(&ctx) {
        return denied;
    }
    let webhook = try_page!(get(&ctx, &id).await);
    let choices = choices(&ctx).await;
    ctx.page(
        StatusCode::OK,
        form_page(&ctx, Some(&id), &Draft::from_webhook(&webhook), &choices, None),
    )
}

pub async fn update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let before = Draft::from_webhook(&try_page!(get(&ctx, &id).await));
    let mut draft = Draft::from_form(&form);
    draft.masked.clone_from(&before.masked);
    let result = match draft.update_request(&id, &before, ctx.me.app.is_some()) {
        Ok(request) => {
            ctx.api.webhooks().update_webhook(ctx.api.req(request)).await.map_err(Failure::from)
        }
        Err(failure) => Err(failure),
    };
    match result {
        Ok(_) => ctx.redirect_with(&format!("/webhooks/{id}"), "Changes saved."),
        Err(failure) if is_form_error(&failure) => {
            let choices = choices(&ctx).await;
            ctx.page(
                failure.http_status(),
                form_page(&ctx, Some(&id), &draft, &choices, Some(&failure)),
            )
        }
        Err(failure) => ctx.failure(&failure),
    }
}

/// The list's status switch: activate (without replay) or deactivate, then back to the list.
pub async fn set_status(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let back = safe_back(form.raw("back"), &format!("/webhooks/{id}"));
    let webhooks = ctx.api.webhooks();
    let (result, done) = if form.text("active") == "true" {
        let r = webhooks
            .clone()
            .activate_webhook(ctx.api.req(v1::ActivateWebhookRequest { id, replay: false }))
            .await;
        (r.map(|a| a.into_inner().webhook), "activated")
    } else {
        let r = webhooks
            .clone()
            .deactivate_webhook(ctx.api.req(v1::DeactivateWebhookRequest { id }))
            .await;
        (r.map(|a| a.into_inner().webhook), "deactivated")
    };
    match result {
        Ok(w) => {
            ctx.redirect_with(&back, &format!("Webhook {} {done}.", w.unwrap_or_default().name))
        }
        Err(status) => ctx.failure(&Failure::from(status)),
    }
}

/// A return address from a form: a path of the console only (no other site, no scheme).
fn safe_back(back: &str, fallback: &str) -> String {
    if back.starts_with('/') && !back.starts_with("//") && !back.contains('\\') {
        back.to_owned()
    } else {
        fallback.to_owned()
    }
}

pub async fn activate(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let replay = form.text("replay") == "yes";
    let answer = call!(
        ctx,
        ctx.api
            .webhooks()
            .activate_webhook(ctx.api.req(v1::ActivateWebhookRequest { id: id.clone(), replay }))
    );
    let message = if replay {
        format!("Webhook activated; {} kept events are being replayed in order.", answer.replayed)
    } else if answer.discarded > 0 {
        format!("Webhook activated; {} kept events were discarded.", answer.discarded)
    } else {
        "Webhook activated.".to_owned()
    };
    ctx.redirect_with(&format!("/webhooks/{id}"), &message)
}

pub async fn duplicate(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, _) = try_page!(shared.post_ctx(&headers, &body).await);
    let answer = call!(
        ctx,
        ctx.api.webhooks().duplicate_webhook(ctx.api.req(v1::DuplicateWebhookRequest { id }))
    );
    let copy = answer.webhook.unwrap_or_default();
    ctx.redirect_with(
        &format!("/webhooks/{}", copy.id),
        &format!("Duplicated as {} (inactive, with its own signing secret).", copy.name),
    )
}

pub async fn confirm_delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(denied) = forbidden_unless_manage(&ctx) {
        return denied;
    }
    let webhook = try_page!(get(&ctx, &id).await);
    let body = html! {
        h1 { "Delete webhook " (webhook.name) "?" }
        div.notice.warn role="note" {
            "Deliveries to " code { (webhook.url) } " stop at once. The delivery history is kept until the retention purges it. This cannot be undone."
        }
        form method="post" action={ "/webhooks/" (id) "/delete" } {
            (view::csrf(&ctx))
            div.actions {
                button.danger type="submit" { "Delete webhook" }
                a href={ "/webhooks/" (id) } { "Cancel" }
            }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::Webhooks, "Delete webhook", body))
}

pub async fn delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, _) = try_page!(shared.post_ctx(&headers, &body).await);
    call!(ctx, ctx.api.webhooks().delete_webhook(ctx.api.req(v1::DeleteWebhookRequest { id })));
    ctx.redirect_with("/webhooks", "Webhook deleted.")
}

/// What the webhook page shows besides the webhook: a revealed or new secret, a test result.
#[derive(Default)]
struct Extras {
    secret: Option<(String, &'static str)>,
    rotated_until: Option<prost_types::Timestamp>,
    test: Option<Result<v1::TestWebhookResponse, Failure>>,
    test_event_type: String,
    test_data: String,
}

pub async fn show(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    render(&ctx, &id, Extras::default(), StatusCode::OK).await
}

pub async fn reveal_secret(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, _) = try_page!(shared.post_ctx(&headers, &body).await);
    let answer = call!(
        ctx,
        ctx.api
            .webhooks()
            .get_webhook_secret(ctx.api.req(v1::GetWebhookSecretRequest { id: id.clone() }))
    );
    let extras =
        Extras { secret: Some((answer.signing_secret, "Signing secret")), ..Extras::default() };
    render(&ctx, &id, extras, StatusCode::OK).await
}

pub async fn rotate_secret(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let (grace_seconds, expire_now) = match form.text("grace").as_str() {
        "now" => (0, true),
        "3600" => (3600, false),
        "604800" => (604_800, false),
        _ => (0, false),
    };
    let answer = call!(
        ctx,
        ctx.api.webhooks().rotate_webhook_secret(ctx.api.req(v1::RotateWebhookSecretRequest {
            id: id.clone(),
            grace_seconds,
            expire_now
        }))
    );
    let extras = Extras {
        secret: Some((answer.signing_secret, "New signing secret")),
        rotated_until: answer.previous_expires_at,
        ..Extras::default()
    };
    render(&ctx, &id, extras, StatusCode::OK).await
}

pub async fn test_send(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let event_type = form.text("event_type");
    let data_text = form.raw("data").trim().to_owned();
    let data = if data_text.is_empty() {
        Ok(None)
    } else {
        serde_json::from_str::<serde_json::Value>(&data_text)
            .map(|v| Some(json_to_value(v)))
            .map_err(|e| Failure::invalid("data", format!("is not JSON: {e}")))
    };
    let result = match data {
        Ok(data) => ctx
            .api
            .webhooks()
            .test_webhook(ctx.api.req(v1::TestWebhookRequest {
                id: id.clone(),
                event_type: event_type.clone(),
                data,
            }))
            .await
            .map(tonic::Response::into_inner)
            .map_err(Failure::from),
        Err(failure) => Err(failure),
    };
    if let Err(failure) = &result
        && matches!(
            failure.code,
            tonic::Code::PermissionDenied | tonic::Code::NotFound | tonic::Code::Unauthenticated
        )
    {
        return ctx.failure(failure);
    }
    let extras = Extras {
        test: Some(result),
        test_event_type: event_type,
        test_data: data_text,
        ..Extras::default()
    };
    render(&ctx, &id, extras, StatusCode::OK).await
}

async fn render(ctx: &Ctx, id: &str, extras: Extras, status: StatusCode) -> Response {
    let webhook = try_page!(get(ctx, id).await);
    let catalog = catalog_names(ctx).await;
    let stats = webhook.stats.unwrap_or_default();
    let health = webhook.health.clone().unwrap_or_default();
    let by_system = health.deactivated_by == v1::DeactivatedBy::System as i32;
    let manage = ctx.can_manage();
    let test_types: Vec<String> = if webhook.event_types.iter().any(|t| t == "*") {
        catalog.iter().map(|(n, _)| n.clone()).collect()
    } else {
        webhook.event_types.clone()
    };
    let draft = Draft::from_webhook(&webhook);
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/webhooks" { "Webhooks" } " / " span { (webhook.name) } }
        div.titlebar {
            h1 { (webhook.name) " "
                @if webhook.active { span.badge.ok { "Active" } } @else { span.badge.off { "Inactive" } } }
            div.actions {
                a.button.secondary href={ "/webhooks/" (webhook.id) "/deliveries" } { "Delivery history" }
                @if manage {
                    a.button.secondary href={ "/webhooks/" (webhook.id) "/edit" } { "Edit" }
                    form.inline method="post" action={ "/webhooks/" (webhook.id) "/duplicate" } {
                        (view::csrf(ctx)) button.secondary type="submit" { "Duplicate" }
                    }
                    a.button.danger-outline href={ "/webhooks/" (webhook.id) "/delete" } { "Delete" }
                }
            }
        }
        @if by_system {
            div.banner.bad role="alert" #deactivated {
                strong { "Deactivated by the system" }
                @if health.deactivated_at.is_some() { " on " (view::time(health.deactivated_at.as_ref())) }
                p { (health.deactivation_reason) }
                @if !health.last_error.is_empty() { p.small { "Last error: " (health.last_error) } }
                p { (view::count(health.buffered)) " events kept while deactivated"
                    @if health.expired > 0 { " (" (health.expired) " expired unreplayed)" } "." }
            }
        }
        div.grid2 {
            section.card aria-labelledby="details-h" {
                h2 #details-h { "Settings" }
                dl.details {
                    dt { "URL" } dd { code.break { (webhook.url) } }
                    dt { "Method" } dd { (method_name(webhook.method)) }
                    dt { "Event types" } dd { @for t in &webhook.event_types { span.chip { (if t == "*" { "all events" } else { t }) } " " } }
                    dt { "Payload" } dd { (FORMATS.iter().find(|(v, _)| *v == draft.format).map_or("", |(_, l)| l))
                        @if !webhook.fields.is_empty() { br; "Fields: " @for f in &webhook.fields { code { (f) } " " } } @else { br; span.muted { "All the event's data" } } }
                    dt { "Custom headers" } dd { @if webhook.headers.is_empty() { span.muted { "none" } } @for h in &webhook.headers { code { (h.name) ": " (h.value) } br; } }
                    dt { "Authentication" } dd { (auth_summary(&draft)) }
                    @if !webhook.credential_id.is_empty() {
                        dt { "OAuth2 credential" } dd { @if ctx.me.app.is_none() { a href={ "/credentials/" (webhook.credential_id) } { (webhook.credential_id) } } @else { (webhook.credential_id) } }
                    }
                    dt { "Timeout" } dd { @if webhook.attempt_timeout_ms == 0 { "default (10 s)" } @else { (webhook.attempt_timeout_ms) " ms" } }
                    dt { "Retries" } dd { @match draft.retry.as_str() { "default" => "default: 15 s, 60 s, 225 s, 900 s, 3600 s", "none" => "none", _ => { (draft.retry_schedule) " s" } } }
                    dt { "Deactivation rule" } dd {
                        @if draft.max_failures.is_empty() && draft.no_success_secs.is_empty() { "the deployment's" }
                        @else { (if draft.max_failures.is_empty() { "default".to_owned() } else { draft.max_failures.clone() }) " failures and no success for "
                            (if draft.no_success_secs.is_empty() { "the default".to_owned() } else { format!("{} s", draft.no_success_secs) }) }
                    }
                    @if !webhook.app.is_empty() { dt { "App label" } dd { span.badge.app { (webhook.app) } } }
                    @if !webhook.description.is_empty() { dt { "Description" } dd { (webhook.description) } }
                    dt { "Id" } dd { code { (webhook.id) } }
                    dt { "Created" } dd { (view::time(webhook.created_at.as_ref())) }
                    dt { "Updated" } dd { (view::time(webhook.updated_at.as_ref())) }
                }
            }
            div.stack {
                section.card aria-labelledby="status-h" #activate {
                    h2 #status-h { "Status and health" }
                    dl.details {
                        dt { "Deliveries" } dd { (view::count(stats.triggered)) " triggered, "
                            span.ok-text { (view::count(stats.succeeded)) " succeeded" } ", "
                            span.bad-text { (view::count(stats.failed)) " failed" } }
                        dt { "Last sent" } dd { @if stats.last_attempt_at.is_some() { (view::time(stats.last_attempt_at.as_ref())) " " (view::http_status_badge(stats.last_attempt_status, stats.last_attempt_success)) } @else { span.muted { "never" } } }
                        dt { "Consecutive failures" } dd { (health.consecutive_failures) }
                        dt { "Last success" } dd { (view::time(health.last_success_at.as_ref())) }
                    }
                    @if manage {
                        @if webhook.active {
                            form method="post" action={ "/webhooks/" (webhook.id) "/status" } {
                                (view::csrf(ctx))
                                input type="hidden" name="active" value="false";
                                button.secondary type="submit" { "Deactivate" }
                            }
                        } @else {
                            form method="post" action={ "/webhooks/" (webhook.id) "/activate" } {
                                (view::csrf(ctx))
                                @if health.buffered > 0 {
                                    fieldset.plain {
                                        legend { (view::count(health.buffered)) " events were kept while the webhook was off:" }
                                        div.check {
                                            input #replay-yes type="radio" name="replay" value="yes" checked;
                                            label for="replay-yes" { "Replay them, in their original order" }
                                        }
                                        div.check {
                                            input #replay-no type="radio" name="replay" value="no";
                                            label for="replay-no" { "Discard them" }
                                        }
                                    }
                                } @else {
                                    input type="hidden" name="replay" value="no";
                                }
                                button.primary type="submit" { "Activate" }
                            }
                        }
                    }
                }
                @if manage {
                    section.card aria-labelledby="secret-h" {
                        h2 #secret-h { "Signing secret" }
                        p.hint { "Deliveries are signed (Standard Webhooks: " code { "webhook-signature" } "). Verify them with this secret." }
                        @if let Some((secret, label)) = &extras.secret {
                            (view::secret_box(label, secret, "signing-secret"))
                            @if let Some(until) = &extras.rotated_until { p.small { "The previous secret keeps signing until " (view::time(Some(until))) "." } }
                        } @else {
                            form method="post" action={ "/webhooks/" (webhook.id) "/secret" } {
                                (view::csrf(ctx)) button.secondary type="submit" { "Reveal secret" }
                            }
                        }
                        form.rotate method="post" action={ "/webhooks/" (webhook.id) "/rotate" } {
                            (view::csrf(ctx))
                            (view::select("grace", "Old secret keeps signing for", &[("", "24 hours (default)"), ("3600", "1 hour"), ("604800", "7 days"), ("now", "No time: stop at once")], "", "grace", None))
                            button.secondary type="submit" { "Rotate secret" }
                        }
                    }
                }
            }
        }
        @if manage {
            section.card aria-labelledby="test-h" #test {
                h2 #test-h { "Send a test event" }
                p.hint { "Delivers one event now through a dispatcher's real HTTP path, even while inactive; not counted in the history." }
                @let test_failure = extras.test.as_ref().and_then(|r| r.as_ref().err());
                form method="post" action={ "/webhooks/" (webhook.id) "/test#test" } {
                    (view::csrf(ctx))
                    @if test_types.is_empty() {
                        (Input::new("event_type", "Event type", &extras.test_event_type).required().render(test_failure))
                    } @else {
                        @let options: Vec<(&str, &str)> = test_types.iter().map(|t| (t.as_str(), t.as_str())).collect();
                        (view::select("event_type", "Event type", &options, &extras.test_event_type, "event_type", test_failure))
                    }
                    (view::textarea("data", "Data (optional JSON)", &extras.test_data, 4,
                        Some("Empty: the catalog's example for the type, else sample data."), "data", test_failure))
                    button.primary type="submit" { "Send test" }
                }
                @match &extras.test {
                    Some(Ok(answer)) => { (test_result(answer)) }
                    Some(Err(f)) if f.field.is_none() => { div.notice.error role="alert" { (f.message) } }
                    _ => {}
                }
            }
        }
    };
    ctx.page(status, view::page(ctx, Section::Webhooks, &webhook.name, body))
}

fn auth_summary(d: &Draft) -> Markup {
    html! {
        @match d.auth.as_str() {
            "header" => { "Header " code { (d.auth_header_name) ": " (d.masked) } }
            "api_key" => { "API key " code { (if d.api_key_name.is_empty() { "x-api-key" } else { &d.api_key_name }) "=" (d.masked) }
                (if d.api_key_in_query { " in the query" } else { " header" }) }
            "basic" => { "Basic, user " code { (d.basic_username) } ", password " code { (d.masked) } }
            "bearer" => { "Bearer " code { (d.masked) } }
            _ => { span.muted { "none (signature only)" } }
        }
    }
}

fn test_result(answer: &v1::TestWebhookResponse) -> Markup {
    let attempt = answer.attempt.clone().unwrap_or_default();
    html! {
        div.result #test-result role="status" aria-live="polite" {
            h3 {
                @if attempt.success { span.badge.ok { "Delivered" } } @else { span.badge.bad { "Failed" } }
                " " (view::http_status_badge(attempt.http_status, attempt.success))
                " in " (attempt.latency_ms) " ms"
            }
            p.small { "Sent to " code.break { (answer.url) } }
            @if !attempt.error.is_empty() { div.notice.error { "Error: " (attempt.error) } }
            h4 { "Response excerpt" }
            pre.code #test-response { @if attempt.response_body.is_empty() { span.muted { "(empty)" } } @else { (attempt.response_body) } }
            details {
                summary { "Request headers (secrets redacted)" }
                table.kv { tbody { @for h in &attempt.request_headers { tr { th scope="row" { (h.name) } td { code { (h.value) } } } } } }
            }
            details {
                summary { "Payload sent" }
                pre.code { (view::pretty_json(&answer.payload)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_becomes_the_create_request_with_every_option() {
        let form = Form::parse(
            b"name=crm&url=https%3A%2F%2Fcrm.example.com%2Fh&event_types=a&event_types=b&method=put&format=data\
              &header_name=x-tenant&header_value=acme&header_name=&header_value=\
              &auth=basic&basic_username=u&basic_password=p%20w&payload=fields&fields=%2Fa%0A%2Fb%0A\
              &retry=custom&retry_schedule=10%2C+60&timeout_ms=5000&max_failures=3&no_success_secs=&active=on",
        );
        let r = Draft::from_form(&form).create_request().expect("valid");
        assert_eq!((r.name.as_str(), r.event_types.len(), r.active), ("crm", 2, true));
        assert_eq!(r.method, v1::HttpMethod::Put as i32);
        assert_eq!(r.format, v1::PayloadFormat::Data as i32);
        assert_eq!(r.headers, [v1::HttpHeader { name: "x-tenant".into(), value: "acme".into() }]);
        assert_eq!(r.fields, ["/a", "/b"]);
        assert_eq!(r.retry_policy.expect("custom").delay_seconds, [10, 60]);
        assert_eq!(r.attempt_timeout_ms, 5000);
        assert_eq!(
            r.health_policy,
            Some(v1::HealthPolicy { max_failures: Some(3), no_success_secs: None })
        );
        let Some(v1::endpoint_auth::Kind::Basic(basic)) = r.auth.and_then(|a| a.kind) else {
            panic!("basic")
        };
        assert_eq!(basic.password, "p w");
    }

    #[test]
    fn an_edit_keeps_masked_secrets_unless_a_new_one_is_typed() {
        let before =
            Draft { auth: "bearer".into(), masked: "****wxyz".into(), ..Draft::new_webhook(None) };
        let same = Draft { auth: "bearer".into(), ..Draft::new_webhook(None) };
        let paths = same
            .update_request("wh_1", &before, false)
            .expect("ok")
            .update_mask
            .expect("mask")
            .paths;
        assert!(!paths.contains(&"auth".to_owned()) && paths.contains(&"url".to_owned()));
        let typed = Draft { bearer_token: "new".into(), ..same.clone() };
        let paths = typed
            .update_request("wh_1", &before, false)
            .expect("ok")
            .update_mask
            .expect("mask")
            .paths;
        assert!(paths.contains(&"auth".to_owned()));
        let scoped = same
            .update_request("wh_1", &before, true)
            .expect("ok")
            .update_mask
            .expect("mask")
            .paths;
        assert!(
            !scoped.contains(&"credential_id".to_owned()) && !scoped.contains(&"app".to_owned())
        );
        let bad = Draft { retry: "custom".into(), retry_schedule: "ten".into(), ..same };
        assert_eq!(
            bad.update_request("wh_1", &before, false).expect_err("bad").field.as_deref(),
            Some("retry_schedule")
        );
    }

    #[test]
    fn return_addresses_stay_in_the_console() {
        assert_eq!(safe_back("/webhooks?status=active", "/x"), "/webhooks?status=active");
        for bad in ["//evil.example", "https://evil.example", "\\\\evil", ""] {
            assert_eq!(safe_back(bad, "/x"), "/x", "{bad}");
        }
    }

    #[test]
    fn redirects_go_where_they_say() {
        let r = crate::redirect("/webhooks");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
}
