//! The gas spike hold: while the transaction monitor sees the base fee over
//! `monitor.gas_spike_factor` × its baseline, non-urgent work waits.
//!
//! Non-urgent means a **mint** (a reward that may land minutes later at no
//! cost to anyone). Burns (reversals) never wait, since they take back tokens
//! a user should no longer hold, and neither does anything already signed:
//! a same-nonce replacement is a new attempt of signed work, never a reserve,
//! so no gas rule can keep the bump that unblocks a queue from going out.
//!
//! The monitor writes one `system_flags` row, the time the hold ends (the
//! spike's start plus `monitor.gas_hold_max_secs`), and clears it when the
//! fee falls back; each wallet actor reads it before it signs and again
//! inside its reserve transaction, like the minting pause. The deadline is
//! stored rather than a yes/no, so the cap holds even if no monitor is left
//! to clear the row (a crashed daemon): nothing waits longer than the cap.

use chrono::{DateTime, Utc};
use entity::system_flags;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};

use crate::chain::CallKind;

/// The row's name in `system_flags`; its value is an RFC 3339 deadline, or empty.
pub const GAS_HOLD_UNTIL: &str = "gas_hold_until";

/// Whether a kind of call waits out a gas spike.
pub fn waits_for_gas(kind: CallKind) -> bool {
    matches!(kind, CallKind::Mint)
}

/// Whether the stored flag holds non-urgent work at `now`: a deadline that
/// is still ahead. Empty, unreadable or past deadlines hold nothing, so a
/// damaged row fails open (work goes, the spike costs gas) rather than
/// stopping rewards.
pub fn holds_at(value: Option<&str>, now: DateTime<Utc>) -> bool {
    value
        .and_then(|value| DateTime::parse_from_rfc3339(value).ok())
        .is_some_and(|until| now < until.with_timezone(&Utc))
}

/// Writes the hold's deadline (`None`: no hold). Written by the monitor only
/// when its decision changes, so a quiet chain costs no writes.
pub async fn set_until(db: &impl ConnectionTrait, until: Option<DateTime<Utc>>, actor: &str) -> Result<(), DbErr> {
    super::set_system_flag(db, GAS_HOLD_UNTIL, until.map(|until| until.to_rfc3339()).unwrap_or_default(), actor).await
}

/// Whether non-urgent work is held now; read by the wallet actors.
pub async fn is_held(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let row = system_flags::Entity::find_by_id(GAS_HOLD_UNTIL.to_owned()).one(db).await?;
    Ok(holds_at(row.as_ref().map(|r| r.value.as_str()), now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_deadline_ahead_holds_and_one_behind_does_not() {
        let until = at(100).to_rfc3339();
        assert!(holds_at(Some(&until), at(99)));
        assert!(!holds_at(Some(&until), at(100)), "the cap is reached: work goes");
        assert!(!holds_at(Some(""), at(0)), "cleared");
        assert!(!holds_at(None, at(0)), "never set");
        assert!(!holds_at(Some("not a time"), at(0)), "a damaged row fails open");
    }

    #[test]
    fn only_mints_wait() {
        assert!(waits_for_gas(CallKind::Mint));
        assert!(!waits_for_gas(CallKind::Burn));
    }
}
