//! The inbox counts the claims on an event that lapsed without an outcome
//! (a processor that crashed or hung on it), so a poison event is
//! dead-lettered after `processor.max_attempts` of them instead of being
//! claimed again at every lease forever.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(WebhookEvents::Table).add_column(ColumnDef::new(WebhookEvents::Lapses).integer().not_null().default(0)).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(WebhookEvents::Table).drop_column(WebhookEvents::Lapses).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Lapses,
}
