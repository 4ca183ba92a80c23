//! Mint limits (SPEC section 2): per event, per user per UTC day and in total
//! per UTC day. Counters change inside the processing transaction with a
//! conditional update (`used + amount <= limit`), so two processors cannot
//! both pass a limit; an intent over one is held for an operator.

use std::collections::BTreeMap;

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
    let bounds = Bounds::of(limits);
    if amount > bounds.per_event {
        return Ok(Admission::Over(over_per_event(limits, amount)));
    }
    let user_scope = user_scope(user_ref);
    if !add_within(db, &user_scope, day, amount, Some(bounds.per_user)).await? {
        return Ok(Admission::Over(over_per_user(limits, user_ref, day)));
    }
    if !add_within(db, TOTAL_SCOPE, day, amount, Some(bounds.total)).await? {
        subtract(db, &user_scope, day, amount).await?;
        return Ok(Admission::Over(over_total(limits, day)));
    }
    Ok(Admission::Within)
}

/// The limits in base units.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest single mint.
    pub per_event: U256,
    /// Per user per UTC day.
    pub per_user: U256,
    /// All users together per UTC day.
    pub total: U256,
}

impl Bounds {
    /// `limits` in base units (a limit too precise to convert counts as 0).
    pub fn of(limits: &MintLimits) -> Self {
        let units = |hnv| to_base_units(hnv).unwrap_or_default();
        Bounds { per_event: units(limits.max_per_event), per_user: units(limits.per_user_per_day), total: units(limits.total_per_day) }
    }
}

/// [`admit`]'s decision from the counters' values, without touching them:
/// what a batch decides in memory before it writes the sums (see
/// [`add_batch`]). Same order and same reasons as [`admit`].
pub fn check(limits: &MintLimits, bounds: &Bounds, user_ref: &str, day: &str, amount: U256, user_used: U256, total_used: U256) -> Admission {
    let within = |used: U256, limit: U256| used.checked_add(amount).is_some_and(|sum| sum <= limit);
    if amount > bounds.per_event {
        Admission::Over(over_per_event(limits, amount))
    } else if !within(user_used, bounds.per_user) {
        Admission::Over(over_per_user(limits, user_ref, day))
    } else if !within(total_used, bounds.total) {
        Admission::Over(over_total(limits, day))
    } else {
        Admission::Within
    }
}

fn over_per_event(limits: &MintLimits, amount: U256) -> String {
    format!("{} HNV exceeds the per-event limit of {}", to_hnv(amount), limits.max_per_event)
}

fn over_per_user(limits: &MintLimits, user_ref: &str, day: &str) -> String {
    format!("{user_ref} would exceed the daily limit of {} HNV on {day}", limits.per_user_per_day)
}

fn over_total(limits: &MintLimits, day: &str) -> String {
    format!("minting would exceed the total daily limit of {} HNV on {day}", limits.total_per_day)
}

/// The counter key of the total of all users on a day.
pub fn total_key(day: &str) -> (String, String) {
    (TOTAL_SCOPE.to_owned(), day.to_owned())
}

/// The counter key of `user_ref` on a day.
pub fn user_key(user_ref: &str, day: &str) -> (String, String) {
    (user_scope(user_ref), day.to_owned())
}

/// What a batch adds to one counter: `old` is the value it read (`None`:
/// no counter yet), `add` the sum of the mints it admitted against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterAdd {
    /// The value the batch's decisions were made from.
    pub old: Option<U256>,
    /// What the batch admitted.
    pub add: U256,
}

/// Writes a batch's sums, the users' counters first and the totals last
/// (so the one row every processor shares is held from here to the commit
/// only); false when a counter no longer allows its sum (another writer
/// counted meanwhile) and the batch must be rolled back and redone one
/// event at a time. `used + add <= limit` holds as in [`admit`]: on
/// PostgreSQL one conditional upsert per kind of counter, on SQLite (one
/// writer) a compare-and-set against the value read.
pub async fn add_batch(db: &impl ConnectionTrait, bounds: &Bounds, adds: &BTreeMap<(String, String), CounterAdd>) -> Result<bool, LimitError> {
    let (totals, users): (Vec<_>, Vec<_>) = adds.iter().filter(|(_, count)| !count.add.is_zero()).partition(|((scope, _), _)| scope == TOTAL_SCOPE);
    for (rows, limit) in [(users, bounds.per_user), (totals, bounds.total)] {
        if rows.is_empty() {
            continue;
        }
        let written = match db.get_database_backend() {
            DbBackend::Postgres => add_rows_postgres(db, &rows, limit).await?,
            _ => add_rows_sqlite(db, &rows, limit).await?,
        };
        if !written {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One multi-row conditional upsert: every row is inserted or added to
/// within `limit`, or the count of rows written falls short.
async fn add_rows_postgres(db: &impl ConnectionTrait, rows: &[(&(String, String), &CounterAdd)], limit: U256) -> Result<bool, LimitError> {
    let mut values: Vec<sea_orm::Value> = vec![limit.to_string().into()];
    let mut tuples = Vec::with_capacity(rows.len());
    for ((scope, day), count) in rows {
        let n = values.len();
        tuples.push(format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
        values.extend([scope.clone().into(), day.clone().into(), count.add.to_string().into()]);
    }
    let sql = format!(
        "INSERT INTO mint_counters (scope, day, used) VALUES {} \
         ON CONFLICT (scope, day) DO UPDATE SET used = (CAST(mint_counters.used AS numeric) + CAST(excluded.used AS numeric))::text \
         WHERE CAST(mint_counters.used AS numeric) + CAST(excluded.used AS numeric) <= CAST($1 AS numeric)",
        tuples.join(", ")
    );
    let result = db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
    Ok(result.rows_affected() == rows.len() as u64)
}

/// SQLite: the new values are computed here (its arithmetic is 64-bit or
/// float, too small for base units) and written in one multi-row upsert that
/// compares each counter with the value the batch was decided from: a new
/// counter is inserted only while none exists, an existing one set only
/// while it still holds `old`. Fewer rows written than given: another writer
/// came between (the batch rolls back).
async fn add_rows_sqlite(db: &impl ConnectionTrait, rows: &[(&(String, String), &CounterAdd)], limit: U256) -> Result<bool, LimitError> {
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(rows.len() * 4);
    for ((scope, day), count) in rows {
        let new = count.old.unwrap_or_default().checked_add(count.add).ok_or(LimitError::Contended)?;
        if new > limit {
            return Ok(false);
        }
        values.extend([scope.clone().into(), day.clone().into(), count.old.map(|old| old.to_string()).into(), new.to_string().into()]);
    }
    let sql = format!(
        "WITH batch (scope, day, old, new) AS (VALUES {}) \
         INSERT INTO mint_counters (scope, day, used) SELECT scope, day, new FROM batch WHERE true \
         ON CONFLICT (scope, day) DO UPDATE SET used = excluded.used \
         WHERE mint_counters.used = (SELECT old FROM batch WHERE batch.scope = excluded.scope AND batch.day = excluded.day)",
        vec!["(?, ?, ?, ?)"; rows.len()].join(", ")
    );
    let result = db.execute_raw(Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)).await?;
    Ok(result.rows_affected() == rows.len() as u64)
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
