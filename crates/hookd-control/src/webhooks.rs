//! `WebhookService`: create, read, update and delete webhook definitions. Every change is
//! also announced on [`Changes`] so watching dispatchers pick it up at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use hookd_core::{InvalidField, Webhook, WebhookId, WebhookSpec};
use hookd_proto::{
    convert::{
        Secrets, attempt_timeout_from_proto, retry_policy_from_proto, spec_from_create,
        webhook_to_proto,
    },
    v1::{self, webhook_service_server::WebhookService},
};
use hookd_storage::Store;

use tokio::sync::{broadcast, watch};
use tonic::{Request, Response, Status};

use crate::ControlError;

const DEFAULT_PAGE_SIZE: u32 = 50;
const UPDATABLE: &str =
    "name, url, event_types, active, description, attempt_timeout_ms, retry_policy";
const MAX_PAGE_SIZE: u32 = 500;

/// A change to one webhook definition, as dispatchers need it.
#[derive(Debug, Clone)]
pub enum Change {
    Upserted(Box<Webhook>),
    Deleted(WebhookId),
}

/// The in-process feed of definition changes, numbered in the order they are sent, and the
/// watchers (dispatchers) that follow it with how far each has applied it. A watcher that
/// lags behind the feed gets a new snapshot instead, so the capacity bounds only memory.
#[derive(Clone)]
pub struct Changes(Arc<Feed>);

struct Feed {
    sender: broadcast::Sender<(u64, Change)>,
    /// The seq of the last change sent; held while sending so seq order is feed order.
    seq: Mutex<u64>,
    watchers: Mutex<HashMap<String, watch::Sender<u64>>>,
}

/// Removes its watcher from the registry when the watch stream ends.
pub struct Registration {
    changes: Changes,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.changes.0.watchers).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Changes {
    pub fn new() -> Self {
        Self(Arc::new(Feed {
            sender: broadcast::channel(4096).0,
            seq: Mutex::new(0),
            watchers: Mutex::default(),
        }))
    }

    /// A receiver of every change after the returned seq.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<(u64, Change)>) {
        let seq = lock(&self.0.seq);
        (*seq, self.0.sender.subscribe())
    }

    /// Registers a watcher that has applied nothing yet.
    pub fn register(&self, id: String) -> Registration {
        lock(&self.0.watchers).insert(id.clone(), watch::channel(0).0);
        Registration { changes: self.clone(), id }
    }

    /// Records that watcher `id` has applied everything up to `seq`.
    pub fn ack(&self, id: &str, seq: u64) {
        if let Some(applied) = lock(&self.0.watchers).get(id) {
            applied.send_if_modified(|current| {
                let newer = seq > *current;
                if newer {
                    *current = seq;
                }
                newer
            });
        }
    }

    fn announce(&self, change: Change) -> u64 {
        let mut seq = lock(&self.0.seq);
        *seq += 1;
        // No receivers (no dispatcher connected) is fine: they read a snapshot on connect.
        let _ = self.0.sender.send((*seq, change));
        *seq
    }

    /// Waits until every registered watcher has applied `seq`, or until `timeout`: a
    /// dispatcher that is gone or stuck must not block changes for long.
    async fn wait_applied(&self, seq: u64, timeout: Duration) {
        let watchers: Vec<(String, watch::Receiver<u64>)> = lock(&self.0.watchers)
            .iter()
            .map(|(id, applied)| (id.clone(), applied.subscribe()))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        for (id, mut applied) in watchers {
            let caught_up =
                tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= seq)).await;
            if !matches!(caught_up, Ok(Ok(_))) {
                tracing::warn!(watcher = %id, seq, "a dispatcher did not confirm a webhook change in time");
            }
        }
    }

    /// Announces `change` and returns once every watcher has applied it (or the deadline
    /// passed), so whoever made the change can publish events that depend on it at once.
    pub async fn publish(&self, change: Change) {
        let seq = self.announce(change);
        self.wait_applied(seq, APPLY_DEADLINE).await;
    }
}

/// How long a webhook change waits for dispatchers to confirm it.
const APPLY_DEADLINE: Duration = Duration::from_secs(2);

pub struct WebhookApi {
    store: Store,
    tenant: String,
    changes: Changes,
}

impl WebhookApi {
    pub fn new(store: Store, tenant: String, changes: Changes) -> Self {
        Self { store, tenant, changes }
    }

    async fn load(&self, id: &str) -> Result<Webhook, ControlError> {
        let not_found = || ControlError::NotFound { what: "webhook", id: id.to_owned() };
        if id.is_empty() {
            return Err(InvalidField::new("id", "must not be empty").into());
        }
        self.store.get_webhook(&self.tenant, &WebhookId::from(id)).await?.ok_or_else(not_found)
    }
}

