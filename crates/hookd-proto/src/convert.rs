//! Conversions between wire types and domain types: timestamps, JSON values, webhooks,
//! credentials, event types, attempts and their reports. Secrets leave as masks unless
//! [`Secrets::Revealed`] is asked for, which only the internal dispatch stream does.

use chrono::{DateTime, Utc};
use std::time::Duration;

use hookd_core::{
    AttemptRecord, AttemptReport, CredentialId, DeliveryId, EventId, HealthPolicy, InvalidField,
    RetrySchedule, Webhook, WebhookId, WebhookSpec, WebhookStats,
    catalog::{EventTypeDef, EventTypeSpec},
    credential::{Credential, CredentialSpec, GrantType, TokenMethod},
    endpoint::{ApiKeyLocation, EndpointAuth, Header, HttpMethod, Secret},
    filter::Filter,
    ordering::OrderingKey,
    payload::PayloadFormat,
    rate_limit::RateLimit,
    signing::{SigningKey, SigningKeys, SigningSecret},
};
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

/// Whether secret values go on the wire in full or masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// For every user-facing read.
    Masked,
    /// Only for the internal dispatch stream.
    Revealed,
}

pub fn webhook_to_proto(w: &Webhook, secrets: Secrets) -> v1::Webhook {
    let auth = match secrets {
        Secrets::Masked => w.spec.auth.masked(),
        Secrets::Revealed => w.spec.auth.clone(),
    };
    v1::Webhook {
        id: w.id.to_string(),
        name: w.spec.name.clone(),
        url: w.spec.url.clone(),
        url_ascii: w.spec.ascii_url().into_owned(),
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
        app: w.spec.app.clone(),
        method: method_to_proto(w.spec.method).into(),
        headers: headers_to_proto(&w.spec.headers),
        auth: auth_to_proto(&auth),
        credential_id: w.spec.credential_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        fields: w.spec.fields.clone(),
        format: format_to_proto(w.spec.format).into(),
        stats: None,
        health: None,
        health_policy: health_policy_to_proto(&w.spec.health),
        ordering_key: w.spec.ordering.as_ref().map(|k| k.as_str().to_owned()).unwrap_or_default(),
        filter: w.spec.filter.as_ref().and_then(filter_to_proto),
        rate_limit: w.spec.rate_limit.map(rate_limit_to_proto),
        signing_keys: match secrets {
            Secrets::Masked => Vec::new(),
            Secrets::Revealed => w
                .spec
                .signing
                .0
                .iter()
                .map(|k| v1::SigningKey {
                    secret: k.secret.expose(),
                    expires_at: k.expires_at.map(timestamp),
                })
                .collect(),
        },
        // Callers set it: the domain webhook does not know its tenant.
        tenant: String::new(),
    }
}

pub fn stats_to_proto(s: &WebhookStats) -> v1::WebhookStats {
    v1::WebhookStats {
        last_attempt_at: s.last_attempt_at.map(timestamp),
        last_attempt_status: s.last_attempt_status.map_or(0, u32::from),
        last_attempt_success: s.last_attempt_succeeded,
        triggered: s.triggered,
        succeeded: s.succeeded,
        failed: s.failed,
        filtered: s.filtered,
    }
}

