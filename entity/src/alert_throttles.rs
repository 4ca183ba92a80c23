//! Throttle windows: per category and subject, the alert that was delivered
//! and how many repeats were held back until its window ends.

use sea_orm::entity::prelude::*;

/// One category+subject's current window.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_throttles")]
pub struct Model {
    /// SHA-256 (hex) of the category and subject.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// The alert that opened the window (and was delivered).
    pub leader_alert_id: Uuid,
    /// Repeats raised before this are throttled.
    pub window_until: DateTimeUtc,
    /// Repeats throttled in this window.
    pub suppressed: i64,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
