//! Hot wallet lifecycle: `standby` (created, or a rotation's target) →
//! `active` (roles and gas checked on chain) → `rotated` | `revoked`. Each
//! change is a compare-and-set on the status read, in one transaction with
//! the work it moves and its audit row, so two concurrent operations can
//! never resurrect a revoked wallet or move work twice.

use alloy::primitives::{Address, U256};
use entity::wallets;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use crate::alert::{self, Severity};
use crate::chain::{ChainClient, HavenToken, RpcFailure};
use crate::custody::{self, ACTIVE, CustodyError, HOT, MasterKeys, REVOKED, ROTATED, STANDBY};
use crate::ledger::{HELD, QUEUED};

/// Why a lifecycle operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The operation does not apply to the wallet in its (current) status.
    #[error("wallet {address} is {status}: {operation} is not allowed")]
    WrongStatus {
        /// The wallet.
        address: String,
        /// Its status (or kind, for a wallet that is not a hot wallet).
        status: String,
        /// What was asked.
        operation: &'static str,
    },
    /// The token has not granted the wallet a role it needs.
    #[error("wallet {address} lacks {role} on the token: grant it first (havend wallet grant-roles)")]
    MissingRole {
        /// The wallet.
        address: String,
        /// `MINTER_ROLE` or `BURNER_ROLE`.
        role: &'static str,
    },
    /// The wallet cannot pay for gas.
    #[error("wallet {address} holds {balance} wei, under the minimum of {minimum} wei: fund it first")]
    LowBalance {
        /// The wallet.
        address: String,
        /// Its native balance.
        balance: U256,
        /// `chain.min_balance_wei`.
        minimum: U256,
    },
    /// The chain could not be asked.
    #[error("chain: {0}")]
    Rpc(#[from] RpcFailure),
    /// Custody failed.
    #[error(transparent)]
    Custody(#[from] CustodyError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Activates a `standby` hot wallet after checking on chain that it holds
/// both roles on `token` and at least `min_balance` wei for gas (see
/// [`activate`] for what moves onto it).
pub async fn activate_checked(
    db: &DatabaseConnection,
    chain: &ChainClient,
    token: Address,
    min_balance: U256,
    wallet: &wallets::Model,
    actor: &str,
) -> Result<Activation, LifecycleError> {
    if wallet.status != STANDBY {
        return Err(LifecycleError::WrongStatus { address: wallet.address.clone(), status: wallet.status.clone(), operation: "activate" });
    }
    let address: Address = wallet.address.parse().map_err(|_| CustodyError::NotFound(wallet.address.clone()))?;
    let contract = HavenToken::new(token, chain.provider());
    let rpc = |error: alloy::contract::Error| match error {
        alloy::contract::Error::TransportError(e) => RpcFailure::from(e),
        other => RpcFailure::Node { code: 0, message: other.to_string() },
    };
    let roles = [(contract.MINTER_ROLE().call().await.map_err(rpc)?, "MINTER_ROLE"), (contract.BURNER_ROLE().call().await.map_err(rpc)?, "BURNER_ROLE")];
    for (role, name) in roles {
        if !contract.hasRole(role, address).call().await.map_err(rpc)? {
            return Err(LifecycleError::MissingRole { address: wallet.address.clone(), role: name });
        }
    }
    let balance = chain.balance(address).await?;
    if balance < min_balance {
        return Err(LifecycleError::LowBalance { address: wallet.address.clone(), balance, minimum: min_balance });
    }
    activate(db, wallet, actor).await
}

/// Starts replacing an active hot wallet: a new `standby` wallet becomes
/// its rotation target. Nothing moves yet and the old wallet stays active,
/// so no user waits on a wallet without roles; the rotation takes effect
/// when the new wallet is activated ([`activate`]).
pub async fn rotate(
    db: &DatabaseConnection,
    keys: &MasterKeys,
    old: &wallets::Model,
    actor: &str,
) -> Result<wallets::Model, LifecycleError> {
    if old.kind != HOT {
        return Err(LifecycleError::WrongStatus { address: old.address.clone(), status: old.kind.clone(), operation: "rotate" });
    }
    let txn = crate::db::begin_write(db).await?;
    let new = custody::create_wallet(&txn, keys, HOT, actor).await?;
    let marked = wallets::Entity::update_many()
        .col_expr(wallets::Column::RotatedTo, Expr::value(new.id))
        .col_expr(wallets::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(wallets::Column::Id.eq(old.id))
        .filter(wallets::Column::Status.eq(ACTIVE))
        .exec(&txn)
        .await?;
    if marked.rows_affected != 1 {
        return Err(wrong_status(&txn, old, "rotate").await);
    }
    custody::audit(&txn, Some(old.id), "rotate", "MEDIUM", actor, json!({ "to": new.address, "effective": "when the new wallet is activated" })).await?;
    txn.commit().await?;
    Ok(new)
}

/// What an activation changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Activation {
    /// Wallets whose rotation into this one took effect (now `rotated`).
    pub rotated: Vec<String>,
    /// Queued and held intents moved onto this wallet.
    pub moved_intents: u64,
    /// Users reassigned to this wallet.
    pub moved_users: u64,
}

/// Makes a `standby` hot wallet `active`, the chain already checked by
/// [`activate_checked`]. In the same transaction, every active wallet rotating
/// into it becomes `rotated`, and the queued and held work and the users of
/// those wallets, and of revoked wallets whose work had nowhere to go, move
/// onto it. Every status change is a compare-and-set on the status read.
/// The wallets work moves off are locked `FOR UPDATE` first, so an intent
/// being queued on one of them ([`crate::ledger::assign_wallet`]) commits
/// before the move and moves with it.
async fn activate(db: &DatabaseConnection, wallet: &wallets::Model, actor: &str) -> Result<Activation, LifecycleError> {
    let txn = crate::db::begin_write(db).await?;
    if wallet.kind != HOT || !set_wallet_status(&txn, wallet.id, STANDBY, ACTIVE).await? {
        return Err(wrong_status(&txn, wallet, "activate").await);
    }
    let mut activation = Activation::default();
    let mut sources = Vec::new();
    let predecessors = wallets::Entity::find()
        .filter(wallets::Column::RotatedTo.eq(wallet.id))
        .filter(wallets::Column::Status.eq(ACTIVE))
        .lock_exclusive()
        .all(&txn)
        .await?;
    for old in predecessors {
        if set_wallet_status(&txn, old.id, ACTIVE, ROTATED).await? {
            activation.rotated.push(old.address.clone());
            sources.push(old.id);
        }
    }
    let revoked =
        wallets::Entity::find().filter(wallets::Column::Kind.eq(HOT)).filter(wallets::Column::Status.eq(REVOKED)).lock_exclusive().all(&txn).await?;
    sources.extend(revoked.iter().map(|w| w.id));
    (activation.moved_intents, activation.moved_users) = move_work(&txn, &sources, wallet.id).await?;
    custody::audit(&txn, Some(wallet.id), "activate", "MEDIUM", actor, json!(activation)).await?;
    txn.commit().await?;
    Ok(activation)
}

/// Moves the queued and held intents and the users of `from` to `to`;
/// returns how many of each. Signed work stays: its nonce belongs to its wallet.
async fn move_work(txn: &DatabaseTransaction, from: &[Uuid], to: Uuid) -> Result<(u64, u64), DbErr> {
    if from.is_empty() {
        return Ok((0, 0));
    }
    let intents = entity::transactions::Entity::update_many()
        .col_expr(entity::transactions::Column::HotWalletId, Expr::value(to))
        .col_expr(entity::transactions::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(entity::transactions::Column::HotWalletId.is_in(from.iter().copied()))
        .filter(entity::transactions::Column::Status.is_in([QUEUED, HELD]))
        .exec(txn)
        .await?
        .rows_affected;
    let users = entity::users::Entity::update_many()
        .col_expr(entity::users::Column::HotWalletId, Expr::value(to))
        .filter(entity::users::Column::HotWalletId.is_in(from.iter().copied()))
        .exec(txn)
        .await?
        .rows_affected;
    Ok((intents, users))
}

/// Work found on a wallet that takes no new work, and where it went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Swept {
    /// The `rotated` or `revoked` wallet.
    pub from: String,
    /// The active wallet that took the work.
    pub to: String,
    /// Queued and held intents moved.
    pub moved_intents: u64,
    /// Users reassigned.
    pub moved_users: u64,
}

/// Moves queued and held intents and users found on a `rotated` or
/// `revoked` hot wallet onto its rotation target when that is active, else
/// onto the oldest active wallet (as [`revoke`] picks); with no active
/// wallet they wait for the next activation. The locks of
/// [`crate::ledger::assign_wallet`] keep new work off such wallets; this
/// catches work that lands there another way (an intent queued again after
/// a foreign nonce took its nonce, say), so none waits forever on a wallet
/// that never signs new work. One cheap read when there is nothing to move.
pub async fn sweep(db: &DatabaseConnection) -> Result<Vec<Swept>, DbErr> {
    let retired = || wallets::Entity::find().filter(wallets::Column::Kind.eq(HOT)).filter(wallets::Column::Status.is_in([ROTATED, REVOKED]));
    let ids: Vec<Uuid> = retired().all(db).await?.into_iter().map(|w| w.id).collect();
    if ids.is_empty() || !has_work(db, &ids).await? {
        return Ok(Vec::new());
    }
    let txn = crate::db::begin_write(db).await?;
    // Locked as a revocation locks them: an intent being queued on one commits first.
    let sources = retired().lock_exclusive().all(&txn).await?;
    let active = wallets::Entity::find()
        .filter(wallets::Column::Kind.eq(HOT))
        .filter(wallets::Column::Status.eq(ACTIVE))
        .order_by_asc(wallets::Column::CreatedAt)
        .all(&txn)
        .await?;
    let mut swept = Vec::new();
    for source in sources {
        let target = source.rotated_to.and_then(|next| active.iter().find(|w| w.id == next)).or_else(|| active.first());
        let Some(target) = target else { continue };
        let (moved_intents, moved_users) = move_work(&txn, &[source.id], target.id).await?;
        if moved_intents + moved_users > 0 {
            swept.push(Swept { from: source.address, to: target.address.clone(), moved_intents, moved_users });
        }
    }
    txn.commit().await?;
    Ok(swept)
}

/// Whether queued or held intents or users sit on any of `wallets`.
async fn has_work(db: &impl ConnectionTrait, wallets: &[Uuid]) -> Result<bool, DbErr> {
    use sea_orm::PaginatorTrait;
    let intents = entity::transactions::Entity::find()
        .filter(entity::transactions::Column::HotWalletId.is_in(wallets.iter().copied()))
        .filter(entity::transactions::Column::Status.is_in([QUEUED, HELD]))
        .count(db)
        .await?;
    if intents > 0 {
        return Ok(true);
    }
    Ok(entity::users::Entity::find().filter(entity::users::Column::HotWalletId.is_in(wallets.iter().copied())).count(db).await? > 0)
}

/// Compare-and-set of a wallet's status; true when it was `from`.
async fn set_wallet_status(db: &impl ConnectionTrait, id: Uuid, from: &str, to: &str) -> Result<bool, DbErr> {
    let result = wallets::Entity::update_many()
        .col_expr(wallets::Column::Status, Expr::value(to))
        .col_expr(wallets::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(wallets::Column::Id.eq(id))
        .filter(wallets::Column::Status.eq(from))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The error for an operation the wallet's current status (re-read) does not allow.
async fn wrong_status(db: &impl ConnectionTrait, wallet: &wallets::Model, operation: &'static str) -> LifecycleError {
    match wallets::Entity::find_by_id(wallet.id).one(db).await {
        Ok(Some(row)) => LifecycleError::WrongStatus { address: row.address, status: row.status, operation },
        Ok(None) => LifecycleError::Custody(CustodyError::NotFound(wallet.address.clone())),
        Err(error) => LifecycleError::Db(error),
    }
}

/// What a revocation changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Revocation {
    /// The active wallet that took over the work, if there was one.
    pub moved_to: Option<String>,
    /// Queued and held intents moved to it.
    pub moved_intents: u64,
    /// Users reassigned to it.
    pub moved_users: u64,
}

/// Revokes a hot wallet (from any status but `revoked`): it takes no new
/// work, and its queued and held intents and its users move at once to
/// another active wallet; with none, they wait (alerted `wallet_stranded`)
/// and move to the next wallet activated. Work already signed finishes at
/// its nonce, a same-nonce replacement included, since it exposes nothing
/// new. Status change, moves, alert and audit row commit together.
pub async fn revoke(db: &DatabaseConnection, wallet: &wallets::Model, actor: &str) -> Result<Revocation, LifecycleError> {
    let txn = crate::db::begin_write(db).await?;
    // Locked for the move: an intent being queued on this wallet commits first and moves too.
    let current =
        wallets::Entity::find_by_id(wallet.id).lock_exclusive().one(&txn).await?.ok_or_else(|| CustodyError::NotFound(wallet.address.clone()))?;
    if current.kind != HOT || current.status == REVOKED || !set_wallet_status(&txn, wallet.id, &current.status, REVOKED).await? {
        return Err(wrong_status(&txn, wallet, "revoke").await);
    }
    let target = wallets::Entity::find()
        .filter(wallets::Column::Kind.eq(HOT))
        .filter(wallets::Column::Status.eq(ACTIVE))
        .order_by_asc(wallets::Column::CreatedAt)
        .one(&txn)
        .await?;
    let mut revocation = Revocation::default();
    match &target {
        Some(target) => {
            (revocation.moved_intents, revocation.moved_users) = move_work(&txn, &[wallet.id], target.id).await?;
            revocation.moved_to = Some(target.address.clone());
        }
        None => {
            alert::raise(
                &txn,
                Severity::Error,
                "wallet_stranded",
                &format!("Hot wallet {} was revoked with no other active wallet: its queued work and users wait until a wallet is activated", wallet.address),
                json!({ "wallet": wallet.address }),
            )
            .await;
        }
    }
    custody::audit(&txn, Some(wallet.id), "revoke", "HIGH", actor, json!({ "previous_status": current.status, "revocation": revocation })).await?;
    txn.commit().await?;
    Ok(revocation)
}

/// Lifts a wallet's stored halt (a foreign nonce) after an operator has
/// looked: its actor records the nonces the foreign signer used beyond its
/// own as foreign, skips them openly, and signs again. Audited HIGH.
pub async fn resume(db: &DatabaseConnection, wallet: &wallets::Model, actor: &str) -> Result<String, LifecycleError> {
    let txn = crate::db::begin_write(db).await?;
    let current = wallets::Entity::find_by_id(wallet.id).one(&txn).await?.ok_or_else(|| CustodyError::NotFound(wallet.address.clone()))?;
    let Some(reason) = current.halted else {
        return Err(LifecycleError::WrongStatus { address: current.address, status: format!("{} and not halted", current.status), operation: "resume" });
    };
    let lifted = wallets::Entity::update_many()
        .col_expr(wallets::Column::Halted, Expr::value(Option::<String>::None))
        .col_expr(wallets::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(wallets::Column::Id.eq(wallet.id))
        .filter(wallets::Column::Halted.eq(reason.as_str()))
        .exec(&txn)
        .await?;
    if lifted.rows_affected != 1 {
        return Err(wrong_status(&txn, wallet, "resume").await);
    }
    custody::audit(&txn, Some(wallet.id), "resume", "HIGH", actor, json!({ "halted": reason })).await?;
    txn.commit().await?;
    Ok(reason)
}
