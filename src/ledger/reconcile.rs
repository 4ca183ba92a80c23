//! `havend reconcile`: invariant 6 as an operator tool. At one block, every
//! user's confirmed ledger balance and the ledger's total are compared with
//! the token's `balanceOf` and `totalSupply`, and what is still in flight is
//! listed (an in-flight intent explains a difference until it settles).

use std::collections::{BTreeMap, HashMap};

use alloy::primitives::{Address, U256};
use entity::{transactions, users};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter};
use serde::Serialize;

use super::{BROADCAST, CONFIRMED, HELD, QUEUED, SIGNED};
use crate::chain::{CallKind, ChainClient, RpcFailure, format_units};

/// Why reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The chain could not be read.
    #[error("chain: {0}")]
    Chain(#[from] RpcFailure),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// One user whose ledger and chain balances differ.
#[derive(Debug, Serialize)]
pub struct Difference {
    /// `{partner}:{id}`.
    pub user: String,
    /// The custodial address.
    pub address: String,
    /// Confirmed mints minus confirmed burns, in HNV.
    pub ledger: String,
    /// `balanceOf` at the block, in HNV.
    pub chain: String,
}

/// The comparison at one block.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The block every chain value was read at.
    pub block: u64,
    /// Users compared.
    pub users: usize,
    /// Users whose balances differ.
    pub differences: Vec<Difference>,
    /// Sum of confirmed ledger balances, in HNV.
    pub ledger_total: String,
    /// `totalSupply` at the block, in HNV.
    pub total_supply: String,
    /// Intents not yet final, by status.
    pub in_flight: BTreeMap<String, u64>,
}

impl Report {
    /// True when nothing differs.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty() && self.ledger_total == self.total_supply
    }
}

/// Compares the ledger with the chain at the chain's current block.
pub async fn reconcile(db: &impl ConnectionTrait, chain: &ChainClient, token: Address) -> Result<Report, ReconcileError> {
    let block = chain.block_number().await?;
    let confirmed = transactions::Entity::find().filter(transactions::Column::Status.eq(CONFIRMED)).all(db).await?;
    let mut balances: HashMap<uuid::Uuid, (U256, U256)> = HashMap::new();
    for tx in &confirmed {
        let amount = U256::from_str_radix(&tx.amount, 10).unwrap_or_default();
        let entry = balances.entry(tx.user_id).or_default();
        if tx.kind == CallKind::Burn.as_str() { entry.1 += amount } else { entry.0 += amount }
    }
    let mut differences = Vec::new();
    let mut ledger_total = U256::ZERO;
    let all_users = users::Entity::find().all(db).await?;
    for user in &all_users {
        let (minted, burned) = balances.get(&user.id).copied().unwrap_or_default();
        let ledger = minted.saturating_sub(burned);
        ledger_total += ledger;
        let address: Address = user.address.parse().unwrap_or_default();
        let on_chain = chain.token_balance_at(token, address, block).await?;
        if on_chain != ledger {
            differences.push(Difference { user: user.external_ref.clone(), address: user.address.clone(), ledger: format_units(ledger), chain: format_units(on_chain) });
        }
    }
    let total_supply = chain.total_supply_at(token, block).await?;
    let mut in_flight = BTreeMap::new();
    for status in [QUEUED, HELD, SIGNED, BROADCAST] {
        let count = transactions::Entity::find().filter(transactions::Column::Status.eq(status)).count(db).await?;
        if count > 0 {
            in_flight.insert(status.to_owned(), count);
        }
    }
    Ok(Report {
        block,
        users: all_users.len(),
        differences,
        ledger_total: format_units(ledger_total),
        total_supply: format_units(total_supply),
        in_flight,
    })
}
