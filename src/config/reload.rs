//! Reload planning, the pure half of hot reload: given the running snapshot
//! and what was just loaded, decide whether to swap, which keys changed and
//! which of them only take effect after a restart. The config actor
//! (`crate::reload`) gathers the load and carries the plan out.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Config, ConfigErrors, Secret};

/// Settings read once at start-up (the listener's socket and limits, the
/// database pool, the wallet actors, the breaker, the key file, the actor
/// count, the log subscriber, the Redis client): a reload keeps their running values and
/// reports them as needing a restart. A key matches when it is one of these
/// or lies under one.
pub const RESTART_KEYS: &[&str] = &[
    "data_dir",
    "server.listen",
    "server.max_connections",
    "server.max_in_flight_stores",
    "database",
    "daemon_name",
    "chain",
    "breaker",
    "custody",
    "processor.enabled",
    "processor.workers",
    "log",
    "redis",
];

/// What a reload does with a freshly loaded configuration.
#[derive(Debug)]
pub enum ReloadPlan {
    /// Swap `config` in; restart-only settings in it already hold their
    /// running values.
    Apply {
        /// The snapshot to publish.
        config: Box<Config>,
        /// Every key that differs from the running config, dotted, sorted.
        changed: Vec<String>,
        /// The subset of `changed` kept at its running value until a restart.
        needs_restart: Vec<String>,
    },
    /// Nothing that can change while running did; the snapshot stays.
    Unchanged {
        /// Keys edited that only a restart applies (empty: nothing edited).
        needs_restart: Vec<String>,
    },
    /// The files do not load or validate: the running config stays.
    Reject {
        /// Every problem, naming file and key (never a secret's value).
        error: String,
    },
}

/// Plans a reload of `running` to `loaded`.
pub fn plan_reload(running: &Config, loaded: Result<Config, ConfigErrors>) -> ReloadPlan {
    let mut next = match loaded {
        Ok(config) => config,
        Err(errors) => return ReloadPlan::Reject { error: without_quoted_source(&errors.to_string()) },
    };
    let changed = changed_keys(running, &next);
    let needs_restart: Vec<String> = changed.iter().filter(|key| needs_restart(key)).cloned().collect();
    if changed.len() == needs_restart.len() {
        return ReloadPlan::Unchanged { needs_restart };
    }
    keep_restart_settings(running, &mut next);
    ReloadPlan::Apply { config: Box::new(next), changed, needs_restart }
}

/// Drops the source lines a TOML parse error quotes (`2 | secrets = ["…`):
/// the error goes to logs and alerts, and the line may hold a secret.
fn without_quoted_source(error: &str) -> String {
    let quotes_source = |line: &&str| {
        line.trim_start().split_once('|').is_some_and(|(gutter, _)| gutter.trim().chars().all(|c| c.is_ascii_digit()))
    };
    error.lines().filter(|line| !quotes_source(line)).collect::<Vec<_>>().join("\n")
}

