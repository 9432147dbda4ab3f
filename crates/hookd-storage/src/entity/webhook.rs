//! The `webhooks` table: one row per webhook definition.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant: String,
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub url: String,
    /// A JSON array of strings; text rather than a JSON column so both backends agree.
    #[sea_orm(column_type = "Text")]
    pub event_types: String,
    pub active: bool,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    pub attempt_timeout_ms: Option<i32>,
    /// A JSON array of delays in seconds; NULL for the dispatcher's default schedule.
    #[sea_orm(column_type = "Text", nullable)]
    pub retry_schedule: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub app: String,
    /// A JSON object of method, headers, auth, fields and format (secrets in plain text
    /// until they are encrypted at rest); missing keys mean their defaults.
    #[sea_orm(column_type = "Text")]
    pub options: String,
    pub credential_id: Option<String>,
    /// Statistics, kept current by the transactions that record results: the newest
    /// attempt by start time, deliveries created, and deliveries now delivered / failed.
    pub last_attempt_at: Option<DateTimeUtc>,
    pub last_attempt_status: Option<i32>,
    pub last_attempt_success: bool,
    pub triggered: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Endpoint health, kept by the same transactions: failed attempts since the last
    /// success, the last success and (re)activation, and the newest failure's error.
    pub consecutive_failures: i64,
    pub last_success_at: Option<DateTimeUtc>,
    pub activated_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text")]
    pub last_error: String,
    /// `user` or `system` while deactivated by either; NULL otherwise.
    pub deactivated_by: Option<String>,
    pub deactivated_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text")]
    pub deactivation_reason: String,
    /// The webhook's own health thresholds; NULL means the deployment's.
    pub health_max_failures: Option<i64>,
    pub health_no_success_secs: Option<i64>,
    /// Jobs ever kept in the webhook's buffer, and ever taken out of it by a replay or a
    /// discard: what is neither still there nor released has expired.
    pub buffer_kept: i64,
    pub buffer_released: i64,
    /// `entity_id` or a JSON pointer; NULL: deliveries are not ordered.
    #[sea_orm(column_type = "Text", nullable)]
    pub ordering_key: Option<String>,
    /// The payload filter's JSON; NULL: no filter.
    #[sea_orm(column_type = "Text", nullable)]
    pub filter: Option<String>,
    /// Requests per second and burst; NULL: unlimited.
    pub rate_limit_per_second: Option<i64>,
    pub rate_limit_burst: Option<i64>,
    /// Events the filter rejected, reported by the dispatchers.
    pub filtered: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
