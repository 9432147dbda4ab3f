//! C2: the webhooks list, paged and filtered by the server (`ListWebhooks`), so it costs one
//! page of rows however many webhooks a tenant has.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use hookd_proto::v1;
use maud::{Markup, html};

use crate::{
    Ctx, Shared, call,
    form::{Form, query},
    try_page,
    view::{self, Section},
};

/// Rows per page.
const PAGE_SIZE: u32 = 50;
/// Previous pages remembered in the URL for the "Previous" link.
const MAX_TRAIL: usize = 50;
/// Stands for the first page (whose token is empty) in the trail.
const FIRST: &str = "_";

/// The list's filters, as in the query string.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub name: String,
    pub app: String,
    pub event_type: String,
    pub status: String,
}

impl Filters {
    fn from(form: &Form) -> Self {
        Self {
            name: form.text("name"),
            app: form.text("app"),
            event_type: form.text("event_type"),
            status: form.text("status"),
        }
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        vec![
            ("name", self.name.as_str()),
            ("app", self.app.as_str()),
            ("event_type", self.event_type.as_str()),
            ("status", self.status.as_str()),
        ]
    }

    fn status_filter(&self) -> v1::StatusFilter {
        match self.status.as_str() {
            "active" => v1::StatusFilter::Active,
            "inactive" => v1::StatusFilter::Inactive,
            _ => v1::StatusFilter::Any,
        }
    }

    fn any(&self) -> bool {
        self.pairs().iter().any(|(_, v)| !v.is_empty())
    }
}

pub async fn list(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    let form = Form::from_query(&uri);
    let filters = Filters::from(&form);
    let page_token = form.text("page");
    let trail: Vec<String> =
        form.text("trail").split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect();
    let answer = call!(
        ctx,
        ctx.api.webhooks().list_webhooks(ctx.api.req(v1::ListWebhooksRequest {
            page_size: PAGE_SIZE,
            page_token: page_token.clone(),
            name_contains: filters.name.clone(),
            app: filters.app.clone(),
            event_type: filters.event_type.clone(),
            status: filters.status_filter().into(),
        }))
    );
    let event_types = catalog_names(&ctx).await;
    let back = uri.path_and_query().map_or("/webhooks".to_owned(), ToString::to_string);

    let mut next_trail = trail.clone();
    next_trail.push(if page_token.is_empty() { FIRST.to_owned() } else { page_token.clone() });
    if next_trail.len() > MAX_TRAIL {
        next_trail.remove(0);
    }
    let next = (!answer.next_page_token.is_empty()).then(|| {
        let mut pairs = filters.pairs();
        let trail = next_trail.join(",");
        pairs.push(("page", answer.next_page_token.as_str()));
        pairs.push(("trail", &trail));
        format!("/webhooks?{}", query(&pairs))
    });
    let previous = trail.last().map(|last| {
        let mut pairs = filters.pairs();
        let token = if last == FIRST { "" } else { last.as_str() };
        let trail = trail[..trail.len() - 1].join(",");
        pairs.push(("page", token));
        pairs.push(("trail", &trail));
        format!("/webhooks?{}", query(&pairs))
    });

    let body = html! {
        div.titlebar {
            h1 { "Webhooks" }
            @if ctx.can_manage() { a.button.primary href="/webhooks/new" { "New webhook" } }
        }
        (filter_form(&ctx, &filters, &event_types))
        @if answer.webhooks.is_empty() {
            div.empty {
                @if filters.any() || !page_token.is_empty() {
                    p { "No webhook matches these filters." }
                    a href="/webhooks" { "Show all webhooks" }
                } @else {
                    p { "No webhooks yet." }
                    @if ctx.can_manage() { a.button.primary href="/webhooks/new" { "Create the first webhook" } }
                }
            }
        } @else {
            table.list.webhooks {
                caption.visually-hidden { "Webhooks" }
                thead { tr {
                    th scope="col" { "Name and URL" }
                    th scope="col" { "Event types" }
                    th scope="col" { "Status" }
                    th scope="col" { "Health" }
                    th scope="col" { "Last sent" }
                    th scope="col" { span title="triggered / succeeded / failed" { "Deliveries" } }
                } }
                tbody {
                    @for w in &answer.webhooks { (row(&ctx, w, &back)) }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if let Some(previous) = &previous { a.button.secondary href=(previous) rel="prev" { "← Previous" } }
            @if !page_token.is_empty() { a.button.secondary href={ "/webhooks?" (query(&filters.pairs())) } { "First page" } }
            span.muted { (answer.webhooks.len()) " shown" }
            @if let Some(next) = &next { a.button.secondary href=(next) rel="next" { "Next →" } }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::Webhooks, "Webhooks", body))
}

/// The names and descriptions of the tenant's catalogued event types (empty without a
/// catalog, or when it cannot be read: the list still works).
pub async fn catalog_names(ctx: &Ctx) -> Vec<(String, String)> {
    match ctx
        .api
        .event_types()
        .list_event_types(
            ctx.api.req(v1::ListEventTypesRequest { page_size: 500, page_token: String::new() }),
        )
        .await
    {
        Ok(answer) => {
            answer.into_inner().event_types.into_iter().map(|t| (t.name, t.description)).collect()
        }
        Err(_) => Vec::new(),
    }
}

fn filter_form(ctx: &Ctx, f: &Filters, event_types: &[(String, String)]) -> Markup {
    html! {
        form.filters method="get" action="/webhooks" role="search" aria-label="Filter webhooks" {
            div.field {
                label for="f-name" { "Name contains" }
                input #f-name type="search" name="name" value=(f.name);
            }
            @if ctx.me.app.is_none() {
                div.field {
                    label for="f-app" { "App label" }
                    input #f-app type="text" name="app" value=(f.app);
                }
            }
            div.field {
                label for="f-event" { "Event type" }
                @if event_types.is_empty() {
                    input #f-event type="text" name="event_type" value=(f.event_type);
                } @else {
                    select #f-event name="event_type" {
                        option value="" { "Any" }
                        @for (name, _) in event_types {
                            option value=(name) selected[*name == f.event_type] { (name) }
                        }
                    }
                }
            }
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "Any" }
                    option value="active" selected[f.status == "active"] { "Active" }
                    option value="inactive" selected[f.status == "inactive"] { "Inactive" }
                }
            }
            div.actions {
                button.secondary type="submit" { "Filter" }
                @if f.any() { a href="/webhooks" { "Clear" } }
            }
        }
    }
}

