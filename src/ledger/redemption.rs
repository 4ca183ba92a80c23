//! Redemptions (SPEC sections 2 and 3): HNV burned from a user's wallet for
//! a fiat payout. The burn is an ordinary intent; the payout is due once it
//! is confirmed; Stripe's `payout.paid` settles the redemption and
//! `payout.failed` fails it, re-crediting the user once (source
//! `recredit:{redemption}`) only if the burn confirmed. A failure wins over
//! a `paid` that arrives before or after it; after a `paid` its re-credit
//! is queued held, for an operator (the money went out). A `paid` is
//! recorded at once (the money went out) and alerted when the burn has not
//! confirmed. The caller counts a new re-credit against the mint limits.

use chrono::Utc;
use entity::{redemption_requests, transactions, users};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set};
use uuid::Uuid;

use super::{BROADCAST, CANCELLED, CONFIRMED, HELD, LedgerError, NewIntent, Provenance, QUEUED, SIGNED, enqueue_with};
use crate::chain::CallKind;
use crate::custody::MasterKeys;

/// Redemption status: burned (or burning), payout not yet reported.
pub const OPEN: &str = "open";
/// Redemption status: the payout was paid.
pub const PAID: &str = "paid";
/// Redemption status: the payout failed (final).
pub const FAILED_PAYOUT: &str = "failed";

/// Records a redemption whose burn intent was just queued, in the caller's transaction.
pub async fn open(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    burn: &transactions::Model,
    payout: &serde_json::Value,
) -> Result<redemption_requests::Model, DbErr> {
    let now = Utc::now();
    let row = redemption_requests::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        burn_id: Set(burn.id),
        amount: Set(burn.amount.clone()),
        payout: Set(payout.to_string()),
        status: Set(OPEN.into()),
        recredit_id: Set(None),
        payout_event: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    redemption_requests::Entity::insert(row.clone()).exec_without_returning(db).await?;
    sea_orm::TryIntoModel::try_into_model(row)
}

/// The redemption whose burn is `burn_id`.
pub async fn by_burn(db: &impl ConnectionTrait, burn_id: Uuid) -> Result<Option<redemption_requests::Model>, DbErr> {
    redemption_requests::Entity::find().filter(redemption_requests::Column::BurnId.eq(burn_id)).one(db).await
}

/// Whether the payout may be made: the redemption is open and its burn confirmed.
pub fn payable(redemption: &redemption_requests::Model, burn_status: &str) -> bool {
    redemption.status == OPEN && burn_status == CONFIRMED
}

/// What a payout event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutOutcome {
    /// The redemption is now paid.
    Paid,
    /// A `paid` after a failure: the failure stands.
    StaysFailed,
    /// Failed; the re-credit mint (if the burn had confirmed) is `recredit`.
    Failed {
        /// The re-credit intent, when one was owed.
        recredit: Option<Box<Recredit>>,
    },
    /// A `failed` whose burn is signed or on its way: decide once it settles.
    BurnInFlight,
}

/// The mint that gives a failed payout's tokens back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recredit {
    /// The intent, as queued (its hot wallet is the one to nudge).
    pub intent: transactions::Model,
    /// Its user's `{partner}:{id}` reference (the limits count per user).
    pub user: String,
    /// Queued by this call (false: the intent existed already).
    pub created: bool,
    /// The redemption had been reported paid: the money went out, so the
    /// re-credit is held for an operator whatever the limits allow.
    pub after_paid: bool,
}

