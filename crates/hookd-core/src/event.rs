//! Events as producers publish them: JSON with `id`, `type`, `entity_id`, `timestamp`,
//! `context` and `data`. Parsing is strict about what hookd needs (`id`, `type`) and
//! lenient about the rest, so producers can add fields.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{EventId, InvalidField};

/// Longest accepted event id, in bytes: it becomes part of NATS message ids.
pub const MAX_EVENT_ID_LEN: usize = 256;
/// Longest accepted event type: it becomes a NATS subject token.
pub const MAX_EVENT_TYPE_LEN: usize = 128;
/// The default limit of an event's size: its JSON as published, in bytes. Larger events are
/// refused by `PublishEvent` and dropped by the dispatcher's fan-out (both configurable).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// An event type such as `contact-created`. Letters, digits, `-` and `_` only, because the
/// type is a token of the NATS subject the event travels on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventType(String);

impl EventType {
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        validate_token("type", value, MAX_EVENT_TYPE_LEN)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventType {
    type Error = InvalidField;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EventType> for String {
    fn from(value: EventType) -> Self {
        value.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that `value` can be one token of a NATS subject and of a URL-safe name.
pub fn validate_token(
    field: &'static str,
    value: &str,
    max_len: usize,
) -> Result<(), InvalidField> {
    if value.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(InvalidField::new(field, format!("must be at most {max_len} characters")));
    }
    if let Some(bad) =
        value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(InvalidField::new(
            field,
            format!("{value:?} contains {bad:?}; only letters, digits, '-' and '_' are allowed"),
        ));
    }
    Ok(())
}

/// A published event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(default)]
    pub entity_id: String,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub context: serde_json::Value,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// Why bytes from the stream are not an event. Such a message can never become valid, so
/// the dispatcher terminates it instead of retrying.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event lacks required field {0:?}")]
    Missing(&'static str),
    #[error(transparent)]
    Invalid(#[from] InvalidField),
}

impl Event {
    /// Parses an event from its JSON form. A missing `timestamp` is taken as `received_at`.
    pub fn from_json(bytes: &[u8], received_at: DateTime<Utc>) -> Result<Self, EventError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(EventError::NotJson)?;
        let serde_json::Value::Object(mut object) = value else {
            return Err(EventError::NotAnObject);
        };
        let id = match object.remove("id") {
            Some(serde_json::Value::String(id)) => id,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => return Err(InvalidField::new("id", "must be a string").into()),
            None => return Err(EventError::Missing("id")),
        };
        validate_event_id(&id)?;
        let event_type = match object.remove("type") {
            Some(serde_json::Value::String(t)) => EventType::parse(&t)?,
            Some(_) => return Err(InvalidField::new("type", "must be a string").into()),
            None => return Err(EventError::Missing("type")),
        };
        let entity_id = match object.remove("entity_id") {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(_) => return Err(InvalidField::new("entity_id", "must be a string").into()),
        };
        let timestamp = match object.remove("timestamp") {
            Some(serde_json::Value::String(s)) => DateTime::parse_from_rfc3339(&s)
                .map_err(|e| InvalidField::new("timestamp", format!("must be RFC 3339: {e}")))?
                .with_timezone(&Utc),
            Some(serde_json::Value::Null) | None => received_at,
            Some(_) => {
                return Err(InvalidField::new("timestamp", "must be an RFC 3339 string").into());
            }
        };
        Ok(Self {
            id: EventId::from(id),
            event_type,
            entity_id,
            timestamp,
            context: object.remove("context").unwrap_or_default(),
            data: object.remove("data").unwrap_or_default(),
        })
    }

    /// The JSON form producers publish, with the timestamp in RFC 3339.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings and `Value`s cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

pub fn validate_event_id(id: &str) -> Result<(), InvalidField> {
    if id.is_empty() {
        return Err(InvalidField::new("id", "must not be empty"));
    }
    if id.len() > MAX_EVENT_ID_LEN {
        return Err(InvalidField::new("id", format!("must be at most {MAX_EVENT_ID_LEN} bytes")));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(InvalidField::new("id", "must not contain whitespace or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn parses_a_full_event() {
        let json = br#"{"id":"e1","type":"contact-created","entity_id":"c9",
            "timestamp":"2024-03-21T13:46:46Z","context":{"user":"u"},"data":{"name":"Ada"}}"#;
        let event = Event::from_json(json, now()).expect("valid event");
        assert_eq!(event.id.as_str(), "e1");
        assert_eq!(event.event_type.as_str(), "contact-created");
        assert_eq!(event.entity_id, "c9");
        assert_eq!(event.timestamp.to_rfc3339(), "2024-03-21T13:46:46+00:00");
        assert_eq!(event.data["name"], "Ada");
        assert_eq!(event.context["user"], "u");
    }

    #[test]
    fn missing_timestamp_defaults_to_receive_time() {
        let event = Event::from_json(br#"{"id":"e1","type":"t"}"#, now()).expect("valid event");
        assert_eq!(event.timestamp, now());
        assert!(event.data.is_null());
    }

    #[test]
    fn rejects_what_can_never_be_delivered() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "not valid JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"type":"t"}"#, "\"id\""),
            (br#"{"id":"e"}"#, "\"type\""),
            (br#"{"id":"e","type":"a.b"}"#, "invalid type"),
            (br#"{"id":"e","type":"t","timestamp":"yesterday"}"#, "invalid timestamp"),
        ];
        for (input, expected) in cases {
            let err = Event::from_json(input, now()).expect_err("must be rejected");
            assert!(err.to_string().contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn event_round_trips_through_json() {
        let event = Event::from_json(br#"{"id":"e1","type":"t","data":{"a":[1,2]}}"#, now())
            .expect("valid event");
        let again = Event::from_json(&event.to_json(), now()).expect("round trip");
        assert_eq!(event, again);
    }
}
