//! The root supervisor: starts the daemon's actors, restarts the intake actor,
//! the processors, the scheduler, the monitor, the alert delivery actor, the
//! config actor and the chain health refresher when they fail (each within
//! its own [`RestartBudget`], kept per [`Child`] in one table) and publishes
//! the replacements where the listener and the daemon look. The breaker and
//! the wallet registry have no fallible state of their own; if either fails,
//! the supervisor fails upward and the process exits for systemd to restart it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::alert::{AlertActor, AlertArgs, AlertMsg};
use crate::restart::{MAX_RESTARTS, RESTART_WINDOW, RestartBudget};
use crate::slots::{ChainHandles, ChainSlot};
use crate::breaker::{BreakerActor, BreakerArgs, BreakerConfig, BreakerHandle, BreakerState};
use crate::chain::ChainClient;
use crate::chain_health::{ChainHealthActor, ChainHealthArgs, ChainHealthMsg};
use crate::reload::{ConfigActor, ConfigArgs, ConfigMsg, ReloadHandle};
use crate::config::{ConfigHandle, ConfigSource};
use crate::custody::MasterKeys;
use crate::db::WriteGate;
use crate::intake::{IntakeActor, IntakeArgs, IntakeMsg, IntakeSlot};
use crate::rewards::{Processor, ProcessorArgs, ProcessorMsg, ProcessorSlot, WalletNudge};
use crate::monitor::{Monitor, MonitorArgs, MonitorMsg};
use crate::schedule::{Scheduler, SchedulerArgs, SchedulerMsg};
use crate::wallet::{RegistryArgs, RegistryMsg, WalletDeps, WalletRegistry, WalletSettings};

/// How long a child gets to stop on shutdown.
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages the root supervisor handles (it only reacts to its children).
pub enum RootMsg {}

/// The root of the supervision tree.
pub struct RootSupervisor;

/// What the chain side of the tree needs to start.
pub struct ChainStart {
    /// RPC client.
    pub client: ChainClient,
    /// The token contract.
    pub token: Address,
    /// Master keys for the wallet actors.
    pub keys: MasterKeys,
    /// Hot wallets this daemon signs for.
    pub wallets: Vec<Uuid>,
    /// Wallet behaviour.
    pub settings: WalletSettings,
    /// RPC breaker thresholds.
    pub breaker: BreakerConfig,
    /// This daemon's name.
    pub owner: String,
}

/// What the root supervisor is started with.
pub struct RootArgs {
    /// The database every child uses.
    pub db: DatabaseConnection,
    /// The shared config snapshot.
    pub config: ConfigHandle,
    /// Where the current intake actor is published for the listener.
    pub intake_slot: IntakeSlot,
    /// The chain side, when configured.
    pub chain: Option<ChainStart>,
    /// Where the chain handles are published.
    pub chain_slot: ChainSlot,
    /// Where the processors are published (the intake actor nudges them).
    pub processor_slot: ProcessorSlot,
    /// Master keys for the processors (new users' custodial wallets), if any.
    pub keys: Option<MasterKeys>,
    /// Where the config is reloaded from; none → no config actor.
    pub reload: Option<ConfigSource>,
    /// Where the config actor and its last result are published.
    pub reload_handle: Arc<ReloadHandle>,
}

/// The children the root restarts when they fail, each within its own
/// [`RestartBudget`]. Each handles its own errors, so a failure is a panic;
/// what a failed child held (claims, leases) lapses and is taken again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Child {
    /// Group-commits webhooks; unpublished while it restarts, so intake answers 503.
    Intake,
    /// One of the reward processors.
    Processor,
    /// The scheduled jobs.
    Scheduler,
    /// The transaction monitor.
    Monitor,
    /// The config reload actor; the snapshot it published stays in force.
    Config,
    /// Alert delivery.
    Alerts,
    /// The `/health` chain refresher; `/health` reports its last reading meanwhile.
    ChainHealth,
}

impl Child {
    /// The `actor` field of its log lines, what the log calls it, and what
    /// the supervisor's own failure names.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Child::Intake => ("intake", "Intake actor", "intake actor"),
            Child::Processor => ("processor", "Processor", "processor"),
            Child::Scheduler => ("scheduler", "Scheduler", "scheduler"),
            Child::Monitor => ("monitor", "Transaction monitor", "monitor"),
            Child::Config => ("config", "Config actor", "config actor"),
            Child::Alerts => ("alerts", "Alert delivery", "alert delivery"),
            Child::ChainHealth => ("chain_health", "Chain health refresher", "chain health refresher"),
        }
    }
}

