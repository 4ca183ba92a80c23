//! Operator decisions on the rewards side: releasing or cancelling held
//! intents. The CLI calls these, and the admin API will call the same
//! functions. (The minting pause is in `crate::ledger::pause`.)

use alloy::primitives::U256;
use chrono::Utc;
use entity::{transactions, users};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use super::limits::{self, LimitError};
use crate::alert::{self, Severity};
use crate::ledger::{CANCELLED, CONFIRMED, FAILED, HELD, QUEUED};

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No intent has that id.
    #[error("no intent {0}")]
    NotFound(Uuid),
    /// The intent is not in the status the action needs.
    #[error("intent {id} is {status}, not held")]
    NotHeld {
        /// The intent.
        id: Uuid,
        /// Its status.
        status: String,
    },
    /// A reversal of the intent is pending: releasing it would mint what is being taken back.
    #[error("intent {0} has a pending reversal; cancel it instead")]
    ReversalPending(Uuid),
    /// The limit counters could not be updated.
    #[error(transparent)]
    Limits(#[from] LimitError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Releases a held intent: it is queued on the user's current hot wallet
/// (which may have changed since it was held) and counted in the limits.
pub async fn release(db: &DatabaseConnection, id: Uuid, actor: &str) -> Result<transactions::Model, OperatorError> {
    let txn = crate::db::begin_write(db).await?;
    let intent = held(&txn, id).await?;
    let reversal = transactions::Entity::find()
        .filter(transactions::Column::Reverses.eq(id))
        .filter(transactions::Column::Status.is_not_in([CANCELLED, FAILED, CONFIRMED]))
        .one(&txn)
        .await?;
    if reversal.is_some() {
        return Err(OperatorError::ReversalPending(id));
    }
    let user = users::Entity::find_by_id(intent.user_id).one(&txn).await?.ok_or(DbErr::RecordNotFound(format!("user {}", intent.user_id)))?;
    // Checked active under a lock, so a rotation racing the release moves the intent too.
    let wallet = crate::ledger::assign_wallet(&txn, &user).await?;
    let moved = set_status(&txn, id, HELD, QUEUED, Some(wallet), &format!("released by {actor}")).await?;
    if !moved {
        return Err(OperatorError::NotHeld { id, status: "changed concurrently".into() });
    }
    let day = intent.limit_day.clone().unwrap_or_else(|| Utc::now().date_naive().to_string());
    limits::count_released(&txn, &user.external_ref, &day, intent.amount.parse().unwrap_or(U256::ZERO)).await?;
    alert::raise(&txn, Severity::Info, "mint_released", &format!("Held intent {id} released by {actor}"), json!({ "transaction_id": id, "actor": actor })).await;
    txn.commit().await?;
    transactions::Entity::find_by_id(id).one(db).await?.ok_or(OperatorError::NotFound(id))
}

/// Cancels a held intent (and any reversal waiting for it): nothing is minted.
pub async fn cancel(db: &DatabaseConnection, id: Uuid, actor: &str) -> Result<transactions::Model, OperatorError> {
    let txn = crate::db::begin_write(db).await?;
    held(&txn, id).await?;
    if !set_status(&txn, id, HELD, CANCELLED, None, &format!("cancelled by {actor}")).await? {
        return Err(OperatorError::NotHeld { id, status: "changed concurrently".into() });
    }
    transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(CANCELLED))
        .col_expr(transactions::Column::LastError, Expr::value(format!("its mint {id} was cancelled")))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(transactions::Column::Reverses.eq(id))
        .filter(transactions::Column::Status.is_in([QUEUED, HELD]))
        .exec(&txn)
        .await?;
    alert::raise(&txn, Severity::Info, "mint_cancelled", &format!("Held intent {id} cancelled by {actor}"), json!({ "transaction_id": id, "actor": actor })).await;
    txn.commit().await?;
    transactions::Entity::find_by_id(id).one(db).await?.ok_or(OperatorError::NotFound(id))
}

/// Held intents, oldest first.
pub async fn list_held(db: &impl ConnectionTrait) -> Result<Vec<transactions::Model>, DbErr> {
    use sea_orm::QueryOrder;
    transactions::Entity::find().filter(transactions::Column::Status.eq(HELD)).order_by_asc(transactions::Column::CreatedAt).all(db).await
}

async fn held(db: &impl ConnectionTrait, id: Uuid) -> Result<transactions::Model, OperatorError> {
    let intent = transactions::Entity::find_by_id(id).one(db).await?.ok_or(OperatorError::NotFound(id))?;
    if intent.status != HELD {
        return Err(OperatorError::NotHeld { id, status: intent.status });
    }
    Ok(intent)
}

/// Compare-and-set of an intent's status (optionally moving it to another wallet).
async fn set_status(db: &impl ConnectionTrait, id: Uuid, from: &str, to: &str, wallet: Option<Uuid>, note: &str) -> Result<bool, DbErr> {
    let mut update = transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(to))
        .col_expr(transactions::Column::LastError, Expr::value(note))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(wallet) = wallet {
        update = update.col_expr(transactions::Column::HotWalletId, Expr::value(wallet));
    }
    let result = update.filter(transactions::Column::Id.eq(id)).filter(transactions::Column::Status.eq(from)).exec(db).await?;
    Ok(result.rows_affected == 1)
}
