//! The page frame and the small pieces every page uses: navigation, messages, form fields
//! with their errors, badges, times. maud escapes every value, so a webhook named
//! `<script>…` is shown as text.

use maud::{DOCTYPE, Markup, html};

use crate::{Ctx, api::Failure, assets};

/// Which section of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Webhooks,
    EventTypes,
    Credentials,
    Access,
}

fn head(title: &str, refresh: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            @if let Some(to) = refresh { meta http-equiv="refresh" content={ "0;url=" (to) }; }
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " · hookd" }
            link rel="stylesheet" href={ "/assets/console.css?v=" (assets::version()) };
            script src={ "/assets/console.js?v=" (assets::version()) } defer {}
        }
    }
}

/// A page of the signed-in console.
pub fn page(ctx: &Ctx, section: Section, title: &str, body: Markup) -> Markup {
    let nav = |s: Section, href: &str, label: &str| {
        html! {
            a href=(href) aria-current=[(s == section).then_some("page")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/webhooks" { span.logo aria-hidden="true" { "⟳" } " hookd" }
                    nav aria-label="Main" {
                        (nav(Section::Webhooks, "/webhooks", "Webhooks"))
                        (nav(Section::EventTypes, "/event-types", "Event types"))
                        @if ctx.me.app.is_none() {
                            (nav(Section::Credentials, "/credentials", "OAuth2 credentials"))
                        }
                        @if ctx.is_admin() {
                            (nav(Section::Access, "/access", "Access"))
                        }
                    }
                    div.who {
                        span.tenant title="Tenant" { (ctx.me.tenant) }
                        @if ctx.me.portal { span.badge.portal title="Opened from a portal link" { "portal" } }
                        span.badge.role title="Role" { (ctx.me.role) }
                        @if let Some(app) = &ctx.me.app {
                            span.badge.app title="App label" { "app: " (app) }
                        }
                        @if !ctx.can_manage() {
                            span.badge.readonly { "read-only" }
                        }
                        form method="post" action="/sign-out" {
                            (csrf(ctx))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    @if let Some(flash) = &ctx.flash {
                        div.notice.ok role="status" { (flash) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page outside a session (sign-in, portal link errors).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    bare_page_to(title, body, None)
}

/// A bare page that moves the browser on to `refresh` at once.
pub fn bare_page_to(title: &str, body: Markup, refresh: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, refresh))
            body.bare {
                main #main {
                    div.card.narrow {
                        p.brand { span.logo aria-hidden="true" { "⟳" } " hookd" }
                        (body)
                    }
                }
            }
        }
    }
}

pub fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.session.csrf); }
}

/// A refused call, as a page.
pub fn failure_page(ctx: &Ctx, failure: &Failure) -> Markup {
    let title = failure_title(failure);
    page(
        ctx,
        Section::Webhooks,
        title,
        html! {
            h1 { (title) }
            div.notice.error role="alert" { (failure.message) }
            p { a href="/webhooks" { "Back to the webhooks" } }
        },
    )
}

pub fn bare_failure(failure: &Failure) -> String {
    bare_page(
        failure_title(failure),
        html! {
            h1 { (failure_title(failure)) }
            div.notice.error role="alert" { (failure.message) }
        },
    )
    .into_string()
}

fn failure_title(failure: &Failure) -> &'static str {
    match failure.code {
        tonic::Code::PermissionDenied => "Not allowed",
        tonic::Code::NotFound => "Not found",
        tonic::Code::InvalidArgument => "Not accepted",
        tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition => "Not possible now",
        _ => "The control plane is unavailable",
    }
}

/// An error banner above a form: the message, with a link to the field it names.
pub fn form_error(failure: Option<&Failure>) -> Markup {
    html! {
        @if let Some(f) = failure {
            div.notice.error role="alert" #form-error {
                @match &f.field {
                    Some(field) => { a href={ "#field-" (field) } { (f.message) } }
                    None => { (f.message) }
                }
            }
        }
    }
}

/// The error of `field`, if the failure names it, for `aria-describedby`.
pub fn field_error<'a>(failure: Option<&'a Failure>, field: &str) -> Option<&'a str> {
    failure.filter(|f| f.field.as_deref() == Some(field)).map(Failure::reason)
}

/// A labelled text input with its hint and error.
pub struct Input<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub value: &'a str,
    pub kind: &'a str,
    pub hint: Option<&'a str>,
    pub required: bool,
    pub placeholder: Option<&'a str>,
    /// The API field whose errors show here (often the same as `name`).
    pub field: &'a str,
    /// Tells inputs of the same name apart on a page with several forms.
    pub id_suffix: &'a str,
}

impl<'a> Input<'a> {
    pub fn new(name: &'a str, label: &'a str, value: &'a str) -> Self {
        Self {
            name,
            label,
            value,
            kind: "text",
            hint: None,
            required: false,
            placeholder: None,
            field: name,
            id_suffix: "",
        }
    }

