//! The webhook rate limiters (governor's GCRA): one per partner with a
//! limit, and one keyed by client IP. [`RateLimits`] follows the hot-reloaded
//! config: each request compares the few configured values with those the
//! limiters were built from, and only a changed limit is rebuilt (the others
//! keep their state, so a reload does not hand everyone a fresh burst).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::guard::{rate_key, retry_after_secs};
use crate::config::{Config, RateLimit};
use crate::webhooks::Partner;

/// How often the per-IP limiter forgets clients whose state is back to
/// fresh, so its map holds only recently active addresses.
pub const RATE_LIMIT_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// A limiter and the limit it was built with.
struct Limited<L> {
    limit: RateLimit,
    limiter: Arc<L>,
}

impl<L> Clone for Limited<L> {
    fn clone(&self) -> Self {
        Self { limit: self.limit, limiter: self.limiter.clone() }
    }
}

/// One config's worth of limiters.
#[derive(Default)]
struct Limiters {
    /// Partners with a limit; a partner missing here is unlimited.
    partners: BTreeMap<Partner, Limited<DefaultDirectRateLimiter>>,
    /// Webhook requests per client IP (IPv6: per /64), when configured.
    per_ip: Option<Limited<DefaultKeyedRateLimiter<IpAddr>>>,
}

impl Limiters {
    /// Whether these limiters are exactly what `config` asks for.
    fn match_config(&self, config: &Config) -> bool {
        let partners_with_limit = config.partners.values().filter(|p| p.rate_limit().is_some()).count();
        self.per_ip.as_ref().map(|l| l.limit) == config.webhooks.per_ip_rate_limit()
            && self.partners.len() == partners_with_limit
            && config
                .partners
                .iter()
                .all(|(partner, p)| self.partners.get(partner).map(|l| l.limit) == p.rate_limit())
    }

    /// Limiters for `config`, reusing (with their state) those of `self`
    /// whose limit did not change.
    fn rebuilt_for(&self, config: &Config) -> Limiters {
        let partners = config
            .partners
            .iter()
            .filter_map(|(partner, p)| {
                let limit = p.rate_limit()?;
                let kept = self.partners.get(partner).filter(|l| l.limit == limit).cloned();
                Some((*partner, kept.unwrap_or_else(|| Limited { limit, limiter: Arc::new(RateLimiter::direct(quota(limit))) })))
            })
            .collect();
        let per_ip = config.webhooks.per_ip_rate_limit().map(|limit| {
            let kept = self.per_ip.as_ref().filter(|l| l.limit == limit).cloned();
            kept.unwrap_or_else(|| Limited { limit, limiter: Arc::new(RateLimiter::keyed(quota(limit))) })
        });
        Limiters { partners, per_ip }
    }
}

fn quota(limit: RateLimit) -> Quota {
    Quota::per_second(limit.per_sec).allow_burst(limit.burst)
}

/// The rate limiters in force, kept in `AppState`.
pub struct RateLimits {
    /// The limiters for the config last seen.
    current: ArcSwap<Limiters>,
    /// Serializes rebuilds, so two requests that see a new config at once
    /// do not build two sets of limiters (one of which would be lost).
    rebuild: Mutex<()>,
}

