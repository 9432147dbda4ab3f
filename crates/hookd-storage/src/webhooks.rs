//! Webhook definitions: create, read, list (with filters and statistics), update and delete.

use hookd_core::endpoint::{EndpointAuth, Header, HttpMethod};
use hookd_core::payload::PayloadFormat;
use hookd_core::signing::SigningKeys;
use hookd_core::{CredentialId, HealthPolicy, Webhook, WebhookId, WebhookSpec, WebhookStats};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
    sea_query::{Expr, ExprTrait, Func, LikeExpr, Query},
};
use serde::{Deserialize, Serialize};

use crate::entity::{attempt, delivery, webhook};
use crate::{StorageError, Store, db_time, is_unique_violation};

/// The most ids [`Store::webhooks_using_credential`] and [`Store::webhooks_subscribed_to`]
/// return: enough to name a few in an error message.
const MAX_REFERENCING: u64 = 10;

/// Which webhooks [`Store::list_webhooks`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct WebhookFilter {
    /// Case-insensitive substring of the name (on SQLite only ASCII letters fold case).
    pub name_contains: Option<String>,
    /// Exactly this app.
    pub app: Option<String>,
    /// Subscribed to exactly this event type, or to every type (`*`).
    pub event_type: Option<String>,
    pub active: Option<bool>,
}

/// The `options` column: the request options of a spec. Every field defaults, so rows
/// written before a field existed (`{}` after the migration) still decode.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Options {
    #[serde(default)]
    method: HttpMethod,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    auth: EndpointAuth,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    format: PayloadFormat,
    /// Signing keys, current first. The whole column is sealed when a cipher is configured.
    #[serde(default)]
    signing: SigningKeys,
}

impl Store {
    /// Stores a new webhook. A webhook with the same name in `tenant` is
    /// [`StorageError::NameTaken`].
    pub async fn create_webhook(
        &self,
        tenant: &str,
        webhook: &Webhook,
    ) -> Result<(), StorageError> {
        let row = webhook::ActiveModel {
            id: Set(webhook.id.as_str().to_owned()),
            tenant: Set(tenant.to_owned()),
            name: Set(webhook.spec.name.clone()),
            url: Set(webhook.spec.url.clone()),
            event_types: Set(encode_event_types(&webhook.spec.event_types)),
            active: Set(webhook.spec.active),
            description: Set(webhook.spec.description.clone()),
            attempt_timeout_ms: Set(encode_timeout(&webhook.spec)),
            retry_schedule: Set(encode_schedule(&webhook.spec)),
            created_at: Set(db_time(webhook.created_at)),
            updated_at: Set(db_time(webhook.updated_at)),
            app: Set(webhook.spec.app.clone()),
            options: Set(
                self.seal(&options_aad(webhook.id.as_str()), encode_options(&webhook.spec)?)
            ),
            credential_id: Set(webhook.spec.credential_id.as_ref().map(|c| c.as_str().to_owned())),
            // A new webhook has no history.
            last_attempt_at: Set(None),
            last_attempt_status: Set(None),
            last_attempt_success: Set(false),
            triggered: Set(0),
            succeeded: Set(0),
            failed: Set(0),
            consecutive_failures: Set(0),
            last_success_at: Set(None),
            activated_at: Set(None),
            last_error: Set(String::new()),
            deactivated_by: Set(None),
            deactivated_at: Set(None),
            deactivation_reason: Set(String::new()),
            health_max_failures: Set(webhook.spec.health.max_failures.map(i64::from)),
            health_no_success_secs: Set(encode_no_success(&webhook.spec)),
            buffer_kept: Set(0),
            buffer_released: Set(0),
            ordering_key: Set(encode_ordering(&webhook.spec)),
            filter: Set(encode_filter(&webhook.spec)),
            rate_limit_per_second: Set(webhook.spec.rate_limit.map(|r| i64::from(r.per_second))),
            rate_limit_burst: Set(webhook.spec.rate_limit.map(|r| i64::from(r.burst))),
            filtered: Set(0),
        };
        webhook::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(|e| name_clash(e, &webhook.spec.name))?;
        Ok(())
    }

    pub async fn get_webhook(
        &self,
        tenant: &str,
        id: &WebhookId,
    ) -> Result<Option<Webhook>, StorageError> {
        Ok(self.get_webhook_with_stats(tenant, id).await?.map(|(webhook, _)| webhook))
    }

