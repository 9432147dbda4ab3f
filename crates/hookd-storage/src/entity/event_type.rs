//! The `event_types` table: the event-type catalog, one row per type of each tenant.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_types")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    /// JSON Schema text; NULL when the type has none.
    #[sea_orm(column_type = "Text", nullable)]
    pub schema: Option<String>,
    /// JSON text; NULL when the type has none.
    #[sea_orm(column_type = "Text", nullable)]
    pub example: Option<String>,
    /// Events refused because their data did not satisfy the schema.
    pub rejected: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
