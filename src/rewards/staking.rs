//! The weekly staking yield (SPEC section 5): for each active stake, every
//! completed week since it started that has no payout yet, keyed by the
//! week's Monday in the configured timezone. The key is the intent's source
//! (`staking:{stake}:{monday}`), so running the job twice, late, or on two
//! daemons at once pays each week once.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use entity::{staking_records, transactions};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use super::amount::to_base_units;
use super::limits::{self, Admission};
use crate::chain::CallKind;
use crate::config::RewardRules;
use crate::custody::MasterKeys;
use crate::alert::{self, Severity};
use crate::ledger::{self, LedgerError, NewIntent, Provenance};
use crate::webhooks::event::EARLIEST_TIMESTAMP;

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
    /// Stakes with more unpaid weeks than [`MAX_WEEKS_PER_RUN`]: the rest is paid next run.
    pub deferred: usize,
    /// Stakes whose payouts failed this run (rolled back, alerted, tried
    /// again next run); the other stakes were paid regardless.
    pub failed: usize,
}

impl StakingReport {
    /// Adds one stake's committed tally.
    fn absorb(&mut self, stake: StakingReport) {
        self.paid += stake.paid;
        self.already_paid += stake.already_paid;
        self.held += stake.held;
        self.deferred += stake.deferred;
    }
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

/// Most new week payouts one run queues for one stake: a stake far behind
/// (backdated, or after a long outage) is caught up a year per run, so one
/// stake never holds the mint counters (or SQLite's write lock) for long.
pub const MAX_WEEKS_PER_RUN: usize = 52;

/// Mondays (in `tz`) of the weeks that began on or after the day the stake
/// started (never before intake's earliest timestamp, 2020-01-01) and ended
/// by `as_of`.
pub fn completed_weeks(started_at: DateTime<Utc>, as_of: DateTime<Utc>, tz: Tz) -> Vec<NaiveDate> {
    let earliest = DateTime::from_timestamp(EARLIEST_TIMESTAMP, 0).unwrap_or_default();
    let start_day = started_at.max(earliest).with_timezone(&tz).date_naive();
    let mut weeks = Vec::new();
    let mut next = start_day.checked_add_days(Days::new(u64::from((7 - start_day.weekday().num_days_from_monday()) % 7)));
    // Checked steps: a date at the calendar's end ends the walk, never panics.
    while let Some(monday) = next {
        next = monday.checked_add_days(Days::new(7));
        let Some(week_end) = next.and_then(|n| n.and_hms_opt(0, 0, 0)).and_then(|n| tz.from_local_datetime(&n).earliest()) else { break };
        if week_end.with_timezone(&Utc) > as_of {
            break;
        }
        weeks.push(monday);
    }
    weeks
}

/// Week sources looked up per query (well under either backend's bind limit).
const PAID_WEEKS_PER_QUERY: usize = 500;

/// Stakes named in the `staking_failed` alert, at most.
const FAILED_STAKES_NAMED: usize = 20;
/// Tries of one stake's transaction when it fails for a passing reason (a
/// lock, a serialization failure, a contended counter): the job runs weekly,
/// so giving up at once would delay the stake's payout by a week.
const STAKE_TRIES: u32 = 3;
/// Pause before trying a stake again, times the try number.
const STAKE_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

impl StakingError {
    /// Whether trying the same stake again may succeed.
    fn is_transient(&self) -> bool {
        use crate::db::{Failure, classify};
        match self {
            StakingError::Db(error)
            | StakingError::Ledger(LedgerError::Db(error) | LedgerError::Custody(crate::custody::CustodyError::Db(error)))
            | StakingError::Limits(limits::LimitError::Db(error)) => classify(error) == Failure::Transient,
            StakingError::Limits(limits::LimitError::Contended) => true,
            StakingError::Timezone(_) | StakingError::Ledger(_) => false,
        }
    }
}

/// Runs the job as of `as_of`. Each stake's payouts commit in a transaction
/// of their own, so a stake whose payouts fail (the database refuses one of
/// its rows) is rolled back, alerted and tried again next run, while every
/// other stake is paid.
pub async fn run(db: &DatabaseConnection, keys: Option<&MasterKeys>, rules: &RewardRules, as_of: DateTime<Utc>) -> Result<StakingReport, StakingError> {
    let tz: Tz = rules.staking.timezone.parse().map_err(|_| StakingError::Timezone(rules.staking.timezone.clone()))?;
    let job = Job { db, keys, rules, rules_hash: rules.hash(), tz, as_of, day: as_of.date_naive().to_string() };
    let stakes = staking_records::Entity::find().filter(staking_records::Column::Status.eq("active")).all(db).await?;
    let mut report = StakingReport { stakes: stakes.len(), ..StakingReport::default() };
    let mut failed = Vec::new();
    for stake in stakes {
        let Ok(staked) = stake.amount.parse::<Decimal>() else { continue };
        // An overflowing yield pays nothing rather than stopping the job for every other stake.
        let units = rules.weekly_yield(staked).and_then(|y| to_base_units(y).ok()).unwrap_or_default();
        if units.is_zero() {
            continue;
        }
        let mut tries = 1;
        let paid = loop {
            match job.pay(&stake, units).await {
                Err(error) if error.is_transient() && tries < STAKE_TRIES => {
                    tokio::time::sleep(STAKE_RETRY_PAUSE * tries).await;
                    tries += 1;
                }
                paid => break paid,
            }
        };
        match paid {
            Ok(tally) => report.absorb(tally),
            Err(error) => {
                warn!(stake = %stake.stake_id, user = %stake.user_ref, %error, "A stake's payouts failed and were rolled back; the other stakes are paid");
                failed.push((stake.stake_id, error.to_string()));
            }
        }
        // Crash-test hook (compiled in only with `test-hooks`): a daemon
        // killed between two stakes' commits, the rest of the job unpaid.
        fail::fail_point!("staking::after_stake");
    }
    report.failed = failed.len();
    if let Some((_, first_error)) = failed.first() {
        let named: Vec<&str> = failed.iter().take(FAILED_STAKES_NAMED).map(|(stake, _)| stake.as_str()).collect();
        alert::raise(
            db,
            Severity::Error,
            "staking_failed",
            &format!(
                "The staking job could not pay {} stake(s) ({}{}): {first_error}. The other stakes were paid; these are tried again next run.",
                failed.len(),
                named.join(", "),
                if failed.len() > named.len() { ", …" } else { "" }
            ),
            json!({ "failed": failed.len(), "stakes": named, "error": first_error }),
        )
        .await;
    }
    Ok(report)
}

/// One run's settings, shared by every stake.
struct Job<'a> {
    db: &'a DatabaseConnection,
    keys: Option<&'a MasterKeys>,
    rules: &'a RewardRules,
    rules_hash: String,
    tz: Tz,
    as_of: DateTime<Utc>,
    /// The UTC day the mint limits count on.
    day: String,
}

