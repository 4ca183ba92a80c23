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
