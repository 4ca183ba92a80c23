//! Hot wallet lifecycle state: a heartbeat of the daemon signing for each
//! wallet (queued work on a wallet nobody signs for raises an alert), and a
//! persisted halt (a foreign nonce stops signing until `wallet resume`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(Table::alter().table(Wallets::Table).add_column(ColumnDef::new(Wallets::HeartbeatAt).timestamp_with_time_zone().null()).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Wallets::Table).add_column(ColumnDef::new(Wallets::Halted).text().null()).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Wallets::Table).drop_column(Wallets::Halted).to_owned()).await?;
        manager.alter_table(Table::alter().table(Wallets::Table).drop_column(Wallets::HeartbeatAt).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Wallets {
    Table,
    HeartbeatAt,
    Halted,
}
