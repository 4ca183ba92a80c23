//! The database connection (PostgreSQL or the embedded SQLite) and its migrations.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

use crate::config::Config;

/// SQLite waits this long for the write lock before it reports "busy".
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The data directory for the embedded database could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Connecting or migrating failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Opens a connection pool to the configured database.
///
/// SQLite runs in WAL mode with `synchronous=FULL` (a commit survives a power
/// cut, which an acknowledged webhook needs) and a busy timeout.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbError> {
    let url = config.database_url();
    if url.expose().starts_with("sqlite:") && config.database.url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| DbError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
    }
    let mut options = ConnectOptions::new(url.expose().to_owned());
    options
        .max_connections(config.database.max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_millis(config.database.acquire_timeout_ms))
        .connect_timeout(Duration::from_millis(config.database.acquire_timeout_ms))
        .sqlx_logging(false)
        .map_sqlx_postgres_pool_opts(|opts| {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    let port: Option<i32> =
                        sea_orm::sqlx::query_scalar("SELECT inet_client_port()").fetch_one(&mut *conn).await?;
                    if let Some(port) = port.and_then(|p| u16::try_from(p).ok()) {
                        disable_nagle_on_local_port(port);
                    }
                    Ok(())
                })
            })
        })
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .create_if_missing(true)
        });
    Ok(Database::connect(options).await?)
}

/// Begins a transaction that will write. On SQLite it takes the write lock
/// at once (`BEGIN IMMEDIATE`): a deferred transaction that reads first and
/// then writes fails with "database is locked" when another writer got in
/// between, whatever the busy timeout. PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let options = TransactionOptions { sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate), ..Default::default() };
    db.begin_with_options(options).await
}

/// The queue in front of SQLite's one write lock for the writers that run
/// back to back: the intake's group commits and the processors' claims and
/// batches.
///
/// SQLite gives its lock to whoever asks at the right moment: a writer that
/// finds it taken sleeps in the busy handler (1, 2, 5, 10, … 100 ms) and
/// asks again, so a processor committing batch after batch keeps the lock
/// while intake sleeps (measured: intake fell to 111 webhooks/s, p99 2.8 s,
/// while one processor drained a backlog). Through the gate they take turns
/// in arrival order (tokio's mutex is fair), so a webhook waits for at most
/// the one batch ahead of it. PostgreSQL locks rows, not the database: there
/// the gate is open.
#[derive(Clone, Default)]
pub struct WriteGate(Option<std::sync::Arc<tokio::sync::Mutex<()>>>);

impl WriteGate {
    /// The gate for `db`'s writers: a queue on SQLite, open on PostgreSQL.
    /// Every writer that should take turns must share one gate.
    pub fn for_connection(db: &DatabaseConnection) -> WriteGate {
        let sqlite = db.get_database_backend() == sea_orm::DbBackend::Sqlite;
        WriteGate(sqlite.then(Default::default))
    }

    /// Waits for this writer's turn; the turn lasts as long as the guard.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(queue) => Some(queue.clone().lock_owned().await),
            None => None,
        }
    }
}

/// How a failed database call should be treated by whoever retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Passes on its own (connection, pool, timeout, lock contention,
    /// serialization): retried without counting.
    Transient,
    /// The same statement fails the same way again (a value the column or a
    /// constraint refuses, an encoding error, anything unrecognised): counts
    /// toward the dead letter.
    Deterministic,
}

/// Classifies a database error (see [`Failure`]).
///
/// Transient: connection and pool errors, timeouts, PostgreSQL SQLSTATE
/// classes 08 (connection) and 53 (insufficient resources), 40001
/// (serialization), 40P01 (deadlock), 55P03 (lock not available), 57014
/// (statement timeout) and 57P01-57P03 (the server shutting down or
/// starting), SQLite BUSY and LOCKED. Everything else is deterministic:
/// retrying an unknown error forever without counting hides it, while the
/// dead letter alerts and can be replayed.
pub fn classify(error: &DbErr) -> Failure {
    use sea_orm::RuntimeErr;
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Failure::Transient,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => classify_sqlx(error),
        _ => Failure::Deterministic,
    }
}

