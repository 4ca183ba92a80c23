//! One actor per hot wallet: it alone assigns the wallet's nonces.
//!
//! Each tick: look at the chain (new blocks' receipts, the nonce at the head
//! and at the finality depth, receipts and pool presence of the attempts that
//! need a look, fees), hand that snapshot and the in-flight set to the pure
//! [`plan`](super::plan::plan), and execute what it decides (settle, requeue
//! a foreign nonce and halt, send again, re-sign with bumped fees) with fenced
//! writes; then sign a batch of queued intents — written ahead in one fenced
//! commit — and broadcast it in nonce order without waiting for receipts. A
//! failed or unknown commit restarts the actor, which rebuilds its state from
//! the database and the chain.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use entity::wallets;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde::Serialize;
use serde_json::json;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::{WalletDeps, WalletSettings};
use super::plan::{self, Action, AttemptView, InFlightView, Memory, Mined, Rules, Settled, Settlement, Snapshot};
use super::sign_plan::{self, AfterSend, Assignment, Queued, Reversals, Seen, Step as SignStep};
use super::store::{self, NewAttempt, ReversalDecision, StoreError};
use crate::alert::{self, Severity};
use crate::breaker::BreakerHandle;
use crate::chain::{self, CallKind, ChainClient, Entry, EntryResult, Fees, RpcFailure, SendRejection, TxRequest};
use crate::custody;
use crate::ledger::gas_hold;

/// Blocks whose receipts one tick scans at most (catching up after an outage).
const MAX_BLOCKS_PER_TICK: u64 = 64;
/// Ticks between native balance checks.
const BALANCE_CHECK_EVERY: u64 = 20;

/// Messages a wallet actor handles.
pub enum WalletMsg {
    /// The periodic tick (one timer at a time).
    Tick,
    /// Work may be waiting: run a tick now.
    Nudge,
    /// The wallet's state, for operators and tests.
    Status(RpcReplyPort<WalletStatus>),
}

/// A wallet actor's state as reported.
#[derive(Debug, Clone, Serialize)]
pub struct WalletStatus {
    /// The hot wallet.
    pub address: Address,
    /// The epoch this actor holds.
    pub epoch: i64,
    /// The next nonce it will assign.
    pub next_nonce: u64,
    /// Transactions (nonces) signed and not yet final.
    pub in_flight: usize,
    /// Why it stopped signing, if it did.
    pub halted: Option<String>,
    /// Whether new work is held (low native balance).
    pub held: bool,
    /// Whether mints wait out a gas spike (as of the last tick that had mints queued).
    pub gas_hold: bool,
    /// Ticks run since start: a wallet that spins shows a count racing ahead
    /// of its poll interval.
    pub ticks: u64,
}

/// The wallet actor.
pub struct WalletActor;

/// What a wallet actor starts with.
pub struct WalletArgs {
    /// The wallet to sign for.
    pub wallet_id: Uuid,
    /// What every wallet actor of this daemon shares.
    pub deps: WalletDeps,
}

struct Attempt {
    number: i32,
    hash: B256,
    raw: Vec<u8>,
    fees: Fees,
    gas_limit: u64,
}

/// One signed batch at one nonce.
struct InFlight {
    kind: CallKind,
    /// Its intents, in call order; every attempt carries exactly these.
    entries: Vec<Entry>,
    attempts: Vec<Attempt>,
    broadcast: bool,
    last_sent: Option<Instant>,
    mined: Option<Mined>,
    /// What the mined receipt's logs say of each intent (read with `mined`).
    results: HashMap<Uuid, EntryResult>,
    /// Node refusals of this nonce in a row (classified, alerted on the first).
    refusals: u32,
    /// Not sent again before this (backoff after an unexplained refusal).
    retry_at: Option<Instant>,
    /// The node refused the newest attempt as underpriced: the planner replaces it.
    underpriced: bool,
}

impl InFlight {
    /// A newly signed batch, not yet broadcast.
    fn signed(assignment: Assignment, attempt: Attempt) -> Self {
        InFlight {
            kind: assignment.kind,
            entries: assignment.entries,
            attempts: vec![attempt],
            broadcast: false,
            last_sent: None,
            mined: None,
            results: HashMap::new(),
            refusals: 0,
            retry_at: None,
            underpriced: false,
        }
    }

    fn newest(&self) -> &Attempt {
        self.attempts.last().expect("an in-flight batch has at least one attempt")
    }

    fn ids(&self) -> Vec<Uuid> {
        self.entries.iter().map(|e| e.transaction_id).collect()
    }

    /// Records where a receipt put the batch, and what its logs say of each intent.
    fn record(&mut self, mined: Mined, abi: chain::TokenAbi, token: Address, logs: &[alloy::rpc::types::Log]) {
        let by_key = chain::entry_results(token, logs);
        self.results = self.entries.iter().filter_map(|e| Some((e.transaction_id, *by_key.get(&e.log_key(abi))?))).collect();
        self.mined = Some(mined);
    }

    fn view(&self, nonce: u64, now: Instant) -> InFlightView {
        InFlightView {
            nonce,
            entries: self.ids(),
            attempts: self.attempts.iter().map(|a| AttemptView { hash: a.hash, fees: a.fees }).collect(),
            sent_ago: self.last_sent.filter(|_| self.broadcast).map(|t| now.duration_since(t)),
            backing_off: self.retry_at.is_some_and(|t| now < t),
            refused_underpriced: self.underpriced,
        }
    }
}

