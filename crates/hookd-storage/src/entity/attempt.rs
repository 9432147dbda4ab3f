//! The `attempts` table: one row per HTTP attempt at a delivery, keyed by its number.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub delivery_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub number: i32,
    pub started_at: DateTimeUtc,
    pub http_status: Option<i32>,
    pub latency_ms: i64,
    #[sea_orm(column_type = "Text")]
    pub error: String,
    #[sea_orm(column_type = "Text")]
    pub response_body: String,
    pub success: bool,
    /// A JSON array of `[name, value]` pairs: the request headers sent, secrets redacted.
    #[sea_orm(column_type = "Text")]
    pub request_headers: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
