//! The token and admin API's settings: API keys (`api_keys.toml` or the
//! environment, stored as SHA-256 hashes), idempotency, Redis, cross-app
//! sessions and the live-update stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ConfigError, Secret, invalid};

/// The API keys' file in the config directory.
pub const API_KEYS_FILE: &str = "api_keys.toml";
/// Environment variable with API keys in clear, `name:scope:key` comma-separated
/// (hashed at load; wins over a key of the same name in the file).
pub const API_KEYS_ENV: &str = "HAVEND_API_KEYS";
/// Environment variable that overrides `redis.url`.
pub const REDIS_URL_ENV: &str = "HAVEND_REDIS_URL";
/// A request holds its Idempotency-Key this long; a crashed holder frees it then.
pub const DEFAULT_IDEMPOTENCY_LEASE_SECS: u64 = 30;
/// A stored response is replayed this long (SPEC section 3: 24 h).
pub const DEFAULT_IDEMPOTENCY_TTL_SECS: u64 = 24 * 60 * 60;
/// A Redis command slower than this counts as a miss (the database answers).
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 100;
/// Prefix of every Redis key havend writes, so daemons of other deployments
/// (and tests) can share a server.
pub const DEFAULT_REDIS_PREFIX: &str = "havend:";

/// Environment variable with the cross-app shared secrets, comma-separated
/// (replaces `cross_app.shared_secrets`).
pub const CROSS_APP_SECRETS_ENV: &str = "HAVEND_CROSS_APP_SECRETS";
/// A cross-app session token is valid this long (SPEC section 3: 15 minutes).
pub const DEFAULT_SESSION_TTL_SECS: u64 = 15 * 60;
/// Longest session lifetime accepted: a session is a hand-off, not a login.
pub const MAX_SESSION_TTL_SECS: u64 = 24 * 60 * 60;
/// Shortest shared secret accepted (guessable secrets defeat the point).
pub const MIN_SHARED_SECRET_LEN: usize = 16;
/// Open SSE streams at most; more → 503 (each costs a task and a poll).
pub const DEFAULT_MAX_STREAMS: usize = 256;
/// How often an open stream polls the journal.
pub const DEFAULT_STREAM_POLL_MS: u64 = 250;
/// How long a gap in journal ids may stay open before it is skipped (a
/// rolled-back transaction leaves a hole forever; a slow one commits within this).
pub const DEFAULT_STREAM_GAP_GRACE_MS: u64 = 5_000;
/// A comment line this often keeps proxies from closing a quiet stream.
pub const DEFAULT_STREAM_KEEPALIVE_SECS: u64 = 15;
/// Journal rows older than this are removed by the clean-up job; a client
/// reconnecting later than this misses what was removed.
pub const DEFAULT_STREAM_RETENTION_HOURS: u32 = 24;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `/api/v1/*` and the cross-app session endpoints.
    Token,
    /// Everything `token` may, and `/api/v1/admin/*`.
    Admin,
}

impl Scope {
    /// Whether a key of this scope may call an endpoint that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || needed == Scope::Token
    }

    /// The scope's name, as in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Token => "token",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "token" => Ok(Scope::Token),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}; expected token or admin")),
        }
    }
}

/// One configured API key: its scope and the SHA-256 of the key (the key
/// itself is never stored; `havend api-key hash` prints the line to add).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// What the key may do.
    pub scope: Scope,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
}

impl ApiKey {
    /// An entry for `raw` (a key in clear) with `scope`.
    pub fn from_raw(raw: &str, scope: Scope) -> Self {
        Self { scope, sha256: hex::encode(hash_key(raw)) }
    }

    /// The decoded hash; `None` when `sha256` is not 64 hex digits (refused at load).
    pub fn digest(&self) -> Option<[u8; 32]> {
        let bytes = hex::decode(&self.sha256).ok()?;
        bytes.try_into().ok()
    }
}