/// The wallet actor's state: its key, its epoch and the nonces it tracks.
pub struct WalletState {
    wallet_id: Uuid,
    address: Address,
    signer: PrivateKeySigner,
    owner: String,
    db: DatabaseConnection,
    chain: ChainClient,
    breaker: BreakerHandle,
    settings: WalletSettings,
    epoch: i64,
    next_nonce: u64,
    in_flight: BTreeMap<u64, InFlight>,
    by_hash: HashMap<B256, u64>,
    scanned_block: Option<u64>,
    started: bool,
    halted: Option<String>,
    accepts_new_work: bool,
    held: bool,
    ticks: u64,
    timer_pending: bool,
    /// When the heartbeat was last written (None: not yet).
    last_heartbeat: Option<Instant>,
    /// The node's chain id, read at start-up.
    node_chain_id: u64,
    /// What the planner remembers between ticks (nonces suspected foreign).
    memory: Memory,
    /// The chain nonce last seen and since when it has not moved.
    last_latest: Option<(u64, Instant)>,
    /// The halt is stored on the wallet row (a foreign nonce): only an
    /// operator's `wallet resume` lifts it.
    halt_stored: bool,
    /// New work is held because the node refuses our transactions for a
    /// reason an operator must fix (gas limits, the node's fee cap).
    refused: Option<String>,
    /// The node's words for its latest refusal, for the alert.
    last_refusal: String,
    /// Queued mints wait out a gas spike (last reading, for the status and the log).
    gas_hold: bool,
}

/// Why a tick ended early.
enum Stop {
    /// The RPC failed; the breaker has been told.
    Rpc,
    /// A fenced write found another owner.
    Fenced,
    /// A commit failed or its outcome is unknown: restart and reconcile.
    Db(String),
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Fenced => Stop::Fenced,
            StoreError::NotAllowed(status) => Stop::Db(format!("write refused: wallet {status}")),
            // Not a takeover: this actor's picture is out of date; restart and reload it.
            stale @ StoreError::Stale { .. } => Stop::Db(stale.to_string()),
            StoreError::Db(e) => Stop::Db(e.to_string()),
        }
    }
}

impl From<sea_orm::DbErr> for Stop {
    fn from(error: sea_orm::DbErr) -> Self {
        Stop::Db(error.to_string())
    }
}

impl Actor for WalletActor {
    type Msg = WalletMsg;
    type State = WalletState;
    type Arguments = WalletArgs;

    async fn pre_start(&self, myself: ActorRef<WalletMsg>, args: WalletArgs) -> Result<WalletState, ActorProcessingErr> {
        let WalletArgs { wallet_id, deps: args } = args;
        // Unlock first: a daemon that cannot decrypt the key must not take
        // the wallet (its epoch) away from one that can.
        let row = wallets::Entity::find_by_id(wallet_id).one(&args.db).await?.ok_or_else(|| format!("wallet {wallet_id} not found"))?;
        let signer = custody::unlock(&args.db, &args.keys, &row, &args.owner, "wallet actor").await?;
        let (epoch, wallet) = store::claim(&args.db, wallet_id, &args.owner).await?;
        let address = signer.address();
        let mut state = WalletState {
            wallet_id: wallet.id,
            address,
            signer,
            owner: args.owner,
            db: args.db,
            chain: args.chain,
            breaker: args.breaker,
            settings: args.settings,
            epoch,
            next_nonce: wallet.next_nonce as u64,
            in_flight: BTreeMap::new(),
            by_hash: HashMap::new(),
            scanned_block: None,
            started: false,
            halted: wallet.halted.clone(),
            accepts_new_work: wallet.status == custody::ACTIVE,
            held: false,
            ticks: 0,
            timer_pending: false,
            last_heartbeat: None,
            node_chain_id: 0,
            memory: Memory::default(),
            last_latest: None,
            halt_stored: wallet.halted.is_some(),
            refused: None,
            last_refusal: String::new(),
            gas_hold: false,
        };
        state.load_in_flight().await?;
        info!(wallet = %address, epoch, nonce = state.next_nonce, in_flight = state.in_flight.len(), "Wallet actor started");
        myself.cast(WalletMsg::Tick)?;
        state.timer_pending = true;
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<WalletMsg>, msg: WalletMsg, state: &mut WalletState) -> Result<(), ActorProcessingErr> {
        let from_timer = match msg {
            WalletMsg::Status(reply) => {
                let _ = reply.send(state.status());
                return Ok(());
            }
            WalletMsg::Tick => {
                state.timer_pending = false;
                true
            }
            WalletMsg::Nudge => false,
        };
        let more = match state.step().await {
            Ok(more) => more,
            Err(Stop::Rpc) => false,
            Err(Stop::Fenced) => {
                state.fenced_out().await;
                myself.stop(Some("fenced out".into()));
                return Ok(());
            }
            Err(Stop::Db(error)) => return Err(format!("wallet {}: {error}; restarting to reconcile", state.address).into()),
        };
        if more {
            myself.cast(WalletMsg::Nudge)?;
        }
        if from_timer || !state.timer_pending {
            myself.send_after(state.settings.poll_interval, || WalletMsg::Tick);
            state.timer_pending = true;
        }
        Ok(())
    }
}

impl WalletState {
    fn status(&self) -> WalletStatus {
        WalletStatus {
            address: self.address,
            epoch: self.epoch,
            next_nonce: self.next_nonce,
            in_flight: self.in_flight.len(),
            halted: self.halted.clone(),
            held: self.held,
            gas_hold: self.gas_hold,
            ticks: self.ticks,
        }
    }

