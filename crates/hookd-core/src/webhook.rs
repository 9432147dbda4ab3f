//! Webhook definitions and the rules for a valid one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{EventType, InvalidField, WebhookId, event::validate_token};

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_DESCRIPTION_LEN: usize = 1024;
pub const MAX_EVENT_TYPES: usize = 256;
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

/// What a user decides about a webhook; validated by [`WebhookSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSpec {
    pub name: String,
    pub url: String,
    /// Sorted and without duplicates once validated.
    pub event_types: Vec<String>,
    pub active: bool,
    pub description: String,
}

impl WebhookSpec {
    /// Checks every field and normalises the event types (sorted, deduplicated). The first
    /// problem found is returned, naming its field.
    pub fn validate(mut self) -> Result<Self, InvalidField> {
        self.name = validate_name(&self.name)?;
        validate_url(&self.url)?;
        self.event_types = validate_event_types(&self.event_types)?;
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(InvalidField::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
            ));
        }
        Ok(self)
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

fn validate_name(name: &str) -> Result<String, InvalidField> {
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

fn validate_url(raw: &str) -> Result<(), InvalidField> {
    if raw.is_empty() {
        return Err(InvalidField::new("url", "must not be empty"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(InvalidField::new("url", format!("must be at most {MAX_URL_LEN} characters")));
    }
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
        }
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
