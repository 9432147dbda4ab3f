//! Access control: custom roles and API tokens of each tenant. The built-in roles (`owner`,
//! `viewer`) live in code, not here, so every tenant has them without a row.
//!
//! Tokens are stored as the SHA-256 of their value: a database leak gives no usable token.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Roles {
    Table,
    Tenant,
    Name,
    Permissions,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    Tenant,
    Name,
    Role,
    Hash,
    LastFour,
    CreatedAt,
}

// See m0001 for why the lifetimes stay elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(ColumnDef::new(Roles::Tenant).string().not_null())
                    .col(ColumnDef::new(Roles::Name).string().not_null())
                    // JSON array of permission names.
                    .col(ColumnDef::new(Roles::Permissions).text().not_null())
                    .col(ColumnDef::new(Roles::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Roles::UpdatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(Roles::Tenant).col(Roles::Name))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(ColumnDef::new(ApiTokens::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(ApiTokens::Tenant).string().not_null())
                    .col(ColumnDef::new(ApiTokens::Name).string().not_null())
                    .col(ColumnDef::new(ApiTokens::Role).string().not_null())
                    // Hex SHA-256 of the token.
                    .col(ColumnDef::new(ApiTokens::Hash).string().not_null())
                    .col(ColumnDef::new(ApiTokens::LastFour).string().not_null())
                    .col(ColumnDef::new(ApiTokens::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_tokens_hash_key")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::Hash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // DeleteRole asks whether any token still has the role.
        manager
            .create_index(
                Index::create()
                    .name("api_tokens_tenant_role_idx")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::Tenant)
                    .col(ApiTokens::Role)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ApiTokens::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Roles::Table).to_owned()).await
    }
}
