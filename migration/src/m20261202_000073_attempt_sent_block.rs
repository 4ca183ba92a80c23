//! Each signed attempt records the head block when it was signed, so the
//! search for an intent's `IntentExecuted` log starts there instead of at
//! block 0 (public RPC providers refuse `eth_getLogs` over wide ranges).
//! Rows signed before this migration keep NULL and are searched from
//! `chain.deploy_block`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(TxAttempts::Table).add_column(ColumnDef::new(TxAttempts::SentBlock).big_integer().null()).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(TxAttempts::Table).drop_column(TxAttempts::SentBlock).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum TxAttempts {
    Table,
    SentBlock,
}
