//! Set-based processing: a run of claimed events is read with one query per
//! table, decided in memory by [`plan`], and written in one transaction of
//! multi-row statements, instead of one transaction of about ten
//! statements per event.
//!
//! The snapshot is read before the transaction (on SQLite, before its one
//! write lock is taken), so every write is conditional and counted: the
//! claims re-checked, new bookings and intents inserted only where none
//! exist, hot wallets still active, counters still within their limits.
//! Anything that does not come out as planned rolls the run back, and the
//! processor handles its events one at a time instead, each with its own
//! outcome; a claim lost meanwhile costs only its own event.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use chrono::{DateTime, Utc};
use entity::{aurora_bookings, mint_counters, staking_records, transactions, tribe_events, tribe_rewards, users, wallets, webhook_events};
use sea_orm::sea_query::{Expr, LockType, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect};
use uuid::Uuid;

pub use self::plan::{Item, Plan, Rules, Snapshot};
use super::inbox::{self, INVALID, PROCESSED};
use super::handlers::{self, HeldMint};
use super::limits::{self, Bounds};
use super::processor::Outcome;
use crate::alert::{self, Severity};
use crate::chain::CallKind;
use crate::custody::{self, MasterKeys, NewWallet};
use crate::ledger::{self, NewIntent, Provenance};

/// Histogram: seconds a run's write transaction is open (on SQLite, how long
/// it holds the one write lock), by `outcome` (`committed`, `rolled_back`).
pub const BATCH_WRITE_SECONDS: &str = "havend_processor_batch_write_seconds";

/// How a run's write ended.
#[derive(Debug)]
pub enum Written {
    /// Committed: every event of the run has its planned outcome.
    Committed,
    /// Rolled back; the events whose claims this processor still holds
    /// are to be handled one at a time (the others belong to another
    /// processor now). Says why, for the log.
    RolledBack { held: BTreeSet<Uuid>, why: String },
}

