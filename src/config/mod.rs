//! Configuration: TOML files in one directory, secrets from the environment,
//! validated into an immutable snapshot that readers share through [`ConfigHandle`].
//!
//! Layering: defaults compiled in → `havend.toml` and `partners.toml` in the
//! config directory → environment overrides for secrets. Every error names the
//! file, the key and the problem.
//!
//! This module is a leaf of the layering: it reads files and decides
//! ([`reload::plan_reload`]), and the reload actor in [`crate::reload`] carries
//! the decision out.

pub mod api;
pub mod reload;
pub mod alerts;
pub mod cidr;
pub mod rewards;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

pub use api::{ApiConfig, ApiKey, CrossAppConfig, RedisConfig, Scope, StreamConfig};
pub use alerts::{AlertsConfig, ChannelConfig, ChannelKind, SmtpTls};
pub use cidr::Cidr;
pub use rewards::RewardRules;
pub use crate::signing::{REDACTED, Secret};
use crate::signing::Scheme;
use crate::webhooks::Partner;

/// The daemon's own settings file in the config directory.
pub const DAEMON_FILE: &str = "havend.toml";
/// The partners' file (schemes and webhook secrets) in the config directory.
pub const PARTNERS_FILE: &str = "partners.toml";
/// The reward rules file in the config directory.
pub const REWARDS_FILE: &str = "rewards.toml";

/// Default listen address: loopback, so a fresh install is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory (the embedded SQLite database lives here).
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default largest accepted request body (SPEC section 2).
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 256 * 1024;
/// A client must send its request headers within this time.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 5_000;
/// A client must send its whole body within this time (slow-loris bodies).
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// A connection with no traffic and no request in flight is closed after this.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// On SIGTERM, in-flight requests get this long to finish.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// Webhook requests admitted at once (from before their body is read until
/// their event is stored); over it → 503.
pub const DEFAULT_MAX_IN_FLIGHT_STORES: usize = 4_096;
/// Open client connections at most; more wait in the listen backlog. Generous:
/// the systemd unit allows 65,536 descriptors, and the database pool, logs and
/// the RPC client need some too.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 10_000;
/// Concurrent HTTP/2 streams per connection (the RFC 9113 recommended minimum),
/// so one connection cannot open an unbounded number of requests.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
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
/// Signatures older than this are rejected (SPEC section 2).
pub const DEFAULT_TOLERANCE_PAST_SECS: i64 = 300;
/// Signatures dated further in the future than this are rejected.
pub const DEFAULT_TOLERANCE_FUTURE_SECS: i64 = 60;
/// The header a trusted proxy puts the client's address in.
pub const DEFAULT_CLIENT_IP_HEADER: &str = "x-forwarded-for";
/// Highest configurable rate (per second) of a rate limit: governor's
/// replenish interval is whole nanoseconds, and anything faster is no limit
/// in practice (leave the key out for that).
pub const MAX_RATE_LIMIT_PER_SEC: u32 = 1_000_000;

/// The loaded configuration, shared read-only; swapped whole on reload.
pub type ConfigHandle = Arc<ArcSwap<Config>>;

/// A change applied to every load (see [`ConfigSource::with_overlay`]).
pub type Overlay = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// Where a running daemon's configuration comes from, so a reload reads it
/// the same way start-up did.
#[derive(Clone)]
pub struct ConfigSource {
    /// The config directory (watched for edits).
    dir: PathBuf,
    /// Applied after every load: `havend dev` puts back the `[chain]` and the
    /// key file it made in memory, which the files do not hold.
    overlay: Option<Overlay>,
}

impl ConfigSource {
    /// The files in `dir`, as they are.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), overlay: None }
    }

    /// The files in `dir`, then `overlay` on every load.
    pub fn with_overlay(dir: impl Into<PathBuf>, overlay: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        Self { dir: dir.into(), overlay: Some(Arc::new(overlay)) }
    }

    /// The config directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Loads and validates the files, then applies the overlay.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        let mut config = Config::load(&self.dir)?;
        if let Some(overlay) = &self.overlay {
            overlay(&mut config);
        }
        Ok(config)
    }
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource").field("dir", &self.dir).field("overlay", &self.overlay.is_some()).finish()
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded database and other local state live.
    pub data_dir: PathBuf,
    /// The HTTP listener.
    pub server: ServerConfig,
    /// The database (PostgreSQL or SQLite).
    pub database: DatabaseConfig,
    /// The intake actor's group commit.
    pub intake: IntakeConfig,
    /// Rules shared by all partners' webhooks.
    pub webhooks: WebhooksConfig,
    /// Log output.
    pub log: LogConfig,
    /// This daemon's name: the owner recorded on the hot wallets it signs for.
    pub daemon_name: String,
    /// The chain and the hot wallets this daemon signs for; unset → no signing.
    pub chain: Option<ChainConfig>,
    /// Circuit breaker thresholds.
    pub breaker: BreakerSettings,
    /// Where the master key comes from.
    pub custody: CustodyConfig,
    /// The rewards processor.
    pub processor: ProcessorConfig,
    /// Scheduled jobs (cron expressions with seconds, in `schedule.timezone`).
    pub schedule: ScheduleConfig,
    /// The transaction monitor's thresholds.
    pub monitor: MonitorConfig,
    /// Alert delivery and its channels.
    pub alerts: AlertsConfig,
    /// Token API behaviour (idempotency).
    pub api: ApiConfig,
    /// Redis, the idempotency cache; unset → none.
    pub redis: RedisConfig,
    /// Cross-app sessions (the partner apps' shared secrets, the session lifetime).
    pub cross_app: CrossAppConfig,
    /// The live-update stream (`GET /api/v1/stream`).
    pub stream: StreamConfig,
    /// API keys by name, from `api_keys.toml` and `HAVEND_API_KEYS`.
    #[serde(skip_deserializing)]
    pub api_keys: BTreeMap<String, ApiKey>,
    /// Partners that may send webhooks, from `partners.toml`.
    #[serde(skip_deserializing)]
    pub partners: BTreeMap<Partner, PartnerConfig>,
    /// Reward rules, from `rewards.toml`.
    #[serde(skip_deserializing)]
    pub rewards: RewardRules,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            intake: IntakeConfig::default(),
            webhooks: WebhooksConfig::default(),
            log: LogConfig::default(),
            daemon_name: DEFAULT_DAEMON_NAME.into(),
            chain: None,
            breaker: BreakerSettings::default(),
            custody: CustodyConfig::default(),
            processor: ProcessorConfig::default(),
            schedule: ScheduleConfig::default(),
            monitor: MonitorConfig::default(),
            alerts: AlertsConfig::default(),
            api: ApiConfig::default(),
            redis: RedisConfig::default(),
            cross_app: CrossAppConfig::default(),
            stream: StreamConfig::default(),
            api_keys: BTreeMap::new(),
            partners: BTreeMap::new(),
            rewards: RewardRules::default(),
        }
    }
}

