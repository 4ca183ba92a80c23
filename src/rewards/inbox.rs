//! The inbox as the processor's queue: claims with a lease token, the
//! conditional status change that commits with the handler's writes, retries,
//! dead letters, replay and the operator's reads. The row itself is the queue, so nothing is
//! enqueued after a commit and nothing is lost in between.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::webhook_events;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement};
use uuid::Uuid;

pub use crate::intake::store::{STATUS_INVALID as INVALID, STATUS_PENDING as PENDING};

/// Inbox status: the handler's effects are committed.
pub const PROCESSED: &str = "processed";
/// Inbox status: failed `max_attempts` times; waits for `havend events replay`.
pub const DEAD_LETTER: &str = "dead_letter";

/// Claims due pending events for `token` until `now + lease`: one event
/// whose last claim lapsed without an outcome, alone, if there is one;
/// otherwise up to `limit` unclaimed ones. PostgreSQL skips rows another
/// processor has locked, so several processors and daemons share the inbox;
/// SQLite serializes writers, so each UPDATE is the whole claim.
///
/// Taking over a lapsed claim counts a lapse on the event (every outcome
/// clears the claim and the count). A lapsed event is claimed alone so that
/// when it crashes or hangs its processor again, the lapse falls on it, not
/// on the events that waited behind it in a batch.
pub async fn claim(db: &impl ConnectionTrait, token: Uuid, lease: Duration, limit: u64, now: DateTime<Utc>) -> Result<Vec<webhook_events::Model>, DbErr> {
    // Most polls find nothing. On SQLite a read costs no write lock (it has
    // one for the whole database), so the UPDATE runs only when something is
    // due. On PostgreSQL a claim that finds nothing locks nothing and is its
    // own check, while this read, planned once for any status, became a
    // sequential scan of the whole inbox (4.4 ms a batch at 60,000 events).
    if db.get_database_backend() == DbBackend::Sqlite && !any_due(db, now).await? {
        return Ok(Vec::new());
    }
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
    // Through the partial index of claimed rows, longest lapsed first.
    let lapsed = claim_where(
        db,
        token,
        until,
        now,
        Which { condition: "claim_token IS NOT NULL AND claimed_until < ", also: ", lapses = lapses + 1", order: "claimed_until", sqlite_index: Some(CLAIMED_INDEX) },
        1,
    )
    .await?;
    if !lapsed.is_empty() {
        return Ok(lapsed);
    }
    claim_where(db, token, until, now, Which { condition: "claim_token IS NULL AND next_attempt_at <= ", also: "", order: "next_attempt_at", sqlite_index: None }, limit).await
}

/// Whether any pending event is due at `now`.
async fn any_due(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let due: Option<Uuid> = webhook_events::Entity::find()
        .select_only()
        .column(webhook_events::Column::Id)
        .filter(webhook_events::Column::Status.eq(PENDING))
        .filter(webhook_events::Column::NextAttemptAt.lte(now))
        .into_tuple()
        .one(db)
        .await?;
    Ok(due.is_some())
}

/// The partial index of claimed rows (migration 000076).
const CLAIMED_INDEX: &str = "webhook_events_claimed_idx";

/// Which due rows a claim statement takes.
struct Which<'a> {
    /// Completed by the `now` parameter.
    condition: &'a str,
    /// More SET clauses.
    also: &'a str,
    /// The first `limit` by this.
    order: &'a str,
    /// The index SQLite must search. Its planner prefers the equality on
    /// `status` (the due index) over a partial index, and would walk every
    /// pending row of a backlog to find the few claimed ones, at each claim
    /// and under the write lock; PostgreSQL picks the partial index itself.
    sqlite_index: Option<&'a str>,
}

/// One claim statement: due pending rows matching `which` get `token`
/// until `until`.
async fn claim_where(
    db: &impl ConnectionTrait,
    token: Uuid,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    which: Which<'_>,
    limit: u64,
) -> Result<Vec<webhook_events::Model>, DbErr> {
    let Which { condition, also, order, sqlite_index } = which;
    let indexed_by = sqlite_index.map(|index| format!(" INDEXED BY {index}")).unwrap_or_default();
    let backend = db.get_database_backend();
    let sql = match backend {
        // `= ANY(ARRAY(…))`, not `IN (…)`: the statement's cached generic
        // plan joined the picked ids against a sequential scan of the inbox.
        DbBackend::Postgres => format!(
            "UPDATE webhook_events SET claim_token = $1, claimed_until = $2{also} WHERE id = ANY(ARRAY(\
             SELECT id FROM webhook_events WHERE status = 'pending' AND next_attempt_at <= $3 AND {condition}$3 \
             ORDER BY {order} LIMIT $4 FOR UPDATE SKIP LOCKED)) RETURNING *"
        ),
        _ => format!(
            "UPDATE webhook_events SET claim_token = ?, claimed_until = ?{also} WHERE id IN (\
             SELECT id FROM webhook_events{indexed_by} WHERE status = 'pending' AND next_attempt_at <= ? AND {condition}? \
             ORDER BY {order} LIMIT ?) RETURNING *"
        ),
    };
    let values: Vec<sea_orm::Value> = match backend {
        DbBackend::Postgres => vec![token.into(), until.into(), now.into(), (limit as i64).into()],
        _ => vec![token.into(), until.into(), now.into(), now.into(), (limit as i64).into()],
    };
    webhook_events::Entity::find().from_raw_sql(Statement::from_sql_and_values(backend, sql, values)).all(db).await
}

