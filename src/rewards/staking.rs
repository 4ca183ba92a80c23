//! The weekly staking yield (SPEC section 5): for each active stake, every
//! completed week since it started that has no payout yet, keyed by the
//! week's Monday in the configured timezone. The key is the intent's source
//! (`staking:{stake}:{monday}`), so running the job twice, late, or on two
//! daemons at once pays each week once.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use entity::staking_records;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde::Serialize;

use super::amount::to_base_units;
use super::limits::{self, Admission};
use crate::chain::CallKind;
use crate::config::RewardRules;
use crate::custody::MasterKeys;
use crate::ledger::{self, LedgerError, NewIntent, Provenance};

/// What one run did.
#[derive(Debug, Default, Serialize)]
pub struct StakingReport {
    /// Stakes looked at.
    pub stakes: usize,
    /// Week payouts queued by this run.
    pub paid: usize,
    /// Week payouts that existed already.
    pub already_paid: usize,
    /// Week payouts queued but held over a mint limit.
    pub held: usize,
}

/// Why the job stopped.
#[derive(Debug, thiserror::Error)]
pub enum StakingError {
    /// The configured timezone is unknown (config validation prevents this).
    #[error("unknown timezone {0}")]
    Timezone(String),
    /// A payout could not be queued.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The limits could not be checked.
    #[error(transparent)]
    Limits(#[from] limits::LimitError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Mondays (in `tz`) of the weeks that began on or after the day the stake
/// started and ended by `as_of`.
pub fn completed_weeks(started_at: DateTime<Utc>, as_of: DateTime<Utc>, tz: Tz) -> Vec<NaiveDate> {
    let start_day = started_at.with_timezone(&tz).date_naive();
    let first_monday = start_day + Days::new(u64::from((7 - start_day.weekday().num_days_from_monday()) % 7));
    let mut weeks = Vec::new();
    let mut monday = first_monday;
    loop {
        let next_monday = monday + Days::new(7);
        let Some(week_end) = tz.from_local_datetime(&next_monday.and_hms_opt(0, 0, 0).expect("midnight exists")).earliest() else { break };
        if week_end.with_timezone(&Utc) > as_of {
            break;
        }
        weeks.push(monday);
        monday = next_monday;
    }
    weeks
}

/// Runs the job as of `as_of`; each stake's payouts commit in one transaction.
pub async fn run(db: &DatabaseConnection, keys: Option<&MasterKeys>, rules: &RewardRules, as_of: DateTime<Utc>) -> Result<StakingReport, StakingError> {
    let tz: Tz = rules.staking.timezone.parse().map_err(|_| StakingError::Timezone(rules.staking.timezone.clone()))?;
    let rules_hash = rules.hash();
    let stakes = staking_records::Entity::find().filter(staking_records::Column::Status.eq("active")).all(db).await?;
    let mut report = StakingReport { stakes: stakes.len(), ..StakingReport::default() };
    for stake in stakes {
        let Ok(staked) = stake.amount.parse::<Decimal>() else { continue };
        // An overflowing yield pays nothing rather than stopping the job for every other stake.
        let units = rules.weekly_yield(staked).and_then(|y| to_base_units(y).ok()).unwrap_or_default();
        if units.is_zero() {
            continue;
        }
        let txn = crate::db::begin_write(db).await?;
        let day = as_of.date_naive().to_string();
        for monday in completed_weeks(stake.started_at, as_of, tz) {
            let intent = NewIntent {
                user: stake.user_ref.clone(),
                kind: CallKind::Mint,
                amount: units,
                reason: format!("staking yield on {} HNV for the week of {monday}", stake.amount),
                source: format!("staking:{}:{monday}", stake.stake_id),
                reverses: None,
            };
            let provenance = Provenance { event_id: None, rules_hash: Some(rules_hash.clone()), limit_day: Some(day.clone()) };
            let enqueued = ledger::enqueue_with(&txn, keys, intent, provenance).await?;
            if !enqueued.created {
                report.already_paid += 1;
                continue;
            }
            report.paid += 1;
            if let Admission::Over(reason) = limits::admit(&txn, &rules.limits, &stake.user_ref, &day, units).await? {
                super::handlers::hold_intent(&txn, &enqueued.intent, &stake.user_ref, &reason).await?;
                report.held += 1;
            }
        }
        txn.commit().await?;
        // Crash-test hook (compiled in only with `test-hooks`): a daemon
        // killed between two stakes' commits, the rest of the job unpaid.
        fail::fail_point!("staking::after_stake");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn dates(weeks: &[NaiveDate]) -> Vec<String> {
        weeks.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_week_is_paid_once_it_has_ended() {
        // Started Wednesday 2026-11-04: the first full week is Monday 2026-11-09.
        let started = utc("2026-11-04T10:00:00Z");
        assert!(completed_weeks(started, utc("2026-11-15T23:59:59Z"), Tz::UTC).is_empty());
        assert_eq!(dates(&completed_weeks(started, utc("2026-11-16T00:00:00Z"), Tz::UTC)), ["2026-11-09"]);
        assert_eq!(dates(&completed_weeks(started, utc("2026-11-30T03:00:00Z"), Tz::UTC)), ["2026-11-09", "2026-11-16", "2026-11-23"]);
    }

    #[test]
    fn the_week_across_new_year_is_keyed_by_its_monday() {
        let started = utc("2026-12-28T00:00:00Z");
        assert_eq!(dates(&completed_weeks(started, utc("2027-01-04T03:00:00Z"), Tz::UTC)), ["2026-12-28"]);
    }

    #[test]
    fn mondays_are_dates_in_the_configured_timezone() {
        let toronto: Tz = "America/Toronto".parse().unwrap();
        // Monday 00:30 UTC is still Sunday evening in Toronto; both calendars
        // key the week by Monday 2026-11-09, but Toronto's week ends 5 h later.
        let started = utc("2026-11-09T00:30:00Z");
        assert_eq!(dates(&completed_weeks(started, utc("2026-11-16T04:59:00Z"), Tz::UTC)), ["2026-11-09"]);
        assert!(completed_weeks(started, utc("2026-11-16T04:59:00Z"), toronto).is_empty());
        assert_eq!(dates(&completed_weeks(started, utc("2026-11-16T05:00:00Z"), toronto)), ["2026-11-09"]);
    }
}
