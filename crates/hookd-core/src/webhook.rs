//! Webhook definitions and the rules for a valid one.

use std::time::Duration;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    CredentialId, EventType, InvalidField, RetrySchedule, WebhookId,
    endpoint::{EndpointAuth, Header, HttpMethod, validate_headers},
    event::validate_token,
    health::{HealthPolicy, MAX_NO_SUCCESS_FOR},
    payload::{PayloadFormat, validate_fields},
    retry::MAX_RETRY_DELAY,
    signing::SigningKeys,
};

/// The longest a webhook may let an attempt take.
pub const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most retries a webhook's schedule may have.
pub const MAX_RETRIES: usize = 20;

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_DESCRIPTION_LEN: usize = 1024;
pub const MAX_EVENT_TYPES: usize = 256;
pub const MAX_APP_LEN: usize = 128;
/// The event type pattern that subscribes to every event type.
pub const ALL_EVENT_TYPES: &str = "*";

/// A stored webhook definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: WebhookId,
    pub spec: WebhookSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a user decides about a webhook; validated by [`WebhookSpec::validate`]. The default
/// is not valid (no name, URL or event types) but gives every option its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSpec {
    pub name: String,
    pub url: String,
    /// Sorted and without duplicates once validated.
    pub event_types: Vec<String>,
    pub active: bool,
    pub description: String,
    /// No complete answer within this time fails an attempt; `None` means the dispatcher's
    /// default (10 s). At most [`MAX_ATTEMPT_TIMEOUT`].
    #[serde(default)]
    pub attempt_timeout: Option<Duration>,
    /// Delays before each retry; `None` means the dispatcher's default schedule.
    #[serde(default)]
    pub retry_schedule: Option<RetrySchedule>,
    /// A label for the producer's own use (Mailingwork's `app`); lists can filter on it.
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// Sent with every delivery, in this order; names lowercase once validated.
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub auth: EndpointAuth,
    /// An OAuth2 credential whose access token goes in `Authorization: Bearer`.
    #[serde(default)]
    pub credential_id: Option<CredentialId>,
    /// JSON pointers into the event data; empty sends the raw data.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub format: PayloadFormat,
    /// Keys that sign deliveries, current first. Generated and rotated by the control plane,
    /// never set by a user; empty only in specs not yet stored.
    #[serde(default)]
    pub signing: SigningKeys,
    /// Thresholds of the health rule for this webhook; unset ones are the deployment's.
    #[serde(default)]
    pub health: HealthPolicy,
}

/// What the history says about a webhook, kept current as results arrive. Test sends are not
/// counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookStats {
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// HTTP status of the last attempt; `None` when it got no answer (or there was none).
    pub last_attempt_status: Option<u16>,
    /// Whether the last attempt succeeded.
    pub last_attempt_succeeded: bool,
    /// Deliveries created (one per matching event).
    pub triggered: u64,
    /// Deliveries that ended delivered.
    pub succeeded: u64,
    /// Deliveries that ended failed (retries exhausted).
    pub failed: u64,
}

/// An app label: at most [`MAX_APP_LEN`] characters, no control characters (empty: none).
pub fn validate_app(app: &str) -> Result<(), InvalidField> {
    if app.chars().count() > MAX_APP_LEN || app.chars().any(char::is_control) {
        return Err(InvalidField::new(
            "app",
            format!("must be at most {MAX_APP_LEN} characters without control characters"),
        ));
    }
    Ok(())
}

