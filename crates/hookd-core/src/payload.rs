//! The bodies hookd sends to endpoints.

use serde::Serialize;

use crate::{Event, WebhookId};

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

/// The `envelope` format: `{"meta":{webhookId,eventId,eventType,eventTimestamp,entityId,
/// version},"data":…}`.
pub fn envelope(webhook: &WebhookId, event: &Event) -> Vec<u8> {
    let body = Envelope {
        meta: Meta {
            webhook_id: webhook.as_str(),
            event_id: event.id.as_str(),
            event_type: event.event_type.as_str(),
            event_timestamp: event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            entity_id: &event.entity_id,
            version: ENVELOPE_VERSION,
        },
        data: &event.data,
    };
    // Serializing strings and a `Value` cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
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
}
