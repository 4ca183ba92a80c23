//! Batch minting: every intent gets its number on chain (`transactions.seq`,
//! the bit the token marks used), and one signed attempt carries 1..B intents
//! (`tx_attempt_intents`, the join of attempts to the intents they execute).
//!
//! `seq` is set by the database when the intent is inserted, never by a
//! counter row every processor would lock: a sequence default on PostgreSQL,
//! max + 1 in an insert trigger on SQLite (which runs under its one write
//! lock). Gaps are allowed; a number never changes across attempts,
//! generations or rotations. Existing intents are numbered too, and their
//! attempts each get the one join row they imply.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TxAttemptIntents {
    Table,
    AttemptId,
    TransactionId,
    Position,
}

const POSTGRES_UP: &str = r#"
CREATE SEQUENCE transactions_seq AS BIGINT;
ALTER TABLE transactions ADD COLUMN seq BIGINT DEFAULT nextval('transactions_seq');
ALTER TABLE transactions ALTER COLUMN seq SET NOT NULL;
ALTER SEQUENCE transactions_seq OWNED BY transactions.seq;
CREATE UNIQUE INDEX transactions_seq_key ON transactions (seq);
"#;

const POSTGRES_DOWN: &str = r#"
ALTER TABLE transactions DROP COLUMN seq;
"#;

const SQLITE_UP: [&str; 4] = [
    "ALTER TABLE transactions ADD COLUMN seq BIGINT",
    "UPDATE transactions SET seq = rowid",
    "CREATE UNIQUE INDEX transactions_seq_key ON transactions (seq)",
    // The unique index answers MAX(seq) from its last entry.
    "CREATE TRIGGER transactions_seq AFTER INSERT ON transactions WHEN NEW.seq IS NULL BEGIN \
     UPDATE transactions SET seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM transactions) WHERE rowid = NEW.rowid; END",
];

const SQLITE_DOWN: [&str; 3] =
    ["DROP TRIGGER IF EXISTS transactions_seq", "DROP INDEX IF EXISTS transactions_seq_key", "ALTER TABLE transactions DROP COLUMN seq"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(POSTGRES_UP).await?;
            }
            _ => {
                for statement in SQLITE_UP {
                    db.execute_unprepared(statement).await?;
                }
            }
        }
        manager
            .create_table(
                Table::create()
                    .table(TxAttemptIntents::Table)
                    .col(ColumnDef::new(TxAttemptIntents::AttemptId).uuid().not_null())
                    .col(ColumnDef::new(TxAttemptIntents::TransactionId).uuid().not_null())
                    .col(ColumnDef::new(TxAttemptIntents::Position).integer().not_null())
                    .primary_key(Index::create().col(TxAttemptIntents::AttemptId).col(TxAttemptIntents::TransactionId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tx_attempt_intents_transaction")
                    .table(TxAttemptIntents::Table)
                    .col(TxAttemptIntents::TransactionId)
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared("INSERT INTO tx_attempt_intents (attempt_id, transaction_id, position) SELECT id, transaction_id, 0 FROM tx_attempts")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(TxAttemptIntents::Table).to_owned()).await?;
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(POSTGRES_DOWN).await?;
            }
            _ => {
                for statement in SQLITE_DOWN {
                    db.execute_unprepared(statement).await?;
                }
            }
        }
        Ok(())
    }
}
