//! C5: a webhook's delivery history (filtered by status and time), one delivery with its
//! payload and every attempt, resend, and recovery of failed deliveries since a time.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use hookd_proto::{convert::timestamp, v1};
use maud::{Markup, html};

use crate::{
    Ctx, Shared,
    api::Failure,
    call,
    form::{Form, query},
    try_page,
    view::{self, Section},
};

const PAGE_SIZE: u32 = 50;

fn status_name(status: i32) -> &'static str {
    match v1::DeliveryStatus::try_from(status).unwrap_or_default() {
        v1::DeliveryStatus::Pending => "pending",
        v1::DeliveryStatus::Delivered => "delivered",
        v1::DeliveryStatus::Failed => "failed",
        v1::DeliveryStatus::Unspecified => "unknown",
    }
}

fn status_badge(status: i32) -> Markup {
    let name = status_name(status);
    let class = match name {
        "delivered" => "badge ok",
        "failed" => "badge bad",
        _ => "badge warn",
    };
    html! { span class=(class) { (name) } }
}

/// A `datetime-local` value (`2026-05-01T12:30`), read as UTC.
fn parse_local(value: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .map(|t| t.and_utc())
}

pub async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    let form = Form::from_query(&uri);
    let status = form.text("status");
    let since_text = form.text("since");
    let since = match since_text.as_str() {
        "" => None,
        text => match parse_local(text) {
            Some(t) => Some(timestamp(t)),
            None => {
                return ctx.failure(&Failure::invalid(
                    "since",
                    "write the time as YYYY-MM-DDTHH:MM (UTC)",
                ));
            }
        },
    };
    let status_filter = match status.as_str() {
        "pending" => v1::DeliveryStatus::Pending,
        "delivered" => v1::DeliveryStatus::Delivered,
        "failed" => v1::DeliveryStatus::Failed,
        _ => v1::DeliveryStatus::Unspecified,
    };
    let webhook = call!(
        ctx,
        ctx.api.webhooks().get_webhook(ctx.api.req(v1::GetWebhookRequest { id: id.clone() }))
    )
    .webhook
    .unwrap_or_default();
    let page_token = form.text("page");
    let answer = call!(
        ctx,
        ctx.api.deliveries().list_deliveries(ctx.api.req(v1::ListDeliveriesRequest {
            webhook_id: id.clone(),
            page_size: PAGE_SIZE,
            page_token: page_token.clone(),
            status: status_filter.into(),
            since,
        }))
    );
    let filters = [("status", status.as_str()), ("since", since_text.as_str())];
    let older = [filters[0], filters[1], ("page", answer.next_page_token.as_str())];
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/webhooks" { "Webhooks" } " / " a href={ "/webhooks/" (id) } { (webhook.name) } " / " span { "Deliveries" }
        }
        h1 { "Delivery history" }
        p.muted { "Deliveries of " strong { (webhook.name) } " to " code.break { (webhook.url) } ", newest first. Times are UTC." }
        form.filters method="get" action={ "/webhooks/" (id) "/deliveries" } role="search" aria-label="Filter deliveries" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "Any" }
                    @for s in ["pending", "delivered", "failed"] { option value=(s) selected[status == s] { (s) } }
                }
            }
            div.field {
                label for="f-since" { "Created since (UTC)" }
                input #f-since type="datetime-local" name="since" value=(since_text);
            }
            div.actions {
                button.secondary type="submit" { "Filter" }
                @if !status.is_empty() || !since_text.is_empty() { a href={ "/webhooks/" (id) "/deliveries" } { "Clear" } }
            }
        }
        @if answer.deliveries.is_empty() {
            div.empty { p { "No deliveries" @if !status.is_empty() || !since_text.is_empty() { " match these filters" } "." } }
        } @else {
            table.list.deliveries {
                caption.visually-hidden { "Deliveries" }
                thead { tr {
                    th scope="col" { "Created" } th scope="col" { "Event" } th scope="col" { "Status" }
                    th scope="col" { "Attempts" } th scope="col" { "Last attempt" } th scope="col" { "Next attempt" }
                } }
                tbody {
                    @for d in &answer.deliveries {
                        tr {
                            td data-label="Created" { a href={ "/deliveries/" (d.id) } { (view::time(d.created_at.as_ref())) } }
                            td data-label="Event" { code { (d.event_type) } div.small.muted { (d.event_id) } }
                            td data-label="Status" { (status_badge(d.status)) }
                            td data-label="Attempts" { (d.attempt_count) }
                            td data-label="Last attempt" { (view::time(d.last_attempt_at.as_ref())) }
                            td data-label="Next attempt" { (view::time(d.next_attempt_at.as_ref())) }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !page_token.is_empty() { a.button.secondary href={ "/webhooks/" (id) "/deliveries?" (query(&filters)) } { "First page" } }
            @if !answer.next_page_token.is_empty() {
                a.button.secondary href={ "/webhooks/" (id) "/deliveries?" (query(&older)) } rel="next" { "Older →" }
            }
        }
        @if ctx.can_manage() {
            section.card aria-labelledby="recover-h" {
                h2 #recover-h { "Recover failed deliveries" }
                p.hint { "Resends every failed delivery of this webhook created since the time below (UTC), each as a new attempt with its original " code { "webhook-id" } "." }
                form.inlineform method="post" action={ "/webhooks/" (id) "/recover" } {
                    (view::csrf(&ctx))
                    div.field #field-since {
                        label for="in-recover-since" { "Failed since (UTC)" }
                        input #in-recover-since type="datetime-local" name="since" required value=(since_text);
                    }
                    button.secondary type="submit" { "Recover failed" }
                }
            }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::Webhooks, "Delivery history", body))
}

pub async fn show(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    render(&ctx, &id).await
}

async fn render(ctx: &Ctx, id: &str) -> Response {
    let d = call!(
        ctx,
        ctx.api
            .deliveries()
            .get_delivery(ctx.api.req(v1::GetDeliveryRequest { id: id.to_owned() }))
    )
    .delivery
    .unwrap_or_default();
    let webhook_name = match ctx
        .api
        .webhooks()
        .get_webhook(ctx.api.req(v1::GetWebhookRequest { id: d.webhook_id.clone() }))
        .await
    {
        Ok(a) => a.into_inner().webhook.map(|w| w.name),
        Err(_) => None,
    };
    let pending = d.status == v1::DeliveryStatus::Pending as i32;
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/webhooks" { "Webhooks" } " / "
            a href={ "/webhooks/" (d.webhook_id) } { (webhook_name.as_deref().unwrap_or(&d.webhook_id)) } " / "
            a href={ "/webhooks/" (d.webhook_id) "/deliveries" } { "Deliveries" }
        }
        div.titlebar {
            h1 { "Delivery " code { (d.id) } " " (status_badge(d.status)) }
            @if ctx.can_manage() && !pending {
                form.inline method="post" action={ "/deliveries/" (d.id) "/resend" } {
                    (view::csrf(ctx)) button.primary type="submit" { "Resend" }
                }
            }
        }
        dl.details.card {
            dt { "Event" } dd { code { (d.event_type) } " " span.muted { (d.event_id) } }
            dt { code { "webhook-id" } } dd { code { (d.id) } span.muted { " (the same on every attempt and resend)" } }
            dt { "Created" } dd { (view::time(d.created_at.as_ref())) }
            dt { "Attempts" } dd { (d.attempt_count) }
            @if pending { dt { "Next attempt" } dd { (view::time(d.next_attempt_at.as_ref())) } }
        }
        h2 { "Payload" }
        pre.code #payload { (view::pretty_json(&d.payload)) }
        h2 { "Attempts" }
        @if d.attempts.is_empty() { p.muted { "No attempt recorded yet." } }
        ol.attempts {
            @for a in d.attempts.iter().rev() {
                li.card.attempt {
                    h3 { "Attempt " (a.number) " "
                        @if a.success { span.badge.ok { "success" } } @else { span.badge.bad { "failure" } }
                        " " (view::http_status_badge(a.http_status, a.success)) }
                    p.small { (view::time(a.started_at.as_ref())) " · " (a.latency_ms) " ms" }
                    @if !a.error.is_empty() { div.notice.error { (a.error) } }
                    details open[a.number == d.attempt_count] {
                        summary { "Response excerpt" }
                        pre.code { @if a.response_body.is_empty() { span.muted { "(empty)" } } @else { (a.response_body) } }
                    }
                    details {
                        summary { "Request headers (credentials redacted)" }
                        table.kv { tbody { @for h in &a.request_headers { tr { th scope="row" { (h.name) } td { code { (h.value) } } } } } }
                    }
                }
            }
        }
    };
    ctx.page(StatusCode::OK, view::page(ctx, Section::Webhooks, "Delivery", body))
}

