//! Delivery history: attempt reports recorded in batches, and deliveries read back for the
//! delivery API.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use hookd_core::{AttemptRecord, AttemptReport, DeliveryId, DeliveryStatus, EventId, WebhookId};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict, Query},
};

use crate::entity::{attempt, delivery, webhook};
use crate::health::{HealthSample, SystemDeactivation, apply_health};
use crate::{StorageError, Store, db_time};

/// Rows per multi-row insert, keeping the bound parameters (8 or 12 per row) far below the
/// limits of SQLite (32766) and Postgres (65535).
const ROWS_PER_INSERT: usize = 500;

/// A delivery as stored: its latest known state.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub payload: String,
    pub event: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Which deliveries [`Store::list_deliveries`] returns.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    /// Created at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// Where a page of [`Store::list_deliveries`] ends: the last delivery returned.
#[derive(Debug, Clone)]
pub struct DeliveryCursor {
    pub created_at: DateTime<Utc>,
    pub id: DeliveryId,
}

impl From<&DeliveryRecord> for DeliveryCursor {
    fn from(record: &DeliveryRecord) -> Self {
        Self { created_at: record.created_at, id: record.id.clone() }
    }
}

/// What [`Store::record_attempts`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecordSummary {
    /// Attempts stored by this call.
    pub recorded: u32,
    /// Attempts already stored (or repeated within the batch), which changed nothing.
    pub duplicates: u32,
}

/// An attempt report converted to column values, checked before the transaction starts.
struct Row<'a> {
    report: &'a AttemptReport,
    number: i32,
    latency_ms: i64,
    started_at: DateTime<Utc>,
    next_attempt_at: Option<DateTime<Utc>>,
}

/// The newest new attempt of one delivery in a batch, which decides its state.
struct Latest<'a, 'r> {
    row: &'r Row<'a>,
    first_started_at: DateTime<Utc>,
}

impl Store {
    /// Records a batch of attempts in one transaction (group commit), idempotently on
    /// (delivery_id, number): an attempt already stored counts as a duplicate and changes
    /// nothing. A new attempt creates its delivery if missing and moves the delivery's state
    /// only when its number is at least the stored attempt count, so a late report of an
    /// older attempt never regresses it.
    pub async fn record_attempts(
        &self,
        tenant: &str,
        reports: &[AttemptReport],
    ) -> Result<RecordSummary, StorageError> {
        let stored = self.record_attempts_each(tenant, reports).await?;
        let recorded = count(stored.iter().filter(|new| **new).count());
        Ok(RecordSummary { recorded, duplicates: count(reports.len()).saturating_sub(recorded) })
    }

    /// As [`Store::record_attempts`], telling for each report, in order, whether this call
    /// stored it (`true`) or found it stored already (`false`). Callers that merge several
    /// requests into one transaction use it to answer each request for its own reports.
    pub async fn record_attempts_each(
        &self,
        tenant: &str,
        reports: &[AttemptReport],
    ) -> Result<Vec<bool>, StorageError> {
        Ok(self.record_attempts_checked(tenant, reports, None).await?.0)
    }

    /// As [`Store::record_attempts_each`], also folding the new attempts into each webhook's
    /// health and, with a `rule`, deactivating the webhooks it condemns in the same
    /// transaction; those are returned for the notification.
    pub async fn record_attempts_checked(
        &self,
        tenant: &str,
        reports: &[AttemptReport],
        rule: Option<&hookd_core::HealthRule>,
    ) -> Result<(Vec<bool>, Vec<SystemDeactivation>), StorageError> {
        let mut seen = HashSet::new();
        let mut rows = Vec::with_capacity(reports.len());
        for report in reports {
            if seen.insert((report.delivery_id.as_str(), report.attempt.number)) {
                rows.push(to_row(report)?);
            }
        }
        if rows.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }

        let txn = self.begin_write().await?;
        let inserted = insert_attempts(&txn, &rows).await?;
        let new_rows: Vec<&Row<'_>> = rows
            .iter()
            .filter(|r| inserted.contains(&(r.report.delivery_id.as_str().to_owned(), r.number)))
            .collect();

