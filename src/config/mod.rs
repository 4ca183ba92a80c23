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

pub mod alerts;
pub mod api;
mod chain;
pub mod cidr;
mod database;
mod jobs;
mod logging;
mod partners;
pub mod reload;
pub mod rewards;
mod server;
mod webhooks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

pub use alerts::{AlertsConfig, ChannelConfig, ChannelKind, SmtpTls};
pub use api::{ApiConfig, ApiKey, CrossAppConfig, RedisConfig, Scope, StreamConfig};
pub use chain::{
    BATCH_BASE_GAS, BreakerSettings, ChainConfig, CustodyConfig, DEFAULT_FINALITY_DEPTH, DEFAULT_LOG_RANGE_BLOCKS, DEFAULT_MAX_IN_FLIGHT,
    PER_BURN_GAS, PER_MINT_GAS, TokenAbi,
};
pub use cidr::Cidr;
pub use database::{
    DEFAULT_ACQUIRE_TIMEOUT_MS, DEFAULT_FLUSH_DELAY_US, DEFAULT_MAX_BATCH, DEFAULT_MAX_CONNECTIONS, DEFAULT_STORE_TIMEOUT_MS, DatabaseConfig, INBOX_ROW_PARAMETERS, IntakeConfig,
    MAX_BATCH_LIMIT, SQLITE_MAX_BIND_PARAMETERS,
};
pub use jobs::{DEFAULT_GAS_HOLD_MAX_SECS, MonitorConfig, ProcessorConfig, ScheduleConfig, check_cron};
pub use logging::{LogConfig, LogFormat};
pub use partners::PartnerConfig;
pub use rewards::RewardRules;
pub use server::{
    DEFAULT_BODY_LIMIT_BYTES, DEFAULT_BODY_READ_TIMEOUT_MS, DEFAULT_CLIENT_IP_HEADER, DEFAULT_HEADER_READ_TIMEOUT_MS, DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS, DEFAULT_IDLE_TIMEOUT_MS,
    DEFAULT_LISTEN, DEFAULT_MAX_CLIENT_CONNECTIONS, DEFAULT_MAX_IN_FLIGHT_STORES, DEFAULT_SHUTDOWN_GRACE_MS, ServerConfig,
};
pub use webhooks::{DEFAULT_TOLERANCE_FUTURE_SECS, DEFAULT_TOLERANCE_PAST_SECS, MAX_RATE_LIMIT_PER_SEC, RateLimit, WebhooksConfig};
pub use crate::signing::{REDACTED, Secret};
use crate::webhooks::Partner;
use partners::PartnersFile;

/// The daemon's own settings file in the config directory.
pub const DAEMON_FILE: &str = "havend.toml";
/// The partners' file (schemes and webhook secrets) in the config directory.
pub const PARTNERS_FILE: &str = "partners.toml";
/// The reward rules file in the config directory.
pub const REWARDS_FILE: &str = "rewards.toml";

/// Default data directory (the embedded SQLite database lives here).
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default daemon name.
pub const DEFAULT_DAEMON_NAME: &str = "havend";

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

    /// Checks every section, reporting each problem. Errors come out in the
    /// order they always have, so a section whose checks were interleaved
    /// with another's is checked in parts.
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.server.validate_body_and_timeouts(errors);
        self.database.validate_acquire_timeout(errors);
        self.intake.validate_store_timeout(errors);
        self.server.validate_capacity(errors);
        let database_url = self.database_url();
        self.database.validate_pool_and_url(&database_url, errors);
        self.intake.validate_batching(&database_url, errors);
        self.webhooks.validate(errors);
        self.server.validate_client_ip_header(errors);
        if let Some(chain) = &self.chain {
            chain.validate(errors);
        }
        self.processor.validate(errors);
        self.monitor.validate(errors);
        self.schedule.validate(errors);
        partners::validate_sync_urls(&self.partners, errors);
        self.alerts.validate(errors);
        api::validate(&self.api_keys, &self.api, &self.redis, errors);
        api::validate_sessions_and_stream(&self.cross_app, &self.stream, errors);
        self.rewards.validate(errors);
        self.breaker.validate(errors);
        partners::validate_secrets_and_guards(&self.partners, errors);
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
