//! How webhooks, their health and counts, and test sends are printed: tables for people,
//! one JSON document for scripts.

use anyhow::Context;
use hookd_proto::{convert::from_timestamp, v1};

use crate::client::{
    args,
    output::{Output, attempt_json, attempt_summary, time_json},
    table::Table,
};

pub(super) fn print_test(output: Output, response: &v1::TestWebhookResponse) {
    let attempt = response.attempt.clone().unwrap_or_default();
    let attempt = &attempt;
    let (payload, url) = (response.payload.as_str(), response.url.as_str());
    let filter = response.filter.as_ref();
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "url": url, "payload": payload, "attempt": attempt_json(attempt),
                "filter": filter.map(|f| serde_json::json!({ "passes": f.passes, "reason": f.reason })),
            })
        ),
        Output::Text => {
            println!("test send to {url}");
            match filter {
                Some(f) if f.passes => {
                    println!("  filter    passes: a real event like this one is delivered")
                }
                Some(f) => println!(
                    "  filter    REJECTS this event ({}): a real one would not be delivered",
                    f.reason
                ),
                None => {}
            }
            println!(
                "  result    {}: {}",
                if attempt.success { "succeeded" } else { "failed" },
                attempt_summary(attempt)
            );
            println!("  request headers:");
            for h in &attempt.request_headers {
                println!("    {}: {}", h.name, h.value);
            }
            println!("  payload   {}", if payload.is_empty() { "(none)" } else { payload });
            println!(
                "  response  {}",
                if attempt.response_body.is_empty() { "(empty)" } else { &attempt.response_body }
            );
        }
    }
}

fn auth_json(auth: Option<&v1::EndpointAuth>) -> serde_json::Value {
    use v1::endpoint_auth::Kind;
    match auth.and_then(|a| a.kind.as_ref()) {
        None | Some(Kind::None(_)) => serde_json::json!({ "type": "none" }),
        Some(Kind::Header(h)) => {
            serde_json::json!({ "type": "header", "name": h.name, "value": h.value })
        }
        Some(Kind::ApiKey(k)) => serde_json::json!({
            "type": "api_key", "name": k.name, "value": k.value, "in_query": k.in_query,
        }),
        Some(Kind::Basic(b)) => {
            serde_json::json!({ "type": "basic", "username": b.username, "password": b.password })
        }
        Some(Kind::Bearer(b)) => serde_json::json!({ "type": "bearer", "token": b.token }),
    }
}

/// One line for people; secrets are already masked by the control plane.
fn auth_text(auth: Option<&v1::EndpointAuth>) -> String {
    use v1::endpoint_auth::Kind;
    match auth.and_then(|a| a.kind.as_ref()) {
        None | Some(Kind::None(_)) => "none".to_owned(),
        Some(Kind::Header(h)) => format!("header {}: {}", h.name, h.value),
        Some(Kind::ApiKey(k)) => format!(
            "api key in {} {}: {}",
            if k.in_query { "query parameter" } else { "header" },
            if k.name.is_empty() { "x-api-key" } else { &k.name },
            k.value
        ),
        Some(Kind::Basic(b)) => format!("basic {}:{}", b.username, b.password),
        Some(Kind::Bearer(b)) => format!("bearer {}", b.token),
    }
}

fn stats_json(s: Option<&v1::WebhookStats>) -> serde_json::Value {
    let s = s.copied().unwrap_or_default();
    serde_json::json!({
        "last_attempt_at": time_json(s.last_attempt_at.as_ref()),
        "last_attempt_status": s.last_attempt_status,
        "last_attempt_success": s.last_attempt_success,
        "triggered": s.triggered, "succeeded": s.succeeded, "failed": s.failed,
        "filtered": s.filtered,
    })
}

