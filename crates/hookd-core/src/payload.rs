//! The bodies hookd sends to endpoints: which part of the event (all of its data or selected
//! fields) in which format (`envelope`, `flat` or `data`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Event, InvalidField, WebhookId};

/// The most fields a webhook may select.
pub const MAX_FIELDS: usize = 64;
pub const MAX_FIELD_LEN: usize = 512;

/// The shape of a delivery's body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// `{"meta":{webhookId,eventId,eventType,eventTimestamp,entityId,version},"data":…}`.
    #[default]
    Envelope,
    /// `{"event_time","event_type","current_context","data"}`.
    Flat,
    /// The data alone.
    Data,
}

impl PayloadFormat {
    pub const ALL: [Self; 3] = [Self::Envelope, Self::Flat, Self::Data];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Envelope => "envelope",
            Self::Flat => "flat",
            Self::Data => "data",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

/// Checks a field selection: JSON pointers (RFC 6901) into the event's data, such as
/// `/contact/email`. Empty means the raw data. Deduplicated, order kept.
pub fn validate_fields(fields: Vec<String>) -> Result<Vec<String>, InvalidField> {
    if fields.len() > MAX_FIELDS {
        return Err(InvalidField::new("fields", format!("at most {MAX_FIELDS} fields")));
    }
    let mut out: Vec<String> = Vec::with_capacity(fields.len());
    for f in fields {
        let f = f.trim().to_owned();
        if !f.starts_with('/') || f.len() < 2 || f.len() > MAX_FIELD_LEN {
            return Err(InvalidField::new(
                "fields",
                format!(
                    "{f:?} is not a JSON pointer into the event data; write /name or /contact/email"
                ),
            ));
        }
        if let Some(bad) = bad_escape(&f) {
            return Err(InvalidField::new(
                "fields",
                format!("{f:?} has {bad:?}; in a JSON pointer '~' must be written ~0 or ~1"),
            ));
        }
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

fn bad_escape(pointer: &str) -> Option<String> {
    let bytes = pointer.as_bytes();
    bytes.iter().enumerate().find_map(|(i, b)| {
        (*b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')))
            .then(|| pointer[i..].chars().take(2).collect())
    })
}

fn tokens(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~"))
}

/// The selected fields of `data`, keeping their place: `/contact/email` of
/// `{"contact":{"email":"a@b","name":"A"}}` gives `{"contact":{"email":"a@b"}}`. A field the
/// data lacks is left out. Where a pointer passes through an array, the result holds the picked
/// elements in index order. Empty `fields` gives the data unchanged.
pub fn select(data: &serde_json::Value, fields: &[String]) -> serde_json::Value {
    if fields.is_empty() {
        return data.clone();
    }
    let mut root = Node::Empty;
    for field in fields {
        if let Some(value) = data.pointer(field) {
            let path: Vec<String> = tokens(field).collect();
            root.insert(data, &path, value);
        }
    }
    match root {
        Node::Empty => serde_json::Value::Object(serde_json::Map::new()),
        node => node.into_value(),
    }
}

/// Output under construction, mirroring the containers of the source.
enum Node {
    Empty,
    Leaf(serde_json::Value),
    Object(BTreeMap<String, Node>),
    Array(BTreeMap<usize, Node>),
}

impl Node {
    fn insert(&mut self, source: &serde_json::Value, path: &[String], value: &serde_json::Value) {
        let Some((head, rest)) = path.split_first() else {
            *self = Node::Leaf(value.clone());
            return;
        };
        match source {
            serde_json::Value::Array(items) => {
                let Some((index, child)) =
                    head.parse::<usize>().ok().and_then(|i| items.get(i).map(|c| (i, c)))
                else {
                    return;
                };
                if !matches!(self, Node::Array(_)) {
                    if matches!(self, Node::Leaf(_)) {
                        return;
                    }
                    *self = Node::Array(BTreeMap::new());
                }
                if let Node::Array(map) = self {
                    map.entry(index).or_insert(Node::Empty).insert(child, rest, value);
                }
            }
            serde_json::Value::Object(fields) => {
                let Some(child) = fields.get(head) else { return };
                if !matches!(self, Node::Object(_)) {
                    if matches!(self, Node::Leaf(_)) {
                        return;
                    }
                    *self = Node::Object(BTreeMap::new());
                }
                if let Node::Object(map) = self {
                    map.entry(head.clone()).or_insert(Node::Empty).insert(child, rest, value);
                }
            }
            _ => {}
        }
    }

    fn into_value(self) -> serde_json::Value {
        match self {
            Node::Empty => serde_json::Value::Null,
            Node::Leaf(v) => v,
            Node::Object(map) => serde_json::Value::Object(
                map.into_iter().map(|(k, v)| (k, v.into_value())).collect(),
            ),
            Node::Array(map) => {
                serde_json::Value::Array(map.into_values().map(Node::into_value).collect())
            }
        }
    }
}

/// Selected fields as query parameters, for methods without a body: `/contact/email` becomes
/// `contact.email`; strings are sent as they are, other values as JSON text. Raw data (no
/// fields) gives no parameters.
pub fn query_params(data: &serde_json::Value, fields: &[String]) -> Vec<(String, String)> {
    fields
        .iter()
        .filter_map(|field| {
            let value = data.pointer(field)?;
            let name = tokens(field).collect::<Vec<_>>().join(".");
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((name, value))
        })
        .collect()
}

/// The request body of a delivery of `event` to `webhook` in `format`, carrying `data` (the
/// event's data, already shaped by [`select`]).
pub fn render(
    format: PayloadFormat,
    webhook: &WebhookId,
    event: &Event,
    data: &serde_json::Value,
) -> Vec<u8> {
    let timestamp = event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let body = match format {
        PayloadFormat::Envelope => serde_json::to_vec(&Envelope {
            meta: Meta {
                webhook_id: webhook.as_str(),
                event_id: event.id.as_str(),
                event_type: event.event_type.as_str(),
                event_timestamp: timestamp,
                entity_id: &event.entity_id,
                version: ENVELOPE_VERSION,
            },
            data,
        }),
        PayloadFormat::Flat => serde_json::to_vec(&Flat {
            event_time: timestamp,
            event_type: event.event_type.as_str(),
            current_context: &event.context,
            data,
        }),
        PayloadFormat::Data => serde_json::to_vec(data),
    };
    // Serializing strings and `Value`s cannot fail.
    body.unwrap_or_default()
}

#[derive(Serialize)]
struct Flat<'a> {
    event_time: String,
    event_type: &'a str,
    current_context: &'a serde_json::Value,
    data: &'a serde_json::Value,
}

/// Version of the `envelope` payload format, sent as `meta.version`.
pub const ENVELOPE_VERSION: &str = "1.0";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    webhook_id: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    event_timestamp: String,
    entity_id: &'a str,
    version: &'static str,
}

#[derive(Serialize)]
struct Envelope<'a> {
    meta: Meta<'a>,
    data: &'a serde_json::Value,
}

/// The default body: the whole event in the `envelope` format.
pub fn envelope(webhook: &WebhookId, event: &Event) -> Vec<u8> {
    render(PayloadFormat::Envelope, webhook, event, &event.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_meta_and_data() {
        let event = Event::from_json(
            br#"{"id":"e1","type":"basket-submitted","entity_id":"b7",
                "timestamp":"2024-03-21T13:46:46Z","data":{"total":3}}"#,
            chrono::Utc::now(),
        )
        .expect("valid event");
        let body: serde_json::Value =
            serde_json::from_slice(&envelope(&WebhookId::from("wh_1"), &event)).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "meta": {"webhookId": "wh_1", "eventId": "e1", "eventType": "basket-submitted",
                         "eventTimestamp": "2024-03-21T13:46:46Z", "entityId": "b7",
                         "version": "1.0"},
                "data": {"total": 3}
            })
        );
    }

    fn event() -> Event {
        Event::from_json(
            br#"{"id":"e1","type":"contact-created","timestamp":"2024-03-21T13:46:46Z",
                "context":{"user":"u1"},
                "data":{"contact":{"email":"a@b.c","name":"Ada","tags":["x","y","z"]},"n":2}}"#,
            chrono::Utc::now(),
        )
        .expect("valid event")
    }

    #[test]
    fn selects_fields_in_place_and_skips_missing_ones() {
        let e = event();
        let fields = validate_fields(vec!["/contact/email".into(), "/missing".into(), "/n".into()])
            .expect("valid");
        assert_eq!(
            select(&e.data, &fields),
            serde_json::json!({"contact": {"email": "a@b.c"}, "n": 2})
        );
        let tags = vec!["/contact/tags/2".into(), "/contact/tags/0".into()];
        assert_eq!(select(&e.data, &tags), serde_json::json!({"contact": {"tags": ["x", "z"]}}));
        assert_eq!(select(&e.data, &["/nope".into()]), serde_json::json!({}));
        assert_eq!(select(&e.data, &[]), e.data);
    }

    #[test]
    fn field_selection_is_validated() {
        for bad in ["contact", "/", "/a~2b"] {
            let err = validate_fields(vec![bad.into()]).expect_err("must be refused");
            assert_eq!(err.field, "fields", "{bad}");
        }
        let fields = validate_fields(vec!["/a~1b".into(), "/a~1b".into()]).expect("valid");
        assert_eq!(fields, ["/a~1b"]);
    }

    #[test]
    fn fields_become_query_parameters() {
        let e = event();
        let params = query_params(&e.data, &["/contact/email".into(), "/n".into(), "/x".into()]);
        assert_eq!(
            params,
            [("contact.email".to_owned(), "a@b.c".to_owned()), ("n".to_owned(), "2".to_owned())]
        );
    }

    #[test]
    fn flat_and_data_formats() {
        let e = event();
        let wh = WebhookId::from("wh_1");
        let flat: serde_json::Value =
            serde_json::from_slice(&render(PayloadFormat::Flat, &wh, &e, &e.data)).expect("json");
        assert_eq!(flat["event_time"], "2024-03-21T13:46:46Z");
        assert_eq!(flat["event_type"], "contact-created");
        assert_eq!(flat["current_context"], serde_json::json!({"user": "u1"}));
        assert_eq!(flat["data"], e.data);
        let data: serde_json::Value =
            serde_json::from_slice(&render(PayloadFormat::Data, &wh, &e, &e.data)).expect("json");
        assert_eq!(data, e.data);
    }
}
