//! The breaker actor: owns one [`Breaker`], publishes its state on a watch
//! channel (readers need no round trip) and takes outcomes by message.

use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, call_t};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tracing::info;

use super::{Breaker, BreakerConfig, BreakerState, Transition};
use crate::alert::{self, Severity};

/// How long a wallet actor waits for a HALF_OPEN probe permit.
pub const PROBE_PERMIT_TIMEOUT_MS: u64 = 1_000;

/// Messages the breaker actor handles.
pub enum BreakerMsg {
    /// The outcome of one call: `true` when it succeeded (in transport).
    Report(bool),
    /// Asks for the single HALF_OPEN probe slot.
    AcquireProbe(RpcReplyPort<bool>),
    /// The breaker's state and counters (admin API).
    Status(RpcReplyPort<BreakerStatus>),
    /// Operator reset to CLOSED.
    Reset,
    /// Re-evaluates the OPEN timer.
    Poll,
}

/// A breaker's state as reported to operators.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerStatus {
    /// The dependency it guards.
    pub name: String,
    /// Its state.
    pub state: BreakerState,
    /// Consecutive failures while closed.
    pub consecutive_failures: u32,
}

/// The breaker actor.
pub struct BreakerActor;

/// What a breaker actor starts with.
pub struct BreakerArgs {
    /// The dependency's name (`rpc`).
    pub name: String,
    /// Thresholds.
    pub config: BreakerConfig,
    /// Where transitions are published.
    pub state_tx: watch::Sender<BreakerState>,
    /// For alerts.
    pub db: DatabaseConnection,
}

/// The breaker and its publication channel.
pub struct BreakerActorState {
    name: String,
    breaker: Breaker,
    state_tx: watch::Sender<BreakerState>,
    db: DatabaseConnection,
    open_for: std::time::Duration,
}

impl Actor for BreakerActor {
    type Msg = BreakerMsg;
    type State = BreakerActorState;
    type Arguments = BreakerArgs;

    async fn pre_start(&self, _myself: ActorRef<BreakerMsg>, args: BreakerArgs) -> Result<BreakerActorState, ActorProcessingErr> {
        args.state_tx.send_replace(BreakerState::Closed);
        ::metrics::gauge!(crate::telemetry::metrics::BREAKER_STATE, "breaker" => args.name.clone()).set(BreakerState::Closed.as_gauge());
        Ok(BreakerActorState {
            name: args.name,
            open_for: args.config.open_for,
            breaker: Breaker::new(args.config),
            state_tx: args.state_tx,
            db: args.db,
        })
    }

    async fn handle(&self, myself: ActorRef<BreakerMsg>, msg: BreakerMsg, state: &mut BreakerActorState) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let transition = match msg {
            BreakerMsg::Report(true) => state.breaker.on_success(),
            BreakerMsg::Report(false) => state.breaker.on_failure(now),
            BreakerMsg::AcquireProbe(reply) => {
                let (allowed, transition) = state.breaker.try_acquire(now);
                let _ = reply.send(allowed);
                transition
            }
            BreakerMsg::Status(reply) => {
                let _ = reply.send(BreakerStatus {
                    name: state.name.clone(),
                    state: state.breaker.state(),
                    consecutive_failures: state.breaker.consecutive_failures(),
                });
                None
            }
            BreakerMsg::Reset => state.breaker.reset(),
            BreakerMsg::Poll => state.breaker.poll(now),
        };
        if let Some(transition) = transition {
            state.publish(&myself, transition).await;
        }
        Ok(())
    }
}

impl BreakerActorState {
    async fn publish(&mut self, myself: &ActorRef<BreakerMsg>, transition: Transition) {
        self.state_tx.send_replace(transition.to);
        ::metrics::gauge!(crate::telemetry::metrics::BREAKER_STATE, "breaker" => self.name.clone()).set(transition.to.as_gauge());
        info!(breaker = %self.name, from = ?transition.from, to = ?transition.to, "Circuit breaker changed state");
        match transition.to {
            BreakerState::Open => {
                myself.send_after(self.open_for, || BreakerMsg::Poll);
                // A failed probe re-opens within the same outage: alert once per outage.
                if transition.from == BreakerState::HalfOpen {
                    return;
                }
                alert::raise(
                    &self.db,
                    Severity::Error,
                    "circuit_open",
                    &format!("Circuit breaker {} opened: its dependency keeps failing", self.name),
                    json!({ "breaker": self.name, "from": transition.from }),
                )
                .await;
            }
            BreakerState::Closed if transition.from != BreakerState::Closed => {
                alert::raise(&self.db, Severity::Info, "circuit_closed", &format!("Circuit breaker {} closed", self.name), json!({ "breaker": self.name })).await;
            }
            _ => {}
        }
    }
}

/// What wallet actors hold: the state without a round trip, outcomes by cast.
#[derive(Clone)]
pub struct BreakerHandle {
    actor: ActorRef<BreakerMsg>,
    state: watch::Receiver<BreakerState>,
}

impl BreakerHandle {
    /// A handle on `actor`, reading `state`.
    pub fn new(actor: ActorRef<BreakerMsg>, state: watch::Receiver<BreakerState>) -> Self {
        Self { actor, state }
    }

    /// The published state.
    pub fn state(&self) -> BreakerState {
        *self.state.borrow()
    }

    /// Whether a call may go out: CLOSED yes, OPEN no (the breaker's own
    /// timer moves it on), HALF_OPEN only with the probe slot.
    pub async fn allow(&self) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                call_t!(self.actor, BreakerMsg::AcquireProbe, PROBE_PERMIT_TIMEOUT_MS).unwrap_or(false)
            }
        }
    }

    /// Reports a call's outcome: `Err` in transport is a failure, anything else a success.
    pub fn report<T>(&self, result: &Result<T, crate::chain::RpcFailure>) {
        let ok = !matches!(result, Err(failure) if failure.is_transport());
        let _ = self.actor.cast(BreakerMsg::Report(ok));
    }

    /// The breaker's status.
    pub async fn status(&self) -> Option<BreakerStatus> {
        call_t!(self.actor, BreakerMsg::Status, PROBE_PERMIT_TIMEOUT_MS).ok()
    }

    /// Operator reset.
    pub fn reset(&self) {
        let _ = self.actor.cast(BreakerMsg::Reset);
    }
}