    pub async fn get_webhook_with_stats(
        &self,
        tenant: &str,
        id: &WebhookId,
    ) -> Result<Option<(Webhook, WebhookStats)>, StorageError> {
        webhook::Entity::find_by_id(id.as_str())
            .filter(webhook::Column::Tenant.eq(tenant))
            .one(&self.db)
            .await?
            .map(|row| self.decode_webhook(row))
            .transpose()
    }

    /// Ordered by id ascending (ids are time-ordered), ids strictly greater than `after`,
    /// only those that pass `filter`.
    pub async fn list_webhooks(
        &self,
        tenant: &str,
        after: Option<&WebhookId>,
        limit: u64,
        filter: &WebhookFilter,
    ) -> Result<Vec<(Webhook, WebhookStats)>, StorageError> {
        let mut query = webhook::Entity::find().filter(webhook::Column::Tenant.eq(tenant));
        if let Some(part) = &filter.name_contains {
            let pattern = format!("%{}%", escape_like(&part.to_lowercase()));
            query = query.filter(
                Expr::expr(Func::lower(Expr::col((webhook::Entity, webhook::Column::Name))))
                    .like(LikeExpr::new(pattern).escape(LIKE_ESCAPE)),
            );
        }
        if let Some(app) = &filter.app {
            query = query.filter(webhook::Column::App.eq(app.as_str()));
        }
        if let Some(active) = filter.active {
            query = query.filter(webhook::Column::Active.eq(active));
        }
        let event_type = filter.event_type.as_deref();
        if let Some(event_type) = event_type {
            query = query.filter(
                Condition::any()
                    .add(subscribed_like(event_type))
                    .add(subscribed_like(hookd_core::webhook::ALL_EVENT_TYPES)),
            );
        }
        let rows = fetch_exact(query, after.map(WebhookId::as_str), limit, &self.db, |types| {
            event_type.is_none_or(|t| {
                types.iter().any(|s| s == t || s == hookd_core::webhook::ALL_EVENT_TYPES)
            })
        })
        .await?;
        rows.into_iter().map(|row| self.decode_webhook(row)).collect()
    }

