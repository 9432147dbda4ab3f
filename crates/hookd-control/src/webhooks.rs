//! `WebhookService`: webhook definitions (create, read, list with filters and counts,
//! update, delete, duplicate, signing secrets). Every change is announced on [`Changes`] so
//! watching dispatchers pick it up at once. Activation is in `activation`, test sends in
//! `test_send`.

mod activation;
mod test_send;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use hookd_core::access::Permission;
use hookd_core::health::DeactivatedBy;
use hookd_core::{
    CredentialId, EventType, InvalidField, Webhook, WebhookId, WebhookSpec,
    egress::EgressPolicy,
    signing::{SigningKeys, SigningSecret},
    webhook::ALL_EVENT_TYPES,
};
use hookd_proto::{
    convert::{
        Secrets, attempt_timeout_from_proto, auth_from_proto, credential_id_from_proto,
        format_from_proto, headers_from_proto, health_policy_from_proto, method_from_proto,
        retry_policy_from_proto, spec_from_create, stats_to_proto, timestamp, webhook_to_proto,
    },
    v1::{self, webhook_service_server::WebhookService},
};
use hookd_storage::{StorageError, Store, WebhookFilter};
use tonic::{Request, Response, Status};

use crate::shared::Shared;
use crate::{
    ControlError,
    auth::{Caller, require},
    catalog::Catalog,
    changes::{Change, Changes},
    lifecycle::Stopping,
    metrics::Metrics,
    notify::{self, Notifier},
    replay::Replays,
};

const DEFAULT_PAGE_SIZE: u32 = 50;
const UPDATABLE: &str = "name, url, event_types, active, description, attempt_timeout_ms, \
     retry_policy, app, method, headers, auth, credential_id, fields, format, health_policy";
const MAX_PAGE_SIZE: u32 = 500;
/// The longest grace period a rotation may give the old signing secret.
const MAX_SIGNING_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct WebhookApi {
    store: Store,
    changes: Changes,
    catalog: Catalog,
    nats: async_nats::Client,
    /// For the early URL check only; the dispatcher's check at connect time is what holds.
    egress: Arc<EgressPolicy>,
    /// Default grace period of a signing-secret rotation.
    signing_grace: Duration,
    replays: Replays,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    /// Ends every notification watch when the control plane shuts down.
    stopping: Stopping,
}