/// SHA-256 of an API key as presented by a client.
pub fn hash_key(raw: &str) -> [u8; 32] {
    Sha256::digest(raw.as_bytes()).into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeysFile {
    #[serde(default)]
    pub(super) keys: BTreeMap<String, ApiKey>,
}

/// Token API behaviour (`[api]` in `havend.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// How long a request holds its Idempotency-Key before another may take it over.
    pub idempotency_lease_secs: u64,
    /// How long a stored response is replayed.
    pub idempotency_ttl_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { idempotency_lease_secs: DEFAULT_IDEMPOTENCY_LEASE_SECS, idempotency_ttl_secs: DEFAULT_IDEMPOTENCY_TTL_SECS }
    }
}

/// Redis, a cache in front of the database's idempotency keys (`[redis]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`; unset → no Redis (the database serves alone).
    pub url: Option<Secret>,
    /// Prefix of every key havend writes.
    pub key_prefix: String,
    /// A command slower than this counts as a miss.
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: None, key_prefix: DEFAULT_REDIS_PREFIX.into(), timeout_ms: DEFAULT_REDIS_TIMEOUT_MS }
    }
}

/// Cross-app sessions for partner apps (`[cross_app]` in `havend.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossAppConfig {
    /// Secrets a partner app sends in `X-Shared-Secret`; several for
    /// rotation; none → the shared-secret endpoints answer 401.
    /// [`CROSS_APP_SECRETS_ENV`] replaces them.
    pub shared_secrets: Vec<Secret>,
    /// How long a generated session token is valid.
    pub session_ttl_secs: u64,
}

impl Default for CrossAppConfig {
    fn default() -> Self {
        Self { shared_secrets: Vec::new(), session_ttl_secs: DEFAULT_SESSION_TTL_SECS }
    }
}

/// The live-update stream `GET /api/v1/stream` (`[stream]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Open streams at most; over it → 503.
    pub max_streams: usize,
    /// How often a stream polls the journal.
    pub poll_interval_ms: u64,
    /// How long a gap in journal ids is waited for before it is skipped.
    pub gap_grace_ms: u64,
    /// Seconds between keep-alive comments.
    pub keepalive_secs: u64,
    /// Hours journal rows are kept (the clean-up job removes older ones).
    pub retention_hours: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            max_streams: DEFAULT_MAX_STREAMS,
            poll_interval_ms: DEFAULT_STREAM_POLL_MS,
            gap_grace_ms: DEFAULT_STREAM_GAP_GRACE_MS,
            keepalive_secs: DEFAULT_STREAM_KEEPALIVE_SECS,
            retention_hours: DEFAULT_STREAM_RETENTION_HOURS,
        }
    }
}

/// Parses the comma-separated secrets of [`CROSS_APP_SECRETS_ENV`].
pub(super) fn secrets_from_env(list: &str) -> Vec<Secret> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::new).collect()
}

/// Checks `[cross_app]` and `[stream]`.
pub(super) fn validate_sessions_and_stream(cross_app: &CrossAppConfig, stream: &StreamConfig, errors: &mut Vec<ConfigError>) {
    for (index, secret) in cross_app.shared_secrets.iter().enumerate() {
        if secret.expose().len() < MIN_SHARED_SECRET_LEN {
            errors.push(invalid(super::DAEMON_FILE, format!("cross_app.shared_secrets[{index}]"), format!("must be at least {MIN_SHARED_SECRET_LEN} characters")));
        }
    }
    if !(1..=MAX_SESSION_TTL_SECS).contains(&cross_app.session_ttl_secs) {
        errors.push(invalid(super::DAEMON_FILE, "cross_app.session_ttl_secs", format!("must be between 1 and {MAX_SESSION_TTL_SECS}")));
    }
    if stream.max_streams == 0 {
        errors.push(invalid(super::DAEMON_FILE, "stream.max_streams", "must be greater than 0"));
    }
    if !(10..=60_000).contains(&stream.poll_interval_ms) {
        errors.push(invalid(super::DAEMON_FILE, "stream.poll_interval_ms", "must be between 10 and 60000"));
    }
    if stream.gap_grace_ms < stream.poll_interval_ms {
        errors.push(invalid(super::DAEMON_FILE, "stream.gap_grace_ms", "must be at least stream.poll_interval_ms"));
    }
    if stream.keepalive_secs == 0 || stream.retention_hours == 0 {
        errors.push(invalid(super::DAEMON_FILE, "stream", "keepalive_secs and retention_hours must be greater than 0"));
    }
}