/// `status = 'pending'` for a statement that finds its events by a list of
/// ids. SQLite's planner, without statistics, takes an equality on the due
/// index's first column for about ten rows and prefers it to 64 lookups by
/// id, then walks every pending row of a backlog (measured: 13 ms per
/// batch at 60,000 pending, under the write lock); the unary `+` keeps the
/// term off any index there. PostgreSQL plans with statistics.
pub fn still_pending(backend: DbBackend) -> String {
    let column = if backend == DbBackend::Sqlite { "+status" } else { "status" };
    format!("{column} = '{PENDING}'")
}

/// Sets the event's final `status` (processed or invalid), recording
/// `daemon` (its `daemon_name`) as the one that processed it, only while `token` still
/// holds its claim; false when it does not (the lease lapsed and another
/// processor took it), and the caller must roll back.
pub async fn finish(db: &impl ConnectionTrait, id: Uuid, token: Uuid, status: &str, note: Option<String>, daemon: &str) -> Result<bool, DbErr> {
    let update = webhook_events::Entity::update_many()
        .col_expr(webhook_events::Column::Status, Expr::value(status))
        .col_expr(webhook_events::Column::LastError, Expr::value(note))
        .col_expr(webhook_events::Column::ProcessedAt, Expr::value(Some(Utc::now())))
        .col_expr(webhook_events::Column::ProcessedBy, Expr::value(Some(daemon.to_owned())))
        .col_expr(webhook_events::Column::Lapses, Expr::value(0));
    release_claim(db, update, id, token).await
}

/// Longest `last_error` kept, in characters.
const MAX_ERROR_CHARS: usize = 2_000;

/// `error` as it can always be stored: control characters (PostgreSQL
/// refuses NUL in text, and an error may quote partner data) replaced, and
/// cut to [`MAX_ERROR_CHARS`]. Otherwise recording the failure would fail
/// the same way, and the event would never count toward its dead letter.
pub fn storable(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).map(|c| if c.is_control() && c != '\n' { '\u{fffd}' } else { c }).collect()
}

/// Dead-letters the event (its last failure counted), only while `token`
/// holds the claim.
pub async fn dead_letter(db: &impl ConnectionTrait, id: Uuid, token: Uuid, error: &str) -> Result<bool, DbErr> {
    let update = webhook_events::Entity::update_many()
        .col_expr(webhook_events::Column::Status, Expr::value(DEAD_LETTER))
        .col_expr(webhook_events::Column::Attempts, Expr::col(webhook_events::Column::Attempts).add(1))
        .col_expr(webhook_events::Column::LastError, Expr::value(Some(storable(error))));
    release_claim(db, update, id, token).await
}

/// Gives the claim back: tried again at `next_at`. `count` adds one to the
/// attempts (deterministic failures only). False when the claim was lost.
pub async fn retry_later(db: &impl ConnectionTrait, id: Uuid, token: Uuid, next_at: DateTime<Utc>, count: bool, error: &str) -> Result<bool, DbErr> {
    let mut update = webhook_events::Entity::update_many()
        .col_expr(webhook_events::Column::NextAttemptAt, Expr::value(Some(next_at)))
        .col_expr(webhook_events::Column::LastError, Expr::value(Some(storable(error))))
        .col_expr(webhook_events::Column::Lapses, Expr::value(0));
    if count {
        update = update.col_expr(webhook_events::Column::Attempts, Expr::col(webhook_events::Column::Attempts).add(1));
    }
    release_claim(db, update, id, token).await
}

