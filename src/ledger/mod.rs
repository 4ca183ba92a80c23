//! The ledger: users (a partner identity, its custodial wallet, its assigned
//! hot wallet) and reward intents (`transactions`), each of which becomes
//! exactly one effective mint or burn.

pub mod gas_hold;
pub mod pause;
pub mod reconcile;
pub mod redemption;

use alloy::primitives::U256;
use entity::{transactions, users};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::chain::{CallKind, intent_id};
use crate::custody::{self, CustodyError, MasterKeys};

/// Intent status: waiting for its wallet actor.
pub const QUEUED: &str = "queued";
/// Intent status: nonce assigned, signed attempt stored, maybe not sent.
pub const SIGNED: &str = "signed";
/// Intent status: sent to the node.
pub const BROADCAST: &str = "broadcast";
/// Intent status: mined successfully at the finality depth.
pub const CONFIRMED: &str = "confirmed";
/// Intent status: mined and reverted (its nonce is used, its effect did not happen).
pub const FAILED: &str = "failed";
/// Intent status: withdrawn before signing (a reversal whose mint never happened).
pub const CANCELLED: &str = "cancelled";
/// Intent status: over a mint limit, waiting for an operator to release or
/// cancel it (never signed while held).
pub const HELD: &str = "held";

/// Why an intent could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No active hot wallet exists to assign the user to.
    #[error("no active hot wallet to assign")]
    NoHotWallet,
    /// A new user needs a custodial wallet and this daemon has no master key.
    #[error("a new user needs a custodial wallet and this daemon has no master key")]
    NoMasterKey,
    /// Custody failed creating the user's wallet.
    #[error(transparent)]
    Custody(#[from] CustodyError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// A mint or burn to queue.
#[derive(Debug, Clone)]
pub struct NewIntent {
    /// `{partner}:{external id}`.
    pub user: String,
    /// Mint or burn.
    pub kind: CallKind,
    /// Base units.
    pub amount: U256,
    /// Why, for operators.
    pub reason: String,
    /// Unique cause: a second intent with the same source is not created.
    pub source: String,
    /// The mint a burn reverses.
    pub reverses: Option<Uuid>,
}

/// Where an intent came from, recorded on it (all optional: API mints and
/// jobs have no inbox event).
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The inbox event that caused it.
    pub event_id: Option<Uuid>,
    /// The hash of the reward rules it was computed with.
    pub rules_hash: Option<String>,
    /// The UTC day its mint counts toward in the daily limits.
    pub limit_day: Option<String>,
}

/// The intent stored for a source, and whether this call created it.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The stored intent (this call's, or the one that already had the source).
    pub intent: transactions::Model,
    /// False when an intent with the same source existed already.
    pub created: bool,
}

/// The user behind `external_ref`, created with a custodial wallet on first
/// use and assigned one of `hot_wallets` (stable: by the ref's hash).
pub async fn ensure_user(
    db: &impl ConnectionTrait,
    keys: &MasterKeys,
    external_ref: &str,
    hot_wallets: &[Uuid],
) -> Result<users::Model, LedgerError> {
    if let Some(user) = users::Entity::find().filter(users::Column::ExternalRef.eq(external_ref)).one(db).await? {
        return Ok(user);
    }
    if hot_wallets.is_empty() {
        return Err(LedgerError::NoHotWallet);
    }
    let wallet = custody::create_wallet(db, keys, custody::USER, "ledger").await?;
    let hot = pick_hot_wallet(external_ref, hot_wallets);
    let user = users::ActiveModel {
        id: Set(Uuid::now_v7()),
        external_ref: Set(external_ref.to_owned()),
        wallet_id: Set(wallet.id),
        address: Set(wallet.address.clone()),
        hot_wallet_id: Set(hot),
        created_at: Set(chrono::Utc::now()),
    };
    users::Entity::insert(user).on_conflict_do_nothing_on([users::Column::ExternalRef]).exec(db).await?;
    // Whoever won a concurrent first reward, the stored row is the user.
    Ok(users::Entity::find().filter(users::Column::ExternalRef.eq(external_ref)).one(db).await?.ok_or(DbErr::RecordNotFound(external_ref.into()))?)
}

