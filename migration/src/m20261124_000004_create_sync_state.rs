//! Scheduled jobs: each partner sync's UTC high-water mark, and when an
//! event's raw body (personal data) was purged after the retention period.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SyncState::Table)
                    .col(ColumnDef::new(SyncState::Partner).string_len(32).not_null().primary_key())
                    .col(ColumnDef::new(SyncState::Since).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(SyncState::LastRunAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(SyncState::LastStored).integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookEvents::Table)
                    .add_column(ColumnDef::new(WebhookEvents::BodyPurgedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(WebhookEvents::Table).drop_column(WebhookEvents::BodyPurgedAt).to_owned()).await?;
        manager.drop_table(Table::drop().table(SyncState::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum SyncState {
    Table,
    Partner,
    Since,
    LastRunAt,
    LastStored,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    BodyPurgedAt,
}
