//! The initial schema: webhooks, deliveries and attempts.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    Tenant,
    Name,
    Url,
    EventTypes,
    Active,
    Description,
    AttemptTimeoutMs,
    RetrySchedule,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    Tenant,
    WebhookId,
    EventId,
    EventType,
    Status,
    AttemptCount,
    Payload,
    Event,
    CreatedAt,
    UpdatedAt,
    LastAttemptAt,
    NextAttemptAt,
}

#[derive(DeriveIden)]
enum Attempts {
    Table,
    DeliveryId,
    Number,
    StartedAt,
    HttpStatus,
    LatencyMs,
    Error,
    ResponseBody,
    Success,
    RequestHeaders,
}

// `async_trait` needs the trait's elided `SchemaManager` lifetime repeated exactly;
// naming it `'_` makes the signatures differ.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .col(ColumnDef::new(Webhooks::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Webhooks::Tenant).string().not_null())
                    .col(ColumnDef::new(Webhooks::Name).string().not_null())
                    .col(ColumnDef::new(Webhooks::Url).text().not_null())
                    .col(ColumnDef::new(Webhooks::EventTypes).text().not_null())
                    .col(ColumnDef::new(Webhooks::Active).boolean().not_null())
                    .col(ColumnDef::new(Webhooks::Description).text().not_null())
                    .col(ColumnDef::new(Webhooks::AttemptTimeoutMs).integer().null())
                    .col(ColumnDef::new(Webhooks::RetrySchedule).text().null())
                    .col(ColumnDef::new(Webhooks::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Webhooks::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhooks_tenant_name_key")
                    .table(Webhooks::Table)
                    .col(Webhooks::Tenant)
                    .col(Webhooks::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhooks_tenant_idx")
                    .table(Webhooks::Table)
                    .col(Webhooks::Tenant)
                    .to_owned(),
            )
            .await?;

        // No foreign key to webhooks: reports for a deleted webhook must not fail a batch.
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(ColumnDef::new(Deliveries::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Deliveries::Tenant).string().not_null())
                    .col(ColumnDef::new(Deliveries::WebhookId).string().not_null())
                    .col(ColumnDef::new(Deliveries::EventId).string().not_null())
                    .col(ColumnDef::new(Deliveries::EventType).string().not_null())
                    .col(ColumnDef::new(Deliveries::Status).string().not_null())
                    .col(ColumnDef::new(Deliveries::AttemptCount).integer().not_null())
                    .col(ColumnDef::new(Deliveries::Payload).text().not_null())
                    .col(ColumnDef::new(Deliveries::Event).text().not_null())
                    .col(
                        ColumnDef::new(Deliveries::CreatedAt).timestamp_with_time_zone().not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::UpdatedAt).timestamp_with_time_zone().not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::LastAttemptAt).timestamp_with_time_zone().null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::NextAttemptAt).timestamp_with_time_zone().null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deliveries_webhook_created_idx")
                    .table(Deliveries::Table)
                    .col(Deliveries::WebhookId)
                    .col(Deliveries::CreatedAt)
                    .col(Deliveries::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Attempts::Table)
                    .col(ColumnDef::new(Attempts::DeliveryId).string().not_null())
                    .col(ColumnDef::new(Attempts::Number).integer().not_null())
                    .col(ColumnDef::new(Attempts::StartedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Attempts::HttpStatus).integer().null())
                    .col(ColumnDef::new(Attempts::LatencyMs).big_integer().not_null())
                    .col(ColumnDef::new(Attempts::Error).text().not_null())
                    .col(ColumnDef::new(Attempts::ResponseBody).text().not_null())
                    .col(ColumnDef::new(Attempts::Success).boolean().not_null())
                    .col(ColumnDef::new(Attempts::RequestHeaders).text().not_null())
                    .primary_key(Index::create().col(Attempts::DeliveryId).col(Attempts::Number))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Attempts::Table.into_iden(),
            Deliveries::Table.into_iden(),
            Webhooks::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