/// Parses `name:scope:key,…` from [`API_KEYS_ENV`].
pub(super) fn keys_from_env(list: &str, errors: &mut Vec<ConfigError>) -> BTreeMap<String, ApiKey> {
    let mut keys = BTreeMap::new();
    for (index, entry) in list.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
        let mut parts = entry.splitn(3, ':');
        match (parts.next(), parts.next().map(str::parse::<Scope>), parts.next()) {
            (Some(name), Some(Ok(scope)), Some(raw)) if !name.is_empty() && !raw.is_empty() => {
                keys.insert(name.to_owned(), ApiKey::from_raw(raw, scope));
            }
            // Never quote the refused scope: in `name:KEY` (scope forgotten) it is the key.
            (_, Some(Err(_)), _) => errors.push(invalid(API_KEYS_ENV, format!("[{index}]"), "the scope must be token or admin (expected name:scope:key)")),
            _ => errors.push(invalid(API_KEYS_ENV, format!("[{index}]"), "expected name:scope:key")),
        }
    }
    keys
}

/// Checks the keys, `[api]` and `[redis]`.
pub(super) fn validate(keys: &BTreeMap<String, ApiKey>, api: &ApiConfig, redis: &RedisConfig, errors: &mut Vec<ConfigError>) {
    for (name, key) in keys {
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
            errors.push(invalid(API_KEYS_FILE, format!("keys.{name}"), "names are 1-64 of [A-Za-z0-9._-]"));
        }
        if key.digest().is_none() {
            errors.push(invalid(API_KEYS_FILE, format!("keys.{name}.sha256"), "must be 64 hex digits (the key's SHA-256)"));
        }
    }
    if api.idempotency_lease_secs == 0 || api.idempotency_ttl_secs < api.idempotency_lease_secs {
        errors.push(invalid(super::DAEMON_FILE, "api", "idempotency_lease_secs must be > 0 and idempotency_ttl_secs at least as long"));
    }
    if let Some(url) = &redis.url
        && !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://"))
    {
        errors.push(invalid(super::DAEMON_FILE, "redis.url", "must start with redis:// or rediss://"));
    }
    if redis.timeout_ms == 0 {
        errors.push(invalid(super::DAEMON_FILE, "redis.timeout_ms", "must be greater than 0"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_keys_are_hashed_and_bad_entries_named() {
        let mut errors = Vec::new();
        let keys = keys_from_env("backend:token:tok_1, ops:admin:adm_2", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(keys["backend"].scope, Scope::Token);
        assert_eq!(keys["ops"].digest(), Some(hash_key("adm_2")));
        keys_from_env("a:root:x,b:token", &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn cross_app_secrets_from_the_environment_and_their_checks() {
        let secrets = secrets_from_env(" first-secret-0123456 , ,second-secret-0123456");
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[1].expose(), "second-secret-0123456");
        let mut errors = Vec::new();
        validate_sessions_and_stream(&CrossAppConfig { shared_secrets: secrets, ..CrossAppConfig::default() }, &StreamConfig::default(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let short = CrossAppConfig { shared_secrets: vec![Secret::new("short")], session_ttl_secs: 0 };
        let stream = StreamConfig { max_streams: 0, gap_grace_ms: 1, ..StreamConfig::default() };
        validate_sessions_and_stream(&short, &stream, &mut errors);
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn admin_scope_includes_token_but_not_the_reverse() {
        assert!(Scope::Admin.allows(Scope::Token));
        assert!(Scope::Admin.allows(Scope::Admin));
        assert!(Scope::Token.allows(Scope::Token));
        assert!(!Scope::Token.allows(Scope::Admin));
    }
}