    async fn load_in_flight(&mut self) -> Result<(), sea_orm::DbErr> {
        let tracked = store::load_in_flight(&self.db, self.wallet_id).await?;
        let user_ids: Vec<Uuid> = tracked.iter().flat_map(|t| t.intents.iter().map(|i| i.user_id)).collect();
        let accounts = super::accounts_of(&self.db, &user_ids).await?;
        for t in tracked {
            let Some(kind) = t.intents.first().and_then(|i| CallKind::parse(&i.kind)) else { continue };
            let entries: Vec<Entry> = t
                .intents
                .iter()
                .map(|i| Entry {
                    transaction_id: i.id,
                    seq: i.seq.and_then(|s| u64::try_from(s).ok()).unwrap_or_default(),
                    account: accounts.get(&i.user_id).copied().unwrap_or_default(),
                    amount: U256::from_str_radix(&i.amount, 10).unwrap_or_default(),
                })
                .collect();
            let attempts: Vec<Attempt> = t
                .attempts
                .iter()
                .filter_map(|a| {
                    Some(Attempt {
                        number: a.attempt,
                        hash: a.tx_hash.parse().ok()?,
                        raw: a.raw.clone(),
                        fees: Fees {
                            max_fee_per_gas: a.max_fee_per_gas.parse().ok()?,
                            max_priority_fee_per_gas: a.max_priority_fee_per_gas.parse().ok()?,
                        },
                        gas_limit: a.gas_limit as u64,
                    })
                })
                .collect();
            if attempts.is_empty() {
                continue;
            }
            for attempt in &attempts {
                self.by_hash.insert(attempt.hash, t.nonce);
            }
            self.in_flight.insert(
                t.nonce,
                InFlight {
                    kind,
                    entries,
                    // After a restart the node may or may not have it: send again.
                    broadcast: false,
                    last_sent: None,
                    mined: None,
                    results: HashMap::new(),
                    refusals: 0,
                    retry_at: None,
                    underpriced: false,
                    attempts,
                },
            );
        }
        Ok(())
    }

    /// Runs a call, tells the breaker how the transport fared.
    async fn rpc<T>(&self, call: impl Future<Output = Result<T, RpcFailure>>) -> Result<T, Stop> {
        let result = call.await;
        self.breaker.report(&result);
        result.map_err(|failure| {
            debug!(wallet = %self.address, %failure, "RPC call failed");
            Stop::Rpc
        })
    }

    /// One tick; `Ok(true)` when more queued work is waiting.
    async fn step(&mut self) -> Result<bool, Stop> {
        self.ticks += 1;
        // Before the breaker: the daemon claims the wallet even while the RPC is down.
        if self.last_heartbeat.is_none_or(|at| at.elapsed() >= super::HEARTBEAT_EVERY) {
            store::heartbeat(&self.db, self.wallet_id, self.epoch).await?;
            self.last_heartbeat = Some(Instant::now());
        }
        if !self.breaker.allow().await {
            return Ok(false);
        }
        let head = self.rpc(self.chain.block_number()).await?;
        if !self.started {
            self.start_up(head).await?;
        }
        self.refresh_wallet_status().await?;
        self.scan_blocks(head).await?;
        // With nothing in flight there is nothing to settle or resend: an idle
        // wallet costs one RPC and one query per tick.
        if self.in_flight.is_empty() {
            // A chain nonce that stands still while nothing is pending is not a stall.
            self.last_latest = None;
        } else {
            self.reconcile(head).await?;
        }
        if self.ticks % BALANCE_CHECK_EVERY == 1 {
            self.check_balance().await?;
        }
        if self.halted.is_some() || self.held || self.refused.is_some() || !self.accepts_new_work {
            return Ok(false);
        }
        self.sign_new(head).await
    }

    /// First successful contact with the chain after start: never skip ahead.
    async fn start_up(&mut self, head: u64) -> Result<(), Stop> {
        self.node_chain_id = self.rpc(self.chain.chain_id()).await?;
        if self.node_chain_id != self.settings.chain_id {
            let reason = format!("node is on chain {}, config says {}", self.node_chain_id, self.settings.chain_id);
            alert::raise(&self.db, Severity::Critical, "wrong_chain", &format!("Hot wallet {}: {reason}; nothing is signed or reconciled", self.address), json!({ "wallet": self.address })).await;
            self.halt(reason);
        }
        let pending = self.rpc(self.chain.pending_nonce(self.address)).await?;
        if pending > self.next_nonce && !self.halt_stored {
            alert::raise(
                &self.db,
                Severity::Critical,
                "foreign_nonce",
                &format!("Hot wallet {} has nonce {pending} on chain but havend only assigned up to {}: someone else holds this key, or the database is older than the chain. Signing stopped until `havend wallet resume` or a rotation.", self.address, self.next_nonce),
                json!({ "wallet": self.address, "chain_nonce": pending, "stored_next_nonce": self.next_nonce }),
            )
            .await;
            self.store_halt("chain nonce ahead of havend's").await?;
        }
        // Receipts of blocks before now are looked up by hash when needed.
        self.scanned_block = Some(head);
        self.started = true;
        Ok(())
    }

    async fn refresh_wallet_status(&mut self) -> Result<(), Stop> {
        let row = wallets::Entity::find_by_id(self.wallet_id).one(&self.db).await?;
        let Some(row) = row else { return Err(Stop::Db("wallet row vanished".into())) };
        if row.epoch != self.epoch {
            return Err(Stop::Fenced);
        }
        let accepts = row.status == custody::ACTIVE;
        if self.accepts_new_work && !accepts {
            // Rotated or revoked: signed work still finishes here, replacements included.
            info!(wallet = %self.address, status = %row.status, "Wallet takes no new work; finishing its signed work");
        }
        self.accepts_new_work = accepts;
        if self.halt_stored && row.halted.is_none() {
            self.resume().await?;
        }
        Ok(())
    }

