//! The root supervisor: starts the daemon's actors, restarts one that fails
//! (within a budget), and publishes the replacement where its users look.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use sea_orm::DatabaseConnection;
use tracing::{error, info, warn};

use crate::config::ConfigHandle;
use crate::intake::{IntakeActor, IntakeArgs, IntakeMsg, IntakeSlot};

/// Restarts allowed per child within [`RESTART_WINDOW`] before the supervisor
/// gives up and fails upward (systemd then restarts the process).
pub const MAX_RESTARTS: usize = 10;
/// The window [`MAX_RESTARTS`] is counted in.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Messages the root supervisor handles (it only reacts to its children).
pub enum RootMsg {}

/// The root of the supervision tree.
pub struct RootSupervisor;

/// What the root supervisor is started with.
pub struct RootArgs {
    /// The database every child uses.
    pub db: DatabaseConnection,
    /// The shared config snapshot.
    pub config: ConfigHandle,
    /// Where the current intake actor is published for the listener.
    pub intake_slot: IntakeSlot,
}

/// The supervisor's children and restart history.
pub struct RootState {
    db: DatabaseConnection,
    config: ConfigHandle,
    intake_slot: IntakeSlot,
    intake: ActorRef<IntakeMsg>,
    intake_restarts: RestartBudget,
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(&self, myself: ActorRef<RootMsg>, args: RootArgs) -> Result<RootState, ActorProcessingErr> {
        let intake = spawn_intake(&myself, &args.db, &args.config).await?;
        args.intake_slot.store(Some(Arc::new(intake.clone())));
        Ok(RootState {
            db: args.db,
            config: args.config,
            intake_slot: args.intake_slot,
            intake,
            intake_restarts: RestartBudget::new(MAX_RESTARTS, RESTART_WINDOW),
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
        if cell.get_id() != state.intake.get_id() {
            return Ok(());
        }
        state.intake_slot.store(None);
        if !state.intake_restarts.allow(Instant::now()) {
            error!(actor = "intake", %reason, "Intake actor keeps failing; giving up");
            return Err(format!("intake actor failed {MAX_RESTARTS} times within {RESTART_WINDOW:?}").into());
        }
        warn!(actor = "intake", %reason, "Intake actor stopped; restarting it");
        let intake = spawn_intake(&myself, &state.db, &state.config).await?;
        state.intake_slot.store(Some(Arc::new(intake.clone())));
        state.intake = intake;
        info!(actor = "intake", "Intake actor restarted");
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<RootMsg>, state: &mut RootState) -> Result<(), ActorProcessingErr> {
        state.intake_slot.store(None);
        // Unlink first so the child's exit is not taken for a failure to restart.
        state.intake.unlink(_myself.get_cell());
        state.intake.stop_and_wait(None, Some(Duration::from_secs(10))).await.ok();
        Ok(())
    }
}

async fn spawn_intake(
    supervisor: &ActorRef<RootMsg>,
    db: &DatabaseConnection,
    config: &ConfigHandle,
) -> Result<ActorRef<IntakeMsg>, ActorProcessingErr> {
    let args = IntakeArgs { db: db.clone(), config: config.clone() };
    let (intake, _) = Actor::spawn_linked(None, IntakeActor, args, supervisor.get_cell()).await?;
    Ok(intake)
}

/// At most `max` restarts within a sliding `window`.
#[derive(Debug)]
pub struct RestartBudget {
    max: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// A budget of `max` restarts per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self { max, window, recent: VecDeque::new() }
    }

    /// Records a restart at `now`; false when the budget is spent.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_budget_refuses_the_restart_over_the_limit_and_recovers_after_the_window() {
        let start = Instant::now();
        let mut budget = RestartBudget::new(2, Duration::from_secs(60));
        assert!(budget.allow(start));
        assert!(budget.allow(start + Duration::from_secs(1)));
        assert!(!budget.allow(start + Duration::from_secs(2)));
        assert!(budget.allow(start + Duration::from_secs(62)));
    }
}