/// Whether a dotted key only takes effect after a restart.
pub fn needs_restart(key: &str) -> bool {
    RESTART_KEYS.iter().any(|prefix| {
        key == *prefix || key.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// Copies every [`RESTART_KEYS`] setting of `running` into `next`.
fn keep_restart_settings(running: &Config, next: &mut Config) {
    next.data_dir = running.data_dir.clone();
    next.server.listen = running.server.listen;
    next.server.max_connections = running.server.max_connections;
    next.server.max_in_flight_stores = running.server.max_in_flight_stores;
    next.database = running.database.clone();
    next.daemon_name = running.daemon_name.clone();
    next.chain = running.chain.clone();
    next.breaker = running.breaker.clone();
    next.custody = running.custody.clone();
    next.processor.enabled = running.processor.enabled;
    next.processor.workers = running.processor.workers;
    next.log = running.log.clone();
    next.redis = running.redis.clone();
}

/// The dotted keys whose values differ. Secrets serialize redacted, so the
/// JSON diff sees a secret only appear or disappear; [`secrets`] compares
/// their values, and a key whose secret changed is named, never its value.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = BTreeSet::new();
    let as_json = |config: &Config| serde_json::to_value(config).expect("config serializes");
    diff("", &as_json(old), &as_json(new), &mut changed);
    let old_secrets = secrets(old);
    for (key, value) in secrets(new) {
        // A secret present on one side only is a key added or removed, which the diff names.
        if old_secrets.get(&key).is_some_and(|old| *old != value) {
            changed.insert(key);
        }
    }
    changed.into_iter().collect()
}

/// Every secret-bearing setting by its dotted key: values whose serialized
/// form hides what they hold (the database and Redis URLs' passwords, the
/// partners' webhook secrets and API keys, the cross-app shared secrets, the
/// alert channels' webhook URLs and SMTP passwords, the RPC URL's key).
fn secrets(config: &Config) -> BTreeMap<String, Vec<Secret>> {
    let mut secrets = BTreeMap::new();
    secrets.insert("database.url".to_owned(), vec![config.database_url()]);
    secrets.insert("redis.url".to_owned(), config.redis.url.iter().cloned().collect());
    secrets.insert("cross_app.shared_secrets".to_owned(), config.cross_app.shared_secrets.clone());
    if let Some(chain) = &config.chain {
        secrets.insert("chain.rpc_url".to_owned(), vec![Secret::new(chain.rpc_url.clone())]);
    }
    for (partner, partner_config) in &config.partners {
        secrets.insert(format!("partners.{partner}.secrets"), partner_config.secrets.clone());
        secrets.insert(format!("partners.{partner}.api_key"), partner_config.api_key.iter().cloned().collect());
    }
    for (index, channel) in config.alerts.channels.iter().enumerate() {
        secrets.insert(format!("alerts.channels[{index}].url"), channel.url.iter().cloned().collect());
        secrets.insert(format!("alerts.channels[{index}].password"), channel.password.iter().cloned().collect());
    }
    secrets
}

fn diff(path: &str, old: &Value, new: &Value, changed: &mut BTreeSet<String>) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
            for key in keys {
                let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match (old.get(key), new.get(key)) {
                    (Some(old), Some(new)) => diff(&path, old, new, changed),
                    _ => {
                        changed.insert(path);
                    }
                }
            }
        }
        _ if old != new => {
            changed.insert(path.to_owned());
        }
        _ => {}
    }
}

