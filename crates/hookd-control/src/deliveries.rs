//! `DeliveryService`: the delivery history of a webhook, and one delivery with its attempts.

use chrono::{DateTime, Utc};
use hookd_core::access::Permission;
use hookd_core::{AttemptRecord, DeliveryId, DeliveryStatus, InvalidField, WebhookId};
use hookd_nats::DeliveryJob;
use hookd_proto::{
    convert::{from_timestamp, timestamp},
    v1::{self, delivery_service_server::DeliveryService},
};
use hookd_storage::{DeliveryCursor, DeliveryFilter, DeliveryRecord, Store};
use serde_json::value::RawValue;
use tonic::{Request, Response, Status};

use crate::shared::Shared;
use crate::{
    ControlError,
    auth::{Caller, require},
    webhooks::page_size,
};

pub struct DeliveryApi {
    store: Store,
    jetstream: async_nats::jetstream::Context,
}

impl DeliveryApi {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self { store: shared.store.clone(), jetstream: shared.jetstream.clone() }
    }

    /// For a caller limited to one app label: the webhook must exist and carry the label,
    /// else it is NOT_FOUND (history of a deleted webhook is out of such a caller's reach).
    async fn check_scope(
        &self,
        caller: &Caller,
        webhook_id: &WebhookId,
    ) -> Result<(), ControlError> {
        if caller.app.is_none() {
            return Ok(());
        }
        match self.store.get_webhook(&caller.tenant, webhook_id).await? {
            Some(w) if caller.reaches_app(&w.spec.app) => Ok(()),
            _ => Err(ControlError::NotFound { what: "webhook", id: webhook_id.to_string() }),
        }
    }

    /// Makes a finished delivery pending again and queues its next attempt, now. The state
    /// changes first, so the new attempt's result (which may arrive at once) lands on it.
    async fn resend(&self, tenant: &str, id: &DeliveryId) -> Result<DeliveryRecord, ControlError> {
        let now = Utc::now();
        let Some(before) = self.store.mark_resent(tenant, id, now).await? else {
            return match self.store.get_delivery(tenant, id).await? {
                None => Err(ControlError::NotFound { what: "delivery", id: id.to_string() }),
                Some(_) => Err(ControlError::FailedPrecondition(format!(
                    "delivery {id} is pending: its next attempt is already scheduled"
                ))),
            };
        };
        let event = RawValue::from_string(before.event.clone()).map_err(|e| {
            ControlError::FailedPrecondition(format!("delivery {id} has no stored event: {e}"))
        })?;
        let attempt = before.attempt_count.saturating_add(1);
        let job = DeliveryJob {
            delivery_id: before.id.clone(),
            webhook_id: before.webhook_id.clone(),
            event_id: before.event_id.clone(),
            tenant: tenant.to_owned(),
            event,
            attempt,
            chain_start: attempt,
            event_sequence: None,
            // The resend's attempts continue the trace of the call that asked for it.
            traceparent: hookd_nats::trace::traceparent(&tracing::Span::current()),
            // For an ordered webhook a resend has no place in its key's line yet: it joins
            // the end of the line when a dispatcher takes it.
            order_key: None,
            hold_until: None,
        };
        if let Err(e) = job.publish(&self.jetstream).await {
            // Nothing was queued: put the delivery back as it was.
            let _ = self.store.restore_status(tenant, &before).await;
            return Err(ControlError::from(e));
        }
        tracing::info!(delivery_id = %id, attempt, "delivery resent");
        let mut after = before;
        after.status = DeliveryStatus::Pending;
        after.next_attempt_at = Some(now);
        Ok(after)
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

fn delivery_to_proto(d: DeliveryRecord, attempts: Vec<AttemptRecord>) -> v1::Delivery {
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
        attempts: attempts.into_iter().map(v1::Attempt::from).collect(),
    }
}

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().webhook_id))]
    async fn list_deliveries(
        &self,
        request: Request<v1::ListDeliveriesRequest>,
    ) -> Result<Response<v1::ListDeliveriesResponse>, Status> {
        let caller = require(&request, Permission::WebhooksRead)?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        if r.webhook_id.is_empty() {
            return Err(ControlError::from(InvalidField::new("webhook_id", "is required")).into());
        }
        let cursor = decode_cursor(&r.page_token)?;
        let limit = page_size(r.page_size);
        let filter = DeliveryFilter {
            status: v1::DeliveryStatus::try_from(r.status)
                .map_err(|_| InvalidField::new("status", "is not a delivery status"))
                .map_err(ControlError::from)?
                .to_domain(),
            since: match &r.since {
                None => None,
                Some(t) => Some(
                    from_timestamp(t)
                        .ok_or_else(|| InvalidField::new("since", "is out of range"))
                        .map_err(ControlError::from)?,
                ),
            },
        };
        let webhook_id = WebhookId::from(r.webhook_id);
        self.check_scope(&caller, &webhook_id).await?;
        let mut page = self
            .store
            .list_deliveries(tenant, &webhook_id, &filter, cursor.as_ref(), limit + 1)
            .await
            .map_err(ControlError::from)?;
        // Another tenant's webhook must look like a missing one. History outlives a deleted
        // webhook, so only an empty first page asks whether the webhook exists.
        if page.is_empty()
            && cursor.is_none()
            && self
                .store
                .get_webhook(tenant, &webhook_id)
                .await
                .map_err(ControlError::from)?
                .is_none()
        {
            return Err(
                ControlError::NotFound { what: "webhook", id: webhook_id.into_string() }.into()
            );
        }
        let next_page_token = crate::webhooks::finish_page(&mut page, limit, encode_cursor);
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
        let caller = require(&request, Permission::WebhooksRead)?;
        let tenant = caller.tenant.as_str();
        let id = request.into_inner().id;
        let found = self
            .store
            .get_delivery(tenant, &DeliveryId::from(id.as_str()))
            .await
            .map_err(ControlError::from)?;
        let (delivery, attempts) =
            found.ok_or(ControlError::NotFound { what: "delivery", id: id.clone() })?;
        if self.check_scope(&caller, &delivery.webhook_id).await.is_err() {
            return Err(ControlError::NotFound { what: "delivery", id }.into());
        }
        Ok(Response::new(v1::GetDeliveryResponse {
            delivery: Some(delivery_to_proto(delivery, attempts)),
        }))
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %request.get_ref().id))]
    async fn resend_delivery(
        &self,
        request: Request<v1::ResendDeliveryRequest>,
    ) -> Result<Response<v1::ResendDeliveryResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(ControlError::from(InvalidField::new("id", "is required")).into());
        }
        let id = DeliveryId::from(id);
        if caller.app.is_some() {
            let found = self.store.get_delivery(tenant, &id).await.map_err(ControlError::from)?;
            let in_reach = match &found {
                Some((d, _)) => self.check_scope(&caller, &d.webhook_id).await.is_ok(),
                None => false,
            };
            if !in_reach {
                return Err(ControlError::NotFound { what: "delivery", id: id.to_string() }.into());
            }
        }
        let delivery = self.resend(tenant, &id).await?;
        Ok(Response::new(v1::ResendDeliveryResponse {
            delivery: Some(delivery_to_proto(delivery, Vec::new())),
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().webhook_id))]
    async fn recover_failed_deliveries(
        &self,
        request: Request<v1::RecoverFailedDeliveriesRequest>,
    ) -> Result<Response<v1::RecoverFailedDeliveriesResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        if r.webhook_id.is_empty() {
            return Err(ControlError::from(InvalidField::new("webhook_id", "is required")).into());
        }
        let since = r
            .since
            .as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| ControlError::from(InvalidField::new("since", "is required")))?;
        let filter = DeliveryFilter { status: Some(DeliveryStatus::Failed), since: Some(since) };
        let webhook_id = WebhookId::from(r.webhook_id);
        // Resending needs the webhook (the dispatcher would drop jobs for a missing one), and
        // another tenant's must look missing.
        let found =
            self.store.get_webhook(tenant, &webhook_id).await.map_err(ControlError::from)?;
        if !found.is_some_and(|w| caller.reaches_app(&w.spec.app)) {
            return Err(
                ControlError::NotFound { what: "webhook", id: webhook_id.into_string() }.into()
            );
        }
        let mut resent = 0u32;
        // Each resend makes its delivery pending, so the failed set shrinks as we go: always
        // read the first page again rather than paging with a cursor.
        loop {
            let page = self
                .store
                .list_deliveries(tenant, &webhook_id, &filter, None, RECOVER_PAGE)
                .await
                .map_err(ControlError::from)?;
            if page.is_empty() {
                break;
            }
            for delivery in page {
                match self.resend(tenant, &delivery.id).await {
                    Ok(_) => resent += 1,
                    // Resent meanwhile by someone else: not ours to count.
                    Err(ControlError::FailedPrecondition(_) | ControlError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tracing::info!(resent, "failed deliveries recovered");
        Ok(Response::new(v1::RecoverFailedDeliveriesResponse { resent }))
    }
}

const RECOVER_PAGE: u64 = 200;

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
