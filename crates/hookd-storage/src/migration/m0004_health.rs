//! Endpoint health: per webhook, the consecutive failed attempts, the last success, the last
//! (re)activation, and who deactivated it, when and why.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    ConsecutiveFailures,
    LastSuccessAt,
    ActivatedAt,
    LastError,
    DeactivatedBy,
    DeactivatedAt,
    DeactivationReason,
}

// See m0001 for why the lifetimes stay elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER TABLE (SQLite); all nullable or defaulted, so existing
        // webhooks read back healthy.
        let columns = [
            ColumnDef::new(Webhooks::ConsecutiveFailures)
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(Webhooks::LastSuccessAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Webhooks::ActivatedAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Webhooks::LastError).text().not_null().default("").to_owned(),
            // `user` or `system`; NULL while active.
            ColumnDef::new(Webhooks::DeactivatedBy).string().null().to_owned(),
            ColumnDef::new(Webhooks::DeactivatedAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Webhooks::DeactivationReason).text().not_null().default("").to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter().table(Webhooks::Table).add_column(&mut column).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Webhooks::DeactivationReason,
            Webhooks::DeactivatedAt,
            Webhooks::DeactivatedBy,
            Webhooks::LastError,
            Webhooks::ActivatedAt,
            Webhooks::LastSuccessAt,
            Webhooks::ConsecutiveFailures,
        ] {
            manager
                .alter_table(Table::alter().table(Webhooks::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
