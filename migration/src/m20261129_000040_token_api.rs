//! The token API: idempotency keys (the claim on a key is a row with a lease
//! token; the stored response replays for a day) and redemption requests
//! (a burn plus a fiat payout that Stripe settles or fails).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(ColumnDef::new(IdempotencyKeys::ApiKey).string_len(64).not_null())
                    .col(ColumnDef::new(IdempotencyKeys::Key).string_len(64).not_null())
                    .col(ColumnDef::new(IdempotencyKeys::Fingerprint).string_len(64).not_null())
                    .col(ColumnDef::new(IdempotencyKeys::LeaseToken).uuid().null())
                    .col(ColumnDef::new(IdempotencyKeys::LeaseUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(IdempotencyKeys::ResponseStatus).integer().null())
                    .col(ColumnDef::new(IdempotencyKeys::ResponseHeaders).text().null())
                    .col(ColumnDef::new(IdempotencyKeys::ResponseBody).text().null())
                    .col(ColumnDef::new(IdempotencyKeys::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(IdempotencyKeys::ExpiresAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(IdempotencyKeys::ApiKey).col(IdempotencyKeys::Key))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idempotency_keys_expires_idx").table(IdempotencyKeys::Table).col(IdempotencyKeys::ExpiresAt).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RedemptionRequests::Table)
                    .col(ColumnDef::new(RedemptionRequests::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(RedemptionRequests::UserId).uuid().not_null())
                    .col(ColumnDef::new(RedemptionRequests::BurnId).uuid().not_null().unique_key())
                    .col(ColumnDef::new(RedemptionRequests::Amount).string_len(80).not_null())
                    .col(ColumnDef::new(RedemptionRequests::Payout).text().not_null())
                    .col(ColumnDef::new(RedemptionRequests::Status).string_len(16).not_null())
                    .col(ColumnDef::new(RedemptionRequests::RecreditId).uuid().null())
                    .col(ColumnDef::new(RedemptionRequests::PayoutEvent).string_len(255).null())
                    .col(ColumnDef::new(RedemptionRequests::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(RedemptionRequests::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("redemption_requests_user_idx").table(RedemptionRequests::Table).col(RedemptionRequests::UserId).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RedemptionRequests::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    ApiKey,
    Key,
    Fingerprint,
    LeaseToken,
    LeaseUntil,
    ResponseStatus,
    ResponseHeaders,
    ResponseBody,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum RedemptionRequests {
    Table,
    Id,
    UserId,
    BurnId,
    Amount,
    Payout,
    Status,
    RecreditId,
    PayoutEvent,
    CreatedAt,
    UpdatedAt,
}
