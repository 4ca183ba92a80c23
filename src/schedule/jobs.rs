//! The scheduled jobs and what each one does when it runs, shared by the
//! scheduler and `havend jobs run`.

use chrono::Utc;
use sea_orm::DatabaseConnection;
use serde_json::Value;

use super::sync;
use crate::config::{Config, ScheduleConfig};
use crate::custody::MasterKeys;
use crate::rewards::{inbox, staking};
use crate::webhooks::Partner;

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
    pub fn all(schedule: &ScheduleConfig) -> [(JobKind, &str); 5] {
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
