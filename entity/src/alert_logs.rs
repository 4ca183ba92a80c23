//! The result of every alert delivery attempt, and of every throttling or
//! routing decision, per alert.

use sea_orm::entity::prelude::*;

/// One attempt's result, or one decision about an alert.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_logs")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The alert.
    pub alert_id: Uuid,
    /// The configured channel's name (none for a decision about the alert as a whole).
    pub channel: Option<String>,
    /// 1 for the first attempt on a channel (0 for a decision).
    pub attempt: i32,
    /// `delivered`, `retrying` (this attempt failed, another follows),
    /// `failed` (the last attempt failed), `throttled` or `unrouted`.
    pub outcome: String,
    /// What happened, without secrets (webhook URLs appear as scheme://host).
    pub detail: Option<String>,
    /// The daemon that made the attempt.
    pub daemon_name: String,
    /// When.
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
