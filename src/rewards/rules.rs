//! What the reward rules mean: pure functions from an event's facts to an
//! exact amount of HNV. Amounts here are decimals of HNV;
//! [`super::amount::to_base_units`] is the one place they become base units.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use crate::config::rewards::minor_unit_exponent;
pub use crate::config::rewards::RewardRules;

impl RewardRules {
    /// A booking's reward: total × rate, × the multiplier when nights > 1.
    /// `None` when the product does not fit a decimal: partner data never
    /// panics the processor, the event fails deterministically instead.
    pub fn booking(&self, total_price_cad: Decimal, nights: i64) -> Option<Decimal> {
        let base = total_price_cad.checked_mul(self.aurora.hnv_per_cad)?;
        if nights > 1 { base.checked_mul(self.aurora.multi_night_multiplier) } else { Some(base) }
    }

    /// The review bonus for `rating`, if it earns one.
    pub fn review(&self, rating: i64) -> Option<Decimal> {
        (rating >= self.aurora.review_min_rating).then_some(self.aurora.review_bonus)
    }

    /// An attendance's reward; nothing when the member did not attend.
    pub fn attendance(&self, event_type: &str, attended: bool) -> Option<Decimal> {
        if !attended {
            return None;
        }
        let kind = event_type.trim().to_ascii_lowercase();
        Some(self.tribe.attendance.get(&kind).copied().unwrap_or(self.tribe.attendance_default))
    }

    /// A contribution's reward: base × the quality score clamped to the bounds.
    /// `None` when the product overflows.
    pub fn contribution(&self, quality_score: Decimal) -> Option<Decimal> {
        self.tribe.contribution_base.checked_mul(quality_score.clamp(self.tribe.quality_min, self.tribe.quality_max))
    }

    /// A coaching milestone's reward; `None` for a milestone with no tier (`invalid`).
    pub fn coaching(&self, milestone: &str) -> Option<Decimal> {
        self.tribe.coaching.get(&milestone.trim().to_ascii_lowercase()).copied()
    }

    /// A referral's reward by tier.
    pub fn referral(&self, tier: &str) -> Option<Decimal> {
        self.tribe.referral.get(&tier.trim().to_ascii_lowercase()).copied()
    }

    /// A Stripe payment's reward: `amount` in the currency's minor unit;
    /// `None` when the currency has no rate (`invalid`).
    pub fn payment(&self, amount_minor: i64, currency: &str) -> Option<Result<Decimal, Overflow>> {
        let code = currency.trim().to_ascii_uppercase();
        let rate = self.stripe.hnv_per_major_unit.get(&code)?;
        let exponent = minor_unit_exponent(&code)?;
        Some(Decimal::try_from_i128_with_scale(i128::from(amount_minor), exponent).ok().and_then(|a| a.checked_mul(*rate)).ok_or(Overflow))
    }

    /// One week's staking yield on `staked`: staked × apy × 7 / 365.
    /// `None` when the product overflows.
    pub fn weekly_yield(&self, staked: Decimal) -> Option<Decimal> {
        staked.checked_mul(self.staking.apy)?.checked_mul(dec!(7))?.checked_div(dec!(365))
    }
}

/// A reward whose arithmetic does not fit a decimal (an absurd amount or rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the reward's arithmetic overflows")]
pub struct Overflow;