/// The hot wallet a new user `external_ref` is assigned among the active
/// `hot_wallets` (not empty): stable, by the reference's hash.
pub fn pick_hot_wallet(external_ref: &str, hot_wallets: &[Uuid]) -> Uuid {
    let digest = alloy::primitives::keccak256(external_ref.as_bytes());
    hot_wallets[digest[31] as usize % hot_wallets.len()]
}

/// Writes a `system_flags` row (the minting pause, the gas hold): an upsert,
/// so every daemon sharing the database reads the newest value.
pub(crate) async fn set_system_flag(db: &impl ConnectionTrait, name: &str, value: String, actor: &str) -> Result<(), DbErr> {
    use entity::system_flags;
    let row = system_flags::ActiveModel {
        name: Set(name.to_owned()),
        value: Set(value),
        updated_by: Set(actor.to_owned()),
        updated_at: Set(chrono::Utc::now()),
    };
    let on_conflict = sea_orm::sea_query::OnConflict::column(system_flags::Column::Name)
        .update_columns([system_flags::Column::Value, system_flags::Column::UpdatedBy, system_flags::Column::UpdatedAt])
        .to_owned();
    system_flags::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(db).await?;
    Ok(())
}

/// Active hot wallets that take new work.
pub async fn active_hot_wallets(db: &impl ConnectionTrait) -> Result<Vec<Uuid>, DbErr> {
    Ok(custody::list_hot(db).await?.into_iter().filter(|w| w.status == custody::ACTIVE).map(|w| w.id).collect())
}

/// Queues an intent (idempotent on `source`); returns the stored intent.
pub async fn enqueue(db: &DatabaseConnection, keys: &MasterKeys, intent: NewIntent) -> Result<transactions::Model, LedgerError> {
    let txn = crate::db::begin_write(db).await?;
    let stored = enqueue_in(&txn, keys, intent).await?;
    txn.commit().await?;
    Ok(stored)
}

/// [`enqueue`] inside the caller's transaction. The unique `source` decides
/// (insert `ON CONFLICT DO NOTHING`, never check-then-insert), so two
/// concurrent callers queue one intent and both get it back.
pub async fn enqueue_in(db: &impl ConnectionTrait, keys: &MasterKeys, intent: NewIntent) -> Result<transactions::Model, LedgerError> {
    Ok(enqueue_with(db, Some(keys), intent, Provenance::default()).await?.intent)
}

/// [`enqueue_in`] recording where the intent came from, and telling whether
/// it was created now (only a new intent counts toward the mint limits).
pub async fn enqueue_with(
    db: &impl ConnectionTrait,
    keys: Option<&MasterKeys>,
    intent: NewIntent,
    provenance: Provenance,
) -> Result<Enqueued, LedgerError> {
    // Returning users (the common case) cost one lookup; a new one gets a
    // custodial wallet and an active hot wallet, unless the intent exists
    // already (then nobody needs a wallet made).
    let user = match users::Entity::find().filter(users::Column::ExternalRef.eq(intent.user.as_str())).one(db).await? {
        Some(user) => user,
        None => {
            if let Some(existing) = by_source(db, &intent.source).await? {
                return Ok(Enqueued { intent: existing, created: false });
            }
            let keys = keys.ok_or(LedgerError::NoMasterKey)?;
            let hot_wallets = active_hot_wallets(db).await?;
            ensure_user(db, keys, &intent.user, &hot_wallets).await?
        }
    };
    hook_for_test("ledger::before_wallet_check", &intent.user);
    let hot_wallet_id = assign_wallet(db, &user).await?;
    hook_for_test("ledger::before_insert", &intent.user);
    let row = intent_row(Uuid::now_v7(), &intent, user.id, hot_wallet_id, provenance, None, chrono::Utc::now());
    // The unique source decides. Read back either way: the database numbers
    // the intent (`seq`), on SQLite in a trigger RETURNING does not see.
    let inserted = transactions::Entity::insert(row).on_conflict_do_nothing_on([transactions::Column::Source]).exec_without_returning(db).await?;
    let created = matches!(inserted, sea_orm::TryInsertResult::Inserted(1));
    let stored = by_source(db, &intent.source).await?.ok_or_else(|| DbErr::RecordNotFound(intent.source))?;
    Ok(Enqueued { intent: stored, created })
}