pub(crate) fn page_size(requested: u32) -> u64 {
    u64::from(match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    })
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn create_webhook(
        &self,
        request: Request<v1::CreateWebhookRequest>,
    ) -> Result<Response<v1::CreateWebhookResponse>, Status> {
        let r = request.into_inner();
        let spec =
            spec_from_create(r).and_then(WebhookSpec::validate).map_err(ControlError::from)?;
        let now = Utc::now();
        let webhook = Webhook { id: WebhookId::generate(), spec, created_at: now, updated_at: now };
        self.store.create_webhook(&self.tenant, &webhook).await.map_err(ControlError::from)?;
        tracing::info!(webhook_id = %webhook.id, "webhook created");
        self.changes.publish(Change::Upserted(Box::new(webhook.clone()))).await;
        Ok(Response::new(v1::CreateWebhookResponse {
            webhook: Some(webhook_to_proto(&webhook, Secrets::Masked)),
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id))]
    async fn get_webhook(
        &self,
        request: Request<v1::GetWebhookRequest>,
    ) -> Result<Response<v1::GetWebhookResponse>, Status> {
        let webhook = self.load(&request.get_ref().id).await?;
        Ok(Response::new(v1::GetWebhookResponse {
            webhook: Some(webhook_to_proto(&webhook, Secrets::Masked)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_webhooks(
        &self,
        request: Request<v1::ListWebhooksRequest>,
    ) -> Result<Response<v1::ListWebhooksResponse>, Status> {
        let r = request.into_inner();
        let after = match r.page_token.as_str() {
            "" => None,
            token if token.starts_with("wh_") => Some(WebhookId::from(token)),
            _ => return Err(ControlError::PageToken.into()),
        };
        let limit = page_size(r.page_size);
        // One extra row tells whether another page follows without a count query.
        let mut page = self
            .store
            .list_webhooks(&self.tenant, after.as_ref(), limit + 1)
            .await
            .map_err(ControlError::from)?;
        let more = page.len() as u64 > limit;
        page.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListWebhooksResponse {
            webhooks: page.iter().map(|w| webhook_to_proto(w, Secrets::Masked)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id))]
    async fn update_webhook(
        &self,
        request: Request<v1::UpdateWebhookRequest>,
    ) -> Result<Response<v1::UpdateWebhookResponse>, Status> {
        let r = request.into_inner();
        let changes = r.webhook.ok_or_else(|| {
            ControlError::from(InvalidField::new("webhook", "must carry the id and new values"))
        })?;
        tracing::Span::current().record("webhook_id", changes.id.as_str());
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(ControlError::from(InvalidField::new(
                "update_mask",
                format!("must name the fields to change: {UPDATABLE}"),
            ))
            .into());
        }
        let mut webhook = self.load(&changes.id).await?;
        let mut spec = webhook.spec.clone();
        for path in &paths {
            match path.as_str() {
                "name" => spec.name.clone_from(&changes.name),
                "url" => spec.url.clone_from(&changes.url),
                "event_types" => spec.event_types.clone_from(&changes.event_types),
                "active" => spec.active = changes.active,
                "description" => spec.description.clone_from(&changes.description),
                "attempt_timeout_ms" => {
                    spec.attempt_timeout = attempt_timeout_from_proto(changes.attempt_timeout_ms);
                }
                "retry_policy" => {
                    spec.retry_schedule =
                        changes.retry_policy.as_ref().map(retry_policy_from_proto);
                }
                other => {
                    return Err(ControlError::from(InvalidField::new(
                        "update_mask",
                        format!("cannot update {other:?}; allowed: {UPDATABLE}"),
                    ))
                    .into());
                }
            }
        }
        webhook.spec = spec.validate().map_err(ControlError::from)?;
        webhook.updated_at = Utc::now();
        if !self.store.update_webhook(&self.tenant, &webhook).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "webhook", id: changes.id }.into());
        }
        tracing::info!("webhook updated");
        self.changes.publish(Change::Upserted(Box::new(webhook.clone()))).await;
        Ok(Response::new(v1::UpdateWebhookResponse {
            webhook: Some(webhook_to_proto(&webhook, Secrets::Masked)),
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id))]
    async fn delete_webhook(
        &self,
        request: Request<v1::DeleteWebhookRequest>,
    ) -> Result<Response<v1::DeleteWebhookResponse>, Status> {
        let id = WebhookId::from(request.into_inner().id);
        if !self.store.delete_webhook(&self.tenant, &id).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "webhook", id: id.into_string() }.into());
        }
        tracing::info!("webhook deleted");
        self.changes.publish(Change::Deleted(id)).await;
        Ok(Response::new(v1::DeleteWebhookResponse {}))
    }

    async fn activate_webhook(
        &self,
        _request: Request<v1::ActivateWebhookRequest>,
    ) -> Result<Response<v1::ActivateWebhookResponse>, Status> {
        Err(Status::unimplemented("not wired yet"))
    }

    async fn deactivate_webhook(
        &self,
        _request: Request<v1::DeactivateWebhookRequest>,
    ) -> Result<Response<v1::DeactivateWebhookResponse>, Status> {
        Err(Status::unimplemented("not wired yet"))
    }

    async fn duplicate_webhook(
        &self,
        _request: Request<v1::DuplicateWebhookRequest>,
    ) -> Result<Response<v1::DuplicateWebhookResponse>, Status> {
        Err(Status::unimplemented("not wired yet"))
    }

    async fn test_webhook(
        &self,
        _request: Request<v1::TestWebhookRequest>,
    ) -> Result<Response<v1::TestWebhookResponse>, Status> {
        Err(Status::unimplemented("not wired yet"))
    }
}