/// The supervisor's children and restart history.
pub struct RootState {
    db: DatabaseConnection,
    /// The intake's and processors' turns at SQLite's write lock.
    gate: WriteGate,
    config: ConfigHandle,
    intake_slot: IntakeSlot,
    intake: ActorRef<IntakeMsg>,
    chain_slot: ChainSlot,
    processor_slot: ProcessorSlot,
    keys: Option<MasterKeys>,
    scheduler: ActorRef<SchedulerMsg>,
    monitor: ActorRef<MonitorMsg>,
    monitor_args: (DatabaseConnection, Option<ChainClient>),
    /// The config actor, when the config is reloadable.
    config_actor: Option<ActorRef<ConfigMsg>>,
    /// Where a replacement config actor reloads from.
    reload: Option<ConfigSource>,
    /// Where the config actor is published for [`crate::Daemon::reload`].
    reload_handle: Arc<ReloadHandle>,
    /// Delivers alerts from the table.
    alerts: ActorRef<AlertMsg>,
    /// The chain health refresher and what restarts it (with a chain only).
    chain_health: Option<(ActorRef<ChainHealthMsg>, ChainHealthArgs)>,
    /// Breaker and registry, stopped in reverse order on shutdown.
    others: Vec<ActorCell>,
    /// Each child's restarts within the window (made on its first failure).
    restarts: HashMap<Child, RestartBudget>,
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(&self, myself: ActorRef<RootMsg>, args: RootArgs) -> Result<RootState, ActorProcessingErr> {
        let gate = WriteGate::for_connection(&args.db);
        let intake = spawn_intake(&myself, &args.db, &gate, &args.config, &args.processor_slot).await?;
        args.intake_slot.store(Some(Arc::new(intake.clone())));
        let mut others = Vec::new();
        let mut chain_health = None;
        if let Some(chain) = args.chain {
            let (state_tx, state_rx) = watch::channel(BreakerState::Closed);
            let breaker_args = BreakerArgs { name: "rpc".into(), config: chain.breaker, state_tx, db: args.db.clone() };
            let (breaker, _) = Actor::spawn_linked(None, BreakerActor, breaker_args, myself.get_cell()).await?;
            others.push(breaker.get_cell());
            let breaker = BreakerHandle::new(breaker, state_rx);
            let deps = WalletDeps {
                owner: chain.owner,
                db: args.db.clone(),
                keys: chain.keys,
                chain: chain.client.clone(),
                breaker: breaker.clone(),
                settings: chain.settings,
            };
            let registry_args = RegistryArgs { wallets: chain.wallets, deps };
            let (registry, _) = Actor::spawn_linked(None, WalletRegistry, registry_args, myself.get_cell()).await?;
            others.push(registry.get_cell());
            let health_args = ChainHealthArgs { client: chain.client.clone(), token: chain.token, breaker: breaker.clone(), slot: crate::chain_health::empty_slot() };
            let health = spawn_chain_health(&myself, &health_args).await?;
            let handles = ChainHandles { client: chain.client, token: chain.token, breaker, registry, health: health_args.slot.clone() };
            args.chain_slot.store(Some(Arc::new(handles)));
            chain_health = Some((health, health_args));
        }
        let mut processors = Vec::new();
        let processing = args.config.load().processor.clone();
        if !processing.enabled {
            info!("Processors disabled (processor.enabled = false): this daemon only stores webhooks");
        }
        for _ in 0..if processing.enabled { processing.workers } else { 0 } {
            processors.push(spawn_processor(&myself, &args.db, &gate, &args.config, &args.keys, &args.chain_slot).await?);
        }
        args.processor_slot.store(Arc::new(processors));
        let scheduler = spawn_scheduler(&myself, &args.db, &args.config, &args.keys, &args.processor_slot).await?;
        scheduler.cast(SchedulerMsg::StakingAtStart)?;
        let monitor_chain = args.chain_slot.load().as_ref().map(|chain| chain.client.clone());
        let monitor = spawn_monitor(&myself, &args.db, &args.config, monitor_chain.clone()).await?;
        let monitor_args = (args.db.clone(), monitor_chain);
        let config_actor = match &args.reload {
            Some(source) => Some(spawn_config(&myself, source, &args.config, &args.db, &args.reload_handle).await?),
            None => None,
        };
        let alerts = spawn_alerts(&myself, &args.db, &args.config).await?;
        Ok(RootState {
            db: args.db,
            gate,
            config: args.config,
            intake_slot: args.intake_slot,
            intake,
            chain_slot: args.chain_slot,
            processor_slot: args.processor_slot,
            keys: args.keys,
            scheduler,
            monitor,
            monitor_args,
            config_actor,
            reload: args.reload,
            reload_handle: args.reload_handle,
            alerts,
            chain_health,
            others,
            restarts: HashMap::new(),
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        if state.others.iter().any(|other| other.get_id() == cell.get_id()) {
            error!(actor = ?cell.get_name(), %reason, "A chain actor stopped; failing upward");
            return Err(format!("chain actor stopped: {reason}").into());
        }
        match state.child(cell.get_id()) {
            Some(child) => state.restart(&myself, child, cell.get_id(), &reason).await,
            None => Ok(()),
        }
    }

    async fn post_stop(&self, myself: ActorRef<RootMsg>, state: &mut RootState) -> Result<(), ActorProcessingErr> {
        // First, so no reload runs while the rest stops.
        state.reload_handle.publish(None);
        if let Some(actor) = state.config_actor.take() {
            actor.unlink(myself.get_cell());
            actor.stop_and_wait(None, Some(CHILD_STOP_TIMEOUT)).await.ok();
        }
        state.chain_slot.store(None);
        state.intake_slot.store(None);
        let processors = state.processor_slot.swap(Arc::new(Vec::new()));
        // Unlink first so a child's exit is not taken for a failure to handle.
        let processors = processors.iter().map(|p| p.get_cell());
        let health = state.chain_health.as_ref().map(|(actor, _)| actor.get_cell());
        let first = [state.monitor.get_cell(), state.scheduler.get_cell(), state.alerts.get_cell()].into_iter().chain(health).chain(processors);
        for child in first.chain(state.others.iter().rev().cloned()).chain(std::iter::once(state.intake.get_cell())) {
            child.unlink(myself.get_cell());
            child.stop_and_wait(None, Some(CHILD_STOP_TIMEOUT)).await.ok();
        }
        Ok(())
    }
}

impl RootState {
    /// Which restartable child `id` is, if any.
    fn child(&self, id: ractor::ActorId) -> Option<Child> {
        if id == self.intake.get_id() {
            Some(Child::Intake)
        } else if self.processor_slot.load().iter().any(|p| p.get_id() == id) {
            Some(Child::Processor)
        } else if id == self.scheduler.get_id() {
            Some(Child::Scheduler)
        } else if id == self.monitor.get_id() {
            Some(Child::Monitor)
        } else if self.config_actor.as_ref().is_some_and(|actor| actor.get_id() == id) {
            Some(Child::Config)
        } else if id == self.alerts.get_id() {
            Some(Child::Alerts)
        } else if self.chain_health.as_ref().is_some_and(|(actor, _)| actor.get_id() == id) {
            Some(Child::ChainHealth)
        } else {
            None
        }
    }

    /// `child` (the actor `failed`) stopped: unpublish it, then start another
    /// in its place within its restart budget, or fail upward once the
    /// budget is spent.
    async fn restart(&mut self, myself: &ActorRef<RootMsg>, child: Child, failed: ractor::ActorId, reason: &str) -> Result<(), ActorProcessingErr> {
        match child {
            Child::Intake => self.intake_slot.store(None),
            Child::Config => self.reload_handle.publish(None),
            _ => {}
        }
        let (actor, title, failure) = child.names();
        if !self.restarts.entry(child).or_insert_with(|| RestartBudget::new(MAX_RESTARTS, RESTART_WINDOW)).allow(Instant::now()) {
            error!(actor, %reason, "{title} keeps failing; giving up");
            return Err(format!("{failure} failed {MAX_RESTARTS} times within {RESTART_WINDOW:?}").into());
        }
        warn!(actor, %reason, "{title} stopped; restarting it");
        self.respawn(myself, child, failed).await?;
        info!(actor, "{title} restarted");
        Ok(())
    }

    /// Starts `child` again and publishes it where its readers look.
    async fn respawn(&mut self, myself: &ActorRef<RootMsg>, child: Child, failed: ractor::ActorId) -> Result<(), ActorProcessingErr> {
        match child {
            Child::Intake => {
                self.intake = spawn_intake(myself, &self.db, &self.gate, &self.config, &self.processor_slot).await?;
                self.intake_slot.store(Some(Arc::new(self.intake.clone())));
            }
            Child::Processor => {
                let replacement = spawn_processor(myself, &self.db, &self.gate, &self.config, &self.keys, &self.chain_slot).await?;
                let mut processors: Vec<_> = self.processor_slot.load().iter().filter(|p| p.get_id() != failed).cloned().collect();
                processors.push(replacement);
                self.processor_slot.store(Arc::new(processors));
            }
            Child::Scheduler => self.scheduler = spawn_scheduler(myself, &self.db, &self.config, &self.keys, &self.processor_slot).await?,
            Child::Monitor => {
                let (db, chain) = self.monitor_args.clone();
                self.monitor = spawn_monitor(myself, &db, &self.config, chain).await?;
            }
            Child::Config => {
                if let Some(source) = &self.reload {
                    self.config_actor = Some(spawn_config(myself, source, &self.config, &self.db, &self.reload_handle).await?);
                }
            }
            Child::Alerts => self.alerts = spawn_alerts(myself, &self.db, &self.config).await?,
            Child::ChainHealth => {
                if let Some((actor, args)) = &mut self.chain_health {
                    *actor = spawn_chain_health(myself, args).await?;
                }
            }
        }
        Ok(())
    }
}

async fn spawn_chain_health(supervisor: &ActorRef<RootMsg>, args: &ChainHealthArgs) -> Result<ActorRef<ChainHealthMsg>, ActorProcessingErr> {
    let (actor, _) = Actor::spawn_linked(None, ChainHealthActor, args.clone(), supervisor.get_cell()).await?;
    Ok(actor)
}

async fn spawn_alerts(supervisor: &ActorRef<RootMsg>, db: &DatabaseConnection, config: &ConfigHandle) -> Result<ActorRef<AlertMsg>, ActorProcessingErr> {
    let args = AlertArgs { db: db.clone(), config: config.clone() };
    let (alerts, _) = Actor::spawn_linked(None, AlertActor, args, supervisor.get_cell()).await?;
    Ok(alerts)
}

async fn spawn_monitor(
    supervisor: &ActorRef<RootMsg>,
    db: &DatabaseConnection,
    config: &ConfigHandle,
    chain: Option<ChainClient>,
) -> Result<ActorRef<MonitorMsg>, ActorProcessingErr> {
    let args = MonitorArgs { db: db.clone(), config: config.clone(), chain };
    let (monitor, _) = Actor::spawn_linked(None, Monitor, args, supervisor.get_cell()).await?;
    Ok(monitor)
}

async fn spawn_scheduler(
    supervisor: &ActorRef<RootMsg>,
    db: &DatabaseConnection,
    config: &ConfigHandle,
    keys: &Option<MasterKeys>,
    processors: &ProcessorSlot,
) -> Result<ActorRef<SchedulerMsg>, ActorProcessingErr> {
    let args = SchedulerArgs { db: db.clone(), config: config.clone(), keys: keys.clone(), processors: processors.clone() };
    let (scheduler, _) = Actor::spawn_linked(None, Scheduler, args, supervisor.get_cell()).await?;
    Ok(scheduler)
}

async fn spawn_config(
    supervisor: &ActorRef<RootMsg>,
    source: &ConfigSource,
    config: &ConfigHandle,
    db: &DatabaseConnection,
    handle: &Arc<ReloadHandle>,
) -> Result<ActorRef<ConfigMsg>, ActorProcessingErr> {
    let args = ConfigArgs { source: source.clone(), config: config.clone(), db: db.clone(), handle: handle.clone() };
    let (actor, _) = Actor::spawn_linked(None, ConfigActor, args, supervisor.get_cell()).await?;
    handle.publish(Some(actor.clone()));
    Ok(actor)
}

async fn spawn_processor(
    supervisor: &ActorRef<RootMsg>,
    db: &DatabaseConnection,
    gate: &WriteGate,
    config: &ConfigHandle,
    keys: &Option<MasterKeys>,
    chain: &ChainSlot,
) -> Result<ActorRef<ProcessorMsg>, ActorProcessingErr> {
    let chain = chain.clone();
    let nudge_wallet: WalletNudge = Arc::new(move |wallet| {
        if let Some(chain) = chain.load_full() {
            let _ = chain.registry.cast(RegistryMsg::Nudge(Some(wallet)));
        }
    });
    let args = ProcessorArgs { db: db.clone(), config: config.clone(), keys: keys.clone(), nudge_wallet, gate: gate.clone() };
    let (processor, _) = Actor::spawn_linked(None, Processor, args, supervisor.get_cell()).await?;
    Ok(processor)
}

async fn spawn_intake(
    supervisor: &ActorRef<RootMsg>,
    db: &DatabaseConnection,
    gate: &WriteGate,
    config: &ConfigHandle,
    processors: &ProcessorSlot,
) -> Result<ActorRef<IntakeMsg>, ActorProcessingErr> {
    let processors = processors.clone();
    let on_commit: crate::intake::OnCommit = Arc::new(move || crate::rewards::processor::nudge(&processors));
    let args = IntakeArgs { db: db.clone(), config: config.clone(), on_commit, gate: gate.clone() };
    let (intake, _) = Actor::spawn_linked(None, IntakeActor, args, supervisor.get_cell()).await?;
    Ok(intake)
}
