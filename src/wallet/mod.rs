//! Hot wallets at work: one [`WalletActor`] per hot wallet this daemon signs
//! for, each the sole owner of its nonces, under a [`WalletRegistry`].

mod actor;
mod registry;
pub mod store;

use std::collections::HashMap;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

pub use actor::{WalletActor, WalletArgs, WalletMsg, WalletStatus};
pub use registry::{RegistryArgs, RegistryMsg, WalletRegistry};

use crate::breaker::BreakerHandle;
use crate::chain::{ChainClient, FeePolicy};
use crate::custody::MasterKeys;
use crate::config::ChainConfig;

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
    /// Gas limit of a mint.
    pub gas_limit_mint: u64,
    /// Gas limit of a burn.
    pub gas_limit_burn: u64,
    /// Fee choice and bumps.
    pub fee_policy: FeePolicy,
    /// When a sent, unmined transaction is looked at again.
    pub resend_after: Duration,
    /// Native balance under which new work is held.
    pub min_balance: U256,
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
            gas_limit_mint: chain.gas_limit_mint,
            gas_limit_burn: chain.gas_limit_burn,
            fee_policy: FeePolicy {
                priority_fee: chain.priority_fee_wei as u128,
                base_fee_multiplier: chain.base_fee_multiplier as u128,
                bump_percent: chain.fee_bump_percent as u128,
            },
            resend_after: Duration::from_millis(chain.resend_after_ms),
            min_balance: U256::from_str_radix(&chain.min_balance_wei, 10).unwrap_or_default(),
        }
    }
}

/// The custodial addresses of `users`.
pub(crate) async fn accounts_of(db: &impl ConnectionTrait, users: &[Uuid]) -> Result<HashMap<Uuid, Address>, DbErr> {
    let rows = entity::users::Entity::find().filter(entity::users::Column::Id.is_in(users.iter().copied())).all(db).await?;
    Ok(rows.into_iter().filter_map(|u| Some((u.id, u.address.parse().ok()?))).collect())
}