/// What the last reload did, for logs and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// What asked for it: `file`, `sighup` or `request`.
    pub trigger: &'static str,
    /// `applied`, `unchanged` or `rejected`.
    pub outcome: &'static str,
    /// Keys that differed from the running config.
    pub changed: Vec<String>,
    /// Keys kept at their running value until a restart.
    pub needs_restart: Vec<String>,
    /// Why the files were rejected.
    pub error: Option<String>,
    /// The reward rules' hash in force after the reload.
    pub rules_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, PartnerConfig, Secret};
    use crate::webhooks::Partner;

    fn with_aurora(secret: &str) -> Config {
        let mut config = Config::default();
        let partner = PartnerConfig { secrets: vec![Secret::new(secret)], ..PartnerConfig::default() };
        config.partners.insert(Partner::Aurora, partner);
        config
    }

    #[test]
    fn a_new_secret_is_applied_and_named_without_its_value() {
        let ReloadPlan::Apply { config, changed, needs_restart } = plan_reload(&with_aurora("old"), Ok(with_aurora("new"))) else {
            panic!("a secret change is applied");
        };
        assert_eq!(changed, ["partners.aurora.secrets"]);
        assert!(needs_restart.is_empty());
        assert_eq!(config.partners[&Partner::Aurora].secrets[0].expose(), "new");
    }

    #[test]
    fn a_secret_changed_in_place_is_applied_and_named_without_its_value() {
        let channel = |url: &str, password: &str| -> crate::config::ChannelConfig {
            let mut channel: crate::config::ChannelConfig = toml::from_str("name = \"ops\"\nkind = \"slack\"\n").unwrap();
            channel.url = Some(Secret::new(url));
            channel.password = Some(Secret::new(password));
            channel
        };
        let with = |value: &str| {
            let mut config = with_aurora("s");
            config.cross_app.shared_secrets = vec![Secret::new(format!("cross-app-{value}"))];
            config.partners.get_mut(&Partner::Aurora).unwrap().api_key = Some(Secret::new(format!("api-{value}")));
            config.alerts.channels = vec![channel(&format!("https://hooks.slack.com/services/{value}"), &format!("smtp-{value}"))];
            config.redis.url = Some(Secret::new(format!("redis://:{value}@cache")));
            config
        };
        let ReloadPlan::Apply { config, changed, needs_restart } = plan_reload(&with("old"), Ok(with("new"))) else {
            panic!("a secret changed in place is applied");
        };
        let expected = ["alerts.channels[0].password", "alerts.channels[0].url", "cross_app.shared_secrets", "partners.aurora.api_key", "redis.url"];
        assert_eq!(changed, expected);
        assert_eq!(needs_restart, ["redis.url"], "the Redis client is built once at start-up");
        assert_eq!(config.cross_app.shared_secrets[0].expose(), "cross-app-new");
        assert_eq!(config.partners[&Partner::Aurora].api_key.as_ref().unwrap().expose(), "api-new");
        assert_eq!(config.alerts.channels[0].url.as_ref().unwrap().expose(), "https://hooks.slack.com/services/new");
        assert_eq!(config.alerts.channels[0].password.as_ref().unwrap().expose(), "smtp-new");
        assert_eq!(config.redis.url.as_ref().unwrap().expose(), "redis://:old@cache", "kept until a restart");
        assert!(changed.iter().all(|key| !key.contains("new") && !key.contains("old")), "{changed:?}");
    }

    #[test]
    fn restart_only_settings_keep_their_running_values_and_are_reported() {
        let running = with_aurora("s");
        let mut loaded = with_aurora("s");
        loaded.server.listen = "127.0.0.1:9".parse().unwrap();
        loaded.processor.workers = 4;
        loaded.processor.batch = 7;
        loaded.database.url = Some(Secret::new("postgres://u:pw@db/havend"));
        let ReloadPlan::Apply { config, changed, needs_restart } = plan_reload(&running, Ok(loaded)) else {
            panic!("processor.batch is applied");
        };
        assert_eq!(changed, ["database.url", "processor.batch", "processor.workers", "server.listen"]);
        assert_eq!(needs_restart, ["database.url", "processor.workers", "server.listen"]);
        assert_eq!(config.processor.batch, 7);
        assert_eq!((config.processor.workers, config.server.listen), (running.processor.workers, running.server.listen));
        assert!(config.database.url.is_none());
    }

    #[test]
    fn only_restart_settings_edited_leaves_the_snapshot_alone() {
        let mut loaded = with_aurora("s");
        loaded.chain = Some(toml::from_str("rpc_url = \"http://127.0.0.1:8545\"\ntoken = \"0x0000000000000000000000000000000000000001\"\nchain_id = 1\n").unwrap());
        match plan_reload(&with_aurora("s"), Ok(loaded)) {
            ReloadPlan::Unchanged { needs_restart } => assert_eq!(needs_restart, ["chain"]),
            other => panic!("unexpected {other:?}"),
        }
        match plan_reload(&with_aurora("s"), Ok(with_aurora("s"))) {
            ReloadPlan::Unchanged { needs_restart } => assert!(needs_restart.is_empty()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn partners_added_or_removed_and_reward_rules_are_hot() {
        let mut loaded = Config::default();
        loaded.rewards.staking.timezone = "Europe/Paris".into();
        let ReloadPlan::Apply { changed, needs_restart, .. } = plan_reload(&with_aurora("s"), Ok(loaded)) else {
            panic!("applied");
        };
        assert_eq!(changed, ["partners.aurora", "rewards.staking.timezone"]);
        assert!(needs_restart.is_empty());
    }

    #[test]
    fn a_load_error_is_rejected_with_its_text() {
        let errors = ConfigErrors(vec![ConfigError::Parse { file: "partners.toml".into(), message: "expected `=`".into() }]);
        match plan_reload(&Config::default(), Err(errors)) {
            ReloadPlan::Reject { error } => assert!(error.contains("partners.toml: expected `=`"), "{error}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_parse_error_does_not_quote_the_line_that_may_hold_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("partners.toml"), "[partners.aurora]\nsecrets = [\"hunter2\"\n").unwrap();
        let ReloadPlan::Reject { error } = plan_reload(&Config::default(), Config::load_with_env(dir.path(), |_| None)) else {
            panic!("rejected");
        };
        assert!(error.contains("partners.toml"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn restart_keys_match_whole_segments_only() {
        assert!(needs_restart("chain"));
        assert!(needs_restart("chain.wallets"));
        assert!(needs_restart("log.filter"));
        assert!(!needs_restart("chainx"));
        assert!(!needs_restart("processor.workers_extra"));
        assert!(!needs_restart("server.listen_backlog"));
    }
}
