//! Definitions: endpoint options and delivery statistics on webhooks, OAuth2 credentials and
//! the event-type catalog.
//!
//! Secrets (endpoint auth values in `webhooks.options`, client secrets and codes in
//! `credentials.spec`, tokens in `credentials`) are sealed by the store (see `crypto.rs`)
//! before they are written, when a cipher is configured.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Tenant,
    App,
    Options,
    CredentialId,
    LastAttemptAt,
    LastAttemptStatus,
    LastAttemptSuccess,
    Triggered,
    Succeeded,
    Failed,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    Id,
    Tenant,
    Name,
    Spec,
    AccessToken,
    TokenExpiresAt,
    RefreshToken,
    TokenError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EventTypes {
    Table,
    Tenant,
    Name,
    Description,
    Schema,
    Example,
    Rejected,
    CreatedAt,
    UpdatedAt,
}

// See m0001 for why the lifetimes stay elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE. Every new column is nullable or has a
        // default, so existing webhooks read back as they were: no options, no statistics.
        let columns = [
            ColumnDef::new(Webhooks::App).string().not_null().default("").to_owned(),
            // JSON object of method, headers, auth, fields and format; `{}` means defaults.
            ColumnDef::new(Webhooks::Options).text().not_null().default("{}").to_owned(),
            ColumnDef::new(Webhooks::CredentialId).string().null().to_owned(),
            ColumnDef::new(Webhooks::LastAttemptAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Webhooks::LastAttemptStatus).integer().null().to_owned(),
            ColumnDef::new(Webhooks::LastAttemptSuccess)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(Webhooks::Triggered).big_integer().not_null().default(0).to_owned(),
            ColumnDef::new(Webhooks::Succeeded).big_integer().not_null().default(0).to_owned(),
            ColumnDef::new(Webhooks::Failed).big_integer().not_null().default(0).to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter().table(Webhooks::Table).add_column(&mut column).to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("webhooks_tenant_credential_idx")
                    .table(Webhooks::Table)
                    .col(Webhooks::Tenant)
                    .col(Webhooks::CredentialId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .col(ColumnDef::new(Credentials::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Credentials::Tenant).string().not_null())
                    .col(ColumnDef::new(Credentials::Name).string().not_null())
                    .col(ColumnDef::new(Credentials::Spec).text().not_null())
                    .col(ColumnDef::new(Credentials::AccessToken).text().null())
                    .col(
                        ColumnDef::new(Credentials::TokenExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Credentials::RefreshToken).text().null())
                    .col(ColumnDef::new(Credentials::TokenError).text().not_null().default(""))
                    .col(
                        ColumnDef::new(Credentials::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Credentials::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("credentials_tenant_name_key")
                    .table(Credentials::Table)
                    .col(Credentials::Tenant)
                    .col(Credentials::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EventTypes::Table)
                    .col(ColumnDef::new(EventTypes::Tenant).string().not_null())
                    .col(ColumnDef::new(EventTypes::Name).string().not_null())
                    .col(ColumnDef::new(EventTypes::Description).text().not_null())
                    .col(ColumnDef::new(EventTypes::Schema).text().null())
                    .col(ColumnDef::new(EventTypes::Example).text().null())
                    .col(ColumnDef::new(EventTypes::Rejected).big_integer().not_null().default(0))
                    .col(
                        ColumnDef::new(EventTypes::CreatedAt).timestamp_with_time_zone().not_null(),
                    )
                    .col(
                        ColumnDef::new(EventTypes::UpdatedAt).timestamp_with_time_zone().not_null(),
                    )
                    .primary_key(Index::create().col(EventTypes::Tenant).col(EventTypes::Name))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(EventTypes::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Credentials::Table).to_owned()).await?;
        manager
            .drop_index(
                Index::drop()
                    .name("webhooks_tenant_credential_idx")
                    .table(Webhooks::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Webhooks::App,
            Webhooks::Options,
            Webhooks::CredentialId,
            Webhooks::LastAttemptAt,
            Webhooks::LastAttemptStatus,
            Webhooks::LastAttemptSuccess,
            Webhooks::Triggered,
            Webhooks::Succeeded,
            Webhooks::Failed,
        ] {
            manager
                .alter_table(Table::alter().table(Webhooks::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
