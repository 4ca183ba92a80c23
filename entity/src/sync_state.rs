//! Partner syncs' progress: a UTC high-water mark per partner, never the wall clock.

use sea_orm::entity::prelude::*;

/// One partner's sync progress.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_state")]
pub struct Model {
    /// `aurora` or `tribe`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub partner: String,
    /// The partner's `next_since` from the last successful sync.
    pub since: DateTimeUtc,
    /// When that sync ran.
    pub last_run_at: DateTimeUtc,
    /// Events it stored that were new.
    pub last_stored: i32,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
