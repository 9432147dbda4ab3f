//! The `api_tokens` table: API tokens by their SHA-256, never their value.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the token; unique.
    pub hash: String,
    /// The token's last four characters, so people can tell their tokens apart.
    pub last_four: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
