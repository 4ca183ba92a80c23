//! `[database]` and `[intake]`: the database connection, and the intake
//! actor's group commit into it (the database bounds how large a batch is).

use serde::{Deserialize, Serialize};

use super::{ConfigError, DAEMON_FILE, Secret, invalid};

/// Database connections in the pool.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// How long a query waits for a pooled connection before it fails.
pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 3_000;
/// Group commit: extra time the first event of a batch waits for companions.
/// 0 (the default) adds no wait: events that arrive while a commit is in
/// flight queue up in the mailbox and share the next one anyway.
pub const DEFAULT_FLUSH_DELAY_US: u64 = 0;
/// Group commit: a batch this large is flushed at once.
pub const DEFAULT_MAX_BATCH: usize = 512;
/// Largest `intake.max_batch`: a bound on the memory and latency of one batch.
pub const MAX_BATCH_LIMIT: usize = 10_000;
/// Bind parameters SQLite allows in one statement (`SQLITE_MAX_VARIABLE_NUMBER`
/// since 3.32). PostgreSQL allows 65,535, but its inbox insert binds one array
/// per column whatever the batch size, so only SQLite bounds the batch.
pub const SQLITE_MAX_BIND_PARAMETERS: usize = 32_766;
/// Bind parameters one inbox row takes in a multi-row `VALUES` insert (one per
/// column; `intake::store` checks its column list against it at compile time).
pub const INBOX_ROW_PARAMETERS: usize = 13;
/// How long an HTTP handler waits for the intake actor's answer.
pub const DEFAULT_STORE_TIMEOUT_MS: u64 = 5_000;

/// The database connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`; unset → a SQLite file in the data directory.
    /// Overridden by the `HAVEND_DATABASE_URL` environment variable.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub url: Option<Secret>,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a query waits for a pooled connection.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout_ms: DEFAULT_ACQUIRE_TIMEOUT_MS,
        }
    }
}

/// The intake actor's group commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Share one transaction among concurrent requests; off → one transaction
    /// per request (kept for measuring what group commit gains).
    pub group_commit: bool,
    /// Extra time the first event of a batch waits for companions (0: none).
    pub flush_delay_us: u64,
    /// A batch this large is written at once.
    pub max_batch: usize,
    /// How long a request waits for its event to be stored before 503.
    pub store_timeout_ms: u64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            group_commit: true,
            flush_delay_us: DEFAULT_FLUSH_DELAY_US,
            max_batch: DEFAULT_MAX_BATCH,
            store_timeout_ms: DEFAULT_STORE_TIMEOUT_MS,
        }
    }
}

// `Config::validate` calls these apart, between the server's checks, to keep
// the order errors have always been reported in.
impl DatabaseConfig {
    /// The pool's acquire timeout must not be 0.
    pub(super) fn validate_acquire_timeout(&self, errors: &mut Vec<ConfigError>) {
        if self.acquire_timeout_ms == 0 {
            errors.push(invalid(DAEMON_FILE, "database.acquire_timeout_ms", "must be greater than 0"));
        }
    }

    /// The pool size, and `url`, the URL in force (the configured one or the
    /// embedded SQLite file), which must name a supported database.
    pub(super) fn validate_pool_and_url(&self, url: &Secret, errors: &mut Vec<ConfigError>) {
        if self.max_connections == 0 {
            errors.push(invalid(DAEMON_FILE, "database.max_connections", "must be greater than 0"));
        }
        if !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://") || url.expose().starts_with("sqlite:")) {
            errors.push(invalid(DAEMON_FILE, "database.url", "must start with postgres:// or sqlite:"));
        }
    }
}

impl IntakeConfig {
    /// The store timeout must not be 0.
    pub(super) fn validate_store_timeout(&self, errors: &mut Vec<ConfigError>) {
        if self.store_timeout_ms == 0 {
            errors.push(invalid(DAEMON_FILE, "intake.store_timeout_ms", "must be greater than 0"));
        }
    }

    /// The batch size, bounded by the database at `database_url` (the URL in
    /// force), and the flush delay.
    pub(super) fn validate_batching(&self, database_url: &Secret, errors: &mut Vec<ConfigError>) {
        // A full batch is one insert statement: on SQLite its bind parameters
        // (one per column and row) must stay within SQLite's limit.
        let max_batch = if database_url.expose().starts_with("sqlite:") {
            SQLITE_MAX_BIND_PARAMETERS / INBOX_ROW_PARAMETERS
        } else {
            MAX_BATCH_LIMIT
        };
        if !(1..=max_batch).contains(&self.max_batch) {
            errors.push(invalid(
                DAEMON_FILE,
                "intake.max_batch",
                format!(
                    "must be between 1 and {max_batch} on this database \
                     (SQLite: {SQLITE_MAX_BIND_PARAMETERS} bind parameters / {INBOX_ROW_PARAMETERS} per row; PostgreSQL: {MAX_BATCH_LIMIT})"
                ),
            ));
        }
        if self.flush_delay_us > 100_000 {
            errors.push(invalid(DAEMON_FILE, "intake.flush_delay_us", "must be at most 100000 (100 ms)"));
        }
    }
}

/// Prints a database URL with its password replaced by [`super::REDACTED`].
fn serialize_redacted_url<S: serde::Serializer>(url: &Option<Secret>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        None => serializer.serialize_none(),
        Some(url) => serializer.serialize_str(&crate::redact::password_in(url.expose())),
    }
}