/// The HTTP listener's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body; larger → 413.
    pub body_limit_bytes: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send its request body.
    pub body_read_timeout_ms: u64,
    /// Time an idle keep-alive connection is kept open.
    pub idle_timeout_ms: u64,
    /// Time in-flight requests get to finish on shutdown; connections still
    /// open after it are closed.
    pub shutdown_grace_ms: u64,
    /// Admission limit: webhook requests between reading their body and being
    /// stored; over it → 503.
    pub max_in_flight_stores: usize,
    /// Open client connections at most; further ones wait to be accepted.
    /// Read at start-up.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (requests) per connection.
    pub http2_max_concurrent_streams: u32,
    /// Proxies (CIDR ranges or addresses) whose `client_ip_header` is
    /// believed; from any other peer the header is ignored and the client is
    /// the TCP peer. Empty (the default): the client is always the peer.
    pub trusted_proxies: Vec<Cidr>,
    /// The header a trusted proxy names the client in: a comma-separated
    /// list of addresses, the nearest hop last (`X-Forwarded-For` style).
    pub client_ip_header: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default listen address is valid"),
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            max_in_flight_stores: DEFAULT_MAX_IN_FLIGHT_STORES,
            max_connections: DEFAULT_MAX_CLIENT_CONNECTIONS,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            trusted_proxies: Vec::new(),
            client_ip_header: DEFAULT_CLIENT_IP_HEADER.into(),
        }
    }
}

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

/// The rewards processor: how it claims inbox events and retries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Processor actors in this daemon (PostgreSQL: they share the inbox
    /// with `SKIP LOCKED`; SQLite serializes writers, so more rarely help).
    pub workers: usize,
    /// Inbox events one claim takes.
    pub batch: u64,
    /// How often the inbox is polled for events written by other daemons
    /// or due for a retry (the intake actor nudges on its own commits).
    pub poll_interval_ms: u64,
    /// A claim lapses after this; a crashed processor's events are then
    /// claimed again.
    pub lease_secs: u64,
    /// Deterministic failures before an event is dead-lettered.
    pub max_attempts: i32,
    /// First retry delay after a deterministic failure (doubles, with jitter).
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_secs: u64,
    /// Delay after a transient failure (database, no active wallet).
    pub transient_retry_ms: u64,
    /// A transient condition lasting this long raises an alert.
    pub transient_alert_secs: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            batch: 64,
            poll_interval_ms: 1_000,
            lease_secs: 60,
            max_attempts: 5,
            retry_base_ms: 1_000,
            retry_max_secs: 3_600,
            transient_retry_ms: 2_000,
            transient_alert_secs: 300,
        }
    }
}

/// Scheduled jobs: cron expressions with seconds (`sec min hour day month
/// weekday`, as tokio-cron-scheduler reads them); an empty expression turns
/// a job off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// IANA timezone the expressions are read in.
    pub timezone: String,
    /// Pull missed Aurora events (needs `partners.aurora.sync_url`).
    pub aurora_sync: String,
    /// Pull missed Tribe events (needs `partners.tribe.sync_url`).
    pub tribe_sync: String,
    /// Pay completed staking weeks (also runs at start-up).
    pub staking_rewards: String,
    /// Purge raw bodies of final events older than `body_retention_days`.
    pub purge_bodies: String,
    /// Remove expired cross-app sessions, expired idempotency keys and
    /// live-update journal rows past `stream.retention_hours`.
    pub cleanup: String,
    /// Days a final event's raw body (personal data) is kept.
    pub body_retention_days: u32,
    /// A sync asks from its stored high-water mark minus this many seconds.
    pub sync_overlap_secs: u64,
    /// The first sync of a partner looks this far back.
    pub sync_first_lookback_secs: u64,
    /// Timeout of one partner API request.
    pub sync_timeout_ms: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            aurora_sync: "0 0 2 * * *".into(),
            tribe_sync: "0 0 4 * * *".into(),
            staking_rewards: "0 0 3 * * Mon".into(),
            purge_bodies: "0 30 3 * * *".into(),
            cleanup: "0 0 * * * *".into(),
            body_retention_days: 30,
            sync_overlap_secs: 3_600,
            sync_first_lookback_secs: 86_400,
            sync_timeout_ms: 10_000,
        }
    }
}

/// The transaction monitor: when in-flight work and gas prices raise alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Seconds between looks.
    pub interval_secs: u64,
    /// An intent signed this long ago and not final raises `transaction_pending`.
    pub pending_after_secs: u64,
    /// Looks in a row a wallet's chain nonce may stay put with work in flight.
    pub stalled_looks: u32,
    /// A base fee over this many times its moving baseline raises `gas_price_spike`.
    pub gas_spike_factor: u32,
    /// Whether new mints wait while the base fee spikes (burns and
    /// replacements never wait); see [`crate::ledger::gas_hold`].
    pub gas_hold: bool,
    /// The longest a spike holds mints: after it they go anyway, so nothing
    /// waits forever on a fee that has found a new level.
    pub gas_hold_max_secs: u64,
}

/// Default of [`MonitorConfig::gas_hold_max_secs`]: an hour outlasts the
/// usual burst (a popular mint, an NFT drop) without leaving rewards
/// unpaid for a whole day of higher fees.
pub const DEFAULT_GAS_HOLD_MAX_SECS: u64 = 3_600;

impl Default for MonitorConfig {
    fn default() -> Self {
        Self { interval_secs: 60, pending_after_secs: 300, stalled_looks: 5, gas_spike_factor: 2, gas_hold: true, gas_hold_max_secs: DEFAULT_GAS_HOLD_MAX_SECS }
    }
}

/// Whether `expression` is a cron expression with seconds the scheduler
/// takes (tokio-cron-scheduler's own parser decides); empty turns a job off.
pub fn check_cron(expression: &str) -> Result<(), String> {
    if expression.trim().is_empty() {
        return Ok(());
    }
    tokio_cron_scheduler::Job::new_async_tz(expression, chrono::Utc, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|_| "not a cron expression with seconds (sec min hour day month weekday)".to_owned())
}

