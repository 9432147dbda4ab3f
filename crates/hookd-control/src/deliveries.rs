//! `DeliveryService`: the delivery history of a webhook, and one delivery with its attempts.

use chrono::DateTime;
use hookd_core::{DeliveryId, InvalidField, WebhookId};
use hookd_proto::{
    convert::timestamp,
    v1::{self, delivery_service_server::DeliveryService},
};
use hookd_storage::{DeliveryCursor, DeliveryRecord, Store, StoredAttempt};
use tonic::{Request, Response, Status};

use crate::{ControlError, webhooks::page_size};

pub struct DeliveryApi {
    store: Store,
    tenant: String,
}

impl DeliveryApi {
    pub fn new(store: Store, tenant: String) -> Self {
        Self { store, tenant }
    }
}

/// Page tokens are `<created_at in µs>_<delivery id>`: the position of the last row shown.
fn encode_cursor(d: &DeliveryRecord) -> String {
    format!("{}_{}", d.created_at.timestamp_micros(), d.id)
}

fn decode_cursor(token: &str) -> Result<Option<DeliveryCursor>, ControlError> {
    if token.is_empty() {
        return Ok(None);
    }
    let (micros, id) = token.split_once('_').ok_or(ControlError::PageToken)?;
    let micros: i64 = micros.parse().map_err(|_| ControlError::PageToken)?;
    let created_at = DateTime::from_timestamp_micros(micros).ok_or(ControlError::PageToken)?;
    if !id.starts_with("dlv_") {
        return Err(ControlError::PageToken);
    }
    Ok(Some(DeliveryCursor { created_at, id: DeliveryId::from(id) }))
}

fn delivery_to_proto(d: DeliveryRecord, attempts: Vec<StoredAttempt>) -> v1::Delivery {
    v1::Delivery {
        id: d.id.into_string(),
        webhook_id: d.webhook_id.into_string(),
        event_id: d.event_id.into_string(),
        event_type: d.event_type,
        status: v1::DeliveryStatus::from(d.status).into(),
        attempt_count: d.attempt_count,
        created_at: Some(timestamp(d.created_at)),
        updated_at: Some(timestamp(d.updated_at)),
        last_attempt_at: d.last_attempt_at.map(timestamp),
        next_attempt_at: d.next_attempt_at.map(timestamp),
        payload: d.payload,
        attempts: attempts.into_iter().map(attempt_to_proto).collect(),
    }
}

fn attempt_to_proto(a: StoredAttempt) -> v1::Attempt {
    v1::Attempt {
        number: a.number,
        started_at: Some(timestamp(a.started_at)),
        http_status: a.http_status.map_or(0, u32::from),
        latency_ms: a.latency_ms,
        error: a.error,
        response_body: a.response_body,
        success: a.success,
    }
}

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().webhook_id))]
    async fn list_deliveries(
        &self,
        request: Request<v1::ListDeliveriesRequest>,
    ) -> Result<Response<v1::ListDeliveriesResponse>, Status> {
        let r = request.into_inner();
        if r.webhook_id.is_empty() {
            return Err(ControlError::from(InvalidField::new("webhook_id", "is required")).into());
        }
        let cursor = decode_cursor(&r.page_token)?;
        let limit = page_size(r.page_size);
        let webhook_id = WebhookId::from(r.webhook_id);
        let mut page = self
            .store
            .list_deliveries(&self.tenant, &webhook_id, cursor.as_ref(), limit + 1)
            .await
            .map_err(ControlError::from)?;
        let more = page.len() as u64 > limit;
        page.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => encode_cursor(last),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListDeliveriesResponse {
            deliveries: page.into_iter().map(|d| delivery_to_proto(d, Vec::new())).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %request.get_ref().id))]
    async fn get_delivery(
        &self,
        request: Request<v1::GetDeliveryRequest>,
    ) -> Result<Response<v1::GetDeliveryResponse>, Status> {
        let id = request.into_inner().id;
        let found = self
            .store
            .get_delivery(&self.tenant, &DeliveryId::from(id.as_str()))
            .await
            .map_err(ControlError::from)?;
        let (delivery, attempts) = found.ok_or(ControlError::NotFound { what: "delivery", id })?;
        Ok(Response::new(v1::GetDeliveryResponse {
            delivery: Some(delivery_to_proto(delivery, attempts)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_rejected() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("valid");
        let token = format!("{}_dlv_abc", at.timestamp_micros());
        let cursor = decode_cursor(&token).expect("valid").expect("some");
        assert_eq!(cursor.created_at, at);
        assert_eq!(cursor.id.as_str(), "dlv_abc");
        assert!(decode_cursor("").expect("empty is fine").is_none());
        for bad in ["x", "1_2", "abc_dlv_1"] {
            assert!(matches!(decode_cursor(bad), Err(ControlError::PageToken)), "{bad}");
        }
    }
}
