//! `WebhookService`: webhook definitions (create, read, list with filters and counts,
//! update, delete, activate, deactivate, duplicate) and test sends. Every change is announced
//! on [`Changes`] so watching dispatchers pick it up at once.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use hookd_core::access::Permission;
use hookd_core::health::DeactivatedBy;
use hookd_core::{
    Event, EventId, EventType, InvalidField, Webhook, WebhookId, WebhookSpec, catalog,
    egress::EgressPolicy,
    signing::{SigningKeys, SigningSecret},
    webhook::ALL_EVENT_TYPES,
};
use hookd_nats::test_send::{TEST_SEND_SUBJECT, TestSendReply, TestSendRequest};
use hookd_proto::{
    convert::{
        Secrets, attempt_timeout_from_proto, auth_from_proto, credential_id_from_proto,
        format_from_proto, headers_from_proto, health_policy_from_proto, method_from_proto,
        retry_policy_from_proto, spec_from_create, stats_to_proto, timestamp, value_to_json,
        webhook_to_proto,
    },
    v1::{self, webhook_service_server::WebhookService},
};
use hookd_storage::{StorageError, Store, WebhookFilter};
use tonic::{Request, Response, Status};

use crate::{
    ControlError,
    auth::require,
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
/// How long a test send may take beyond two HTTP tries (the second after an OAuth2 refresh):
/// two token fetches of up to 10 s each and queueing at the dispatcher.
const TEST_SEND_MARGIN: Duration = Duration::from_secs(25);
/// The longest grace period a rotation may give the old signing secret.
const MAX_SIGNING_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The dispatcher's default attempt timeout, for webhooks without their own.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Ends the notification watches at shutdown.
    stopping: Option<Stopping>,
}

impl WebhookApi {
    pub fn new(
        store: Store,
        changes: Changes,
        catalog: Catalog,
        nats: async_nats::Client,
        egress: Arc<EgressPolicy>,
        signing_grace: Duration,
        (replays, notifier, metrics): (Replays, Notifier, Arc<Metrics>),
    ) -> Self {
        Self {
            store,
            changes,
            catalog,
            nats,
            egress,
            signing_grace,
            replays,
            notifier,
            metrics,
            stopping: None,
        }
    }

    /// Ends every notification watch when the control plane shuts down.
    pub fn ending_streams_on(mut self, stopping: Stopping) -> Self {
        self.stopping = Some(stopping);
        self
    }

