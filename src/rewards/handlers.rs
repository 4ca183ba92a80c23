//! What each partner event does to the database, inside the processing
//! transaction: domain rows (unique per event), reward intents (unique per
//! source) and the event's outcome. The amounts come from the pure rules in
//! [`super::rules`]; everything here runs in the caller's transaction, so a
//! retry after a crash finds either all of it or none of it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use entity::{aurora_bookings, staking_records, ticketing_status, transactions, tribe_events, tribe_rewards, users, webhook_events};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set, TryInsertResult};
use serde_json::json;
use uuid::Uuid;

use super::amount::{to_base_units, to_hnv};
use super::limits::{self, Admission, LimitError};
use super::rules::{RewardRules, ticketing_status as map_ticketing_status};
use crate::alert::{self, Severity};
use crate::chain::CallKind;
use crate::custody::MasterKeys;
use crate::ledger::redemption::{self, PayoutError, PayoutOutcome, Recredit};
use crate::webhooks::EventData;
use crate::ledger::{self, CANCELLED, FAILED, HELD, LedgerError, NewIntent, Provenance, QUEUED};

/// Booking status: booked, reward due.
const BOOKING_CREATED: &str = "created";
/// Booking status: the stay is over.
const BOOKING_COMPLETED: &str = "completed";
/// Booking status: cancelled (or a tombstone: cancelled before it was seen).
const BOOKING_CANCELLED: &str = "cancelled";

/// What became of an event whose handler ran to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done; its effects are committed with this status.
    Processed,
    /// Signed and well-formed, but unusable (a currency without a rate, an
    /// unknown milestone): stored as `invalid`, nothing else happens.
    Invalid(String),
    /// Depends on something not yet seen (a review before its booking): tried
    /// again later without counting an attempt.
    Wait(String),
}

/// Why a handler did not finish; its transaction is rolled back.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The same input fails the same way again (including a value the
    /// database refuses): counts toward the dead letter.
    #[error("{0}")]
    Deterministic(String),
    /// A condition that passes (connection, lock or serialization failure,
    /// no active wallet, a counter race): retried without counting.
    #[error("{0}")]
    Transient(String),
}

impl From<DbErr> for HandlerError {
    fn from(error: DbErr) -> Self {
        let message = format!("database: {error}");
        match crate::db::classify(&error) {
            crate::db::Failure::Transient => HandlerError::Transient(message),
            crate::db::Failure::Deterministic => HandlerError::Deterministic(message),
        }
    }
}

impl From<LedgerError> for HandlerError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Db(error) | LedgerError::Custody(crate::custody::CustodyError::Db(error)) => error.into(),
            other => HandlerError::Transient(other.to_string()),
        }
    }
}

impl From<LimitError> for HandlerError {
    fn from(error: LimitError) -> Self {
        match error {
            LimitError::Db(error) => error.into(),
            contended @ LimitError::Contended => HandlerError::Transient(contended.to_string()),
        }
    }
}

/// What a handler works with: one rules snapshot for the whole transaction.
pub struct Context<'a> {
    /// The rules snapshot.
    pub rules: &'a RewardRules,
    /// Its hash, stored on every intent.
    pub rules_hash: &'a str,
    /// To create custodial wallets for new users; `None` when this daemon has
    /// no master key (new users then wait for a daemon that has one).
    pub keys: Option<&'a MasterKeys>,
    /// The inbox event.
    pub event: &'a webhook_events::Model,
}

/// Runs one event's handler inside `txn`; returns its outcome and the hot
/// wallets that got new work (to nudge after the commit).
pub async fn handle(txn: &impl ConnectionTrait, ctx: &Context<'_>, data: EventData) -> Result<(Handled, BTreeSet<Uuid>), HandlerError> {
    // Test hooks (compiled in only with `test-hooks`): a handler that panics
    // or hangs on one event, as a poison event would.
    let key = &ctx.event.partner_event_id;
    if let Some(stall) = handler_stall(key) {
        tokio::time::sleep(stall).await;
    }
    if handler_panics(key) {
        panic!("failpoint rewards::handler_panics for {key}");
    }
    let mut work = Work { txn, ctx, wallets: BTreeSet::new() };
    let handled = work.dispatch(data).await?;
    Ok((handled, work.wallets))
}

