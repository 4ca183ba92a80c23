//! Cross-app sessions (stored by the SHA-256 of their token, never the token)
//! and the live-update journal `stream_events`, which database triggers fill
//! on every status change of `transactions` and `ticketing_status`: whatever
//! code path changes a status, its event commits (or rolls back) with it, so
//! the SSE stream can be replayed from the database after a reconnect.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// PostgreSQL: one plpgsql function per source table, fired after an insert
/// or a status update. An update that leaves the status as it was journals
/// nothing (upserts rewrite unchanged rows).
const POSTGRES_UP: &str = r#"
CREATE FUNCTION havend_stream_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    INSERT INTO stream_events (topic, subject, status, kind, amount, tx_hash, user_ref, occurred_at, created_at)
    VALUES ('transaction', NEW.id::text, NEW.status, NEW.kind, NEW.amount, NEW.tx_hash,
            (SELECT external_ref FROM users WHERE users.id = NEW.user_id), NEW.updated_at, now());
    RETURN NULL;
END;
$$;
CREATE TRIGGER stream_transactions AFTER INSERT OR UPDATE OF status ON transactions
    FOR EACH ROW EXECUTE FUNCTION havend_stream_transaction();
CREATE FUNCTION havend_stream_ticketing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    INSERT INTO stream_events (topic, subject, status, occurred_at, created_at)
    VALUES ('ticketing', NEW.event_id, NEW.status, NEW.updated_at, now());
    RETURN NULL;
END;
$$;
CREATE TRIGGER stream_ticketing AFTER INSERT OR UPDATE ON ticketing_status
    FOR EACH ROW EXECUTE FUNCTION havend_stream_ticketing();
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER IF EXISTS stream_ticketing ON ticketing_status;
DROP FUNCTION IF EXISTS havend_stream_ticketing();
DROP TRIGGER IF EXISTS stream_transactions ON transactions;
DROP FUNCTION IF EXISTS havend_stream_transaction();
"#;

/// The same journal on SQLite. UUIDs are stored as 16-byte blobs there, so
/// the subject is their hex (which `Uuid::parse_str` reads); timestamps are
/// RFC 3339 text, like the ones sea-orm writes.
const SQLITE_TRANSACTION_INSERT: &str = "INSERT INTO stream_events (topic, subject, status, kind, amount, tx_hash, user_ref, occurred_at, created_at) \
     VALUES ('transaction', CASE typeof(NEW.id) WHEN 'blob' THEN lower(hex(NEW.id)) ELSE NEW.id END, NEW.status, NEW.kind, NEW.amount, NEW.tx_hash, \
     (SELECT external_ref FROM users WHERE users.id = NEW.user_id), NEW.updated_at, strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'));";
const SQLITE_TICKETING_INSERT: &str = "INSERT INTO stream_events (topic, subject, status, occurred_at, created_at) \
     VALUES ('ticketing', NEW.event_id, NEW.status, NEW.updated_at, strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'));";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CrossAppSessions::Table)
                    .col(ColumnDef::new(CrossAppSessions::TokenHash).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(CrossAppSessions::UserRef).string_len(256).not_null())
                    .col(ColumnDef::new(CrossAppSessions::ApiKey).string_len(64).not_null())
                    .col(ColumnDef::new(CrossAppSessions::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(CrossAppSessions::ExpiresAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("cross_app_sessions_expires_idx").table(CrossAppSessions::Table).col(CrossAppSessions::ExpiresAt).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StreamEvents::Table)
                    .col(ColumnDef::new(StreamEvents::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(StreamEvents::Topic).string_len(16).not_null())
                    .col(ColumnDef::new(StreamEvents::Subject).string_len(256).not_null())
                    .col(ColumnDef::new(StreamEvents::Status).string_len(16).not_null())
                    .col(ColumnDef::new(StreamEvents::Kind).string_len(8).null())
                    .col(ColumnDef::new(StreamEvents::Amount).string_len(80).null())
                    .col(ColumnDef::new(StreamEvents::TxHash).string_len(66).null())
                    .col(ColumnDef::new(StreamEvents::UserRef).string_len(256).null())
                    .col(ColumnDef::new(StreamEvents::OccurredAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(StreamEvents::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("stream_events_created_idx").table(StreamEvents::Table).col(StreamEvents::CreatedAt).to_owned())
            .await?;
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                db.execute_unprepared(POSTGRES_UP).await?;
            }
            DatabaseBackend::Sqlite => {
                for statement in [
                    format!("CREATE TRIGGER stream_transactions_insert AFTER INSERT ON transactions BEGIN {SQLITE_TRANSACTION_INSERT} END;"),
                    format!(
                        "CREATE TRIGGER stream_transactions_status AFTER UPDATE OF status ON transactions \
                         WHEN OLD.status IS NOT NEW.status BEGIN {SQLITE_TRANSACTION_INSERT} END;"
                    ),
                    format!("CREATE TRIGGER stream_ticketing_insert AFTER INSERT ON ticketing_status BEGIN {SQLITE_TICKETING_INSERT} END;"),
                    format!(
                        "CREATE TRIGGER stream_ticketing_status AFTER UPDATE ON ticketing_status \
                         WHEN OLD.status IS NOT NEW.status BEGIN {SQLITE_TICKETING_INSERT} END;"
                    ),
                ] {
                    db.execute_unprepared(&statement).await?;
                }
            }
            other => return Err(DbErr::Migration(format!("havend does not support {other:?}"))),
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                db.execute_unprepared(POSTGRES_DOWN).await?;
            }
            _ => {
                for trigger in ["stream_transactions_insert", "stream_transactions_status", "stream_ticketing_insert", "stream_ticketing_status"] {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {trigger};")).await?;
                }
            }
        }
        manager.drop_table(Table::drop().table(StreamEvents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(CrossAppSessions::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum CrossAppSessions {
    Table,
    TokenHash,
    UserRef,
    ApiKey,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum StreamEvents {
    Table,
    Id,
    Topic,
    Subject,
    Status,
    Kind,
    Amount,
    TxHash,
    UserRef,
    OccurredAt,
    CreatedAt,
}
