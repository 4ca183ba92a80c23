//! The transaction monitor (SPEC section 4): every `monitor.interval_secs`
//! it looks at what is in flight and at the chain, and raises
//! `transaction_pending` (an intent signed longer than the threshold ago and
//! not final, or a wallet whose chain nonce has not moved for several looks
//! while it has work in flight) and `gas_price_spike` (the base fee above
//! `gas_spike_factor` × its moving baseline). It observes and alerts only:
//! replacing a transaction stays the wallet planner's decision.
//!
//! What to raise is decided by [`plan`], a pure function over one
//! [`Observation`] and the monitor's [`Memory`]; the actor gathers and raises.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{transactions, wallets};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::alert::{self, Severity};
use crate::config::{ConfigHandle, MonitorConfig};
use crate::ledger::{BROADCAST, QUEUED, SIGNED};
use crate::chain::ChainClient;

/// An intent on its way to the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTx {
    /// The intent.
    pub id: Uuid,
    /// Its hot wallet.
    pub wallet: Uuid,
    /// When it was signed (its last status change).
    pub since: DateTime<Utc>,
}

/// One hot wallet as seen this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletSample {
    /// The wallet.
    pub wallet: Uuid,
    /// Its mined nonce, when the chain answered.
    pub chain_nonce: Option<u64>,
    /// Intents it has in flight.
    pub in_flight: usize,
}

/// What the monitor saw in one look.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// When.
    pub now: DateTime<Utc>,
    /// Intents signed or broadcast.
    pub pending: Vec<PendingTx>,
    /// Hot wallets.
    pub wallets: Vec<WalletSample>,
    /// The latest block's base fee in wei, when the chain answered.
    pub base_fee: Option<u128>,
}

/// What the monitor remembers between looks.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    alerted: HashSet<Uuid>,
    nonces: HashMap<Uuid, (u64, u32, bool)>,
    baseline: Option<u128>,
    spiking: bool,
}

/// Something to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// An intent has been in flight longer than the threshold.
    Pending { id: Uuid, wallet: Uuid, age_secs: i64 },
    /// A wallet's chain nonce has not moved for `looks` looks while it has work in flight.
    Stalled { wallet: Uuid, nonce: u64, looks: u32, in_flight: usize },
    /// The base fee is over the factor × baseline.
    GasSpike { base_fee: u128, baseline: u128 },
    /// The base fee is back under it.
    GasNormal { base_fee: u128, baseline: u128 },
}

/// Decides what to raise from one look; each condition is raised once until it clears.
pub fn plan(observation: &Observation, memory: &mut Memory, settings: &MonitorConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    let still_pending: HashSet<Uuid> = observation.pending.iter().map(|p| p.id).collect();
    memory.alerted.retain(|id| still_pending.contains(id));
    for tx in &observation.pending {
        let age = (observation.now - tx.since).num_seconds();
        if age >= settings.pending_after_secs as i64 && memory.alerted.insert(tx.id) {
            findings.push(Finding::Pending { id: tx.id, wallet: tx.wallet, age_secs: age });
        }
    }
    for sample in &observation.wallets {
        let Some(nonce) = sample.chain_nonce else { continue };
        // The first look only records the nonce; the looks after it that find it unchanged count.
        let Some(entry) = memory.nonces.get_mut(&sample.wallet) else {
            memory.nonces.insert(sample.wallet, (nonce, 0, false));
            continue;
        };
        if nonce != entry.0 || sample.in_flight == 0 {
            *entry = (nonce, 0, false);
            continue;
        }
        entry.1 += 1;
        if entry.1 >= settings.stalled_looks && !entry.2 {
            entry.2 = true;
            findings.push(Finding::Stalled { wallet: sample.wallet, nonce, looks: entry.1, in_flight: sample.in_flight });
        }
    }
    if let Some(base_fee) = observation.base_fee {
        let baseline = *memory.baseline.get_or_insert(base_fee.max(1));
        let spiking = base_fee > baseline.saturating_mul(u128::from(settings.gas_spike_factor));
        if spiking && !memory.spiking {
            findings.push(Finding::GasSpike { base_fee, baseline });
        } else if !spiking && memory.spiking {
            findings.push(Finding::GasNormal { base_fee, baseline });
        }
        memory.spiking = spiking;
        // The baseline follows the fee (an exponential moving average over
        // about 8 looks) but not while it spikes, so a long spike still counts as one.
        if !spiking {
            memory.baseline = Some((baseline * 7 + base_fee).div_ceil(8).max(1));
        }
    }
    findings
}

