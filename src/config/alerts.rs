//! The `[alerts]` section of `havend.toml`: how alerts are delivered and
//! the channels they are routed to.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, DAEMON_FILE, Secret, invalid};
use crate::severity::Severity;

/// How often the alerts table is polled for alerts to deliver (raising an
/// alert also nudges the delivery actor of this process).
pub const DEFAULT_ALERT_POLL_INTERVAL_MS: u64 = 1_000;
/// Alerts one claim takes; they are delivered concurrently.
pub const DEFAULT_ALERT_BATCH: u64 = 16;
/// One delivery attempt (connect, send, answer) gives up after this (SPEC section 5).
pub const DEFAULT_ALERT_TIMEOUT_MS: u64 = 10_000;
/// Retries after a failed attempt, per channel, before the delivery is recorded failed.
pub const DEFAULT_ALERT_RETRIES: usize = 3;
/// First retry delay (doubles per retry, with jitter).
pub const DEFAULT_ALERT_RETRY_BASE_MS: u64 = 1_000;
/// Longest retry delay.
pub const DEFAULT_ALERT_RETRY_MAX_MS: u64 = 30_000;
/// Longest wait between two delivery rounds of a failed alert: a channel
/// that comes back is used again within this.
pub const DEFAULT_ALERT_REDELIVERY_MAX_MS: u64 = 15 * 60 * 1_000;
/// A failed alert is retried in rounds until this long after it was raised
/// (a day outlasts a Slack or SMTP outage; older news helps no one).
pub const DEFAULT_ALERT_DELIVERY_HORIZON_SECS: u64 = 24 * 60 * 60;
/// Repeats of one category and subject within this are throttled.
pub const DEFAULT_THROTTLE_WINDOW_SECS: u64 = 300;

/// Alert delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Polling for alerts raised by other daemons or by other processes (the CLI).
    pub poll_interval_ms: u64,
    /// Alerts claimed at once.
    pub batch: u64,
    /// One attempt's time limit.
    pub timeout_ms: u64,
    /// Retries per channel after a failed attempt.
    pub retries: usize,
    /// First retry delay; doubles per retry, with jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Longest wait between two delivery rounds of a `failed` alert (each
    /// round is an attempt and its `retries`); the wait grows with the
    /// alert's age up to this.
    pub redelivery_max_ms: u64,
    /// A `failed` alert gets further rounds until this many seconds after it
    /// was raised; then it stays `failed`. 0: no further rounds.
    pub delivery_horizon_secs: u64,
    /// Repeats of one category and subject within this many seconds are
    /// throttled: counted, not delivered.
    pub throttle_window_secs: u64,
    /// Where alerts go; none → alerts are only stored and logged.
    pub channels: Vec<ChannelConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: DEFAULT_ALERT_POLL_INTERVAL_MS,
            batch: DEFAULT_ALERT_BATCH,
            timeout_ms: DEFAULT_ALERT_TIMEOUT_MS,
            retries: DEFAULT_ALERT_RETRIES,
            retry_base_ms: DEFAULT_ALERT_RETRY_BASE_MS,
            retry_max_ms: DEFAULT_ALERT_RETRY_MAX_MS,
            redelivery_max_ms: DEFAULT_ALERT_REDELIVERY_MAX_MS,
            delivery_horizon_secs: DEFAULT_ALERT_DELIVERY_HORIZON_SECS,
            throttle_window_secs: DEFAULT_THROTTLE_WINDOW_SECS,
            channels: Vec::new(),
        }
    }
}

/// Jitter adds up to the capped delay again: a wait within a round is at
/// most this many times `retry_max_ms` (the lease is sized on it). Defined
/// here, where the lease is sized, and applied by `alert::plan`.
pub const RETRY_JITTER_FACTOR: u64 = 2;

impl AlertsConfig {
    /// The longest one channel's delivery round can take: every attempt
    /// timing out and every retry waiting the longest, jitter included
    /// ([`crate::alert::plan::retry_delays`] adds up to the capped delay
    /// again). A claim must outlast it, or another daemon would deliver the
    /// alert again.
    pub fn worst_delivery(&self) -> Duration {
        let attempts = self.retries as u64 + 1;
        let longest_wait = self.retry_max_ms.saturating_mul(RETRY_JITTER_FACTOR);
        Duration::from_millis(self.timeout_ms.saturating_mul(attempts).saturating_add(longest_wait.saturating_mul(self.retries as u64)))
    }

