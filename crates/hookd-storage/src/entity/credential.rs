//! The `credentials` table: OAuth2 credentials and the token state cached for each.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant: String,
    /// Copied from the spec so the database can keep names unique per tenant.
    pub name: String,
    /// The `CredentialSpec` as JSON, client secret and code in plain text until secrets are
    /// encrypted at rest.
    #[sea_orm(column_type = "Text")]
    pub spec: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub access_token: Option<String>,
    pub token_expires_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub refresh_token: Option<String>,
    /// Why the last token request failed; empty when it did not.
    #[sea_orm(column_type = "Text")]
    pub token_error: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
