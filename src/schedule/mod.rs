//! The scheduler: runs the periodic jobs on tokio-cron-scheduler (cron
//! expressions with seconds, in the configured timezone) and rebuilds them
//! when `[schedule]` changes, so a config reload applies without a restart,
//! and when the timezone's UTC offset changes (daylight saving), since the
//! scheduler fixes a job's offset when it is built. A job still running when
//! its next time comes is skipped with a warning rather than run twice at once.
//!
//! [`jobs`] says what each job does (partner syncs in [`sync`], the staking
//! yield, the purge of raw bodies, the clean-up of expired rows), [`plan`]
//! decides when to rebuild and what a run's outcome calls for, and the actor
//! executes both. Retries of failed events need no job: the processors poll
//! the inbox for due retries.

mod actor;
mod jobs;
pub mod plan;
pub mod sync;

pub use actor::{Scheduler, SchedulerArgs, SchedulerMsg, SchedulerState};
pub use jobs::{Cleaned, JobError, JobKind, cleanup, run_job};
