//! The `deliveries` table: the current state of each delivery of an event to a webhook.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`, as [`hookd_core::DeliveryStatus::as_str`] spells them.
    pub status: String,
    pub attempt_count: i32,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// The event as the producer published it, for resends.
    #[sea_orm(column_type = "Text")]
    pub event: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_attempt_at: Option<DateTimeUtc>,
    pub next_attempt_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
