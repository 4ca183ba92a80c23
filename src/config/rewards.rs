//! The reward rules file (`rewards.toml`): every rate, tier, multiplier,
//! threshold and bonus of SPEC section 2, with the SPEC's defaults. What the
//! rules mean (the amounts) is in `crate::rewards::rules`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ConfigError, REWARDS_FILE, invalid};

/// Every reward rule; one snapshot is used per processing transaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardRules {
    /// Aurora (hotel bookings and reviews).
    pub aurora: AuroraRules,
    /// Tribe (community events, contributions, coaching, referrals, staking).
    pub tribe: TribeRules,
    /// Stripe payments.
    pub stripe: StripeRules,
    /// Weekly staking yield.
    pub staking: StakingRules,
    /// Guards against a leaked partner secret.
    pub limits: MintLimits,
}

/// Aurora's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuroraRules {
    /// HNV per CAD of a booking's total price.
    pub hnv_per_cad: Decimal,
    /// Applied when a booking has more than one night.
    pub multi_night_multiplier: Decimal,
    /// HNV for a good review, once per booking.
    pub review_bonus: Decimal,
    /// Lowest rating (1-5) that earns the review bonus.
    pub review_min_rating: i64,
    /// A review whose booking has not arrived waits this long, then alerts.
    pub review_wait_days: i64,
}

impl Default for AuroraRules {
    fn default() -> Self {
        Self {
            hnv_per_cad: dec!(2),
            multi_night_multiplier: dec!(1.2),
            review_bonus: dec!(50),
            review_min_rating: 4,
            review_wait_days: 7,
        }
    }
}

/// Tribe's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TribeRules {
    /// HNV per attended event, by event type (lowercase).
    pub attendance: BTreeMap<String, Decimal>,
    /// HNV for an attended event of a type not listed above.
    pub attendance_default: Decimal,
    /// HNV for a contribution before the quality multiplier.
    pub contribution_base: Decimal,
    /// The quality multiplier is the score clamped to at least this...
    pub quality_min: Decimal,
    /// ...and at most this.
    pub quality_max: Decimal,
    /// HNV per coaching milestone (lowercase name); another name is invalid.
    pub coaching: BTreeMap<String, Decimal>,
    /// HNV per referral tier (lowercase).
    pub referral: BTreeMap<String, Decimal>,
}