impl RateLimits {
    /// Limiters for `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            current: ArcSwap::from_pointee(Limiters::default().rebuilt_for(config)),
            rebuild: Mutex::new(()),
        }
    }

    /// The limiters for `config`, rebuilt if its limits changed since the last request.
    fn for_config(&self, config: &Config) -> Arc<Limiters> {
        let limiters = self.current.load_full();
        if limiters.match_config(config) {
            return limiters;
        }
        // No await while held; a poisoned lock only means a panic elsewhere mid-rebuild.
        let _rebuilding = self.rebuild.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let limiters = self.current.load_full();
        if limiters.match_config(config) {
            return limiters;
        }
        let rebuilt = Arc::new(limiters.rebuilt_for(config));
        self.current.store(rebuilt.clone());
        rebuilt
    }

    /// Counts one request from `client`; `Err(seconds)` when it is over the
    /// per-IP limit (the `Retry-After`).
    pub fn check_ip(&self, config: &Config, client: IpAddr) -> Result<(), u32> {
        let limiters = self.for_config(config);
        let Some(per_ip) = &limiters.per_ip else { return Ok(()) };
        let limiter = &per_ip.limiter;
        limiter.check_key(&rate_key(client)).map_err(|refused| retry_after_secs(refused.wait_time_from(limiter.clock().now())))
    }

    /// Counts one request of `partner`; `Err(seconds)` when it is over the
    /// partner's limit (the `Retry-After`).
    pub fn check_partner(&self, config: &Config, partner: Partner) -> Result<(), u32> {
        let limiters = self.for_config(config);
        let Some(limited) = limiters.partners.get(&partner) else { return Ok(()) };
        let limiter = &limited.limiter;
        limiter.check().map_err(|refused| retry_after_secs(refused.wait_time_from(limiter.clock().now())))
    }

    /// Forgets clients whose limiter state is back to fresh, so the per-IP
    /// map does not grow with every address ever seen. Returns the clients
    /// still tracked.
    pub fn purge(&self) -> usize {
        let limiters = self.current.load();
        let Some(per_ip) = &limiters.per_ip else { return 0 };
        per_ip.limiter.retain_recent();
        per_ip.limiter.shrink_to_fit();
        per_ip.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PartnerConfig;

    fn config(partner_rate: Option<u32>, ip_rate: Option<u32>) -> Config {
        let mut config = Config::default();
        config.partners.insert(Partner::Aurora, PartnerConfig { rate_limit_per_sec: partner_rate, ..PartnerConfig::default() });
        config.partners.insert(Partner::Tribe, PartnerConfig::default());
        config.webhooks.per_ip_rate_limit_per_sec = ip_rate;
        config
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_limits_nothing_is_refused() {
        let config = config(None, None);
        let limits = RateLimits::new(&config);
        for _ in 0..1_000 {
            assert!(limits.check_partner(&config, Partner::Aurora).is_ok());
            assert!(limits.check_ip(&config, ip("192.0.2.1")).is_ok());
        }
    }

    #[test]
    fn a_partner_over_its_burst_is_refused_with_a_wait_of_at_least_a_second() {
        let mut config = config(Some(1), None);
        config.partners.get_mut(&Partner::Aurora).unwrap().rate_limit_burst = Some(3);
        let limits = RateLimits::new(&config);
        for _ in 0..3 {
            assert!(limits.check_partner(&config, Partner::Aurora).is_ok());
        }
        assert_eq!(limits.check_partner(&config, Partner::Aurora), Err(1));
        assert!(limits.check_partner(&config, Partner::Tribe).is_ok(), "other partners keep their own (no) limit");
    }

    #[test]
    fn each_client_has_its_own_quota() {
        let config = config(None, Some(1));
        let limits = RateLimits::new(&config);
        assert!(limits.check_ip(&config, ip("192.0.2.1")).is_ok());
        assert!(limits.check_ip(&config, ip("192.0.2.1")).is_err());
        assert!(limits.check_ip(&config, ip("192.0.2.2")).is_ok());
        assert!(limits.check_ip(&config, ip("2001:db8::1")).is_ok());
        assert!(limits.check_ip(&config, ip("2001:db8::2")).is_err(), "one /64, one quota");
    }

    #[test]
    fn limits_follow_a_reloaded_config_and_unchanged_ones_keep_their_state() {
        let before = config(Some(1), Some(1));
        let limits = RateLimits::new(&before);
        assert!(limits.check_partner(&before, Partner::Aurora).is_ok());
        assert!(limits.check_partner(&before, Partner::Aurora).is_err());
        assert!(limits.check_ip(&before, ip("192.0.2.1")).is_ok());

        // Same values in a new snapshot: nothing rebuilt, still exhausted.
        let same = config(Some(1), Some(1));
        assert!(limits.check_partner(&same, Partner::Aurora).is_err());

        // The per-IP limit changes: it is rebuilt, the partner's is kept.
        let ip_changed = config(Some(1), Some(2));
        assert!(limits.check_partner(&ip_changed, Partner::Aurora).is_err());
        assert!(limits.check_ip(&ip_changed, ip("192.0.2.1")).is_ok());

        // The partner's limit is lifted, then set higher: a fresh limiter.
        let lifted = config(None, Some(2));
        assert!(limits.check_partner(&lifted, Partner::Aurora).is_ok());
        let raised = config(Some(5), Some(2));
        for _ in 0..5 {
            assert!(limits.check_partner(&raised, Partner::Aurora).is_ok());
        }
        assert!(limits.check_partner(&raised, Partner::Aurora).is_err());
    }

    #[test]
    fn purge_forgets_clients_whose_state_is_fresh_again() {
        // 1,000/s: a client's state is fresh again 1 ms after its request.
        let config = config(None, Some(1_000));
        let limits = RateLimits::new(&config);
        for last in 1..=50u8 {
            assert!(limits.check_ip(&config, IpAddr::from([192, 0, 2, last])).is_ok());
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(limits.purge(), 0);
    }
}
