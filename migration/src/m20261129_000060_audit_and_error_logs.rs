//! The admin API's trail: `audit_log` (every admin action, who, from where,
//! and how it ended) and `error_logs` (every 5xx the listener answered, under
//! the `error_id` the client was shown, so a support request can be traced).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(ColumnDef::new(AuditLog::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AuditLog::KeyName).string_len(128).not_null())
                    .col(ColumnDef::new(AuditLog::ClientIp).string_len(64).not_null())
                    .col(ColumnDef::new(AuditLog::RequestId).string_len(128).not_null())
                    .col(ColumnDef::new(AuditLog::Method).string_len(16).not_null())
                    .col(ColumnDef::new(AuditLog::Path).string_len(1024).not_null())
                    .col(ColumnDef::new(AuditLog::Action).string_len(64).not_null())
                    .col(ColumnDef::new(AuditLog::Status).integer().not_null())
                    .col(ColumnDef::new(AuditLog::Details).text().not_null())
                    .col(ColumnDef::new(AuditLog::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("audit_log_created_idx").table(AuditLog::Table).col(AuditLog::CreatedAt).to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ErrorLogs::Table)
                    .col(ColumnDef::new(ErrorLogs::ErrorId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ErrorLogs::RequestId).string_len(128).not_null())
                    .col(ColumnDef::new(ErrorLogs::Status).integer().not_null())
                    .col(ColumnDef::new(ErrorLogs::Code).string_len(64).not_null())
                    .col(ColumnDef::new(ErrorLogs::Message).text().not_null())
                    .col(ColumnDef::new(ErrorLogs::Method).string_len(16).not_null())
                    .col(ColumnDef::new(ErrorLogs::Path).string_len(1024).not_null())
                    .col(ColumnDef::new(ErrorLogs::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("error_logs_created_idx").table(ErrorLogs::Table).col(ErrorLogs::CreatedAt).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ErrorLogs::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AuditLog::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    KeyName,
    ClientIp,
    RequestId,
    Method,
    Path,
    Action,
    Status,
    Details,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ErrorLogs {
    Table,
    ErrorId,
    RequestId,
    Status,
    Code,
    Message,
    Method,
    Path,
    CreatedAt,
}
