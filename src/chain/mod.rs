//! The chain: HAVEN token bindings, an RPC client that tells transport
//! failures (which count for the circuit breaker) from node answers (which do
//! not), and transactions built and signed with explicit nonce, gas and fees.
//!
//! No alloy fillers: nonces belong to the wallet actors, gas limits are
//! configured per kind of call, fees come from [`FeePolicy`].

pub mod admin;
pub mod anvil;

use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::{RpcError, TransportErrorKind};
use serde::{Deserialize, Serialize};

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    HavenToken,
    "src/chain/contracts/HavenToken.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    HavenTokenSingle,
    "src/chain/contracts/HavenTokenSingle.json"
);

pub use crate::config::TokenAbi;

/// One intent in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// havend's id of the intent.
    pub transaction_id: uuid::Uuid,
    /// Its number on chain (`transactions.seq`).
    pub seq: u64,
    /// The holder credited or debited.
    pub account: Address,
    /// Base units.
    pub amount: U256,
}

impl Entry {
    /// The first indexed topic of the token's logs about this intent: its
    /// number for a batch token, its `bytes32` id for a single one.
    pub fn log_key(&self, abi: TokenAbi) -> B256 {
        match abi {
            TokenAbi::Batch => B256::from(U256::from(self.seq)),
            TokenAbi::Single => intent_id(self.transaction_id),
        }
    }
}

/// What a mined transaction did with one of its entries, from the token's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryResult {
    /// Minted or burned (`IntentExecuted`).
    Executed,
    /// Skipped: its number was used by an earlier transaction.
    Used,
    /// Skipped: a burn its holder could not cover (its number is used now).
    Insufficient,
}

/// The results a token's logs record, by [`Entry::log_key`]. A single token
/// logs only executions (a used id reverts the whole transaction).
pub fn entry_results<'a>(token: Address, logs: impl IntoIterator<Item = &'a alloy::rpc::types::Log>) -> std::collections::HashMap<B256, EntryResult> {
    use alloy::sol_types::SolEvent;
    let mut results = std::collections::HashMap::new();
    for log in logs {
        let topics = log.topics();
        if log.address() != token || topics.len() < 2 {
            continue;
        }
        let result = if topics[0] == HavenToken::IntentExecuted::SIGNATURE_HASH || topics[0] == HavenTokenSingle::IntentExecuted::SIGNATURE_HASH {
            EntryResult::Executed
        } else if let Ok(skipped) = HavenToken::IntentSkipped::decode_log_data(log.data()) {
            if skipped.reason == SKIPPED_INSUFFICIENT { EntryResult::Insufficient } else { EntryResult::Used }
        } else {
            continue;
        };
        results.insert(topics[1], result);
    }
    results
}

/// `IntentSkipped` reason of a burn its holder could not cover (the contract's `SKIPPED_INSUFFICIENT`).
const SKIPPED_INSUFFICIENT: u8 = 2;

/// Token amounts on chain have 18 decimals.
pub const DECIMALS: u32 = 18;

/// What an intent does on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// `mintBatch` (`mint` on a single token).
    Mint,
    /// `burnBatch` (`burn` on a single token).
    Burn,
}

impl CallKind {
    /// The name stored in `transactions.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Mint => "mint",
            CallKind::Burn => "burn",
        }
    }

    /// Parses `transactions.kind`.
    pub fn parse(kind: &str) -> Option<CallKind> {
        match kind {
            "mint" => Some(CallKind::Mint),
            "burn" => Some(CallKind::Burn),
            _ => None,
        }
    }
}

/// The on-chain id of an intent on a single token: the hash of havend's intent id, stable
/// across attempts, nonces and generations, so the contract refuses a second
/// execution whatever happened upstream.
pub fn intent_id(transaction_id: uuid::Uuid) -> B256 {
    keccak256(transaction_id.as_bytes())
}