impl WebhookSpec {
    /// Checks every field and normalises the event types (sorted, deduplicated). The first
    /// problem found is returned, naming its field.
    pub fn validate(mut self) -> Result<Self, InvalidField> {
        self.name = validate_name(&self.name)?;
        validate_url(&self.url)?;
        self.event_types = validate_event_types(&self.event_types)?;
        if let Some(timeout) = self.attempt_timeout
            && (timeout.is_zero() || timeout > MAX_ATTEMPT_TIMEOUT)
        {
            return Err(InvalidField::new(
                "attempt_timeout_ms",
                format!("must be between 1 and {} ms", MAX_ATTEMPT_TIMEOUT.as_millis()),
            ));
        }
        if let Some(schedule) = &self.retry_schedule {
            if schedule.delays.len() > MAX_RETRIES {
                return Err(InvalidField::new(
                    "retry_schedule",
                    format!("must have at most {MAX_RETRIES} delays"),
                ));
            }
            if schedule.delays.iter().any(|d| *d > MAX_RETRY_DELAY) {
                return Err(InvalidField::new(
                    "retry_schedule",
                    format!("delays must be at most {} s", MAX_RETRY_DELAY.as_secs()),
                ));
            }
        }
        if self.health.no_success_for.is_some_and(|d| d > MAX_NO_SUCCESS_FOR) {
            return Err(InvalidField::new(
                "health_policy",
                format!("no_success_secs must be at most {} s", MAX_NO_SUCCESS_FOR.as_secs()),
            ));
        }
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(InvalidField::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
            ));
        }
        self.app = self.app.trim().to_owned();
        validate_app(&self.app)?;
        self.headers = validate_headers(self.headers)?;
        self.auth = self.auth.validate()?;
        if let Some(auth_header) = self.auth.header_name()
            && self.headers.iter().any(|h| h.name == auth_header)
        {
            return Err(InvalidField::new(
                "headers",
                format!("{auth_header:?} is already set by the webhook's auth"),
            ));
        }
        if self.credential_id.is_some() && self.auth.uses_authorization() {
            return Err(InvalidField::new(
                "auth",
                "an OAuth2 credential sets the Authorization header; use auth none or a custom header with it",
            ));
        }
        if let Some(id) = &self.credential_id
            && !id.as_str().starts_with("cred_")
        {
            return Err(InvalidField::new(
                "credential_id",
                format!("{id:?} is not a credential id"),
            ));
        }
        self.fields = validate_fields(self.fields)?;
        Ok(self)
    }

    /// A copy safe to show: auth secrets replaced by their masks, signing keys left out.
    pub fn masked(&self) -> Self {
        Self { auth: self.auth.masked(), signing: SigningKeys::default(), ..self.clone() }
    }

    /// The URL as deliveries request it: [`ascii_url`] of `url`, or `url` itself if it does
    /// not parse (it was validated when stored, so it does).
    pub fn ascii_url(&self) -> Cow<'_, str> {
        ascii_url(&self.url).map_or(Cow::Borrowed(self.url.as_str()), Cow::Owned)
    }

    /// Whether an event of type `event_type` goes to this webhook (ignoring `active`).
    pub fn subscribes_to(&self, event_type: &EventType) -> bool {
        self.event_types.iter().any(|t| t == ALL_EVENT_TYPES || t == event_type.as_str())
    }
}

impl Webhook {
    /// Whether an event of type `event_type` is delivered to this webhook now.
    pub fn receives(&self, event_type: &EventType) -> bool {
        self.spec.active && self.spec.subscribes_to(event_type)
    }
}