/// The row of a new queued intent (or held, with the reason, when `held`
/// is given), as [`enqueue_with`] and the processor's batches insert it.
pub fn intent_row(
    id: Uuid,
    intent: &NewIntent,
    user_id: Uuid,
    hot_wallet_id: Uuid,
    provenance: Provenance,
    held: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> transactions::ActiveModel {
    transactions::ActiveModel {
        id: Set(id),
        intent_id: Set(intent_id(id).to_string()),
        source: Set(intent.source.clone()),
        user_id: Set(user_id),
        hot_wallet_id: Set(hot_wallet_id),
        kind: Set(intent.kind.as_str().into()),
        amount: Set(intent.amount.to_string()),
        reason: Set(intent.reason.clone()),
        status: Set(if held.is_some() { HELD } else { QUEUED }.into()),
        generation: Set(0),
        nonce: Set(None),
        reverses: Set(intent.reverses),
        tx_hash: Set(None),
        block_number: Set(None),
        last_error: Set(held),
        created_at: Set(now),
        updated_at: Set(now),
        event_id: Set(provenance.event_id),
        rules_hash: Set(provenance.rules_hash),
        limit_day: Set(provenance.limit_day),
        shortfall: Set(None),
        // Numbered by the database (see migration 000079).
        seq: sea_orm::ActiveValue::NotSet,
    }
}

/// How many times [`assign_wallet`] follows a user moved by a concurrent
/// rotation or revocation before it settles for the wallet it last saw.
const ASSIGN_ATTEMPTS: usize = 4;

/// The hot wallet that takes new work of `user`, checked `active` under a
/// shared lock on its row that lasts until the caller's transaction ends
/// (PostgreSQL `FOR KEY SHARE`, which the wallet actors' nonce writes do not
/// wait for; SQLite serializes writers). A rotation or revocation locks that
/// row `FOR UPDATE` in the transaction that moves the wallet's queued work
/// and users, so it waits for the caller's intent and moves it too; one
/// committed before the lock was taken is seen here, and the user follows
/// its work: to where the lifecycle moved it, or else to the wallet's
/// rotation target or the oldest active wallet (as a revocation picks).
/// With no active wallet at all the user's own wallet is kept: its work
/// waits there, alerted `wallet_stranded`, until an activation moves it.
pub async fn assign_wallet(db: &impl ConnectionTrait, user: &users::Model) -> Result<Uuid, DbErr> {
    use entity::wallets;
    use sea_orm::sea_query::LockType;
    use sea_orm::{QueryOrder, QuerySelect};
    // The user's wallet as last read, and the wallet to lock and check next.
    let (mut stored, mut candidate) = (user.hot_wallet_id, user.hot_wallet_id);
    for _ in 0..ASSIGN_ATTEMPTS {
        let wallet =
            wallets::Entity::find_by_id(candidate).lock(LockType::KeyShare).one(db).await?.ok_or_else(|| DbErr::RecordNotFound(format!("hot wallet {candidate}")))?;
        if wallet.status == custody::ACTIVE {
            if candidate != stored {
                tracing::warn!(user = %user.external_ref, to = %wallet.address, "User moved off a hot wallet that takes no new work");
                users::Entity::update_many()
                    .col_expr(users::Column::HotWalletId, sea_orm::sea_query::Expr::value(candidate))
                    .filter(users::Column::Id.eq(user.id))
                    .filter(users::Column::HotWalletId.eq(stored))
                    .exec(db)
                    .await?;
            }
            return Ok(candidate);
        }
        // Read after the lock: a lifecycle change that moved the user has committed.
        let current = users::Entity::find_by_id(user.id).one(db).await?.map_or(stored, |u| u.hot_wallet_id);
        if current != stored {
            (stored, candidate) = (current, current);
            continue;
        }
        let target = match wallet.rotated_to {
            Some(next) => wallets::Entity::find_by_id(next).filter(wallets::Column::Status.eq(custody::ACTIVE)).one(db).await?,
            None => None,
        };
        let target = match target {
            Some(next) => next,
            None => {
                let oldest = wallets::Entity::find()
                    .filter(wallets::Column::Kind.eq(custody::HOT))
                    .filter(wallets::Column::Status.eq(custody::ACTIVE))
                    .order_by_asc(wallets::Column::CreatedAt)
                    .one(db)
                    .await?;
                let Some(oldest) = oldest else { return Ok(stored) };
                oldest
            }
        };
        candidate = target.id;
    }
    Ok(stored)
}

/// Test hook: stops a transaction queuing work for `user` where the
/// failpoint `name` is (armed with a callback), when `ledger::hook_target`
/// is armed with `return(<user>)`, so a test holds only its own user's
/// transaction.
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn hook_for_test(name: &str, user: &str) {
    if hook_targets(user) {
        fail::fail_point!(name);
    }
}

/// Whether a test aims the ledger's failpoints at `user` (the processor's
/// batches leave such a user's events to [`enqueue_with`], where they fire).
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
pub fn hook_targets(user: &str) -> bool {
    fail::fail_point!("ledger::hook_target", |armed: Option<String>| armed.as_deref() == Some(user));
    false
}

async fn by_source(db: &impl ConnectionTrait, source: &str) -> Result<Option<transactions::Model>, DbErr> {
    transactions::Entity::find().filter(transactions::Column::Source.eq(source)).one(db).await
}

/// A user's balance by the ledger: confirmed mints minus confirmed burns.
pub async fn ledger_balance(db: &impl ConnectionTrait, user_id: Uuid) -> Result<U256, DbErr> {
    let rows = transactions::Entity::find()
        .filter(transactions::Column::UserId.eq(user_id))
        .filter(transactions::Column::Status.eq(CONFIRMED))
        .all(db)
        .await?;
    Ok(rows.iter().fold(U256::ZERO, |sum, tx| {
        let amount = U256::from_str_radix(&tx.amount, 10).unwrap_or_default();
        if tx.kind == CallKind::Burn.as_str() { sum.saturating_sub(amount) } else { sum + amount }
    }))
}

/// What a user holds for a reversal to take: confirmed mints minus confirmed
/// burns minus burns already signed or sent, and minus queued or held
/// redemption burns (committed to by an API call), other than `excluding`.
/// Queued reversals are left out: each is clipped when its turn comes.
pub async fn holdings(db: &impl ConnectionTrait, user_id: Uuid, excluding: Uuid) -> Result<U256, DbErr> {
    let rows = transactions::Entity::find()
        .filter(transactions::Column::UserId.eq(user_id))
        .filter(transactions::Column::Status.is_in([CONFIRMED, SIGNED, BROADCAST, QUEUED, HELD]))
        .filter(transactions::Column::Id.ne(excluding))
        .all(db)
        .await?;
    let (mut credit, mut debit) = (U256::ZERO, U256::ZERO);
    for tx in rows {
        let amount = U256::from_str_radix(&tx.amount, 10).unwrap_or_default();
        let burn = tx.kind == CallKind::Burn.as_str();
        match (burn, tx.status.as_str()) {
            (false, CONFIRMED) => credit += amount,
            (true, QUEUED | HELD) if tx.reverses.is_some() => {}
            (true, _) => debit += amount,
            _ => {}
        }
    }
    Ok(credit.saturating_sub(debit))
}

/// What a user may redeem: confirmed mints minus every burn that is
/// confirmed or still to settle (queued, held, signed, sent).
pub async fn available(db: &impl ConnectionTrait, user_id: Uuid) -> Result<U256, DbErr> {
    let rows = transactions::Entity::find()
        .filter(transactions::Column::UserId.eq(user_id))
        .filter(transactions::Column::Status.is_in([CONFIRMED, SIGNED, BROADCAST, QUEUED, HELD]))
        .all(db)
        .await?;
    let (mut credit, mut debit) = (U256::ZERO, U256::ZERO);
    for tx in rows {
        let amount = U256::from_str_radix(&tx.amount, 10).unwrap_or_default();
        match (tx.kind == CallKind::Burn.as_str(), tx.status.as_str()) {
            (false, CONFIRMED) => credit += amount,
            (true, _) => debit += amount,
            _ => {}
        }
    }
    Ok(credit.saturating_sub(debit))
}

/// The user behind `reference`: `{partner}:{id}` or havend's own id.
pub async fn find_user(db: &impl ConnectionTrait, reference: &str) -> Result<Option<users::Model>, DbErr> {
    match Uuid::parse_str(reference) {
        Ok(id) => users::Entity::find_by_id(id).one(db).await,
        Err(_) => users::Entity::find().filter(users::Column::ExternalRef.eq(reference)).one(db).await,
    }
}

/// The intent with this id.
pub async fn find_intent(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<transactions::Model>, DbErr> {
    transactions::Entity::find_by_id(id).one(db).await
}

/// The user with havend's own id `id`.
pub async fn find_user_by_id(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find_by_id(id).one(db).await
}

/// The user whose partner reference is exactly `reference` (`{partner}:{id}`);
/// unlike [`find_user`], havend's own id does not match.
pub async fn find_user_by_ref(db: &impl ConnectionTrait, reference: &str) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find().filter(users::Column::ExternalRef.eq(reference)).one(db).await
}

/// A user's standing by the ledger (HNV decimal strings).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    /// havend's id.
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// `{partner}:{external id}`.
    pub user: String,
    /// The custodial address tokens are minted to.
    pub address: String,
    /// The hot wallet that signs for the user.
    #[schema(value_type = String, format = "uuid")]
    pub hot_wallet_id: Uuid,
    /// Confirmed mints minus confirmed burns.
    pub confirmed: String,
    /// Mints queued or on their way to the chain.
    pub pending: String,
    /// Mints held over a limit, waiting for an operator.
    pub held: String,
    /// Burns not yet confirmed (they already reduce what is available).
    pub unsettled_burns: String,
    /// Confirmed minus unsettled burns.
    pub available: String,
    /// `balanceOf` on chain, when a chain was asked.
    pub on_chain: Option<String>,
}