        let mut latest: Vec<Latest<'_, '_>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for row in &new_rows {
            match index.get(row.report.delivery_id.as_str()) {
                Some(&i) => {
                    let entry = &mut latest[i];
                    entry.first_started_at = entry.first_started_at.min(row.started_at);
                    if row.number > entry.row.number {
                        entry.row = row;
                    }
                }
                None => {
                    index.insert(row.report.delivery_id.as_str(), latest.len());
                    latest.push(Latest { row, first_started_at: row.started_at });
                }
            }
        }

        // Webhook statistics change with this batch's new attempts only, so a re-reported
        // attempt changes no count. Aggregated here, written once per webhook below.
        let mut stats: HashMap<&str, StatsDelta> = HashMap::new();
        for row in &new_rows {
            stats.entry(row.report.webhook_id.as_str()).or_default().offer_attempt(row);
        }

        let now = db_time(Utc::now());
        let created = insert_deliveries(&txn, tenant, &latest, now).await?;
        for entry in latest.iter().filter(|e| created.contains(e.row.report.delivery_id.as_str())) {
            let report = entry.row.report;
            let delta = stats.entry(report.webhook_id.as_str()).or_default();
            delta.triggered += 1;
            delta.transition(None, report.status_after);
        }
        let existing: Vec<&Latest<'_, '_>> = latest
            .iter()
            .filter(|e| !created.contains(e.row.report.delivery_id.as_str()))
            .collect();
        let before = current_statuses(&txn, tenant, &existing).await?;
        for entry in existing {
            let row = entry.row;
            let result = delivery::Entity::update_many()
                .col_expr(delivery::Column::Status, row.report.status_after.as_str().into())
                .col_expr(delivery::Column::AttemptCount, row.number.into())
                .col_expr(delivery::Column::LastAttemptAt, Some(row.started_at).into())
                .col_expr(delivery::Column::NextAttemptAt, row.next_attempt_at.into())
                .col_expr(delivery::Column::UpdatedAt, now.into())
                .filter(delivery::Column::Id.eq(row.report.delivery_id.as_str()))
                .filter(delivery::Column::Tenant.eq(tenant))
                .filter(delivery::Column::AttemptCount.lte(row.number))
                .exec(&txn)
                .await?;
            // The row was locked when its status was read, so `before` is what changed.
            if result.rows_affected > 0
                && let Some(&old) = before.get(row.report.delivery_id.as_str())
            {
                stats
                    .entry(row.report.webhook_id.as_str())
                    .or_default()
                    .transition(Some(old), row.report.status_after);
            }
        }
        let mut deactivated = Vec::new();
        for (webhook_id, delta) in &mut stats {
            delta.apply(&txn, tenant, webhook_id).await?;
            if let Some(d) =
                apply_health(&txn, tenant, webhook_id, &mut delta.samples, rule).await?
            {
                deactivated.push(d);
            }
        }
        txn.commit().await?;

