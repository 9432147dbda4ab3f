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

/// The most levels of objects and arrays an event's `data` or `context` may nest (`{}` is
/// one level, `{"a": []}` two). Protobuf decoding sets it: `PublishEvent` carries data as a
/// `google.protobuf.Value`, and prost's recursion limit (100 messages) is reached by objects
/// nested 33 deep. Events published to NATS are held to the same limit, so an event is valid
/// or not whichever way it arrives.
pub const MAX_JSON_DEPTH: usize = 32;

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
    /// The same top-level key twice: JSON parsers disagree on which one counts (hookd's took
    /// the last, JetStream's dedupe the `Nats-Msg-Id` a producer derived from the first).
    #[error("event has the top-level key {0:?} more than once; each key may appear once")]
    DuplicateKey(String),
    #[error(transparent)]
    Invalid(#[from] InvalidField),
}

impl Event {
    /// Parses an event as a producer published it, for the fan-out: refuses what
    /// [`Event::from_json`] refuses, plus duplicate top-level keys and `data` or `context`
    /// nested deeper than [`MAX_JSON_DEPTH`]. One pass over the bytes: the top-level keys are
    /// checked while the object is read.
    pub fn from_published(bytes: &[u8], received_at: DateTime<Utc>) -> Result<Self, EventError> {
        let fields = TopLevel::parse(bytes)?;
        if let Some(key) = &fields.duplicate {
            return Err(EventError::DuplicateKey(crate::text::shorten(key, 64).into_owned()));
        }
        let event = fields.into_event(received_at)?;
        check_depth("data", &event.data)?;
        check_depth("context", &event.context)?;
        Ok(event)
    }

    /// Parses an event from its JSON form, leniently: a repeated top-level key counts as its
    /// last value and nesting is not limited. For events already accepted (delivery jobs,
    /// kept events, test sends), which may predate today's rules. A missing `timestamp` is
    /// taken as `received_at`.
    pub fn from_json(bytes: &[u8], received_at: DateTime<Utc>) -> Result<Self, EventError> {
        TopLevel::parse(bytes)?.into_event(received_at)
    }

    /// The JSON form producers publish, with the timestamp in RFC 3339.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings and `Value`s cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Refuses `value` if it nests deeper than [`MAX_JSON_DEPTH`], naming `field`.
pub fn check_depth(field: &'static str, value: &serde_json::Value) -> Result<(), InvalidField> {
    let depth = json_depth(value);
    if depth > MAX_JSON_DEPTH {
        return Err(InvalidField::new(
            field,
            format!(
                "nests {depth} levels deep; at most {MAX_JSON_DEPTH} levels of objects and arrays are accepted"
            ),
        ));
    }
    Ok(())
}

/// Levels of objects and arrays on the deepest path of `value`: 0 for a scalar. Recursion
/// is bounded by the parsers (serde_json stops at 128 levels, prost at 100 messages).
fn json_depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The top level of an event as read in one pass: the fields hookd uses, each the last of
/// its key, other keys skipped unread, and the first key that appeared twice.
#[derive(Default)]
struct TopLevel {
    id: Option<serde_json::Value>,
    event_type: Option<serde_json::Value>,
    entity_id: Option<serde_json::Value>,
    timestamp: Option<serde_json::Value>,
    context: Option<serde_json::Value>,
    data: Option<serde_json::Value>,
    duplicate: Option<String>,
}

impl TopLevel {
    fn parse(bytes: &[u8]) -> Result<Self, EventError> {
        serde_json::from_slice::<AnyJson>(bytes)
            .map_err(EventError::NotJson)?
            .0
            .ok_or(EventError::NotAnObject)
    }

    fn into_event(self, received_at: DateTime<Utc>) -> Result<Event, EventError> {
        use serde_json::Value;
        let id = match self.id {
            Some(Value::String(id)) => id,
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(InvalidField::new("id", "must be a string").into()),
            None => return Err(EventError::Missing("id")),
        };
        validate_event_id(&id)?;
        let event_type = match self.event_type {
            Some(Value::String(t)) => EventType::parse(&t)?,
            Some(_) => return Err(InvalidField::new("type", "must be a string").into()),
            None => return Err(EventError::Missing("type")),
        };
        let entity_id = match self.entity_id {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Null) | None => String::new(),
            Some(_) => return Err(InvalidField::new("entity_id", "must be a string").into()),
        };
        let timestamp = match self.timestamp {
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(&s)
                .map_err(|e| InvalidField::new("timestamp", format!("must be RFC 3339: {e}")))?
                .with_timezone(&Utc),
            Some(Value::Null) | None => received_at,
            Some(_) => {
                return Err(InvalidField::new("timestamp", "must be an RFC 3339 string").into());
            }
        };
        Ok(Event {
            id: EventId::from(id),
            event_type,
            entity_id,
            timestamp,
            context: self.context.unwrap_or_default(),
            data: self.data.unwrap_or_default(),
        })
    }
}

