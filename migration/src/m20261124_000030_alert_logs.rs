//! Alert delivery: each alert's delivery state and claim (the table is the
//! delivery queue, claimed with a lease token), a log of every delivery
//! attempt's result, and the throttle windows of repeated alerts.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite takes a single change per statement.
        let columns = [
            ColumnDef::new(Alerts::DeliveryStatus).string_len(16).not_null().default("pending").to_owned(),
            ColumnDef::new(Alerts::ClaimToken).uuid().null().to_owned(),
            ColumnDef::new(Alerts::ClaimedUntil).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Alerts::DeliveredAt).timestamp_with_time_zone().null().to_owned(),
        ];
        for column in columns {
            manager.alter_table(Table::alter().table(Alerts::Table).add_column(column).to_owned()).await?;
        }
        // Alerts raised before delivery existed were logged when raised;
        // sending days-old alerts to a pager on upgrade would mislead.
        manager
            .exec_stmt(Query::update().table(Alerts::Table).value(Alerts::DeliveryStatus, "skipped").to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("alerts_delivery_idx")
                    .table(Alerts::Table)
                    .col(Alerts::DeliveryStatus)
                    .col(Alerts::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertLogs::Table)
                    .col(ColumnDef::new(AlertLogs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AlertLogs::AlertId).uuid().not_null())
                    .col(ColumnDef::new(AlertLogs::Channel).string_len(64).null())
                    .col(ColumnDef::new(AlertLogs::Attempt).integer().not_null())
                    .col(ColumnDef::new(AlertLogs::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(AlertLogs::Detail).text().null())
                    .col(ColumnDef::new(AlertLogs::DaemonName).string_len(128).not_null())
                    .col(ColumnDef::new(AlertLogs::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(ForeignKey::create().from(AlertLogs::Table, AlertLogs::AlertId).to(Alerts::Table, Alerts::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("alert_logs_alert_idx").table(AlertLogs::Table).col(AlertLogs::AlertId).to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertThrottles::Table)
                    .col(ColumnDef::new(AlertThrottles::Key).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(AlertThrottles::LeaderAlertId).uuid().not_null())
                    .col(ColumnDef::new(AlertThrottles::WindowUntil).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AlertThrottles::Suppressed).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AlertThrottles::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AlertLogs::Table).to_owned()).await?;
        manager.drop_index(Index::drop().name("alerts_delivery_idx").table(Alerts::Table).to_owned()).await?;
        for column in [Alerts::DeliveredAt, Alerts::ClaimedUntil, Alerts::ClaimToken, Alerts::DeliveryStatus] {
            manager.alter_table(Table::alter().table(Alerts::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    CreatedAt,
    DeliveryStatus,
    ClaimToken,
    ClaimedUntil,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum AlertLogs {
    Table,
    Id,
    AlertId,
    Channel,
    Attempt,
    Outcome,
    Detail,
    DaemonName,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AlertThrottles {
    Table,
    Key,
    LeaderAlertId,
    WindowUntil,
    Suppressed,
}