    async fn load(&self, tenant: &str, id: &str) -> Result<Webhook, ControlError> {
        let not_found = || ControlError::NotFound { what: "webhook", id: id.to_owned() };
        if id.is_empty() {
            return Err(InvalidField::new("id", "must not be empty").into());
        }
        self.store.get_webhook(tenant, &WebhookId::from(id)).await?.ok_or_else(not_found)
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
        wire.health = Some(health_to_proto(&health, buffered));
        wire.tenant = tenant.to_owned();
        Ok(wire)
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

    /// Stores `webhook` with `active` set and tells the dispatchers; no-op when it already is.
    async fn set_active(
        &self,
        tenant: &str,
        id: &str,
        active: bool,
    ) -> Result<v1::Webhook, ControlError> {
        let mut webhook = self.load(tenant, id).await?;
        if webhook.spec.active != active {
            webhook.spec.active = active;
            webhook.updated_at = Utc::now();
            if !self.store.update_webhook(tenant, &webhook).await? {
                return Err(ControlError::NotFound { what: "webhook", id: id.to_owned() });
            }
            tracing::info!(active, "webhook status changed");
            self.record_status_change(tenant, &webhook.id, active).await?;
            self.changes
                .publish(Change::Upserted {
                    tenant: tenant.to_owned(),
                    webhook: Box::new(webhook.clone()),
                })
                .await;
        }
        self.shown(tenant, &webhook).await
    }

    /// Records a user's activation or deactivation (call after storing `active`).
    async fn record_status_change(
        &self,
        tenant: &str,
        id: &WebhookId,
        active: bool,
    ) -> Result<(), ControlError> {
        if !active {
            self.metrics.webhooks_deactivated.with_label_values(&["user"]).inc();
        }
        let by = (!active).then_some((DeactivatedBy::User, "deactivated by a user"));
        Ok(self.store.set_deactivation(tenant, id, by).await?)
    }

    /// Whether the system (the health rule), not a user, deactivated the webhook.
    async fn deactivated_by_system(
        &self,
        tenant: &str,
        id: &WebhookId,
    ) -> Result<bool, ControlError> {
        let health = self.store.get_webhook_health(tenant, id).await?;
        Ok(health.is_some_and(|h| h.deactivated_by == Some(DeactivatedBy::System)))
    }

    /// What follows an activation, once the dispatchers applied it (so nothing more is kept
    /// after the replay or the purge has looked): the kept events are replayed or discarded,
    /// and the end of a system deactivation is announced, pairing with its
    /// `webhook-deactivated` (a user's own off and on needs none). `(replayed, discarded)`.
    async fn after_activation(
        &self,
        tenant: &str,
        id: &WebhookId,
        replay: bool,
        by_system: bool,
    ) -> Result<(u64, u64), ControlError> {
        let (replayed, discarded) = if replay {
            (self.replays.start(tenant, id).await?, 0)
        } else {
            (0, self.replays.discard(tenant, id).await?)
        };
        tracing::info!(replayed, discarded, "webhook reactivated");
        if by_system {
            let reason = if replay {
                format!("reactivated; replaying {replayed} kept events")
            } else {
                format!("reactivated; discarded {discarded} kept events")
            };
            self.notifier.reactivated(tenant, id, reason).await;
        }
        Ok((replayed, discarded))
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
        let spec =
            spec_from_create(r).and_then(WebhookSpec::validate).map_err(ControlError::from)?;
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
        let webhook = self.load(tenant, &request.get_ref().id).await?;
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
        let filter = WebhookFilter {
            name_contains: non_empty(r.name_contains),
            app: non_empty(r.app),
            event_type,
            active,
        };
        let limit = page_size(r.page_size);
        let mut page = self
            .store
            .list_webhooks(tenant, after.as_ref(), limit + 1, &filter)
            .await
            .map_err(ControlError::from)?;
        let next_page_token =
            crate::webhooks::finish_page(&mut page, limit, |(last, _)| last.id.to_string());
        let webhooks = page
            .iter()
            .map(|(w, stats)| {
                let mut wire = webhook_to_proto(w, Secrets::Masked);
                wire.stats = Some(stats_to_proto(stats));
                wire.tenant = tenant.to_owned();
                wire
            })
            .collect();
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
        let mut webhook = self.load(tenant, &changes.id).await?;
        let was_active = webhook.spec.active;
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
        let tenant = caller.tenant.as_str();
        let r = request.get_ref();
        let current = self.load(tenant, &r.id).await?;
        if current.spec.active {
            // A no-op: nothing is buffered for an active webhook.
            let webhook = self.shown(tenant, &current).await?;
            return Ok(Response::new(v1::ActivateWebhookResponse {
                webhook: Some(webhook),
                replayed: 0,
                discarded: 0,
            }));
        }
        let by_system = self.deactivated_by_system(tenant, &current.id).await?;
        // set_active returns once the dispatchers applied the activation.
        let webhook = self.set_active(tenant, &r.id, true).await?;
        let (replayed, discarded) =
            self.after_activation(tenant, &current.id, r.replay, by_system).await?;
        Ok(Response::new(v1::ActivateWebhookResponse {
            webhook: Some(webhook),
            replayed,
            discarded,
        }))
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
        let stream = subscription.filter_map(|msg| async move {
            let n: notify::Notification = serde_json::from_slice(&msg.payload).ok()?;
            Some(Ok(v1::WebhookNotification {
                kind: n.kind,
                webhook_id: n.webhook_id,
                reason: n.reason,
                last_error: n.last_error,
                at: Some(timestamp(n.at)),
            }))
        });
        Ok(Response::new(match &self.stopping {
            Some(stopping) => Box::pin(stream.take_until(stopping.stopped())),
            None => Box::pin(stream),
        }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id))]
    async fn deactivate_webhook(
        &self,
        request: Request<v1::DeactivateWebhookRequest>,
    ) -> Result<Response<v1::DeactivateWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let webhook = self.set_active(tenant, &request.get_ref().id, false).await?;
        Ok(Response::new(v1::DeactivateWebhookResponse { webhook: Some(webhook) }))
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %request.get_ref().id, copy_id))]
    async fn duplicate_webhook(
        &self,
        request: Request<v1::DuplicateWebhookRequest>,
    ) -> Result<Response<v1::DuplicateWebhookResponse>, Status> {
        let caller = require(&request, Permission::WebhooksManage)?;
        let tenant = caller.tenant.as_str();
        let original = self.load(tenant, &request.get_ref().id).await?;
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
        let webhook = self.load(&caller.tenant, &request.get_ref().id).await?;
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
        let mut webhook = self.load(tenant, &r.id).await?;
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
        let tenant = caller.tenant.as_str();
        let r = request.into_inner();
        let webhook = self.load(tenant, &r.id).await?;
        let event_type = EventType::parse(r.event_type.trim())
            .map_err(|e| ControlError::from(InvalidField::new("event_type", e.reason)))?;
        if !webhook.spec.subscribes_to(&event_type) {
            return Err(ControlError::from(InvalidField::new(
                "event_type",
                format!("webhook {} does not subscribe to \"{event_type}\"", webhook.id),
            ))
            .into());
        }
        let catalogued = self
            .store
            .get_event_type(tenant, event_type.as_str())
            .await
            .map_err(ControlError::from)?;
        let data = match (r.data.map(value_to_json), &catalogued) {
            (Some(data), _) => data,
            (None, Some(def)) => def.spec.sample_data(),
            (None, None) => catalog::stock_sample(&event_type),
        };
        if let Some(schema) = self.catalog.schema(tenant, event_type.as_str()) {
            schema.check(&data).map_err(|e| ControlError::from(InvalidField::new("data", e)))?;
        }
        let event = Event {
            id: EventId::generate(),
            event_type,
            entity_id: "test".to_owned(),
            timestamp: Utc::now(),
            context: serde_json::json!({ "test": true }),
            data,
        };
        let payload = serde_json::to_vec(&TestSendRequest {
            tenant: tenant.to_owned(),
            webhook_id: webhook.id.clone(),
            event: serde_json::to_value(&event)
                .map_err(|e| ControlError::Internal(e.to_string()))?,
        })
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        let timeout =
            webhook.spec.attempt_timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT) + TEST_SEND_MARGIN;
        let answer = self
            .nats
            .send_request(
                TEST_SEND_SUBJECT,
                async_nats::Request::new().payload(payload.into()).timeout(Some(timeout)),
            )
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => ControlError::Unavailable(
                    "no dispatcher is running to make the test send".to_owned(),
                ),
                async_nats::RequestErrorKind::TimedOut => ControlError::Unavailable(format!(
                    "no dispatcher answered the test send within {} s",
                    timeout.as_secs()
                )),
                _ => ControlError::Unavailable(format!("cannot reach a dispatcher: {e}")),
            })?;
        let reply: TestSendReply = serde_json::from_slice(&answer.payload)
            .map_err(|e| ControlError::Internal(format!("unreadable test-send reply: {e}")))?;
        tracing::info!(
            http_status = reply.attempt.http_status,
            success = reply.attempt.success,
            "test send made"
        );
        Ok(Response::new(v1::TestWebhookResponse {
            attempt: Some(reply.attempt.into()),
            payload: reply.payload,
            url: reply.url,
        }))
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