/// Any JSON document: `Some` top level for an object, `None` for any other value (read and
/// dropped).
struct AnyJson(Option<TopLevel>);

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> serde::de::Visitor<'de> for TopLevelVisitor {
    type Value = AnyJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::IgnoredAny;
        let mut top = TopLevel::default();
        // Keys hookd does not use, to find their duplicates; borrowed from the input unless
        // they contain escapes. Usually empty: producers send the six known keys.
        let mut others: std::collections::BTreeSet<Key<'de>> = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let slot = match key.as_str() {
                "id" => &mut top.id,
                "type" => &mut top.event_type,
                "entity_id" => &mut top.entity_id,
                "timestamp" => &mut top.timestamp,
                "context" => &mut top.context,
                "data" => &mut top.data,
                _ => {
                    if others.contains(&key) {
                        top.duplicate.get_or_insert_with(|| key.as_str().to_owned());
                    } else {
                        others.insert(key);
                    }
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<serde_json::Value>()?;
            if slot.replace(value).is_some() {
                top.duplicate.get_or_insert_with(|| key.as_str().to_owned());
            }
        }
        Ok(AnyJson(Some(top)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(AnyJson(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(AnyJson(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(AnyJson(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(AnyJson(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(AnyJson(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(AnyJson(None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(AnyJson(None))
    }
}

/// An object key, borrowed from the input when it has no escapes (`"\u0069d"` is `id`).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Key<'de>(std::borrow::Cow<'de, str>);

impl Key<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
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
        let cases: [(&[u8], &str); 8] = [
            (b"not json", "not valid JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"type":"t"}"#, "\"id\""),
            (br#"{"id":"e"}"#, "\"type\""),
            (br#"{"id":"e","type":"a.b"}"#, "invalid type"),
            (br#"{"id":"e","type":"t","timestamp":"yesterday"}"#, "invalid timestamp"),
            (b"null", "not a JSON object"),
            (br#"{"id":"e","type":"t"} {}"#, "not valid JSON"),
        ];
        for (input, expected) in cases {
            for err in [
                Event::from_json(input, now()).expect_err("must be rejected"),
                Event::from_published(input, now()).expect_err("must be rejected"),
            ] {
                assert!(err.to_string().contains(expected), "{err} should mention {expected}");
            }
        }
    }

    #[test]
    fn duplicate_top_level_keys_are_refused_where_events_come_in() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"id":"a","type":"t","id":"b"}"#, "id"),
            (br#"{"id":"a","type":"t","type":"u"}"#, "type"),
            (br#"{"id":"a","type":"t","x":1,"y":2,"x":[3]}"#, "x"),
            // The same key spelled with an escape is the same key.
            (br#"{"id":"a","type":"t","\u0069d":"b"}"#, "id"),
        ];
        for (input, key) in cases {
            match Event::from_published(input, now()) {
                Err(EventError::DuplicateKey(k)) => assert_eq!(k, key),
                other => panic!("{} gave {other:?}", String::from_utf8_lossy(input)),
            }
            // Accepted events are read leniently later (the last value counts).
            Event::from_json(input, now()).expect("lenient parse");
        }
        let last = Event::from_json(br#"{"id":"a","type":"t","id":"b"}"#, now()).expect("parses");
        assert_eq!(last.id.as_str(), "b");
        // Only the top level: inside `data` the producer's JSON is its own business.
        let nested = br#"{"id":"a","type":"t","data":{"k":1,"k":2}}"#;
        assert!(Event::from_published(nested, now()).is_ok());
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_naming_the_field() {
        let nested = |depth: usize| {
            let mut v = serde_json::json!(1);
            for i in 0..depth {
                v = if i % 2 == 0 { serde_json::json!({ "a": v }) } else { serde_json::json!([v]) };
            }
            v
        };
        for field in ["data", "context"] {
            let event = |depth| serde_json::json!({"id": "e", "type": "t", field: nested(depth)});
            let ok = event(MAX_JSON_DEPTH).to_string();
            Event::from_published(ok.as_bytes(), now()).expect("at the limit");
            let deep = event(MAX_JSON_DEPTH + 1).to_string();
            let err = Event::from_published(deep.as_bytes(), now()).expect_err("too deep");
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid {field}: nests 33 levels deep; at most 32 levels of objects and arrays are accepted"
                )
            );
        }
        assert_eq!(json_depth(&serde_json::json!(1)), 0);
        assert_eq!(json_depth(&serde_json::json!({"a": [], "b": {"c": [1]}})), 3);
    }

    #[test]
    fn event_round_trips_through_json() {
        let event = Event::from_json(br#"{"id":"e1","type":"t","data":{"a":[1,2]}}"#, now())
            .expect("valid event");
        let again = Event::from_json(&event.to_json(), now()).expect("round trip");
        assert_eq!(event, again);
    }
}
