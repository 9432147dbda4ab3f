//! `DispatchService`, the internal API of dispatchers: the definitions watch and the
//! batched recording of attempt results.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use hookd_core::{
    AttemptReport, CredentialId, DeliveryId, InvalidField, Webhook, WebhookId,
    catalog::EventTypeDef,
};
use hookd_proto::{
    convert::{
        Secrets, attempt_report_from_proto, event_type_to_proto, timestamp, webhook_to_proto,
    },
    v1::{self, dispatch_service_server::DispatchService, watch_webhooks_response::Change as Wire},
};
use hookd_storage::Store;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::shared::Shared;
use crate::{
    ControlError,
    changes::{Change, Changes},
    lifecycle::Stopping,
    oauth::Tokens,
    recorder::Recorder,
};

/// Most reports accepted in one call; dispatchers batch below this.
const MAX_REPORTS_PER_CALL: usize = 10_000;

pub struct DispatchApi {
    store: Store,
    changes: Changes,
    recorder: Recorder,
    tokens: Tokens,
    snapshot_page_size: usize,
    /// Ends every definitions watch when the control plane shuts down, so the dispatchers
    /// reconnect elsewhere and the graceful shutdown is not held up by them.
    stopping: Stopping,
}

impl DispatchApi {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            store: shared.store.clone(),
            changes: shared.changes.clone(),
            recorder: shared.recorder.clone(),
            tokens: shared.access_tokens.clone(),
            snapshot_page_size: shared.config.snapshot_page_size.max(1),
            stopping: shared.stopping.clone(),
        }
    }
}

/// A webhook as dispatchers need it: secrets revealed, and its tenant, which decides whose
/// events it receives.
fn dispatch_webhook(tenant: &str, w: &Webhook) -> v1::Webhook {
    let mut wire = webhook_to_proto(w, Secrets::Revealed);
    wire.tenant = tenant.to_owned();
    wire
}

fn catalog_entry(tenant: String, def: &EventTypeDef) -> v1::CatalogEntry {
    v1::CatalogEntry { tenant, event_type: Some(event_type_to_proto(def)) }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchWebhooksResponse, Status>> + Send>>;

fn message(seq: u64, change: Wire) -> Result<v1::WatchWebhooksResponse, Status> {
    Ok(v1::WatchWebhooksResponse { seq, change: Some(change) })
}

/// Sends a full snapshot in pages. Returns false once the watcher has gone away.
async fn send_snapshot(
    store: &Store,
    seq: u64,
    page_size: usize,
    out: &mpsc::Sender<Result<v1::WatchWebhooksResponse, Status>>,
) -> bool {
    let read = async {
        Ok::<_, hookd_storage::StorageError>((
            store.all_webhooks().await?,
            store.all_event_types().await?,
        ))
    };
    let (all, catalog) = match read.await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read definitions for a snapshot");
            let _ = out
                .send(
                    Err(ControlError::Unavailable(format!("cannot read definitions: {e}")).into()),
                )
                .await;
            return false;
        }
    };
    let mut event_types: Vec<v1::CatalogEntry> =
        catalog.into_iter().map(|(tenant, def)| catalog_entry(tenant, &def)).collect();
    let webhooks: Vec<v1::Webhook> =
        all.iter().map(|(tenant, w)| dispatch_webhook(tenant, w)).collect();
    let pages = webhooks.chunks(page_size).count().max(1);
    let mut chunks = webhooks.chunks(page_size);
    for index in 0..pages {
        let page = chunks.next().unwrap_or_default().to_vec();
        let snapshot = v1::SnapshotPage {
            webhooks: page,
            complete: index + 1 == pages,
            event_types: std::mem::take(&mut event_types),
        };
        if out.send(message(seq, Wire::Snapshot(snapshot))).await.is_err() {
            return false;
        }
    }
    tracing::debug!(webhooks = webhooks.len(), "snapshot sent");
    true
}

/// A `record_attempt` span for each report that carries its attempt's trace context, a child
/// of that attempt and linked to this call's span (the batch, which holds many traces). Reports
/// without one (traces not exported) cost nothing here.
fn record_spans(reports: &[v1::AttemptReport]) -> Vec<tracing::Span> {
    let mut traced = reports.iter().filter(|r| !r.traceparent.is_empty()).peekable();
    if traced.peek().is_none() {
        return Vec::new();
    }
    let batch = hookd_nats::trace::span_context(&tracing::Span::current());
    traced
        .map(|r| {
            let span = tracing::info_span!(
                "record_attempt",
                delivery_id = %r.delivery_id,
                attempt = r.attempt.as_ref().map_or(0, |a| a.number),
            );
            hookd_nats::trace::set_parent(&span, &r.traceparent);
            if let Some(batch) = &batch {
                hookd_nats::trace::add_link(&span, batch.clone());
            }
            span
        })
        .collect()
}

