//! Delivery controls per webhook: the ordering key (B6), the payload filter (B7) and the
//! rate limit (B8), and the count of events the filter rejected.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    OrderingKey,
    Filter,
    RateLimitPerSecond,
    RateLimitBurst,
    Filtered,
}

// See m0001 for why the lifetimes stay elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER TABLE (SQLite); NULL means the control is off, so existing
        // webhooks keep delivering as before.
        let columns = [
            ColumnDef::new(Webhooks::OrderingKey).text().null().to_owned(),
            // The filter's JSON, as the user gave it.
            ColumnDef::new(Webhooks::Filter).text().null().to_owned(),
            ColumnDef::new(Webhooks::RateLimitPerSecond).big_integer().null().to_owned(),
            ColumnDef::new(Webhooks::RateLimitBurst).big_integer().null().to_owned(),
            ColumnDef::new(Webhooks::Filtered).big_integer().not_null().default(0).to_owned(),
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
            Webhooks::Filtered,
            Webhooks::RateLimitBurst,
            Webhooks::RateLimitPerSecond,
            Webhooks::Filter,
            Webhooks::OrderingKey,
        ] {
            manager
                .alter_table(Table::alter().table(Webhooks::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