    pub fn id_suffix(mut self, suffix: &'a str) -> Self {
        self.id_suffix = suffix;
        self
    }

    pub fn kind(mut self, kind: &'a str) -> Self {
        self.kind = kind;
        self
    }

    pub fn hint(mut self, hint: &'a str) -> Self {
        self.hint = Some(hint);
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn placeholder(mut self, p: &'a str) -> Self {
        self.placeholder = Some(p);
        self
    }

    pub fn field(mut self, field: &'a str) -> Self {
        self.field = field;
        self
    }

    pub fn render(&self, failure: Option<&Failure>) -> Markup {
        let key = format!("{}{}", self.name, self.id_suffix);
        let id = format!("in-{key}");
        let error = field_error(failure, self.field);
        let described = described_by(&key, self.hint.is_some(), error.is_some());
        html! {
            div.field #{ "field-" (self.field) } {
                label for=(id) { (self.label) @if self.required { span.req aria-hidden="true" { " *" } } }
                input #(id) type=(self.kind) name=(self.name) value=(self.value)
                    required[self.required] placeholder=[self.placeholder]
                    aria-invalid=[error.map(|_| "true")]
                    aria-describedby=[described.as_deref()]
                    autocomplete=[(self.kind == "password").then_some("new-password")];
                (hint_and_error(&key, self.hint, error))
            }
        }
    }
}

pub fn described_by(name: &str, hint: bool, error: bool) -> Option<String> {
    let mut ids = Vec::new();
    if hint {
        ids.push(format!("hint-{name}"));
    }
    if error {
        ids.push(format!("err-{name}"));
    }
    (!ids.is_empty()).then(|| ids.join(" "))
}

pub fn hint_and_error(name: &str, hint: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(hint) = hint { p.hint #{ "hint-" (name) } { (hint) } }
        @if let Some(error) = error { p.error #{ "err-" (name) } role="alert" { (error) } }
    }
}

/// A labelled textarea with its hint and error.
pub fn textarea(
    name: &str,
    label: &str,
    value: &str,
    rows: u32,
    hint: Option<&str>,
    field: &str,
    failure: Option<&Failure>,
) -> Markup {
    let id = format!("in-{name}");
    let error = field_error(failure, field);
    html! {
        div.field #{ "field-" (field) } {
            label for=(id) { (label) }
            textarea #(id) name=(name) rows=(rows) spellcheck="false"
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=[described_by(name, hint.is_some(), error.is_some()).as_deref()] { (value) }
            (hint_and_error(name, hint, error))
        }
    }
}

/// A labelled select of `(value, label)` options.
pub fn select(
    name: &str,
    label: &str,
    options: &[(&str, &str)],
    selected: &str,
    field: &str,
    failure: Option<&Failure>,
) -> Markup {
    select_in(name, "", label, options, selected, (field, failure))
}

/// [`select`] with an id suffix, for a page with several forms.
pub fn select_in(
    name: &str,
    suffix: &str,
    label: &str,
    options: &[(&str, &str)],
    selected: &str,
    (field, failure): (&str, Option<&Failure>),
) -> Markup {
    let id = format!("in-{name}{suffix}");
    let error = field_error(failure, field);
    html! {
        div.field #{ "field-" (field) } {
            label for=(id) { (label) }
            select #(id) name=(name) aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| format!("err-{name}"))] {
                @for (value, text) in options {
                    option value=(value) selected[*value == selected] { (text) }
                }
            }
            (hint_and_error(name, None, error))
        }
    }
}

pub fn time(t: Option<&prost_types::Timestamp>) -> Markup {
    match t.and_then(hookd_proto::convert::from_timestamp) {
        Some(t) => html! {
            time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
                (t.format("%Y-%m-%d %H:%M:%S UTC"))
            }
        },
        None => html! { span.muted { "—" } },
    }
}

/// A JSON text pretty-printed, or as it is when it does not parse.
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

pub fn http_status_badge(status: u32, success: bool) -> Markup {
    let class = if success { "badge ok" } else { "badge bad" };
    html! {
        @if status == 0 { span class=(class) { "no answer" } }
        @else { span class=(class) { "HTTP " (status) } }
    }
}

/// A value shown once (a new token, a revealed secret) with a copy button for scripts.
pub fn secret_box(label: &str, value: &str, id: &str) -> Markup {
    html! {
        div.secret {
            label for=(id) { (label) }
            div.copyrow {
                input #(id) type="text" readonly value=(value) spellcheck="false";
                button.secondary type="button" data-copy={ "#" (id) } hidden { "Copy" }
            }
        }
    }
}

/// A non-breaking thin space, for numbers like 10 000.
pub fn count(n: u64) -> Markup {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    html! { (out) }
}