#[tonic::async_trait]
impl DispatchService for DispatchApi {
    type WatchWebhooksStream = WatchStream;

    #[tracing::instrument(skip_all, fields(watcher = %request.get_ref().watcher_id))]
    async fn watch_webhooks(
        &self,
        request: Request<v1::WatchWebhooksRequest>,
    ) -> Result<Response<Self::WatchWebhooksStream>, Status> {
        let watcher_id = request.into_inner().watcher_id;
        // Subscribe before reading the snapshot: a change made while it is read is then sent
        // after it, and applying a change twice is harmless.
        let (mut seq, mut changes) = self.changes.subscribe();
        // A watcher without an id cannot confirm changes, so writers do not wait for it.
        let registration =
            (!watcher_id.is_empty()).then(|| self.changes.register(watcher_id.clone()));
        let (out, stream) = mpsc::channel(64);
        let store = self.store.clone();
        let feed = self.changes.clone();
        let page_size = self.snapshot_page_size;
        tracing::info!("dispatcher watching webhooks");
        tokio::spawn(async move {
            let _registration = registration;
            'snapshot: loop {
                if !send_snapshot(&store, seq, page_size, &out).await {
                    return;
                }
                loop {
                    let change = tokio::select! {
                        () = out.closed() => return,
                        change = changes.recv() => change,
                    };
                    let (change_seq, wire) = match change {
                        Ok((n, Change::Upserted { tenant, webhook })) => {
                            (n, Wire::Upserted(dispatch_webhook(&tenant, &webhook)))
                        }
                        Ok((n, Change::Deleted { id, .. })) => {
                            (n, Wire::DeletedId(id.into_string()))
                        }
                        Ok((n, Change::EventTypeUpserted { tenant, def })) => {
                            (n, Wire::EventTypeUpserted(catalog_entry(tenant, &def)))
                        }
                        Ok((n, Change::EventTypeDeleted { tenant, name })) => (
                            n,
                            Wire::EventTypeDeleted(v1::CatalogEntry {
                                tenant,
                                event_type: Some(v1::EventType { name, ..Default::default() }),
                            }),
                        ),
                        Ok((n, Change::Resync)) => {
                            tracing::info!("changes may have been missed; sending a new snapshot");
                            seq = n;
                            continue 'snapshot;
                        }
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "watcher fell behind; sending a new snapshot");
                            (seq, changes) = feed.subscribe();
                            continue 'snapshot;
                        }
                        Err(RecvError::Closed) => return,
                    };
                    if out.send(message(change_seq, wire)).await.is_err() {
                        return;
                    }
                }
            }
        });
        let stream = ReceiverStream::new(stream);
        Ok(Response::new(Box::pin(stream.take_until(self.stopping.stopped()))))
    }

    async fn ack_webhooks(
        &self,
        request: Request<v1::AckWebhooksRequest>,
    ) -> Result<Response<v1::AckWebhooksResponse>, Status> {
        let r = request.into_inner();
        self.changes.ack(&r.watcher_id, r.seq);
        Ok(Response::new(v1::AckWebhooksResponse {}))
    }

    #[tracing::instrument(skip_all, fields(credential_id = %request.get_ref().credential_id))]
    async fn get_access_token(
        &self,
        request: Request<v1::GetAccessTokenRequest>,
    ) -> Result<Response<v1::GetAccessTokenResponse>, Status> {
        let r = request.into_inner();
        if r.credential_id.is_empty() {
            return Err(
                ControlError::from(InvalidField::new("credential_id", "is required")).into()
            );
        }
        if r.tenant.is_empty() {
            return Err(ControlError::from(InvalidField::new("tenant", "is required")).into());
        }
        let tenant = r.tenant;
        let (token, expires_at) = self
            .tokens
            .get(&tenant, &CredentialId::from(r.credential_id), &r.rejected_token)
            .await?;
        Ok(Response::new(v1::GetAccessTokenResponse {
            access_token: token.expose().to_owned(),
            expires_at: Some(timestamp(expires_at)),
        }))
    }

    #[tracing::instrument(skip_all, fields(deliveries = request.get_ref().delivery_ids.len()))]
    async fn get_delivery_progress(
        &self,
        request: Request<v1::GetDeliveryProgressRequest>,
    ) -> Result<Response<v1::GetDeliveryProgressResponse>, Status> {
        /// A fan-out asks for the deliveries of one event: its matching webhooks.
        const MAX_IDS: usize = 10_000;
        let r = request.into_inner();
        if r.tenant.is_empty() {
            return Err(ControlError::from(InvalidField::new("tenant", "is required")).into());
        }
        if r.delivery_ids.len() > MAX_IDS {
            return Err(ControlError::from(InvalidField::new(
                "delivery_ids",
                format!("names more than {MAX_IDS} deliveries"),
            ))
            .into());
        }
        let ids: Vec<DeliveryId> = r.delivery_ids.into_iter().map(DeliveryId::from).collect();
        let found =
            self.store.delivery_progress(&r.tenant, &ids).await.map_err(ControlError::from)?;
        let deliveries = found
            .into_iter()
            .map(|d| v1::DeliveryProgress {
                delivery_id: d.id.to_string(),
                status: v1::DeliveryStatus::from(d.status).into(),
                last_attempt: d.attempt_count,
                next_attempt_at: d.next_attempt_at.map(timestamp),
            })
            .collect();
        Ok(Response::new(v1::GetDeliveryProgressResponse { deliveries }))
    }

    #[tracing::instrument(skip_all, fields(reports = request.get_ref().reports.len()))]
    async fn report_attempts(
        &self,
        request: Request<v1::ReportAttemptsRequest>,
    ) -> Result<Response<v1::ReportAttemptsResponse>, Status> {
        let r = request.into_inner();
        let reports = r.reports;
        if !r.rejected.is_empty() {
            if r.rejected.iter().any(|x| x.tenant.is_empty()) {
                return Err(ControlError::from(InvalidField::new(
                    "rejected.tenant",
                    "is required",
                ))
                .into());
            }
            let counts: Vec<(String, String, u64)> = r
                .rejected
                .iter()
                .map(|x| (x.tenant.clone(), x.event_type.clone(), x.count))
                .collect();
            for x in &r.rejected {
                let error = hookd_core::text::bound_message(&x.error);
                tracing::info!(event_type = %x.event_type, count = x.count, %error, "events refused by the fan-out");
            }
            self.store.add_rejected(&counts).await.map_err(|e| {
                ControlError::Unavailable(format!("cannot store rejection counts: {e}"))
            })?;
        }
        if !r.kept.is_empty() {
            let kept: Vec<(String, WebhookId, u64)> = r
                .kept
                .iter()
                .filter(|k| !k.tenant.is_empty() && !k.webhook_id.is_empty())
                .map(|k| (k.tenant.clone(), WebhookId::from(k.webhook_id.as_str()), k.count))
                .collect();
            self.store.add_buffer_kept(&kept).await.map_err(|e| {
                ControlError::Unavailable(format!("cannot store buffer counts: {e}"))
            })?;
        }
        if !r.filtered.is_empty() {
            let filtered: Vec<(String, WebhookId, u64)> = r
                .filtered
                .iter()
                .filter(|f| !f.tenant.is_empty() && !f.webhook_id.is_empty())
                .map(|f| (f.tenant.clone(), WebhookId::from(f.webhook_id.as_str()), f.count))
                .collect();
            self.store.add_filtered(&filtered).await.map_err(|e| {
                ControlError::Unavailable(format!("cannot store filter counts: {e}"))
            })?;
        }
        if reports.len() > MAX_REPORTS_PER_CALL {
            return Err(ControlError::from(InvalidField::new(
                "reports",
                format!("at most {MAX_REPORTS_PER_CALL} per call"),
            ))
            .into());
        }
        // One span per traced report, open until its batch is stored: the result write as
        // the child of the attempt it records. Dropped (ended) when this call returns.
        let _record_spans = record_spans(&reports);
        // Grouped by tenant: each tenant's results are recorded under it, in report order.
        let mut by_tenant: Vec<(String, Vec<AttemptReport>)> = Vec::new();
        for (index, report) in reports.into_iter().enumerate() {
            let (tenant, record) = attempt_report_from_proto(report)
                .map_err(|invalid| ControlError::InvalidReport { index, invalid })?;
            match by_tenant.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, records)) => records.push(record),
                None => by_tenant.push((tenant, vec![record])),
            }
        }
        let mut recorded = crate::recorder::Recorded::default();
        for (tenant, records) in by_tenant {
            let stored = self.recorder.record(tenant, records).await.map_err(|e| {
                ControlError::Unavailable(format!("cannot store attempt results: {e}"))
            })?;
            recorded.new += stored.new;
            recorded.duplicates += stored.duplicates;
        }
        Ok(Response::new(v1::ReportAttemptsResponse {
            recorded: recorded.new,
            duplicates: recorded.duplicates,
        }))
    }
}