/// Rules shared by every partner's webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Oldest accepted signature timestamp, in seconds before now.
    pub tolerance_past_secs: i64,
    /// Furthest accepted signature timestamp, in seconds after now.
    pub tolerance_future_secs: i64,
    /// Webhook requests per second one client IP may send, all partners
    /// together, counted before the signature is checked; unset → no limit.
    pub per_ip_rate_limit_per_sec: Option<u32>,
    /// Requests one client IP may send at once above the rate; unset → the rate.
    pub per_ip_rate_limit_burst: Option<u32>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            tolerance_past_secs: DEFAULT_TOLERANCE_PAST_SECS,
            tolerance_future_secs: DEFAULT_TOLERANCE_FUTURE_SECS,
            per_ip_rate_limit_per_sec: None,
            per_ip_rate_limit_burst: None,
        }
    }
}

impl WebhooksConfig {
    /// The per-client-IP limit in force, if any.
    pub fn per_ip_rate_limit(&self) -> Option<RateLimit> {
        RateLimit::from_config(self.per_ip_rate_limit_per_sec, self.per_ip_rate_limit_burst)
    }
}

/// A rate limit as configured: a sustained rate and a burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_sec: NonZeroU32,
    /// Requests accepted at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `per_sec` unset (or 0, which validation refuses) → no limit; `burst`
    /// unset → the rate.
    fn from_config(per_sec: Option<u32>, burst: Option<u32>) -> Option<RateLimit> {
        let per_sec = NonZeroU32::new(per_sec?)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(per_sec);
        Some(RateLimit { per_sec, burst })
    }
}

/// Problems with a `{prefix}rate_limit_per_sec` / `{prefix}rate_limit_burst` pair.
fn check_rate_limit(file: &str, prefix: &str, per_sec: Option<u32>, burst: Option<u32>, errors: &mut Vec<ConfigError>) {
    match per_sec {
        Some(rate) if !(1..=MAX_RATE_LIMIT_PER_SEC).contains(&rate) => errors.push(invalid(
            file,
            format!("{prefix}rate_limit_per_sec"),
            format!("must be between 1 and {MAX_RATE_LIMIT_PER_SEC} (leave it out for no limit)"),
        )),
        None if burst.is_some() => errors.push(invalid(
            file,
            format!("{prefix}rate_limit_burst"),
            format!("is set without {prefix}rate_limit_per_sec; set the rate too, or leave both out for no limit"),
        )),
        _ => {}
    }
    if burst == Some(0) {
        errors.push(invalid(file, format!("{prefix}rate_limit_burst"), "must be at least 1 (leave it out for a burst of the rate)"));
    }
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `havend=debug,sqlx=warn`); `RUST_LOG` wins.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, filter: "info".into() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The chain, the token and how this daemon's wallet actors behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC endpoint. Providers put API keys in its path or query, so
    /// only [`crate::redact::rpc_url`] of it is ever printed or logged.
    #[serde(serialize_with = "serialize_redacted_rpc_url")]
    pub rpc_url: String,
    /// The HAVEN token contract.
    pub token: alloy::primitives::Address,
    /// Expected chain id; checked against the node at start-up.
    pub chain_id: u64,
    /// Hot wallets (addresses) this daemon signs for. Each hot wallet must be
    /// named by exactly one daemon; a second one fences the first out.
    #[serde(default)]
    pub wallets: Vec<alloy::primitives::Address>,
    /// Blocks on top of a receipt before an intent is `confirmed` (1: the block itself).
    #[serde(default = "default_finality_depth")]
    pub finality_depth: u64,
    /// Each RPC call gives up after this.
    #[serde(default = "default_rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// How often a wallet actor looks at the chain and its queue.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Transactions per wallet signed and not yet final, at most.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Gas limit of a `mint` call (pipelined calls cannot be estimated).
    #[serde(default = "default_gas_limit")]
    pub gas_limit_mint: u64,
    /// Gas limit of a `burn` call.
    #[serde(default = "default_gas_limit")]
    pub gas_limit_burn: u64,
    /// Tip offered, wei.
    #[serde(default = "default_priority_fee")]
    pub priority_fee_wei: u64,
    /// Fee cap = base fee × this + tip.
    #[serde(default = "default_base_fee_multiplier")]
    pub base_fee_multiplier: u64,
    /// A replacement raises fees by at least this many percent.
    #[serde(default = "default_fee_bump_percent")]
    pub fee_bump_percent: u64,
    /// A broadcast transaction not mined after this is checked: rebroadcast
    /// when the node forgot it, re-signed with bumped fees when underpriced.
    #[serde(default = "default_resend_after_ms")]
    pub resend_after_ms: u64,
    /// A hot wallet below this native balance (wei, decimal string) holds new work and alerts.
    #[serde(default = "default_min_balance_wei")]
    pub min_balance_wei: String,
    /// Blocks one `eth_getLogs` request covers at most: the search for an
    /// intent's `IntentExecuted` log walks forward from the block its first
    /// attempt was signed at in windows of this size (public providers refuse
    /// wide ranges).
    #[serde(default = "default_log_range_blocks")]
    pub log_range_blocks: u64,
    /// The block the token was deployed at: where that search starts for
    /// attempts signed before havend recorded the block at signing.
    #[serde(default)]
    pub deploy_block: u64,
}

/// Default confirmation depth (dev chains do not reorg).
pub const DEFAULT_FINALITY_DEPTH: u64 = 1;
fn default_finality_depth() -> u64 {
    DEFAULT_FINALITY_DEPTH
}
fn default_rpc_timeout_ms() -> u64 {
    5_000
}
fn default_poll_interval_ms() -> u64 {
    250
}
/// Default in-flight window per wallet: geth guarantees an account 16
/// executable slots and more while the pool has room.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
fn default_max_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}
fn default_gas_limit() -> u64 {
    150_000
}
fn default_priority_fee() -> u64 {
    1_000_000_000
}
fn default_base_fee_multiplier() -> u64 {
    2
}
fn default_fee_bump_percent() -> u64 {
    13
}
fn default_resend_after_ms() -> u64 {
    6_000
}
fn default_min_balance_wei() -> String {
    "10000000000000000".into()
}
/// Default `eth_getLogs` window: public providers commonly allow 2,000 to 10,000 blocks.
pub const DEFAULT_LOG_RANGE_BLOCKS: u64 = 2_000;
fn default_log_range_blocks() -> u64 {
    DEFAULT_LOG_RANGE_BLOCKS
}

/// Circuit breaker thresholds (SPEC section 4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Consecutive transport failures that open it.
    pub failure_threshold: u32,
    /// Seconds it stays open before a probe.
    pub open_secs: u64,
    /// Successful probes that close it.
    pub close_after: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failure_threshold: 5, open_secs: 30, close_after: 2 }
    }
}

/// Where the master key that encrypts private keys comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustodyConfig {
    /// A file holding `version:hex` keys; `HAVEND_MASTER_KEY` wins over it.
    pub master_key_file: Option<PathBuf>,
}

/// Default daemon name.
pub const DEFAULT_DAEMON_NAME: &str = "havend";

