//! Inbox writes: `INSERT … ON CONFLICT DO NOTHING RETURNING id`, which both
//! stores new events and tells duplicates apart in one round trip; many rows
//! per statement (`unnest` arrays on PostgreSQL, `VALUES` lists on SQLite).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use entity::webhook_events::Column;
use sea_orm::sea_query::{ArrayType, Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, RuntimeErr, Statement, Value};
use uuid::Uuid;

use crate::config::{INBOX_ROW_PARAMETERS, SQLITE_MAX_BIND_PARAMETERS};
use crate::webhooks::Partner;

/// Inbox status of an event that waits for the rewards processor.
pub const STATUS_PENDING: &str = "pending";
/// Inbox status of a signed Stripe event of a type havend does not handle.
pub const STATUS_IGNORED: &str = "ignored";
/// Inbox status of a signed Stripe event havend cannot use.
pub const STATUS_INVALID: &str = "invalid";

/// The inbox status (and its reason) an event is stored with.
fn status_of(disposition: &crate::webhooks::Disposition) -> (&'static str, Option<String>) {
    use crate::webhooks::Disposition;
    match disposition {
        Disposition::Pending => (STATUS_PENDING, None),
        Disposition::Ignored(reason) => (STATUS_IGNORED, Some(reason.clone())),
        Disposition::Invalid(reason) => (STATUS_INVALID, Some(reason.clone())),
    }
}

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

/// Where a [`NewEvent`] came from, besides its body.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Received headers of interest, as a JSON object.
    pub headers: String,
    /// The client address (none for a sync).
    pub source_ip: Option<String>,
    /// The request (or sync run) that delivered it.
    pub request_id: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

impl NewEvent {
    /// The inbox row of a validated event, the one way webhooks and partner
    /// syncs build it, so both store the same thing for the same payload.
    pub fn new(partner: Partner, parsed: crate::webhooks::ParsedEvent, body: bytes::Bytes, delivery: Delivery) -> NewEvent {
        let (status, last_error) = status_of(&parsed.disposition);
        NewEvent {
            id: Uuid::now_v7(),
            partner,
            partner_event_id: parsed.partner_event_id,
            event_type: parsed.event_type,
            status,
            last_error,
            body,
            headers: delivery.headers,
            source_ip: delivery.source_ip,
            request_id: delivery.request_id,
            received_at: delivery.received_at,
        }
    }

    /// The inbox's unique key.
    pub fn key(&self) -> (Partner, &str) {
        (self.partner, &self.partner_event_id)
    }
}

/// The inbox columns a new event fills, in insert order.
const COLUMNS: [Column; INBOX_ROW_PARAMETERS] = [
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
];

/// Rows one multi-row `VALUES` insert may hold on SQLite: each row binds one
/// parameter per column, and SQLite allows [`SQLITE_MAX_BIND_PARAMETERS`].
pub const SQLITE_ROWS_PER_INSERT: usize = SQLITE_MAX_BIND_PARAMETERS / INBOX_ROW_PARAMETERS;

/// PostgreSQL: one array parameter per column, expanded by `unnest`, so the
/// statement text (and its prepared statement, cached per connection) is the
/// same for every batch size, and the 65,535 bind-parameter limit cannot be
/// reached however large the batch. `$12` is the status whose rows are due at
/// once. Empty strings stand for NULL: sea-query binds arrays without NULL
/// elements, and an empty reason or client address says nothing anyway.
const POSTGRES_UNNEST_INSERT: &str = "\
INSERT INTO webhook_events (id, partner, partner_event_id, event_type, status, attempts, next_attempt_at, \
last_error, body, headers, source_ip, request_id, received_at) \
SELECT e.id, e.partner, e.partner_event_id, e.event_type, e.status, 0, \
CASE WHEN e.status = $12 THEN e.received_at END, NULLIF(e.last_error, ''), e.body, e.headers, \
NULLIF(e.source_ip, ''), e.request_id, e.received_at \
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[], \
$9::text[], $10::text[], $11::timestamptz[]) \
AS e(id, partner, partner_event_id, event_type, status, last_error, body, headers, source_ip, request_id, received_at) \
ON CONFLICT (partner, partner_event_id) DO NOTHING \
RETURNING id";