impl Job<'_> {
    /// Queues one stake's unpaid weeks in one transaction; its tally once committed.
    async fn pay(&self, stake: &staking_records::Model, units: alloy::primitives::U256) -> Result<StakingReport, StakingError> {
        let (rules, day) = (self.rules, &self.day);
        let mut report = StakingReport::default();
        let source = |monday: NaiveDate| format!("staking:{}:{monday}", stake.stake_id);
        // The weeks already paid, read in one query before the write
        // transaction (SQLite's lock): a stake years old does not walk every
        // paid week through the queue at every run. A week paid meanwhile is
        // still found by its unique source below.
        let weeks = completed_weeks(stake.started_at, self.as_of, self.tz);
        let mut paid = HashSet::new();
        for chunk in weeks.chunks(PAID_WEEKS_PER_QUERY) {
            let sources = chunk.iter().map(|monday| source(*monday));
            let found: Vec<String> = transactions::Entity::find()
                .select_only()
                .column(transactions::Column::Source)
                .filter(transactions::Column::Source.is_in(sources))
                .into_tuple()
                .all(self.db)
                .await?;
            paid.extend(found);
        }
        report.already_paid = paid.len();
        let txn = crate::db::begin_write(self.db).await?;
        let mut queued = 0;
        for monday in weeks.into_iter().filter(|monday| !paid.contains(&source(*monday))) {
            if queued == MAX_WEEKS_PER_RUN {
                report.deferred += 1;
                break;
            }
            let intent = NewIntent {
                user: stake.user_ref.clone(),
                kind: CallKind::Mint,
                amount: units,
                reason: format!("staking yield on {} HNV for the week of {monday}", stake.amount),
                source: source(monday),
                reverses: None,
            };
            let provenance = Provenance { event_id: None, rules_hash: Some(self.rules_hash.clone()), limit_day: Some(day.clone()) };
            let enqueued = ledger::enqueue_with(&txn, self.keys, intent, provenance).await?;
            if !enqueued.created {
                report.already_paid += 1;
                continue;
            }
            report.paid += 1;
            queued += 1;
            if let Admission::Over(reason) = limits::admit(&txn, &rules.limits, &stake.user_ref, day, units).await? {
                super::handlers::hold_intent(&txn, &enqueued.intent, &stake.user_ref, &reason).await?;
                report.held += 1;
            }
        }
        txn.commit().await?;
        Ok(report)
    }
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
    fn weeks_before_2020_and_at_the_end_of_the_calendar_are_never_walked() {
        let from_year_one = completed_weeks(utc("0001-01-01T00:00:00Z"), utc("2020-01-20T00:00:00Z"), Tz::UTC);
        assert_eq!(dates(&from_year_one), ["2020-01-06", "2020-01-13"]);
        let at_the_end = DateTime::<Utc>::MAX_UTC - chrono::Duration::days(3);
        assert!(completed_weeks(at_the_end, DateTime::<Utc>::MAX_UTC, Tz::UTC).is_empty());
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