        // Only the first report of a key in this batch can be the one that stored it.
        let mut first = HashSet::new();
        let stored = reports
            .iter()
            .map(|r| {
                // `to_row` accepted every number, so it fits in an i32.
                let number = i32::try_from(r.attempt.number).unwrap_or(i32::MAX);
                let key = (r.delivery_id.as_str().to_owned(), number);
                first.insert(key.clone()) && inserted.contains(&key)
            })
            .collect();
        Ok((stored, deactivated))
    }

    /// Newest first (created_at desc, id desc), strictly after `cursor` in that order, and
    /// only those that pass `filter`.
    pub async fn list_deliveries(
        &self,
        tenant: &str,
        webhook_id: &WebhookId,
        filter: &DeliveryFilter,
        cursor: Option<&DeliveryCursor>,
        limit: u64,
    ) -> Result<Vec<DeliveryRecord>, StorageError> {
        let mut query = delivery::Entity::find()
            .filter(delivery::Column::Tenant.eq(tenant))
            .filter(delivery::Column::WebhookId.eq(webhook_id.as_str()));
        if let Some(status) = filter.status {
            query = query.filter(delivery::Column::Status.eq(status.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(delivery::Column::CreatedAt.gte(db_time(since)));
        }
        if let Some(cursor) = cursor {
            let created_at = db_time(cursor.created_at);
            query = query.filter(
                Condition::any().add(delivery::Column::CreatedAt.lt(created_at)).add(
                    Condition::all()
                        .add(delivery::Column::CreatedAt.eq(created_at))
                        .add(delivery::Column::Id.lt(cursor.id.as_str())),
                ),
            );
        }
        query
            .order_by_desc(delivery::Column::CreatedAt)
            .order_by_desc(delivery::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_delivery)
            .collect()
    }

    /// Marks a delivery pending again because it was resent, with its next attempt due now.
    /// Only a delivered or failed delivery can be resent (a pending one has an attempt
    /// scheduled already); returns the delivery as it was before, or `None` if there is no
    /// such delivery or it is pending.
    pub async fn mark_resent(
        &self,
        tenant: &str,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryRecord>, StorageError> {
        let txn = self.begin_write().await?;
        let Some(row) = delivery::Entity::find_by_id(id.as_str())
            .filter(delivery::Column::Tenant.eq(tenant))
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        let before = to_delivery(row)?;
        if before.status == DeliveryStatus::Pending {
            return Ok(None);
        }
        let result = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, DeliveryStatus::Pending.as_str().into())
            .col_expr(delivery::Column::NextAttemptAt, Some(db_time(now)).into())
            .col_expr(delivery::Column::UpdatedAt, db_time(now).into())
            .filter(delivery::Column::Id.eq(id.as_str()))
            .filter(delivery::Column::Status.ne(DeliveryStatus::Pending.as_str()))
            .exec(&txn)
            .await?;
        if result.rows_affected == 0 {
            // A concurrent resend won the race (possible on Postgres): not ours to resend.
            return Ok(None);
        }
        let mut delta = StatsDelta::default();
        delta.transition(Some(before.status), DeliveryStatus::Pending);
        delta.apply(&txn, tenant, before.webhook_id.as_str()).await?;
        txn.commit().await?;
        Ok(Some(before))
    }

    /// Puts back the status and next attempt time a delivery had, after a resend that could
    /// not be queued.
    pub async fn restore_status(
        &self,
        tenant: &str,
        before: &DeliveryRecord,
    ) -> Result<(), StorageError> {
        let txn = self.begin_write().await?;
        let Some(row) = delivery::Entity::find_by_id(before.id.as_str())
            .filter(delivery::Column::Tenant.eq(tenant))
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return Ok(());
        };
        let current = to_delivery(row)?;
        let result = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, before.status.as_str().into())
            .col_expr(delivery::Column::NextAttemptAt, before.next_attempt_at.map(db_time).into())
            .filter(delivery::Column::Id.eq(before.id.as_str()))
            .filter(delivery::Column::Tenant.eq(tenant))
            .filter(
                delivery::Column::AttemptCount
                    .eq(i32::try_from(before.attempt_count).unwrap_or(i32::MAX)),
            )
            .exec(&txn)
            .await?;
        if result.rows_affected > 0 {
            let mut delta = StatsDelta::default();
            delta.transition(Some(current.status), before.status);
            delta.apply(&txn, tenant, current.webhook_id.as_str()).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The stored state of each of `ids` (of `tenant`) with at least one attempt recorded;
    /// deliveries not returned have none. One query, however many ids.
    pub async fn delivery_progress(
        &self,
        tenant: &str,
        ids: &[DeliveryId],
    ) -> Result<Vec<DeliveryRecord>, StorageError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let rows = delivery::Entity::find()
                .filter(delivery::Column::Tenant.eq(tenant))
                .filter(delivery::Column::Id.is_in(chunk.iter().map(DeliveryId::as_str)))
                .filter(delivery::Column::AttemptCount.gt(0))
                .all(&self.db)
                .await?;
            for row in rows {
                found.push(to_delivery(row)?);
            }
        }
        Ok(found)
    }

    /// The delivery and its attempts ordered by number.
    pub async fn get_delivery(
        &self,
        tenant: &str,
        id: &DeliveryId,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>, StorageError> {
        let Some(row) = delivery::Entity::find_by_id(id.as_str())
            .filter(delivery::Column::Tenant.eq(tenant))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let attempts = attempt::Entity::find()
            .filter(attempt::Column::DeliveryId.eq(id.as_str()))
            .order_by_asc(attempt::Column::Number)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_attempt)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((to_delivery(row)?, attempts)))
    }
}

