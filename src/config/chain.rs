//! `[chain]`, `[breaker]` and `[custody]`: the chain and the hot wallets this
//! daemon signs for, the circuit breaker in front of its RPC endpoint, and
//! where the master key that encrypts the wallets' private keys comes from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, DAEMON_FILE, invalid};

/// The chain, the token and how this daemon's wallet actors behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC endpoint. Providers put API keys in its path or query, so
    /// only [`crate::redact::rpc_url`] of it is ever printed or logged.
    #[serde(serialize_with = "serialize_redacted_rpc_url")]
    pub rpc_url: String,
    /// The HAVEN token contract.
    pub token: alloy::primitives::Address,
    /// Expected chain id; checked against the node at start-up.
    pub chain_id: u64,
    /// Hot wallets (addresses) this daemon signs for. Each hot wallet must be
    /// named by exactly one daemon; a second one fences the first out.
    #[serde(default)]
    pub wallets: Vec<alloy::primitives::Address>,
    /// Blocks on top of a receipt before an intent is `confirmed` (1: the block itself).
    #[serde(default = "default_finality_depth")]
    pub finality_depth: u64,
    /// Each RPC call gives up after this.
    #[serde(default = "default_rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// How often a wallet actor looks at the chain and its queue.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Transactions per wallet signed and not yet final, at most.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Which token the daemon calls: `batch` (`mintBatch`/`burnBatch`, the
    /// token `havend token deploy` deploys) or `single` (a deployed
    /// one-intent-per-transaction token: `mint`/`burn` with a `bytes32` id).
    #[serde(default)]
    pub token_abi: TokenAbi,
    /// Intents one batch transaction carries at most (`batch` tokens).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Gas limit of a batch: this base plus the per-entry limit of its kind
    /// times its entries (pipelined calls cannot be estimated).
    #[serde(default = "default_gas_limit_batch_base")]
    pub gas_limit_batch_base: u64,
    /// Gas per mint entry of a batch, sized for the worst case: a new holder
    /// whose number opens a fresh bitmap slot.
    #[serde(default = "default_gas_limit_per_mint")]
    pub gas_limit_per_mint: u64,
    /// Gas per burn entry of a batch, sized for the worst case (a fresh bitmap slot).
    #[serde(default = "default_gas_limit_per_burn")]
    pub gas_limit_per_burn: u64,
    /// Gas limit of a `mint` call of a `single` token.
    #[serde(default = "default_gas_limit")]
    pub gas_limit_mint: u64,
    /// Gas limit of a `burn` call of a `single` token.
    #[serde(default = "default_gas_limit")]
    pub gas_limit_burn: u64,
    /// Tip offered, wei.
    #[serde(default = "default_priority_fee")]
    pub priority_fee_wei: u64,
    /// Fee cap = base fee × this + tip.
    #[serde(default = "default_base_fee_multiplier")]
    pub base_fee_multiplier: u64,
    /// A replacement raises fees by at least this many percent.
    #[serde(default = "default_fee_bump_percent")]
    pub fee_bump_percent: u64,
    /// A broadcast transaction not mined after this is checked: rebroadcast
    /// when the node forgot it, re-signed with bumped fees when underpriced.
    #[serde(default = "default_resend_after_ms")]
    pub resend_after_ms: u64,
    /// A hot wallet below this native balance (wei, decimal string) holds new work and alerts.
    #[serde(default = "default_min_balance_wei")]
    pub min_balance_wei: String,
    /// Blocks one `eth_getLogs` request covers at most: the search for an
    /// intent's `IntentExecuted` log walks forward from the block its first
    /// attempt was signed at in windows of this size (public providers refuse
    /// wide ranges).
    #[serde(default = "default_log_range_blocks")]
    pub log_range_blocks: u64,
    /// The block the token was deployed at: where that search starts for
    /// attempts signed before havend recorded the block at signing.
    #[serde(default)]
    pub deploy_block: u64,
}

/// Which HAVEN token the daemon calls (`chain.token_abi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenAbi {
    /// `mintBatch`/`burnBatch` with each intent's number (`seq`): many intents
    /// per transaction, a used number skipped with its own event.
    #[default]
    Batch,
    /// `mint`/`burn` with a `bytes32` intent id, one per transaction, a used
    /// id reverting (`IntentAlreadyUsed`): a token deployed before batches.
    Single,
}

impl TokenAbi {
    /// Intents one transaction may carry, given the configured batch size.
    pub fn batch_size(self, max_batch: usize) -> usize {
        match self {
            TokenAbi::Batch => max_batch.max(1),
            TokenAbi::Single => 1,
        }
    }
}

