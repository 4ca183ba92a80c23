//! The inbox records which daemon processed each event, so an operator of
//! several daemons sharing one database can tell who handled it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Text, not a bounded string: `daemon_name` has no length limit, and a
        // name longer than a column would fail every event's final write.
        manager
            .alter_table(Table::alter().table(WebhookEvents::Table).add_column(ColumnDef::new(WebhookEvents::ProcessedBy).text().null()).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(WebhookEvents::Table).drop_column(WebhookEvents::ProcessedBy).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    ProcessedBy,
}