/// How one transaction changes a webhook's statistics.
#[derive(Debug, Default)]
struct StatsDelta {
    triggered: i64,
    succeeded: i64,
    failed: i64,
    /// The newest attempt among those this transaction stored: (started_at, status, success).
    last: Option<(DateTime<Utc>, Option<i32>, bool)>,
    /// The new attempts, for the webhook's health.
    samples: Vec<HealthSample>,
}

impl StatsDelta {
    fn offer_attempt(&mut self, row: &Row<'_>) {
        let a = &row.report.attempt;
        if self.last.is_none_or(|(at, _, _)| row.started_at >= at) {
            self.last = Some((row.started_at, a.http_status.map(i32::from), a.success));
        }
        let error = match (a.http_status, a.error.is_empty()) {
            (_, false) => a.error.clone(),
            (Some(status), true) => format!("http status {status}"),
            (None, true) => String::new(),
        };
        self.samples.push(HealthSample {
            started_at: row.started_at,
            success: a.success,
            gone: a.http_status == Some(410),
            error,
        });
    }

    /// A delivery moved from `from` (`None`: it did not exist) to `to`: the counts of final
    /// statuses follow it, so they always equal the deliveries currently in that status.
    fn transition(&mut self, from: Option<DeliveryStatus>, to: DeliveryStatus) {
        if let Some(from) = from {
            self.count(from, -1);
        }
        self.count(to, 1);
    }

    fn count(&mut self, status: DeliveryStatus, n: i64) {
        match status {
            DeliveryStatus::Delivered => self.succeeded += n,
            DeliveryStatus::Failed => self.failed += n,
            DeliveryStatus::Pending => {}
        }
    }

    /// One UPDATE of the webhook's row; nothing when the webhook is gone (reports may
    /// outlive it). The last attempt moves only forward in time: a late report of an older
    /// attempt leaves it alone.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        tenant: &str,
        webhook_id: &str,
    ) -> Result<(), StorageError> {
        // Imported here only: it would shadow `Ord::min` on timestamps elsewhere.
        use sea_orm::sea_query::ExprTrait;
        use webhook::Column as C;
        if self.triggered == 0 && self.succeeded == 0 && self.failed == 0 && self.last.is_none() {
            return Ok(());
        }
        let mut update = webhook::Entity::update_many()
            .col_expr(C::Triggered, Expr::col(C::Triggered).add(self.triggered))
            .col_expr(C::Succeeded, Expr::col(C::Succeeded).add(self.succeeded))
            .col_expr(C::Failed, Expr::col(C::Failed).add(self.failed));
        if let Some((at, status, success)) = self.last {
            // Every SET expression reads the row as it was, so all three see the old time.
            let newer =
                || Condition::any().add(C::LastAttemptAt.is_null()).add(C::LastAttemptAt.lte(at));
            update = update
                .col_expr(
                    C::LastAttemptAt,
                    Expr::case(newer(), Expr::val(Some(at)))
                        .finally(Expr::col(C::LastAttemptAt))
                        .into(),
                )
                .col_expr(
                    C::LastAttemptStatus,
                    Expr::case(newer(), Expr::val(status))
                        .finally(Expr::col(C::LastAttemptStatus))
                        .into(),
                )
                .col_expr(
                    C::LastAttemptSuccess,
                    Expr::case(newer(), Expr::val(success))
                        .finally(Expr::col(C::LastAttemptSuccess))
                        .into(),
                );
        }
        update.filter(C::Tenant.eq(tenant)).filter(C::Id.eq(webhook_id)).exec(txn).await?;
        Ok(())
    }
}