/// Hi.Events' status mapped to havend's (SPEC section 2).
pub fn ticketing_status(partner_status: &str) -> &'static str {
    match partner_status.trim().to_ascii_uppercase().as_str() {
        "LIVE" => "active",
        "CANCELLED" | "ENDED" => "inactive",
        _ => "setup",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::amount::to_base_units;

    fn units(amount: Decimal) -> String {
        to_base_units(amount).unwrap().to_string()
    }

    #[test]
    fn booking_rewards_apply_the_multiplier_only_above_one_night() {
        let rules = RewardRules::default();
        let cases = [
            ("200", 1, "400000000000000000000"),
            ("200", 2, "480000000000000000000"),
            ("330.50", 2, "793200000000000000000"),
            ("0.01", 1, "20000000000000000"),
        ];
        for (price, nights, expected) in cases {
            assert_eq!(units(rules.booking(price.parse().unwrap(), nights).unwrap()), expected, "{price} CAD, {nights} nights");
        }
    }

    #[test]
    fn a_price_with_more_decimals_than_the_chain_keeps_is_rounded_toward_zero() {
        let rules = RewardRules::default();
        // 0.0000000000000000007 CAD × 2 × 1.2 = 0.00000000000000000168 HNV → 1 base unit.
        assert_eq!(units(rules.booking("0.0000000000000000007".parse().unwrap(), 2).unwrap()), "1");
        assert_eq!(units(rules.booking("0.0000000000000000001".parse().unwrap(), 1).unwrap()), "0");
    }

    #[test]
    fn rewards_too_large_for_a_decimal_are_an_error_not_a_panic() {
        let rules = RewardRules::default();
        let huge: Decimal = "50000000000000000000000000000".parse().unwrap();
        assert_eq!(rules.booking(huge, 2), None);
        assert_eq!(rules.contribution(Decimal::MAX), rules.contribution(rules.tribe.quality_max), "clamped first");
        assert!(rules.weekly_yield(Decimal::MAX).is_some(), "a 10% yield of the largest decimal still fits");
        use crate::webhooks::event::{MAX_BOOKING_PRICE, MAX_NIGHTS};
        assert!(rules.booking(MAX_BOOKING_PRICE, MAX_NIGHTS).is_some(), "the largest booking intake accepts has a reward");
        assert_eq!(rules.payment(i64::MAX, "jpy"), Some(Ok("9223372036854775807".parse::<Decimal>().unwrap())));
    }

    #[test]
    fn review_bonus_starts_at_the_minimum_rating() {
        let rules = RewardRules::default();
        assert_eq!(rules.review(3), None);
        assert_eq!(rules.review(4), Some(dec!(50)));
        assert_eq!(rules.review(5), Some(dec!(50)));
    }

    #[test]
    fn attendance_pays_by_type_with_a_default_and_nothing_when_absent() {
        let rules = RewardRules::default();
        assert_eq!(rules.attendance("wisdom_circle", true), Some(dec!(100)));
        assert_eq!(rules.attendance("Workshop", true), Some(dec!(75)));
        assert_eq!(rules.attendance("networking", true), Some(dec!(50)));
        assert_eq!(rules.attendance("yoga", true), Some(dec!(25)));
        assert_eq!(rules.attendance("workshop", false), None);
    }

    #[test]
    fn contribution_quality_is_clamped() {
        let rules = RewardRules::default();
        assert_eq!(rules.contribution(dec!(0.1)), Some(dec!(25)));
        assert_eq!(rules.contribution(dec!(1.5)), Some(dec!(75)));
        assert_eq!(rules.contribution(dec!(5.0)), Some(dec!(100)));
        assert_eq!(rules.contribution(dec!(-3)), Some(dec!(25)));
    }

    #[test]
    fn coaching_and_referral_tiers_by_name() {
        let rules = RewardRules::default();
        assert_eq!(rules.coaching("first_session"), Some(dec!(100)));
        assert_eq!(rules.coaching("midpoint"), Some(dec!(150)));
        assert_eq!(rules.coaching("Completion"), Some(dec!(250)));
        assert_eq!(rules.coaching("3"), None);
        assert_eq!(rules.referral("basic"), Some(dec!(100)));
        assert_eq!(rules.referral("SILVER"), Some(dec!(250)));
        assert_eq!(rules.referral("gold"), Some(dec!(500)));
        assert_eq!(rules.referral("platinum"), None);
    }

    #[test]
    fn payments_read_the_currency_minor_unit() {
        let rules = RewardRules::default();
        assert_eq!(units(rules.payment(500, "jpy").unwrap().unwrap()), "500000000000000000000");
        assert_eq!(units(rules.payment(500, "cad").unwrap().unwrap()), "5000000000000000000");
        assert_eq!(units(rules.payment(1999, "USD").unwrap().unwrap()), "19990000000000000000");
        assert_eq!(rules.payment(500, "chf"), None, "no rate configured");
        assert_eq!(rules.payment(500, "xyz"), None);
    }

    #[test]
    fn weekly_yield_is_seven_365ths_of_the_apy() {
        let rules = RewardRules::default();
        // 1000 × 0.10 × 7 / 365 = 1.917808219178082191780821917… → 18 decimals, toward zero.
        assert_eq!(units(rules.weekly_yield(dec!(1000)).unwrap()), "1917808219178082191");
    }

    #[test]
    fn ticketing_statuses_map_as_the_spec_says() {
        assert_eq!(ticketing_status("LIVE"), "active");
        assert_eq!(ticketing_status("DRAFT"), "setup");
        assert_eq!(ticketing_status("CANCELLED"), "inactive");
        assert_eq!(ticketing_status("ENDED"), "inactive");
        assert_eq!(ticketing_status("PAUSED"), "setup");
    }

    #[test]
    fn the_hash_changes_with_any_rule_and_not_otherwise() {
        let rules = RewardRules::default();
        assert_eq!(rules.hash(), RewardRules::default().hash());
        let mut other = RewardRules::default();
        other.tribe.referral.insert("gold".into(), dec!(501));
        assert_ne!(rules.hash(), other.hash());
    }

    #[test]
    fn invalid_rules_are_named_by_key() {
        let mut rules = RewardRules::default();
        rules.aurora.hnv_per_cad = dec!(-1);
        rules.stripe.hnv_per_major_unit.insert("usd".into(), dec!(1));
        rules.staking.timezone = "Mars/Olympus".into();
        let keys: Vec<String> = rules.problems().into_iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&"aurora.hnv_per_cad".to_owned()));
        assert!(keys.contains(&"stripe.hnv_per_major_unit.usd".to_owned()));
        assert!(keys.contains(&"staking.timezone".to_owned()));
        assert!(RewardRules::default().problems().is_empty());
    }
}