/// The calldata that executes `entries` (all of `kind`, in this order): one
/// `mintBatch`/`burnBatch`, or for a single token one `mint`/`burn` of the
/// first entry (it never gets more than one).
pub fn encode_call(abi: TokenAbi, kind: CallKind, entries: &[Entry]) -> Bytes {
    match abi {
        TokenAbi::Batch => {
            let accounts: Vec<Address> = entries.iter().map(|e| e.account).collect();
            let amounts: Vec<U256> = entries.iter().map(|e| e.amount).collect();
            let seqs: Vec<U256> = entries.iter().map(|e| U256::from(e.seq)).collect();
            match kind {
                CallKind::Mint => HavenToken::mintBatchCall { to: accounts, amounts, seqs }.abi_encode().into(),
                CallKind::Burn => HavenToken::burnBatchCall { from: accounts, amounts, seqs }.abi_encode().into(),
            }
        }
        TokenAbi::Single => {
            let Some(entry) = entries.first() else { return Bytes::new() };
            let (account, amount, intent) = (entry.account, entry.amount, intent_id(entry.transaction_id));
            match kind {
                CallKind::Mint => HavenTokenSingle::mintCall { to: account, amount, intentId: intent }.abi_encode().into(),
                CallKind::Burn => HavenTokenSingle::burnCall { from: account, amount, intentId: intent }.abi_encode().into(),
            }
        }
    }
}

/// EIP-1559 fees of one attempt, in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    /// Fee cap.
    pub max_fee_per_gas: u128,
    /// Tip.
    pub max_priority_fee_per_gas: u128,
}

/// How fees are chosen and bumped.
#[derive(Debug, Clone, Copy)]
pub struct FeePolicy {
    /// Tip offered, wei.
    pub priority_fee: u128,
    /// Cap = base fee × this + tip, so a few rising blocks do not strand a tx.
    pub base_fee_multiplier: u128,
    /// A replacement raises both fees by at least this many percent (geth needs 10).
    pub bump_percent: u128,
}

impl FeePolicy {
    /// Fees for a first attempt when the next block's base fee is `base_fee`.
    pub fn initial(&self, base_fee: u128) -> Fees {
        Fees {
            max_fee_per_gas: base_fee.saturating_mul(self.base_fee_multiplier).saturating_add(self.priority_fee),
            max_priority_fee_per_gas: self.priority_fee,
        }
    }

    /// Fees for a replacement of `previous`: at least `bump_percent` more on
    /// both, and enough for `base_fee` now. Never capped: a cap that blocks
    /// the bump would leave the wallet stuck for good.
    pub fn bump(&self, previous: Fees, base_fee: u128) -> Fees {
        let raise = |v: u128| v.saturating_add((v.saturating_mul(self.bump_percent)).div_ceil(100)).max(v + 1);
        let tip = raise(previous.max_priority_fee_per_gas);
        let fresh = self.initial(base_fee);
        Fees { max_fee_per_gas: raise(previous.max_fee_per_gas).max(fresh.max_fee_per_gas + tip), max_priority_fee_per_gas: tip }
    }
}

/// A signed transaction ready to broadcast.
#[derive(Debug, Clone)]
pub struct SignedTx {
    /// Its hash.
    pub hash: B256,
    /// Its EIP-2718 bytes.
    pub raw: Vec<u8>,
}

/// What a transaction to sign is.
#[derive(Debug, Clone)]
pub struct TxRequest {
    /// Chain id.
    pub chain_id: u64,
    /// The token contract.
    pub token: Address,
    /// The nonce the wallet actor assigned.
    pub nonce: u64,
    /// The configured gas limit for this kind of call.
    pub gas_limit: u64,
    /// Fees.
    pub fees: Fees,
    /// Calldata.
    pub input: Bytes,
}

/// Signs `request` with `signer`.
pub fn sign(signer: &PrivateKeySigner, request: &TxRequest) -> Result<SignedTx, alloy::signers::Error> {
    let mut tx = TxEip1559 {
        chain_id: request.chain_id,
        nonce: request.nonce,
        gas_limit: request.gas_limit,
        max_fee_per_gas: request.fees.max_fee_per_gas,
        max_priority_fee_per_gas: request.fees.max_priority_fee_per_gas,
        to: TxKind::Call(request.token),
        value: U256::ZERO,
        access_list: Default::default(),
        input: request.input.clone(),
    };
    let signature = signer.sign_transaction_sync(&mut tx)?;
    let envelope = TxEnvelope::from(tx.into_signed(signature));
    Ok(SignedTx { hash: *envelope.tx_hash(), raw: envelope.encoded_2718() })
}

