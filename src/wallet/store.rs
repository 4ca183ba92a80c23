//! The wallet actor's database side: the epoch claim and the fenced writes.
//!
//! Every write runs in a transaction that also compare-and-sets the wallet
//! row on (`epoch`, `next_nonce`): zero rows means another daemon took the
//! wallet over (or it was revoked), and the write is rolled back.

use alloy::primitives::{B256, U256};
use std::collections::HashMap;

use entity::{transactions, tx_attempt_intents, tx_attempts, wallets};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, Statement,
};
use uuid::Uuid;

use super::plan::{Settled, Settlement};
use crate::chain::{CallKind, Fees};
use crate::custody;
use crate::ledger::{BROADCAST, CANCELLED, CONFIRMED, FAILED, HELD, QUEUED, SIGNED, gas_hold};

/// Attempt rows per multi-row insert (11 parameters each).
const ATTEMPT_ROWS_PER_INSERT: usize = 1_000;
/// Join rows per multi-row insert (3 parameters each).
const LINK_ROWS_PER_INSERT: usize = 5_000;
/// Ids per `IN (…)` list, under both backends' bind-parameter limits.
const IDS_PER_STATEMENT: usize = 5_000;

/// Why a fenced write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The wallet's epoch moved: another actor owns it now.
    #[error("fenced out: another daemon took this wallet over")]
    Fenced,
    /// The wallet may not do this in its status (revoked, rotated).
    #[error("wallet is {0}")]
    NotAllowed(String),
    /// The epoch still holds but `next_nonce` is not what this actor
    /// believes: its state is stale and must be reloaded (not a takeover).
    #[error("stale state: stored next_nonce is {stored}, the actor expected {expected}")]
    Stale {
        /// `wallets.next_nonce`.
        stored: i64,
        /// What the write assumed.
        expected: u64,
    },
    /// The database failed; the outcome of the commit may be unknown.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Which wallet statuses a write is allowed in.
#[derive(Debug, Clone, Copy)]
pub enum Allowed {
    /// New nonces: active wallets only.
    NewWork,
    /// Replacement attempts of signed work (same nonce, nothing new exposed):
    /// active, rotated or revoked.
    SignedWork,
    /// Recording what the chain did: any status.
    Bookkeeping,
}

impl Allowed {
    fn statuses(self) -> &'static [&'static str] {
        match self {
            Allowed::NewWork => &[custody::ACTIVE],
            Allowed::SignedWork => &[custody::ACTIVE, custody::ROTATED, custody::REVOKED],
            Allowed::Bookkeeping => &[custody::STANDBY, custody::ACTIVE, custody::ROTATED, custody::REVOKED],
        }
    }
}

/// The fence: `next_nonce` start → end, only under `epoch` and an allowed status.
pub async fn fence(
    txn: &DatabaseTransaction,
    wallet_id: Uuid,
    epoch: i64,
    start: u64,
    end: u64,
    allowed: Allowed,
) -> Result<(), StoreError> {
    let result = wallets::Entity::update_many()
        .col_expr(wallets::Column::NextNonce, Expr::value(end as i64))
        .col_expr(wallets::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(wallets::Column::Id.eq(wallet_id))
        .filter(wallets::Column::Epoch.eq(epoch))
        .filter(wallets::Column::NextNonce.eq(start as i64))
        .filter(wallets::Column::Status.is_in(allowed.statuses().iter().copied()))
        .exec(txn)
        .await?;
    if result.rows_affected == 1 {
        return Ok(());
    }
    let row = wallets::Entity::find_by_id(wallet_id).one(txn).await?;
    match row {
        Some(row) if row.epoch == epoch && !allowed.statuses().contains(&row.status.as_str()) => {
            Err(StoreError::NotAllowed(row.status))
        }
        Some(row) if row.epoch == epoch => Err(StoreError::Stale { stored: row.next_nonce, expected: start }),
        _ => Err(StoreError::Fenced),
    }
}

/// Takes the wallet over: `epoch + 1`, owner recorded. Returns the new epoch
/// and the wallet row as it is now.
pub async fn claim(db: &DatabaseConnection, wallet_id: Uuid, owner: &str) -> Result<(i64, wallets::Model), DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "UPDATE wallets SET epoch = epoch + 1, owner = $1 WHERE id = $2 RETURNING epoch",
        _ => "UPDATE wallets SET epoch = epoch + 1, owner = ? WHERE id = ? RETURNING epoch",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [owner.into(), wallet_id.into()]))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("wallet {wallet_id}")))?;
    let epoch: i64 = row.try_get_by_index(0)?;
    let wallet = wallets::Entity::find_by_id(wallet_id).one(db).await?.ok_or_else(|| DbErr::RecordNotFound(format!("wallet {wallet_id}")))?;
    Ok((epoch, wallet))
}