/// Why a write did not come out as planned.
#[derive(Debug, thiserror::Error)]
enum Diverged {
    #[error("{0}")]
    Conflict(String),
    #[error("claims lost")]
    Lost(BTreeSet<Uuid>),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

impl From<limits::LimitError> for Diverged {
    fn from(error: limits::LimitError) -> Self {
        match error {
            limits::LimitError::Db(error) => Diverged::Db(error),
            contended @ limits::LimitError::Contended => Diverged::Conflict(contended.to_string()),
        }
    }
}

/// Reads what `needs` names, one query per table.
pub async fn snapshot(db: &impl ConnectionTrait, needs: &plan::Needs) -> Result<Snapshot, DbErr> {
    let mut snapshot = Snapshot::default();
    if !needs.users.is_empty() {
        let found: Vec<(Uuid, String, Uuid)> = users::Entity::find()
            .select_only()
            .columns([users::Column::Id, users::Column::ExternalRef, users::Column::HotWalletId])
            .filter(users::Column::ExternalRef.is_in(needs.users.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        let hot: BTreeSet<Uuid> = found.iter().map(|(_, _, wallet)| *wallet).collect();
        let active: BTreeSet<Uuid> = wallets::Entity::find()
            .select_only()
            .column(wallets::Column::Id)
            .filter(wallets::Column::Id.is_in(hot))
            .filter(wallets::Column::Status.eq(crate::custody::ACTIVE))
            .into_tuple::<Uuid>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        if found.len() < needs.users.len() {
            snapshot.hot_wallets = ledger::active_hot_wallets(db).await?;
        }
        // A user whose wallet is rotating or revoked follows its work through
        // `ledger::assign_wallet`: the handler takes its events.
        for (id, reference, wallet) in found {
            if active.contains(&wallet) {
                snapshot.users.insert(reference, (id, wallet));
            } else {
                snapshot.moving.insert(reference);
            }
        }
    }
    if !needs.bookings.is_empty() {
        let found: Vec<(String, Option<String>)> = aurora_bookings::Entity::find()
            .select_only()
            .columns([aurora_bookings::Column::BookingId, aurora_bookings::Column::GuestRef])
            .filter(aurora_bookings::Column::BookingId.is_in(needs.bookings.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        snapshot.bookings = found.into_iter().map(|(id, guest)| (id, guest.is_some())).collect();
    }
    if !needs.sources.is_empty() {
        let found: Vec<(String, Uuid, Uuid)> = transactions::Entity::find()
            .select_only()
            .columns([transactions::Column::Source, transactions::Column::Id, transactions::Column::HotWalletId])
            .filter(transactions::Column::Source.is_in(needs.sources.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        snapshot.intents = found.into_iter().map(|(source, id, wallet)| (source, (id, wallet))).collect();
    }
    if !needs.counters.is_empty() {
        let scopes: BTreeSet<&String> = needs.counters.iter().map(|(scope, _)| scope).collect();
        let days: BTreeSet<&String> = needs.counters.iter().map(|(_, day)| day).collect();
        let found = mint_counters::Entity::find()
            .filter(mint_counters::Column::Scope.is_in(scopes.into_iter().cloned()))
            .filter(mint_counters::Column::Day.is_in(days.into_iter().cloned()))
            .all(db)
            .await?;
        for row in found {
            let used = U256::from_str_radix(&row.used, 10).map_err(|_| DbErr::Custom(format!("counter {}/{} holds {:?}", row.scope, row.day, row.used)))?;
            snapshot.counters.insert((row.scope, row.day), used);
        }
    }
    Ok(snapshot)
}

/// What a run's write needs besides the plan.
pub struct Target<'a> {
    /// The run's events, in order (as many as the plan has outcomes).
    pub events: &'a [&'a webhook_events::Model],
    /// The processor's claim token.
    pub token: Uuid,
    /// This daemon's name, recorded on processed events.
    pub daemon: &'a str,
    /// The limits the plan was decided with.
    pub bounds: Bounds,
    /// The rules' hash, stored on every intent.
    pub rules_hash: &'a str,
    /// The longest the transaction may stay open (half the lease).
    pub budget: Duration,
    /// To give new users their custodial wallets.
    pub keys: Option<&'a MasterKeys>,
}

/// Writes `plan` in one transaction: the run's effects and the final status
/// of its processed and invalid events. Waits and failures are left pending
/// for the processor to hand back after the commit.
pub async fn write(db: &sea_orm::DatabaseConnection, plan: &Plan, target: &Target<'_>) -> Result<Written, DbErr> {
    let held = || target.events.iter().map(|event| event.id).collect();
    // Keys are made before the transaction: no lock waits on them.
    let wallets = match new_wallets(plan, target.keys) {
        Ok(wallets) => wallets,
        Err(why) => return Ok(Written::RolledBack { held: held(), why }),
    };
    let started = Instant::now();
    let txn = crate::db::begin_write(db).await?;
    let result = match tokio::time::timeout(target.budget, write_in(&txn, plan, target, wallets)).await {
        Ok(result) => result,
        Err(_) => Err(Diverged::Conflict(format!("the batch did not commit within {} ms", target.budget.as_millis()))),
    };
    let written = match result {
        Ok(()) => {
            fail::fail_point!("processor::before_commit", |_| std::process::abort());
            match txn.commit().await {
                Ok(()) => Written::Committed,
                Err(error) => Written::RolledBack { held: held(), why: format!("commit: {error}") },
            }
        }
        Err(diverged) => {
            let _ = txn.rollback().await;
            match diverged {
                Diverged::Lost(held) => Written::RolledBack { held, why: "a claim lapsed".into() },
                other => Written::RolledBack { held: held(), why: other.to_string() },
            }
        }
    };
    let outcome = if matches!(written, Written::Committed) { "committed" } else { "rolled_back" };
    ::metrics::histogram!(BATCH_WRITE_SECONDS, "outcome" => outcome).record(started.elapsed().as_secs_f64());
    Ok(written)
}

/// A custodial wallet for each of the plan's new users.
fn new_wallets(plan: &Plan, keys: Option<&MasterKeys>) -> Result<Vec<NewWallet>, String> {
    if plan.new_users.is_empty() {
        return Ok(Vec::new());
    }
    let keys = keys.ok_or("new users need the master key")?;
    plan.new_users.iter().map(|_| custody::new_wallet(keys, custody::USER, "ledger").map_err(|error| error.to_string())).collect()
}

async fn write_in(txn: &impl ConnectionTrait, plan: &Plan, target: &Target<'_>, wallets: Vec<NewWallet>) -> Result<(), Diverged> {
    recheck_claims(txn, target).await?;
    lock_wallets(txn, plan).await?;
    insert_users(txn, plan, wallets).await?;
    let do_nothing = || OnConflict::new().do_nothing().to_owned();
    // A model's values are inserted as they are (sea-orm inserts unchanged values too).
    let bookings = plan.bookings.iter().cloned().map(IntoActiveModel::into_active_model);
    expect_inserted("bookings", aurora_bookings::Entity::insert_many(bookings).on_conflict(do_nothing()).exec_without_returning(txn).await?, plan.bookings.len())?;
    let attendances = plan.tribe_events.iter().cloned().map(IntoActiveModel::into_active_model);
    tribe_events::Entity::insert_many(attendances).on_conflict(do_nothing()).exec_without_returning(txn).await?;
    let rewards = plan.tribe_rewards.iter().cloned().map(IntoActiveModel::into_active_model);
    tribe_rewards::Entity::insert_many(rewards).on_conflict(do_nothing()).exec_without_returning(txn).await?;
    let stakes = plan.stakes.iter().cloned().map(IntoActiveModel::into_active_model);
    staking_records::Entity::insert_many(stakes).on_conflict(do_nothing()).exec_without_returning(txn).await?;
    insert_mints(txn, plan, target).await?;
    finish_events(txn, plan, target).await?;
    // Last: the day's total counter is the one row every processor shares.
    if !limits::add_batch(txn, &target.bounds, &plan.counters).await? {
        return Err(Diverged::Conflict("a mint counter no longer allows the batch's sum".into()));
    }
    Ok(())
}

/// New users with their custodial wallets: none of them may exist already
/// (another processor came first: the run is redone one event at a time).
async fn insert_users(txn: &impl ConnectionTrait, plan: &Plan, wallets: Vec<NewWallet>) -> Result<(), Diverged> {
    if plan.new_users.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let users: Vec<_> = plan.new_users.iter().zip(&wallets).map(|(user, wallet)| users::ActiveModel {
        id: Set(user.id),
        external_ref: Set(user.reference.clone()),
        wallet_id: Set(wallet.id),
        address: Set(wallet.address.clone()),
        hot_wallet_id: Set(user.hot_wallet),
        created_at: Set(now),
    }).collect();
    let (rows, audits): (Vec<_>, Vec<_>) = wallets.into_iter().map(|wallet| (wallet.wallet, wallet.audit)).unzip();
    expect_inserted("wallets", wallets::Entity::insert_many(rows).exec_without_returning(txn).await?, plan.new_users.len())?;
    entity::wallet_audit_logs::Entity::insert_many(audits).exec_without_returning(txn).await?;
    let inserted = users::Entity::insert_many(users).on_conflict(OnConflict::column(users::Column::ExternalRef).do_nothing().to_owned()).exec_without_returning(txn).await?;
    expect_inserted("users", inserted, plan.new_users.len())
}

/// The run's claims, still this processor's, locked until the commit (on
/// PostgreSQL `FOR UPDATE`, so a processor taking over a lapsed lease skips
/// them; SQLite has one writer): all of them, or the run is redone one event
/// at a time for those that are. A read, not a renewal of the lease: the
/// batch commits within half of it, and rewriting every row of the run
/// once more cost a page write per event.
async fn recheck_claims(txn: &impl ConnectionTrait, target: &Target<'_>) -> Result<(), Diverged> {
    let held: BTreeSet<Uuid> = webhook_events::Entity::find()
        .select_only()
        .column(webhook_events::Column::Id)
        .filter(webhook_events::Column::Id.is_in(target.events.iter().map(|event| event.id)))
        .filter(webhook_events::Column::ClaimToken.eq(target.token))
        .filter(Expr::cust(inbox::still_pending(txn.get_database_backend())))
        .lock(LockType::Update)
        .into_tuple::<Uuid>()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    if held.len() == target.events.len() { Ok(()) } else { Err(Diverged::Lost(held)) }
}

/// The hot wallets that take the run's new intents, still active and
/// share-locked until the commit, as `ledger::assign_wallet` does for one.
async fn lock_wallets(txn: &impl ConnectionTrait, plan: &Plan) -> Result<(), Diverged> {
    let wanted: BTreeSet<Uuid> = plan.mints.iter().map(|mint| mint.hot_wallet).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let active: Vec<Uuid> = wallets::Entity::find()
        .select_only()
        .column(wallets::Column::Id)
        .filter(wallets::Column::Id.is_in(wanted.iter().copied()))
        .filter(wallets::Column::Status.eq(crate::custody::ACTIVE))
        .lock(LockType::KeyShare)
        .into_tuple()
        .all(txn)
        .await?;
    if active.len() == wanted.len() { Ok(()) } else { Err(Diverged::Conflict("a hot wallet left the active state".into())) }
}

async fn insert_mints(txn: &impl ConnectionTrait, plan: &Plan, target: &Target<'_>) -> Result<(), Diverged> {
    if plan.mints.is_empty() {
        return Ok(());
    }
    let rows = plan.mints.iter().map(|mint| {
        let intent = NewIntent { user: mint.user_ref.clone(), kind: CallKind::Mint, amount: mint.amount, reason: mint.reason.clone(), source: mint.source.clone(), reverses: None };
        let provenance = Provenance { event_id: Some(mint.event), rules_hash: Some(target.rules_hash.to_owned()), limit_day: Some(mint.day.clone()) };
        ledger::intent_row(mint.id, &intent, mint.user_id, mint.hot_wallet, provenance, mint.held.clone(), Utc::now())
    });
    let inserted = transactions::Entity::insert_many(rows).on_conflict(OnConflict::column(transactions::Column::Source).do_nothing().to_owned()).exec_without_returning(txn).await?;
    expect_inserted("intents", inserted, plan.mints.len())?;
    // One alert per limit that held mints of the run, listing them.
    let mut held: BTreeMap<&str, Vec<HeldMint<'_>>> = BTreeMap::new();
    for mint in &plan.mints {
        if let Some(reason) = &mint.held {
            held.entry(reason).or_default().push(HeldMint { id: mint.id, amount: mint.amount, source: &mint.source, user_ref: &mint.user_ref });
        }
    }
    let alerts: Vec<_> = held.iter().map(|(reason, mints)| handlers::held_alert(mints, reason)).collect();
    alert::raise_many(txn, Severity::Warning, handlers::HELD_ALERT, &alerts).await;
    Ok(())
}

/// Processed events in one statement, invalid ones with their note each.
async fn finish_events(txn: &impl ConnectionTrait, plan: &Plan, target: &Target<'_>) -> Result<(), Diverged> {
    let processed: Vec<Uuid> = target.events.iter().zip(&plan.outcomes).filter(|(_, outcome)| **outcome == Outcome::Processed).map(|(event, _)| event.id).collect();
    if !processed.is_empty() {
        let result = webhook_events::Entity::update_many()
            .col_expr(webhook_events::Column::Status, Expr::value(PROCESSED))
            .col_expr(webhook_events::Column::LastError, Expr::value(Option::<String>::None))
            .col_expr(webhook_events::Column::ProcessedAt, Expr::value(Some(Utc::now())))
            .col_expr(webhook_events::Column::ProcessedBy, Expr::value(Some(target.daemon.to_owned())))
            .col_expr(webhook_events::Column::Lapses, Expr::value(0))
            .col_expr(webhook_events::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
            .col_expr(webhook_events::Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(webhook_events::Column::Id.is_in(processed.iter().copied()))
            .filter(webhook_events::Column::ClaimToken.eq(target.token))
            .filter(Expr::cust(inbox::still_pending(txn.get_database_backend())))
            .exec(txn)
            .await?;
        if result.rows_affected != processed.len() as u64 {
            return Err(Diverged::Conflict("a processed event's claim changed".into()));
        }
    }
    for (event, outcome) in target.events.iter().zip(&plan.outcomes) {
        if let Outcome::Invalid(note) = outcome
            && !inbox::finish(txn, event.id, target.token, INVALID, Some(note.clone()), target.daemon).await?
        {
            return Err(Diverged::Conflict("an invalid event's claim changed".into()));
        }
    }
    Ok(())
}

fn expect_inserted(what: &str, inserted: u64, planned: usize) -> Result<(), Diverged> {
    if inserted == planned as u64 { Ok(()) } else { Err(Diverged::Conflict(format!("{inserted} of {planned} new {what} inserted: another writer came first"))) }
}