pub(crate) fn validate_name(name: &str) -> Result<String, InvalidField> {
    let name = name.trim();
    if name.is_empty() {
        return Err(InvalidField::new("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(InvalidField::new(
            "name",
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidField::new("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// `raw` as requests go to it: the WHATWG serialisation, with the host in ASCII (an
/// internationalised name as punycode, `bücher.example` → `xn--bcher-kva.example`; an IPv4
/// address in dotted decimal, `2130706433` → `127.0.0.1`) and the path percent-encoded. This
/// host is the one the egress policy checks, so reads show it beside the URL as typed.
/// `None` if `raw` is not a URL.
pub fn ascii_url(raw: &str) -> Option<String> {
    Url::parse(raw).ok().map(String::from)
}

/// Refuses control characters (CR and LF would split the request line; URL parsers drop tabs
/// and newlines silently, so what is stored would not be what is requested), invisible and
/// direction-changing format characters (they make a URL read as another), and leading or
/// trailing spaces.
pub(crate) fn check_url_characters(field: &'static str, raw: &str) -> Result<(), InvalidField> {
    let invisible = |c: char| matches!(c, '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
    if let Some((at, c)) = raw.char_indices().find(|(_, c)| c.is_control() || invisible(*c)) {
        return Err(InvalidField::new(
            field,
            format!(
                "contains U+{:04X} at byte {at}; control and invisible characters (CR, LF, tab, …) are not allowed: remove or percent-encode them",
                u32::from(c)
            ),
        ));
    }
    if raw.trim() != raw {
        return Err(InvalidField::new(field, "must not start or end with spaces"));
    }
    Ok(())
}

fn validate_url(raw: &str) -> Result<(), InvalidField> {
    if raw.is_empty() {
        return Err(InvalidField::new("url", "must not be empty"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(InvalidField::new("url", format!("must be at most {MAX_URL_LEN} characters")));
    }
    check_url_characters("url", raw)?;
    let url = Url::parse(raw).map_err(|e| {
        InvalidField::new(
            "url",
            format!("{raw:?} is not an absolute URL ({e}); use http(s)://host/path"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InvalidField::new(
            "url",
            format!("scheme {:?} is not allowed; use http or https", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(InvalidField::new("url", "must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidField::new(
            "url",
            "must not carry credentials; configure endpoint authentication instead",
        ));
    }
    if url.fragment().is_some() {
        return Err(InvalidField::new("url", "must not have a fragment (#...)"));
    }
    Ok(())
}

fn validate_event_types(types: &[String]) -> Result<Vec<String>, InvalidField> {
    if types.is_empty() {
        return Err(InvalidField::new(
            "event_types",
            "must name at least one event type, or \"*\" for all",
        ));
    }
    if types.len() > MAX_EVENT_TYPES {
        return Err(InvalidField::new(
            "event_types",
            format!("must name at most {MAX_EVENT_TYPES} event types"),
        ));
    }
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        let t = t.trim();
        if t != ALL_EVENT_TYPES {
            validate_token("event_types", t, crate::event::MAX_EVENT_TYPE_LEN)?;
        }
        out.push(t.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WebhookSpec {
        WebhookSpec {
            name: "crm".into(),
            url: "https://example.com/hooks".into(),
            event_types: vec!["contact-created".into()],
            active: true,
            description: String::new(),
            attempt_timeout: None,
            retry_schedule: None,
            app: String::new(),
            method: HttpMethod::Post,
            headers: vec![],
            auth: EndpointAuth::None,
            credential_id: None,
            fields: vec![],
            format: PayloadFormat::Envelope,
            signing: SigningKeys::default(),
            health: HealthPolicy::default(),
        }
    }

    #[test]
    fn a_health_policy_is_bounded() {
        let long = WebhookSpec {
            health: HealthPolicy {
                max_failures: Some(3),
                no_success_for: Some(MAX_NO_SUCCESS_FOR + Duration::from_secs(1)),
            },
            ..spec()
        };
        assert_eq!(rejected_field(long), "health_policy");
        let own = HealthPolicy { max_failures: Some(0), no_success_for: Some(MAX_NO_SUCCESS_FOR) };
        assert!(WebhookSpec { health: own, ..spec() }.validate().is_ok());
    }

    fn rejected_field(spec: WebhookSpec) -> &'static str {
        spec.validate().expect_err("must be rejected").field
    }

    #[test]
    fn accepts_a_valid_spec_and_normalises_event_types() {
        let mut s = spec();
        s.name = "  crm  ".into();
        s.event_types = vec!["b".into(), "a".into(), "b".into()];
        let s = s.validate().expect("valid");
        assert_eq!(s.name, "crm");
        assert_eq!(s.event_types, ["a", "b"]);
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        assert_eq!(rejected_field(WebhookSpec { name: " ".into(), ..spec() }), "name");
        for url in ["", "/relative", "ftp://example.com", "example.com/x", "http://u:p@h/"] {
            assert_eq!(rejected_field(WebhookSpec { url: url.into(), ..spec() }), "url", "{url}");
        }
        assert_eq!(rejected_field(WebhookSpec { event_types: vec![], ..spec() }), "event_types");
        assert_eq!(
            rejected_field(WebhookSpec { event_types: vec!["a.b".into()], ..spec() }),
            "event_types"
        );
    }

    #[test]
    fn urls_with_control_or_invisible_characters_are_refused() {
        for url in [
            "https://example.com/hooks\r\nx-injected: 1",
            "https://example.com/a\tb",
            "https://example.com/\u{0}",
            "https://example.com/\u{85}",
            "https://example.com/\u{202E}kcah",
            " https://example.com/",
            "https://example.com/\n",
        ] {
            let err = WebhookSpec { url: url.into(), ..spec() }.validate().expect_err(url);
            assert_eq!(err.field, "url", "{url:?}");
        }
        let err = WebhookSpec { url: "https://example.com/a\r\nb".into(), ..spec() }
            .validate()
            .expect_err("CR");
        assert_eq!(
            err.reason,
            "contains U+000D at byte 21; control and invisible characters (CR, LF, tab, …) are not allowed: remove or percent-encode them"
        );
    }

    #[test]
    fn the_ascii_url_is_what_requests_go_to() {
        let idn = WebhookSpec { url: "https://Bücher.example/wä hook?q=ü".into(), ..spec() };
        let idn = idn.validate().expect("an IDN host is valid");
        assert_eq!(idn.url, "https://Bücher.example/wä hook?q=ü", "stored as typed");
        assert_eq!(idn.ascii_url(), "https://xn--bcher-kva.example/w%C3%A4%20hook?q=%C3%BC");
        assert_eq!(ascii_url("http://2130706433:8080").as_deref(), Some("http://127.0.0.1:8080/"));
        assert_eq!(spec().ascii_url(), "https://example.com/hooks");
    }

    #[test]
    fn per_webhook_timeout_and_schedule_are_bounded() {
        let ok = WebhookSpec {
            attempt_timeout: Some(Duration::from_secs(30)),
            retry_schedule: Some(RetrySchedule::from_secs(&[1, 2])),
            ..spec()
        };
        ok.validate().expect("valid");
        let long = WebhookSpec { attempt_timeout: Some(Duration::from_secs(31)), ..spec() };
        assert_eq!(rejected_field(long), "attempt_timeout_ms");
        let many =
            WebhookSpec { retry_schedule: Some(RetrySchedule::from_secs(&[1; 21])), ..spec() };
        assert_eq!(rejected_field(many), "retry_schedule");
    }

    #[test]
    fn request_options_are_checked_together() {
        use crate::endpoint::Secret;
        let clash = WebhookSpec {
            auth: EndpointAuth::Header { name: "x-key".into(), value: Secret::new("v") },
            headers: vec![Header { name: "X-Key".into(), value: "w".into() }],
            ..spec()
        };
        assert_eq!(rejected_field(clash), "headers");
        let oauth_and_bearer = WebhookSpec {
            auth: EndpointAuth::Bearer { token: Secret::new("t") },
            credential_id: Some(CredentialId::from("cred_1")),
            ..spec()
        };
        assert_eq!(rejected_field(oauth_and_bearer), "auth");
        assert_eq!(rejected_field(WebhookSpec { fields: vec!["x".into()], ..spec() }), "fields");
        assert_eq!(rejected_field(WebhookSpec { app: "a\nb".into(), ..spec() }), "app");
    }

    #[test]
    fn star_subscribes_to_everything_and_inactive_receives_nothing() {
        let t = EventType::parse("basket-submitted").expect("valid type");
        let mut s = spec();
        assert!(!s.subscribes_to(&t));
        s.event_types = vec!["*".into()];
        assert!(s.subscribes_to(&t));
        let now = Utc::now();
        let mut hook =
            Webhook { id: WebhookId::generate(), spec: s, created_at: now, updated_at: now };
        assert!(hook.receives(&t));
        hook.spec.active = false;
        assert!(!hook.receives(&t));
    }
}