    /// Ids of up to ten webhooks of `tenant` that use the credential, ordered by id: what
    /// stops the credential from being deleted.
    pub async fn webhooks_using_credential(
        &self,
        tenant: &str,
        id: &CredentialId,
    ) -> Result<Vec<WebhookId>, StorageError> {
        let ids: Vec<String> = webhook::Entity::find()
            .select_only()
            .column(webhook::Column::Id)
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(webhook::Column::CredentialId.eq(id.as_str()))
            .order_by_asc(webhook::Column::Id)
            .limit(MAX_REFERENCING)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(WebhookId::from).collect())
    }

    /// Ids of up to ten webhooks of `tenant` subscribed to exactly `event_type` (not those
    /// subscribed through `*`), ordered by id: what stops the type from being deleted.
    pub async fn webhooks_subscribed_to(
        &self,
        tenant: &str,
        event_type: &str,
    ) -> Result<Vec<WebhookId>, StorageError> {
        let query = webhook::Entity::find()
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(subscribed_like(event_type));
        let rows = fetch_exact(query, None, MAX_REFERENCING, &self.db, |types| {
            types.iter().any(|t| t == event_type)
        })
        .await?;
        Ok(rows.into_iter().map(|row| WebhookId::from(row.id)).collect())
    }

    /// Every webhook of every tenant, ordered by id, for the dispatchers' snapshot.
    pub async fn all_webhooks(&self) -> Result<Vec<(String, Webhook)>, StorageError> {
        webhook::Entity::find()
            .order_by_asc(webhook::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                let tenant = row.tenant.clone();
                Ok((tenant, self.decode_webhook(row)?.0))
            })
            .collect()
    }

    /// Replaces spec + updated_at of an existing webhook; `Ok(false)` if there is no such
    /// webhook; [`StorageError::NameTaken`] on a name clash.
    pub async fn update_webhook(
        &self,
        tenant: &str,
        webhook: &Webhook,
    ) -> Result<bool, StorageError> {
        let spec = &webhook.spec;
        let result = webhook::Entity::update_many()
            .col_expr(webhook::Column::Name, spec.name.clone().into())
            .col_expr(webhook::Column::Url, spec.url.clone().into())
            .col_expr(webhook::Column::EventTypes, encode_event_types(&spec.event_types).into())
            .col_expr(webhook::Column::Active, spec.active.into())
            .col_expr(webhook::Column::Description, spec.description.clone().into())
            .col_expr(webhook::Column::AttemptTimeoutMs, encode_timeout(spec).into())
            .col_expr(webhook::Column::RetrySchedule, encode_schedule(spec).into())
            .col_expr(webhook::Column::App, spec.app.clone().into())
            .col_expr(
                webhook::Column::Options,
                self.seal(&options_aad(webhook.id.as_str()), encode_options(spec)?).into(),
            )
            .col_expr(
                webhook::Column::CredentialId,
                spec.credential_id.as_ref().map(|c| c.as_str().to_owned()).into(),
            )
            .col_expr(
                webhook::Column::HealthMaxFailures,
                spec.health.max_failures.map(i64::from).into(),
            )
            .col_expr(webhook::Column::HealthNoSuccessSecs, encode_no_success(spec).into())
            .col_expr(webhook::Column::OrderingKey, encode_ordering(spec).into())
            .col_expr(webhook::Column::Filter, encode_filter(spec).into())
            .col_expr(
                webhook::Column::RateLimitPerSecond,
                spec.rate_limit.map(|r| i64::from(r.per_second)).into(),
            )
            .col_expr(
                webhook::Column::RateLimitBurst,
                spec.rate_limit.map(|r| i64::from(r.burst)).into(),
            )
            .col_expr(webhook::Column::UpdatedAt, db_time(webhook.updated_at).into())
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(webhook::Column::Id.eq(webhook.id.as_str()))
            .exec(&self.db)
            .await
            .map_err(|e| name_clash(e, &spec.name))?;
        Ok(result.rows_affected > 0)
    }

    /// Deletes the webhook and its deliveries and their attempts in one transaction;
    /// `Ok(false)` if it did not exist.
    pub async fn delete_webhook(&self, tenant: &str, id: &WebhookId) -> Result<bool, StorageError> {
        let txn = self.begin_write().await?;
        let deleted = webhook::Entity::delete_many()
            .filter(webhook::Column::Tenant.eq(tenant))
            .filter(webhook::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?
            .rows_affected;
        // Deliveries are cleaned even when the webhook row is already gone: reports that
        // raced an earlier delete may have left some behind.
        let deliveries_of_webhook = Query::select()
            .column(delivery::Column::Id)
            .from(delivery::Entity)
            .and_where(delivery::Column::Tenant.eq(tenant))
            .and_where(delivery::Column::WebhookId.eq(id.as_str()))
            .to_owned();
        attempt::Entity::delete_many()
            .filter(attempt::Column::DeliveryId.in_subquery(deliveries_of_webhook))
            .exec(&txn)
            .await?;
        delivery::Entity::delete_many()
            .filter(delivery::Column::Tenant.eq(tenant))
            .filter(delivery::Column::WebhookId.eq(id.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted > 0)
    }
}

/// Fetches up to `limit` rows of `query` after `after` in id order for which `keep` holds on
/// the decoded event types. The SQL filter on event types is a `LIKE`, which SQLite applies
/// case-insensitively; `keep` makes the match exact, and the loop fetches further pages when
/// it dropped some rows, so pages stay full.
async fn fetch_exact(
    query: Select<webhook::Entity>,
    after: Option<&str>,
    limit: u64,
    db: &sea_orm::DatabaseConnection,
    keep: impl Fn(&[String]) -> bool,
) -> Result<Vec<webhook::Model>, StorageError> {
    let mut out = Vec::new();
    let mut cursor = after.map(str::to_owned);
    while (out.len() as u64) < limit {
        let mut page = query.clone();
        if let Some(cursor) = &cursor {
            page = page.filter(webhook::Column::Id.gt(cursor.as_str()));
        }
        let want = limit - out.len() as u64;
        let rows = page.order_by_asc(webhook::Column::Id).limit(want).all(db).await?;
        let fetched = rows.len() as u64;
        for row in rows {
            cursor = Some(row.id.clone());
            if keep(&decode_event_types(&row)?) {
                out.push(row);
            }
        }
        if fetched < want {
            break;
        }
    }
    Ok(out)
}

/// The escape character of every `LIKE` pattern built here.
const LIKE_ESCAPE: char = '\\';

/// `text` with the `LIKE` wildcards (and the escape character) escaped.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            out.push(LIKE_ESCAPE);
        }
        out.push(c);
    }
    out
}