/// In-flight work at a glance, for operators and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Intents by status.
    pub by_status: HashMap<String, u64>,
    /// The oldest intent in flight and since when.
    pub oldest_pending: Option<(Uuid, DateTime<Utc>)>,
    /// Per hot wallet: its address, status, next nonce and queued backlog.
    pub wallets: Vec<serde_json::Value>,
}

/// The summary, from the database.
pub async fn summary(db: &impl ConnectionTrait) -> Result<Summary, DbErr> {
    let mut by_status = HashMap::new();
    for status in ["queued", "held", "signed", "broadcast", "confirmed", "failed", "cancelled"] {
        by_status.insert(status.to_owned(), transactions::Entity::find().filter(transactions::Column::Status.eq(status)).count(db).await?);
    }
    let oldest = transactions::Entity::find()
        .filter(transactions::Column::Status.is_in([SIGNED, BROADCAST]))
        .order_by_asc(transactions::Column::UpdatedAt)
        .one(db)
        .await?
        .map(|t| (t.id, t.updated_at));
    let mut summary_wallets = Vec::new();
    for wallet in crate::custody::list_hot(db).await? {
        let backlog = transactions::Entity::find()
            .filter(transactions::Column::HotWalletId.eq(wallet.id))
            .filter(transactions::Column::Status.eq(QUEUED))
            .count(db)
            .await?;
        summary_wallets.push(json!({ "id": wallet.id, "address": wallet.address, "status": wallet.status, "next_nonce": wallet.next_nonce, "backlog": backlog }));
    }
    Ok(Summary { by_status, oldest_pending: oldest, wallets: summary_wallets })
}

/// Messages the monitor handles.
pub enum MonitorMsg {
    /// Look now (and schedule the next look).
    Tick,
}

/// The monitor actor.
pub struct Monitor;

/// What the monitor starts with.
pub struct MonitorArgs {
    /// The ledger.
    pub db: DatabaseConnection,
    /// Thresholds and interval, read each look.
    pub config: ConfigHandle,
    /// The chain, when configured.
    pub chain: Option<ChainClient>,
}

/// The monitor's state.
pub struct MonitorState {
    args: MonitorArgs,
    memory: Memory,
}

impl Actor for Monitor {
    type Msg = MonitorMsg;
    type State = MonitorState;
    type Arguments = MonitorArgs;

    async fn pre_start(&self, myself: ActorRef<MonitorMsg>, args: MonitorArgs) -> Result<MonitorState, ActorProcessingErr> {
        let interval = Duration::from_secs(args.config.load().monitor.interval_secs);
        myself.send_after(interval, || MonitorMsg::Tick);
        Ok(MonitorState { args, memory: Memory::default() })
    }

    async fn handle(&self, myself: ActorRef<MonitorMsg>, _msg: MonitorMsg, state: &mut MonitorState) -> Result<(), ActorProcessingErr> {
        let settings = state.args.config.load().monitor.clone();
        match state.observe().await {
            Ok(observation) => {
                for finding in plan(&observation, &mut state.memory, &settings) {
                    raise(&state.args.db, finding).await;
                }
            }
            Err(error) => tracing::warn!(%error, "Transaction monitor could not read the ledger"),
        }
        myself.send_after(Duration::from_secs(settings.interval_secs), || MonitorMsg::Tick);
        Ok(())
    }
}

impl MonitorState {
    async fn observe(&self) -> Result<Observation, DbErr> {
        let db = &self.args.db;
        let pending: Vec<PendingTx> = transactions::Entity::find()
            .filter(transactions::Column::Status.is_in([SIGNED, BROADCAST]))
            .all(db)
            .await?
            .into_iter()
            .map(|t| PendingTx { id: t.id, wallet: t.hot_wallet_id, since: t.updated_at })
            .collect();
        let chain = self.args.chain.as_ref();
        let mut samples = Vec::new();
        for wallet in wallets::Entity::find().filter(wallets::Column::Kind.eq(crate::custody::HOT)).all(db).await? {
            let in_flight = pending.iter().filter(|p| p.wallet == wallet.id).count();
            let chain_nonce = match (chain, wallet.address.parse()) {
                (Some(chain), Ok(address)) if in_flight > 0 => chain.nonce_at(address, alloy::eips::BlockId::latest()).await.ok(),
                _ => None,
            };
            samples.push(WalletSample { wallet: wallet.id, chain_nonce, in_flight });
        }
        let base_fee = match chain {
            Some(chain) => chain.base_fee().await.ok(),
            None => None,
        };
        Ok(Observation { now: Utc::now(), pending, wallets: samples, base_fee })
    }
}

