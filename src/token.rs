//! What the token API's writes do to the ledger, inside the caller's
//! transaction (which also holds the request's Idempotency-Key): API mints
//! (counted against the mint limits like rewards, held over them) and
//! redemptions (a burn checked against the available balance under a
//! per-user lock, plus its redemption request).

use alloy::primitives::U256;
use entity::{redemption_requests, transactions, users};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, QuerySelect};

use crate::chain::CallKind;
use crate::config::rewards::MintLimits;
use crate::custody::MasterKeys;
use crate::ledger::{self, LedgerError, NewIntent, Provenance, redemption};
use crate::rewards::limits::{self, Admission, LimitError};

/// Why a token API write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No such user (a redemption needs one with tokens).
    #[error("no user {0:?}")]
    UnknownUser(String),
    /// The amount exceeds what the user may redeem.
    #[error("{requested} HNV exceeds the available balance of {available} HNV")]
    InsufficientBalance {
        /// Asked for (HNV).
        requested: String,
        /// Confirmed minus unsettled burns (HNV).
        available: String,
    },
    /// The intent's source exists already: its Idempotency-Key ran before and
    /// its stored response expired, so the key cannot be used again.
    #[error("this Idempotency-Key was used before (its stored response has expired); send a new key")]
    KeyAlreadyUsed,
    /// The ledger failed (no hot wallet, no master key, database).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A mint counter could not be updated.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

impl From<DbErr> for TokenError {
    fn from(error: DbErr) -> Self {
        TokenError::Ledger(LedgerError::Db(error))
    }
}

/// A mint the API asks for.
#[derive(Debug, Clone)]
pub struct MintOrder {
    /// `{partner}:{external id}` or havend's user id.
    pub user: String,
    /// Base units.
    pub amount: U256,
    /// Why, for operators.
    pub reason: String,
    /// The intent's unique source: `api:{key name}:{idempotency key}`.
    pub source: String,
}

/// A queued (or held) API mint.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The intent.
    pub intent: transactions::Model,
    /// Held over a mint limit, with the reason.
    pub held: Option<String>,
}

/// Queues an API mint, counted against the mint limits of today (UTC);
/// over a limit it is held for an operator and alerted.
pub async fn mint(db: &impl ConnectionTrait, keys: Option<&MasterKeys>, limits: &MintLimits, order: MintOrder) -> Result<Minted, TokenError> {
    let user = match ledger::find_user(db, &order.user).await? {
        Some(user) => user.external_ref,
        // havend's own ids name existing users only; anything else is a partner reference.
        None if uuid::Uuid::parse_str(&order.user).is_ok() => return Err(TokenError::UnknownUser(order.user)),
        None => order.user.clone(),
    };
    let day = chrono::Utc::now().date_naive().to_string();
    let provenance = Provenance { limit_day: Some(day.clone()), ..Provenance::default() };
    let intent = NewIntent { user: user.clone(), kind: CallKind::Mint, amount: order.amount, reason: order.reason, source: order.source, reverses: None };
    let enqueued = ledger::enqueue_with(db, keys, intent, provenance).await?;
    if !enqueued.created {
        return Err(TokenError::KeyAlreadyUsed);
    }
    let mut held = None;
    if let Admission::Over(reason) = limits::admit(db, limits, &user, &day, order.amount).await? {
        crate::rewards::handlers::hold_intent(db, &enqueued.intent, &user, &reason).await?;
        held = Some(reason);
    }
    let intent = if held.is_some() { transactions::Entity::find_by_id(enqueued.intent.id).one(db).await?.unwrap_or(enqueued.intent) } else { enqueued.intent };
    Ok(Minted { intent, held })
}

/// A redemption the API asks for.
#[derive(Debug, Clone)]
pub struct RedeemOrder {
    /// The user who redeems.
    pub user: String,
    /// Base units to burn.
    pub amount: U256,
    /// Where the money goes (kept as sent).
    pub payout: serde_json::Value,
    /// The burn's unique source: `api:{key name}:{idempotency key}`.
    pub source: String,
}

/// An opened redemption and its burn.
#[derive(Debug, Clone)]
pub struct Redeemed {
    /// The redemption request.
    pub redemption: redemption_requests::Model,
    /// Its burn intent.
    pub burn: transactions::Model,
}

/// Queues a burn of `amount` from the user's wallet and opens its
/// redemption, if the user's available balance (confirmed minus unsettled
/// burns) covers it. Checked under a per-user lock: on PostgreSQL the user's
/// row is locked for the transaction; SQLite serializes writers.
pub async fn redeem(db: &impl ConnectionTrait, order: RedeemOrder) -> Result<Redeemed, TokenError> {
    let user = ledger::find_user(db, &order.user).await?.ok_or_else(|| TokenError::UnknownUser(order.user.clone()))?;
    if db.get_database_backend() == DbBackend::Postgres {
        users::Entity::find_by_id(user.id).lock_exclusive().one(db).await?;
    }
    let available = ledger::available(db, user.id).await?;
    if order.amount > available {
        return Err(TokenError::InsufficientBalance {
            requested: crate::chain::format_units(order.amount),
            available: crate::chain::format_units(available),
        });
    }
    if let Some(stall) = stall_for_test(&user.external_ref) {
        tokio::time::sleep(stall).await;
    }
    let intent = NewIntent {
        user: user.external_ref.clone(),
        kind: CallKind::Burn,
        amount: order.amount,
        reason: "redemption for a fiat payout".into(),
        source: order.source,
        reverses: None,
    };
    let enqueued = ledger::enqueue_with(db, None, intent, Provenance::default()).await?;
    if !enqueued.created {
        return Err(TokenError::KeyAlreadyUsed);
    }
    let redemption = redemption::open(db, user.id, &enqueued.intent, &order.payout).await?;
    Ok(Redeemed { redemption, burn: enqueued.intent })
}

/// Test hook: stalls a redemption of `user` between its balance check and
/// its burn (the `token::stall_after_balance_check` failpoint armed with
/// `return(<user>=<ms>)`), so a test can prove the per-user lock and not
/// the luck of the interleaving.
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn stall_for_test(user: &str) -> Option<std::time::Duration> {
    fail::fail_point!("token::stall_after_balance_check", |armed| crate::hooks::stall_for(armed, user));
    None
}