/// Why a payout event cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    /// No redemption has this id (a typo, or another system's payout).
    #[error("no redemption {0:?}")]
    Unknown(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<DbErr> for PayoutError {
    fn from(error: DbErr) -> Self {
        PayoutError::Ledger(LedgerError::Db(error))
    }
}

/// Applies `payout.paid` or `payout.failed` for redemption `id` (from event
/// `event_ref`); a re-credit is queued with `provenance` (the caller counts
/// a new one against the mint limits, or holds it: see [`Recredit`]).
pub async fn apply_payout(
    db: &impl ConnectionTrait,
    keys: Option<&MasterKeys>,
    id: &str,
    paid: bool,
    event_ref: &str,
    provenance: Provenance,
) -> Result<PayoutOutcome, PayoutError> {
    let redemption = match Uuid::parse_str(id) {
        // Locked (PostgreSQL), so a `paid` and a `failed` of one redemption
        // apply one after the other and `after_paid` is read as it stands.
        Ok(uuid) => redemption_requests::Entity::find_by_id(uuid).lock_exclusive().one(db).await?,
        Err(_) => None,
    }
    .ok_or_else(|| PayoutError::Unknown(id.to_owned()))?;
    if redemption.status == FAILED_PAYOUT {
        return Ok(if paid { PayoutOutcome::StaysFailed } else { PayoutOutcome::Failed { recredit: None } });
    }
    let burn = transactions::Entity::find_by_id(redemption.burn_id)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("burn {} of redemption {}", redemption.burn_id, redemption.id)))?;
    if paid {
        return settle_paid(db, &redemption, &burn, event_ref).await;
    }
    let recredit = match burn.status.as_str() {
        QUEUED | HELD => {
            // Not signed yet: withdraw the burn instead of burning and minting back.
            let withdrawn = transactions::Entity::update_many()
                .col_expr(transactions::Column::Status, Expr::value(CANCELLED))
                .col_expr(transactions::Column::LastError, Expr::value("its redemption's payout failed"))
                .col_expr(transactions::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(transactions::Column::Id.eq(burn.id))
                .filter(transactions::Column::Status.is_in([QUEUED, HELD]))
                .exec(db)
                .await?;
            if withdrawn.rows_affected != 1 {
                return Ok(PayoutOutcome::BurnInFlight);
            }
            None
        }
        SIGNED | BROADCAST => return Ok(PayoutOutcome::BurnInFlight),
        CONFIRMED => {
            let user = users::Entity::find_by_id(redemption.user_id)
                .one(db)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(format!("user {}", redemption.user_id)))?;
            let amount = alloy::primitives::U256::from_str_radix(&redemption.amount, 10).unwrap_or_default();
            let intent = NewIntent {
                user: user.external_ref.clone(),
                kind: CallKind::Mint,
                amount,
                reason: format!("re-credit: payout of redemption {} failed", redemption.id),
                source: format!("recredit:{}", redemption.id),
                reverses: None,
            };
            let enqueued = enqueue_with(db, keys, intent, provenance).await?;
            Some(Box::new(Recredit { intent: enqueued.intent, user: user.external_ref, created: enqueued.created, after_paid: redemption.status == PAID }))
        }
        // FAILED or CANCELLED: nothing was burned, so nothing is owed.
        _ => None,
    };
    set_status(db, redemption.id, &[OPEN, PAID], FAILED_PAYOUT, event_ref, recredit.as_ref().map(|r| r.intent.id)).await?;
    Ok(PayoutOutcome::Failed { recredit })
}

/// A `payout.paid`: the money went out, so the redemption is `paid` at once
/// (never again payable, whatever its burn does next). A payout reported
/// before the burn confirmed is raised as a warning (should the burn still
/// fail, the user keeps the tokens), one after the burn failed or was
/// withdrawn as an error: someone must reconcile by hand.
async fn settle_paid(
    db: &impl ConnectionTrait,
    redemption: &redemption_requests::Model,
    burn: &transactions::Model,
    event_ref: &str,
) -> Result<PayoutOutcome, PayoutError> {
    let (severity, category, problem) = match burn.status.as_str() {
        CONFIRMED => (None, "", ""),
        QUEUED | HELD | SIGNED | BROADCAST => {
            (Some(crate::alert::Severity::Warning), "payout_before_burn", "is not confirmed yet; should it fail, the user keeps the tokens")
        }
        _ => (Some(crate::alert::Severity::Error), "payout_without_burn", "did not happen: the user kept the tokens. Reconcile by hand"),
    };
    if let Some(severity) = severity {
        crate::alert::raise(
            db,
            severity,
            category,
            &format!("Redemption {} was paid out ({event_ref}) but its burn {} ({}) {problem}.", redemption.id, burn.id, burn.status),
            serde_json::json!({ "redemption_id": redemption.id, "burn_id": burn.id, "burn_status": burn.status, "event": event_ref }),
        )
        .await;
    }
    set_status(db, redemption.id, &[OPEN], PAID, event_ref, None).await?;
    Ok(PayoutOutcome::Paid)
}

async fn set_status(db: &impl ConnectionTrait, id: Uuid, from: &[&str], to: &str, event_ref: &str, recredit: Option<Uuid>) -> Result<(), DbErr> {
    let mut update = redemption_requests::Entity::update_many()
        .col_expr(redemption_requests::Column::Status, Expr::value(to))
        .col_expr(redemption_requests::Column::PayoutEvent, Expr::value(Some(event_ref.to_owned())))
        .col_expr(redemption_requests::Column::UpdatedAt, Expr::value(Utc::now()));
    if recredit.is_some() {
        update = update.col_expr(redemption_requests::Column::RecreditId, Expr::value(recredit));
    }
    update
        .filter(redemption_requests::Column::Id.eq(id))
        .filter(redemption_requests::Column::Status.is_in(from.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}
