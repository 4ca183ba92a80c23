//! The webhook inbox: every verified partner event, stored before it is acknowledged.

use sea_orm::entity::prelude::*;

/// One partner event as received.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    /// havend's own id for the event.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `aurora`, `tribe`, `stripe` or `hi-events`.
    pub partner: String,
    /// The deduplication key from the signed payload (unique with `partner`).
    pub partner_event_id: String,
    /// The event name (`booking-created`, `payment_intent.succeeded`, …).
    pub event_type: String,
    /// `pending`, `processed`, `ignored`, `invalid` or `dead_letter`.
    pub status: String,
    /// Processing attempts so far.
    pub attempts: i32,
    /// When the processor may (re)try it.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// Why it was ignored, invalid or why the last attempt failed.
    pub last_error: Option<String>,
    /// The raw signed body, byte for byte.
    pub body: Vec<u8>,
    /// Received headers of interest, as a JSON object.
    pub headers: String,
    /// The client address the request came from.
    pub source_ip: Option<String>,
    /// The `X-Request-Id` of the request that delivered it.
    pub request_id: String,
    /// When it was stored.
    pub received_at: DateTimeUtc,
    /// When the processor finished with it.
    pub processed_at: Option<DateTimeUtc>,
    /// The `daemon_name` of the daemon whose processor finished it
    /// (processed or invalid).
    pub processed_by: Option<String>,
    /// The lease token of the processor working on it; its writes commit only while this holds.
    pub claim_token: Option<Uuid>,
    /// Until when the claim holds; a crashed processor's claim lapses then.
    pub claimed_until: Option<DateTimeUtc>,
    /// Claims that lapsed without an outcome (a processor crashed or hung
    /// on it); after `processor.max_attempts` of them it is dead-lettered.
    pub lapses: i32,
    /// When the raw body (personal data) was purged after the retention
    /// period; the deduplication key stays.
    pub body_purged_at: Option<DateTimeUtc>,
}

/// The inbox has no relations yet.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
