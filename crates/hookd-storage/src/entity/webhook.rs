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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