/// Whether the JSON array in `event_types` contains the string `event_type`: its quoted
/// JSON form appears in the text. Case-insensitive on SQLite; callers check exactly.
fn subscribed_like(event_type: &str) -> Expr {
    // Quoting a string cannot fail.
    let quoted = serde_json::to_string(event_type).unwrap_or_default();
    webhook::Column::EventTypes
        .like(LikeExpr::new(format!("%{}%", escape_like(&quoted))).escape(LIKE_ESCAPE))
}

fn name_clash(err: DbErr, name: &str) -> StorageError {
    if is_unique_violation(&err) {
        StorageError::NameTaken { name: name.to_owned() }
    } else {
        StorageError::Database(err)
    }
}

fn encode_event_types(types: &[String]) -> String {
    // Serializing a list of strings cannot fail.
    serde_json::to_string(types).unwrap_or_else(|_| "[]".to_owned())
}

fn encode_options(spec: &WebhookSpec) -> Result<String, StorageError> {
    let options = Options {
        method: spec.method,
        headers: spec.headers.clone(),
        auth: spec.auth.clone(),
        fields: spec.fields.clone(),
        format: spec.format,
        signing: spec.signing.clone(),
    };
    serde_json::to_string(&options).map_err(|e| StorageError::OutOfRange {
        field: "options",
        reason: format!("cannot be encoded as JSON: {e}"),
    })
}

fn encode_timeout(spec: &WebhookSpec) -> Option<i32> {
    // Validated to at most 30 s, so it fits.
    spec.attempt_timeout.map(|t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX))
}

fn encode_schedule(spec: &WebhookSpec) -> Option<String> {
    spec.retry_schedule.as_ref().map(|s| {
        let secs: Vec<f64> = s.delays.iter().map(std::time::Duration::as_secs_f64).collect();
        // Serializing a list of finite numbers cannot fail.
        serde_json::to_string(&secs).unwrap_or_else(|_| "[]".to_owned())
    })
}

fn decode_event_types(row: &webhook::Model) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(&row.event_types).map_err(|e| StorageError::Corrupt {
        table: "webhooks",
        reason: format!("event_types of {} is not a JSON array of strings: {e}", row.id),
    })
}

/// Associated data of a webhook's sealed `options`: its identity and the column.
fn options_aad(id: &str) -> String {
    format!("webhooks/{id}/options")
}

impl Store {
    /// A row as a webhook, its `options` opened first.
    fn decode_webhook(
        &self,
        mut row: webhook::Model,
    ) -> Result<(Webhook, WebhookStats), StorageError> {
        row.options = self.open(&options_aad(&row.id), &row.options)?;
        to_webhook_with_stats(row)
    }

    /// Rewrites every webhook's `options` that is not sealed under the current key (written
    /// before encryption was enabled, or before a key rotation). Returns how many changed.
    pub(crate) async fn reseal_webhooks(&self) -> Result<u64, StorageError> {
        let mut changed = 0;
        for row in webhook::Entity::find().all(&self.db).await? {
            if !self.needs_reseal(&row.options) {
                continue;
            }
            let aad = options_aad(&row.id);
            let sealed = self.seal(&aad, self.open(&aad, &row.options)?);
            webhook::Entity::update_many()
                .col_expr(webhook::Column::Options, sealed.into())
                .filter(webhook::Column::Id.eq(row.id.as_str()))
                .exec(&self.db)
                .await?;
            changed += 1;
        }
        Ok(changed)
    }
}

fn encode_ordering(spec: &WebhookSpec) -> Option<String> {
    spec.ordering.as_ref().map(|k| k.as_str().to_owned())
}

fn encode_filter(spec: &WebhookSpec) -> Option<String> {
    // Serializing a JSON value cannot fail.
    spec.filter.as_ref().map(|f| f.source().to_string())
}

/// A webhook's delivery controls: ordering key, filter, rate limit.
type Controls = (
    Option<hookd_core::ordering::OrderingKey>,
    Option<hookd_core::filter::Filter>,
    Option<hookd_core::rate_limit::RateLimit>,
);

