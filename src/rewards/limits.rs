//! Mint limits (SPEC section 2): per event, per user per UTC day and in total
//! per UTC day. Counters change inside the processing transaction with a
//! conditional update (`used + amount <= limit`), so two processors cannot
//! both pass a limit; an intent over one is held for an operator.

use alloy::primitives::U256;
use entity::mint_counters;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, Set, Statement};

use super::amount::{to_base_units, to_hnv};
use crate::config::rewards::MintLimits;

/// The counter of all users together.
const TOTAL_SCOPE: &str = "total";

/// Whether a new mint may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Within every limit; the counters now include it.
    Within,
    /// Over a limit (which one, for the operator); counters unchanged.
    Over(String),
}

/// Why a limit could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// A counter changed between read and write (retry the transaction).
    #[error("a mint counter changed concurrently")]
    Contended,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Counts `amount` for `user_ref` on `day` if every limit allows it.
pub async fn admit(db: &impl ConnectionTrait, limits: &MintLimits, user_ref: &str, day: &str, amount: U256) -> Result<Admission, LimitError> {
    let per_event = to_base_units(limits.max_per_event).unwrap_or_default();
    if amount > per_event {
        return Ok(Admission::Over(format!("{} HNV exceeds the per-event limit of {}", to_hnv(amount), limits.max_per_event)));
    }
    let user_scope = user_scope(user_ref);
    let per_user = to_base_units(limits.per_user_per_day).unwrap_or_default();
    if !add_within(db, &user_scope, day, amount, Some(per_user)).await? {
        return Ok(Admission::Over(format!("{user_ref} would exceed the daily limit of {} HNV on {day}", limits.per_user_per_day)));
    }
    let total = to_base_units(limits.total_per_day).unwrap_or_default();
    if !add_within(db, TOTAL_SCOPE, day, amount, Some(total)).await? {
        subtract(db, &user_scope, day, amount).await?;
        return Ok(Admission::Over(format!("minting would exceed the total daily limit of {} HNV on {day}", limits.total_per_day)));
    }
    Ok(Admission::Within)
}

/// Counts an operator-released mint without checking the limits (the
/// operator decided), so later mints of the day still see it.
pub async fn count_released(db: &impl ConnectionTrait, user_ref: &str, day: &str, amount: U256) -> Result<(), LimitError> {
    add_within(db, &user_scope(user_ref), day, amount, None).await?;
    add_within(db, TOTAL_SCOPE, day, amount, None).await?;
    Ok(())
}

/// Base units counted for `user_ref` on `day`.
pub async fn used_by(db: &impl ConnectionTrait, user_ref: &str, day: &str) -> Result<U256, DbErr> {
    let row = mint_counters::Entity::find_by_id((user_scope(user_ref), day.to_owned())).one(db).await?;
    Ok(row.and_then(|r| U256::from_str_radix(&r.used, 10).ok()).unwrap_or_default())
}

fn user_scope(user_ref: &str) -> String {
    format!("user:{user_ref}")
}

/// Adds `amount` to a counter if the result stays within `limit`; false when
/// it would not. PostgreSQL does it in one statement, an insert of the day's
/// first amount or a conditional update of the counter (a concurrent writer
/// waits and re-checks against the committed value), so a counter costs one
/// round trip; SQLite serializes write transactions, so a read and then an
/// insert of a new counter or a compare-and-set of an existing one suffice.
async fn add_within(db: &impl ConnectionTrait, scope: &str, day: &str, amount: U256, limit: Option<U256>) -> Result<bool, LimitError> {
    let backend = db.get_database_backend();
    if backend == DbBackend::Postgres {
        return add_within_postgres(db, scope, day, amount, limit).await;
    }
    let used = read(db, scope, day).await?;
    let new = used.unwrap_or_default().checked_add(amount).ok_or(LimitError::Contended)?;
    if limit.is_some_and(|limit| new > limit) {
        return Ok(false);
    }
    match used {
        Some(old) => compare_and_set(db, scope, day, old, new).await?,
        None => insert_counter(db, scope, day, new).await?,
    }
    Ok(true)
}

/// [`add_within`] on PostgreSQL: a new counter is inserted only when the
/// amount alone is within the limit (an amount over it is over it whatever
/// the counter holds), an existing one updated only when the sum is.
async fn add_within_postgres(db: &impl ConnectionTrait, scope: &str, day: &str, amount: U256, limit: Option<U256>) -> Result<bool, LimitError> {
    let (insert_guard, update_guard) = match limit {
        Some(_) => (" WHERE CAST($1 AS numeric) <= CAST($4 AS numeric)", " WHERE CAST(mint_counters.used AS numeric) + CAST($1 AS numeric) <= CAST($4 AS numeric)"),
        None => ("", ""),
    };
    let sql = format!(
        "INSERT INTO mint_counters (scope, day, used) SELECT $2, $3, CAST(CAST($1 AS numeric) AS text){insert_guard} \
         ON CONFLICT (scope, day) DO UPDATE SET used = (CAST(mint_counters.used AS numeric) + CAST($1 AS numeric))::text{update_guard}"
    );
    let mut values = vec![amount.to_string().into(), scope.into(), day.into()];
    if let Some(limit) = limit {
        values.push(limit.to_string().into());
    }
    let result = db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
    Ok(result.rows_affected() == 1)
}

async fn subtract(db: &impl ConnectionTrait, scope: &str, day: &str, amount: U256) -> Result<(), LimitError> {
    let used = read(db, scope, day).await?.ok_or(LimitError::Contended)?;
    compare_and_set(db, scope, day, used, used.saturating_sub(amount)).await
}

/// The day's first amount on a counter; another writer having created it
/// meanwhile is a contention (retry the transaction).
async fn insert_counter(db: &impl ConnectionTrait, scope: &str, day: &str, used: U256) -> Result<(), LimitError> {
    let row = mint_counters::ActiveModel { scope: Set(scope.to_owned()), day: Set(day.to_owned()), used: Set(used.to_string()) };
    let inserted = mint_counters::Entity::insert(row).on_conflict_do_nothing().exec_without_returning(db).await?;
    if matches!(inserted, sea_orm::TryInsertResult::Inserted(1)) { Ok(()) } else { Err(LimitError::Contended) }
}

/// A counter's value; `None` before the day's first mint on it.
async fn read(db: &impl ConnectionTrait, scope: &str, day: &str) -> Result<Option<U256>, LimitError> {
    let Some(row) = mint_counters::Entity::find_by_id((scope.to_owned(), day.to_owned())).one(db).await? else { return Ok(None) };
    U256::from_str_radix(&row.used, 10).map(Some).map_err(|_| LimitError::Db(DbErr::Custom(format!("counter {scope}/{day} holds {:?}", row.used))))
}

async fn compare_and_set(db: &impl ConnectionTrait, scope: &str, day: &str, old: U256, new: U256) -> Result<(), LimitError> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter};
    let result = mint_counters::Entity::update_many()
        .col_expr(mint_counters::Column::Used, Expr::value(new.to_string()))
        .filter(mint_counters::Column::Scope.eq(scope))
        .filter(mint_counters::Column::Day.eq(day))
        .filter(mint_counters::Column::Used.eq(old.to_string()))
        .exec(db)
        .await?;
    if result.rows_affected == 1 { Ok(()) } else { Err(LimitError::Contended) }
}