async fn raise(db: &DatabaseConnection, finding: Finding) {
    match finding {
        Finding::Pending { id, wallet, age_secs } => {
            let message = format!("Intent {id} has been on its way to the chain for {age_secs} s");
            alert::raise(db, Severity::Warning, "transaction_pending", &message, json!({ "transaction_id": id, "wallet": wallet, "age_secs": age_secs })).await;
        }
        Finding::Stalled { wallet, nonce, looks, in_flight } => {
            let message = format!("Hot wallet {wallet}'s chain nonce has stayed at {nonce} for {looks} looks with {in_flight} transactions in flight");
            alert::raise(db, Severity::Error, "transaction_pending", &message, json!({ "wallet": wallet, "nonce": nonce, "looks": looks, "in_flight": in_flight })).await;
        }
        Finding::GasSpike { base_fee, baseline } => {
            let message = format!("Base fee {base_fee} wei is over twice its baseline of {baseline} wei");
            alert::raise(db, Severity::Warning, "gas_price_spike", &message, json!({ "base_fee_wei": base_fee.to_string(), "baseline_wei": baseline.to_string() })).await;
        }
        Finding::GasNormal { base_fee, baseline } => {
            let message = format!("Base fee {base_fee} wei is back under twice its baseline of {baseline} wei");
            alert::raise(db, Severity::Info, "gas_price_spike", &message, json!({ "base_fee_wei": base_fee.to_string(), "baseline_wei": baseline.to_string() })).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn settings() -> MonitorConfig {
        MonitorConfig { interval_secs: 60, pending_after_secs: 300, stalled_looks: 3, gas_spike_factor: 2 }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn an_intent_pending_past_the_threshold_is_raised_once() {
        let mut memory = Memory::default();
        let tx = PendingTx { id: Uuid::from_u128(1), wallet: Uuid::from_u128(9), since: at(0) };
        let look = |now| Observation { now: at(now), pending: vec![tx.clone()], ..Observation::default() };
        assert!(plan(&look(299), &mut memory, &settings()).is_empty());
        assert_eq!(plan(&look(300), &mut memory, &settings()), vec![Finding::Pending { id: tx.id, wallet: tx.wallet, age_secs: 300 }]);
        assert!(plan(&look(360), &mut memory, &settings()).is_empty(), "once");
    }

    #[test]
    fn a_nonce_that_does_not_move_with_work_in_flight_is_a_stall() {
        let mut memory = Memory::default();
        let wallet = Uuid::from_u128(9);
        let look = |nonce, in_flight| Observation { wallets: vec![WalletSample { wallet, chain_nonce: Some(nonce), in_flight }], ..Observation::default() };
        for _ in 0..3 {
            assert!(plan(&look(5, 2), &mut memory, &settings()).is_empty());
        }
        assert_eq!(plan(&look(5, 2), &mut memory, &settings()), vec![Finding::Stalled { wallet, nonce: 5, looks: 3, in_flight: 2 }]);
        assert!(plan(&look(5, 2), &mut memory, &settings()).is_empty(), "once per stall");
        assert!(plan(&look(6, 2), &mut memory, &settings()).is_empty(), "the nonce moved");
        let mut idle = Memory::default();
        for _ in 0..10 {
            assert!(plan(&look(5, 0), &mut idle, &settings()).is_empty(), "nothing in flight is no stall");
        }
    }

    #[test]
    fn a_spike_over_twice_the_baseline_is_raised_and_cleared() {
        let mut memory = Memory::default();
        let look = |fee| Observation { base_fee: Some(fee), ..Observation::default() };
        assert!(plan(&look(100), &mut memory, &settings()).is_empty());
        assert!(plan(&look(200), &mut memory, &settings()).is_empty(), "twice is not over twice");
        let spike = plan(&look(400), &mut memory, &settings());
        assert!(matches!(spike.as_slice(), [Finding::GasSpike { base_fee: 400, .. }]), "{spike:?}");
        assert!(plan(&look(500), &mut memory, &settings()).is_empty(), "one spike, one alert");
        assert!(matches!(plan(&look(150), &mut memory, &settings()).as_slice(), [Finding::GasNormal { .. }]));
    }

    proptest! {
        /// Whatever the fees, spike and normal alternate: never two spikes without a normal between.
        #[test]
        fn spike_and_normal_alternate(fees in proptest::collection::vec(1u128..10_000, 1..60)) {
            let mut memory = Memory::default();
            let mut spiking = false;
            for fee in fees {
                for finding in plan(&Observation { base_fee: Some(fee), ..Observation::default() }, &mut memory, &settings()) {
                    match finding {
                        Finding::GasSpike { .. } => { prop_assert!(!spiking); spiking = true; }
                        Finding::GasNormal { .. } => { prop_assert!(spiking); spiking = false; }
                        _ => {}
                    }
                }
            }
        }
    }
}