/// Inserts `events`; returns the ids of the rows it stored. An event whose
/// (partner, partner event id) is already stored is skipped. The caller must
/// pass at most one event per key.
///
/// Any number of events fits: PostgreSQL takes them in one `unnest`
/// statement, SQLite in statements of at most [`SQLITE_ROWS_PER_INSERT`]
/// rows. Each statement commits on its own unless `db` is a transaction, so
/// after an error the rows of earlier SQLite statements may be stored.
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
    match db.get_database_backend() {
        DbBackend::Postgres => insert_unnest(db, events).await,
        _ => {
            let mut stored = HashSet::with_capacity(events.len());
            for chunk in events.chunks(SQLITE_ROWS_PER_INSERT) {
                stored.extend(insert_values(db, chunk).await?);
            }
            Ok(stored)
        }
    }
}

/// One `unnest` insert of any number of rows (PostgreSQL).
async fn insert_unnest(db: &impl ConnectionTrait, events: &[&NewEvent]) -> Result<HashSet<Uuid>, DbErr> {
    fn array(kind: ArrayType, values: impl Iterator<Item = Value>) -> Value {
        Value::Array(kind, Some(Box::new(values.collect())))
    }
    let text = |field: fn(&NewEvent) -> &str| array(ArrayType::String, events.iter().map(move |e| Value::from(field(e))));
    let values = [
        array(ArrayType::Uuid, events.iter().map(|e| Value::from(e.id))),
        text(|e| e.partner.as_str()),
        text(|e| &e.partner_event_id),
        text(|e| &e.event_type),
        text(|e| e.status),
        text(|e| e.last_error.as_deref().unwrap_or_default()),
        array(ArrayType::Bytes, events.iter().map(|e| Value::from(e.body.to_vec()))),
        text(|e| &e.headers),
        text(|e| e.source_ip.as_deref().unwrap_or_default()),
        text(|e| &e.request_id),
        array(ArrayType::ChronoDateTimeUtc, events.iter().map(|e| Value::from(e.received_at))),
        Value::from(STATUS_PENDING),
    ];
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, POSTGRES_UNNEST_INSERT, values);
    let rows = db.query_all_raw(statement).await?;
    rows.iter().map(|row| row.try_get::<Uuid>("", "id")).collect()
}

/// One multi-row `VALUES` insert (SQLite); at most [`SQLITE_ROWS_PER_INSERT`] rows.
async fn insert_values(db: &impl ConnectionTrait, events: &[&NewEvent]) -> Result<HashSet<Uuid>, DbErr> {
    let mut insert = Query::insert();
    insert.into_table(entity::webhook_events::Entity).columns(COLUMNS);
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
///
/// A protocol error is not among them: sqlx reports a statement it cannot
/// send, such as one with more than 65,535 bind parameters ("too many
/// arguments for query"), as a protocol error, and that is a fault of the
/// statement, which the row-by-row retry gets past. Were the connection
/// really broken, the first row of that retry fails with an I/O error.
pub fn is_unreachable(error: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(&**e, Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_statement_the_driver_cannot_encode_is_a_row_error_not_an_outage() {
        let sqlx = |error| DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)));
        let too_many = sqlx(sea_orm::sqlx::Error::Protocol("PgConnection::run(): too many arguments for query: 78533".into()));
        assert!(!is_unreachable(&too_many));
        assert!(is_unreachable(&sqlx(sea_orm::sqlx::Error::PoolTimedOut)));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_unreachable(&sqlx(sea_orm::sqlx::Error::Io(io))));
    }

    #[test]
    fn a_full_sqlite_insert_stays_within_the_bind_parameter_limit() {
        assert_eq!(SQLITE_ROWS_PER_INSERT, 2_520);
        assert!(SQLITE_ROWS_PER_INSERT * COLUMNS.len() <= SQLITE_MAX_BIND_PARAMETERS);
    }
}