/// An RPC call that did not give a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcFailure {
    /// The node could not be reached or did not answer properly (timeout,
    /// refused, HTTP 5xx/429): counts as a failure for the circuit breaker.
    #[error("RPC transport failure: {0}")]
    Transport(String),
    /// The node answered with an error ("nonce too low", a revert, …): the
    /// RPC itself worked.
    #[error("node refused: {message} (code {code})")]
    Node {
        /// JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
}

impl RpcFailure {
    /// True for failures of the connection, not of the request.
    pub fn is_transport(&self) -> bool {
        matches!(self, RpcFailure::Transport(_))
    }

    /// The node's message, lower-cased, for classifying send errors.
    pub fn node_message(&self) -> Option<String> {
        match self {
            RpcFailure::Node { message, .. } => Some(message.to_ascii_lowercase()),
            RpcFailure::Transport(_) => None,
        }
    }
}

impl From<RpcError<TransportErrorKind>> for RpcFailure {
    fn from(error: RpcError<TransportErrorKind>) -> Self {
        match error {
            RpcError::ErrorResp(payload) => RpcFailure::Node { code: payload.code, message: payload.message.to_string() },
            RpcError::NullResp => RpcFailure::Node { code: 0, message: "null response".into() },
            // Transport errors quote the endpoint, and providers put API keys in it.
            other => RpcFailure::Transport(crate::redact::urls_in(&other.to_string())),
        }
    }
}

/// How a node answered `eth_sendRawTransaction` with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendRejection {
    /// "nonce too low" / "already known": it landed or is in the pool; look, do not resend another.
    AlreadyHandled,
    /// Fee cap under the base fee, or a replacement underpriced: re-sign with bumped fees.
    Underpriced,
    /// Not enough native balance for gas: hold the wallet and alert.
    InsufficientFunds,
    /// "intrinsic gas too low/high", "exceeds block gas limit": a configured
    /// gas limit is wrong. Alert and hold new work.
    Misconfigured,
    /// The node's own cap on fees refuses the transaction: alert, hold new
    /// work, keep trying the replacement.
    FeeCapExceeded,
    /// Anything else: alert and retry with backoff.
    Other,
}

/// Classifies a node's refusal of a raw transaction (wordings of geth, anvil, Besu, Nethermind).
pub fn classify_send_rejection(message: &str) -> SendRejection {
    let m = message.to_ascii_lowercase();
    if m.contains("nonce too low") || m.contains("already known") || m.contains("known transaction") || m.contains("already imported") {
        SendRejection::AlreadyHandled
    } else if m.contains("exceeds the configured cap") || m.contains("fee cap exceeded") || m.contains("exceeds configured cap") {
        SendRejection::FeeCapExceeded
    } else if m.contains("underpriced") || m.contains("less than block base fee") || m.contains("fee cap") || m.contains("max fee per gas") || m.contains("too low to replace") {
        SendRejection::Underpriced
    } else if m.contains("insufficient funds") {
        SendRejection::InsufficientFunds
    } else if m.contains("intrinsic gas too") || m.contains("exceeds block gas limit") || m.contains("gas limit reached") {
        SendRejection::Misconfigured
    } else {
        SendRejection::Other
    }
}

/// The block windows `(first, last)`, both inclusive and at most `size`
/// blocks each, that cover `from..=to` oldest first: a log search walks
/// forward through them because providers refuse `eth_getLogs` over wide
/// ranges. Empty when `from > to`; a `size` of 0 counts as 1.
pub fn log_windows(from: u64, to: u64, size: u64) -> impl Iterator<Item = (u64, u64)> {
    let size = size.max(1);
    let mut next = (from <= to).then_some(from);
    std::iter::from_fn(move || {
        let first = next?;
        let last = first.saturating_add(size - 1).min(to);
        next = last.checked_add(1).filter(|n| *n <= to);
        Some((first, last))
    })
}

