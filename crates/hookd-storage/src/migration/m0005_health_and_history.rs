//! Per-webhook health thresholds; the buffer accounting that tells how many kept events
//! expired (jobs kept, reported by dispatchers, and jobs released, replayed or discarded);
//! and the delivery indexes the metrics (by status) and the retention purge (by age) read.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Status,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    HealthMaxFailures,
    HealthNoSuccessSecs,
    BufferKept,
    BufferReleased,
}

// See m0001 for why the lifetimes stay elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Columns rather than the sealed `options`: the health rule reads them inside the
        // transaction that records attempts, which does not open sealed values.
        let columns = [
            ColumnDef::new(Webhooks::HealthMaxFailures).big_integer().null().to_owned(),
            ColumnDef::new(Webhooks::HealthNoSuccessSecs).big_integer().null().to_owned(),
            ColumnDef::new(Webhooks::BufferKept).big_integer().not_null().default(0).to_owned(),
            ColumnDef::new(Webhooks::BufferReleased).big_integer().not_null().default(0).to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter().table(Webhooks::Table).add_column(&mut column).to_owned(),
                )
                .await?;
        }
        for (name, column) in [
            ("deliveries_status_idx", Deliveries::Status),
            ("deliveries_updated_idx", Deliveries::UpdatedAt),
        ] {
            manager
                .create_index(
                    Index::create().name(name).table(Deliveries::Table).col(column).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["deliveries_updated_idx", "deliveries_status_idx"] {
            manager
                .drop_index(Index::drop().name(name).table(Deliveries::Table).to_owned())
                .await?;
        }
        for column in [
            Webhooks::BufferReleased,
            Webhooks::BufferKept,
            Webhooks::HealthNoSuccessSecs,
            Webhooks::HealthMaxFailures,
        ] {
            manager
                .alter_table(Table::alter().table(Webhooks::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
