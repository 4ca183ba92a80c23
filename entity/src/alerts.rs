//! Alerts raised for operators; the table is also the delivery queue.

use sea_orm::entity::prelude::*;

/// One alert.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
    pub severity: String,
    /// `wallet_fenced`, `foreign_nonce`, `low_balance`, `circuit_open`, …
    pub category: String,
    /// What happened, for people.
    pub message: String,
    /// JSON details.
    pub details: String,
    /// When.
    pub created_at: DateTimeUtc,
    /// `pending` (waiting for delivery), `delivered`, `failed` (a channel
    /// gave up after its retries; retried from `next_attempt_at` while that
    /// is set), `throttled` (a repeat within the window), `unrouted` (no
    /// channel takes it) or `skipped` (raised before delivery existed).
    pub delivery_status: String,
    /// The lease token of the daemon delivering it; its result is written only while this holds.
    pub claim_token: Option<Uuid>,
    /// Until when the claim holds; a crashed daemon's claim lapses then.
    pub claimed_until: Option<DateTimeUtc>,
    /// When its delivery finished (whatever the outcome).
    pub delivered_at: Option<DateTimeUtc>,
    /// When a `failed` alert's next delivery round may start; none once it
    /// is delivered or past the delivery horizon (failed for good).
    pub next_attempt_at: Option<DateTimeUtc>,
}

/// Relations are expressed by ids in queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