    /// An operator lifted a stored halt: nonces a foreign signer used beyond
    /// ours are recorded as foreign and skipped, openly, and the start-up
    /// checks run again.
    async fn resume(&mut self) -> Result<(), Stop> {
        let latest = self.rpc(self.chain.nonce_at(self.address, BlockId::latest())).await?;
        if latest > self.next_nonce {
            store::adopt_chain_nonce(&self.db, self.wallet_id, self.epoch, self.next_nonce, latest).await?;
            warn!(wallet = %self.address, nonce = self.next_nonce, chain_nonce = latest, "Resumed: nonces used by a foreign signer recorded and skipped");
            self.next_nonce = latest;
        }
        info!(wallet = %self.address, "Wallet resumed by an operator");
        self.halted = None;
        self.halt_stored = false;
        self.memory = Memory::default();
        self.started = false;
        Ok(())
    }

    /// Stops signing and stores why, so a restart does not lift it.
    async fn store_halt(&mut self, reason: &str) -> Result<(), Stop> {
        store::set_halted(&self.db, self.wallet_id, self.epoch, self.next_nonce, Some(reason)).await?;
        self.halt_stored = true;
        self.halt(reason.to_owned());
        Ok(())
    }

    async fn scan_blocks(&mut self, head: u64) -> Result<(), Stop> {
        let Some(mut scanned) = self.scanned_block else { return Ok(()) };
        if head < scanned {
            // The chain went back (a reorg or a reverted dev chain): look at the new blocks again.
            scanned = head;
            self.scanned_block = Some(head);
        }
        let last = head.min(scanned + MAX_BLOCKS_PER_TICK);
        for block in scanned + 1..=last {
            if !self.in_flight.is_empty() {
                for receipt in self.rpc(self.chain.block_receipts(block)).await? {
                    let block_hash = receipt.block_hash.unwrap_or_default();
                    self.record_mined(Mined { hash: receipt.transaction_hash, block, block_hash, success: receipt.status() }, receipt.logs());
                }
            }
            self.scanned_block = Some(block);
        }
        Ok(())
    }

    fn record_mined(&mut self, mined: Mined, logs: &[alloy::rpc::types::Log]) {
        if let Some(nonce) = self.by_hash.get(&mined.hash)
            && let Some(entry) = self.in_flight.get_mut(nonce)
        {
            entry.record(mined, self.settings.token_abi, self.settings.token, logs);
        }
    }

    /// Gathers what the chain says about the in-flight set, asks the planner
    /// what to do, and does it.
    async fn reconcile(&mut self, head: u64) -> Result<(), Stop> {
        let now = Instant::now();
        let latest = self.rpc(self.chain.nonce_at(self.address, BlockId::latest())).await?;
        let since = match self.last_latest {
            Some((seen, since)) if seen == latest => since,
            _ => now,
        };
        self.last_latest = Some((latest, since));
        let snapshot = self.snapshot(head, latest, now.duration_since(since)).await?;
        let views: Vec<InFlightView> = self.in_flight.iter().map(|(n, f)| f.view(*n, now)).collect();
        let rules = Rules {
            chain_id: self.settings.chain_id,
            finality_depth: self.settings.finality_depth,
            resend_after: self.settings.resend_after,
            stuck_after: self.settings.resend_after,
        };
        let actions = plan::plan(&views, &snapshot, &rules, &mut self.memory);
        self.execute(actions, &snapshot).await
    }

    /// The snapshot the planner decides on: receipts of mined attempts
    /// (fetched again at the finality depth, so a reorg shows), receipts and
    /// presence of every attempt at a consumed nonce that nothing explains,
    /// presence of pending attempts due for a look, fees, and the
    /// `IntentExecuted` log of reverted intents.
    async fn snapshot(&mut self, head: u64, latest: u64, stalled_for: std::time::Duration) -> Result<Snapshot, Stop> {
        let depth = self.settings.finality_depth;
        let mut snapshot = Snapshot { chain_id: self.node_chain_id, head, latest_nonce: latest, final_nonce: latest, stalled_for, ..Snapshot::default() };
        let now = Instant::now();
        let nonces: Vec<u64> = self.in_flight.keys().copied().collect();
        let mut unexplained = false;
        for nonce in nonces {
            let entry = &self.in_flight[&nonce];
            if let Some(mined) = entry.mined {
                if mined.block + depth > head + 1 || depth == 1 {
                    snapshot.receipts.insert(mined.hash, mined);
                    snapshot.results.insert(mined.hash, entry.results.clone());
                    continue;
                }
                // At depth: is it still there, in the same block? Its logs are read again from it.
                let fresh = self.rpc(self.chain.receipt(mined.hash)).await?.and_then(|r| {
                    let mined = Mined { hash: mined.hash, block: r.block_number?, block_hash: r.block_hash?, success: r.status() };
                    Some((mined, r))
                });
                let (abi, token) = (self.settings.token_abi, self.settings.token);
                let entry = self.in_flight.get_mut(&nonce).expect("tracked");
                match fresh {
                    Some((fresh, receipt)) => {
                        entry.record(fresh, abi, token, receipt.logs());
                        snapshot.receipts.insert(fresh.hash, fresh);
                        snapshot.results.insert(fresh.hash, entry.results.clone());
                    }
                    // Gone in a reorg: watched (and rebroadcast) again.
                    None => {
                        entry.mined = None;
                        entry.broadcast = false;
                    }
                }
            } else if nonce < latest {
                unexplained = true;
                let hashes: Vec<B256> = entry.attempts.iter().map(|a| a.hash).collect();
                for hash in hashes {
                    snapshot.looked_up.insert(hash);
                    if let Some(r) = self.rpc(self.chain.receipt(hash)).await? {
                        let mined = Mined { hash, block: r.block_number.unwrap_or(head), block_hash: r.block_hash.unwrap_or_default(), success: r.status() };
                        self.record_mined(mined, r.logs());
                        snapshot.receipts.insert(hash, mined);
                        snapshot.results.insert(hash, self.in_flight[&nonce].results.clone());
                        snapshot.known.insert(hash);
                    } else if self.rpc(self.chain.is_known(hash)).await? {
                        snapshot.known.insert(hash);
                    }
                }
            } else {
                let due = entry.last_sent.is_some_and(|t| now.duration_since(t) >= self.settings.resend_after) && entry.broadcast;
                if due {
                    let hash = entry.newest().hash;
                    snapshot.looked_up.insert(hash);
                    if self.rpc(self.chain.is_known(hash)).await? {
                        snapshot.known.insert(hash);
                    }
                }
            }
        }
        if unexplained {
            let final_block = head.saturating_sub(depth - 1);
            snapshot.final_nonce = self.rpc(self.chain.nonce_at(self.address, BlockId::number(final_block))).await?;
        }
        if self.in_flight.range(latest..).next().is_some() {
            snapshot.base_fee = self.rpc(self.chain.base_fee()).await?;
            if stalled_for >= self.settings.resend_after {
                snapshot.market_tip = self.rpc(self.chain.market_tip()).await?;
            }
        }
        // Intents of final receipts that reverted or skipped them as used:
        // settled by an earlier transaction, or (reverted) not at all.
        let mut lookups: Vec<Entry> = Vec::new();
        for (nonce, entry) in &self.in_flight {
            let Some(mined) = entry.mined.filter(|m| m.block + depth <= head + 1) else { continue };
            let ids = plan::needs_lookup(&entry.view(*nonce, now), &mined, Some(&entry.results));
            lookups.extend(entry.entries.iter().filter(|e| ids.contains(&e.transaction_id)).cloned());
        }
        if !lookups.is_empty() {
            snapshot.executed_by = self.find_executions(&lookups, head).await?;
        }
        Ok(snapshot)
    }

