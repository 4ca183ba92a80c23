//! The wallet registry: starts one wallet actor per hot wallet this daemon
//! signs for, restarts a failed one, parks one that keeps failing (alerted,
//! retried with backoff), and routes nudges. It never fails upward: the chain
//! side must not take webhook intake down with it. Per-wallet actors have no
//! global names, so tests in one process never collide.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::json;
use tracing::warn;
use uuid::Uuid;

use super::{WalletActor, WalletArgs, WalletDeps, WalletMsg, WalletStatus};
use crate::alert::{self, Severity};
use crate::restart::{MAX_RESTARTS, RESTART_WINDOW, RestartBudget};
use crate::retry::Backoff;

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
    /// Move work off retired wallets and look for queued work on wallets no
    /// running daemon signs for (periodic).
    CheckUnclaimed,
}

/// How often the registry looks for queued work on unclaimed wallets.
const UNCLAIMED_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Pause before a wallet actor whose start failed is tried again.
const RESPAWN_DELAY: Duration = Duration::from_secs(1);
/// Pause of a wallet actor parked for failing too often, doubled for each
/// park in a row up to [`PARK_MAX`].
const PARK_BASE: Duration = Duration::from_secs(15);
/// The longest pause of a parked wallet actor.
const PARK_MAX: Duration = Duration::from_secs(10 * 60);
/// The pauses of a parked wallet actor, by parks in a row before this one.
const PARK_BACKOFF: Backoff = Backoff::doubling(PARK_BASE, PARK_MAX);

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
    /// Per wallet: parks in a row and when the last one began.
    parks: HashMap<Uuid, (u32, Instant)>,
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
            parks: HashMap::new(),
            args,
        };
        myself.send_after(UNCLAIMED_CHECK_EVERY, || RegistryMsg::CheckUnclaimed);
        for wallet in state.args.wallets.clone() {
            state.spawn_or_retry(&myself, wallet).await;
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
                match super::lifecycle::sweep(&state.args.deps.db).await {
                    Ok(swept) => {
                        for moved in swept {
                            warn!(from = %moved.from, to = %moved.to, intents = moved.moved_intents, users = moved.moved_users, "Moved work off a hot wallet that takes no new work");
                        }
                    }
                    Err(error) => warn!(%error, "Could not sweep work off retired wallets; trying again later"),
                }
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
                warn!(%wallet, %reason, "Wallet actor failed; restarting it to reconcile");
                state.failed(&myself, wallet, reason.to_string(), Duration::ZERO).await;
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
    /// database and the key), tries again after [`RESPAWN_DELAY`] instead of
    /// failing the tree, so an outage does not take the listener down.
    async fn spawn_or_retry(&mut self, myself: &ActorRef<RegistryMsg>, wallet: Uuid) {
        if let Err(error) = self.spawn(myself, wallet).await {
            warn!(%wallet, %error, "Wallet actor could not start; trying again shortly");
            self.failed(myself, wallet, error.to_string(), RESPAWN_DELAY).await;
        }
    }

    /// A failure of the wallet's actor (or of its start): within the restart
    /// budget it is started again after `delay`; over it, it is parked: an
    /// ERROR alert, and a retry after a backoff that doubles with each park
    /// in a row. Never an error upward.
    async fn failed(&mut self, myself: &ActorRef<RegistryMsg>, wallet: Uuid, reason: String, delay: Duration) {
        let now = Instant::now();
        let budget = self.budgets.entry(wallet).or_insert_with(|| RestartBudget::new(MAX_RESTARTS, RESTART_WINDOW));
        if budget.allow(now) {
            myself.send_after(delay, move || RegistryMsg::Respawn(wallet));
            return;
        }
        let (count, last) = self.parks.get(&wallet).copied().unwrap_or((0, now));
        // A wallet that ran well for a while starts its backoff over.
        let count = if now.duration_since(last) > 2 * PARK_MAX { 1 } else { count + 1 };
        self.parks.insert(wallet, (count, now));
        let pause = PARK_BACKOFF.delay(count - 1);
        alert::raise(
            &self.args.deps.db,
            Severity::Error,
            "wallet_parked",
            &format!(
                "Wallet actor of hot wallet {wallet} failed {MAX_RESTARTS} times within {}s and is parked; it is retried in {}s. Last error: {reason}",
                RESTART_WINDOW.as_secs(),
                pause.as_secs()
            ),
            json!({ "wallet_id": wallet, "parks_in_a_row": count, "retry_in_secs": pause.as_secs(), "reason": reason }),
        )
        .await;
        myself.send_after(pause, move || RegistryMsg::Respawn(wallet));
    }

    async fn spawn(&mut self, myself: &ActorRef<RegistryMsg>, wallet: Uuid) -> Result<(), ActorProcessingErr> {
        let args = WalletArgs { wallet_id: wallet, deps: self.args.deps.clone() };
        let (actor, _) = Actor::spawn_linked(None, WalletActor, args, myself.get_cell()).await?;
        self.by_actor.insert(actor.get_id(), wallet);
        self.by_wallet.insert(wallet, actor);
        Ok(())
    }
}