/// One partner's webhook settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// Signature scheme; unset → the partner's usual one (Stripe: `stripe`,
    /// the others: `haven-hmac`).
    #[serde(default)]
    pub scheme: Option<Scheme>,
    /// Active secrets; a signature made with any of them is accepted, so a
    /// secret can be rotated without downtime. Overridden by the
    /// `HAVEND_{PARTNER}_SECRETS` environment variable (comma-separated).
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// haven-hmac only: the partner signs `"{timestamp}.{event}.{body}"` (the
    /// event as in the URL) instead of `"{timestamp}.{body}"`, so a body
    /// captured for one event cannot be replayed to another.
    #[serde(default)]
    pub sign_event: bool,
    /// The partner's API for the scheduled sync (`GET {sync_url}?since=…`,
    /// SPEC section 5); unset → this partner is not synced.
    #[serde(default)]
    pub sync_url: Option<String>,
    /// Bearer key for the partner's API (or `HAVEND_{PARTNER}_API_KEY`).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Correctly signed webhooks per second accepted from this partner;
    /// more → 429. Unset → no limit.
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    /// Webhooks accepted at once above the rate; unset → the rate.
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    /// Client addresses (CIDR ranges or single addresses) this partner's
    /// webhooks may come from; others → 403 before the signature is checked.
    /// Unset → any address.
    #[serde(default)]
    pub allow_ips: Option<Vec<Cidr>>,
}

impl PartnerConfig {
    /// The scheme in force for `partner`.
    pub fn scheme_for(&self, partner: Partner) -> Scheme {
        self.scheme.unwrap_or_else(|| partner.default_scheme())
    }

    /// This partner's rate limit, if any.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        RateLimit::from_config(self.rate_limit_per_sec, self.rate_limit_burst)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnersFile {
    #[serde(default)]
    partners: BTreeMap<String, PartnerConfig>,
}

