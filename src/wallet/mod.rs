//! Hot wallets at work: one [`WalletActor`] per hot wallet this daemon signs
//! for, each the sole owner of its nonces, under a [`WalletRegistry`].

mod actor;
pub mod lifecycle;
pub mod plan;
mod registry;
pub mod sign_plan;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use chrono::{DateTime, Utc};
use entity::{transactions, wallets};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

pub use actor::{WalletActor, WalletArgs, WalletMsg, WalletStatus};
pub use registry::{RegistryArgs, RegistryMsg, WalletRegistry};

use crate::alert::{self, Severity};
use crate::breaker::BreakerHandle;
use crate::chain::{ChainClient, FeePolicy};
use crate::custody::MasterKeys;
use crate::config::ChainConfig;
use crate::ledger::QUEUED;

/// How long queued work may wait on a hot wallet that no running daemon
/// signs for (no heartbeat) before an operator is alerted.
pub const UNCLAIMED_AFTER: Duration = Duration::from_secs(10 * 60);
/// How often a wallet actor records that it is alive (well inside [`UNCLAIMED_AFTER`]).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);

/// What every wallet actor of this daemon shares.
#[derive(Clone)]
pub struct WalletDeps {
    /// This daemon's name (the owner recorded on the wallets).
    pub owner: String,
    /// The database.
    pub db: DatabaseConnection,
    /// Master keys, to decrypt the wallets' keys.
    pub keys: MasterKeys,
    /// The RPC client.
    pub chain: ChainClient,
    /// The RPC circuit breaker.
    pub breaker: BreakerHandle,
    /// Gas, fees, window, depths.
    pub settings: WalletSettings,
}

/// How every wallet actor of this daemon behaves (from `[chain]`).
#[derive(Debug, Clone)]
pub struct WalletSettings {
    /// Chain id, signed into every transaction.
    pub chain_id: u64,
    /// The token contract.
    pub token: Address,
    /// Receipt depth for `confirmed`.
    pub finality_depth: u64,
    /// Tick period.
    pub poll_interval: Duration,
    /// In-flight window.
    pub max_in_flight: usize,
    /// The token's calls (batches or one intent per transaction).
    pub token_abi: crate::chain::TokenAbi,
    /// Intents per transaction at most.
    pub batch_size: usize,
    /// Gas limits per kind of call.
    pub gas: sign_plan::GasLimits,
    /// Fee choice and bumps.
    pub fee_policy: FeePolicy,
    /// When a sent, unmined transaction is looked at again.
    pub resend_after: Duration,
    /// Native balance under which new work is held.
    pub min_balance: U256,
    /// Blocks one `eth_getLogs` request covers at most.
    pub log_range_blocks: u64,
    /// Where a log search starts for attempts without a recorded block.
    pub deploy_block: u64,
}

impl WalletSettings {
    /// Settings from the `[chain]` config.
    pub fn from_config(chain: &ChainConfig) -> WalletSettings {
        WalletSettings {
            chain_id: chain.chain_id,
            token: chain.token,
            finality_depth: chain.finality_depth.max(1),
            poll_interval: Duration::from_millis(chain.poll_interval_ms),
            max_in_flight: chain.max_in_flight,
            token_abi: chain.token_abi,
            batch_size: chain.token_abi.batch_size(chain.max_batch),
            gas: sign_plan::GasLimits {
                abi: chain.token_abi,
                mint: chain.gas_limit_mint,
                burn: chain.gas_limit_burn,
                batch_base: chain.gas_limit_batch_base,
                per_mint: chain.gas_limit_per_mint,
                per_burn: chain.gas_limit_per_burn,
            },
            fee_policy: FeePolicy {
                priority_fee: chain.priority_fee_wei as u128,
                base_fee_multiplier: chain.base_fee_multiplier as u128,
                bump_percent: chain.fee_bump_percent as u128,
            },
            resend_after: Duration::from_millis(chain.resend_after_ms),
            min_balance: U256::from_str_radix(&chain.min_balance_wei, 10).unwrap_or_default(),
            log_range_blocks: chain.log_range_blocks.max(1),
            deploy_block: chain.deploy_block,
        }
    }
}

/// The custodial addresses of `users`.
pub(crate) async fn accounts_of(db: &impl ConnectionTrait, users: &[Uuid]) -> Result<HashMap<Uuid, Address>, DbErr> {
    let rows = entity::users::Entity::find().filter(entity::users::Column::Id.is_in(users.iter().copied())).all(db).await?;
    Ok(rows.into_iter().filter_map(|u| Some((u.id, u.address.parse().ok()?))).collect())
}

/// A hot wallet whose queued work waits for a daemon nobody runs.
#[derive(Debug, Clone)]
pub struct Unclaimed {
    /// The wallet.
    pub wallet_id: Uuid,
    /// Its address.
    pub address: String,
    /// Intents queued on it for longer than [`UNCLAIMED_AFTER`].
    pub queued: u64,
}

/// Hot wallets with intents queued on them for [`UNCLAIMED_AFTER`] as of
/// `now` while no wallet actor has shown a heartbeat for as long (no daemon
/// names the wallet in its `chain.wallets`, or every such daemon is down).
pub async fn unclaimed_wallets(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<Unclaimed>, DbErr> {
    let cutoff = now - UNCLAIMED_AFTER;
    let stale = wallets::Entity::find()
        .filter(wallets::Column::Kind.eq(crate::custody::HOT))
        .filter(Condition::any().add(wallets::Column::HeartbeatAt.is_null()).add(wallets::Column::HeartbeatAt.lt(cutoff)))
        .all(db)
        .await?;
    let mut unclaimed = Vec::new();
    for wallet in stale {
        // `updated_at`: work moved onto a wallet waits from when it moved.
        let queued = transactions::Entity::find()
            .filter(transactions::Column::HotWalletId.eq(wallet.id))
            .filter(transactions::Column::Status.eq(QUEUED))
            .filter(transactions::Column::UpdatedAt.lt(cutoff))
            .count(db)
            .await?;
        if queued > 0 {
            unclaimed.push(Unclaimed { wallet_id: wallet.id, address: wallet.address, queued });
        }
    }
    Ok(unclaimed)
}

/// Raises an ERROR `wallet_unclaimed` alert for each wallet of
/// [`unclaimed_wallets`] not in `alerted` (those already raised), then
/// keeps in `alerted` the wallets still unclaimed, so each stranding is
/// alerted once and again only if it recurs after being resolved.
pub async fn alert_unclaimed(db: &impl ConnectionTrait, now: DateTime<Utc>, alerted: &mut HashSet<Uuid>) -> Result<(), DbErr> {
    let unclaimed = unclaimed_wallets(db, now).await?;
    for wallet in &unclaimed {
        if alerted.contains(&wallet.wallet_id) {
            continue;
        }
        alert::raise(
            db,
            Severity::Error,
            "wallet_unclaimed",
            &format!(
                "{} intents have waited over {} minutes on hot wallet {}, which no running daemon signs for: name it in a daemon's chain.wallets, or rotate or revoke it",
                wallet.queued,
                UNCLAIMED_AFTER.as_secs() / 60,
                wallet.address
            ),
            json!({ "wallet": wallet.address, "queued": wallet.queued }),
        )
        .await;
    }
    *alerted = unclaimed.into_iter().map(|w| w.wallet_id).collect();
    Ok(())
}
