//! `partners.toml`: each partner's webhook scheme and secrets, its API for
//! the scheduled sync, and the guards in front of its webhooks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::webhooks::check_rate_limit;
use super::{Cidr, ConfigError, PARTNERS_FILE, RateLimit, Secret, invalid};
use crate::signing::Scheme;
use crate::webhooks::Partner;

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

/// `partners.toml` as written: partners by name, checked against
/// [`Partner`] when loaded.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartnersFile {
    #[serde(default)]
    pub(super) partners: BTreeMap<String, PartnerConfig>,
}

/// Each `sync_url`: only synced partners have one, and it must be HTTP(S).
pub(super) fn validate_sync_urls(partners: &BTreeMap<Partner, PartnerConfig>, errors: &mut Vec<ConfigError>) {
    for (partner, partner_config) in partners {
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
}

/// Each partner's secrets against its scheme, `sign_event`, its rate limit
/// and its address list. (Separate from [`validate_sync_urls`] because
/// `Config::validate` reports these errors last.)
pub(super) fn validate_secrets_and_guards(partners: &BTreeMap<Partner, PartnerConfig>, errors: &mut Vec<ConfigError>) {
    for (partner, partner_config) in partners {
        let key = format!("partners.{partner}.secrets");
        if partner_config.secrets.is_empty() {
            errors.push(invalid(PARTNERS_FILE, key.clone(), format!("at least one secret is required (or set {})", partner.secrets_env())));
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