    /// The claim on a batch: every channel of an alert in turn may take
    /// [`Self::worst_delivery`], plus a margin for the database writes.
    pub fn lease(&self) -> Duration {
        self.worst_delivery() * (self.channels.len().max(1) as u32) + Duration::from_secs(30)
    }

    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.poll_interval_ms == 0 || self.batch == 0 || self.timeout_ms == 0 {
            errors.push(invalid(DAEMON_FILE, "alerts", "poll_interval_ms, batch and timeout_ms must be greater than 0"));
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            errors.push(invalid(DAEMON_FILE, "alerts.retry_max_ms", "retry_base_ms must be > 0 and retry_max_ms at least retry_base_ms"));
        }
        if self.redelivery_max_ms < self.retry_base_ms {
            errors.push(invalid(DAEMON_FILE, "alerts.redelivery_max_ms", "must be at least retry_base_ms"));
        }
        for (index, channel) in self.channels.iter().enumerate() {
            let key = |field: &str| format!("alerts.channels[{index}].{field}");
            if channel.name.is_empty() || channel.name.len() > 64 {
                errors.push(invalid(DAEMON_FILE, key("name"), "must be 1 to 64 characters"));
            }
            if self.channels[..index].iter().any(|other| other.name == channel.name) {
                errors.push(invalid(DAEMON_FILE, key("name"), "an earlier channel has the same name"));
            }
            match channel.kind {
                ChannelKind::Slack | ChannelKind::Discord | ChannelKind::Webhook => {
                    let url = channel.url.as_ref().map(|url| url.expose().parse::<http::Uri>());
                    let valid = matches!(&url, Some(Ok(uri)) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some());
                    if !valid {
                        // The URL itself is a secret (its path is the token): never quoted.
                        errors.push(invalid(DAEMON_FILE, key("url"), "must be an http:// or https:// URL with a host"));
                    }
                }
                ChannelKind::Email => {
                    if channel.host.as_deref().is_none_or(str::is_empty) {
                        errors.push(invalid(DAEMON_FILE, key("host"), "an email channel needs the SMTP host"));
                    }
                    if channel.from.as_deref().is_none_or(|from| from.parse::<lettre::message::Mailbox>().is_err()) {
                        errors.push(invalid(DAEMON_FILE, key("from"), "must be an e-mail address"));
                    }
                    if channel.to.is_empty() || channel.to.iter().any(|to| to.parse::<lettre::message::Mailbox>().is_err()) {
                        errors.push(invalid(DAEMON_FILE, key("to"), "must list at least one e-mail address"));
                    }
                    if channel.password.is_some() && channel.username.is_none() {
                        errors.push(invalid(DAEMON_FILE, key("username"), "a password needs a username"));
                    }
                    if channel.password.is_some() && channel.tls == SmtpTls::None {
                        errors.push(invalid(DAEMON_FILE, key("tls"), "a password is never sent without TLS"));
                    }
                    if let Some(ca_file) = &channel.ca_file
                        && let Err(error) = std::fs::read(ca_file)
                    {
                        errors.push(invalid(DAEMON_FILE, key("ca_file"), format!("cannot read the file: {error}")));
                    }
                }
            }
        }
    }

    /// Reads channel secrets from the environment: `HAVEND_ALERT_{NAME}_URL`
    /// and `HAVEND_ALERT_{NAME}_PASSWORD` (the channel's name upper-cased,
    /// `-` as `_`), which replace the file's.
    pub(super) fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        for channel in &mut self.channels {
            let prefix = format!("HAVEND_ALERT_{}", channel.name.to_uppercase().replace('-', "_"));
            if let Some(url) = env(&format!("{prefix}_URL")) {
                channel.url = Some(Secret::new(url));
            }
            if let Some(password) = env(&format!("{prefix}_PASSWORD")) {
                channel.password = Some(Secret::new(password));
            }
        }
    }
}

/// What kind of channel, and so which message shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A Slack incoming webhook: `{"text": …}`.
    Slack,
    /// A Discord webhook: `{"content": …}`.
    Discord,
    /// Any HTTP endpoint: the full alert as JSON.
    Webhook,
    /// E-mail over SMTP.
    Email,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS (a local relay only; no password allowed).
    None,
}

