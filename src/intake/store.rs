//! Inbox writes: multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id`,
//! which both stores new events and tells duplicates apart in one round trip.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use entity::webhook_events::Column;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr, RuntimeErr};
use uuid::Uuid;

use crate::webhooks::Partner;

/// Inbox status of an event that waits for the rewards processor.
pub const STATUS_PENDING: &str = "pending";
/// Inbox status of a signed Stripe event of a type havend does not handle.
pub const STATUS_IGNORED: &str = "ignored";
/// Inbox status of a signed Stripe event havend cannot use.
pub const STATUS_INVALID: &str = "invalid";

/// A verified, validated event on its way into the inbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// havend's id for the row (UUID v7: index-friendly, time-ordered).
    pub id: Uuid,
    /// Who sent it.
    pub partner: Partner,
    /// The deduplication key from the signed payload.
    pub partner_event_id: String,
    /// The event name.
    pub event_type: String,
    /// `pending`, `ignored` or `invalid`.
    pub status: &'static str,
    /// Why an event is ignored or invalid.
    pub last_error: Option<String>,
    /// The raw signed body.
    pub body: bytes::Bytes,
    /// Received headers of interest, as a JSON object.
    pub headers: String,
    /// The client address.
    pub source_ip: Option<String>,
    /// The request that delivered it.
    pub request_id: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

impl NewEvent {
    /// The inbox's unique key.
    pub fn key(&self) -> (Partner, &str) {
        (self.partner, &self.partner_event_id)
    }
}

/// Inserts `events` in one statement; returns the ids of the rows it stored.
/// An event whose (partner, partner event id) is already stored is skipped.
/// The caller must pass at most one event per key.
pub async fn insert_new(db: &impl ConnectionTrait, events: &[&NewEvent]) -> Result<HashSet<Uuid>, DbErr> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    // Test hook (compiled in only with `test-hooks`): a row whose id ends in
    // "poison" fails its whole statement, as a row the database refuses would.
    fail::fail_point!(
        "intake::poisoned_row",
        events.iter().any(|e| e.partner_event_id.ends_with("poison")),
        |_| Err(DbErr::Custom("poisoned row (test hook)".into()))
    );
    let mut insert = Query::insert();
    insert.into_table(entity::webhook_events::Entity).columns([
        Column::Id,
        Column::Partner,
        Column::PartnerEventId,
        Column::EventType,
        Column::Status,
        Column::Attempts,
        Column::NextAttemptAt,
        Column::LastError,
        Column::Body,
        Column::Headers,
        Column::SourceIp,
        Column::RequestId,
        Column::ReceivedAt,
    ]);
    for event in events {
        let due = (event.status == STATUS_PENDING).then_some(event.received_at);
        insert.values_panic([
            Expr::val(event.id),
            Expr::val(event.partner.as_str()),
            Expr::val(event.partner_event_id.as_str()),
            Expr::val(event.event_type.as_str()),
            Expr::val(event.status),
            Expr::val(0i32),
            Expr::val(due),
            Expr::val(event.last_error.clone()),
            Expr::val(event.body.to_vec()),
            Expr::val(event.headers.as_str()),
            Expr::val(event.source_ip.clone()),
            Expr::val(event.request_id.as_str()),
            Expr::val(event.received_at),
        ]);
    }
    insert
        .on_conflict(OnConflict::columns([Column::Partner, Column::PartnerEventId]).do_nothing().to_owned())
        .returning_col(Column::Id);
    let rows = db.query_all(&insert).await?;
    rows.iter().map(|row| row.try_get::<Uuid>("", "id")).collect()
}

/// True when `error` says the database could not be reached (as opposed to
/// refusing one statement): retrying row by row would only wait longer.
pub fn is_unreachable(error: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            &**e,
            Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::Protocol(_) | Sqlx::WorkerCrashed
        ),
        _ => false,
    }
}