fn row(ctx: &Ctx, w: &v1::Webhook, back: &str) -> Markup {
    let stats = w.stats.unwrap_or_default();
    let health = w.health.clone().unwrap_or_default();
    let by_system = health.deactivated_by == v1::DeactivatedBy::System as i32;
    html! {
        tr {
            td data-label="Name" {
                a.name href={ "/webhooks/" (w.id) } { (w.name) }
                @if !w.app.is_empty() { " " span.badge.app { (w.app) } }
                div.url.muted title=(w.url) { (method_name(w.method)) " " (w.url) }
            }
            td data-label="Event types" {
                @for t in &w.event_types { span.chip { (if t == "*" { "all events" } else { t }) } " " }
            }
            td data-label="Status" { (status_toggle(ctx, w, &health, back)) }
            td data-label="Health" {
                @if by_system {
                    span.badge.bad { "Deactivated by the system" }
                    div.small { (health.deactivation_reason) }
                } @else if health.consecutive_failures > 0 {
                    span.badge.warn { (health.consecutive_failures) " failing" }
                    @if !health.last_error.is_empty() { div.small.muted { (truncate(&health.last_error, 80)) } }
                } @else if stats.last_attempt_at.is_some() {
                    span.badge.ok { "Healthy" }
                } @else {
                    span.muted { "No attempts yet" }
                }
                @if health.buffered > 0 { div.small { (view::count(health.buffered)) " events kept" } }
            }
            td data-label="Last sent" {
                @if stats.last_attempt_at.is_some() {
                    (view::time(stats.last_attempt_at.as_ref()))
                    " " (view::http_status_badge(stats.last_attempt_status, stats.last_attempt_success))
                } @else { span.muted { "never" } }
            }
            td data-label="Deliveries" {
                a href={ "/webhooks/" (w.id) "/deliveries" } title="triggered / succeeded / failed" {
                    (view::count(stats.triggered)) " / "
                    span.ok-text { (view::count(stats.succeeded)) } " / "
                    span.bad-text { (view::count(stats.failed)) }
                }
            }
        }
    }
}

/// The status switch: a form button for those who may change it. Activating a webhook that
/// keeps events needs a choice (replay or discard), made on its page.
fn status_toggle(ctx: &Ctx, w: &v1::Webhook, health: &v1::WebhookHealth, back: &str) -> Markup {
    let label = if w.active { "Active" } else { "Inactive" };
    html! {
        @if !ctx.can_manage() {
            span class={ "badge " (if w.active { "ok" } else { "off" }) } { (label) }
        } @else if !w.active && health.buffered > 0 {
            a.switch.off href={ "/webhooks/" (w.id) "#activate" } { span.knob {} (label) " — activate…" }
        } @else {
            form.inline method="post" action={ "/webhooks/" (w.id) "/status" } {
                (view::csrf(ctx))
                input type="hidden" name="active" value=(if w.active { "false" } else { "true" });
                input type="hidden" name="back" value=(back);
                button type="submit" role="switch" aria-checked=(if w.active { "true" } else { "false" })
                    class={ "switch " (if w.active { "on" } else { "off" }) }
                    aria-label={ (if w.active { "Deactivate " } else { "Activate " }) (w.name) } {
                    span.knob {} (label)
                }
            }
        }
    }
}

pub fn method_name(method: i32) -> &'static str {
    match v1::HttpMethod::try_from(method).unwrap_or(v1::HttpMethod::Unspecified) {
        v1::HttpMethod::Put => "PUT",
        v1::HttpMethod::Patch => "PATCH",
        v1::HttpMethod::Get => "GET",
        v1::HttpMethod::Delete => "DELETE",
        _ => "POST",
    }
}

pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}
