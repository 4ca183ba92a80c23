//! The scheduler actor: runs the periodic jobs of SPEC section 5 on
//! tokio-cron-scheduler (cron expressions with seconds, in the configured
//! timezone) and rebuilds them when `[schedule]` changes, so a config reload
//! applies without a restart, and when the timezone's UTC offset changes
//! (daylight saving), since the scheduler fixes a job's offset when it is built. A job still running when its next time comes
//! is skipped with a warning rather than run twice at once.
//!
//! Jobs: partner syncs ([`sync`]), the staking yield
//! ([`crate::rewards::staking`]), the purge of raw bodies
//! ([`crate::rewards::inbox::purge_bodies`]) and the clean-up of expired
//! rows ([`cleanup`]: cross-app sessions, idempotency keys, the live-update
//! journal). Retries of failed events need
//! no job: the processors poll the inbox for due retries.

pub mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sea_orm::DatabaseConnection;
use serde_json::Value;
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::{info, warn};

use crate::alert::{self, Severity};
use crate::config::{Config, ConfigHandle, ScheduleConfig};
use crate::custody::MasterKeys;
use crate::rewards::{ProcessorSlot, inbox, processor, staking};
use crate::webhooks::Partner;

/// How often the scheduler looks whether `[schedule]` changed.
const CONFIG_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Pull missed Aurora events.
    AuroraSync,
    /// Pull missed Tribe events.
    TribeSync,
    /// Pay completed staking weeks.
    StakingRewards,
    /// Purge raw bodies past the retention period.
    PurgeBodies,
    /// Delete expired sessions, idempotency keys and old journal rows.
    Cleanup,
}

impl JobKind {
    /// Every job, with its expression in `[schedule]`.
    fn all(schedule: &ScheduleConfig) -> [(JobKind, &str); 5] {
        [
            (JobKind::AuroraSync, schedule.aurora_sync.as_str()),
            (JobKind::TribeSync, schedule.tribe_sync.as_str()),
            (JobKind::StakingRewards, schedule.staking_rewards.as_str()),
            (JobKind::PurgeBodies, schedule.purge_bodies.as_str()),
            (JobKind::Cleanup, schedule.cleanup.as_str()),
        ]
    }
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A partner sync failed.
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    /// The staking job failed.
    #[error(transparent)]
    Staking(#[from] staking::StakingError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Runs one job now (the scheduler and `havend jobs run` share this);
/// returns what it did, for the log or the operator.
pub async fn run_job(kind: JobKind, db: &DatabaseConnection, config: &Config, keys: Option<&MasterKeys>) -> Result<Value, JobError> {
    Ok(match kind {
        JobKind::AuroraSync => serde_json::to_value(sync::run(db, config, Partner::Aurora).await?).unwrap_or_default(),
        JobKind::TribeSync => serde_json::to_value(sync::run(db, config, Partner::Tribe).await?).unwrap_or_default(),
        JobKind::StakingRewards => serde_json::to_value(staking::run(db, keys, &config.rewards, Utc::now()).await?).unwrap_or_default(),
        JobKind::PurgeBodies => {
            let before = Utc::now() - chrono::Duration::days(i64::from(config.schedule.body_retention_days));
            serde_json::json!({ "purged": inbox::purge_bodies(db, before).await? })
        }
        JobKind::Cleanup => serde_json::to_value(cleanup(db, config, Utc::now()).await?).unwrap_or_default(),
    })
}

/// What the clean-up job removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cleaned {
    /// Cross-app sessions past their expiry.
    pub sessions: u64,
    /// Idempotency keys past their expiry.
    pub idempotency_keys: u64,
    /// Live-update journal rows older than `stream.retention_hours`.
    pub stream_events: u64,
}

/// Deletes what has expired as of `now`: cross-app sessions, idempotency
/// keys, and journal rows past the stream's retention. Each is a separate
/// statement, so a failure leaves the others done; the next run retries.
pub async fn cleanup(db: &DatabaseConnection, config: &Config, now: chrono::DateTime<Utc>) -> Result<Cleaned, JobError> {
    let sessions = crate::sessions::store::purge_expired(db, now).await;
    let idempotency_keys = crate::idempotency::store::purge_expired(db).await;
    let journal_cutoff = now - chrono::Duration::hours(i64::from(config.stream.retention_hours));
    let stream_events = crate::live::store::purge_before(db, journal_cutoff).await;
    // All three ran before the first failure is reported.
    Ok(Cleaned { sessions: sessions?, idempotency_keys: idempotency_keys?, stream_events: stream_events? })
}

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
    built_from: Option<ScheduleConfig>,
    /// The timezone's UTC offset when the jobs were built: tokio-cron-scheduler
    /// fixes it per job, so a daylight-saving change calls for a rebuild.
    built_offset: Option<i32>,
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
        Ok(SchedulerState { args: Arc::new(args), scheduler, built_from: None, built_offset: None, jobs: Vec::new(), running: HashMap::new() })
    }

    async fn handle(&self, myself: ActorRef<SchedulerMsg>, msg: SchedulerMsg, state: &mut SchedulerState) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::CheckConfig => {
                let schedule = state.args.config.load().schedule.clone();
                if state.built_from.as_ref() != Some(&schedule) || state.built_offset != utc_offset(&schedule.timezone) {
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
        for (kind, expression) in JobKind::all(schedule) {
            if expression.trim().is_empty() {
                continue;
            }
            let running = self.running.entry(kind).or_insert_with(|| Arc::new(AtomicBool::new(false))).clone();
            let args = self.args.clone();
            let job = Job::new_async_tz(expression, timezone, move |_, _| {
                let (args, running) = (args.clone(), running.clone());
                Box::pin(async move { run_scheduled(kind, &args, &running).await })
            })?;
            self.jobs.push(self.scheduler.add(job).await?);
        }
        info!(timezone = %schedule.timezone, jobs = self.jobs.len(), "Schedule (re)built");
        self.built_from = Some(schedule.clone());
        self.built_offset = utc_offset(&schedule.timezone);
        Ok(())
    }
}

/// The timezone's offset from UTC now, in seconds.
fn utc_offset(timezone: &str) -> Option<i32> {
    use chrono::{Offset, TimeZone};
    let timezone: chrono_tz::Tz = timezone.parse().ok()?;
    Some(timezone.offset_from_utc_datetime(&Utc::now().naive_utc()).fix().local_minus_utc())
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
            if matches!(kind, JobKind::AuroraSync | JobKind::TribeSync) {
                processor::nudge(&args.processors);
            }
        }
        Err(sync_off @ JobError::Sync(sync::SyncError::NotConfigured(_))) => info!(job = ?kind, reason = %sync_off, "Scheduled job has nothing to do"),
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_offset_that_triggers_a_rebuild_follows_daylight_saving() {
        assert_eq!(super::utc_offset("UTC"), Some(0));
        assert!(matches!(super::utc_offset("America/Toronto"), Some(-18_000 | -14_400)));
        assert_eq!(super::utc_offset("Mars/Olympus"), None);
    }

    #[test]
    fn expressions_need_seconds_and_empty_turns_a_job_off() {
        use crate::config::check_cron;
        assert!(check_cron("0 0 2 * * *").is_ok());
        assert!(check_cron("0 0 3 * * Mon").is_ok());
        assert!(check_cron("*/5 * * * * *").is_ok());
        assert!(check_cron("").is_ok());
        assert!(check_cron("not cron").is_err());
        assert!(check_cron("0 2 * * * * * *").is_err());
    }
}