impl Default for TribeRules {
    fn default() -> Self {
        Self {
            attendance: [("wisdom_circle", dec!(100)), ("workshop", dec!(75)), ("networking", dec!(50))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            attendance_default: dec!(25),
            contribution_base: dec!(50),
            quality_min: dec!(0.5),
            quality_max: dec!(2.0),
            coaching: [("first_session", dec!(100)), ("midpoint", dec!(150)), ("completion", dec!(250))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            referral: [("basic", dec!(100)), ("silver", dec!(250)), ("gold", dec!(500))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }
}

/// Stripe's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripeRules {
    /// HNV per major unit, by ISO 4217 code (uppercase); a payment in a
    /// currency without a rate is stored `invalid`.
    pub hnv_per_major_unit: BTreeMap<String, Decimal>,
}

impl Default for StripeRules {
    fn default() -> Self {
        Self {
            hnv_per_major_unit: ["CAD", "USD", "EUR", "GBP", "JPY"].into_iter().map(|c| (c.to_owned(), dec!(1))).collect(),
        }
    }
}

/// Staking yield.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StakingRules {
    /// Yearly yield (0.10 = 10 %), paid weekly as amount × apy × 7/365.
    pub apy: Decimal,
    /// The timezone whose Mondays key the weekly payouts (IANA name).
    pub timezone: String,
}

impl Default for StakingRules {
    fn default() -> Self {
        Self { apy: dec!(0.10), timezone: "UTC".into() }
    }
}

/// Mint limits in HNV; an intent over one is `held` for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MintLimits {
    /// Largest mint one event (or API call) may cause.
    pub max_per_event: Decimal,
    /// Most one user may receive per UTC day.
    pub per_user_per_day: Decimal,
    /// Most all users together may receive per UTC day.
    pub total_per_day: Decimal,
}

impl Default for MintLimits {
    fn default() -> Self {
        Self { max_per_event: dec!(10000), per_user_per_day: dec!(25000), total_per_day: dec!(1000000) }
    }
}

impl RewardRules {
    /// Problems with the rules, as (`key`, problem) pairs; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut non_negative = |key: &str, value: Decimal| {
            if value.is_sign_negative() {
                problems.push((key.to_owned(), "must not be negative".to_owned()));
            }
        };
        non_negative("aurora.hnv_per_cad", self.aurora.hnv_per_cad);
        non_negative("aurora.multi_night_multiplier", self.aurora.multi_night_multiplier);
        non_negative("aurora.review_bonus", self.aurora.review_bonus);
        non_negative("tribe.attendance_default", self.tribe.attendance_default);
        non_negative("tribe.contribution_base", self.tribe.contribution_base);
        non_negative("tribe.quality_min", self.tribe.quality_min);
        non_negative("staking.apy", self.staking.apy);
        non_negative("limits.max_per_event", self.limits.max_per_event);
        non_negative("limits.per_user_per_day", self.limits.per_user_per_day);
        non_negative("limits.total_per_day", self.limits.total_per_day);
        for (table, map) in [
            ("tribe.attendance", &self.tribe.attendance),
            ("tribe.coaching", &self.tribe.coaching),
            ("tribe.referral", &self.tribe.referral),
            ("stripe.hnv_per_major_unit", &self.stripe.hnv_per_major_unit),
        ] {
            for (name, value) in map {
                non_negative(&format!("{table}.{name}"), *value);
            }
        }
        if !(1..=5).contains(&self.aurora.review_min_rating) {
            problems.push(("aurora.review_min_rating".into(), "must be from 1 to 5".into()));
        }
        if self.aurora.review_wait_days < 1 {
            problems.push(("aurora.review_wait_days".into(), "must be at least 1".into()));
        }
        if self.tribe.quality_min > self.tribe.quality_max {
            problems.push(("tribe.quality_min".into(), "must not exceed tribe.quality_max".into()));
        }
        for code in self.stripe.hnv_per_major_unit.keys() {
            if minor_unit_exponent(code).is_none() {
                problems.push((format!("stripe.hnv_per_major_unit.{code}"), "not an ISO 4217 currency code (uppercase) havend knows".into()));
            }
        }
        for (table, map) in [("tribe.attendance", &self.tribe.attendance), ("tribe.coaching", &self.tribe.coaching), ("tribe.referral", &self.tribe.referral)] {
            for name in map.keys() {
                if name.chars().any(|c| c.is_ascii_uppercase()) {
                    problems.push((format!("{table}.{name}"), "names are matched in lowercase; write them so".into()));
                }
            }
        }
        if self.staking.timezone.parse::<chrono_tz::Tz>().is_err() {
            problems.push(("staking.timezone".into(), "not an IANA timezone name (e.g. UTC, America/Toronto)".into()));
        }
        problems
    }

    /// Reports [`Self::problems`] as errors in `rewards.toml`.
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        for (key, problem) in self.problems() {
            errors.push(invalid(REWARDS_FILE, key, problem));
        }
    }

    /// The hash stored on every intent computed with these rules: SHA-256 of
    /// their canonical JSON (maps are ordered, decimals are strings).
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("rules serialize");
        hex::encode(Sha256::digest(canonical))
    }
}

/// Digits after the decimal point of a currency's minor unit (ISO 4217), for
/// the currencies Stripe settles; `None` for a code havend does not know.
pub fn minor_unit_exponent(code: &str) -> Option<u32> {
    const ZERO: &[&str] = &["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"];
    const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    const TWO: &[&str] = &[
        "AED", "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "MXN", "MYR",
        "NOK", "NZD", "PHP", "PLN", "RON", "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "USD", "ZAR",
    ];
    if ZERO.contains(&code) {
        Some(0)
    } else if THREE.contains(&code) {
        Some(3)
    } else if TWO.contains(&code) {
        Some(2)
    } else {
        None
    }
}

