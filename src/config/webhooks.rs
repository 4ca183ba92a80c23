//! `[webhooks]`: the rules every partner's webhooks share, and the rate
//! limits that `[webhooks]` and each partner in `partners.toml` configure.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use super::{ConfigError, DAEMON_FILE, invalid};

/// Signatures older than this are rejected (SPEC section 2).
pub const DEFAULT_TOLERANCE_PAST_SECS: i64 = 300;
/// Signatures dated further in the future than this are rejected.
pub const DEFAULT_TOLERANCE_FUTURE_SECS: i64 = 60;
/// Highest configurable rate (per second) of a rate limit: governor's
/// replenish interval is whole nanoseconds, and anything faster is no limit
/// in practice (leave the key out for that).
pub const MAX_RATE_LIMIT_PER_SEC: u32 = 1_000_000;

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

    /// The signature tolerances and the per-client-IP limit.
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.tolerance_past_secs <= 0 || self.tolerance_future_secs < 0 {
            errors.push(invalid(DAEMON_FILE, "webhooks.tolerance_past_secs", "tolerances must not be negative (past > 0)"));
        }
        check_rate_limit(DAEMON_FILE, "webhooks.per_ip_", self.per_ip_rate_limit_per_sec, self.per_ip_rate_limit_burst, errors);
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
    pub(super) fn from_config(per_sec: Option<u32>, burst: Option<u32>) -> Option<RateLimit> {
        let per_sec = NonZeroU32::new(per_sec?)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(per_sec);
        Some(RateLimit { per_sec, burst })
    }
}

/// Problems with a `{prefix}rate_limit_per_sec` / `{prefix}rate_limit_burst` pair.
pub(super) fn check_rate_limit(file: &str, prefix: &str, per_sec: Option<u32>, burst: Option<u32>, errors: &mut Vec<ConfigError>) {
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