/// The delivery controls as stored; each was validated when written.
fn decode_controls(row: &webhook::Model) -> Result<Controls, StorageError> {
    let corrupt = |what: &str, reason: String| StorageError::Corrupt {
        table: "webhooks",
        reason: format!("{what} of {} is invalid: {reason}", row.id),
    };
    let ordering = row
        .ordering_key
        .as_deref()
        .map(hookd_core::ordering::OrderingKey::parse)
        .transpose()
        .map_err(|e| corrupt("ordering_key", e.reason))?;
    let filter = match &row.filter {
        None => None,
        Some(text) => {
            let json = serde_json::from_str(text).map_err(|e| corrupt("filter", e.to_string()))?;
            Some(hookd_core::filter::Filter::parse(json).map_err(|e| corrupt("filter", e.reason))?)
        }
    };
    let rate_limit = match row.rate_limit_per_second {
        None => None,
        Some(per_second) => Some(hookd_core::rate_limit::RateLimit {
            per_second: u32::try_from(per_second)
                .map_err(|_| corrupt("rate_limit_per_second", per_second.to_string()))?,
            burst: u32::try_from(row.rate_limit_burst.unwrap_or_default()).unwrap_or_default(),
        }),
    };
    Ok((ordering, filter, rate_limit))
}

fn encode_no_success(spec: &WebhookSpec) -> Option<i64> {
    spec.health.no_success_for.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The webhook's own thresholds as stored; out-of-range values (never written) read as unset.
pub(crate) fn health_policy_of(row: &webhook::Model) -> HealthPolicy {
    HealthPolicy {
        max_failures: row.health_max_failures.and_then(|n| u32::try_from(n).ok()),
        no_success_for: row
            .health_no_success_secs
            .and_then(|s| u64::try_from(s).ok())
            .map(std::time::Duration::from_secs),
    }
}

fn to_webhook_with_stats(row: webhook::Model) -> Result<(Webhook, WebhookStats), StorageError> {
    let event_types = decode_event_types(&row)?;
    let options: Options =
        serde_json::from_str(&row.options).map_err(|e| StorageError::Corrupt {
            table: "webhooks",
            reason: format!("options of {} is not a valid JSON object: {e}", row.id),
        })?;
    let counter = |value: i64, what: &str| {
        u64::try_from(value).map_err(|_| StorageError::Corrupt {
            table: "webhooks",
            reason: format!("{what} of {} is negative: {value}", row.id),
        })
    };
    let stats = WebhookStats {
        last_attempt_at: row.last_attempt_at,
        last_attempt_status: row.last_attempt_status.and_then(|s| u16::try_from(s).ok()),
        last_attempt_succeeded: row.last_attempt_success,
        triggered: counter(row.triggered, "triggered")?,
        succeeded: counter(row.succeeded, "succeeded")?,
        failed: counter(row.failed, "failed")?,
        filtered: counter(row.filtered, "filtered")?,
    };
    let (ordering, filter, rate_limit) = decode_controls(&row)?;
    let retry_schedule = match &row.retry_schedule {
        None => None,
        Some(text) => {
            let secs: Vec<f64> = serde_json::from_str(text).map_err(|e| StorageError::Corrupt {
                table: "webhooks",
                reason: format!("retry_schedule of {} is not a JSON array of numbers: {e}", row.id),
            })?;
            let delays = secs
                .into_iter()
                .map(|s| std::time::Duration::try_from_secs_f64(s).unwrap_or_default())
                .collect();
            Some(hookd_core::RetrySchedule { delays })
        }
    };
    let attempt_timeout = row
        .attempt_timeout_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .map(std::time::Duration::from_millis);
    let health = health_policy_of(&row);
    let webhook = Webhook {
        id: WebhookId::from(row.id),
        spec: WebhookSpec {
            name: row.name,
            url: row.url,
            event_types,
            active: row.active,
            description: row.description,
            attempt_timeout,
            retry_schedule,
            app: row.app,
            method: options.method,
            headers: options.headers,
            auth: options.auth,
            credential_id: row.credential_id.map(CredentialId::from),
            fields: options.fields,
            format: options.format,
            signing: options.signing,
            health,
            ordering,
            filter,
            rate_limit,
        },
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    Ok((webhook, stats))
}