/// The daemon's RPC client: every call has a timeout, every error is classified.
#[derive(Clone, Debug)]
pub struct ChainClient {
    provider: RootProvider,
    timeout: Duration,
}

impl ChainClient {
    /// A client for `url` whose calls give up after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<ChainClient, String> {
        let url = url.parse().map_err(|e| format!("invalid RPC URL {}: {e}", crate::redact::rpc_url(url)))?;
        Ok(ChainClient { provider: RootProvider::new_http(url), timeout })
    }

    /// The underlying provider (deployments, tests).
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    async fn timed<T>(&self, call: impl Future<Output = Result<T, RpcError<TransportErrorKind>>>) -> Result<T, RpcFailure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(RpcFailure::from),
            Err(_) => Err(RpcFailure::Transport(format!("timed out after {:?}", self.timeout))),
        }
    }

    /// The chain id.
    pub async fn chain_id(&self) -> Result<u64, RpcFailure> {
        self.timed(async { self.provider.get_chain_id().await }).await
    }

    /// The head block number.
    pub async fn block_number(&self) -> Result<u64, RpcFailure> {
        self.timed(async { self.provider.get_block_number().await }).await
    }

    /// Transactions `address` has had mined as of `block` (its next nonce there).
    pub async fn nonce_at(&self, address: Address, block: BlockId) -> Result<u64, RpcFailure> {
        self.timed(async { self.provider.get_transaction_count(address).block_id(block).await }).await
    }

    /// The next nonce counting the node's pool.
    pub async fn pending_nonce(&self, address: Address) -> Result<u64, RpcFailure> {
        self.timed(async { self.provider.get_transaction_count(address).pending().await }).await
    }

    /// Native balance, wei.
    pub async fn balance(&self, address: Address) -> Result<U256, RpcFailure> {
        self.timed(async { self.provider.get_balance(address).await }).await
    }

    /// The base fee the next block will charge (the latest block's, as a floor).
    pub async fn base_fee(&self) -> Result<u128, RpcFailure> {
        let block = self.timed(async { self.provider.get_block_by_number(BlockNumberOrTag::Latest).await }).await?;
        Ok(block.and_then(|b| b.header.base_fee_per_gas).unwrap_or(0) as u128)
    }

    /// The tip the node suggests now (`eth_maxPriorityFeePerGas`), wei.
    pub async fn market_tip(&self) -> Result<u128, RpcFailure> {
        self.timed(async { self.provider.get_max_priority_fee_per_gas().await }).await
    }

    /// For each of `keys` ([`Entry::log_key`]) whose intent `token` settled
    /// within blocks `from..=to` (one window of [`log_windows`]): the first
    /// transaction that did, with its block number and hash, and whether it
    /// executed the intent or skipped a burn its holder could not cover
    /// (that too uses the number). A skip as `used` settles nothing.
    pub async fn intent_executions(
        &self,
        token: Address,
        keys: &[B256],
        from: u64,
        to: u64,
    ) -> Result<std::collections::HashMap<B256, (B256, u64, B256, EntryResult)>, RpcFailure> {
        use alloy::sol_types::SolEvent;
        let filter = alloy::rpc::types::Filter::new()
            .address(token)
            .event_signature(vec![
                HavenToken::IntentExecuted::SIGNATURE_HASH,
                HavenToken::IntentSkipped::SIGNATURE_HASH,
                HavenTokenSingle::IntentExecuted::SIGNATURE_HASH,
            ])
            .topic1(keys.to_vec())
            .from_block(BlockNumberOrTag::Number(from))
            .to_block(BlockNumberOrTag::Number(to));
        let logs = self.timed(async { self.provider.get_logs(&filter).await }).await?;
        let mut found = std::collections::HashMap::new();
        for log in &logs {
            let Some((key, result)) = entry_results(token, [log]).into_iter().next() else { continue };
            if result == EntryResult::Used {
                continue;
            }
            if let (Some(hash), Some(block), Some(block_hash)) = (log.transaction_hash, log.block_number, log.block_hash) {
                found.entry(key).or_insert((hash, block, block_hash, result));
            }
        }
        Ok(found)
    }

    /// Broadcasts signed bytes.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<(), RpcFailure> {
        self.timed(async { self.provider.send_raw_transaction(raw).await.map(|_| ()) }).await
    }

    /// The receipt of `hash`, if mined.
    pub async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, RpcFailure> {
        self.timed(async { self.provider.get_transaction_receipt(hash).await }).await
    }

    /// Whether the node knows `hash` at all (pooled or mined).
    pub async fn is_known(&self, hash: B256) -> Result<bool, RpcFailure> {
        self.timed(async { self.provider.get_transaction_by_hash(hash).await.map(|tx| tx.is_some()) }).await
    }

    /// All receipts of block `number`.
    pub async fn block_receipts(&self, number: u64) -> Result<Vec<TransactionReceipt>, RpcFailure> {
        let receipts = self
            .timed(async { self.provider.get_block_receipts(BlockId::number(number)).await })
            .await?;
        Ok(receipts.unwrap_or_default())
    }

    /// The token's `totalSupply()`.
    pub async fn total_supply(&self, token: Address) -> Result<U256, RpcFailure> {
        let contract = HavenToken::new(token, &self.provider);
        self.timed(async { contract.totalSupply().call().await.map_err(contract_error) }).await
    }

    /// The token balance of `account`.
    pub async fn token_balance(&self, token: Address, account: Address) -> Result<U256, RpcFailure> {
        let contract = HavenToken::new(token, &self.provider);
        self.timed(async { contract.balanceOf(account).call().await.map_err(contract_error) }).await
    }

    /// `totalSupply()` as of block `number` (one consistent view for reconciliation).
    pub async fn total_supply_at(&self, token: Address, number: u64) -> Result<U256, RpcFailure> {
        let contract = HavenToken::new(token, &self.provider);
        self.timed(async { contract.totalSupply().block(BlockId::number(number)).call().await.map_err(contract_error) }).await
    }

    /// The token balance of `account` as of block `number`.
    pub async fn token_balance_at(&self, token: Address, account: Address, number: u64) -> Result<U256, RpcFailure> {
        let contract = HavenToken::new(token, &self.provider);
        self.timed(async { contract.balanceOf(account).block(BlockId::number(number)).call().await.map_err(contract_error) }).await
    }
}

