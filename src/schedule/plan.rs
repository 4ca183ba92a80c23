//! The scheduler's decisions as pure functions: when the jobs must be
//! rebuilt, which jobs a schedule builds, and what a finished run calls for.

use chrono::{DateTime, Utc};

use super::jobs::{JobError, JobKind};
use super::sync::SyncError;
use crate::config::ScheduleConfig;

/// What the jobs were last built from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Built {
    /// The `[schedule]` section.
    pub schedule: Option<ScheduleConfig>,
    /// The timezone's UTC offset then: tokio-cron-scheduler fixes it per
    /// job, so a daylight-saving change calls for a rebuild.
    pub offset: Option<i32>,
}

/// Whether the jobs must be rebuilt: `[schedule]` changed, or its
/// timezone's offset is `offset_now` and no longer the one built with.
pub fn needs_rebuild(built: &Built, schedule: &ScheduleConfig, offset_now: Option<i32>) -> bool {
    built.schedule.as_ref() != Some(schedule) || built.offset != offset_now
}

/// The jobs `schedule` turns on, with their expressions (an empty one is off).
pub fn jobs_to_build(schedule: &ScheduleConfig) -> Vec<(JobKind, &str)> {
    JobKind::all(schedule).into_iter().filter(|(_, expression)| !expression.trim().is_empty()).collect()
}

/// The timezone's offset from UTC at `at`, in seconds; `None` for a name
/// the timezone database does not know.
pub fn utc_offset(timezone: &str, at: DateTime<Utc>) -> Option<i32> {
    use chrono::{Offset, TimeZone};
    let timezone: chrono_tz::Tz = timezone.parse().ok()?;
    Some(timezone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc())
}

/// Whether a successful run may have stored events the processors should take now (a sync).
pub fn nudges_processors(kind: JobKind) -> bool {
    matches!(kind, JobKind::AuroraSync | JobKind::TribeSync)
}

/// Whether a failed run raises `scheduled_job_failed` (it runs again at its
/// next time); a sync of a partner without a sync API has nothing to do and
/// is only logged.
pub fn is_alerted(error: &JobError) -> bool {
    !matches!(error, JobError::Sync(SyncError::NotConfigured(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_that_triggers_a_rebuild_follows_daylight_saving() {
        let winter = DateTime::parse_from_rfc3339("2026-01-15T12:00:00Z").unwrap().with_timezone(&Utc);
        let summer = DateTime::parse_from_rfc3339("2026-07-15T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(utc_offset("UTC", winter), Some(0));
        assert_eq!(utc_offset("America/Toronto", winter), Some(-18_000));
        assert_eq!(utc_offset("America/Toronto", summer), Some(-14_400));
        assert_eq!(utc_offset("Mars/Olympus", winter), None);
        let schedule = ScheduleConfig { timezone: "America/Toronto".into(), ..ScheduleConfig::default() };
        let built = Built { schedule: Some(schedule.clone()), offset: utc_offset(&schedule.timezone, winter) };
        assert!(!needs_rebuild(&built, &schedule, utc_offset(&schedule.timezone, winter)));
        assert!(needs_rebuild(&built, &schedule, utc_offset(&schedule.timezone, summer)), "daylight saving began");
        assert!(needs_rebuild(&Built::default(), &schedule, Some(-18_000)), "never built");
        let changed = ScheduleConfig { cleanup: "0 0 4 * * *".into(), ..schedule.clone() };
        assert!(needs_rebuild(&built, &changed, built.offset));
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
        let schedule = ScheduleConfig { aurora_sync: " ".into(), tribe_sync: String::new(), ..ScheduleConfig::default() };
        let kinds: Vec<JobKind> = jobs_to_build(&schedule).into_iter().map(|(kind, _)| kind).collect();
        assert!(!kinds.contains(&JobKind::AuroraSync) && !kinds.contains(&JobKind::TribeSync));
        assert!(kinds.contains(&JobKind::Cleanup));
    }

    #[test]
    fn only_a_sync_nudges_and_an_unconfigured_sync_is_not_alerted() {
        assert!(nudges_processors(JobKind::AuroraSync) && nudges_processors(JobKind::TribeSync));
        assert!(!nudges_processors(JobKind::Cleanup) && !nudges_processors(JobKind::StakingRewards));
        assert!(!is_alerted(&JobError::Sync(SyncError::NotConfigured(crate::webhooks::Partner::Tribe))));
        assert!(is_alerted(&JobError::Db(sea_orm::DbErr::Custom("down".into()))));
    }
}
