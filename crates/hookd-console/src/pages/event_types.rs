//! C6: the event-type catalog: list, a type with its schema and example, create, edit and
//! delete, with the API's schema errors shown at the field.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use hookd_proto::{
    convert::{json_to_value, value_to_json},
    v1,
};
use maud::{Markup, html};

use crate::{
    Ctx, Shared,
    api::Failure,
    call,
    form::Form,
    try_page,
    view::{self, Input, Section},
};

fn schema_json(t: &v1::EventType) -> String {
    t.schema
        .clone()
        .map(|s| {
            let value = value_to_json(prost_types::Value {
                kind: Some(prost_types::value::Kind::StructValue(s)),
            });
            serde_json::to_string_pretty(&value).unwrap_or_default()
        })
        .unwrap_or_default()
}

fn example_json(t: &v1::EventType) -> String {
    t.example
        .clone()
        .map(|v| serde_json::to_string_pretty(&value_to_json(v)).unwrap_or_default())
        .unwrap_or_default()
}

/// Whether the catalog's changes are out of this session's reach (a portal session limited
/// to an app label reads the tenant-wide catalog but does not change it).
fn can_change(ctx: &Ctx) -> bool {
    ctx.can_manage() && ctx.me.app.is_none()
}

pub async fn list(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    let answer = call!(
        ctx,
        ctx.api.event_types().list_event_types(
            ctx.api.req(v1::ListEventTypesRequest { page_size: 500, page_token: String::new() })
        )
    );
    let body = html! {
        div.titlebar {
            h1 { "Event types" }
            @if can_change(&ctx) { a.button.primary href="/event-types/new" { "New event type" } }
        }
        p.muted { "The catalog of events your platform emits. Once it holds a type, webhooks subscribe to catalogued types (or all events), and events are checked against their type's schema." }
        @if answer.event_types.is_empty() {
            div.empty { p { "The catalog is empty: webhooks may subscribe to any type name." } }
        } @else {
            table.list {
                caption.visually-hidden { "Event types" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Description" } th scope="col" { "Schema" } th scope="col" { "Rejected events" } } }
                tbody {
                    @for t in &answer.event_types {
                        tr {
                            td data-label="Name" { a href={ "/event-types/" (t.name) } { code { (t.name) } } }
                            td data-label="Description" { (t.description) }
                            td data-label="Schema" { @if t.schema.is_some() { span.badge.ok { "schema" } } @else { span.muted { "any data" } } }
                            td data-label="Rejected events" { (view::count(t.rejected)) }
                        }
                    }
                }
            }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::EventTypes, "Event types", body))
}

pub async fn show(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    let t = call!(
        ctx,
        ctx.api.event_types().get_event_type(ctx.api.req(v1::GetEventTypeRequest { name }))
    )
    .event_type
    .unwrap_or_default();
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/event-types" { "Event types" } " / " span { (t.name) } }
        div.titlebar {
            h1 { code { (t.name) } }
            @if can_change(&ctx) {
                div.actions {
                    a.button.secondary href={ "/event-types/" (t.name) "/edit" } { "Edit" }
                    a.button.danger-outline href={ "/event-types/" (t.name) "/delete" } { "Delete" }
                }
            }
        }
        p { (t.description) }
        p.muted { (view::count(t.rejected)) " events rejected by the schema. Updated " (view::time(t.updated_at.as_ref())) "." }
        div.grid2 {
            section { h2 { "JSON Schema of " code { "data" } }
                @if t.schema.is_some() { pre.code { (schema_json(&t)) } } @else { p.muted { "None: any data is accepted." } } }
            section { h2 { "Example" }
                @if t.example.is_some() { pre.code { (example_json(&t)) } } @else { p.muted { "None: test sends generate data from the schema." } } }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::EventTypes, &t.name, body))
}

struct Draft {
    name: String,
    description: String,
    schema: String,
    example: String,
}

impl Draft {
    fn from_form(form: &Form) -> Self {
        Self {
            name: form.text("name"),
            description: form.text("description"),
            schema: form.raw("schema").trim().to_owned(),
            example: form.raw("example").trim().to_owned(),
        }
    }

    /// The type as the API takes it; JSON that does not parse is this form's own error.
    fn event_type(&self) -> Result<v1::EventType, Failure> {
        let schema = match self.schema.as_str() {
            "" => None,
            text => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(_)) => {
                    match json_to_value(serde_json::from_str(text).unwrap_or_default()).kind {
                        Some(prost_types::value::Kind::StructValue(s)) => Some(s),
                        _ => None,
                    }
                }
                Ok(_) => {
                    return Err(Failure::invalid(
                        "schema",
                        "must be a JSON object (a JSON Schema)",
                    ));
                }
                Err(e) => return Err(Failure::invalid("schema", format!("is not JSON: {e}"))),
            },
        };
        let example = match self.example.as_str() {
            "" => None,
            text => Some(json_to_value(
                serde_json::from_str(text)
                    .map_err(|e| Failure::invalid("example", format!("is not JSON: {e}")))?,
            )),
        };
        Ok(v1::EventType {
            name: self.name.clone(),
            description: self.description.clone(),
            schema,
            example,
            ..v1::EventType::default()
        })
    }
}