pub async fn resend(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, _) = try_page!(shared.post_ctx(&headers, &body).await);
    call!(
        ctx,
        ctx.api
            .deliveries()
            .resend_delivery(ctx.api.req(v1::ResendDeliveryRequest { id: id.clone() }))
    );
    ctx.redirect_with(
        &format!("/deliveries/{id}"),
        "Resent: the new attempt shows here once it is made.",
    )
}

pub async fn recover(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let Some(since) = parse_local(&form.text("since")) else {
        return ctx.failure(&Failure::invalid("since", "give the time as YYYY-MM-DDTHH:MM (UTC)"));
    };
    let answer = call!(
        ctx,
        ctx.api.deliveries().recover_failed_deliveries(ctx.api.req(
            v1::RecoverFailedDeliveriesRequest {
                webhook_id: id.clone(),
                since: Some(timestamp(since)),
            }
        ))
    );
    ctx.redirect_with(
        &format!("/webhooks/{id}/deliveries"),
        &format!("{} failed deliveries resent.", answer.resent),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_local_values_are_read_as_utc() {
        let t = parse_local("2026-05-01T12:30").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-05-01T12:30:00+00:00");
        assert!(parse_local("2026-05-01T12:30:15").is_some());
        assert!(parse_local("yesterday").is_none());
    }
}