impl WebhookApi {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            store: shared.store.clone(),
            changes: shared.changes.clone(),
            catalog: shared.catalog.clone(),
            nats: shared.jetstream.client(),
            egress: shared.egress.clone(),
            signing_grace: shared.config.signing_grace(),
            replays: shared.replays.clone(),
            notifier: shared.notifier.clone(),
            metrics: shared.metrics.clone(),
            stopping: shared.stopping.clone(),
        }
    }

    /// The caller's webhook `id`; one outside its tenant or app label is NOT_FOUND.
    async fn load(&self, caller: &Caller, id: &str) -> Result<Webhook, ControlError> {
        let not_found = || ControlError::NotFound { what: "webhook", id: id.to_owned() };
        if id.is_empty() {
            return Err(InvalidField::new("id", "must not be empty").into());
        }
        let webhook = self
            .store
            .get_webhook(&caller.tenant, &WebhookId::from(id))
            .await?
            .ok_or_else(not_found)?;
        if !caller.reaches_app(&webhook.spec.app) {
            return Err(not_found());
        }
        Ok(webhook)
    }

    /// The webhook as reads show it: secrets masked, counts and last attempt filled in.
    async fn shown(&self, tenant: &str, webhook: &Webhook) -> Result<v1::Webhook, ControlError> {
        let stats = self
            .store
            .get_webhook_with_stats(tenant, &webhook.id)
            .await?
            .map(|(_, stats)| stats)
            .unwrap_or_default();
        let mut wire = webhook_to_proto(webhook, Secrets::Masked);
        wire.stats = Some(stats_to_proto(&stats));
        let health = self.store.get_webhook_health(tenant, &webhook.id).await?.unwrap_or_default();
        wire.health = Some(self.health_shown(tenant, webhook, &health).await);
        wire.tenant = tenant.to_owned();
        Ok(wire)
    }

    /// The health as reads show it, with the events kept for the webhook counted.
    async fn health_shown(
        &self,
        tenant: &str,
        webhook: &Webhook,
        health: &hookd_storage::WebhookHealth,
    ) -> v1::WebhookHealth {
        // Only a deactivated webhook, or one still replaying, keeps anything: otherwise
        // everything kept was released or expired and the stream is not worth a lookup.
        let buffered = if webhook.spec.active && health.buffer_kept <= health.buffer_released {
            0
        } else {
            self.replays.buffered(tenant, &webhook.id).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot count the buffered events");
                0
            })
        };
        health_to_proto(health, buffered)
    }

    /// A portal session limited to one app label creates and keeps webhooks under that
    /// label only, and cannot attach the tenant's OAuth2 credentials (their tokens would go
    /// to an endpoint of its choosing).
    fn check_scope(
        caller: &Caller,
        spec: &mut WebhookSpec,
        credential_before: Option<&CredentialId>,
    ) -> Result<(), ControlError> {
        let Some(app) = &caller.app else { return Ok(()) };
        if spec.app.is_empty() {
            spec.app.clone_from(app);
        } else if spec.app != *app {
            return Err(InvalidField::new(
                "app",
                format!("this portal session may only use app label {app:?}"),
            )
            .into());
        }
        if spec.credential_id.as_ref() != credential_before {
            return Err(ControlError::OutOfScope { what: "OAuth2 credentials", app: app.clone() });
        }
        Ok(())
    }

    /// The checks that need the database: the referenced credential exists, and once the
    /// tenant has a catalog, every subscribed type is in it.
    /// An early error for a URL that can only reach a forbidden address: an IP literal in a
    /// forbidden range, or `localhost`. A host name passes: it may resolve anywhere, and the
    /// dispatcher checks every address it connects to.
    fn check_url(&self, spec: &WebhookSpec) -> Result<(), ControlError> {
        let Some(host) =
            url::Url::parse(&spec.url).ok().and_then(|u| u.host_str().map(str::to_owned))
        else {
            return Ok(()); // `validate` has refused it already.
        };
        self.egress.check_host(&host).map_err(|reason| {
            ControlError::from(InvalidField::new(
                "url",
                format!(
                    "refused by the egress policy: {reason} (an operator can allow it with allow_cidrs)"
                ),
            ))
        })
    }

    async fn check_references(&self, tenant: &str, spec: &WebhookSpec) -> Result<(), ControlError> {
        if let Some(id) = &spec.credential_id
            && self.store.get_credential(tenant, id).await?.is_none()
        {
            return Err(InvalidField::new("credential_id", format!("no credential {id}")).into());
        }
        if self.store.has_catalog(tenant).await? {
            let checked = |t: &&String| {
                *t != ALL_EVENT_TYPES && !notify::SYSTEM_EVENT_TYPES.contains(&t.as_str())
            };
            for t in spec.event_types.iter().filter(checked) {
                if self.store.get_event_type(tenant, t).await?.is_none() {
                    return Err(InvalidField::new(
                        "event_types",
                        format!(
                            "{t:?} is not in the event-type catalog; add it first or use \"*\""
                        ),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn page_size(requested: u32) -> u64 {
    u64::from(match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    })
}

/// The paths of an update's field mask; an empty or missing mask is refused, naming the
/// fields that can be changed.
pub(crate) fn mask_paths(
    mask: Option<prost_types::FieldMask>,
    updatable: &str,
) -> Result<Vec<String>, ControlError> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(InvalidField::new(
            "update_mask",
            format!("must name the fields to change: {updatable}"),
        )
        .into());
    }
    Ok(paths)
}

/// The error for a mask path an update does not know.
pub(crate) fn unknown_path(path: &str, updatable: &str) -> ControlError {
    InvalidField::new("update_mask", format!("cannot update {path:?}; allowed: {updatable}")).into()
}

/// Cuts `page` (read with one row more than `limit`, which tells whether another page follows
/// without a count query) to `limit` rows and returns the next page's token, empty on the last.
pub(crate) fn finish_page<T>(
    page: &mut Vec<T>,
    limit: u64,
    token: impl Fn(&T) -> String,
) -> String {
    let more = page.len() as u64 > limit;
    page.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    match (more, page.last()) {
        (true, Some(last)) => token(last),
        _ => String::new(),
    }
}

fn health_to_proto(h: &hookd_storage::WebhookHealth, buffered: u64) -> v1::WebhookHealth {
    v1::WebhookHealth {
        consecutive_failures: h.consecutive_failures,
        last_success_at: h.last_success_at.map(timestamp),
        last_error: h.last_error.clone(),
        deactivated_by: match h.deactivated_by {
            None => v1::DeactivatedBy::Unspecified,
            Some(DeactivatedBy::User) => v1::DeactivatedBy::User,
            Some(DeactivatedBy::System) => v1::DeactivatedBy::System,
        }
        .into(),
        deactivated_at: h.deactivated_at.map(timestamp),
        deactivation_reason: h.deactivation_reason.clone(),
        buffered,
        expired: h.expired(buffered),
    }
}

fn non_empty(s: String) -> Option<String> {
    let s = s.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// The name of the `n`th copy of `name`, cut so it stays within the name length limit.
fn copy_name(name: &str, n: u32) -> String {
    let suffix = if n == 1 { " (copy)".to_owned() } else { format!(" (copy {n})") };
    let room = hookd_core::webhook::MAX_NAME_LEN.saturating_sub(suffix.chars().count());
    let base: String = name.chars().take(room).collect();
    format!("{}{suffix}", base.trim_end())
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name, webhook_id))]
    async fn create_webhook(
        &self,
        request: Request<v1::CreateWebhookRequest>,
    ) -> Result<Response<v1::CreateWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let mut spec =
            spec_from_create(r).and_then(WebhookSpec::validate).map_err(ControlError::from)?;
        Self::check_scope(&caller, &mut spec, None)?;
        self.check_url(&spec)?;
        self.check_references(tenant, &spec).await?;
        let now = Utc::now();
        let spec = WebhookSpec { signing: SigningKeys::generate(), ..spec };
        let signing_secret = spec.signing.current().map(SigningSecret::expose).unwrap_or_default();
        let webhook = Webhook { id: WebhookId::generate(), spec, created_at: now, updated_at: now };
        tracing::Span::current().record("webhook_id", webhook.id.as_str());
        self.store.create_webhook(tenant, &webhook).await.map_err(ControlError::from)?;
        tracing::info!("webhook created");
        self.changes
            .publish(Change::Upserted {
                tenant: tenant.to_owned(),
                webhook: Box::new(webhook.clone()),
            })
            .await;
        Ok(Response::new(v1::CreateWebhookResponse {
            webhook: Some(self.shown(tenant, &webhook).await?),
            signing_secret,
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id))]
    async fn get_webhook(
        &self,
        request: Request<v1::GetWebhookRequest>,
    ) -> Result<Response<v1::GetWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksRead)?;
        let tenant = caller.tenant.as_str();
        let webhook = self.load(&caller, &request.get_ref().id).await?;
        Ok(Response::new(v1::GetWebhookResponse {
            webhook: Some(self.shown(tenant, &webhook).await?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_webhooks(
        &self,
        request: Request<v1::ListWebhooksRequest>,
    ) -> Result<Response<v1::ListWebhooksResponse>, Status> {
        let caller = require(&request, Permission::WebhooksRead)?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let after = match r.page_token.as_str() {
            "" => None,
            token if token.starts_with("wh_") => Some(WebhookId::from(token)),
            _ => return Err(ControlError::PageToken.into()),
        };
        let active = match v1::StatusFilter::try_from(r.status) {
            Ok(v1::StatusFilter::Any) => None,
            Ok(v1::StatusFilter::Active) => Some(true),
            Ok(v1::StatusFilter::Inactive) => Some(false),
            Err(_) => {
                return Err(ControlError::from(InvalidField::new(
                    "status",
                    format!("{} is not a StatusFilter", r.status),
                ))
                .into());
            }
        };
        let event_type = match non_empty(r.event_type) {
            Some(t) => Some(
                EventType::parse(&t)
                    .map_err(|e| ControlError::from(InvalidField::new("event_type", e.reason)))?
                    .to_string(),
            ),
            None => None,
        };
        let app = match (&caller.app, non_empty(r.app)) {
            (None, asked) => asked,
            (Some(mine), Some(asked)) if asked != *mine => {
                // Nothing of another label is within reach: an empty page, as a filter
                // that matches nothing.
                return Ok(Response::new(v1::ListWebhooksResponse::default()));
            }
            (Some(mine), _) => Some(mine.clone()),
        };
        let filter =
            WebhookFilter { name_contains: non_empty(r.name_contains), app, event_type, active };
        let limit = page_size(r.page_size);
        let mut page = self
            .store
            .list_webhooks(tenant, after.as_ref(), limit + 1, &filter)
            .await
            .map_err(ControlError::from)?;
        let next_page_token =
            crate::webhooks::finish_page(&mut page, limit, |(last, _)| last.id.to_string());
        let ids: Vec<&WebhookId> = page.iter().map(|(w, _)| &w.id).collect();
        let health =
            self.store.get_webhooks_health(tenant, &ids).await.map_err(ControlError::from)?;
        let mut webhooks = Vec::with_capacity(page.len());
        for (w, stats) in &page {
            let mut wire = webhook_to_proto(w, Secrets::Masked);
            wire.stats = Some(stats_to_proto(stats));
            wire.tenant = tenant.to_owned();
            if let Some(h) = health.get(&w.id) {
                wire.health = Some(self.health_shown(tenant, w, h).await);
            }
            webhooks.push(wire);
        }
        Ok(Response::new(v1::ListWebhooksResponse { webhooks, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id))]
    async fn update_webhook(
        &self,
        request: Request<v1::UpdateWebhookRequest>,
    ) -> Result<Response<v1::UpdateWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let changes = r.webhook.ok_or_else(|| {
            ControlError::from(InvalidField::new("webhook", "must carry the id and new values"))
        })?;
        tracing::Span::current().record("webhook_id", changes.id.as_str());
        let paths = mask_paths(r.update_mask, UPDATABLE)?;
        let mut webhook = self.load(&caller, &changes.id).await?;
        let was_active = webhook.spec.active;
        let credential_before = webhook.spec.credential_id.clone();
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
                "app" => spec.app.clone_from(&changes.app),
                "method" => {
                    spec.method = method_from_proto(changes.method).map_err(ControlError::from)?;
                }
                "headers" => spec.headers = headers_from_proto(changes.headers.clone()),
                "auth" => spec.auth = auth_from_proto(changes.auth.clone()),
                "credential_id" => {
                    spec.credential_id = credential_id_from_proto(&changes.credential_id);
                }
                "fields" => spec.fields.clone_from(&changes.fields),
                "format" => {
                    spec.format = format_from_proto(changes.format).map_err(ControlError::from)?;
                }
                "health_policy" => {
                    spec.health = health_policy_from_proto(changes.health_policy.as_ref());
                }
                other => return Err(unknown_path(other, UPDATABLE).into()),
            }
        }
        webhook.spec = spec.validate().map_err(ControlError::from)?;
        Self::check_scope(&caller, &mut webhook.spec, credential_before.as_ref())?;
        self.check_url(&webhook.spec)?;
        self.check_references(tenant, &webhook.spec).await?;
        webhook.updated_at = Utc::now();
        if !self.store.update_webhook(tenant, &webhook).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "webhook", id: changes.id }.into());
        }
        tracing::info!("webhook updated");
        // As DeactivateWebhook, or ActivateWebhook without replay.
        let reactivated = !was_active && webhook.spec.active;
        let by_system = reactivated && self.deactivated_by_system(tenant, &webhook.id).await?;
        if was_active != webhook.spec.active {
            self.record_status_change(tenant, &webhook.id, webhook.spec.active).await?;
        }
        self.changes
            .publish(Change::Upserted {
                tenant: tenant.to_owned(),
                webhook: Box::new(webhook.clone()),
            })
            .await;
        if reactivated {
            // Replaying is ActivateWebhook's choice alone.
            self.after_activation(tenant, &webhook.id, false, by_system).await?;
        }
        Ok(Response::new(v1::UpdateWebhookResponse {
            webhook: Some(self.shown(tenant, &webhook).await?),
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id))]
    async fn delete_webhook(
        &self,
        request: Request<v1::DeleteWebhookRequest>,
    ) -> Result<Response<v1::DeleteWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(ControlError::from(InvalidField::new("id", "must not be empty")).into());
        }
        if caller.app.is_some() {
            self.load(&caller, &id).await?;
        }
        let id = WebhookId::from(id);
        if !self.store.delete_webhook(tenant, &id).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "webhook", id: id.into_string() }.into());
        }
        tracing::info!("webhook deleted");
        self.changes.publish(Change::Deleted { tenant: tenant.to_owned(), id }).await;
        Ok(Response::new(v1::DeleteWebhookResponse {}))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id, replay = request.get_ref().replay))]
    async fn activate_webhook(
        &self,
        request: Request<v1::ActivateWebhookRequest>,
    ) -> Result<Response<v1::ActivateWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let r = request.get_ref();
        Ok(Response::new(self.activate(&caller, &r.id, r.replay).await?))
    }

    type WatchNotificationsStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<v1::WebhookNotification, Status>> + Send>,
    >;

    #[tracing::instrument(skip_all)]
    async fn watch_notifications(
        &self,
        request: Request<v1::WatchNotificationsRequest>,
    ) -> Result<Response<Self::WatchNotificationsStream>, Status> {
        use futures::StreamExt;
        let caller = require(&request, Permission::WebhooksRead)?;
        // The subject carries the caller's tenant: no other tenant's notification can match.
        let subject = format!("{}.{}.>", notify::SYSTEM_PREFIX, caller.tenant);
        let subscription =
            self.nats.subscribe(subject).await.map_err(|e| {
                ControlError::Unavailable(format!("cannot watch notifications: {e}"))
            })?;
        let (store, scope) = (self.store.clone(), caller.clone());
        let stream = subscription.filter_map(move |msg| {
            let (store, scope) = (store.clone(), scope.clone());
            async move {
                let n: notify::Notification = serde_json::from_slice(&msg.payload).ok()?;
                // A portal session limited to an app label hears of its own webhooks only.
                if scope.app.is_some() {
                    let id = WebhookId::from(n.webhook_id.as_str());
                    let webhook = store.get_webhook(&scope.tenant, &id).await.ok()??;
                    if !scope.reaches_app(&webhook.spec.app) {
                        return None;
                    }
                }
                Some(Ok(v1::WebhookNotification {
                    kind: n.kind,
                    webhook_id: n.webhook_id,
                    reason: n.reason,
                    last_error: n.last_error,
                    at: Some(timestamp(n.at)),
                }))
            }
        });
        Ok(Response::new(Box::pin(stream.take_until(self.stopping.stopped()))))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id))]
    async fn deactivate_webhook(
        &self,
        request: Request<v1::DeactivateWebhookRequest>,
    ) -> Result<Response<v1::DeactivateWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let webhook = self.set_active(&caller, &request.get_ref().id, false).await?;
        Ok(Response::new(v1::DeactivateWebhookResponse { webhook: Some(webhook) }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id, copy_id))]
    async fn duplicate_webhook(
        &self,
        request: Request<v1::DuplicateWebhookRequest>,
    ) -> Result<Response<v1::DuplicateWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let original = self.load(&caller, &request.get_ref().id).await?;
        let now = Utc::now();
        let mut copy = Webhook {
            id: WebhookId::generate(),
            // A copy signs with its own secret: a receiver of one webhook must not be able
            // to forge deliveries of the other.
            spec: WebhookSpec {
                active: false,
                signing: SigningKeys::generate(),
                ..original.spec.clone()
            },
            created_at: now,
            updated_at: now,
        };
        tracing::Span::current().record("copy_id", copy.id.as_str());
        // The first free name of "<name> (copy)", "<name> (copy 2)", ...
        let mut n = 1;
        loop {
            copy.spec.name = copy_name(&original.spec.name, n);
            match self.store.create_webhook(tenant, &copy).await {
                Ok(()) => break,
                Err(StorageError::NameTaken { .. }) if n < 1000 => n += 1,
                Err(e) => return Err(ControlError::from(e).into()),
            }
        }
        tracing::info!(name = %copy.spec.name, "webhook duplicated");
        self.changes
            .publish(Change::Upserted {
                tenant: tenant.to_owned(),
                webhook: Box::new(copy.clone()),
            })
            .await;
        Ok(Response::new(v1::DuplicateWebhookResponse {
            webhook: Some(self.shown(tenant, &copy).await?),
            signing_secret: copy
                .spec
                .signing
                .current()
                .map(SigningSecret::expose)
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id))]
    async fn get_webhook_secret(
        &self,
        request: Request<v1::GetWebhookSecretRequest>,
    ) -> Result<Response<v1::GetWebhookSecretResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let webhook = self.load(&caller, &request.get_ref().id).await?;
        let secret =
            webhook.spec.signing.current().map(SigningSecret::expose).ok_or_else(|| {
                ControlError::Internal(format!("webhook {} has no signing key", webhook.id))
            })?;
        tracing::info!("signing secret read");
        Ok(Response::new(v1::GetWebhookSecretResponse { signing_secret: secret }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id))]
    async fn rotate_webhook_secret(
        &self,
        request: Request<v1::RotateWebhookSecretRequest>,
    ) -> Result<Response<v1::RotateWebhookSecretResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let grace = match (r.expire_now, r.grace_seconds) {
            (true, _) => Duration::ZERO,
            (false, 0) => self.signing_grace,
            (false, secs) => Duration::from_secs(u64::from(secs)),
        };
        if grace > MAX_SIGNING_GRACE {
            return Err(ControlError::from(InvalidField::new(
                "grace_seconds",
                format!("must be at most {} s", MAX_SIGNING_GRACE.as_secs()),
            ))
            .into());
        }
        let mut webhook = self.load(&caller, &r.id).await?;
        let now = Utc::now();
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
        let fresh = webhook.spec.signing.rotate(now, grace);
        webhook.updated_at = now;
        if !self.store.update_webhook(tenant, &webhook).await.map_err(ControlError::from)? {
            return Err(ControlError::NotFound { what: "webhook", id: r.id }.into());
        }
        tracing::info!(grace_secs = grace.num_seconds(), "signing secret rotated");
        self.changes
            .publish(Change::Upserted {
                tenant: tenant.to_owned(),
                webhook: Box::new(webhook.clone()),
            })
            .await;
        Ok(Response::new(v1::RotateWebhookSecretResponse {
            signing_secret: fresh.expose(),
            previous_expires_at: (grace > chrono::Duration::zero()).then(|| timestamp(now + grace)),
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id, event_type = %request.get_ref().event_type))]
    async fn test_webhook(
        &self,
        request: Request<v1::TestWebhookRequest>,
    ) -> Result<Response<v1::TestWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        Ok(Response::new(self.test_send(&caller, request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_names_count_up_and_fit_the_limit() {
        assert_eq!(copy_name("crm", 1), "crm (copy)");
        assert_eq!(copy_name("crm", 3), "crm (copy 3)");
        let long = "x".repeat(hookd_core::webhook::MAX_NAME_LEN);
        let copy = copy_name(&long, 12);
        assert_eq!(copy.chars().count(), hookd_core::webhook::MAX_NAME_LEN);
        assert!(copy.ends_with(" (copy 12)"));
    }
}