fn form_page(ctx: &Ctx, editing: Option<&str>, d: &Draft, failure: Option<&Failure>) -> Markup {
    let title = if editing.is_some() { "Edit event type" } else { "New event type" };
    let action =
        editing.map_or("/event-types/new".to_owned(), |n| format!("/event-types/{n}/edit"));
    view::page(
        ctx,
        Section::EventTypes,
        title,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href="/event-types" { "Event types" } }
            h1 { (title) }
            (view::form_error(failure))
            form method="post" action=(action) novalidate {
                (view::csrf(ctx))
                @if let Some(name) = editing {
                    p { "Name: " code { (name) } }
                    input type="hidden" name="name" value=(name);
                } @else {
                    (Input::new("name", "Name", &d.name).required().placeholder("contact-created")
                        .hint("Letters, digits, - and _, at most 128.").render(failure))
                }
                (view::textarea("description", "Description", &d.description, 2, None, "description", failure))
                (view::textarea("schema", "JSON Schema of the data (optional)", &d.schema, 10,
                    Some("Self-contained (remote $refs are not fetched). Events whose data does not satisfy it are refused."), "schema", failure))
                (view::textarea("example", "Example data (optional)", &d.example, 6,
                    Some("Used by test sends; must satisfy the schema."), "example", failure))
                div.actions {
                    button.primary type="submit" { (if editing.is_some() { "Save changes" } else { "Create event type" }) }
                    a href="/event-types" { "Cancel" }
                }
            }
        },
    )
}

fn refuse_changes(ctx: &Ctx) -> Option<Response> {
    (!can_change(ctx)).then(|| {
        ctx.failure(&Failure::new(
            tonic::Code::PermissionDenied,
            "permission denied: this session cannot change the event-type catalog",
        ))
    })
}

pub async fn new_form(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(r) = refuse_changes(&ctx) {
        return r;
    }
    let d = Draft {
        name: String::new(),
        description: String::new(),
        schema: String::new(),
        example: String::new(),
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
    let result = match d.event_type() {
        Ok(t) => ctx
            .api
            .event_types()
            .create_event_type(ctx.api.req(v1::CreateEventTypeRequest { event_type: Some(t) }))
            .await
            .map(|_| ())
            .map_err(Failure::from),
        Err(f) => Err(f),
    };
    match result {
        Ok(()) => ctx.redirect_with(&format!("/event-types/{}", d.name), "Event type created."),
        Err(f) if matches!(f.code, tonic::Code::InvalidArgument | tonic::Code::AlreadyExists) => {
            ctx.page(f.http_status(), form_page(&ctx, None, &d, Some(&f)))
        }
        Err(f) => ctx.failure(&f),
    }
}

pub async fn edit_form(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(r) = refuse_changes(&ctx) {
        return r;
    }
    let t = call!(
        ctx,
        ctx.api
            .event_types()
            .get_event_type(ctx.api.req(v1::GetEventTypeRequest { name: name.clone() }))
    )
    .event_type
    .unwrap_or_default();
    let d = Draft {
        name: t.name.clone(),
        description: t.description.clone(),
        schema: schema_json(&t),
        example: example_json(&t),
    };
    ctx.page(StatusCode::OK, form_page(&ctx, Some(&name), &d, None))
}

pub async fn update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, form) = try_page!(shared.post_ctx(&headers, &body).await);
    let mut d = Draft::from_form(&form);
    d.name.clone_from(&name);
    let result = match d.event_type() {
        Ok(t) => ctx
            .api
            .event_types()
            .update_event_type(ctx.api.req(v1::UpdateEventTypeRequest {
                event_type: Some(t),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["description".into(), "schema".into(), "example".into()],
                }),
            }))
            .await
            .map(|_| ())
            .map_err(Failure::from),
        Err(f) => Err(f),
    };
    match result {
        Ok(()) => ctx.redirect_with(&format!("/event-types/{name}"), "Changes saved."),
        Err(f) if f.code == tonic::Code::InvalidArgument => {
            ctx.page(f.http_status(), form_page(&ctx, Some(&name), &d, Some(&f)))
        }
        Err(f) => ctx.failure(&f),
    }
}

pub async fn confirm_delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let ctx = try_page!(shared.ctx(&headers).await);
    if let Some(r) = refuse_changes(&ctx) {
        return r;
    }
    let body = html! {
        h1 { "Delete event type " code { (name) } "?" }
        p { "Refused while a webhook subscribes to it by name." }
        form method="post" action={ "/event-types/" (name) "/delete" } {
            (view::csrf(&ctx))
            div.actions { button.danger type="submit" { "Delete event type" } a href={ "/event-types/" (name) } { "Cancel" } }
        }
    };
    ctx.page(StatusCode::OK, view::page(&ctx, Section::EventTypes, "Delete event type", body))
}

pub async fn delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (ctx, _) = try_page!(shared.post_ctx(&headers, &body).await);
    call!(
        ctx,
        ctx.api.event_types().delete_event_type(ctx.api.req(v1::DeleteEventTypeRequest { name }))
    );
    ctx.redirect_with("/event-types", "Event type deleted.")
}
