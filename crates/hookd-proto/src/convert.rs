//! Conversions between wire types and domain types: timestamps, JSON values, webhooks.

use chrono::{DateTime, Utc};
use std::time::Duration;

use hookd_core::{RetrySchedule, Webhook, WebhookSpec};
use prost_types::{ListValue, Struct, Timestamp, Value, value::Kind};

use crate::v1;

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        // Always below 2e9, so the cast cannot truncate.
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// `None` for a timestamp that chrono cannot represent (far outside ±262 000 years).
pub fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// JSON to `google.protobuf.Value`. Numbers become doubles, as the protobuf JSON mapping does.
pub fn json_to_value(json: serde_json::Value) -> Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => {
            Kind::ListValue(ListValue { values: items.into_iter().map(json_to_value).collect() })
        }
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// `google.protobuf.Value` to JSON. Whole doubles within ±2^53 become integers again, so
/// `{"count": 3}` survives the round trip as `3`, not `3.0`.
pub fn value_to_json(value: Value) -> serde_json::Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => number_to_json(n),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect(),
        ),
    }
}

fn number_to_json(n: f64) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() <= EXACT {
        // In range and whole, so the conversion is exact.
        #[allow(clippy::cast_possible_truncation)]
        return serde_json::Value::from(n as i64);
    }
    serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

pub fn webhook_to_proto(w: &Webhook) -> v1::Webhook {
    v1::Webhook {
        id: w.id.to_string(),
        name: w.spec.name.clone(),
        url: w.spec.url.clone(),
        event_types: w.spec.event_types.clone(),
        active: w.spec.active,
        created_at: Some(timestamp(w.created_at)),
        updated_at: Some(timestamp(w.updated_at)),
        description: w.spec.description.clone(),
        attempt_timeout_ms: w
            .spec
            .attempt_timeout
            .map_or(0, |t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
        retry_policy: w.spec.retry_schedule.as_ref().map(retry_policy_to_proto),
    }
}

pub fn retry_policy_to_proto(s: &RetrySchedule) -> v1::RetryPolicy {
    v1::RetryPolicy {
        delay_seconds: s
            .delays
            .iter()
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .collect(),
    }
}

pub fn retry_policy_from_proto(p: &v1::RetryPolicy) -> RetrySchedule {
    RetrySchedule {
        delays: p.delay_seconds.iter().map(|s| Duration::from_secs(u64::from(*s))).collect(),
    }
}

/// `0` means "the default" on the wire.
pub fn attempt_timeout_from_proto(ms: u32) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(u64::from(ms)))
}

/// A webhook as the control plane sent it. Definitions from the control plane were validated
/// when stored, so this does not validate again.
pub fn webhook_from_proto(w: v1::Webhook) -> Webhook {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    Webhook {
        id: w.id.into(),
        created_at: w.created_at.as_ref().and_then(from_timestamp).unwrap_or(epoch),
        updated_at: w.updated_at.as_ref().and_then(from_timestamp).unwrap_or(epoch),
        spec: WebhookSpec {
            name: w.name,
            url: w.url,
            event_types: w.event_types,
            active: w.active,
            description: w.description,
            attempt_timeout: attempt_timeout_from_proto(w.attempt_timeout_ms),
            retry_schedule: w.retry_policy.as_ref().map(retry_policy_from_proto),
        },
    }
}

impl From<hookd_core::DeliveryStatus> for v1::DeliveryStatus {
    fn from(s: hookd_core::DeliveryStatus) -> Self {
        match s {
            hookd_core::DeliveryStatus::Pending => Self::Pending,
            hookd_core::DeliveryStatus::Delivered => Self::Delivered,
            hookd_core::DeliveryStatus::Failed => Self::Failed,
        }
    }
}

impl v1::DeliveryStatus {
    pub fn to_domain(self) -> Option<hookd_core::DeliveryStatus> {
        match self {
            Self::Unspecified => None,
            Self::Pending => Some(hookd_core::DeliveryStatus::Pending),
            Self::Delivered => Some(hookd_core::DeliveryStatus::Delivered),
            Self::Failed => Some(hookd_core::DeliveryStatus::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_survives_a_round_trip_through_protobuf_value() {
        let json = serde_json::json!({
            "name": "Ada", "count": 3, "ratio": 0.5, "tags": ["a", null, true], "nested": {"x": -7}
        });
        assert_eq!(value_to_json(json_to_value(json.clone())), json);
    }

    #[test]
    fn timestamps_round_trip() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid time");
        assert_eq!(from_timestamp(&timestamp(t)), Some(t));
    }
}