/// A problem found while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The directory or a file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file or directory.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid TOML or does not fit the schema.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message, which names the key and the line.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{file}: {key}: {problem}")]
    Invalid {
        /// The file (or environment variable) the value came from.
        file: String,
        /// The key, dotted.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Every problem found in one load, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// Loads and validates the configuration in `dir`, taking secrets from
    /// this process's environment.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with_env(dir, |key| std::env::var(key).ok())
    }

    /// Loads and validates the configuration in `dir`, reading environment
    /// overrides through `env` (tests pass their own).
    pub fn load_with_env(
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        check_directory(dir, &mut errors);

        let mut config: Config = read_toml(&dir.join(DAEMON_FILE), &mut errors).unwrap_or_default();
        let partners: PartnersFile = read_toml(&dir.join(PARTNERS_FILE), &mut errors).unwrap_or_default();
        config.rewards = read_toml(&dir.join(REWARDS_FILE), &mut errors).unwrap_or_default();
        let api_keys: api::ApiKeysFile = read_toml(&dir.join(api::API_KEYS_FILE), &mut errors).unwrap_or_default();
        config.api_keys = api_keys.keys;
        if let Some(list) = env(api::API_KEYS_ENV) {
            config.api_keys.extend(api::keys_from_env(&list, &mut errors));
        }

        for (name, partner_config) in partners.partners {
            match name.parse::<Partner>() {
                Ok(partner) => {
                    config.partners.insert(partner, partner_config);
                }
                Err(problem) => errors.push(invalid(PARTNERS_FILE, format!("partners.{name}"), problem)),
            }
        }
        config.apply_env(&env);
        config.validate(&mut errors);

        if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
    }

    /// The database URL in force: the configured one or the embedded SQLite file.
    pub fn database_url(&self) -> Secret {
        match &self.database.url {
            Some(url) => url.clone(),
            None => Secret::new(format!("sqlite://{}?mode=rwc", self.data_dir.join("havend.db").display())),
        }
    }

    /// The configuration as TOML with every secret redacted (`check-config`).
    /// Defaults are filled in (the embedded database URL, each partner's
    /// scheme) so what is printed is what runs.
    pub fn to_redacted_toml(&self) -> String {
        let mut effective = self.clone();
        effective.database.url = Some(self.database_url());
        for (partner, partner_config) in effective.partners.iter_mut() {
            partner_config.scheme = Some(partner_config.scheme_for(*partner));
        }
        toml::to_string_pretty(&effective).unwrap_or_else(|error| format!("# cannot print config: {error}\n"))
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if let Some(url) = env(DATABASE_URL_ENV) {
            self.database.url = Some(Secret::new(url));
        }
        // RPC URLs often carry an API key.
        if let (Some(url), Some(chain)) = (env(RPC_URL_ENV), self.chain.as_mut()) {
            chain.rpc_url = url;
        }
        for partner in Partner::ALL {
            if let Some(list) = env(&partner.secrets_env()) {
                let secrets = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect();
                self.partners
                    .entry(partner)
                    .or_default()
                    .secrets = secrets;
            }
            if let (Some(key), Some(partner_config)) = (env(&partner.api_key_env()), self.partners.get_mut(&partner)) {
                partner_config.api_key = Some(Secret::new(key));
            }
        }
        self.alerts.apply_env(env);
        if let Some(url) = env(api::REDIS_URL_ENV) {
            self.redis.url = Some(Secret::new(url));
        }
        if let Some(list) = env(api::CROSS_APP_SECRETS_ENV) {
            self.cross_app.shared_secrets = api::secrets_from_env(&list);
        }
    }

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        let server = &self.server;
        if server.body_limit_bytes == 0 {
            errors.push(invalid(DAEMON_FILE, "server.body_limit_bytes", "must be greater than 0"));
        }
        for (key, value) in [
            ("server.header_read_timeout_ms", server.header_read_timeout_ms),
            ("server.body_read_timeout_ms", server.body_read_timeout_ms),
            ("server.idle_timeout_ms", server.idle_timeout_ms),
            ("database.acquire_timeout_ms", self.database.acquire_timeout_ms),
            ("intake.store_timeout_ms", self.intake.store_timeout_ms),
        ] {
            if value == 0 {
                errors.push(invalid(DAEMON_FILE, key, "must be greater than 0"));
            }
        }
        for (key, value) in [
            ("server.max_in_flight_stores", server.max_in_flight_stores),
            ("server.max_connections", server.max_connections),
            ("server.http2_max_concurrent_streams", server.http2_max_concurrent_streams as usize),
        ] {
            if value == 0 {
                errors.push(invalid(DAEMON_FILE, key, "must be greater than 0"));
            }
        }
        if self.database.max_connections == 0 {
            errors.push(invalid(DAEMON_FILE, "database.max_connections", "must be greater than 0"));
        }
        let url = self.database_url();
        if !(url.expose().starts_with("postgres://")
            || url.expose().starts_with("postgresql://")
            || url.expose().starts_with("sqlite:"))
        {
            errors.push(invalid(
                DAEMON_FILE,
                "database.url",
                "must start with postgres:// or sqlite:",
            ));
        }
        // A full batch is one insert statement: on SQLite its bind parameters
        // (one per column and row) must stay within SQLite's limit.
        let max_batch = if url.expose().starts_with("sqlite:") {
            SQLITE_MAX_BIND_PARAMETERS / INBOX_ROW_PARAMETERS
        } else {
            MAX_BATCH_LIMIT
        };
        if !(1..=max_batch).contains(&self.intake.max_batch) {
            errors.push(invalid(
                DAEMON_FILE,
                "intake.max_batch",
                format!(
                    "must be between 1 and {max_batch} on this database \
                     (SQLite: {SQLITE_MAX_BIND_PARAMETERS} bind parameters / {INBOX_ROW_PARAMETERS} per row; PostgreSQL: {MAX_BATCH_LIMIT})"
                ),
            ));
        }
        if self.intake.flush_delay_us > 100_000 {
            errors.push(invalid(DAEMON_FILE, "intake.flush_delay_us", "must be at most 100000 (100 ms)"));
        }
        if self.webhooks.tolerance_past_secs <= 0 || self.webhooks.tolerance_future_secs < 0 {
            errors.push(invalid(
                DAEMON_FILE,
                "webhooks.tolerance_past_secs",
                "tolerances must not be negative (past > 0)",
            ));
        }
        check_rate_limit(
            DAEMON_FILE,
            "webhooks.per_ip_",
            self.webhooks.per_ip_rate_limit_per_sec,
            self.webhooks.per_ip_rate_limit_burst,
            errors,
        );
        match server.client_ip_header.parse::<http::HeaderName>() {
            Err(_) => errors.push(invalid(DAEMON_FILE, "server.client_ip_header", "not a valid HTTP header name")),
            // RFC 7239's `for=…;proto=…` syntax is not an address list.
            Ok(name) if name == http::header::FORWARDED => errors.push(invalid(
                DAEMON_FILE,
                "server.client_ip_header",
                "the RFC 7239 Forwarded header is not supported; have the proxy send X-Forwarded-For (or X-Real-IP)",
            )),
            Ok(_) => {}
        }
        if let Some(chain) = &self.chain {
            if chain.max_in_flight == 0 {
                errors.push(invalid(DAEMON_FILE, "chain.max_in_flight", "must be greater than 0"));
            }
            if chain.finality_depth == 0 {
                errors.push(invalid(DAEMON_FILE, "chain.finality_depth", "must be at least 1"));
            }
            if chain.log_range_blocks == 0 {
                errors.push(invalid(DAEMON_FILE, "chain.log_range_blocks", "must be at least 1"));
            }
            if chain.fee_bump_percent < 10 {
                errors.push(invalid(DAEMON_FILE, "chain.fee_bump_percent", "must be at least 10 (nodes refuse smaller replacements)"));
            }
            if alloy::primitives::U256::from_str_radix(&chain.min_balance_wei, 10).is_err() {
                errors.push(invalid(DAEMON_FILE, "chain.min_balance_wei", "must be a whole number of wei"));
            }
            let parsed = alloy::transports::http::reqwest::Url::parse(&chain.rpc_url);
            if !parsed.is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some()) {
                errors.push(invalid(DAEMON_FILE, "chain.rpc_url", "must be an http:// or https:// URL with a host"));
            }
        }
        let processor = &self.processor;
        if processor.workers == 0 || processor.batch == 0 || processor.max_attempts < 1 {
            errors.push(invalid(DAEMON_FILE, "processor", "workers, batch and max_attempts must be at least 1"));
        }
        if processor.lease_secs == 0 || processor.poll_interval_ms == 0 {
            errors.push(invalid(DAEMON_FILE, "processor", "lease_secs and poll_interval_ms must be greater than 0"));
        }
        let monitor = &self.monitor;
        if monitor.interval_secs == 0 || monitor.stalled_looks == 0 || monitor.gas_spike_factor < 2 {
            errors.push(invalid(DAEMON_FILE, "monitor", "interval_secs and stalled_looks must be at least 1, gas_spike_factor at least 2"));
        }
        if monitor.gas_hold && monitor.gas_hold_max_secs == 0 {
            errors.push(invalid(DAEMON_FILE, "monitor.gas_hold_max_secs", "must be at least 1 (turn the hold off with gas_hold = false)"));
        }
        let schedule = &self.schedule;
        if schedule.timezone.parse::<chrono_tz::Tz>().is_err() {
            errors.push(invalid(DAEMON_FILE, "schedule.timezone", "not an IANA timezone name (e.g. UTC, Europe/Paris)"));
        }
        for (key, expression) in [
            ("schedule.aurora_sync", &schedule.aurora_sync),
            ("schedule.tribe_sync", &schedule.tribe_sync),
            ("schedule.staking_rewards", &schedule.staking_rewards),
            ("schedule.purge_bodies", &schedule.purge_bodies),
            ("schedule.cleanup", &schedule.cleanup),
        ] {
            if let Err(problem) = check_cron(expression) {
                errors.push(invalid(DAEMON_FILE, key, problem));
            }
        }
        if schedule.body_retention_days == 0 || schedule.sync_timeout_ms == 0 {
            errors.push(invalid(DAEMON_FILE, "schedule", "body_retention_days and sync_timeout_ms must be greater than 0"));
        }
        for (partner, partner_config) in &self.partners {
            if let Some(url) = &partner_config.sync_url {
                if !matches!(partner, Partner::Aurora | Partner::Tribe) {
                    errors.push(invalid(PARTNERS_FILE, format!("partners.{partner}.sync_url"), "only Aurora and Tribe are synced"));
                }
                let parsed = reqwest::Url::parse(url);
                if !parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                    errors.push(invalid(PARTNERS_FILE, format!("partners.{partner}.sync_url"), "must be an http:// or https:// URL"));
                }
            }
        }
        self.alerts.validate(errors);
        api::validate(&self.api_keys, &self.api, &self.redis, errors);
        api::validate_sessions_and_stream(&self.cross_app, &self.stream, errors);
        for (key, problem) in self.rewards.problems() {
            errors.push(invalid(REWARDS_FILE, key, problem));
        }
        if self.breaker.failure_threshold == 0 || self.breaker.close_after == 0 {
            errors.push(invalid(DAEMON_FILE, "breaker", "failure_threshold and close_after must be greater than 0"));
        }
        for (partner, partner_config) in &self.partners {
            let key = format!("partners.{partner}.secrets");
            if partner_config.secrets.is_empty() {
                errors.push(invalid(
                    PARTNERS_FILE,
                    key.clone(),
                    format!("at least one secret is required (or set {})", partner.secrets_env()),
                ));
            }
            let scheme = partner_config.scheme_for(*partner);
            if partner_config.sign_event && !scheme.can_sign_event() {
                errors.push(invalid(
                    PARTNERS_FILE,
                    format!("partners.{partner}.sign_event"),
                    format!("the {scheme} scheme defines its own signed content; sign_event applies to haven-hmac only"),
                ));
            }
            for (index, secret) in partner_config.secrets.iter().enumerate() {
                if let Err(problem) = scheme.check_secret(secret) {
                    errors.push(invalid(PARTNERS_FILE, format!("{key}[{index}]"), problem));
                }
            }
            let prefix = format!("partners.{partner}.");
            check_rate_limit(PARTNERS_FILE, &prefix, partner_config.rate_limit_per_sec, partner_config.rate_limit_burst, errors);
            if partner_config.allow_ips.as_ref().is_some_and(Vec::is_empty) {
                errors.push(invalid(
                    PARTNERS_FILE,
                    format!("{prefix}allow_ips"),
                    "an empty list would refuse every request; leave the key out to allow any address",
                ));
            }
        }
    }
}

