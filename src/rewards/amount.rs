//! The one rounding rule: HNV amounts become 18-decimal base units rounded
//! toward zero, so havend never mints a fraction of a base unit nobody earned.

use alloy::primitives::U256;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::chain::DECIMALS;

/// Why an amount cannot be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Rewards are never negative.
    #[error("amount {0} is negative")]
    Negative(Decimal),
}

/// `amount` HNV in base units, rounded toward zero at the 18th decimal.
pub fn to_base_units(amount: Decimal) -> Result<U256, AmountError> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(AmountError::Negative(amount));
    }
    let rounded = amount.round_dp_with_strategy(DECIMALS, RoundingStrategy::ToZero);
    let scale = rounded.scale();
    let mantissa = U256::from(rounded.mantissa().unsigned_abs());
    Ok(mantissa * U256::from(10u64).pow(U256::from(DECIMALS - scale)))
}

/// Base units as an exact HNV decimal string (`480`, `0.5`).
pub fn to_hnv(units: U256) -> String {
    crate::chain::format_units(units)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn whole_and_fractional_amounts_are_exact() {
        assert_eq!(to_base_units("480".parse().unwrap()).unwrap().to_string(), "480000000000000000000");
        assert_eq!(to_base_units("0.000000000000000001".parse().unwrap()).unwrap(), U256::from(1));
        assert_eq!(to_base_units("0.0000000000000000019".parse().unwrap()).unwrap(), U256::from(1));
        assert_eq!(to_base_units(Decimal::ZERO).unwrap(), U256::ZERO);
        assert!(to_base_units("-1".parse().unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn base_units_round_trip_any_amount_with_at_most_18_decimals(whole in 0u64..10_000_000_000, fraction in 0u64..1_000_000_000_000_000_000) {
            let text = format!("{whole}.{fraction:018}");
            let units = to_base_units(text.parse().unwrap()).unwrap();
            prop_assert_eq!(units, crate::chain::parse_units(&text).unwrap());
        }

        #[test]
        fn rounding_never_rounds_up(mantissa in 0i64..i64::MAX, scale in 0u32..28) {
            let amount = Decimal::new(mantissa, scale);
            let units = to_base_units(amount).unwrap();
            let back: Decimal = to_hnv(units).parse().unwrap();
            prop_assert!(back <= amount);
            prop_assert!(amount - back < Decimal::new(1, 18));
        }
    }
}
