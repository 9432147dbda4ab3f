//! `EventService`: publishing over gRPC, for producers that do not speak NATS. The event
//! goes to the same stream, subject and dedupe window as one published to NATS directly; its
//! data is first checked against its type's schema, if the catalog has one, its size against
//! `max_event_bytes`, and its nesting against `MAX_JSON_DEPTH`. The type is the request's, and
//! so is the subject's: the event goes to `hookd.events.<tenant>.<its type>` with `Nats-Msg-Id`
//! = its id, so the checks the fan-out makes on NATS producers hold by construction.

use chrono::Utc;
use hookd_core::access::Permission;
use hookd_core::{
    Event, EventId, EventType, InvalidField,
    event::{check_depth, validate_event_id},
};
use hookd_nats::trace::TRACEPARENT;
use hookd_proto::{
    convert::{from_timestamp, value_to_json},
    v1::{self, event_service_server::EventService},
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use std::sync::Arc;

use crate::shared::Shared;
use crate::{ControlError, auth::require, catalog::Catalog, metrics::Metrics};

pub struct EventApi {
    jetstream: async_nats::jetstream::Context,
    catalog: Catalog,
    max_event_bytes: usize,
    metrics: Arc<Metrics>,
}

impl EventApi {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            jetstream: shared.jetstream.clone(),
            catalog: shared.catalog.clone(),
            max_event_bytes: shared.config.max_event_bytes,
            metrics: shared.metrics.clone(),
        }
    }
}

/// The largest `PublishEvent` request decoded: protobuf spends up to about 5.5 times the bytes
/// of JSON on some data (an array of small numbers: 2 bytes each in JSON, 11 in a
/// `google.protobuf.Value`), so any event within `max_event_bytes` fits, and the JSON size is
/// then checked exactly. Never below tonic's default of 4 MiB.
pub fn request_limit(max_event_bytes: usize) -> usize {
    max_event_bytes.saturating_mul(8).max(4 * 1024 * 1024)
}

/// Refuses an event whose JSON, as it would be published, is over `max` bytes; the same
/// measure the dispatcher's fan-out applies to events published to NATS directly.
fn check_size(event: &Event, max: usize) -> Result<(), InvalidField> {
    let size = event.to_json().len();
    if size > max {
        return Err(InvalidField::new(
            "event",
            format!("is {size} bytes as JSON; at most {max} bytes (max_event_bytes) are accepted"),
        ));
    }
    Ok(())
}

fn event_from_request(e: v1::Event) -> Result<Event, InvalidField> {
    let id = if e.id.is_empty() { EventId::generate() } else { EventId::from(e.id) };
    validate_event_id(id.as_str())?;
    let timestamp = match e.timestamp {
        None => Utc::now(),
        Some(t) => from_timestamp(&t)
            .ok_or_else(|| InvalidField::new("event.timestamp", "is out of range"))?,
    };
    Ok(Event {
        id,
        event_type: EventType::parse(&e.r#type)
            .map_err(|err| InvalidField::new("event.type", err.reason))?,
        entity_id: e.entity_id,
        timestamp,
        context: e.context.map(value_to_json).unwrap_or_default(),
        data: e.data.map(value_to_json).unwrap_or_default(),
    })
}

#[tonic::async_trait]
impl EventService for EventApi {
    async fn publish_event(
        &self,
        request: Request<v1::PublishEventRequest>,
    ) -> Result<Response<v1::PublishEventResponse>, Status> {
        let span = tracing::info_span!(
            "publish_event",
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty
        );
        // The producer's trace, if it sent one; otherwise this span starts a trace. Set before
        // the span is entered: its parent is fixed from then on.
        if let Some(parent) = request.metadata().get(TRACEPARENT).and_then(|v| v.to_str().ok()) {
            hookd_nats::trace::set_parent(&span, parent);
        }
        self.publish(request).instrument(span).await
    }
}

impl EventApi {
    /// Checks and publishes one event; the current span's trace context goes with it.
    async fn publish(
        &self,
        request: Request<v1::PublishEventRequest>,
    ) -> Result<Response<v1::PublishEventResponse>, Status> {
        let caller = require(&request, Permission::EventsPublish)?;
        let tenant = caller.tenant.as_str();
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| InvalidField::new("event", "is required"))
            .and_then(event_from_request)
            .map_err(ControlError::from)?;
        let span = tracing::Span::current();
        span.record("event_id", event.id.as_str());
        span.record("event_type", event.event_type.as_str());
        check_depth("event.data", &event.data)
            .and_then(|()| check_depth("event.context", &event.context))
            .and_then(|()| check_size(&event, self.max_event_bytes))
            .map_err(ControlError::from)?;
        if let Some(schema) = self.catalog.schema(tenant, event.event_type.as_str()) {
            schema
                .check(&event.data)
                .map_err(|e| ControlError::from(InvalidField::new("event.data", e)))?;
        }
        let published = hookd_nats::publish_event(&self.jetstream, tenant, &event)
            .await
            .map_err(ControlError::from)?;
        let result = if published.duplicate { "duplicate" } else { "stored" };
        self.metrics.events_published.with_label_values(&[result]).inc();
        Ok(Response::new(v1::PublishEventResponse {
            event_id: event.id.into_string(),
            stream_sequence: published.sequence,
            duplicate: published.duplicate,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_id_and_timestamp_are_filled_in() {
        let event = event_from_request(v1::Event {
            r#type: "contact-created".into(),
            ..Default::default()
        })
        .expect("valid");
        assert!(event.id.as_str().starts_with("evt_"));
    }

    #[test]
    fn bad_type_names_the_field() {
        let err = event_from_request(v1::Event { r#type: "a b".into(), ..Default::default() })
            .expect_err("invalid");
        assert_eq!(err.field, "event.type");
    }

    #[test]
    fn an_oversized_event_names_the_field_and_the_limit() {
        let event = event_from_request(v1::Event {
            r#type: "contact-created".into(),
            ..Default::default()
        })
        .expect("valid");
        let size = event.to_json().len();
        check_size(&event, size).expect("at the limit");
        let err = check_size(&event, size - 1).expect_err("over the limit");
        assert_eq!(err.field, "event");
        assert!(err.reason.contains(&format!("at most {} bytes", size - 1)), "{err}");
    }
}