    /// For each of `entries`, the earlier transaction whose log settled it
    /// (`IntentExecuted`, or a burn skipped as unfunded), searched forward
    /// from the block its intent's first attempt was signed at up to `head`,
    /// one window of `log_range_blocks` per request, all of them at once.
    async fn find_executions(&self, entries: &[Entry], head: u64) -> Result<HashMap<Uuid, Option<(Mined, EntryResult)>>, Stop> {
        let ids: Vec<Uuid> = entries.iter().map(|e| e.transaction_id).collect();
        let sent = store::sent_blocks(&self.db, &ids).await?;
        let start = |e: &Entry| {
            plan::log_search_start(sent.get(&e.transaction_id).map_or(&[][..], Vec::as_slice), self.settings.deploy_block, self.settings.finality_depth)
        };
        let from = entries.iter().map(start).min().unwrap_or(self.settings.deploy_block);
        let abi = self.settings.token_abi;
        let mut found: HashMap<Uuid, Option<(Mined, EntryResult)>> = ids.iter().map(|id| (*id, None)).collect();
        let mut missing: Vec<&Entry> = entries.iter().collect();
        for (first, last) in chain::log_windows(from, head, self.settings.log_range_blocks) {
            let keys: Vec<B256> = missing.iter().map(|e| e.log_key(abi)).collect();
            let logged = self.rpc(self.chain.intent_executions(self.settings.token, &keys, first, last)).await?;
            missing.retain(|e| match logged.get(&e.log_key(abi)) {
                Some((hash, block, block_hash, result)) => {
                    let mined = Mined { hash: *hash, block: *block, block_hash: *block_hash, success: true };
                    found.insert(e.transaction_id, Some((mined, *result)));
                    false
                }
                None => true,
            });
            if missing.is_empty() {
                break;
            }
        }
        Ok(found)
    }

    /// Carries out the planner's actions with fenced writes.
    async fn execute(&mut self, actions: Vec<Action>, snapshot: &Snapshot) -> Result<(), Stop> {
        let mut outcomes = Vec::new();
        let mut sent = Vec::new();
        for action in actions {
            match action {
                Action::Halt { reason, foreign: true } => self.store_halt(&reason).await?,
                Action::Halt { reason, foreign: false } => {
                    if self.halted.is_none() {
                        self.halt(reason);
                    }
                    return Ok(());
                }
                Action::Settle { nonce, outcomes: settled } => outcomes.push((nonce, settled)),
                Action::Requeue { nonce, transaction_ids } => self.requeue_foreign(nonce, &transaction_ids).await?,
                Action::Send { nonce } => {
                    if self.send_and_classify(nonce).await? {
                        sent.push(nonce);
                    }
                }
                Action::Bump { nonce } => {
                    if self.bump(nonce, snapshot.base_fee, snapshot.head).await? && self.send_and_classify(nonce).await? {
                        sent.push(nonce);
                    }
                }
            }
        }
        self.mark_sent(&sent).await?;
        self.finalize(outcomes).await
    }

    async fn requeue_foreign(&mut self, nonce: u64, transaction_ids: &[Uuid]) -> Result<(), Stop> {
        if let Some(entry) = self.in_flight.remove(&nonce) {
            for attempt in &entry.attempts {
                self.by_hash.remove(&attempt.hash);
            }
        }
        store::requeue_foreign(&self.db, self.wallet_id, self.epoch, self.next_nonce, transaction_ids, nonce).await?;
        alert::raise(
            &self.db,
            Severity::Critical,
            "foreign_nonce",
            &format!("Nonce {nonce} of hot wallet {} was used by a transaction havend did not send: someone else holds this key. Its {} intents are queued again as their next generation; signing stopped until `havend wallet resume` or a rotation.", self.address, transaction_ids.len()),
            json!({ "wallet": self.address, "nonce": nonce, "transaction_id": transaction_ids.first(), "transaction_ids": transaction_ids }),
        )
        .await;
        Ok(())
    }