/// Records that the actor holding `epoch` is alive (see
/// [`super::unclaimed_wallets`]); a stale epoch writes nothing, and the
/// actor's next fenced write finds out.
pub async fn heartbeat(db: &impl ConnectionTrait, wallet_id: Uuid, epoch: i64) -> Result<(), DbErr> {
    wallets::Entity::update_many()
        .col_expr(wallets::Column::HeartbeatAt, Expr::value(chrono::Utc::now()))
        .filter(wallets::Column::Id.eq(wallet_id))
        .filter(wallets::Column::Epoch.eq(epoch))
        .exec(db)
        .await
        .map(|_| ())
}

/// A signed batch at its nonce with its attempts, as the actor tracks it.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The nonce.
    pub nonce: u64,
    /// Its intents, in call order.
    pub intents: Vec<transactions::Model>,
    /// Its attempts at the nonce, oldest first.
    pub attempts: Vec<tx_attempts::Model>,
}

/// This wallet's signed or broadcast batches with their attempts, by nonce.
pub async fn load_in_flight(db: &impl ConnectionTrait, wallet_id: Uuid) -> Result<Vec<Tracked>, DbErr> {
    let intents = transactions::Entity::find()
        .filter(transactions::Column::HotWalletId.eq(wallet_id))
        .filter(transactions::Column::Status.is_in([SIGNED, BROADCAST]))
        .order_by_asc(transactions::Column::Nonce)
        .all(db)
        .await?;
    let mut by_nonce: std::collections::BTreeMap<u64, Vec<transactions::Model>> = std::collections::BTreeMap::new();
    for intent in intents {
        if let Some(nonce) = intent.nonce.and_then(|n| u64::try_from(n).ok()) {
            by_nonce.entry(nonce).or_default().push(intent);
        }
    }
    // A wallet signs each nonce once, so its attempts at a nonce all carry that nonce's batch.
    let nonces: Vec<i64> = by_nonce.keys().map(|n| *n as i64).collect();
    let mut attempts: HashMap<u64, Vec<tx_attempts::Model>> = HashMap::new();
    for chunk in nonces.chunks(IDS_PER_STATEMENT) {
        let rows = tx_attempts::Entity::find()
            .filter(tx_attempts::Column::WalletId.eq(wallet_id))
            .filter(tx_attempts::Column::Nonce.is_in(chunk.iter().copied()))
            .order_by_asc(tx_attempts::Column::Attempt)
            .all(db)
            .await?;
        for row in rows {
            attempts.entry(row.nonce as u64).or_default().push(row);
        }
    }
    let first_attempts: Vec<Uuid> = attempts.values().filter_map(|a| a.first()).map(|a| a.id).collect();
    let position: HashMap<Uuid, i32> = links_of_attempts(db, &first_attempts).await?.into_iter().map(|l| (l.transaction_id, l.position)).collect();
    Ok(by_nonce
        .into_iter()
        .map(|(nonce, mut intents)| {
            intents.sort_by_key(|i| (position.get(&i.id).copied().unwrap_or(i32::MAX), i.id));
            Tracked { nonce, intents, attempts: attempts.remove(&nonce).unwrap_or_default() }
        })
        .collect())
}

