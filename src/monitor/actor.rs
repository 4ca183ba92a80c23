//! The monitor actor: every `monitor.interval_secs` it observes what is in
//! flight and the chain, raises what [`super::plan`] finds and writes the gas
//! hold; every [`SAMPLE_INTERVAL`] it samples the database gauges.

use std::time::Duration;

use chrono::Utc;
use entity::{transactions, wallets};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde_json::json;

use super::plan::{Finding, Memory, Observation, PendingTx, WalletSample, hold_until, plan, should_write_hold};
use super::sample::{Published, SAMPLE_INTERVAL, sample};
use crate::alert::{self, Severity};
use crate::chain::ChainClient;
use crate::config::{ConfigHandle, MonitorConfig};
use crate::ledger::{BROADCAST, SIGNED, gas_hold};

/// Messages the monitor handles.
pub enum MonitorMsg {
    /// Look now (and schedule the next look).
    Tick,
    /// Sample the database gauges for `/metrics` (every [`SAMPLE_INTERVAL`]).
    Sample,
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
    /// Which gauge labels have been published, so a vanished one drops to 0.
    published: Published,
}

impl Actor for Monitor {
    type Msg = MonitorMsg;
    type State = MonitorState;
    type Arguments = MonitorArgs;

    async fn pre_start(&self, myself: ActorRef<MonitorMsg>, args: MonitorArgs) -> Result<MonitorState, ActorProcessingErr> {
        let interval = Duration::from_secs(args.config.load().monitor.interval_secs);
        myself.send_after(interval, || MonitorMsg::Tick);
        // The first sample comes at once, as it did when a task outside the tree took it.
        myself.send_interval(SAMPLE_INTERVAL, || MonitorMsg::Sample);
        myself.send_message(MonitorMsg::Sample)?;
        Ok(MonitorState { args, memory: Memory::default(), published: Published::default() })
    }

    async fn handle(&self, myself: ActorRef<MonitorMsg>, msg: MonitorMsg, state: &mut MonitorState) -> Result<(), ActorProcessingErr> {
        match msg {
            MonitorMsg::Tick => state.look(&myself).await,
            MonitorMsg::Sample => sample(&state.args.db, &mut state.published).await,
        }
        Ok(())
    }
}

impl MonitorState {
    /// One look: observe, raise what the plan finds, write the gas hold, and
    /// schedule the next look.
    async fn look(&mut self, myself: &ActorRef<MonitorMsg>) {
        let settings = self.args.config.load().monitor.clone();
        match self.observe().await {
            Ok(observation) => {
                for finding in plan(&observation, &mut self.memory, &settings) {
                    raise(&self.args.db, finding, &settings).await;
                }
                if let Some(base_fee) = observation.base_fee {
                    ::metrics::gauge!(crate::telemetry::metrics::GAS_BASE_FEE).set(base_fee as f64);
                }
                let desired = hold_until(&self.memory, &settings);
                if should_write_hold(&self.memory, desired, observation.base_fee.is_some()) {
                    match gas_hold::set_until(&self.args.db, desired, "monitor").await {
                        Ok(()) => {
                            self.memory.hold_recorded(desired);
                            let holding = desired.is_some_and(|until| observation.now < until);
                            ::metrics::gauge!(crate::telemetry::metrics::GAS_HOLD).set(if holding { 1.0 } else { 0.0 });
                        }
                        Err(error) => tracing::warn!(%error, "Transaction monitor could not write the gas hold; trying again at the next look"),
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "Transaction monitor could not read the ledger"),
        }
        myself.send_after(Duration::from_secs(settings.interval_secs), || MonitorMsg::Tick);
    }

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

async fn raise(db: &DatabaseConnection, finding: Finding, settings: &MonitorConfig) {
    let factor = settings.gas_spike_factor;
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
            let hold = if settings.gas_hold {
                format!("; new mints wait until it falls back, at most {} s (burns and replacements go)", settings.gas_hold_max_secs)
            } else {
                String::new()
            };
            let message = format!("Base fee {base_fee} wei is over {factor}x its baseline of {baseline} wei{hold}");
            let details = json!({ "base_fee_wei": base_fee.to_string(), "baseline_wei": baseline.to_string(), "mints_held": settings.gas_hold, "hold_max_secs": settings.gas_hold_max_secs });
            alert::raise(db, Severity::Warning, "gas_price_spike", &message, details).await;
        }
        Finding::GasNormal { base_fee, baseline } => {
            let resumed = if settings.gas_hold { "; held mints go now" } else { "" };
            let message = format!("Base fee {base_fee} wei is back under {factor}x its baseline of {baseline} wei{resumed}");
            alert::raise(db, Severity::Info, "gas_price_spike", &message, json!({ "base_fee_wei": base_fee.to_string(), "baseline_wei": baseline.to_string() })).await;
        }
        Finding::GasHoldLapsed { since, max_secs } => {
            let message = format!("The gas spike since {} has outlasted the {max_secs} s hold; held mints go now at the higher fee", since.to_rfc3339());
            alert::raise(db, Severity::Warning, "gas_price_spike", &message, json!({ "since": since, "hold_max_secs": max_secs })).await;
        }
    }
}