fn webhook_json(w: &v1::Webhook) -> serde_json::Value {
    serde_json::json!({
        "id": w.id, "name": w.name, "url": w.url, "url_ascii": w.url_ascii,
        "event_types": w.event_types,
        "active": w.active, "description": w.description, "app": w.app,
        "method": args::method_name(w.method),
        "headers": w.headers.iter().map(|h| serde_json::json!({ "name": h.name, "value": h.value })).collect::<Vec<_>>(),
        "auth": auth_json(w.auth.as_ref()),
        "credential_id": (!w.credential_id.is_empty()).then_some(&w.credential_id),
        "fields": w.fields, "format": args::format_name(w.format),
        "attempt_timeout_ms": w.attempt_timeout_ms,
        "retry_schedule": w.retry_policy.as_ref().map(|p| p.delay_seconds.clone()),
        "ordering_key": (!w.ordering_key.is_empty()).then_some(&w.ordering_key),
        "filter": w.filter.clone().map(filter_json),
        "rate_limit": w.rate_limit.map(|r| serde_json::json!({ "per_second": r.per_second, "burst": r.burst })),
        "stats": stats_json(w.stats.as_ref()),
        "created_at": time_json(w.created_at.as_ref()), "updated_at": time_json(w.updated_at.as_ref()),
    })
}

/// The URL as requested (punycode host, percent-encoded path) when it reads differently
/// from the URL as typed, beyond a trailing slash: what the egress policy checks.
fn ascii_url_if_different(w: &v1::Webhook) -> Option<&str> {
    let differs =
        !w.url_ascii.is_empty() && w.url_ascii.trim_end_matches('/') != w.url.trim_end_matches('/');
    differs.then_some(w.url_ascii.as_str())
}

fn last_attempt(s: Option<&v1::WebhookStats>) -> String {
    let Some(s) = s else { return "-".to_owned() };
    let Some(at) = s.last_attempt_at.as_ref().and_then(from_timestamp) else {
        return "-".to_owned();
    };
    let status = if s.last_attempt_status == 0 {
        "no answer".to_owned()
    } else {
        s.last_attempt_status.to_string()
    };
    format!(
        "{} {status}{}",
        at.format("%Y-%m-%d %H:%M:%S"),
        if s.last_attempt_success { "" } else { " (failed)" }
    )
}

/// A webhook and its signing secret, which the control plane shows only at creation.
pub(super) fn print_webhook_with_secret(
    output: Output,
    webhook: Option<v1::Webhook>,
    secret: &str,
) -> anyhow::Result<()> {
    if output == Output::Json {
        let w = webhook.context("control plane sent no webhook")?;
        let mut json = webhook_json(&w);
        json["signing_secret"] = serde_json::Value::from(secret);
        println!("{json}");
        return Ok(());
    }
    print_webhook(output, webhook)?;
    println!("  signing secret {secret}");
    println!("  (verify deliveries with it; `hookd webhook secret ID` shows it again)");
    Ok(())
}