    /// Records final outcomes; a batch with reverted intents raises one
    /// alert, and one with burns its holders could not cover another.
    async fn finalize(&mut self, outcomes: Vec<(u64, Vec<Settled>)>) -> Result<(), Stop> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let records: Vec<Settled> = outcomes.iter().flat_map(|(_, o)| o.iter().copied()).collect();
        store::finalize(&self.db, self.wallet_id, self.epoch, self.next_nonce, &records).await?;
        for (nonce, settled) in outcomes {
            if let Some(entry) = self.in_flight.remove(&nonce) {
                for attempt in &entry.attempts {
                    self.by_hash.remove(&attempt.hash);
                }
            }
            let ids = |settlement| settled.iter().filter(|o| o.settlement == settlement).map(|o| o.transaction_id).collect::<Vec<_>>();
            let (failed, unfunded) = (ids(Settlement::Failed), ids(Settlement::Unfunded));
            if let Some(first) = settled.iter().find(|o| o.settlement == Settlement::Failed) {
                alert::raise(
                    &self.db,
                    Severity::Error,
                    "transaction_failed",
                    &format!("{} intents reverted on chain (nonce {nonce} of {}), first {}", failed.len(), self.address, first.transaction_id),
                    json!({ "transaction_id": first.transaction_id, "transaction_ids": failed, "tx_hash": first.mined.hash, "wallet": self.address, "nonce": nonce }),
                )
                .await;
            }
            if !unfunded.is_empty() {
                alert::raise(
                    &self.db,
                    Severity::Warning,
                    "burn_unfunded",
                    &format!("{} burns of nonce {nonce} of {} were skipped on chain: their holders could not cover them; recorded as settled for nothing, the amounts as shortfalls", unfunded.len(), self.address),
                    json!({ "transaction_ids": unfunded, "wallet": self.address, "nonce": nonce }),
                )
                .await;
            }
        }
        Ok(())
    }

    /// Sends the newest attempt at `nonce` and deals with a refusal; true
    /// when the node has it (sent now, or it already had it).
    async fn send_and_classify(&mut self, nonce: u64) -> Result<bool, Stop> {
        let rejection = match self.send(nonce).await? {
            None => return Ok(true),
            Some(rejection) => rejection,
        };
        match rejection {
            SendRejection::AlreadyHandled => return Ok(true),
            // Only the planner replaces: it sees the flag on the next tick.
            SendRejection::Underpriced => return Ok(false),
            SendRejection::InsufficientFunds => self.hold_for_funds().await,
            SendRejection::Misconfigured | SendRejection::FeeCapExceeded | SendRejection::Other => {}
        }
        self.refused_by_node(nonce, rejection).await;
        Ok(false)
    }

    /// A refusal an operator must look at: alerted on the first refusal of
    /// the nonce, retried with backoff; a gas or fee-cap misconfiguration
    /// also holds new work (the replacement is still tried).
    async fn refused_by_node(&mut self, nonce: u64, rejection: SendRejection) {
        let Some(entry) = self.in_flight.get_mut(&nonce) else { return };
        entry.refusals += 1;
        let backoff = sign_plan::refusal_backoff(self.settings.resend_after, entry.refusals);
        entry.retry_at = Some(Instant::now() + backoff);
        let first = entry.refusals == 1;
        if sign_plan::refusal_holds_new_work(rejection) {
            self.refused = Some(format!("{rejection:?}"));
        }
        if first {
            alert::raise(
                &self.db,
                Severity::Error,
                "transaction_refused",
                &format!(
                    "The node refused nonce {nonce} of hot wallet {} ({rejection:?}: {}); retrying with backoff{}",
                    self.address,
                    self.last_refusal,
                    if self.refused.is_some() { ", new work held" } else { "" }
                ),
                json!({ "wallet": self.address, "nonce": nonce, "rejection": format!("{rejection:?}"), "node_message": self.last_refusal, "retry_in_secs": backoff.as_secs() }),
            )
            .await;
        }
    }

    /// Sends the newest attempt at `nonce`; `None` when the node took it,
    /// else how it refused (remembered in `last_refusal` for the alert).
    async fn send(&mut self, nonce: u64) -> Result<Option<SendRejection>, Stop> {
        let (raw, hash) = {
            let newest = self.in_flight[&nonce].newest();
            (newest.raw.clone(), newest.hash)
        };
        let result = self.chain.send_raw(&raw).await;
        self.breaker.report(&result);
        let rejection = match result {
            Ok(()) => None,
            Err(RpcFailure::Transport(error)) => {
                debug!(wallet = %self.address, nonce, tx_hash = %hash, %error, "Broadcast failed in transport");
                return Err(Stop::Rpc);
            }
            Err(RpcFailure::Node { message, .. }) => {
                let rejection = chain::classify_send_rejection(&message);
                if rejection != SendRejection::AlreadyHandled {
                    warn!(wallet = %self.address, nonce, tx_hash = %hash, ?rejection, %message, "Node refused a transaction");
                }
                self.last_refusal = message;
                Some(rejection)
            }
        };
        let entry = self.in_flight.get_mut(&nonce).expect("tracked");
        entry.underpriced = rejection == Some(SendRejection::Underpriced);
        if rejection.is_none_or(|r| r == SendRejection::AlreadyHandled) {
            entry.last_sent = Some(Instant::now());
            entry.retry_at = None;
            if entry.refusals > 0 {
                entry.refusals = 0;
                self.refused = None;
            }
        }
        Ok(rejection)
    }

    async fn mark_sent(&mut self, nonces: &[u64]) -> Result<(), Stop> {
        let ids: Vec<Uuid> = nonces
            .iter()
            .filter_map(|n| self.in_flight.get(n))
            .filter(|f| !f.broadcast)
            .flat_map(InFlight::ids)
            .collect();
        store::mark_broadcast(&self.db, self.wallet_id, self.epoch, self.next_nonce, &ids).await?;
        for nonce in nonces {
            if let Some(entry) = self.in_flight.get_mut(nonce) {
                entry.broadcast = true;
            }
        }
        Ok(())
    }

    /// A new attempt at `nonce` with bumped fees, signed with the chain at
    /// `head` and written before it is sent. False when this wallet may not
    /// sign (halted).
    async fn bump(&mut self, nonce: u64, base_fee: u128, head: u64) -> Result<bool, Stop> {
        if self.halted.is_some() {
            return Ok(false);
        }
        let entry = &self.in_flight[&nonce];
        let newest = entry.newest();
        let fees = self.settings.fee_policy.bump(newest.fees, base_fee);
        let request = TxRequest {
            chain_id: self.settings.chain_id,
            token: self.settings.token,
            nonce,
            gas_limit: newest.gas_limit,
            fees,
            // Exactly the same entries: only the fees change.
            input: chain::encode_call(self.settings.token_abi, entry.kind, &entry.entries),
        };
        let signed = chain::sign(&self.signer, &request).map_err(|e| Stop::Db(format!("signing failed: {e}")))?;
        let attempt = NewAttempt {
            transaction_ids: entry.ids(),
            kind: entry.kind,
            nonce,
            attempt: newest.number + 1,
            hash: signed.hash,
            raw: signed.raw.clone(),
            fees,
            gas_limit: newest.gas_limit,
            sent_block: head,
        };
        match store::add_attempt(&self.db, self.wallet_id, self.epoch, self.next_nonce, &attempt).await {
            Ok(()) => {}
            Err(StoreError::NotAllowed(status)) => {
                self.halted = Some(status);
                return Ok(false);
            }
            Err(error) => return Err(error.into()),
        }
        info!(wallet = %self.address, nonce, tx_hash = %signed.hash, max_fee = fees.max_fee_per_gas, "Replacing an underpriced transaction with bumped fees");
        self.by_hash.insert(signed.hash, nonce);
        let entry = self.in_flight.get_mut(&nonce).expect("tracked");
        entry.attempts.push(Attempt { number: attempt.attempt, hash: signed.hash, raw: signed.raw, fees, gas_limit: attempt.gas_limit });
        Ok(true)
    }

    async fn check_balance(&mut self) -> Result<(), Stop> {
        let balance = self.rpc(self.chain.balance(self.address)).await?;
        let low = balance < self.settings.min_balance;
        if low && !self.held {
            self.hold_for_funds().await;
        } else if !low && self.held {
            self.held = false;
            alert::raise(&self.db, Severity::Info, "low_balance", &format!("Hot wallet {} is funded again; work resumes", self.address), json!({ "wallet": self.address, "balance_wei": balance.to_string() })).await;
        }
        Ok(())
    }

    async fn hold_for_funds(&mut self) {
        if self.held {
            return;
        }
        self.held = true;
        alert::raise(
            &self.db,
            Severity::Warning,
            "low_balance",
            &format!("Hot wallet {} is low on gas funds; new work is held until it is topped up", self.address),
            json!({ "wallet": self.address, "min_balance_wei": self.settings.min_balance.to_string() }),
        )
        .await;
    }

    /// Signs queued intents into free window slots as [`sign_plan::next`]
    /// decides, writes them ahead (with `head`, the block they are signed
    /// at), sends them; `Ok(true)` when more queued work is waiting.
    async fn sign_new(&mut self, head: u64) -> Result<bool, Stop> {
        let mut seen = Seen { in_flight: self.in_flight.len(), ..Seen::default() };
        let (intents, more) = loop {
            match sign_plan::next(self.settings.max_in_flight, self.settings.batch_size, &seen) {
                SignStep::Stop { more } => return Ok(more),
                SignStep::Sign { intents, more } => break (intents, more),
                SignStep::ReadQueue { limit, hold_mints } => {
                    let queued = store::queued(&self.db, self.wallet_id, limit, hold_mints).await?;
                    seen.queued = Some(queued.into_iter().map(Queued::from).collect());
                    seen.mints_left_out = hold_mints;
                }
                SignStep::ReadPause => seen.paused = Some(crate::ledger::pause::is_paused(&self.db).await?),
                SignStep::ReadGasHold => seen.gas_hold = Some(self.read_gas_hold().await?),
                SignStep::DecideReversals(pairs) => seen.reversals = Some(self.decide_reversals(&pairs).await?),
            }
        };
        let start = self.next_nonce;
        let (batch, entries) = self.sign_batch(start, &intents, head).await?;
        if batch.is_empty() {
            return Ok(more);
        }
        match store::reserve(&self.db, self.wallet_id, self.epoch, start, &batch).await {
            Ok(()) => {}
            // The queue changed under us (rotation, cancellation): nothing was reserved; next tick.
            Err(StoreError::NotAllowed(reason)) => {
                debug!(wallet = %self.address, %reason, "Batch not reserved");
                return Ok(false);
            }
            Err(error) => return Err(error.into()),
        }
        self.next_nonce = start + batch.len() as u64;
        debug!(wallet = %self.address, nonce = start, transactions = batch.len(), intents = intents.len(), "Batches written ahead");
        // Crash-test hooks (compiled in only with the `test-hooks` feature).
        fail::fail_point!("wallet::after_write_ahead", |_| std::process::abort());
        for (nonce, entry) in entries {
            for attempt in &entry.attempts {
                self.by_hash.insert(attempt.hash, nonce);
            }
            self.in_flight.insert(nonce, entry);
        }
        self.send_batch(&batch).await?;
        Ok(more)
    }

    /// The gas spike hold as stored now; a change is logged.
    async fn read_gas_hold(&mut self) -> Result<bool, Stop> {
        let hold = gas_hold::is_held(&self.db, chrono::Utc::now()).await?;
        if hold != self.gas_hold {
            info!(wallet = %self.address, hold, "Queued mints {} a gas spike", if hold { "wait out" } else { "no longer wait for" });
            self.gas_hold = hold;
        }
        Ok(hold)
    }

    /// Decides queued `(reversal, original)` pairs against their originals
    /// (a still queued or held mint cancels both, a failed or cancelled one
    /// the reversal, a mint in flight makes the reversal wait) and reads the
    /// ready reversals again, since one may have been clipped to what its user holds.
    async fn decide_reversals(&self, pairs: &[(Uuid, Uuid)]) -> Result<Reversals, Stop> {
        let decisions: HashMap<Uuid, ReversalDecision> =
            store::decide_reversals(&self.db, self.wallet_id, self.epoch, self.next_nonce, pairs).await?.into_iter().collect();
        let cancelled = decisions.values().filter(|d| **d == ReversalDecision::Cancelled).count();
        if cancelled > 0 {
            debug!(wallet = %self.address, count = cancelled, "Reversals cancelled with their unmade mints");
        }
        let ready: Vec<Uuid> = decisions.iter().filter(|(_, d)| **d == ReversalDecision::Ready).map(|(id, _)| *id).collect();
        let reloaded = if ready.is_empty() {
            HashMap::new()
        } else {
            use sea_orm::{ColumnTrait, QueryFilter};
            entity::transactions::Entity::find()
                .filter(entity::transactions::Column::Id.is_in(ready))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|t| (t.id, Queued::from(t)))
                .collect()
        };
        Ok(Reversals { decisions, reloaded })
    }

    /// Batches `intents` into consecutive nonces from `start` (as many as
    /// the window has free) and signs them at the current base fee: the
    /// attempts to write ahead and the batches to track.
    async fn sign_batch(&self, start: u64, intents: &[Queued], head: u64) -> Result<(Vec<NewAttempt>, Vec<(u64, InFlight)>), Stop> {
        let user_ids: Vec<Uuid> = intents.iter().map(|t| t.user_id).collect();
        let accounts = super::accounts_of(&self.db, &user_ids).await?;
        let base_fee = self.rpc(self.chain.base_fee()).await?;
        let fees = self.settings.fee_policy.initial(base_fee);
        let free = self.settings.max_in_flight.saturating_sub(self.in_flight.len());
        let assigned =
            sign_plan::assign(start, intents, &accounts, self.settings.gas, self.settings.batch_size, free).map_err(|e| Stop::Db(e.to_string()))?;
        let mut batch = Vec::with_capacity(assigned.len());
        let mut entries = Vec::with_capacity(assigned.len());
        for a in assigned {
            let request = TxRequest {
                chain_id: self.settings.chain_id,
                token: self.settings.token,
                nonce: a.nonce,
                gas_limit: a.gas_limit,
                fees,
                input: chain::encode_call(self.settings.token_abi, a.kind, &a.entries),
            };
            let signed = chain::sign(&self.signer, &request).map_err(|e| Stop::Db(format!("signing failed: {e}")))?;
            batch.push(NewAttempt {
                transaction_ids: a.entries.iter().map(|e| e.transaction_id).collect(),
                kind: a.kind,
                nonce: a.nonce,
                attempt: 0,
                hash: signed.hash,
                raw: signed.raw.clone(),
                fees,
                gas_limit: a.gas_limit,
                sent_block: head,
            });
            let attempt = Attempt { number: 0, hash: signed.hash, raw: signed.raw, fees, gas_limit: a.gas_limit };
            entries.push((a.nonce, InFlight::signed(a, attempt)));
        }
        Ok((batch, entries))
    }

    /// Broadcasts a batch just written ahead, in nonce order, without
    /// waiting for receipts, and records what the node took.
    async fn send_batch(&mut self, batch: &[NewAttempt]) -> Result<(), Stop> {
        let mut sent = Vec::with_capacity(batch.len());
        for attempt in batch {
            fail::fail_point!("wallet::mid_broadcast", |_| std::process::abort());
            match sign_plan::after_send(self.send(attempt.nonce).await.map_err(|_| ())) {
                AfterSend::Sent => sent.push(attempt.nonce),
                AfterSend::HoldForFunds => {
                    self.hold_for_funds().await;
                    break;
                }
                AfterSend::LeaveToPlanner => {}
                AfterSend::Refused(rejection) => self.refused_by_node(attempt.nonce, rejection).await,
                AfterSend::StopSending => break,
            }
        }
        fail::fail_point!("wallet::after_broadcast", |_| std::process::abort());
        self.mark_sent(&sent).await
    }

    fn halt(&mut self, reason: String) {
        warn!(wallet = %self.address, %reason, "Wallet stops signing");
        self.halted = Some(reason);
    }

    async fn fenced_out(&mut self) {
        self.halted = Some("fenced out".into());
        alert::raise(
            &self.db,
            Severity::Error,
            "wallet_fenced",
            &format!("Hot wallet {} was taken over by another daemon; {} stops signing for it. Each hot wallet must be named by one daemon only.", self.address, self.owner),
            json!({ "wallet": self.address, "owner": self.owner, "epoch": self.epoch }),
        )
        .await;
    }
}
