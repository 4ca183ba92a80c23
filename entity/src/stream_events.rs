//! The live-update journal behind `GET /api/v1/stream`: one row per status
//! change of a transaction or a ticketed event, written by database triggers
//! in the same commit as the change, so a reconnecting client replays what
//! it missed from here.

use sea_orm::entity::prelude::*;

/// One status change.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stream_events")]
pub struct Model {
    /// Increasing (not necessarily in commit order): the SSE event id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `transaction` or `ticketing`: the SSE event name.
    pub topic: String,
    /// The transaction's id (text; hex on SQLite) or the ticketed event's id.
    pub subject: String,
    /// The new status.
    pub status: String,
    /// `mint` or `burn` (transactions).
    pub kind: Option<String>,
    /// Amount in base units, a decimal string (transactions).
    pub amount: Option<String>,
    /// The mined hash, when known (transactions).
    pub tx_hash: Option<String>,
    /// The user's reference (transactions): what `?user=` filters on.
    pub user_ref: Option<String>,
    /// The source row's `updated_at`.
    pub occurred_at: DateTimeUtc,
    /// When the row was journaled (retention is counted from here).
    pub created_at: DateTimeUtc,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
