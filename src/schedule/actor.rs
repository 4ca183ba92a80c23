//! The scheduler actor: builds the jobs [`plan`](super::plan) asks for on
//! tokio-cron-scheduler, looks every few seconds whether they must be
//! rebuilt, and runs each job with a flag that skips a run while the
//! previous one is still going.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sea_orm::DatabaseConnection;
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::{info, warn};

use super::jobs::{JobKind, run_job};
use super::plan::{self, Built};
use crate::alert::{self, Severity};
use crate::config::{ConfigHandle, ScheduleConfig};
use crate::custody::MasterKeys;
use crate::rewards::{ProcessorSlot, processor, staking};

/// How often the scheduler looks whether `[schedule]` changed.
const CONFIG_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Messages the scheduler handles.
pub enum SchedulerMsg {
    /// Rebuild the jobs if `[schedule]` changed since they were built.
    CheckConfig,
    /// Pay the staking weeks completed while the daemon was down (SPEC
    /// section 5), once at start-up: a Monday missed is paid late, never skipped.
    StakingAtStart,
}

/// The scheduler actor.
pub struct Scheduler;

/// What the scheduler starts with.
pub struct SchedulerArgs {
    /// The database the jobs work on.
    pub db: DatabaseConnection,
    /// Config; jobs read the snapshot current when they run.
    pub config: ConfigHandle,
    /// For new stakers' custodial wallets.
    pub keys: Option<MasterKeys>,
    /// Nudged after a sync stored new events.
    pub processors: ProcessorSlot,
}

/// The scheduler's state: the running jobs and what they were built from.
pub struct SchedulerState {
    args: Arc<SchedulerArgs>,
    scheduler: JobScheduler,
    built: Built,
    jobs: Vec<uuid::Uuid>,
    running: HashMap<JobKind, Arc<AtomicBool>>,
}

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(&self, myself: ActorRef<SchedulerMsg>, args: SchedulerArgs) -> Result<SchedulerState, ActorProcessingErr> {
        let scheduler = JobScheduler::new().await?;
        scheduler.start().await?;
        myself.cast(SchedulerMsg::CheckConfig)?;
        Ok(SchedulerState { args: Arc::new(args), scheduler, built: Built::default(), jobs: Vec::new(), running: HashMap::new() })
    }

    async fn handle(&self, myself: ActorRef<SchedulerMsg>, msg: SchedulerMsg, state: &mut SchedulerState) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::CheckConfig => {
                let schedule = state.args.config.load().schedule.clone();
                if plan::needs_rebuild(&state.built, &schedule, plan::utc_offset(&schedule.timezone, Utc::now())) {
                    state.rebuild(&schedule).await?;
                }
                myself.send_after(CONFIG_CHECK_INTERVAL, || SchedulerMsg::CheckConfig);
            }
            SchedulerMsg::StakingAtStart => {
                let running = state.running.entry(JobKind::StakingRewards).or_insert_with(|| Arc::new(AtomicBool::new(false))).clone();
                tokio::spawn(staking_at_start(state.args.clone(), running));
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<SchedulerMsg>, state: &mut SchedulerState) -> Result<(), ActorProcessingErr> {
        state.scheduler.shutdown().await?;
        Ok(())
    }
}

impl SchedulerState {
    /// Replaces every job with the ones `schedule` describes.
    async fn rebuild(&mut self, schedule: &ScheduleConfig) -> Result<(), ActorProcessingErr> {
        for id in self.jobs.drain(..) {
            self.scheduler.remove(&id).await?;
        }
        let timezone: chrono_tz::Tz = schedule.timezone.parse().map_err(|_| format!("unknown timezone {}", schedule.timezone))?;
        for (kind, expression) in plan::jobs_to_build(schedule) {
            let running = self.running.entry(kind).or_insert_with(|| Arc::new(AtomicBool::new(false))).clone();
            let args = self.args.clone();
            let job = Job::new_async_tz(expression, timezone, move |_, _| {
                let (args, running) = (args.clone(), running.clone());
                Box::pin(async move { run_scheduled(kind, &args, &running).await })
            })?;
            self.jobs.push(self.scheduler.add(job).await?);
        }
        info!(timezone = %schedule.timezone, jobs = self.jobs.len(), "Schedule (re)built");
        self.built = Built { schedule: Some(schedule.clone()), offset: plan::utc_offset(&schedule.timezone, Utc::now()) };
        Ok(())
    }
}

/// One scheduled run, skipped when the previous run of the same job is still going.
async fn run_scheduled(kind: JobKind, args: &SchedulerArgs, running: &AtomicBool) {
    if running.swap(true, Ordering::AcqRel) {
        warn!(job = ?kind, "Job skipped: its previous run is still going");
        return;
    }
    // Cleared however the run ends, a panic included: a flag left set would skip the job forever.
    let _running = Running(running);
    let config = args.config.load_full();
    match run_job(kind, &args.db, &config, args.keys.as_ref()).await {
        Ok(report) => {
            info!(job = ?kind, %report, "Scheduled job done");
            if plan::nudges_processors(kind) {
                processor::nudge(&args.processors);
            }
        }
        Err(error) if !plan::is_alerted(&error) => info!(job = ?kind, reason = %error, "Scheduled job has nothing to do"),
        Err(error) => {
            let message = format!("Scheduled job {kind:?} failed: {error}; it runs again at its next time");
            alert::raise(&args.db, Severity::Error, "scheduled_job_failed", &message, serde_json::json!({ "job": format!("{kind:?}"), "error": error.to_string() })).await;
        }
    }
}

/// The staking job at start-up. A failure is logged, not alerted: the
/// weekly run and the next start pay what this one could not.
async fn staking_at_start(args: Arc<SchedulerArgs>, running: Arc<AtomicBool>) {
    if running.swap(true, Ordering::AcqRel) {
        return;
    }
    let _running = Running(&running);
    let rules = args.config.load().rewards.clone();
    match staking::run(&args.db, args.keys.as_ref(), &rules, Utc::now()).await {
        Ok(report) if report.paid > 0 => info!(paid = report.paid, held = report.held, "Staking weeks paid at start-up"),
        Ok(_) => {}
        Err(error) => warn!(%error, "Staking job at start-up failed; it runs again at the next start or schedule"),
    }
}

/// Clears a job's running flag when dropped.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
