//! Ordered delivery per key (B6): which value of an event orders its deliveries to a
//! webhook. Deliveries with the same key reach the endpoint one at a time, in the order their
//! events were published; the dispatcher's `ordering` module enforces it.

use serde::{Deserialize, Serialize};

use crate::{Event, InvalidField, filter::EventPath};

/// The word that names the event's `entity_id` as the key.
pub const ENTITY_ID: &str = "entity_id";
/// Keys longer than this are refused at the event (the event goes unordered and is logged).
pub const MAX_KEY_LEN: usize = 1024;

/// What a webhook orders its deliveries by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OrderingKey {
    /// The event's `entity_id`.
    EntityId,
    /// A JSON pointer into the event (`/data/order/id`, `/context/account`).
    Path(EventPath),
}

impl OrderingKey {
    /// `entity_id`, or a path rooted at `/data`, `/context`, `/type` or `/entity_id`.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let raw = raw.trim();
        if raw == ENTITY_ID || raw == "/entity_id" {
            return Ok(Self::EntityId);
        }
        EventPath::parse(raw).map(Self::Path).map_err(|reason| {
            InvalidField::new(
                "ordering_key",
                format!("{reason}; use \"entity_id\" or a JSON pointer such as /data/order_id"),
            )
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::EntityId => ENTITY_ID,
            Self::Path(p) => p.as_str(),
        }
    }

    /// The event's key: a string as it is, a number or a boolean as its JSON text. `None`
    /// when the event has none (missing, null, an object or an array, or longer than
    /// [`MAX_KEY_LEN`]): such an event is delivered outside any order.
    pub fn key_of(&self, event: &Event) -> Option<String> {
        use serde_json::Value;
        let key = match self {
            Self::EntityId => (!event.entity_id.is_empty()).then(|| event.entity_id.clone())?,
            Self::Path(path) => match path.resolve(event)?.as_ref() {
                Value::String(s) => s.clone(),
                v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            },
        };
        (key.len() <= MAX_KEY_LEN).then_some(key)
    }
}

/// The name of a key's line in the ordering bucket: `<tenant>.<webhook id>.<digest of the
/// key>` (tenants and webhook ids are subject tokens; the key may be any text).
pub fn line_name(tenant: &str, webhook: &crate::WebhookId, key: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b6f_6f68_6464_4000_8000_6f72_6465_7221);
    let digest = uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()).simple();
    format!("{tenant}.{webhook}.{digest}")
}

impl TryFrom<String> for OrderingKey {
    type Error = InvalidField;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<OrderingKey> for String {
    fn from(key: OrderingKey) -> Self {
        key.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> Event {
        Event::from_json(json.to_string().as_bytes(), chrono::Utc::now()).expect("event")
    }

    #[test]
    fn keys_come_from_the_entity_id_or_a_pointer() {
        let e = event(serde_json::json!({
            "id": "e1", "type": "t", "entity_id": "c-1",
            "data": {"order": {"id": 42, "ref": "r-9", "lines": []}, "flag": true}
        }));
        assert_eq!(
            OrderingKey::parse("entity_id").expect("valid").key_of(&e).as_deref(),
            Some("c-1")
        );
        let by = |p: &str| OrderingKey::parse(p).expect("valid").key_of(&e);
        assert_eq!(by("/data/order/id").as_deref(), Some("42"));
        assert_eq!(by("/data/order/ref").as_deref(), Some("r-9"));
        assert_eq!(by("/data/flag").as_deref(), Some("true"));
        assert_eq!(by("/data/order/lines"), None, "an array is no key");
        assert_eq!(by("/data/missing"), None);
        let keyless = event(serde_json::json!({"id": "e2", "type": "t"}));
        assert_eq!(OrderingKey::EntityId.key_of(&keyless), None);
    }

    #[test]
    fn invalid_keys_are_refused_on_ordering_key() {
        for raw in ["order_id", "/payload/x", "/type/x", "/data/~x"] {
            let err = OrderingKey::parse(raw).expect_err(raw);
            assert_eq!(err.field, "ordering_key", "{raw}");
        }
        assert_eq!(OrderingKey::parse(" /entity_id ").expect("valid"), OrderingKey::EntityId);
        assert_eq!(OrderingKey::parse("/data/a").expect("valid").as_str(), "/data/a");
    }
}