/// A filter as a `Struct`: its source is always an object.
pub fn filter_to_proto(f: &Filter) -> Option<prost_types::Struct> {
    match json_to_value(f.source().clone()).kind {
        Some(prost_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

/// Unset or an empty object: no filter. Anything else is parsed and validated.
pub fn filter_from_proto(f: Option<prost_types::Struct>) -> Result<Option<Filter>, InvalidField> {
    let Some(s) = f else { return Ok(None) };
    if s.fields.is_empty() {
        return Ok(None);
    }
    let json = value_to_json(Value { kind: Some(prost_types::value::Kind::StructValue(s)) });
    Filter::parse(json).map(Some)
}

/// Empty: no order.
pub fn ordering_from_proto(key: &str) -> Result<Option<OrderingKey>, InvalidField> {
    if key.trim().is_empty() {
        return Ok(None);
    }
    OrderingKey::parse(key).map(Some)
}

pub fn rate_limit_to_proto(r: RateLimit) -> v1::RateLimit {
    v1::RateLimit { per_second: r.per_second, burst: r.burst }
}

/// Not validated here (`WebhookSpec::validate` does).
pub fn rate_limit_from_proto(r: Option<&v1::RateLimit>) -> Option<RateLimit> {
    r.map(|r| RateLimit { per_second: r.per_second, burst: r.burst })
}

pub fn method_to_proto(m: HttpMethod) -> v1::HttpMethod {
    match m {
        HttpMethod::Post => v1::HttpMethod::Post,
        HttpMethod::Put => v1::HttpMethod::Put,
        HttpMethod::Patch => v1::HttpMethod::Patch,
        HttpMethod::Get => v1::HttpMethod::Get,
        HttpMethod::Delete => v1::HttpMethod::Delete,
    }
}

/// Unspecified means POST; a number outside the enum is refused.
pub fn method_from_proto(m: i32) -> Result<HttpMethod, InvalidField> {
    match v1::HttpMethod::try_from(m) {
        Ok(v1::HttpMethod::Unspecified | v1::HttpMethod::Post) => Ok(HttpMethod::Post),
        Ok(v1::HttpMethod::Put) => Ok(HttpMethod::Put),
        Ok(v1::HttpMethod::Patch) => Ok(HttpMethod::Patch),
        Ok(v1::HttpMethod::Get) => Ok(HttpMethod::Get),
        Ok(v1::HttpMethod::Delete) => Ok(HttpMethod::Delete),
        Err(_) => Err(InvalidField::new("method", format!("{m} is not an HttpMethod"))),
    }
}

pub fn format_to_proto(f: PayloadFormat) -> v1::PayloadFormat {
    match f {
        PayloadFormat::Envelope => v1::PayloadFormat::Envelope,
        PayloadFormat::Flat => v1::PayloadFormat::Flat,
        PayloadFormat::Data => v1::PayloadFormat::Data,
    }
}

/// Unspecified means `envelope`; a number outside the enum is refused.
pub fn format_from_proto(f: i32) -> Result<PayloadFormat, InvalidField> {
    match v1::PayloadFormat::try_from(f) {
        Ok(v1::PayloadFormat::Unspecified | v1::PayloadFormat::Envelope) => {
            Ok(PayloadFormat::Envelope)
        }
        Ok(v1::PayloadFormat::Flat) => Ok(PayloadFormat::Flat),
        Ok(v1::PayloadFormat::Data) => Ok(PayloadFormat::Data),
        Err(_) => Err(InvalidField::new("format", format!("{f} is not a PayloadFormat"))),
    }
}

pub fn headers_to_proto(headers: &[Header]) -> Vec<v1::HttpHeader> {
    headers
        .iter()
        .map(|h| v1::HttpHeader { name: h.name.clone(), value: h.value.clone() })
        .collect()
}

pub fn headers_from_proto(headers: Vec<v1::HttpHeader>) -> Vec<Header> {
    headers.into_iter().map(|h| Header { name: h.name, value: h.value }).collect()
}

/// `None` (unset) for no authentication.
pub fn auth_to_proto(auth: &EndpointAuth) -> Option<v1::EndpointAuth> {
    use v1::endpoint_auth::Kind as K;
    let kind = match auth {
        EndpointAuth::None => return None,
        EndpointAuth::Header { name, value } => {
            K::Header(v1::HeaderAuth { name: name.clone(), value: value.expose().to_owned() })
        }
        EndpointAuth::ApiKey { name, value, location } => K::ApiKey(v1::ApiKeyAuth {
            name: name.clone(),
            value: value.expose().to_owned(),
            in_query: *location == ApiKeyLocation::Query,
        }),
        EndpointAuth::Basic { username, password } => K::Basic(v1::BasicAuth {
            username: username.clone(),
            password: password.expose().to_owned(),
        }),
        EndpointAuth::Bearer { token } => {
            K::Bearer(v1::BearerAuth { token: token.expose().to_owned() })
        }
    };
    Some(v1::EndpointAuth { kind: Some(kind) })
}

/// Unset, or set without a kind, means no authentication. Not validated here.
pub fn auth_from_proto(auth: Option<v1::EndpointAuth>) -> EndpointAuth {
    use v1::endpoint_auth::Kind as K;
    match auth.and_then(|a| a.kind) {
        None | Some(K::None(_)) => EndpointAuth::None,
        Some(K::Header(h)) => EndpointAuth::Header { name: h.name, value: Secret::new(h.value) },
        Some(K::ApiKey(k)) => EndpointAuth::ApiKey {
            name: k.name,
            value: Secret::new(k.value),
            location: if k.in_query { ApiKeyLocation::Query } else { ApiKeyLocation::Header },
        },
        Some(K::Basic(b)) => {
            EndpointAuth::Basic { username: b.username, password: Secret::new(b.password) }
        }
        Some(K::Bearer(b)) => EndpointAuth::Bearer { token: Secret::new(b.token) },
    }
}

/// Empty means none.
pub fn credential_id_from_proto(id: &str) -> Option<CredentialId> {
    (!id.trim().is_empty()).then(|| CredentialId::from(id.trim()))
}

/// The spec a create request asks for, not yet validated.
pub fn spec_from_create(r: v1::CreateWebhookRequest) -> Result<WebhookSpec, InvalidField> {
    Ok(WebhookSpec {
        name: r.name,
        url: r.url,
        event_types: r.event_types,
        active: r.active,
        description: r.description,
        attempt_timeout: attempt_timeout_from_proto(r.attempt_timeout_ms),
        retry_schedule: r.retry_policy.as_ref().map(retry_policy_from_proto),
        app: r.app,
        method: method_from_proto(r.method)?,
        headers: headers_from_proto(r.headers),
        auth: auth_from_proto(r.auth),
        credential_id: credential_id_from_proto(&r.credential_id),
        fields: r.fields,
        format: format_from_proto(r.format)?,
        signing: SigningKeys::default(),
        health: health_policy_from_proto(r.health_policy.as_ref()),
        ordering: ordering_from_proto(&r.ordering_key)?,
        rate_limit: rate_limit_from_proto(r.rate_limit.as_ref()),
        filter: filter_from_proto(r.filter)?,
    })
}

/// `None` when the webhook keeps the deployment's thresholds.
pub fn health_policy_to_proto(p: &HealthPolicy) -> Option<v1::HealthPolicy> {
    (!p.is_default()).then(|| v1::HealthPolicy {
        max_failures: p.max_failures,
        no_success_secs: p.no_success_for.map(|d| d.as_secs()),
    })
}

pub fn health_policy_from_proto(p: Option<&v1::HealthPolicy>) -> HealthPolicy {
    p.map_or_else(HealthPolicy::default, |p| HealthPolicy {
        max_failures: p.max_failures,
        no_success_for: p.no_success_secs.map(Duration::from_secs),
    })
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
            app: w.app,
            method: method_from_proto(w.method).unwrap_or_default(),
            headers: headers_from_proto(w.headers),
            auth: auth_from_proto(w.auth),
            credential_id: credential_id_from_proto(&w.credential_id),
            fields: w.fields,
            format: format_from_proto(w.format).unwrap_or_default(),
            health: health_policy_from_proto(w.health_policy.as_ref()),
            // Validated when stored: a value that no longer parses is left out.
            ordering: ordering_from_proto(&w.ordering_key).ok().flatten(),
            filter: filter_from_proto(w.filter).ok().flatten(),
            rate_limit: rate_limit_from_proto(w.rate_limit.as_ref()),
            // Keys that do not parse cannot sign; the control plane only sends valid ones.
            signing: SigningKeys(
                w.signing_keys
                    .iter()
                    .filter_map(|k| {
                        Some(SigningKey {
                            secret: SigningSecret::parse(&k.secret).ok()?,
                            expires_at: k.expires_at.as_ref().and_then(from_timestamp),
                        })
                    })
                    .collect(),
            ),
        },
    }
}

pub fn grant_type_from_proto(g: i32) -> Result<GrantType, InvalidField> {
    match v1::GrantType::try_from(g) {
        Ok(v1::GrantType::Unspecified | v1::GrantType::ClientCredentials) => {
            Ok(GrantType::ClientCredentials)
        }
        Ok(v1::GrantType::AuthorizationCode) => Ok(GrantType::AuthorizationCode),
        Err(_) => Err(InvalidField::new("grant_type", format!("{g} is not a GrantType"))),
    }
}

pub fn token_method_from_proto(m: i32) -> Result<TokenMethod, InvalidField> {
    match v1::TokenMethod::try_from(m) {
        Ok(v1::TokenMethod::Unspecified | v1::TokenMethod::Post) => Ok(TokenMethod::Post),
        Ok(v1::TokenMethod::Get) => Ok(TokenMethod::Get),
        Err(_) => Err(InvalidField::new("method", format!("{m} is not a TokenMethod"))),
    }
}

/// The spec a credential message asks for, not yet validated. An empty code is no code.
pub fn credential_spec_from_proto(c: v1::Credential) -> Result<CredentialSpec, InvalidField> {
    Ok(CredentialSpec {
        name: c.name,
        token_url: c.token_url,
        method: token_method_from_proto(c.method)?,
        client_id: c.client_id,
        client_secret: Secret::new(c.client_secret),
        grant_type: grant_type_from_proto(c.grant_type)?,
        code: (!c.code.is_empty()).then(|| Secret::new(c.code)),
        scope: c.scope,
        extra_params: c.extra_params.into_iter().collect(),
    })
}

/// A credential for reads: secrets masked. The token fields are filled by the caller.
pub fn credential_to_proto(c: &Credential) -> v1::Credential {
    let spec = c.spec.masked();
    v1::Credential {
        id: c.id.to_string(),
        name: spec.name,
        token_url: spec.token_url,
        method: match spec.method {
            TokenMethod::Post => v1::TokenMethod::Post,
            TokenMethod::Get => v1::TokenMethod::Get,
        }
        .into(),
        client_id: spec.client_id,
        client_secret: spec.client_secret.expose().to_owned(),
        grant_type: match spec.grant_type {
            GrantType::ClientCredentials => v1::GrantType::ClientCredentials,
            GrantType::AuthorizationCode => v1::GrantType::AuthorizationCode,
        }
        .into(),
        code: spec.code.map(|c| c.expose().to_owned()).unwrap_or_default(),
        scope: spec.scope,
        extra_params: spec.extra_params.into_iter().collect(),
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
        token_expires_at: None,
        last_error: String::new(),
    }
}

pub fn event_type_to_proto(t: &EventTypeDef) -> v1::EventType {
    v1::EventType {
        name: t.spec.name.to_string(),
        description: t.spec.description.clone(),
        schema: t.spec.schema.clone().and_then(|s| match json_to_value(s).kind {
            Some(Kind::StructValue(s)) => Some(s),
            _ => None,
        }),
        example: t.spec.example.clone().map(json_to_value),
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
        rejected: t.rejected,
    }
}

/// The spec an event type message asks for, not yet validated (but the name is parsed).
pub fn event_type_spec_from_proto(t: v1::EventType) -> Result<EventTypeSpec, InvalidField> {
    Ok(EventTypeSpec {
        name: hookd_core::EventType::parse(&t.name)
            .map_err(|e| InvalidField::new("name", e.reason))?,
        description: t.description,
        schema: t.schema.map(|s| value_to_json(Value { kind: Some(Kind::StructValue(s)) })),
        example: t.example.map(value_to_json),
    })
}

/// An event type as the dispatch stream carries it (timestamps and counts do not matter
/// there).
pub fn event_type_from_proto(t: v1::EventType) -> Option<EventTypeDef> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    Some(EventTypeDef {
        created_at: t.created_at.as_ref().and_then(from_timestamp).unwrap_or(epoch),
        updated_at: t.updated_at.as_ref().and_then(from_timestamp).unwrap_or(epoch),
        rejected: t.rejected,
        spec: event_type_spec_from_proto(t).ok()?,
    })
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

impl From<AttemptRecord> for v1::Attempt {
    fn from(a: AttemptRecord) -> Self {
        v1::Attempt {
            number: a.number,
            started_at: Some(timestamp(a.started_at)),
            http_status: a.http_status.map_or(0, u32::from),
            latency_ms: a.latency_ms,
            error: a.error,
            response_body: a.response_body,
            success: a.success,
            request_headers: a
                .request_headers
                .into_iter()
                .map(|(name, value)| v1::HttpHeader { name, value })
                .collect(),
        }
    }
}

/// An attempt as a dispatcher reported it, checked: numbered from 1, with a start time, its
/// response excerpt within [`hookd_core::delivery::MAX_RESPONSE_EXCERPT`].
pub fn attempt_from_proto(a: v1::Attempt) -> Result<AttemptRecord, InvalidField> {
    if a.number == 0 {
        return Err(InvalidField::new("attempt.number", "starts at 1"));
    }
    let started_at = a
        .started_at
        .as_ref()
        .and_then(from_timestamp)
        .ok_or_else(|| InvalidField::new("attempt.started_at", "is required"))?;
    let mut record = AttemptRecord {
        number: a.number,
        started_at,
        http_status: u16::try_from(a.http_status).ok().filter(|s| *s != 0),
        latency_ms: a.latency_ms,
        error: a.error,
        response_body: a.response_body,
        success: a.success,
        request_headers: a.request_headers.into_iter().map(|h| (h.name, h.value)).collect(),
    };
    record.bound_response_body();
    Ok(record)
}

/// A dispatcher's report of an attempt, recorded under `tenant`; `traceparent` continues the
/// attempt's trace in the control plane's result write.
pub fn attempt_report_to_proto(
    tenant: String,
    report: AttemptReport,
    traceparent: Option<String>,
) -> v1::AttemptReport {
    v1::AttemptReport {
        delivery_id: report.delivery_id.into_string(),
        webhook_id: report.webhook_id.into_string(),
        event_id: report.event_id.into_string(),
        event_type: report.event_type,
        payload: report.payload,
        event: report.event,
        tenant,
        attempt: Some(report.attempt.into()),
        status: v1::DeliveryStatus::from(report.status_after).into(),
        next_attempt_at: report.next_attempt_at.map(timestamp),
        traceparent: traceparent.unwrap_or_default(),
    }
}

/// The tenant and the report of an attempt report, checked field by field.
pub fn attempt_report_from_proto(
    r: v1::AttemptReport,
) -> Result<(String, AttemptReport), InvalidField> {
    for (field, value) in [
        ("tenant", &r.tenant),
        ("delivery_id", &r.delivery_id),
        ("webhook_id", &r.webhook_id),
        ("event_id", &r.event_id),
    ] {
        if value.is_empty() {
            return Err(InvalidField::new(field, "is required"));
        }
    }
    let attempt =
        attempt_from_proto(r.attempt.ok_or_else(|| InvalidField::new("attempt", "is required"))?)?;
    let status_after = v1::DeliveryStatus::try_from(r.status)
        .ok()
        .and_then(v1::DeliveryStatus::to_domain)
        .ok_or_else(|| InvalidField::new("status", "must be pending, delivered or failed"))?;
    let report = AttemptReport {
        delivery_id: DeliveryId::from(r.delivery_id),
        webhook_id: WebhookId::from(r.webhook_id),
        event_id: EventId::from(r.event_id),
        event_type: r.event_type,
        payload: r.payload,
        event: r.event,
        attempt,
        status_after,
        next_attempt_at: r.next_attempt_at.as_ref().and_then(from_timestamp),
    };
    Ok((r.tenant, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_reports_round_trip_and_are_checked() {
        let at = DateTime::from_timestamp(1_700_000_000, 5_000).expect("valid time");
        let report = AttemptReport {
            delivery_id: "dlv_1".into(),
            webhook_id: "wh_1".into(),
            event_id: "evt_1".into(),
            event_type: "contact-created".into(),
            payload: "{}".into(),
            event: "{\"id\":\"evt_1\"}".into(),
            attempt: AttemptRecord {
                number: 3,
                started_at: at,
                http_status: Some(503),
                latency_ms: 12,
                error: "endpoint answered 503".into(),
                response_body: "busy".into(),
                success: false,
                request_headers: vec![("webhook-id".into(), "dlv_1".into())],
            },
            status_after: hookd_core::DeliveryStatus::Pending,
            next_attempt_at: Some(at),
        };
        let wire = attempt_report_to_proto("acme".into(), report.clone(), None);
        assert_eq!(attempt_report_from_proto(wire.clone()), Ok(("acme".to_owned(), report)));

        let no_tenant = v1::AttemptReport { tenant: String::new(), ..wire.clone() };
        let field = |r| attempt_report_from_proto(r).map(|_| ()).expect_err("refused").field;
        assert_eq!(field(no_tenant), "tenant");
        let mut zeroth = wire.clone();
        zeroth.attempt.as_mut().expect("attempt").number = 0;
        assert_eq!(field(zeroth), "attempt.number");
        let unknown_status = v1::AttemptReport { status: 0, ..wire };
        assert_eq!(field(unknown_status), "status");
    }

    #[test]
    fn a_reported_response_excerpt_is_bounded() {
        let long = "x".repeat(hookd_core::delivery::MAX_RESPONSE_EXCERPT + 10);
        let attempt = v1::Attempt {
            number: 1,
            started_at: Some(timestamp(DateTime::<Utc>::UNIX_EPOCH)),
            response_body: long,
            ..Default::default()
        };
        let record = attempt_from_proto(attempt).expect("valid");
        assert_eq!(record.response_body.len(), hookd_core::delivery::MAX_RESPONSE_EXCERPT);
    }

    #[test]
    fn json_survives_a_round_trip_through_protobuf_value() {
        let json = serde_json::json!({
            "name": "Ada", "count": 3, "ratio": 0.5, "tags": ["a", null, true], "nested": {"x": -7}
        });
        assert_eq!(value_to_json(json_to_value(json.clone())), json);
    }

    #[test]
    fn webhooks_round_trip_and_mask_secrets() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("valid time");
        let webhook = Webhook {
            id: "wh_1".into(),
            created_at: now,
            updated_at: now,
            spec: WebhookSpec {
                name: "crm".into(),
                url: "https://example.com/".into(),
                event_types: vec!["*".into()],
                active: true,
                description: String::new(),
                attempt_timeout: None,
                retry_schedule: None,
                app: "shop".into(),
                method: HttpMethod::Patch,
                headers: vec![Header { name: "x-a".into(), value: "1".into() }],
                auth: EndpointAuth::Basic {
                    username: "u".into(),
                    password: Secret::new("a-very-long-password"),
                },
                credential_id: None,
                fields: vec!["/a".into()],
                format: PayloadFormat::Flat,
                signing: SigningKeys::generate(),
                health: HealthPolicy {
                    max_failures: Some(0),
                    no_success_for: Some(Duration::from_secs(60)),
                },
                ordering: Some(OrderingKey::parse("/data/order/id").expect("valid")),
                filter: Some(
                    Filter::parse(
                        serde_json::json!({"/data/n": {"$gte": 2.5}, "$or": [{"/type": "a"}]}),
                    )
                    .expect("valid"),
                ),
                rate_limit: Some(RateLimit { per_second: 20, burst: 0 }),
            },
        };
        let revealed = webhook_from_proto(webhook_to_proto(&webhook, Secrets::Revealed));
        assert_eq!(revealed, webhook);
        let masked = webhook_to_proto(&webhook, Secrets::Masked);
        let Some(v1::endpoint_auth::Kind::Basic(basic)) = masked.auth.clone().and_then(|a| a.kind)
        else {
            panic!("basic auth expected");
        };
        assert_eq!(basic.password, "****word");
        assert!(masked.signing_keys.is_empty(), "reads never carry signing keys");
    }

    #[test]
    fn timestamps_round_trip() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid time");
        assert_eq!(from_timestamp(&timestamp(t)), Some(t));
    }
}