/// The stall armed for `key` on `rewards::handler_stall` (`return(<key>=<ms>)`).
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn handler_stall(key: &str) -> Option<std::time::Duration> {
    fail::fail_point!("rewards::handler_stall", |armed| crate::hooks::stall_for(armed, key));
    None
}

/// Whether a test aims a handler failpoint at `key`: the processor's
/// batches leave such an event to [`handle`], where the failpoints fire.
pub fn hooked(key: &str) -> bool {
    handler_panics(key) || handler_stall_armed(key)
}

/// Whether `rewards::handler_stall` names `key` (nothing applied).
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn handler_stall_armed(key: &str) -> bool {
    fail::fail_point!("rewards::handler_stall", |armed| crate::hooks::names(armed, key));
    false
}

/// Whether `rewards::handler_panics` is armed for `key` (`return(<key>)`).
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn handler_panics(key: &str) -> bool {
    fail::fail_point!("rewards::handler_panics", |armed: Option<String>| armed.as_deref() == Some(key));
    false
}

struct Work<'a, C> {
    txn: &'a C,
    ctx: &'a Context<'a>,
    wallets: BTreeSet<Uuid>,
}

impl<C: ConnectionTrait> Work<'_, C> {
    async fn dispatch(&mut self, data: EventData) -> Result<Handled, HandlerError> {
        let rules = self.ctx.rules;
        match data {
            EventData::BookingCreated { booking, guest, total_price, nights } => self.booking_created(booking, guest, total_price, nights).await,
            EventData::BookingCompleted { booking } => self.booking_completed(booking).await,
            EventData::BookingCancelled { booking } => self.booking_cancelled(booking).await,
            EventData::ReviewSubmitted { booking, guest, rating } => self.review(booking, guest, rating).await,
            EventData::Attendance { event, attendee, kind, attended } => {
                let amount = rules.attendance(&kind, attended);
                let row = tribe_events::ActiveModel {
                    tribe_event_id: Set(event.clone()),
                    attendee_id: Set(attendee.clone()),
                    event_type: Set(kind.clone()),
                    attended: Set(attended),
                    amount: Set(amount.unwrap_or_default().normalize().to_string()),
                    created_at: Set(Utc::now()),
                };
                tribe_events::Entity::insert(row).on_conflict_do_nothing().exec(self.txn).await?;
                if let Some(amount) = amount {
                    self.mint(&format!("tribe:{attendee}"), amount, format!("attended {kind} {event}")).await?;
                }
                Ok(Handled::Processed)
            }
            EventData::Contribution { id, user, quality } => {
                let amount = rules.contribution(quality).ok_or_else(overflow)?;
                self.tribe_reward("contribution", &id, &user, &quality.to_string(), amount, format!("contribution {id}")).await
            }
            EventData::CoachingMilestone { id, user, milestone } => match rules.coaching(&milestone) {
                Some(amount) => self.tribe_reward("coaching", &id, &user, &milestone, amount, format!("coaching milestone {milestone}")).await,
                None => Ok(Handled::Invalid(format!("no reward tier for coaching milestone {milestone:?}"))),
            },
            EventData::Referral { id, referrer, tier } => match rules.referral(&tier) {
                Some(amount) => self.tribe_reward("referral", &id, &referrer, &tier, amount, format!("{tier} referral {id}")).await,
                None => Ok(Handled::Invalid(format!("no reward for referral tier {tier:?}"))),
            },
            EventData::StakingStarted { id, user, amount, started_at } => {
                let row = staking_records::ActiveModel {
                    stake_id: Set(id),
                    user_ref: Set(format!("tribe:{user}")),
                    amount: Set(amount.normalize().to_string()),
                    status: Set("active".into()),
                    started_at: Set(started_at.unwrap_or(self.ctx.event.received_at)),
                    created_at: Set(Utc::now()),
                };
                staking_records::Entity::insert(row).on_conflict_do_nothing().exec(self.txn).await?;
                Ok(Handled::Processed)
            }
            EventData::StripePayment { user, amount_minor, currency } => match rules.payment(amount_minor, &currency) {
                Some(amount) => {
                    let amount = amount.map_err(|_| overflow())?;
                    let user = self.resolve_user(&user).await?;
                    self.mint(&user, amount, format!("payment of {amount_minor} {currency} (minor units)")).await?;
                    Ok(Handled::Processed)
                }
                None => Ok(Handled::Invalid(format!("no HNV rate for currency {:?}", currency.to_ascii_uppercase()))),
            },
            EventData::StripePayout { redemption: id, paid } => {
                let event_ref = format!("{}:{}", self.ctx.event.partner, self.ctx.event.partner_event_id);
                let day = self.ctx.event.received_at.date_naive().to_string();
                let provenance = Provenance { event_id: Some(self.ctx.event.id), rules_hash: None, limit_day: Some(day) };
                match redemption::apply_payout(self.txn, self.ctx.keys, &id, paid, &event_ref, provenance).await {
                    Ok(PayoutOutcome::BurnInFlight) => Ok(Handled::Wait(format!("the burn of redemption {id} is still on its way"))),
                    Ok(PayoutOutcome::Failed { recredit: Some(recredit) }) => {
                        self.admit_recredit(&id, &recredit).await?;
                        self.wallets.insert(recredit.intent.hot_wallet_id);
                        Ok(Handled::Processed)
                    }
                    Ok(_) => Ok(Handled::Processed),
                    // Counts toward the dead letter; replayable should the redemption appear.
                    Err(PayoutError::Unknown(id)) => Err(HandlerError::Deterministic(format!("no redemption {id:?} to settle"))),
                    Err(PayoutError::Ledger(error)) => Err(error.into()),
                }
            }
            EventData::TicketingStatusChanged { event, status, updated_at } => {
                self.ticketing(event, status, updated_at).await?;
                Ok(Handled::Processed)
            }
        }
    }

    async fn booking_created(&mut self, booking: String, guest: String, total_price: Decimal, nights: i64) -> Result<Handled, HandlerError> {
        let now = Utc::now();
        let guest_ref = format!("aurora:{guest}");
        let row = aurora_bookings::ActiveModel {
            booking_id: Set(booking.clone()),
            guest_ref: Set(Some(guest_ref.clone())),
            total_price: Set(Some(total_price.to_string())),
            nights: Set(Some(nights)),
            status: Set(BOOKING_CREATED.into()),
            mint_intent: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let inserted = matches!(aurora_bookings::Entity::insert(row).on_conflict_do_nothing().exec(self.txn).await?, TryInsertResult::Inserted(_));
        let existing = if inserted { None } else { Some(self.lock_booking(&booking).await?) };
        // A tombstone (cancelled first) keeps what was booked, mints nothing.
        if let Some(existing) = &existing {
            let mut update = aurora_bookings::Entity::update_many()
                .col_expr(aurora_bookings::Column::GuestRef, Expr::value(Some(guest_ref.clone())))
                .col_expr(aurora_bookings::Column::TotalPrice, Expr::value(Some(total_price.to_string())))
                .col_expr(aurora_bookings::Column::Nights, Expr::value(Some(nights)))
                .col_expr(aurora_bookings::Column::UpdatedAt, Expr::value(now))
                .filter(aurora_bookings::Column::BookingId.eq(booking.as_str()));
            if existing.status == BOOKING_CANCELLED || existing.mint_intent.is_some() {
                update.exec(self.txn).await?;
                return Ok(Handled::Processed);
            }
            update = update.filter(aurora_bookings::Column::MintIntent.is_null());
            update.exec(self.txn).await?;
        }
        let amount = self.ctx.rules.booking(total_price, nights).ok_or_else(overflow)?;
        let intent = self.mint(&guest_ref, amount, format!("booking {booking}: {total_price} CAD, {nights} nights")).await?;
        aurora_bookings::Entity::update_many()
            .col_expr(aurora_bookings::Column::MintIntent, Expr::value(intent))
            .filter(aurora_bookings::Column::BookingId.eq(booking.as_str()))
            .exec(self.txn)
            .await?;
        Ok(Handled::Processed)
    }

    async fn booking_completed(&mut self, booking: String) -> Result<Handled, HandlerError> {
        if self.insert_booking_stub(&booking, BOOKING_COMPLETED).await? {
            return Ok(Handled::Processed);
        }
        self.lock_booking(&booking).await?;
        aurora_bookings::Entity::update_many()
            .col_expr(aurora_bookings::Column::Status, Expr::value(BOOKING_COMPLETED))
            .col_expr(aurora_bookings::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(aurora_bookings::Column::BookingId.eq(booking.as_str()))
            .filter(aurora_bookings::Column::Status.eq(BOOKING_CREATED))
            .exec(self.txn)
            .await?;
        Ok(Handled::Processed)
    }

    async fn booking_cancelled(&mut self, booking: String) -> Result<Handled, HandlerError> {
        // Before its booking: the tombstone makes a late booking-created mint nothing.
        if self.insert_booking_stub(&booking, BOOKING_CANCELLED).await? {
            return Ok(Handled::Processed);
        }
        let existing = self.lock_booking(&booking).await?;
        if existing.status == BOOKING_CANCELLED {
            return Ok(Handled::Processed);
        }
        aurora_bookings::Entity::update_many()
            .col_expr(aurora_bookings::Column::Status, Expr::value(BOOKING_CANCELLED))
            .col_expr(aurora_bookings::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(aurora_bookings::Column::BookingId.eq(booking.as_str()))
            .exec(self.txn)
            .await?;
        if let Some(mint) = existing.mint_intent {
            self.reverse(mint, format!("booking {booking} cancelled")).await?;
        }
        Ok(Handled::Processed)
    }

    async fn review(&mut self, booking: String, guest: String, rating: i64) -> Result<Handled, HandlerError> {
        let known = aurora_bookings::Entity::find_by_id(booking.clone()).one(self.txn).await?;
        if known.as_ref().is_none_or(|b| b.guest_ref.is_none()) {
            return Ok(Handled::Wait(format!("booking {booking} not seen yet")));
        }
        if let Some(bonus) = self.ctx.rules.review(rating) {
            // The source is the booking, so a second review earns nothing more.
            let source = format!("review-bonus:{booking}");
            self.mint_with_source(&format!("aurora:{guest}"), bonus, format!("review of booking {booking} rated {rating}"), source).await?;
        }
        Ok(Handled::Processed)
    }

    async fn tribe_reward(&mut self, kind: &str, id: &str, user: &str, detail: &str, amount: Decimal, reason: String) -> Result<Handled, HandlerError> {
        let user_ref = format!("tribe:{user}");
        let row = tribe_rewards::ActiveModel {
            kind: Set(kind.into()),
            tribe_id: Set(id.into()),
            user_ref: Set(user_ref.clone()),
            detail: Set(detail.chars().take(128).collect()),
            amount: Set(amount.normalize().to_string()),
            created_at: Set(Utc::now()),
        };
        tribe_rewards::Entity::insert(row).on_conflict_do_nothing().exec(self.txn).await?;
        self.mint(&user_ref, amount, reason).await?;
        Ok(Handled::Processed)
    }

    /// A newer status wins; an update older than the stored one (compared as
    /// UTC instants) changes nothing. One conditional upsert, so concurrent
    /// processors cannot interleave a read and a write.
    async fn ticketing(&mut self, event: String, status: String, updated_at: DateTime<Utc>) -> Result<(), DbErr> {
        let row = ticketing_status::ActiveModel {
            event_id: Set(event),
            status: Set(map_ticketing_status(&status).into()),
            partner_status: Set(status.chars().take(128).collect()),
            updated_at: Set(updated_at),
        };
        let newer = Expr::col((ticketing_status::Entity, ticketing_status::Column::UpdatedAt))
            .lt(Expr::col((sea_orm::sea_query::Alias::new("excluded"), ticketing_status::Column::UpdatedAt)));
        let on_conflict = OnConflict::column(ticketing_status::Column::EventId)
            .update_columns([ticketing_status::Column::Status, ticketing_status::Column::PartnerStatus, ticketing_status::Column::UpdatedAt])
            .action_and_where(newer)
            .to_owned();
        ticketing_status::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(self.txn).await?;
        Ok(())
    }

    /// Inserts a booking known only by id; true when this call created it.
    async fn insert_booking_stub(&self, booking: &str, status: &str) -> Result<bool, DbErr> {
        let now = Utc::now();
        let row = aurora_bookings::ActiveModel {
            booking_id: Set(booking.to_owned()),
            guest_ref: Set(None),
            total_price: Set(None),
            nights: Set(None),
            status: Set(status.into()),
            mint_intent: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        Ok(matches!(aurora_bookings::Entity::insert(row).on_conflict_do_nothing().exec(self.txn).await?, TryInsertResult::Inserted(_)))
    }

    /// The booking row, locked for this transaction on PostgreSQL (SQLite
    /// serializes writers anyway), so a creation and a cancellation of one
    /// booking processed at once see each other.
    async fn lock_booking(&self, booking: &str) -> Result<aurora_bookings::Model, DbErr> {
        aurora_bookings::Entity::find_by_id(booking.to_owned())
            .lock_exclusive()
            .one(self.txn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("booking {booking}")))
    }

    /// A user reference as stored: havend's own user id becomes its external reference.
    async fn resolve_user(&self, reference: &str) -> Result<String, HandlerError> {
        let Ok(id) = Uuid::parse_str(reference) else { return Ok(reference.to_owned()) };
        match users::Entity::find_by_id(id).one(self.txn).await? {
            Some(user) => Ok(user.external_ref),
            None => Err(HandlerError::Deterministic(format!("no user with id {id}"))),
        }
    }

    /// The event's own reward: its source is the partner event id.
    async fn mint(&mut self, user_ref: &str, amount: Decimal, reason: String) -> Result<Option<Uuid>, HandlerError> {
        let source = format!("{}:{}", self.ctx.event.partner, self.ctx.event.partner_event_id);
        self.mint_with_source(user_ref, amount, reason, source).await
    }

    /// Queues a mint (idempotent on `source`), checked against the limits
    /// when new; `None` when the amount rounds to nothing.
    async fn mint_with_source(&mut self, user_ref: &str, amount: Decimal, reason: String, source: String) -> Result<Option<Uuid>, HandlerError> {
        let units = to_base_units(amount).map_err(|e| HandlerError::Deterministic(e.to_string()))?;
        if units.is_zero() {
            return Ok(None);
        }
        let keys = self.ctx.keys;
        let day = self.ctx.event.received_at.date_naive().to_string();
        let provenance = Provenance { event_id: Some(self.ctx.event.id), rules_hash: Some(self.ctx.rules_hash.to_owned()), limit_day: Some(day.clone()) };
        let intent = NewIntent { user: user_ref.to_owned(), kind: CallKind::Mint, amount: units, reason, source, reverses: None };
        let enqueued = ledger::enqueue_with(self.txn, keys, intent, provenance).await?;
        if enqueued.created
            && let Admission::Over(reason) = limits::admit(self.txn, &self.ctx.rules.limits, user_ref, &day, units).await?
        {
            hold_intent(self.txn, &enqueued.intent, user_ref, &reason).await?;
        }
        self.wallets.insert(enqueued.intent.hot_wallet_id);
        Ok(Some(enqueued.intent.id))
    }

    /// A new re-credit is a mint like any other: counted against the limits
    /// of the event's day and held over one (SPEC section 2). One reported
    /// after the payout was paid is held whatever the limits allow: the
    /// money went out, so an operator decides.
    async fn admit_recredit(&mut self, redemption: &str, recredit: &Recredit) -> Result<(), HandlerError> {
        if !recredit.created {
            return Ok(());
        }
        let amount = recredit.intent.amount.parse().map_err(|_| HandlerError::Deterministic(format!("re-credit {} has amount {:?}", recredit.intent.id, recredit.intent.amount)))?;
        let day = self.ctx.event.received_at.date_naive().to_string();
        let over = if recredit.after_paid {
            Some(format!("payout.failed arrived after payout.paid for redemption {redemption}: release it once the payout is known to have failed, else cancel it"))
        } else {
            match limits::admit(self.txn, &self.ctx.rules.limits, &recredit.user, &day, amount).await? {
                Admission::Over(reason) => Some(reason),
                Admission::Within => None,
            }
        };
        if let Some(reason) = over {
            hold_intent(self.txn, &recredit.intent, &recredit.user, &reason).await?;
        }
        Ok(())
    }

    /// Reverses a mint per SPEC section 2: a mint still queued or held is
    /// cancelled (nothing reaches the chain); a cancelled or failed one needs
    /// nothing; otherwise a burn of its stored amount is queued, which its
    /// wallet signs only after the mint is confirmed, clipped to what the
    /// user holds then.
    async fn reverse(&mut self, mint: Uuid, reason: String) -> Result<(), HandlerError> {
        let cancelled = transactions::Entity::update_many()
            .col_expr(transactions::Column::Status, Expr::value(CANCELLED))
            .col_expr(transactions::Column::LastError, Expr::value(format!("reversed before signing: {reason}")))
            .col_expr(transactions::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(transactions::Column::Id.eq(mint))
            .filter(transactions::Column::Status.is_in([QUEUED, HELD]))
            .exec(self.txn)
            .await?;
        if cancelled.rows_affected == 1 {
            return Ok(());
        }
        let original = transactions::Entity::find_by_id(mint)
            .one(self.txn)
            .await?
            .ok_or_else(|| HandlerError::Deterministic(format!("mint {mint} to reverse does not exist")))?;
        if original.status == CANCELLED || original.status == FAILED {
            return Ok(());
        }
        let user = users::Entity::find_by_id(original.user_id)
            .one(self.txn)
            .await?
            .ok_or_else(|| HandlerError::Deterministic(format!("user of mint {mint} does not exist")))?;
        let amount = original.amount.parse().map_err(|_| HandlerError::Deterministic(format!("mint {mint} has amount {:?}", original.amount)))?;
        let intent = NewIntent {
            user: user.external_ref,
            kind: CallKind::Burn,
            amount,
            reason,
            source: format!("reversal:{}", original.source),
            reverses: Some(mint),
        };
        let provenance = Provenance { event_id: Some(self.ctx.event.id), rules_hash: original.rules_hash.clone(), limit_day: None };
        let enqueued = ledger::enqueue_with(self.txn, self.ctx.keys, intent, provenance).await?;
        self.wallets.insert(enqueued.intent.hot_wallet_id);
        Ok(())
    }
}

/// A reward too large to compute: the same input fails the same way again.
fn overflow() -> HandlerError {
    HandlerError::Deterministic(super::rules::Overflow.to_string())
}

/// Holds a new intent over a mint limit for an operator, with its alert, in
/// the caller's transaction.
pub async fn hold_intent(db: &impl ConnectionTrait, intent: &transactions::Model, user_ref: &str, reason: &str) -> Result<(), DbErr> {
    transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(HELD))
        .col_expr(transactions::Column::LastError, Expr::value(reason))
        .filter(transactions::Column::Id.eq(intent.id))
        .filter(transactions::Column::Status.eq(QUEUED))
        .exec(db)
        .await?;
    alert_held(db, intent.id, intent.amount.parse().unwrap_or_default(), &intent.source, user_ref, reason).await;
    Ok(())
}

/// The operator's alert for an intent held over a mint limit.
pub async fn alert_held(db: &impl ConnectionTrait, id: Uuid, amount: alloy::primitives::U256, source: &str, user_ref: &str, reason: &str) {
    let (message, details) = held_alert(&[HeldMint { id, amount, source, user_ref }], reason);
    alert::raise(db, Severity::Warning, HELD_ALERT, &message, details).await;
}

/// The category of [`held_alert`]s.
pub const HELD_ALERT: &str = "mint_held";

/// A mint held over a limit, as its alert lists it.
#[derive(Debug, Clone, Copy)]
pub struct HeldMint<'a> {
    /// The held intent.
    pub id: Uuid,
    /// Base units.
    pub amount: alloy::primitives::U256,
    /// The intent's source (what earned it).
    pub source: &'a str,
    /// Its user's reference.
    pub user_ref: &'a str,
}

/// The message and details of the alert for mints held by one limit: one
/// mint is named with the command that releases it; several (a batch past
/// the day's total) are counted in the message and listed in the details,
/// one alert rather than one per mint. The throttle subject is the limit
/// (`reason`), so once a limit holds every reward, the operator hears of it
/// once per throttle window instead of once per booking.
pub fn held_alert(held: &[HeldMint<'_>], reason: &str) -> (String, serde_json::Value) {
    let message = match held {
        [one] => format!("A mint of {} HNV to {} is held: {reason}. Release or cancel it with `havend intents release|cancel {}`.", to_hnv(one.amount), one.user_ref, one.id),
        many => {
            let total = many.iter().fold(alloy::primitives::U256::ZERO, |total, mint| total.saturating_add(mint.amount));
            format!(
                "{} mints totalling {} HNV are held: {reason}. `havend intents held` lists them; release or cancel each with `havend intents release|cancel <id>`.",
                many.len(),
                to_hnv(total)
            )
        }
    };
    let mints: Vec<_> = held.iter().map(|mint| json!({ "transaction_id": mint.id, "user": mint.user_ref, "source": mint.source, "amount": to_hnv(mint.amount) })).collect();
    (message, json!({ "reason": reason, "mints": mints, alert::SUBJECT: reason }))
}

#[cfg(test)]
mod tests {
    use alloy::primitives::U256;

    use super::*;
    use crate::alert::Alert;

    fn alert(message: String, details: serde_json::Value) -> Alert {
        Alert { id: Uuid::now_v7(), severity: Severity::Warning, category: HELD_ALERT.into(), message, details, created_at: Utc::now() }
    }

    #[test]
    fn mints_held_by_one_limit_are_one_alert_listing_them_and_repeats_of_each_other() {
        let hnv = |n: u64| U256::from(n) * U256::from(10u64).pow(U256::from(18));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let reason = "minting would exceed the total daily limit of 1000 HNV on 2026-12-03";
        let (one, one_details) = held_alert(&[HeldMint { id: a, amount: hnv(5), source: "s:a", user_ref: "aurora:g1" }], reason);
        assert!(one.contains(&a.to_string()) && one.contains("aurora:g1"), "one mint is named with its release command: {one}");
        let held = [HeldMint { id: a, amount: hnv(5), source: "s:a", user_ref: "aurora:g1" }, HeldMint { id: b, amount: hnv(7), source: "s:b", user_ref: "aurora:g2" }];
        let (many, details) = held_alert(&held, reason);
        assert!(many.starts_with("2 mints totalling 12 HNV are held"), "{many}");
        let listed: Vec<_> = details["mints"].as_array().unwrap().iter().map(|mint| mint["transaction_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(listed, [a.to_string(), b.to_string()]);
        // The throttle sees one subject: the limit, not the mints.
        assert_eq!(alert(one, one_details).subject(), reason);
        assert_eq!(alert(many, details).subject(), reason);
        assert_eq!(alert("other".into(), json!({})).subject(), "other", "without a subject the message is one");
    }
}