/// The user behind `reference` (`{partner}:{id}` or havend's id) and its balances.
pub async fn summary(db: &impl ConnectionTrait, reference: &str) -> Result<Option<UserSummary>, DbErr> {
    let Some(user) = find_user(db, reference).await? else { return Ok(None) };
    let intents = transactions::Entity::find().filter(transactions::Column::UserId.eq(user.id)).all(db).await?;
    let (mut minted, mut burned, mut pending, mut held, mut unsettled) = (U256::ZERO, U256::ZERO, U256::ZERO, U256::ZERO, U256::ZERO);
    for tx in &intents {
        let amount = U256::from_str_radix(&tx.amount, 10).unwrap_or_default();
        let burn = tx.kind == CallKind::Burn.as_str();
        match (tx.status.as_str(), burn) {
            (CONFIRMED, false) => minted += amount,
            (CONFIRMED, true) => burned += amount,
            (QUEUED | SIGNED | BROADCAST, false) => pending += amount,
            (QUEUED | SIGNED | BROADCAST | HELD, true) => unsettled += amount,
            (HELD, false) => held += amount,
            _ => {}
        }
    }
    let confirmed = minted.saturating_sub(burned);
    Ok(Some(UserSummary {
        id: user.id,
        user: user.external_ref,
        address: user.address,
        hot_wallet_id: user.hot_wallet_id,
        confirmed: crate::chain::format_units(confirmed),
        pending: crate::chain::format_units(pending),
        held: crate::chain::format_units(held),
        unsettled_burns: crate::chain::format_units(unsettled),
        available: crate::chain::format_units(confirmed.saturating_sub(unsettled)),
        on_chain: None,
    }))
}