/// Default confirmation depth (dev chains do not reorg).
pub const DEFAULT_FINALITY_DEPTH: u64 = 1;
fn default_finality_depth() -> u64 {
    DEFAULT_FINALITY_DEPTH
}
fn default_rpc_timeout_ms() -> u64 {
    5_000
}
fn default_poll_interval_ms() -> u64 {
    250
}
/// Default in-flight window per wallet: geth guarantees an account 16
/// executable slots and more while the pool has room.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
fn default_max_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}
fn default_gas_limit() -> u64 {
    150_000
}
/// Default intents per batch transaction.
pub const DEFAULT_INTENTS_PER_BATCH: usize = 100;
fn default_max_batch() -> usize {
    DEFAULT_INTENTS_PER_BATCH
}
fn default_gas_limit_batch_base() -> u64 {
    BATCH_BASE_GAS
}
fn default_gas_limit_per_mint() -> u64 {
    PER_MINT_GAS
}
fn default_gas_limit_per_burn() -> u64 {
    PER_BURN_GAS
}
/// Default batch base gas: the transaction's 21,000, the role check, the
/// first (cold) write of the total supply and the arrays' calldata heads,
/// with room to spare (`eth_estimateGas` on anvil: see the README).
pub const BATCH_BASE_GAS: u64 = 60_000;
/// Default gas per mint entry: a new holder (a zero balance slot written)
/// whose number opens a fresh bitmap slot, its event and calldata.
pub const PER_MINT_GAS: u64 = 60_000;
/// Default gas per burn entry: a balance read and write, a fresh bitmap slot, its event and calldata.
pub const PER_BURN_GAS: u64 = 40_000;
fn default_priority_fee() -> u64 {
    1_000_000_000
}
fn default_base_fee_multiplier() -> u64 {
    2
}
fn default_fee_bump_percent() -> u64 {
    13
}
fn default_resend_after_ms() -> u64 {
    6_000
}
fn default_min_balance_wei() -> String {
    "10000000000000000".into()
}
/// Default `eth_getLogs` window: public providers commonly allow 2,000 to 10,000 blocks.
pub const DEFAULT_LOG_RANGE_BLOCKS: u64 = 2_000;
fn default_log_range_blocks() -> u64 {
    DEFAULT_LOG_RANGE_BLOCKS
}

impl ChainConfig {
    /// Limits the wallet actors cannot work with, the balance floor and the RPC URL.
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.max_in_flight == 0 {
            errors.push(invalid(DAEMON_FILE, "chain.max_in_flight", "must be greater than 0"));
        }
        if self.max_batch == 0 {
            errors.push(invalid(DAEMON_FILE, "chain.max_batch", "must be greater than 0"));
        }
        if self.finality_depth == 0 {
            errors.push(invalid(DAEMON_FILE, "chain.finality_depth", "must be at least 1"));
        }
        if self.log_range_blocks == 0 {
            errors.push(invalid(DAEMON_FILE, "chain.log_range_blocks", "must be at least 1"));
        }
        if self.fee_bump_percent < 10 {
            errors.push(invalid(DAEMON_FILE, "chain.fee_bump_percent", "must be at least 10 (nodes refuse smaller replacements)"));
        }
        if alloy::primitives::U256::from_str_radix(&self.min_balance_wei, 10).is_err() {
            errors.push(invalid(DAEMON_FILE, "chain.min_balance_wei", "must be a whole number of wei"));
        }
        let parsed = alloy::transports::http::reqwest::Url::parse(&self.rpc_url);
        if !parsed.is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some()) {
            errors.push(invalid(DAEMON_FILE, "chain.rpc_url", "must be an http:// or https:// URL with a host"));
        }
    }
}

/// Circuit breaker thresholds (SPEC section 4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Consecutive transport failures that open it.
    pub failure_threshold: u32,
    /// Seconds it stays open before a probe.
    pub open_secs: u64,
    /// Successful probes that close it.
    pub close_after: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failure_threshold: 5, open_secs: 30, close_after: 2 }
    }
}

impl BreakerSettings {
    /// A breaker that never opens or never closes is refused.
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.failure_threshold == 0 || self.close_after == 0 {
            errors.push(invalid(DAEMON_FILE, "breaker", "failure_threshold and close_after must be greater than 0"));
        }
    }
}

/// Where the master key that encrypts private keys comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustodyConfig {
    /// A file holding `version:hex` keys; `HAVEND_MASTER_KEY` wins over it.
    pub master_key_file: Option<PathBuf>,
}

/// Prints an RPC URL as [`crate::redact::rpc_url`] reduces it: providers put
/// API keys in its path or query.
fn serialize_redacted_rpc_url<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::redact::rpc_url(url))
}