/// The status of each delivery in `entries` that exists, locking the rows on Postgres so the
/// transition recorded for the statistics is the one that happens.
async fn current_statuses(
    txn: &DatabaseTransaction,
    tenant: &str,
    entries: &[&Latest<'_, '_>],
) -> Result<HashMap<String, DeliveryStatus>, StorageError> {
    let mut statuses = HashMap::with_capacity(entries.len());
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let ids = chunk.iter().map(|e| e.row.report.delivery_id.as_str());
        let rows: Vec<(String, String)> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::Id)
            .column(delivery::Column::Status)
            .filter(delivery::Column::Tenant.eq(tenant))
            .filter(delivery::Column::Id.is_in(ids))
            .lock_exclusive()
            .into_tuple()
            .all(txn)
            .await?;
        for (id, status) in rows {
            let parsed = DeliveryStatus::parse(&status).ok_or_else(|| {
                corrupt("deliveries", format!("{id} has unknown status {status:?}"))
            })?;
            statuses.insert(id, parsed);
        }
    }
    Ok(statuses)
}

/// Inserts the attempts not stored yet and returns the keys of those it inserted.
async fn insert_attempts(
    txn: &DatabaseTransaction,
    rows: &[Row<'_>],
) -> Result<HashSet<(String, i32)>, StorageError> {
    use attempt::Column as C;
    let mut inserted = HashSet::new();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = Query::insert();
        insert
            .into_table(attempt::Entity)
            .columns([
                C::DeliveryId,
                C::Number,
                C::StartedAt,
                C::HttpStatus,
                C::LatencyMs,
                C::Error,
                C::ResponseBody,
                C::Success,
                C::RequestHeaders,
            ])
            .on_conflict(OnConflict::columns([C::DeliveryId, C::Number]).do_nothing().to_owned())
            .returning(Query::returning().columns([C::DeliveryId, C::Number]));
        for row in chunk {
            let a = &row.report.attempt;
            insert
                .values([
                    Expr::val(row.report.delivery_id.as_str()),
                    Expr::val(row.number),
                    Expr::val(row.started_at),
                    Expr::val(a.http_status.map(i32::from)),
                    Expr::val(row.latency_ms),
                    Expr::val(a.error.as_str()),
                    Expr::val(a.response_body.as_str()),
                    Expr::val(a.success),
                    Expr::val(encode_headers(&a.request_headers)),
                ])
                .map_err(builder_error)?;
        }
        // RETURNING lists only the rows that ON CONFLICT DO NOTHING did not skip, which
        // also counts duplicates correctly when two batches race on Postgres.
        for result in txn.query_all(&insert).await? {
            inserted.insert((
                result.try_get::<String>("", "delivery_id")?,
                result.try_get::<i32>("", "number")?,
            ));
        }
    }
    Ok(inserted)
}