fn classify_sqlx(error: &sea_orm::sqlx::Error) -> Failure {
    use sea_orm::sqlx::Error;
    match error {
        Error::Io(_) | Error::Tls(_) | Error::Protocol(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed | Error::BeginFailed => {
            Failure::Transient
        }
        Error::Database(database) => {
            if let Some(postgres) = database.try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>() {
                classify_sqlstate(postgres.code())
            } else if let Some(sqlite) = database.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>() {
                sea_orm::sqlx::error::DatabaseError::code(sqlite).and_then(|code| code.parse().ok()).map_or(Failure::Deterministic, classify_sqlite_code)
            } else {
                Failure::Deterministic
            }
        }
        _ => Failure::Deterministic,
    }
}

/// Classifies a PostgreSQL SQLSTATE (five characters).
pub fn classify_sqlstate(code: &str) -> Failure {
    // 58: system errors (I/O) are the server's trouble, not the row's.
    let transient = matches!(code.get(..2), Some("08" | "53" | "58")) || matches!(code, "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03");
    if transient { Failure::Transient } else { Failure::Deterministic }
}

/// Classifies an SQLite (extended) result code by its low byte, the
/// primary code: BUSY (5) and LOCKED (6) pass, and so do the machine's own
/// troubles, NOMEM (7), IOERR (10), FULL (13), CANTOPEN (14) and PROTOCOL
/// (15): a full disk must not dead-letter the whole inbox.
pub fn classify_sqlite_code(code: i32) -> Failure {
    match code & 0xff {
        5 | 6 | 7 | 10 | 13 | 14 | 15 => Failure::Transient,
        _ => Failure::Deterministic,
    }
}

/// Applies every pending migration.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Reverts the last `steps` migrations.
pub async fn migrate_down(db: &DatabaseConnection, steps: u32) -> Result<(), DbErr> {
    Migrator::down(db, Some(steps)).await
}

/// Each migration's name and whether it is applied.
pub async fn migration_status(db: &DatabaseConnection) -> Result<Vec<(String, bool)>, DbErr> {
    Migrator::install(db).await?;
    Ok(Migrator::get_migration_with_status(db)
        .await?
        .into_iter()
        .map(|m| (m.name().to_owned(), m.status() == migration::MigrationStatus::Applied))
        .collect())
}

/// Turns Nagle's algorithm off for this process's TCP socket bound to local
/// `port` (a fresh PostgreSQL connection).
///
/// Why: sqlx 0.9.0 stopped setting `TCP_NODELAY` (sqlx issue #4335; the fix,
/// sqlx PR #4336, is merged but unreleased as of 2026-11-23), and without it
/// every multi-row inbox insert waits ~40 ms for PostgreSQL's delayed ACK
/// (measured here: 45 ms per 64-row batch, against 1.7 ms with it off).
/// Remove this once havend depends on a sqlx release with that fix.
#[cfg(target_os = "linux")]
fn disable_nagle_on_local_port(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};

    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in entries.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else { continue };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|link| link.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only borrowed for the two calls below; if
        // another thread closed it meanwhile they fail with EBADF/ENOTSOCK,
        // and a socket bound to this exact local port is this connection.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let bound_here = socket.local_addr().ok().and_then(|a| a.as_socket()).is_some_and(|a| a.port() == port);
        if bound_here {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_nagle_on_local_port(_port: u16) {}

#[cfg(test)]
mod classify_tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use sea_orm::{ConnAcquireErr, RuntimeErr};

    use super::*;

    fn sqlx(error: sea_orm::sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error)))
    }

    #[test]
    fn sqlstates_named_by_the_retry_policy_are_classified() {
        let table = [
            ("08006", Failure::Transient),
            ("08000", Failure::Transient),
            ("53300", Failure::Transient),
            ("53100", Failure::Transient),
            ("40001", Failure::Transient),
            ("40P01", Failure::Transient),
            ("55P03", Failure::Transient),
            ("57014", Failure::Transient),
            ("57P01", Failure::Transient),
            ("58030", Failure::Transient),
            ("22001", Failure::Deterministic),
            ("22021", Failure::Deterministic),
            ("22003", Failure::Deterministic),
            ("23505", Failure::Deterministic),
            ("23514", Failure::Deterministic),
            ("40002", Failure::Deterministic),
            ("42P01", Failure::Deterministic),
            ("", Failure::Deterministic),
        ];
        for (code, expected) in table {
            assert_eq!(classify_sqlstate(code), expected, "{code}");
        }
    }

    #[test]
    fn sqlite_busy_locked_and_the_machines_troubles_are_transient_whatever_their_extended_code() {
        // BUSY, LOCKED and variants; NOMEM, IOERR (and IOERR_WRITE), FULL, CANTOPEN, PROTOCOL.
        for code in [5, 6, 261, 517, 773, 262, 7, 10, 778, 13, 14, 15] {
            assert_eq!(classify_sqlite_code(code), Failure::Transient, "{code}");
        }
        // CONSTRAINT (and its CHECK, UNIQUE, TRIGGER variants), TOOBIG, MISMATCH.
        for code in [19, 275, 2067, 1811, 18, 20] {
            assert_eq!(classify_sqlite_code(code), Failure::Deterministic, "{code}");
        }
    }

    #[test]
    fn connection_pool_and_timeout_errors_are_transient_and_encoding_errors_deterministic() {
        assert_eq!(classify(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)), Failure::Transient);
        assert_eq!(classify(&DbErr::Conn(RuntimeErr::Internal("refused".into()))), Failure::Transient);
        assert_eq!(classify(&sqlx(sea_orm::sqlx::Error::PoolTimedOut)), Failure::Transient);
        assert_eq!(classify(&sqlx(sea_orm::sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()))), Failure::Transient);
        assert_eq!(classify(&sqlx(sea_orm::sqlx::Error::Encode("bad".into()))), Failure::Deterministic);
        assert_eq!(classify(&sqlx(sea_orm::sqlx::Error::Decode("bad".into()))), Failure::Deterministic);
        assert_eq!(classify(&DbErr::Type("not a number".into())), Failure::Deterministic);
        assert_eq!(classify(&DbErr::RecordNotFound("booking".into())), Failure::Deterministic);
    }

    proptest! {
        /// Every data exception (22) and integrity violation (23) counts;
        /// every connection (08) and resource (53) error does not.
        #[test]
        fn sqlstate_classes_decide(class in prop_oneof![Just("22"), Just("23"), Just("08"), Just("53")], rest in "[0-9A-Z]{3}") {
            let expected = if matches!(class, "08" | "53") { Failure::Transient } else { Failure::Deterministic };
            prop_assert_eq!(classify_sqlstate(&format!("{class}{rest}")), expected);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn nagle_is_turned_off_on_the_socket_bound_to_the_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!stream.nodelay().unwrap());
        disable_nagle_on_local_port(stream.local_addr().unwrap().port());
        assert!(stream.nodelay().unwrap());
    }
}
