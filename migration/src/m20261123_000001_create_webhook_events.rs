//! The webhook inbox: one row per (partner, partner event id), which is also
//! the queue the rewards processor claims from.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .col(ColumnDef::new(WebhookEvents::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(WebhookEvents::Partner).string_len(32).not_null())
                    .col(ColumnDef::new(WebhookEvents::PartnerEventId).string_len(512).not_null())
                    .col(ColumnDef::new(WebhookEvents::EventType).string_len(128).not_null())
                    .col(ColumnDef::new(WebhookEvents::Status).string_len(16).not_null())
                    .col(ColumnDef::new(WebhookEvents::Attempts).integer().not_null().default(0))
                    .col(ColumnDef::new(WebhookEvents::NextAttemptAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(WebhookEvents::LastError).text().null())
                    // Bytes, not jsonb: PostgreSQL's jsonb rejects some valid JSON
                    // (`\u0000`), and the signed bytes are the evidence.
                    .col(ColumnDef::new(WebhookEvents::Body).blob().not_null())
                    .col(ColumnDef::new(WebhookEvents::Headers).text().not_null())
                    .col(ColumnDef::new(WebhookEvents::SourceIp).string_len(64).null())
                    .col(ColumnDef::new(WebhookEvents::RequestId).string_len(128).not_null())
                    .col(ColumnDef::new(WebhookEvents::ReceivedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(WebhookEvents::ProcessedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_events_partner_event_uq")
                    .table(WebhookEvents::Table)
                    .col(WebhookEvents::Partner)
                    .col(WebhookEvents::PartnerEventId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The processor claims `pending` rows whose next attempt is due.
        manager
            .create_index(
                Index::create()
                    .name("webhook_events_due_idx")
                    .table(WebhookEvents::Table)
                    .col(WebhookEvents::Status)
                    .col(WebhookEvents::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WebhookEvents::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    Partner,
    PartnerEventId,
    EventType,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    Body,
    Headers,
    SourceIp,
    RequestId,
    ReceivedAt,
    ProcessedAt,
}