/// Inserts the deliveries not stored yet, in the state of their newest attempt, and returns
/// the ids of those it inserted.
async fn insert_deliveries(
    txn: &DatabaseTransaction,
    tenant: &str,
    latest: &[Latest<'_, '_>],
    now: DateTime<Utc>,
) -> Result<HashSet<String>, StorageError> {
    use delivery::Column as C;
    let mut created = HashSet::new();
    for chunk in latest.chunks(ROWS_PER_INSERT) {
        let mut insert = Query::insert();
        insert
            .into_table(delivery::Entity)
            .columns([
                C::Id,
                C::Tenant,
                C::WebhookId,
                C::EventId,
                C::EventType,
                C::Status,
                C::AttemptCount,
                C::Payload,
                C::Event,
                C::CreatedAt,
                C::UpdatedAt,
                C::LastAttemptAt,
                C::NextAttemptAt,
            ])
            .on_conflict(OnConflict::column(C::Id).do_nothing().to_owned())
            .returning(Query::returning().column(C::Id));
        for entry in chunk {
            let row = entry.row;
            let r = row.report;
            insert
                .values([
                    Expr::val(r.delivery_id.as_str()),
                    Expr::val(tenant),
                    Expr::val(r.webhook_id.as_str()),
                    Expr::val(r.event_id.as_str()),
                    Expr::val(r.event_type.as_str()),
                    Expr::val(r.status_after.as_str()),
                    Expr::val(row.number),
                    Expr::val(r.payload.as_str()),
                    Expr::val(r.event.as_str()),
                    Expr::val(entry.first_started_at),
                    Expr::val(now),
                    Expr::val(Some(row.started_at)),
                    Expr::val(row.next_attempt_at),
                ])
                .map_err(builder_error)?;
        }
        for result in txn.query_all(&insert).await? {
            created.insert(result.try_get::<String>("", "id")?);
        }
    }
    Ok(created)
}

fn to_row(report: &AttemptReport) -> Result<Row<'_>, StorageError> {
    let number = i32::try_from(report.attempt.number).map_err(|_| StorageError::OutOfRange {
        field: "attempt number",
        reason: format!("{} does not fit a 32-bit signed integer", report.attempt.number),
    })?;
    let latency_ms =
        i64::try_from(report.attempt.latency_ms).map_err(|_| StorageError::OutOfRange {
            field: "latency_ms",
            reason: format!("{} does not fit a 64-bit signed integer", report.attempt.latency_ms),
        })?;
    Ok(Row {
        report,
        number,
        latency_ms,
        started_at: db_time(report.attempt.started_at),
        next_attempt_at: report.next_attempt_at.map(db_time),
    })
}

fn builder_error(err: sea_orm::sea_query::error::Error) -> StorageError {
    StorageError::Database(DbErr::Custom(format!("cannot build insert: {err}")))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn corrupt(table: &'static str, reason: String) -> StorageError {
    StorageError::Corrupt { table, reason }
}

fn encode_headers(headers: &[(String, String)]) -> String {
    // A list of string pairs always serializes.
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".to_owned())
}

fn to_delivery(row: delivery::Model) -> Result<DeliveryRecord, StorageError> {
    let status = DeliveryStatus::parse(&row.status).ok_or_else(|| {
        corrupt("deliveries", format!("{} has unknown status {:?}", row.id, row.status))
    })?;
    let attempt_count = u32::try_from(row.attempt_count).map_err(|_| {
        corrupt("deliveries", format!("{} has attempt_count {}", row.id, row.attempt_count))
    })?;
    Ok(DeliveryRecord {
        id: DeliveryId::from(row.id),
        webhook_id: WebhookId::from(row.webhook_id),
        event_id: EventId::from(row.event_id),
        event_type: row.event_type,
        status,
        attempt_count,
        payload: row.payload,
        event: row.event,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_attempt_at: row.last_attempt_at,
        next_attempt_at: row.next_attempt_at,
    })
}

fn to_attempt(row: attempt::Model) -> Result<AttemptRecord, StorageError> {
    let bad =
        |what: String| corrupt("attempts", format!("{} #{}: {what}", row.delivery_id, row.number));
    let number = u32::try_from(row.number).map_err(|_| bad("negative number".to_owned()))?;
    let http_status = row
        .http_status
        .map(|s| u16::try_from(s).map_err(|_| bad(format!("http_status {s}"))))
        .transpose()?;
    let latency_ms =
        u64::try_from(row.latency_ms).map_err(|_| bad(format!("latency_ms {}", row.latency_ms)))?;
    let request_headers = serde_json::from_str(&row.request_headers)
        .map_err(|e| bad(format!("request_headers is not a list of pairs: {e}")))?;
    Ok(AttemptRecord {
        request_headers,
        number,
        started_at: row.started_at,
        http_status,
        latency_ms,
        error: row.error,
        response_body: row.response_body,
        success: row.success,
    })
}