pub(super) fn print_webhook(output: Output, webhook: Option<v1::Webhook>) -> anyhow::Result<()> {
    let w = webhook.context("control plane sent no webhook")?;
    if output == Output::Json {
        println!("{}", webhook_json(&w));
        return Ok(());
    }
    let stats = w.stats.unwrap_or_default();
    let retries = w.retry_policy.as_ref().map_or_else(
        || "dispatcher default".to_owned(),
        |p| {
            if p.delay_seconds.is_empty() {
                "none".to_owned()
            } else {
                p.delay_seconds.iter().map(|d| format!("{d}s")).collect::<Vec<_>>().join(", ")
            }
        },
    );
    println!("webhook {} ({})", w.name, w.id);
    println!("  status       {}", if w.active { "active" } else { "inactive" });
    if let Some(h) = w.health.as_ref().filter(|_| !w.active) {
        let by = match v1::DeactivatedBy::try_from(h.deactivated_by) {
            Ok(v1::DeactivatedBy::System) => "the system",
            Ok(v1::DeactivatedBy::User) => "a user",
            _ => "unknown",
        };
        let since = h.deactivated_at.map(|t| t.seconds).unwrap_or_default();
        let since = chrono::DateTime::from_timestamp(since, 0).unwrap_or_default();
        println!("  deactivated  by {by} at {since}: {}", h.deactivation_reason);
        println!("  buffered     {} events (replay with `activate --replay`)", h.buffered);
    }
    if let Some(h) = w.health.as_ref().filter(|h| h.expired > 0) {
        println!("  expired      {} kept events passed the buffer window unreplayed", h.expired);
    }
    if let Some(p) = &w.health_policy {
        let failures = p.max_failures.map_or_else(|| "default".to_owned(), |n| n.to_string());
        let quiet = p.no_success_secs.map_or_else(|| "default".to_owned(), |s| format!("{s}s"));
        println!("  health       deactivate after {failures} failures and {quiet} without success");
    }
    println!("  url          {} {}", args::method_name(w.method), w.url);
    if let Some(ascii) = ascii_url_if_different(&w) {
        println!("  requested as {ascii}");
    }
    println!("  event types  {}", w.event_types.join(", "));
    if !w.app.is_empty() {
        println!("  app          {}", w.app);
    }
    if !w.description.is_empty() {
        println!("  description  {}", w.description);
    }
    for h in &w.headers {
        println!("  header       {}: {}", h.name, h.value);
    }
    println!("  auth         {}", auth_text(w.auth.as_ref()));
    if !w.credential_id.is_empty() {
        println!("  credential   {}", w.credential_id);
    }
    println!(
        "  payload      {}{}",
        args::format_name(w.format),
        if w.fields.is_empty() {
            String::new()
        } else {
            format!(", fields {}", w.fields.join(" "))
        }
    );
    println!(
        "  timeout      {}",
        if w.attempt_timeout_ms == 0 {
            "dispatcher default".to_owned()
        } else {
            format!("{} ms", w.attempt_timeout_ms)
        }
    );
    println!("  retries      {retries}");
    if !w.ordering_key.is_empty() {
        println!("  ordering     one at a time per {}, in publish order", w.ordering_key);
    }
    if let Some(filter) = w.filter.clone() {
        println!("  filter       {}", filter_json(filter));
    }
    if let Some(r) = w.rate_limit {
        let burst = if r.burst == 0 { r.per_second } else { r.burst };
        println!("  rate limit   {}/s, burst {burst}", r.per_second);
    }
    println!("  last attempt {}", last_attempt(w.stats.as_ref()));
    println!(
        "  deliveries   {} triggered, {} succeeded, {} failed",
        stats.triggered, stats.succeeded, stats.failed
    );
    if w.filter.is_some() || stats.filtered > 0 {
        println!("  filtered     {} events rejected by the filter", stats.filtered);
    }
    Ok(())
}

fn filter_json(filter: prost_types::Struct) -> serde_json::Value {
    hookd_proto::convert::value_to_json(prost_types::Value {
        kind: Some(prost_types::value::Kind::StructValue(filter)),
    })
}

pub(super) fn print_webhooks(output: Output, webhooks: &[v1::Webhook], next_page_token: &str) {
    match output {
        Output::Json => {
            let items: Vec<_> = webhooks.iter().map(webhook_json).collect();
            println!(
                "{}",
                serde_json::json!({ "webhooks": items, "next_page_token": next_page_token })
            );
        }
        Output::Text => {
            let mut table = Table::new(&[
                "NAME",
                "ID",
                "STATUS",
                "METHOD",
                "EVENT TYPES",
                "LAST ATTEMPT",
                "TRIGGERED",
                "SUCCEEDED",
                "FAILED",
                "URL",
            ]);
            for w in webhooks {
                let stats = w.stats.unwrap_or_default();
                table.row(vec![
                    w.name.clone(),
                    w.id.clone(),
                    if w.active { "active" } else { "inactive" }.to_owned(),
                    args::method_name(w.method).to_owned(),
                    w.event_types.join(","),
                    last_attempt(w.stats.as_ref()),
                    stats.triggered.to_string(),
                    stats.succeeded.to_string(),
                    stats.failed.to_string(),
                    match ascii_url_if_different(w) {
                        Some(ascii) => format!("{} ({ascii})", w.url),
                        None => w.url.clone(),
                    },
                ]);
            }
            table.print();
            if !next_page_token.is_empty() {
                println!("next page: --page-token {next_page_token}");
            }
        }
    }
}
