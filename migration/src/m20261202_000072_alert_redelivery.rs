//! Failed alert deliveries are retried in rounds until the delivery horizon:
//! `alerts.next_attempt_at` is when a `failed` alert's next round may start
//! (none: it is failed for good, as every alert failed before this version is).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Alerts::Table).add_column(ColumnDef::new(Alerts::NextAttemptAt).timestamp_with_time_zone().null()).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Alerts::Table).drop_column(Alerts::NextAttemptAt).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    NextAttemptAt,
}