/// Runs `update` with the claim cleared, only on a pending event `token`
/// still holds: every write the processor makes to a claimed event goes
/// through this compare-and-set.
async fn release_claim(db: &impl ConnectionTrait, update: sea_orm::UpdateMany<webhook_events::Entity>, id: Uuid, token: Uuid) -> Result<bool, DbErr> {
    let result = update
        .col_expr(webhook_events::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
        .col_expr(webhook_events::Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(webhook_events::Column::Id.eq(id))
        .filter(webhook_events::Column::ClaimToken.eq(token))
        .filter(webhook_events::Column::Status.eq(PENDING))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The newest events, up to `limit`, optionally only one partner's or one
/// status's (the admin API's event list).
pub async fn list_events(db: &impl ConnectionTrait, partner: Option<&str>, status: Option<&str>, limit: u64) -> Result<Vec<webhook_events::Model>, DbErr> {
    let mut select = webhook_events::Entity::find();
    if let Some(partner) = partner {
        select = select.filter(webhook_events::Column::Partner.eq(partner));
    }
    if let Some(status) = status {
        select = select.filter(webhook_events::Column::Status.eq(status));
    }
    select.order_by_desc(webhook_events::Column::ReceivedAt).limit(limit).all(db).await
}

/// The event `partner` sent under `partner_event_id`.
pub async fn find_event(db: &impl ConnectionTrait, partner: &str, partner_event_id: &str) -> Result<Option<webhook_events::Model>, DbErr> {
    webhook_events::Entity::find()
        .filter(webhook_events::Column::Partner.eq(partner))
        .filter(webhook_events::Column::PartnerEventId.eq(partner_event_id))
        .one(db)
        .await
}

/// How a replay request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The dead-lettered event is pending again, with fresh attempts.
    Requeued(Uuid),
    /// No event has that id.
    NotFound,
    /// The event is not dead-lettered (its status is given); nothing changed.
    NotDeadLettered(String),
}

/// Re-queues a dead-lettered event (`havend events replay`, the admin API).
/// `reference` is havend's event id or `{partner}:{partner event id}`.
pub async fn replay(db: &impl ConnectionTrait, reference: &str) -> Result<Replay, DbErr> {
    let event = match Uuid::parse_str(reference) {
        Ok(id) => webhook_events::Entity::find_by_id(id).one(db).await?,
        Err(_) => match reference.split_once(':') {
            Some((partner, key)) => {
                webhook_events::Entity::find()
                    .filter(webhook_events::Column::Partner.eq(partner))
                    .filter(webhook_events::Column::PartnerEventId.eq(key))
                    .one(db)
                    .await?
            }
            None => None,
        },
    };
    let Some(event) = event else { return Ok(Replay::NotFound) };
    let result = webhook_events::Entity::update_many()
        .col_expr(webhook_events::Column::Status, Expr::value(PENDING))
        .col_expr(webhook_events::Column::Attempts, Expr::value(0))
        .col_expr(webhook_events::Column::Lapses, Expr::value(0))
        .col_expr(webhook_events::Column::NextAttemptAt, Expr::value(Some(Utc::now())))
        .col_expr(webhook_events::Column::ProcessedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(webhook_events::Column::ProcessedBy, Expr::value(Option::<String>::None))
        .col_expr(webhook_events::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
        .col_expr(webhook_events::Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(webhook_events::Column::Id.eq(event.id))
        .filter(webhook_events::Column::Status.eq(DEAD_LETTER))
        .exec(db)
        .await?;
    Ok(if result.rows_affected == 1 { Replay::Requeued(event.id) } else { Replay::NotDeadLettered(event.status) })
}

/// Purges the raw bodies (personal data) of events in a final state received
/// or finished before `before`; the row and its deduplication key stay, and
/// a pending or dead-lettered event keeps its body (it may still be
/// processed or replayed). Returns how many bodies were purged.
pub async fn purge_bodies(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64, DbErr> {
    use sea_orm::Condition;
    let old_enough = Condition::any()
        .add(webhook_events::Column::ProcessedAt.lt(before))
        .add(Condition::all().add(webhook_events::Column::ProcessedAt.is_null()).add(webhook_events::Column::ReceivedAt.lt(before)));
    let result = webhook_events::Entity::update_many()
        .col_expr(webhook_events::Column::Body, Expr::value(Vec::<u8>::new()))
        .col_expr(webhook_events::Column::BodyPurgedAt, Expr::value(Some(Utc::now())))
        .filter(webhook_events::Column::Status.is_in([PROCESSED, INVALID, crate::intake::store::STATUS_IGNORED]))
        .filter(webhook_events::Column::BodyPurgedAt.is_null())
        .filter(old_enough)
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_error_has_no_control_characters_and_a_bounded_length() {
        assert_eq!(storable("no user \0x\u{1b}y\nz"), "no user \u{fffd}x\u{fffd}y\nz");
        assert_eq!(storable(&"é".repeat(5_000)).chars().count(), MAX_ERROR_CHARS);
    }
}
