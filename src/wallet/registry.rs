//! The wallet registry: starts one wallet actor per hot wallet this daemon
//! signs for, restarts a failed one (within a budget), and routes nudges.
//! Per-wallet actors have no global names, so tests in one process never collide.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{error, warn};
use uuid::Uuid;

use super::{WalletActor, WalletArgs, WalletDeps, WalletMsg, WalletStatus};
use crate::supervisor::{MAX_RESTARTS, RESTART_WINDOW, RestartBudget};

/// How long a status request waits for one wallet actor.
const STATUS_TIMEOUT_MS: u64 = 2_000;

/// Messages the registry handles.
pub enum RegistryMsg {
    /// New work may be queued for `wallet` (all wallets when `None`).
    Nudge(Option<Uuid>),
    /// Every wallet actor's status.
    Statuses(RpcReplyPort<Vec<WalletStatus>>),
    /// Try again to start the actor of `wallet` (its start failed, e.g. the database was down).
    Respawn(Uuid),
    /// Look for queued work on wallets no running daemon signs for (periodic).
    CheckUnclaimed,
}

/// How often the registry looks for queued work on unclaimed wallets.
const UNCLAIMED_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Pause before a wallet actor whose start failed is tried again.
const RESPAWN_DELAY: Duration = Duration::from_secs(1);

/// The registry actor.
pub struct WalletRegistry;

/// What the registry starts with.
pub struct RegistryArgs {
    /// Hot wallet ids to sign for.
    pub wallets: Vec<Uuid>,
    /// What each wallet actor gets.
    pub deps: WalletDeps,
}

/// The registry's children.
pub struct RegistryState {
    args: RegistryArgs,
    by_wallet: HashMap<Uuid, ActorRef<WalletMsg>>,
    by_actor: HashMap<ActorId, Uuid>,
    budgets: HashMap<Uuid, RestartBudget>,
    /// Unclaimed wallets already alerted (each stranding alerted once).
    unclaimed_alerted: HashSet<Uuid>,
}

impl Actor for WalletRegistry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(&self, myself: ActorRef<RegistryMsg>, args: RegistryArgs) -> Result<RegistryState, ActorProcessingErr> {
        let mut state = RegistryState {
            by_wallet: HashMap::new(),
            by_actor: HashMap::new(),
            budgets: HashMap::new(),
            unclaimed_alerted: HashSet::new(),
            args,
        };
        myself.send_after(UNCLAIMED_CHECK_EVERY, || RegistryMsg::CheckUnclaimed);
        for wallet in state.args.wallets.clone() {
            state.spawn(&myself, wallet).await?;
        }
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<RegistryMsg>, msg: RegistryMsg, state: &mut RegistryState) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Nudge(Some(wallet)) => {
                if let Some(actor) = state.by_wallet.get(&wallet) {
                    let _ = actor.cast(WalletMsg::Nudge);
                }
            }
            RegistryMsg::Nudge(None) => {
                for actor in state.by_wallet.values() {
                    let _ = actor.cast(WalletMsg::Nudge);
                }
            }
            RegistryMsg::Respawn(wallet) => {
                if !state.by_wallet.contains_key(&wallet) {
                    state.spawn_or_retry(&myself, wallet).await;
                }
            }
            RegistryMsg::CheckUnclaimed => {
                if let Err(error) = super::alert_unclaimed(&state.args.deps.db, chrono::Utc::now(), &mut state.unclaimed_alerted).await {
                    warn!(%error, "Could not look for unclaimed wallets; trying again later");
                }
                myself.send_after(UNCLAIMED_CHECK_EVERY, || RegistryMsg::CheckUnclaimed);
            }
            RegistryMsg::Statuses(reply) => {
                let mut statuses = Vec::new();
                for actor in state.by_wallet.values() {
                    if let Ok(status) = ractor::call_t!(actor, WalletMsg::Status, STATUS_TIMEOUT_MS) {
                        statuses.push(status);
                    }
                }
                let _ = reply.send(statuses);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(&self, myself: ActorRef<RegistryMsg>, event: SupervisionEvent, state: &mut RegistryState) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, reason) => {
                let Some(wallet) = state.by_actor.remove(&cell.get_id()) else { return Ok(()) };
                state.by_wallet.remove(&wallet);
                let budget = state.budgets.entry(wallet).or_insert_with(|| RestartBudget::new(MAX_RESTARTS, RESTART_WINDOW));
                if !budget.allow(Instant::now()) {
                    error!(%wallet, %reason, "Wallet actor keeps failing; giving up");
                    return Err(format!("wallet actor {wallet} failed {MAX_RESTARTS} times within {RESTART_WINDOW:?}").into());
                }
                warn!(%wallet, %reason, "Wallet actor failed; restarting it to reconcile");
                state.spawn_or_retry(&myself, wallet).await;
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                // A normal stop (fenced out) is final for this daemon.
                if let Some(wallet) = state.by_actor.remove(&cell.get_id()) {
                    state.by_wallet.remove(&wallet);
                    warn!(%wallet, reason = reason.as_deref().unwrap_or("stopped"), "Wallet actor stopped");
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<RegistryMsg>, state: &mut RegistryState) -> Result<(), ActorProcessingErr> {
        for actor in state.by_wallet.values() {
            actor.unlink(myself.get_cell());
            actor.stop_and_wait(None, Some(Duration::from_secs(5))).await.ok();
        }
        Ok(())
    }
}

impl RegistryState {
    /// Starts the wallet's actor; if that fails (its start needs the
    /// database), tries again after [`RESPAWN_DELAY`] instead of failing the
    /// tree, so a database outage does not take the listener down.
    async fn spawn_or_retry(&mut self, myself: &ActorRef<RegistryMsg>, wallet: Uuid) {
        if let Err(error) = self.spawn(myself, wallet).await {
            warn!(%wallet, %error, "Wallet actor could not start; trying again shortly");
            myself.send_after(RESPAWN_DELAY, move || RegistryMsg::Respawn(wallet));
        }
    }

    async fn spawn(&mut self, myself: &ActorRef<RegistryMsg>, wallet: Uuid) -> Result<(), ActorProcessingErr> {
        let args = WalletArgs { wallet_id: wallet, deps: self.args.deps.clone() };
        let (actor, _) = Actor::spawn_linked(None, WalletActor, args, myself.get_cell()).await?;
        self.by_actor.insert(actor.get_id(), wallet);
        self.by_wallet.insert(wallet, actor);
        Ok(())
    }
}