async fn links_of_attempts(db: &impl ConnectionTrait, attempts: &[Uuid]) -> Result<Vec<tx_attempt_intents::Model>, DbErr> {
    let mut links = Vec::new();
    for chunk in attempts.chunks(IDS_PER_STATEMENT) {
        links.extend(tx_attempt_intents::Entity::find().filter(tx_attempt_intents::Column::AttemptId.is_in(chunk.iter().copied())).all(db).await?);
    }
    Ok(links)
}

async fn links_of_intents(db: &impl ConnectionTrait, intents: &[Uuid]) -> Result<Vec<tx_attempt_intents::Model>, DbErr> {
    let mut links = Vec::new();
    for chunk in intents.chunks(IDS_PER_STATEMENT) {
        links.extend(tx_attempt_intents::Entity::find().filter(tx_attempt_intents::Column::TransactionId.is_in(chunk.iter().copied())).all(db).await?);
    }
    Ok(links)
}

/// Queued intents of this wallet, oldest first, leaving out reversals whose
/// original is in flight: those wait without taking a slot from later work,
/// and the next tick's query looks at them again. With `hold_mints` (a gas
/// spike) mints are left out too, so the burns behind them still go.
pub async fn queued(db: &impl ConnectionTrait, wallet_id: Uuid, limit: u64, hold_mints: bool) -> Result<Vec<transactions::Model>, DbErr> {
    let in_flight = Query::select()
        .column(transactions::Column::Id)
        .from(transactions::Entity)
        .and_where(transactions::Column::Status.is_in([SIGNED, BROADCAST]))
        .to_owned();
    transactions::Entity::find()
        .filter(transactions::Column::HotWalletId.eq(wallet_id))
        .filter(transactions::Column::Status.eq(QUEUED))
        .filter(
            Condition::any()
                .add(transactions::Column::Reverses.is_null())
                .add(transactions::Column::Reverses.not_in_subquery(in_flight)),
        )
        .apply_if(hold_mints.then_some(CallKind::Mint.as_str()), |query, mint| query.filter(transactions::Column::Kind.ne(mint)))
        .order_by_asc(transactions::Column::CreatedAt)
        .order_by_asc(transactions::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// A signed attempt of a batch, about to be written ahead of its broadcast.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// The intents it executes, in call order.
    pub transaction_ids: Vec<Uuid>,
    /// Mint or burn (mints wait out a gas spike; see [`crate::ledger::gas_hold`]).
    pub kind: CallKind,
    /// Its nonce.
    pub nonce: u64,
    /// 0 for the first, then one per bump.
    pub attempt: i32,
    /// Hash.
    pub hash: B256,
    /// Signed bytes.
    pub raw: Vec<u8>,
    /// Fees.
    pub fees: Fees,
    /// Gas limit.
    pub gas_limit: u64,
    /// The head block when it was signed (where its log search starts).
    pub sent_block: u64,
}

fn attempt_row(wallet_id: Uuid, id: Uuid, attempt: &NewAttempt) -> tx_attempts::ActiveModel {
    tx_attempts::ActiveModel {
        id: Set(id),
        transaction_id: Set(attempt.transaction_ids.first().copied().unwrap_or_default()),
        wallet_id: Set(wallet_id),
        nonce: Set(attempt.nonce as i64),
        attempt: Set(attempt.attempt),
        tx_hash: Set(attempt.hash.to_string()),
        raw: Set(attempt.raw.clone()),
        max_fee_per_gas: Set(attempt.fees.max_fee_per_gas.to_string()),
        max_priority_fee_per_gas: Set(attempt.fees.max_priority_fee_per_gas.to_string()),
        gas_limit: Set(attempt.gas_limit as i64),
        created_at: Set(chrono::Utc::now()),
        sent_block: Set(Some(attempt.sent_block as i64)),
    }
}

/// Writes attempts and the join rows naming their intents.
async fn insert_attempts(txn: &DatabaseTransaction, wallet_id: Uuid, attempts: &[NewAttempt]) -> Result<(), DbErr> {
    let ids: Vec<Uuid> = attempts.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<_> = attempts.iter().zip(&ids).map(|(a, id)| attempt_row(wallet_id, *id, a)).collect();
    // Bind-parameter limits (SQLite 32,766, PostgreSQL 65,535) cap rows per statement.
    for chunk in rows.chunks(ATTEMPT_ROWS_PER_INSERT) {
        tx_attempts::Entity::insert_many(chunk.to_vec()).exec(txn).await?;
    }
    let links: Vec<tx_attempt_intents::ActiveModel> = attempts
        .iter()
        .zip(&ids)
        .flat_map(|(a, id)| {
            a.transaction_ids.iter().enumerate().map(move |(position, transaction_id)| tx_attempt_intents::ActiveModel {
                attempt_id: Set(*id),
                transaction_id: Set(*transaction_id),
                position: Set(position as i32),
            })
        })
        .collect();
    for chunk in links.chunks(LINK_ROWS_PER_INSERT) {
        tx_attempt_intents::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// The block each attempt of each of `intents` was signed at (every
/// generation, every wallet), NULL for attempts signed before it was recorded.
pub async fn sent_blocks(db: &impl ConnectionTrait, intents: &[Uuid]) -> Result<HashMap<Uuid, Vec<Option<i64>>>, DbErr> {
    let links = links_of_intents(db, intents).await?;
    let attempt_ids: Vec<Uuid> = links.iter().map(|l| l.attempt_id).collect();
    let mut blocks: HashMap<Uuid, Option<i64>> = HashMap::new();
    for chunk in attempt_ids.chunks(IDS_PER_STATEMENT) {
        let rows: Vec<(Uuid, Option<i64>)> = tx_attempts::Entity::find()
            .select_only()
            .column(tx_attempts::Column::Id)
            .column(tx_attempts::Column::SentBlock)
            .filter(tx_attempts::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        blocks.extend(rows);
    }
    let mut sent: HashMap<Uuid, Vec<Option<i64>>> = HashMap::new();
    for link in links {
        sent.entry(link.transaction_id).or_default().push(blocks.get(&link.attempt_id).copied().flatten());
    }
    Ok(sent)
}

/// How many attempts were signed carrying the intent (replacements included).
pub async fn attempt_count(db: &impl ConnectionTrait, transaction_id: Uuid) -> Result<u64, DbErr> {
    tx_attempt_intents::Entity::find().filter(tx_attempt_intents::Column::TransactionId.eq(transaction_id)).count(db).await
}

/// The write-ahead commit: each batch's intents → `signed` with its nonce,
/// attempts and their intents stored, `next_nonce` advanced from `start`
/// past the batches, all or nothing.
pub async fn reserve(
    db: &DatabaseConnection,
    wallet_id: Uuid,
    epoch: i64,
    start: u64,
    batch: &[NewAttempt],
) -> Result<(), StoreError> {
    let txn = crate::db::begin_write(db).await?;
    // The operators' switch, read under a shared lock in the same
    // transaction that takes the nonces: a pause committed before this point
    // stops this batch on every daemon, and a pause asked for after it waits
    // for this batch to commit.
    if crate::ledger::pause::is_paused_for_signing(&txn).await? {
        return Err(StoreError::NotAllowed("minting is paused".into()));
    }
    // The gas spike hold, read the same way; only mints wait, so a batch
    // the actor filtered under an older reading is refused and rebuilt.
    if batch.iter().any(|attempt| gas_hold::waits_for_gas(attempt.kind)) && gas_hold::is_held(&txn, chrono::Utc::now()).await? {
        return Err(StoreError::NotAllowed("mints wait out a gas spike".into()));
    }
    let now = chrono::Utc::now();
    for attempt in batch {
        let updated = transactions::Entity::update_many()
            .col_expr(transactions::Column::Status, Expr::value(SIGNED))
            .col_expr(transactions::Column::Nonce, Expr::value(attempt.nonce as i64))
            .col_expr(transactions::Column::UpdatedAt, Expr::value(now))
            .filter(transactions::Column::Id.is_in(attempt.transaction_ids.iter().copied()))
            .filter(transactions::Column::HotWalletId.eq(wallet_id))
            .filter(transactions::Column::Status.eq(QUEUED))
            .exec(&txn)
            .await?;
        if updated.rows_affected != attempt.transaction_ids.len() as u64 {
            // Moved (rotation) or cancelled meanwhile: sign nothing of this batch.
            return Err(StoreError::NotAllowed("queue changed while signing".into()));
        }
    }
    insert_attempts(&txn, wallet_id, batch).await?;
    // Test hook: another daemon may claim the wallet between this actor's reads and its fence.
    if is_hook_target("wallet::fence_target", wallet_id) {
        fail::fail_point!("wallet::before_fence");
    }
    fence(&txn, wallet_id, epoch, start, start + batch.len() as u64, Allowed::NewWork).await?;
    txn.commit().await?;
    Ok(())
}

/// Stores a replacement attempt (same intents, same nonce, higher fees) before it is sent.
pub async fn add_attempt(db: &DatabaseConnection, wallet_id: Uuid, epoch: i64, next_nonce: u64, attempt: &NewAttempt) -> Result<(), StoreError> {
    let txn = crate::db::begin_write(db).await?;
    insert_attempts(&txn, wallet_id, std::slice::from_ref(attempt)).await?;
    fence(&txn, wallet_id, epoch, next_nonce, next_nonce, Allowed::SignedWork).await?;
    txn.commit().await?;
    Ok(())
}

/// Marks intents `broadcast` (from `signed`).
pub async fn mark_broadcast(db: &DatabaseConnection, wallet_id: Uuid, epoch: i64, next_nonce: u64, ids: &[Uuid]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let txn = crate::db::begin_write(db).await?;
    transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(BROADCAST))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(transactions::Column::Id.is_in(ids.iter().copied()))
        .filter(transactions::Column::Status.eq(SIGNED))
        .exec(&txn)
        .await?;
    fence(&txn, wallet_id, epoch, next_nonce, next_nonce, Allowed::Bookkeeping).await?;
    txn.commit().await?;
    Ok(())
}

/// Records final outcomes: confirmed or failed by the transaction that
/// decided each; a burn its holder could not cover is confirmed for nothing,
/// its amount moved to the shortfall, so balances stay equal to the chain.
pub async fn finalize(db: &DatabaseConnection, wallet_id: Uuid, epoch: i64, next_nonce: u64, outcomes: &[Settled]) -> Result<(), StoreError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let txn = crate::db::begin_write(db).await?;
    let now = chrono::Utc::now();
    // One statement per deciding transaction and outcome, not per intent.
    let mut groups: HashMap<(B256, u64, bool), Vec<Uuid>> = HashMap::new();
    let mut unfunded = Vec::new();
    for outcome in outcomes {
        match outcome.settlement {
            Settlement::Confirmed => groups.entry((outcome.mined.hash, outcome.mined.block, true)).or_default().push(outcome.transaction_id),
            Settlement::Failed => groups.entry((outcome.mined.hash, outcome.mined.block, false)).or_default().push(outcome.transaction_id),
            Settlement::Unfunded => unfunded.push(outcome),
        }
    }
    for ((hash, block, confirmed), ids) in groups {
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            transactions::Entity::update_many()
                .col_expr(transactions::Column::Status, Expr::value(if confirmed { CONFIRMED } else { FAILED }))
                .col_expr(transactions::Column::TxHash, Expr::value(hash.to_string()))
                .col_expr(transactions::Column::BlockNumber, Expr::value(block as i64))
                .col_expr(transactions::Column::LastError, Expr::value((!confirmed).then_some("reverted on chain".to_string())))
                .col_expr(transactions::Column::UpdatedAt, Expr::value(now))
                .filter(transactions::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
    }
    for outcome in unfunded {
        let Some(burn) = transactions::Entity::find_by_id(outcome.transaction_id).one(&txn).await? else { continue };
        let parse = |v: Option<&str>| v.and_then(|v| U256::from_str_radix(v, 10).ok()).unwrap_or_default();
        let shortfall = parse(Some(&burn.amount)).saturating_add(parse(burn.shortfall.as_deref()));
        transactions::Entity::update_many()
            .col_expr(transactions::Column::Status, Expr::value(CONFIRMED))
            .col_expr(transactions::Column::Amount, Expr::value("0"))
            .col_expr(transactions::Column::Shortfall, Expr::value(Some(shortfall.to_string())))
            .col_expr(transactions::Column::TxHash, Expr::value(outcome.mined.hash.to_string()))
            .col_expr(transactions::Column::BlockNumber, Expr::value(outcome.mined.block as i64))
            .col_expr(transactions::Column::LastError, Expr::value("the holder could not cover the burn on chain: settled for nothing"))
            .col_expr(transactions::Column::UpdatedAt, Expr::value(now))
            .filter(transactions::Column::Id.eq(outcome.transaction_id))
            .exec(&txn)
            .await?;
    }
    fence(&txn, wallet_id, epoch, next_nonce, next_nonce, Allowed::Bookkeeping).await?;
    txn.commit().await?;
    Ok(())
}

/// A nonce consumed by a transaction havend did not send: recorded, and the
/// intents of its batch queued again as their next generation, for a new
/// nonce (the contract never executes an intent's number or id twice, so this
/// is safe even if ours had landed).
pub async fn requeue_foreign(db: &DatabaseConnection, wallet_id: Uuid, epoch: i64, next_nonce: u64, transaction_ids: &[Uuid], nonce: u64) -> Result<(), StoreError> {
    let txn = crate::db::begin_write(db).await?;
    record_foreign(&txn, wallet_id, nonce).await?;
    transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(QUEUED))
        .col_expr(transactions::Column::Nonce, Expr::value(Option::<i64>::None))
        .col_expr(transactions::Column::Generation, Expr::col(transactions::Column::Generation).add(1))
        .col_expr(transactions::Column::LastError, Expr::value(format!("nonce {nonce} was taken by a foreign transaction")))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(transactions::Column::Id.is_in(transaction_ids.iter().copied()))
        .filter(transactions::Column::Status.is_in([SIGNED, BROADCAST]))
        .exec(&txn)
        .await?;
    fence(&txn, wallet_id, epoch, next_nonce, next_nonce, Allowed::Bookkeeping).await?;
    txn.commit().await?;
    Ok(())
}

async fn record_foreign(txn: &DatabaseTransaction, wallet_id: Uuid, nonce: u64) -> Result<(), DbErr> {
    entity::foreign_nonces::Entity::insert(entity::foreign_nonces::ActiveModel {
        wallet_id: Set(wallet_id),
        nonce: Set(nonce as i64),
        detected_at: Set(chrono::Utc::now()),
    })
    .on_conflict_do_nothing()
    .exec(txn)
    .await?;
    Ok(())
}

/// Persists why the wallet stopped signing (`None`: it signs again); an
/// operator lifts a stored halt with `havend wallet resume`.
pub async fn set_halted(db: &DatabaseConnection, wallet_id: Uuid, epoch: i64, next_nonce: u64, reason: Option<&str>) -> Result<(), StoreError> {
    let txn = crate::db::begin_write(db).await?;
    wallets::Entity::update_many()
        .col_expr(wallets::Column::Halted, Expr::value(reason.map(str::to_owned)))
        .filter(wallets::Column::Id.eq(wallet_id))
        .exec(&txn)
        .await?;
    fence(&txn, wallet_id, epoch, next_nonce, next_nonce, Allowed::Bookkeeping).await?;
    txn.commit().await?;
    Ok(())
}

/// After an operator resumed a wallet whose nonces a foreign signer used:
/// the nonces `[from, to)` are recorded as foreign and `next_nonce` moves
/// to `to`, so none is skipped silently (invariant 4).
pub async fn adopt_chain_nonce(db: &DatabaseConnection, wallet_id: Uuid, epoch: i64, from: u64, to: u64) -> Result<(), StoreError> {
    let txn = crate::db::begin_write(db).await?;
    for nonce in from..to {
        record_foreign(&txn, wallet_id, nonce).await?;
    }
    fence(&txn, wallet_id, epoch, from, to, Allowed::Bookkeeping).await?;
    txn.commit().await?;
    Ok(())
}

/// What a queued reversal may do now, decided from its original's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalDecision {
    /// The original is confirmed: the reversal may be signed.
    Ready,
    /// The original is in flight (or was signed while this was decided): look again on a later tick.
    Wait,
    /// The original never happened (or was cancelled with it): the reversal was cancelled.
    Cancelled,
}

/// Decides queued reversals `(reversal, original)` against their originals'
/// status, re-read in the same fenced transaction that writes the outcome:
/// a queued or held original is cancelled with its reversal; a cancelled,
/// failed or missing one cancels the reversal; an original in flight makes
/// it wait. Every cancellation is a compare-and-set on the status read, so
/// an original signed meanwhile (by a concurrent signer) is never cancelled
/// and its reversal waits for it instead of being dropped.
pub async fn decide_reversals(
    db: &DatabaseConnection,
    wallet_id: Uuid,
    epoch: i64,
    next_nonce: u64,
    reversals: &[(Uuid, Uuid)],
) -> Result<Vec<(Uuid, ReversalDecision)>, StoreError> {
    let txn = crate::db::begin_write(db).await?;
    let originals: Vec<Uuid> = reversals.iter().map(|(_, original)| *original).collect();
    let status: std::collections::HashMap<Uuid, String> = transactions::Entity::find()
        .filter(transactions::Column::Id.is_in(originals))
        .all(&txn)
        .await?
        .into_iter()
        .map(|t| (t.id, t.status))
        .collect();
    // Test hook: a concurrent signer may move an original between this read and the writes below.
    if is_hook_target("wallet::reversal_target", wallet_id) {
        fail::fail_point!("wallet::reversal_decided");
    }
    let mut decisions = Vec::with_capacity(reversals.len());
    // Per user, what the reversals found ready in this call will burn: the
    // holdings leave queued reversals out, so each later one of the same
    // user is clipped against what the earlier ones leave.
    let mut burning: std::collections::HashMap<Uuid, U256> = std::collections::HashMap::new();
    for &(reversal, original) in reversals {
        let decision = match status.get(&original).map(String::as_str) {
            Some(CONFIRMED) => clip_reversal(&txn, reversal, original, &mut burning).await?,
            Some(QUEUED | HELD) => {
                if set_status(&txn, original, &[QUEUED, HELD], CANCELLED, "reversed before it was minted").await? {
                    set_status(&txn, reversal, &[QUEUED], CANCELLED, "its mint was cancelled with it").await?;
                    ReversalDecision::Cancelled
                } else {
                    ReversalDecision::Wait
                }
            }
            Some(CANCELLED | FAILED) | None => {
                set_status(&txn, reversal, &[QUEUED], CANCELLED, "its mint never happened").await?;
                ReversalDecision::Cancelled
            }
            Some(_) => ReversalDecision::Wait,
        };
        decisions.push((reversal, decision));
    }
    fence(&txn, wallet_id, epoch, next_nonce, next_nonce, Allowed::Bookkeeping).await?;
    txn.commit().await?;
    Ok(decisions)
}

/// Test hook: whether a hook inside a fenced write applies to this wallet
/// (its `target` failpoint armed with `return(<wallet id>)`), so a test holds
/// only its own wallet's actors, not those of tests beside it.
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn is_hook_target(target: &str, wallet_id: Uuid) -> bool {
    fail::fail_point!(target, |armed: Option<String>| armed == Some(wallet_id.to_string()));
    false
}

/// A reversal burns what its user still holds when it is signed: its mint's
/// stored amount, clipped to confirmed mints minus confirmed burns minus
/// burns already on their way, minus what the reversals of the same user
/// already found ready in this batch will burn (`burning`, per user, which
/// this one adds to when ready), with the shortfall recorded and alerted in
/// the same commit. With nothing left to burn it is cancelled. Recomputed
/// from the mint's amount each time, so deciding the same batch twice
/// records the same.
async fn clip_reversal(
    txn: &DatabaseTransaction,
    reversal: Uuid,
    original: Uuid,
    burning: &mut std::collections::HashMap<Uuid, U256>,
) -> Result<ReversalDecision, DbErr> {
    let (Some(burn), Some(mint)) =
        (transactions::Entity::find_by_id(reversal).one(txn).await?, transactions::Entity::find_by_id(original).one(txn).await?)
    else {
        return Ok(ReversalDecision::Wait);
    };
    let owed = U256::from_str_radix(&mint.amount, 10).unwrap_or_default();
    let decided = burning.get(&burn.user_id).copied().unwrap_or_default();
    let holds = crate::ledger::holdings(txn, burn.user_id, reversal).await?.saturating_sub(decided);
    let burnable = owed.min(holds);
    let shortfall = owed - burnable;
    if shortfall.is_zero() {
        // Signed at its stored amount (an earlier clip may have lowered it).
        let stored = U256::from_str_radix(&burn.amount, 10).unwrap_or(owed).min(owed);
        burning.insert(burn.user_id, decided.saturating_add(stored));
        return Ok(ReversalDecision::Ready);
    }
    let nothing_left = burnable.is_zero();
    let mut update = transactions::Entity::update_many()
        .col_expr(transactions::Column::Amount, Expr::value(burnable.to_string()))
        .col_expr(transactions::Column::Shortfall, Expr::value(Some(shortfall.to_string())))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(chrono::Utc::now()));
    if nothing_left {
        update = update
            .col_expr(transactions::Column::Status, Expr::value(CANCELLED))
            .col_expr(transactions::Column::LastError, Expr::value("the user holds nothing left to burn"));
    }
    let changed = update.filter(transactions::Column::Id.eq(reversal)).filter(transactions::Column::Status.eq(QUEUED)).exec(txn).await?;
    if changed.rows_affected != 1 {
        return Ok(ReversalDecision::Wait);
    }
    if !nothing_left {
        burning.insert(burn.user_id, decided.saturating_add(burnable));
    }
    if burn.shortfall.as_deref() != Some(shortfall.to_string().as_str()) {
        crate::alert::raise(
            txn,
            crate::alert::Severity::Warning,
            "reversal_shortfall",
            &format!(
                "Reversal {reversal} can burn only {} of the {} HNV minted: the user spent the rest",
                crate::chain::format_units(burnable),
                crate::chain::format_units(owed)
            ),
            serde_json::json!({ "transaction_id": reversal, "reverses": original, "shortfall": shortfall.to_string(), "burnable": burnable.to_string() }),
        )
        .await;
    }
    Ok(if nothing_left { ReversalDecision::Cancelled } else { ReversalDecision::Ready })
}

/// Compare-and-set of an intent's status; true when it was in one of `from`.
async fn set_status(txn: &DatabaseTransaction, id: Uuid, from: &[&str], to: &str, reason: &str) -> Result<bool, DbErr> {
    let result = transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(to))
        .col_expr(transactions::Column::LastError, Expr::value(reason))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(transactions::Column::Id.eq(id))
        .filter(transactions::Column::Status.is_in(from.iter().copied()))
        .exec(txn)
        .await?;
    Ok(result.rows_affected == 1)
}