/// Environment variable that overrides `chain.rpc_url`.
pub const RPC_URL_ENV: &str = "HAVEND_RPC_URL";

/// Environment variable that overrides `database.url`.
pub const DATABASE_URL_ENV: &str = "HAVEND_DATABASE_URL";

fn invalid(file: &str, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { file: file.into(), key: key.into(), problem: problem.into() }
}

fn check_directory(dir: &Path, errors: &mut Vec<ConfigError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            errors.push(ConfigError::Read { file: dir.display().to_string(), source });
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") && ![DAEMON_FILE, PARTNERS_FILE, REWARDS_FILE, api::API_KEYS_FILE].contains(&name.as_str()) {
            errors.push(invalid(
                &name,
                "(file)",
                format!("unknown config file; expected {DAEMON_FILE}, {PARTNERS_FILE}, {REWARDS_FILE} or {}", api::API_KEYS_FILE),
            ));
        }
    }
}

/// Reads one optional TOML file; a missing file means "all defaults".
fn read_toml<T: serde::de::DeserializeOwned>(path: &Path, errors: &mut Vec<ConfigError>) -> Option<T> {
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(source) => {
            errors.push(ConfigError::Read { file, source });
            return None;
        }
    };
    match toml::from_str(&text) {
        Ok(value) => Some(value),
        Err(error) => {
            errors.push(toml_error(file, &text, &error));
            None
        }
    }
}

/// A TOML error that quotes no value from the file: this text reaches logs,
/// the `config_rejected` alert and the admin API, and the value may be a
/// secret (`secrets = "whsec_…"` where a list belongs makes serde quote it).
///
/// A syntax error is the parser's message with its line and column (the
/// parser's own text quotes the source line; its message does not). A value
/// that does not fit the schema is reported as its dotted key, the type
/// expected and the TOML type found. An unknown or missing key keeps serde's
/// message, which quotes key names only.
fn toml_error(file: String, text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return ConfigError::Parse { file, message: message.to_owned() };
    };
    let position = line_column(text, span.start);
    let names_keys_only = ["unknown field", "missing field", "duplicate field"].iter().any(|prefix| message.starts_with(prefix));
    let document = match toml::de::DeTable::parse(text) {
        Ok(document) if !names_keys_only => document,
        _ => return ConfigError::Parse { file, message: format!("{position}: {message}") },
    };
    match value_at(document.get_ref(), span.start, "") {
        Some((key, value)) => ConfigError::Invalid { file, key, problem: format!("{} ({position})", schema_problem(message, value)) },
        None => ConfigError::Parse { file, message: format!("{position}: does not fit the schema") },
    }
}

/// `line L, column C` of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    format!("line {line}, column {column}")
}

/// The dotted key (`partners.aurora.secrets`, `alerts.channels[0].url`) of
/// the innermost value holding byte `offset`, and that value. Tables are
/// searched whatever their own span: a `[header]` table's span is its header.
fn value_at<'v, 'i>(table: &'v toml::de::DeTable<'i>, offset: usize, prefix: &str) -> Option<(String, &'v toml::de::DeValue<'i>)> {
    table.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        within(value, offset, path)
    })
}

fn within<'v, 'i>(value: &'v toml::Spanned<toml::de::DeValue<'i>>, offset: usize, path: String) -> Option<(String, &'v toml::de::DeValue<'i>)> {
    let inner = match value.get_ref() {
        toml::de::DeValue::Table(table) => value_at(table, offset, &path),
        toml::de::DeValue::Array(items) => items.iter().enumerate().find_map(|(index, item)| within(item, offset, format!("{path}[{index}]"))),
        _ => None,
    };
    inner.or_else(|| value.span().contains(&offset).then(|| (path, value.get_ref())))
}

/// What is wrong with a value, from serde's `message`, without the value:
/// serde's standard messages are rewritten to the type expected and the TOML
/// type found; any other (this crate's own, which name no value) is kept.
fn schema_problem(message: &str, value: &toml::de::DeValue<'_>) -> String {
    let found = value.type_str();
    // The expected part follows the quoted value, so the last match is serde's.
    match message.rsplit_once(", expected ") {
        Some((_, expected)) if message.starts_with("invalid type: ") => format!("expected {}, found {found}", toml_type_words(expected)),
        Some((_, expected)) if message.starts_with("invalid value: ") || message.starts_with("unknown variant ") => {
            format!("invalid {found}, expected {}", toml_type_words(expected))
        }
        _ => without_value(message, value),
    }
}

/// serde's words for TOML's arrays and tables.
fn toml_type_words(expected: &str) -> String {
    expected.replace("a sequence", "an array").replace("a map", "a table")
}

/// `message` with every string of `value` (an array's or table's too: the
/// error may point at the whole list) cut out wherever it appears, as
/// written or as serde quotes it (a custom message may quote what it refused).
fn without_value(message: &str, value: &toml::de::DeValue<'_>) -> String {
    match value {
        toml::de::DeValue::String(text) if !text.is_empty() => message.replace(&format!("{text:?}"), "the value").replace(text.as_ref(), "the value"),
        toml::de::DeValue::Array(items) => items.iter().fold(message.to_owned(), |message, item| without_value(&message, item.get_ref())),
        toml::de::DeValue::Table(table) => table.iter().fold(message.to_owned(), |message, (_, item)| without_value(&message, item.get_ref())),
        _ => message.to_owned(),
    }
}

