//! Custody, ledger and the wallet actors' write-ahead log: wallets and their
//! audit log, users, transactions (one per reward intent), every signed
//! attempt, foreign nonces, and raised alerts.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Wallets::Table)
                    .col(ColumnDef::new(Wallets::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Wallets::Address).string_len(42).not_null().unique_key())
                    .col(ColumnDef::new(Wallets::Kind).string_len(8).not_null())
                    .col(ColumnDef::new(Wallets::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Wallets::EncryptedKey).blob().not_null())
                    .col(ColumnDef::new(Wallets::KeyVersion).integer().not_null())
                    .col(ColumnDef::new(Wallets::FirstNonce).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Wallets::NextNonce).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Wallets::Owner).string_len(128).null())
                    .col(ColumnDef::new(Wallets::Epoch).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Wallets::RotatedTo).uuid().null())
                    .col(ColumnDef::new(Wallets::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Wallets::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WalletAuditLogs::Table)
                    .col(ColumnDef::new(WalletAuditLogs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(WalletAuditLogs::WalletId).uuid().null())
                    .col(ColumnDef::new(WalletAuditLogs::Action).string_len(32).not_null())
                    .col(ColumnDef::new(WalletAuditLogs::Severity).string_len(8).not_null())
                    .col(ColumnDef::new(WalletAuditLogs::Actor).string_len(128).not_null())
                    .col(ColumnDef::new(WalletAuditLogs::Details).text().not_null())
                    .col(ColumnDef::new(WalletAuditLogs::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Users::ExternalRef).string_len(256).not_null().unique_key())
                    .col(ColumnDef::new(Users::WalletId).uuid().not_null())
                    .col(ColumnDef::new(Users::Address).string_len(42).not_null())
                    .col(ColumnDef::new(Users::HotWalletId).uuid().not_null())
                    .col(ColumnDef::new(Users::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Transactions::Table)
                    .col(ColumnDef::new(Transactions::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Transactions::IntentId).string_len(66).not_null().unique_key())
                    .col(ColumnDef::new(Transactions::Source).string_len(256).not_null().unique_key())
                    .col(ColumnDef::new(Transactions::UserId).uuid().not_null())
                    .col(ColumnDef::new(Transactions::HotWalletId).uuid().not_null())
                    .col(ColumnDef::new(Transactions::Kind).string_len(8).not_null())
                    // Base units as a decimal string: exact up to 2^256.
                    .col(ColumnDef::new(Transactions::Amount).string_len(80).not_null())
                    .col(ColumnDef::new(Transactions::Reason).text().not_null())
                    .col(ColumnDef::new(Transactions::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Transactions::Generation).integer().not_null().default(0))
                    .col(ColumnDef::new(Transactions::Nonce).big_integer().null())
                    .col(ColumnDef::new(Transactions::Reverses).uuid().null())
                    .col(ColumnDef::new(Transactions::TxHash).string_len(66).null())
                    .col(ColumnDef::new(Transactions::BlockNumber).big_integer().null())
                    .col(ColumnDef::new(Transactions::LastError).text().null())
                    .col(ColumnDef::new(Transactions::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Transactions::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("transactions_wallet_status_idx")
                    .table(Transactions::Table)
                    .col(Transactions::HotWalletId)
                    .col(Transactions::Status)
                    .col(Transactions::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TxAttempts::Table)
                    .col(ColumnDef::new(TxAttempts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(TxAttempts::TransactionId).uuid().not_null())
                    .col(ColumnDef::new(TxAttempts::WalletId).uuid().not_null())
                    .col(ColumnDef::new(TxAttempts::Nonce).big_integer().not_null())
                    .col(ColumnDef::new(TxAttempts::Attempt).integer().not_null())
                    .col(ColumnDef::new(TxAttempts::TxHash).string_len(66).not_null().unique_key())
                    .col(ColumnDef::new(TxAttempts::Raw).blob().not_null())
                    .col(ColumnDef::new(TxAttempts::MaxFeePerGas).string_len(80).not_null())
                    .col(ColumnDef::new(TxAttempts::MaxPriorityFeePerGas).string_len(80).not_null())
                    .col(ColumnDef::new(TxAttempts::GasLimit).big_integer().not_null())
                    .col(ColumnDef::new(TxAttempts::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tx_attempts_transaction_idx")
                    .table(TxAttempts::Table)
                    .col(TxAttempts::TransactionId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ForeignNonces::Table)
                    .col(ColumnDef::new(ForeignNonces::WalletId).uuid().not_null())
                    .col(ColumnDef::new(ForeignNonces::Nonce).big_integer().not_null())
                    .col(ColumnDef::new(ForeignNonces::DetectedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(ForeignNonces::WalletId).col(ForeignNonces::Nonce))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alerts::Table)
                    .col(ColumnDef::new(Alerts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Alerts::Severity).string_len(16).not_null())
                    .col(ColumnDef::new(Alerts::Category).string_len(64).not_null())
                    .col(ColumnDef::new(Alerts::Message).text().not_null())
                    .col(ColumnDef::new(Alerts::Details).text().not_null())
                    .col(ColumnDef::new(Alerts::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Alerts::Table.into_iden(),
            ForeignNonces::Table.into_iden(),
            TxAttempts::Table.into_iden(),
            Transactions::Table.into_iden(),
            Users::Table.into_iden(),
            WalletAuditLogs::Table.into_iden(),
            Wallets::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Wallets {
    Table,
    Id,
    Address,
    Kind,
    Status,
    EncryptedKey,
    KeyVersion,
    FirstNonce,
    NextNonce,
    Owner,
    Epoch,
    RotatedTo,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WalletAuditLogs {
    Table,
    Id,
    WalletId,
    Action,
    Severity,
    Actor,
    Details,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    ExternalRef,
    WalletId,
    Address,
    HotWalletId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Transactions {
    Table,
    Id,
    IntentId,
    Source,
    UserId,
    HotWalletId,
    Kind,
    Amount,
    Reason,
    Status,
    Generation,
    Nonce,
    Reverses,
    TxHash,
    BlockNumber,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TxAttempts {
    Table,
    Id,
    TransactionId,
    WalletId,
    Nonce,
    Attempt,
    TxHash,
    Raw,
    MaxFeePerGas,
    MaxPriorityFeePerGas,
    GasLimit,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ForeignNonces {
    Table,
    WalletId,
    Nonce,
    DetectedAt,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    Severity,
    Category,
    Message,
    Details,
    CreatedAt,
}
