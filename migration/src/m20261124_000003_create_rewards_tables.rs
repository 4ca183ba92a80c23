//! The rewards engine: the processor's claim on inbox rows, the rules and
//! limit bookkeeping on intents, the partners' domain tables, the mint limit
//! counters and the system switches (pause).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite takes a single change per statement.
        let inbox_columns = [
            ColumnDef::new(WebhookEvents::ClaimToken).uuid().null().to_owned(),
            ColumnDef::new(WebhookEvents::ClaimedUntil).timestamp_with_time_zone().null().to_owned(),
        ];
        for column in inbox_columns {
            manager.alter_table(Table::alter().table(WebhookEvents::Table).add_column(column).to_owned()).await?;
        }
        let intent_columns = [
            ColumnDef::new(Transactions::EventId).uuid().null().to_owned(),
            ColumnDef::new(Transactions::RulesHash).string_len(64).null().to_owned(),
            ColumnDef::new(Transactions::LimitDay).string_len(10).null().to_owned(),
            ColumnDef::new(Transactions::Shortfall).string_len(80).null().to_owned(),
        ];
        for column in intent_columns {
            manager.alter_table(Table::alter().table(Transactions::Table).add_column(column).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("transactions_reverses_idx")
                    .table(Transactions::Table)
                    .col(Transactions::Reverses)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuroraBookings::Table)
                    .col(ColumnDef::new(AuroraBookings::BookingId).string_len(256).not_null().primary_key())
                    .col(ColumnDef::new(AuroraBookings::GuestRef).string_len(300).null())
                    .col(ColumnDef::new(AuroraBookings::TotalPrice).string_len(64).null())
                    .col(ColumnDef::new(AuroraBookings::Nights).big_integer().null())
                    .col(ColumnDef::new(AuroraBookings::Status).string_len(16).not_null())
                    .col(ColumnDef::new(AuroraBookings::MintIntent).uuid().null())
                    .col(ColumnDef::new(AuroraBookings::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AuroraBookings::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TribeEvents::Table)
                    .col(ColumnDef::new(TribeEvents::TribeEventId).string_len(256).not_null())
                    .col(ColumnDef::new(TribeEvents::AttendeeId).string_len(256).not_null())
                    .col(ColumnDef::new(TribeEvents::EventType).string_len(128).not_null())
                    .col(ColumnDef::new(TribeEvents::Attended).boolean().not_null())
                    .col(ColumnDef::new(TribeEvents::Amount).string_len(80).not_null())
                    .col(ColumnDef::new(TribeEvents::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(TribeEvents::TribeEventId).col(TribeEvents::AttendeeId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TribeRewards::Table)
                    .col(ColumnDef::new(TribeRewards::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(TribeRewards::TribeId).string_len(256).not_null())
                    .col(ColumnDef::new(TribeRewards::UserRef).string_len(300).not_null())
                    .col(ColumnDef::new(TribeRewards::Detail).string_len(128).not_null())
                    .col(ColumnDef::new(TribeRewards::Amount).string_len(80).not_null())
                    .col(ColumnDef::new(TribeRewards::CreatedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(TribeRewards::Kind).col(TribeRewards::TribeId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StakingRecords::Table)
                    .col(ColumnDef::new(StakingRecords::StakeId).string_len(256).not_null().primary_key())
                    .col(ColumnDef::new(StakingRecords::UserRef).string_len(300).not_null())
                    .col(ColumnDef::new(StakingRecords::Amount).string_len(80).not_null())
                    .col(ColumnDef::new(StakingRecords::Status).string_len(16).not_null())
                    .col(ColumnDef::new(StakingRecords::StartedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(StakingRecords::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TicketingStatus::Table)
                    .col(ColumnDef::new(TicketingStatus::EventId).string_len(256).not_null().primary_key())
                    .col(ColumnDef::new(TicketingStatus::Status).string_len(16).not_null())
                    .col(ColumnDef::new(TicketingStatus::PartnerStatus).string_len(128).not_null())
                    .col(ColumnDef::new(TicketingStatus::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MintCounters::Table)
                    .col(ColumnDef::new(MintCounters::Scope).string_len(320).not_null())
                    .col(ColumnDef::new(MintCounters::Day).string_len(10).not_null())
                    .col(ColumnDef::new(MintCounters::Used).string_len(80).not_null())
                    .primary_key(Index::create().col(MintCounters::Scope).col(MintCounters::Day))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SystemFlags::Table)
                    .col(ColumnDef::new(SystemFlags::Name).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(SystemFlags::Value).string_len(256).not_null())
                    .col(ColumnDef::new(SystemFlags::UpdatedBy).string_len(128).not_null())
                    .col(ColumnDef::new(SystemFlags::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SystemFlags::Table.into_iden(),
            MintCounters::Table.into_iden(),
            TicketingStatus::Table.into_iden(),
            StakingRecords::Table.into_iden(),
            TribeRewards::Table.into_iden(),
            TribeEvents::Table.into_iden(),
            AuroraBookings::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager.drop_index(Index::drop().name("transactions_reverses_idx").table(Transactions::Table).to_owned()).await?;
        for column in [Transactions::EventId, Transactions::RulesHash, Transactions::LimitDay, Transactions::Shortfall] {
            manager.alter_table(Table::alter().table(Transactions::Table).drop_column(column).to_owned()).await?;
        }
        for column in [WebhookEvents::ClaimToken, WebhookEvents::ClaimedUntil] {
            manager.alter_table(Table::alter().table(WebhookEvents::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    ClaimToken,
    ClaimedUntil,
}

#[derive(DeriveIden)]
enum Transactions {
    Table,
    EventId,
    RulesHash,
    LimitDay,
    Shortfall,
    Reverses,
}

#[derive(DeriveIden)]
enum AuroraBookings {
    Table,
    BookingId,
    GuestRef,
    TotalPrice,
    Nights,
    Status,
    MintIntent,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TribeEvents {
    Table,
    TribeEventId,
    AttendeeId,
    EventType,
    Attended,
    Amount,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TribeRewards {
    Table,
    Kind,
    TribeId,
    UserRef,
    Detail,
    Amount,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StakingRecords {
    Table,
    StakeId,
    UserRef,
    Amount,
    Status,
    StartedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TicketingStatus {
    Table,
    EventId,
    Status,
    PartnerStatus,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MintCounters {
    Table,
    Scope,
    Day,
    Used,
}

#[derive(DeriveIden)]
enum SystemFlags {
    Table,
    Name,
    Value,
    UpdatedBy,
    UpdatedAt,
}