fn contract_error(error: alloy::contract::Error) -> RpcError<TransportErrorKind> {
    match error {
        alloy::contract::Error::TransportError(e) => e,
        other => RpcError::LocalUsageError(Box::new(other)),
    }
}

/// Formats base units as a decimal HNV amount (`1500000000000000000` → `1.5`).
pub fn format_units(amount: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(DECIMALS));
    let whole = amount / unit;
    let fraction = amount % unit;
    if fraction.is_zero() {
        return whole.to_string();
    }
    let digits = format!("{:0>18}", fraction.to_string());
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a decimal HNV amount into base units, exactly; `None` when it has
/// more than 18 decimals, is negative or is not a number.
pub fn parse_units(amount: &str) -> Option<U256> {
    let (whole, fraction) = amount.trim().split_once('.').unwrap_or((amount.trim(), ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > DECIMALS as usize {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let unit = U256::from(10u64).pow(U256::from(DECIMALS));
    let whole = if whole.is_empty() { U256::ZERO } else { U256::from_str_radix(whole, 10).ok()? };
    let padded = format!("{fraction:0<18}");
    whole.checked_mul(unit)?.checked_add(U256::from_str_radix(&padded, 10).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_windows_cover_the_range_once_in_order_and_never_exceed_the_size() {
        assert_eq!(log_windows(10, 14, 2).collect::<Vec<_>>(), [(10, 11), (12, 13), (14, 14)]);
        assert_eq!(log_windows(7, 7, 2_000).collect::<Vec<_>>(), [(7, 7)]);
        assert_eq!(log_windows(8, 7, 2).count(), 0);
        assert_eq!(log_windows(0, 3, 0).count(), 4);
        assert_eq!(log_windows(u64::MAX - 1, u64::MAX, 5).collect::<Vec<_>>(), [(u64::MAX - 1, u64::MAX)]);
    }

    proptest::proptest! {
        #[test]
        fn log_windows_tile_the_range(from in 0u64..10_000, len in 0u64..10_000, size in 1u64..3_000) {
            let to = from + len;
            let windows: Vec<_> = log_windows(from, to, size).collect();
            proptest::prop_assert_eq!(windows.first().map(|w| w.0), Some(from));
            proptest::prop_assert_eq!(windows.last().map(|w| w.1), Some(to));
            for pair in windows.windows(2) {
                proptest::prop_assert_eq!(pair[0].1 + 1, pair[1].0);
            }
            proptest::prop_assert!(windows.iter().all(|(a, b)| a <= b && b - a < size));
        }
    }

    #[test]
    fn units_round_trip_exactly() {
        assert_eq!(parse_units("330.5").unwrap().to_string(), "330500000000000000000");
        assert_eq!(format_units(parse_units("0.000000000000000001").unwrap()), "0.000000000000000001");
        assert_eq!(format_units(parse_units("12").unwrap()), "12");
        assert!(parse_units("1.0000000000000000001").is_none());
        assert!(parse_units("-1").is_none());
        assert!(parse_units("abc").is_none());
    }

    #[test]
    fn send_rejections_are_classified_across_node_wordings() {
        assert_eq!(classify_send_rejection("nonce too low: next nonce 5, tx nonce 4"), SendRejection::AlreadyHandled);
        assert_eq!(classify_send_rejection("already known"), SendRejection::AlreadyHandled);
        assert_eq!(classify_send_rejection("replacement transaction underpriced"), SendRejection::Underpriced);
        assert_eq!(classify_send_rejection("max fee per gas less than block base fee"), SendRejection::Underpriced);
        assert_eq!(classify_send_rejection("insufficient funds for gas * price + value"), SendRejection::InsufficientFunds);
        assert_eq!(classify_send_rejection("intrinsic gas too low"), SendRejection::Misconfigured);
        assert_eq!(classify_send_rejection("exceeds block gas limit"), SendRejection::Misconfigured);
        assert_eq!(classify_send_rejection("intrinsic gas too high -- tx.gas_limit > env.block.gas_limit"), SendRejection::Misconfigured);
        assert_eq!(classify_send_rejection("tx fee (1.20 ether) exceeds the configured cap (1.00 ether)"), SendRejection::FeeCapExceeded);
        assert_eq!(classify_send_rejection("txpool is full"), SendRejection::Other);
    }

    #[test]
    fn fee_bump_raises_both_fees_by_at_least_the_percentage_and_covers_the_base_fee() {
        let policy = FeePolicy { priority_fee: 1_000_000_000, base_fee_multiplier: 2, bump_percent: 13 };
        let first = policy.initial(10);
        let bumped = policy.bump(first, 10);
        assert!(bumped.max_priority_fee_per_gas * 100 >= first.max_priority_fee_per_gas * 113);
        assert!(bumped.max_fee_per_gas * 100 >= first.max_fee_per_gas * 113);
        let spike = policy.bump(first, 50_000_000_000);
        assert!(spike.max_fee_per_gas > 50_000_000_000);
    }

    #[test]
    fn signing_is_deterministic_and_hash_matches_the_bytes() {
        let signer: PrivateKeySigner = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d".parse().unwrap();
        let request = TxRequest {
            chain_id: 31337,
            token: Address::repeat_byte(7),
            nonce: 3,
            gas_limit: 120_000,
            fees: Fees { max_fee_per_gas: 2_000_000_000, max_priority_fee_per_gas: 1_000_000_000 },
            input: encode_call(
                TokenAbi::Batch,
                CallKind::Mint,
                &[Entry { transaction_id: uuid::Uuid::nil(), seq: 1, account: Address::repeat_byte(1), amount: U256::from(5) }],
            ),
        };
        let a = sign(&signer, &request).unwrap();
        let b = sign(&signer, &request).unwrap();
        assert_eq!(a.raw, b.raw);
        assert_eq!(a.hash, keccak256(&a.raw));
    }
}
