//! `[processor]`, `[schedule]` and `[monitor]`: the daemon's background work
//! (the rewards processor, the scheduled jobs and the transaction monitor).

use serde::{Deserialize, Serialize};

use super::{ConfigError, DAEMON_FILE, invalid};

/// The largest `processor.batch` accepted: a run's multi-row inserts bind
/// about 20 parameters per intent, and PostgreSQL takes at most 65,535 in a
/// statement, so a larger claim would have every batch fall back to one
/// event at a time.
pub const MAX_PROCESSOR_BATCH: u64 = 1_000;

/// The longest `processor.transient_retry_max_secs` accepted.
pub const MAX_TRANSIENT_RETRY_SECS: u64 = 86_400;

/// The rewards processor: how it claims inbox events and retries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Whether this daemon processes inbox events at all; `false` makes a
    /// daemon that only stores webhooks (another daemon processes them).
    pub enabled: bool,
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
    /// First delay after a transient failure (database, no active wallet,
    /// no master key for a new user); doubles, with jitter, while the same
    /// event keeps failing.
    pub transient_retry_ms: u64,
    /// Longest delay between an event's transient retries.
    pub transient_retry_max_secs: u64,
    /// A transient condition lasting this long raises an alert.
    pub transient_alert_secs: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            workers: 1,
            batch: 64,
            poll_interval_ms: 1_000,
            lease_secs: 60,
            max_attempts: 5,
            retry_base_ms: 1_000,
            retry_max_secs: 3_600,
            transient_retry_ms: 2_000,
            transient_retry_max_secs: 60,
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

impl ProcessorConfig {
    /// Counts and intervals the processor cannot run with.
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.workers == 0 || self.batch == 0 || self.max_attempts < 1 {
            errors.push(invalid(DAEMON_FILE, "processor", "workers, batch and max_attempts must be at least 1"));
        }
        if self.lease_secs == 0 || self.poll_interval_ms == 0 {
            errors.push(invalid(DAEMON_FILE, "processor", "lease_secs and poll_interval_ms must be greater than 0"));
        }
        if self.batch > MAX_PROCESSOR_BATCH {
            errors.push(invalid(DAEMON_FILE, "processor.batch", format!("must be at most {MAX_PROCESSOR_BATCH}")));
        }
        // A retry further out than a day is a stuck event in disguise, and the
        // backoff's arithmetic stays far from overflow.
        if self.transient_retry_max_secs > MAX_TRANSIENT_RETRY_SECS {
            errors.push(invalid(DAEMON_FILE, "processor.transient_retry_max_secs", format!("must be at most {MAX_TRANSIENT_RETRY_SECS} (a day)")));
        }
    }
}

impl ScheduleConfig {
    /// The timezone, every job's cron expression, and the retention and timeout.
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            errors.push(invalid(DAEMON_FILE, "schedule.timezone", "not an IANA timezone name (e.g. UTC, Europe/Paris)"));
        }
        for (key, expression) in [
            ("schedule.aurora_sync", &self.aurora_sync),
            ("schedule.tribe_sync", &self.tribe_sync),
            ("schedule.staking_rewards", &self.staking_rewards),
            ("schedule.purge_bodies", &self.purge_bodies),
            ("schedule.cleanup", &self.cleanup),
        ] {
            if let Err(problem) = check_cron(expression) {
                errors.push(invalid(DAEMON_FILE, key, problem));
            }
        }
        if self.body_retention_days == 0 || self.sync_timeout_ms == 0 {
            errors.push(invalid(DAEMON_FILE, "schedule", "body_retention_days and sync_timeout_ms must be greater than 0"));
        }
    }
}

impl MonitorConfig {
    /// The monitor's interval and thresholds, and the gas hold's limit.
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.interval_secs == 0 || self.stalled_looks == 0 || self.gas_spike_factor < 2 {
            errors.push(invalid(DAEMON_FILE, "monitor", "interval_secs and stalled_looks must be at least 1, gas_spike_factor at least 2"));
        }
        if self.gas_hold && self.gas_hold_max_secs == 0 {
            errors.push(invalid(DAEMON_FILE, "monitor.gas_hold_max_secs", "must be at least 1 (turn the hold off with gas_hold = false)"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_larger_than_a_batch_statement_can_bind_is_refused() {
        let mut errors = Vec::new();
        ProcessorConfig { batch: MAX_PROCESSOR_BATCH, ..ProcessorConfig::default() }.validate(&mut errors);
        assert!(errors.is_empty());
        ProcessorConfig { batch: MAX_PROCESSOR_BATCH + 1, ..ProcessorConfig::default() }.validate(&mut errors);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn a_transient_retry_cap_beyond_a_day_is_refused() {
        let mut errors = Vec::new();
        ProcessorConfig { transient_retry_max_secs: MAX_TRANSIENT_RETRY_SECS, ..ProcessorConfig::default() }.validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        ProcessorConfig { transient_retry_max_secs: MAX_TRANSIENT_RETRY_SECS + 1, ..ProcessorConfig::default() }.validate(&mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