/// Prints a database URL with its password replaced by [`REDACTED`].
fn serialize_redacted_url<S: serde::Serializer>(url: &Option<Secret>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        None => serializer.serialize_none(),
        Some(url) => serializer.serialize_str(&crate::redact::password_in(url.expose())),
    }
}

fn serialize_redacted_rpc_url<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::redact::rpc_url(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn empty_directory_gives_embedded_defaults() {
        let dir = dir_with(&[]);
        let config = Config::load_with_env(dir.path(), |_| None).unwrap();
        assert_eq!(config.server.body_limit_bytes, 256 * 1024);
        assert!(config.database_url().expose().starts_with("sqlite://"));
        assert!(config.partners.is_empty());
    }

    #[test]
    fn unknown_key_is_reported_with_file_and_key() {
        let dir = dir_with(&[(DAEMON_FILE, "[server]\nlisten_adress = \"127.0.0.1:1\"\n")]);
        let error = Config::load_with_env(dir.path(), |_| None).unwrap_err().to_string();
        assert!(error.contains("havend.toml"), "{error}");
        assert!(error.contains("listen_adress"), "{error}");
    }

    #[test]
    fn partner_without_secret_is_rejected_naming_the_key() {
        let dir = dir_with(&[(PARTNERS_FILE, "[partners.aurora]\nscheme = \"haven-hmac\"\n")]);
        let error = Config::load_with_env(dir.path(), |_| None).unwrap_err().to_string();
        assert!(error.contains("partners.toml: partners.aurora.secrets"), "{error}");
    }

    #[test]
    fn unknown_partner_is_rejected() {
        let dir = dir_with(&[(PARTNERS_FILE, "[partners.acme]\nsecrets = [\"s\"]\n")]);
        let error = Config::load_with_env(dir.path(), |_| None).unwrap_err().to_string();
        assert!(error.contains("partners.acme"), "{error}");
    }

    #[test]
    fn environment_secrets_override_the_file() {
        let dir = dir_with(&[(PARTNERS_FILE, "[partners.aurora]\nsecrets = [\"from-file\"]\n")]);
        let config = Config::load_with_env(dir.path(), |key| {
            (key == "HAVEND_AURORA_SECRETS").then(|| "one, two".to_owned())
        })
        .unwrap();
        let secrets: Vec<_> = config.partners[&Partner::Aurora].secrets.iter().map(|s| s.expose().to_owned()).collect();
        assert_eq!(secrets, ["one", "two"]);
    }

    #[test]
    fn standard_webhooks_secret_must_be_base64() {
        let dir = dir_with(&[(
            PARTNERS_FILE,
            "[partners.hi-events]\nscheme = \"standard-webhooks\"\nsecrets = [\"whsec_***\"]\n",
        )]);
        let error = Config::load_with_env(dir.path(), |_| None).unwrap_err().to_string();
        assert!(error.contains("partners.hi-events.secrets[0]"), "{error}");
    }

    #[test]
    fn sign_event_is_read_and_refused_for_schemes_that_cannot_sign_the_event() {
        let dir = dir_with(&[(PARTNERS_FILE, "[partners.aurora]\nsecrets = [\"s\"]\nsign_event = true\n")]);
        let config = Config::load_with_env(dir.path(), |_| None).unwrap();
        assert!(config.partners[&Partner::Aurora].sign_event);
        let dir = dir_with(&[(PARTNERS_FILE, "[partners.stripe]\nsecrets = [\"whsec_x\"]\nsign_event = true\n")]);
        let error = Config::load_with_env(dir.path(), |_| None).unwrap_err().to_string();
        assert!(error.contains("partners.toml: partners.stripe.sign_event"), "{error}");
    }

    #[test]
    fn guards_are_read_with_their_defaults() {
        let dir = dir_with(&[
            (DAEMON_FILE, "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n[webhooks]\nper_ip_rate_limit_per_sec = 50\n"),
            (
                PARTNERS_FILE,
                "[partners.aurora]\nsecrets = [\"s\"]\nrate_limit_per_sec = 100\nallow_ips = [\"203.0.113.0/24\"]\n\
                 [partners.tribe]\nsecrets = [\"s\"]\n",
            ),
        ]);
        let config = Config::load_with_env(dir.path(), |_| None).unwrap();
        assert_eq!(config.server.client_ip_header, "x-forwarded-for");
        assert_eq!(config.server.trusted_proxies.len(), 2);
        let per_ip = config.webhooks.per_ip_rate_limit().unwrap();
        assert_eq!((per_ip.per_sec.get(), per_ip.burst.get()), (50, 50), "the burst defaults to the rate");
        let aurora = &config.partners[&Partner::Aurora];
        assert_eq!(aurora.rate_limit().map(|l| l.per_sec.get()), Some(100));
        assert!(aurora.allow_ips.as_ref().is_some_and(|list| list[0].contains("203.0.113.9".parse().unwrap())));
        let tribe = &config.partners[&Partner::Tribe];
        assert!(tribe.rate_limit().is_none() && tribe.allow_ips.is_none(), "unset: no limit, any address");
        assert!(Config::default().webhooks.per_ip_rate_limit().is_none());
        let printed = config.to_redacted_toml();
        assert!(printed.contains("allow_ips = [\"203.0.113.0/24\"]"), "{printed}");
    }

    #[test]
    fn inconsistent_guards_are_refused_naming_the_key() {
        let load = |daemon: &str, partner: &str| {
            let partners = format!("[partners.aurora]\nsecrets = [\"s\"]\n{partner}");
            Config::load_with_env(dir_with(&[(DAEMON_FILE, daemon), (PARTNERS_FILE, &partners)]).path(), |_| None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for (daemon, partner, expected) in [
            ("", "rate_limit_per_sec = 0\n", "partners.aurora.rate_limit_per_sec: must be between 1 and"),
            ("", "rate_limit_burst = 5\n", "partners.aurora.rate_limit_burst: is set without"),
            ("", "rate_limit_per_sec = 5\nrate_limit_burst = 0\n", "partners.aurora.rate_limit_burst: must be at least 1"),
            ("", "allow_ips = []\n", "partners.aurora.allow_ips: an empty list would refuse every request"),
            ("", "allow_ips = [\"10.1.2.3/8\"]\n", "did you mean 10.0.0.0/8"),
            ("", "allow_ips = [\"intranet\"]\n", "is not an IP address or a CIDR range"),
            ("[webhooks]\nper_ip_rate_limit_burst = 3\n", "", "webhooks.per_ip_rate_limit_burst: is set without"),
            ("[webhooks]\nper_ip_rate_limit_per_sec = 2000000\n", "", "webhooks.per_ip_rate_limit_per_sec: must be between 1 and"),
            ("[server]\nclient_ip_header = \"bad header\"\n", "", "server.client_ip_header: not a valid HTTP header name"),
            ("[server]\nclient_ip_header = \"Forwarded\"\n", "", "RFC 7239 Forwarded header is not supported"),
            ("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "", "is not an IP address or a CIDR range"),
        ] {
            let error = load(daemon, partner).expect_err(expected);
            assert!(error.contains(expected), "{expected}: {error}");
        }
        assert!(load("[server]\nclient_ip_header = \"X-Real-IP\"\n", "rate_limit_per_sec = 5\nrate_limit_burst = 20\n").is_ok());
    }

    #[test]
    fn redacted_config_hides_secrets_and_passwords() {
        let dir = dir_with(&[
            (DAEMON_FILE, "[database]\nurl = \"postgres://havend:hunter2@db:5432/havend\"\n"),
            (PARTNERS_FILE, "[partners.stripe]\nsecrets = [\"whsec_abcdef\"]\n"),
        ]);
        let printed = Config::load_with_env(dir.path(), |_| None).unwrap().to_redacted_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("whsec_abcdef"), "{printed}");
        assert!(printed.contains("postgres://havend:[redacted]@db:5432/havend"), "{printed}");
    }

    #[test]
    fn cross_app_secrets_come_from_the_file_or_the_environment_and_are_redacted() {
        let dir = dir_with(&[(DAEMON_FILE, "[cross_app]\nshared_secrets = [\"file-secret-0123456789\"]\nsession_ttl_secs = 600\n")]);
        let config = Config::load_with_env(dir.path(), |_| None).unwrap();
        assert_eq!(config.cross_app.shared_secrets, vec![Secret::new("file-secret-0123456789")]);
        assert_eq!(config.cross_app.session_ttl_secs, 600);
        assert!(!config.to_redacted_toml().contains("file-secret-0123456789"));
        let config = Config::load_with_env(dir.path(), |key| {
            (key == "HAVEND_CROSS_APP_SECRETS").then(|| "env-secret-one-0123456,env-secret-two-0123456".to_owned())
        })
        .unwrap();
        assert_eq!(config.cross_app.shared_secrets.len(), 2);
        assert_eq!(config.cross_app.shared_secrets[0].expose(), "env-secret-one-0123456");
        let dir = dir_with(&[(DAEMON_FILE, "[cross_app]\nshared_secrets = [\"short\"]\n")]);
        let error = Config::load_with_env(dir.path(), |_| None).unwrap_err().to_string();
        assert!(error.contains("cross_app.shared_secrets[0]"), "{error}");
    }

    #[test]
    fn check_config_shows_only_the_rpc_host() {
        let chain = "[chain]\nrpc_url = \"https://mainnet.infura.io/v3/KEY123?x=KEY456\"\n\
                     token = \"0x0000000000000000000000000000000000000001\"\nchain_id = 1\n";
        let dir = dir_with(&[(DAEMON_FILE, chain)]);
        let printed = Config::load_with_env(dir.path(), |_| None).unwrap().to_redacted_toml();
        assert!(!printed.contains("KEY123") && !printed.contains("KEY456"), "{printed}");
        assert!(printed.contains("rpc_url = \"https://mainnet.infura.io/[redacted]\""), "{printed}");
    }

    #[test]
    fn max_batch_is_bounded_by_the_bind_parameters_of_one_insert() {
        let load = |database: &str, max_batch: usize| {
            let text = format!("[database]\nurl = \"{database}\"\n[intake]\nmax_batch = {max_batch}\n");
            Config::load_with_env(dir_with(&[(DAEMON_FILE, &text)]).path(), |_| None).map_err(|e| e.to_string())
        };
        assert!(load("sqlite://x.db", 2_520).is_ok());
        let error = load("sqlite://x.db", 2_521).unwrap_err();
        assert!(error.contains("intake.max_batch: must be between 1 and 2520"), "{error}");
        assert!(load("postgres://db/havend", 10_000).is_ok(), "one unnest statement binds 12 parameters, whatever the batch");
        assert!(load("postgres://db/havend", 10_001).is_err());
    }

    #[test]
    fn a_toml_error_names_its_line_but_never_quotes_it() {
        let text = "[partners.aurora]\nsecrets = [\"very-secret-value\"\n";
        let error = toml::from_str::<toml::Value>(text).unwrap_err();
        let message = toml_error(PARTNERS_FILE.into(), text, &error).to_string();
        assert!(message.starts_with("partners.toml: line 2, column "), "{message}");
        assert!(!message.contains("very-secret-value"), "{message}");
    }

    #[test]
    fn a_type_error_names_file_key_and_expected_type_without_quoting_the_secret() {
        let dir = dir_with(&[(PARTNERS_FILE, "[partners.stripe]\nsecrets = \"whsec_live_abc\"\n")]);
        let error = Config::load_with_env(dir.path(), |_| None).unwrap_err().to_string();
        assert!(!error.contains("whsec_live_abc"), "{error}");
        assert!(error.contains("partners.toml: partners.stripe.secrets: expected an array, found string (line 2, column 11)"), "{error}");
    }

    #[test]
    fn no_schema_error_quotes_the_value_it_refused() {
        for (file, text, expected) in [
            (DAEMON_FILE, "[alerts]\nretries = \"SECRET-1\"\n", "havend.toml: alerts.retries: expected usize, found string"),
            (DAEMON_FILE, "[server]\nlisten = 99999999\n", "havend.toml: server.listen: expected socket address, found integer"),
            (DAEMON_FILE, "[[alerts.channels]]\nname = \"a\"\nkind = \"SECRET-2\"\n", "havend.toml: alerts.channels[0].kind: invalid string, expected one of"),
            (DAEMON_FILE, "[database]\nmax_connections = 99999999999\n", "havend.toml: database.max_connections: invalid integer, expected u32"),
            (DAEMON_FILE, "[cross_app]\nshared_secrets = [\"ok-0123456789abcdef\", 7]\n", "havend.toml: cross_app.shared_secrets[1]: expected a string, found integer"),
            (DAEMON_FILE, "[server]\ntrusted_proxies = [\"10.1.2.3/8\"]\n", "server.trusted_proxies: the value has bits set past its /8 prefix; did you mean 10.0.0.0/8?"),
            (PARTNERS_FILE, "[partners.aurora]\nscheme = \"SECRET-3\"\nsecrets = [\"s\"]\n", "partners.toml: partners.aurora.scheme: invalid string, expected one of"),
        ] {
            let dir = dir_with(&[(file, text)]);
            let error = Config::load_with_env(dir.path(), |_| None).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected} in {error}");
            assert!(!error.contains("SECRET") && !error.contains("10.1.2.3"), "{error}");
        }
    }
}