/// One route: which alerts, and where they go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Named in logs, `alert_logs` and stats (never the URL).
    pub name: String,
    /// slack, discord, webhook or email.
    pub kind: ChannelKind,
    /// Alerts below this severity are not sent here.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Only these categories (empty: all).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Webhook URL. Its path and query are the credential, so only its
    /// scheme and host are ever printed, logged or stored.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_url_origin")]
    pub url: Option<Secret>,
    /// SMTP host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// SMTP port (default: 587 with STARTTLS, 465 with TLS, 25 without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// STARTTLS (default), implicit TLS or none.
    #[serde(default)]
    pub tls: SmtpTls,
    /// PEM file of a CA to trust besides the public roots (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// SMTP user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// SMTP password (or `HAVEND_ALERT_{NAME}_PASSWORD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Sender address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
}

fn default_min_severity() -> Severity {
    Severity::Info
}

fn serialize_url_origin<S: serde::Serializer>(url: &Option<Secret>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&format!("{}/{}", crate::redact::url_origin(url.expose()), super::REDACTED)),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, DAEMON_FILE};

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DAEMON_FILE), text).unwrap();
        Config::load_with_env(dir.path(), |key| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())).map_err(|e| e.to_string())
    }

    const CHANNELS: &str = r#"
[alerts]
throttle_window_secs = 60

[[alerts.channels]]
name = "ops-slack"
kind = "slack"
url = "https://hooks.slack.com/services/T0/B0/SECRETPATH"
min_severity = "WARNING"

[[alerts.channels]]
name = "oncall"
kind = "email"
min_severity = "critical"
categories = ["foreign_nonce"]
host = "smtp.example.com"
username = "havend"
password = "SMTPPASS"
from = "havend@example.com"
to = ["ops@example.com"]
"#;

    #[test]
    fn channels_are_read_with_their_filters_and_defaults() {
        let config = load(CHANNELS, &[]).unwrap();
        let alerts = &config.alerts;
        assert_eq!(alerts.throttle_window_secs, 60);
        assert_eq!(alerts.timeout_ms, super::DEFAULT_ALERT_TIMEOUT_MS);
        assert_eq!(alerts.channels[0].min_severity, crate::severity::Severity::Warning);
        assert_eq!(alerts.channels[1].min_severity, crate::severity::Severity::Critical);
        assert_eq!(alerts.channels[1].categories, ["foreign_nonce"]);
        assert_eq!(alerts.channels[1].tls, super::SmtpTls::Starttls);
    }

    #[test]
    fn check_config_shows_neither_the_webhook_path_nor_the_smtp_password() {
        let printed = load(CHANNELS, &[]).unwrap().to_redacted_toml();
        assert!(!printed.contains("SECRETPATH") && !printed.contains("SMTPPASS"), "{printed}");
        assert!(printed.contains("url = \"https://hooks.slack.com/[redacted]\""), "{printed}");
    }

    #[test]
    fn environment_replaces_channel_secrets() {
        let env = [("HAVEND_ALERT_OPS_SLACK_URL", "https://hooks.slack.com/services/FROM/ENV"), ("HAVEND_ALERT_ONCALL_PASSWORD", "envpass")];
        let config = load(CHANNELS, &env).unwrap();
        assert_eq!(config.alerts.channels[0].url.as_ref().unwrap().expose(), "https://hooks.slack.com/services/FROM/ENV");
        assert_eq!(config.alerts.channels[1].password.as_ref().unwrap().expose(), "envpass");
    }

    #[test]
    fn invalid_channels_are_reported_by_key_without_quoting_the_url() {
        let text = r#"
[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "ftp://example.com/SECRETPATH"

[[alerts.channels]]
name = "hook"
kind = "email"
tls = "none"
username = "u"
password = "p"
to = []
"#;
        let error = load(text, &[]).unwrap_err();
        for key in ["alerts.channels[0].url", "alerts.channels[1].name", "alerts.channels[1].host", "alerts.channels[1].from", "alerts.channels[1].to", "alerts.channels[1].tls"] {
            assert!(error.contains(key), "{key} in {error}");
        }
        assert!(!error.contains("SECRETPATH"), "{error}");
    }

    #[test]
    fn a_claim_outlasts_the_slowest_delivery_of_every_channel() {
        let config = load(CHANNELS, &[]).unwrap().alerts;
        // 2 channels × (4 attempts × 10 s + 3 waits × 30 s doubled by jitter) + 30 s margin.
        assert_eq!(config.lease(), std::time::Duration::from_secs(2 * (40 + 180) + 30));
    }
}
