//! The alerts table as the delivery queue: claims with a lease token, the
//! conditional finish, throttle windows, `alert_logs`, and the list and
//! stats operators read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{alert_logs, alert_throttles, alerts};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, Statement,
};
use serde::Serialize;
use uuid::Uuid;

use super::plan::{self, Throttle, Window};

/// Delivery status: waiting to be delivered.
pub const PENDING: &str = "pending";
/// Delivery status: every channel it was routed to took it.
pub const DELIVERED: &str = "delivered";
/// Delivery status: some channel still failed after its retries; another
/// round follows at `next_attempt_at` while that is set.
pub const FAILED: &str = "failed";
/// Delivery status: a repeat within its throttle window; counted, not sent.
pub const THROTTLED: &str = "throttled";
/// Delivery status: no channel takes it.
pub const UNROUTED: &str = "unrouted";

/// Log outcome: the attempt failed and another follows.
pub const RETRYING: &str = "retrying";

/// Claims up to `limit` alerts to deliver whose claim is free or lapsed,
/// for `token` until `now + lease`: undelivered ones first, oldest first,
/// then `failed` ones whose next round is due (so a channel that is down
/// does not hold up new alerts for the others). PostgreSQL skips rows
/// another daemon is claiming; SQLite serializes writers, so the single
/// UPDATE is the whole claim.
pub async fn claim(db: &impl ConnectionTrait, token: Uuid, lease: Duration, limit: u64, now: DateTime<Utc>) -> Result<Vec<alerts::Model>, DbErr> {
    let backend = db.get_database_backend();
    let until = lease_end(now, lease);
    let sql = match backend {
        DbBackend::Postgres => {
            "UPDATE alerts SET claim_token = $1, claimed_until = $2 WHERE id IN (\
             SELECT id FROM alerts WHERE (delivery_status = 'pending' \
             OR (delivery_status = 'failed' AND next_attempt_at <= $3)) \
             AND (claimed_until IS NULL OR claimed_until < $3) \
             ORDER BY CASE WHEN delivery_status = 'pending' THEN 0 ELSE 1 END, created_at LIMIT $4 \
             FOR UPDATE SKIP LOCKED) RETURNING *"
        }
        _ => {
            "UPDATE alerts SET claim_token = ?1, claimed_until = ?2 WHERE id IN (\
             SELECT id FROM alerts WHERE (delivery_status = 'pending' \
             OR (delivery_status = 'failed' AND next_attempt_at <= ?3)) \
             AND (claimed_until IS NULL OR claimed_until < ?3) \
             ORDER BY CASE WHEN delivery_status = 'pending' THEN 0 ELSE 1 END, created_at LIMIT ?4) RETURNING *"
        }
    };
    let values: Vec<sea_orm::Value> = vec![token.into(), until.into(), now.into(), (limit as i64).into()];
    let mut claimed = alerts::Entity::find().from_raw_sql(Statement::from_sql_and_values(backend, sql, values)).all(db).await?;
    claimed.sort_by_key(|alert| alert.created_at);
    Ok(claimed)
}

/// Claims one alert by id (`havend alerts test` delivers its own alert when
/// no daemon got to it first); none when it is delivered or claimed.
pub async fn claim_one(db: &impl ConnectionTrait, id: Uuid, token: Uuid, lease: Duration, now: DateTime<Utc>) -> Result<Option<alerts::Model>, DbErr> {
    let result = alerts::Entity::update_many()
        .col_expr(alerts::Column::ClaimToken, Expr::value(Some(token)))
        .col_expr(alerts::Column::ClaimedUntil, Expr::value(Some(lease_end(now, lease))))
        .filter(alerts::Column::Id.eq(id))
        .filter(alerts::Column::DeliveryStatus.eq(PENDING))
        .filter(alerts::Column::ClaimedUntil.is_null().or(alerts::Column::ClaimedUntil.lt(now)))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Ok(None);
    }
    alerts::Entity::find_by_id(id).one(db).await
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

/// Sets the alert's delivery status after a round, and when the next round
/// may start (none: this status is final), only while `token` still holds
/// its claim; false when another daemon took it over (its lease lapsed).
pub async fn finish(db: &impl ConnectionTrait, id: Uuid, token: Uuid, status: &str, next_attempt_at: Option<DateTime<Utc>>) -> Result<bool, DbErr> {
    let result = alerts::Entity::update_many()
        .col_expr(alerts::Column::DeliveryStatus, Expr::value(status))
        .col_expr(alerts::Column::DeliveredAt, Expr::value(Some(Utc::now())))
        .col_expr(alerts::Column::ClaimToken, Expr::value(Option::<Uuid>::None))
        .col_expr(alerts::Column::ClaimedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(alerts::Column::NextAttemptAt, Expr::value(next_attempt_at))
        .filter(alerts::Column::Id.eq(id))
        .filter(alerts::Column::ClaimToken.eq(token))
        .filter(alerts::Column::DeliveryStatus.is_in([PENDING, FAILED]))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// What throttling decided for one alert, with the count to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Deliver it (repeats throttled in the window before).
    Lead(i64),
    /// Throttled: the n-th repeat in its window.
    Repeat(i64),
}

/// Takes the throttle decision for `alert` atomically against other
/// deliveries, in this daemon or another: [`plan::throttle`] decides on the
/// window read, and the write is a compare-and-set on the window's leader,
/// so two daemons cannot both open a window. On contention it reads again.
pub async fn throttle(db: &impl ConnectionTrait, key: &str, alert: Uuid, raised_at: DateTime<Utc>, window: Duration) -> Result<Throttled, DbErr> {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero());
    // Each lost race means another alert of this key moved the window; a few
    // rounds settle it, and delivering is the safe side when they do not.
    for _ in 0..5 {
        let row = alert_throttles::Entity::find_by_id(key.to_owned()).one(db).await?;
        let current = row.as_ref().map(|row| Window { leader: row.leader_alert_id, until: row.window_until, suppressed: row.suppressed });
        match (plan::throttle(current.as_ref(), alert, raised_at), &current) {
            (Throttle::Lead { .. }, Some(current)) if current.leader == alert => return Ok(Throttled::Lead(0)),
            (Throttle::Lead { .. }, None) => {
                let inserted = alert_throttles::Entity::insert(alert_throttles::ActiveModel {
                    key: Set(key.to_owned()),
                    leader_alert_id: Set(alert),
                    window_until: Set(raised_at + window),
                    suppressed: Set(0),
                })
                .on_conflict(OnConflict::column(alert_throttles::Column::Key).do_nothing().to_owned())
                .exec_without_returning(db)
                .await?;
                if inserted == 1 {
                    return Ok(Throttled::Lead(0));
                }
            }
            (Throttle::Lead { repeats_before }, Some(current)) => {
                let moved = alert_throttles::Entity::update_many()
                    .col_expr(alert_throttles::Column::LeaderAlertId, Expr::value(alert))
                    .col_expr(alert_throttles::Column::WindowUntil, Expr::value(raised_at + window))
                    .col_expr(alert_throttles::Column::Suppressed, Expr::value(0i64))
                    .filter(alert_throttles::Column::Key.eq(key))
                    .filter(alert_throttles::Column::LeaderAlertId.eq(current.leader))
                    .exec(db)
                    .await?;
                if moved.rows_affected == 1 {
                    return Ok(Throttled::Lead(repeats_before));
                }
            }
            (Throttle::Suppress, Some(current)) => {
                let counted = alert_throttles::Entity::update_many()
                    .col_expr(alert_throttles::Column::Suppressed, Expr::col(alert_throttles::Column::Suppressed).add(1))
                    .filter(alert_throttles::Column::Key.eq(key))
                    .filter(alert_throttles::Column::LeaderAlertId.eq(current.leader))
                    .exec(db)
                    .await?;
                if counted.rows_affected == 1 {
                    return Ok(Throttled::Repeat(current.suppressed + 1));
                }
            }
            // The planner never suppresses without a window; deliver rather than drop.
            (Throttle::Suppress, None) => return Ok(Throttled::Lead(0)),
        }
    }
    Ok(Throttled::Lead(0))
}

/// What earlier rounds did with `alert`, per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelHistory {
    /// Channels that already took it (a delivery cut short by a crash, or a
    /// round after a failed one, does not send to them twice).
    pub delivered: BTreeSet<String>,
    /// The last attempt's number per channel, so a later round's attempts
    /// go on counting.
    pub last_attempt: BTreeMap<String, i32>,
}

/// Reads `alert`'s earlier attempts.
pub async fn channel_history(db: &impl ConnectionTrait, alert: Uuid) -> Result<ChannelHistory, DbErr> {
    let rows = alert_logs::Entity::find().filter(alert_logs::Column::AlertId.eq(alert)).filter(alert_logs::Column::Channel.is_not_null()).all(db).await?;
    let mut history = ChannelHistory::default();
    for row in rows {
        let Some(channel) = row.channel else { continue };
        if row.outcome == DELIVERED {
            history.delivered.insert(channel.clone());
        }
        let last = history.last_attempt.entry(channel).or_default();
        *last = std::cmp::max(*last, row.attempt);
    }
    Ok(history)
}

/// One `alert_logs` row to write.
#[derive(Debug, Clone)]
pub struct LogEntry<'a> {
    /// The alert.
    pub alert: Uuid,
    /// The channel's name (none: a decision about the whole alert).
    pub channel: Option<&'a str>,
    /// The attempt's number on that channel (0 for a decision).
    pub attempt: i32,
    /// `delivered`, `retrying`, `failed`, `throttled` or `unrouted`.
    pub outcome: &'a str,
    /// What happened (never a secret).
    pub detail: Option<String>,
    /// The daemon writing it.
    pub daemon: &'a str,
}

/// Appends one row to `alert_logs`.
pub async fn log(db: &impl ConnectionTrait, entry: LogEntry<'_>) -> Result<(), DbErr> {
    crate::telemetry::metrics::alert_delivery(entry.channel, entry.outcome);
    alert_logs::ActiveModel {
        id: Set(Uuid::now_v7()),
        alert_id: Set(entry.alert),
        channel: Set(entry.channel.map(str::to_owned)),
        attempt: Set(entry.attempt),
        outcome: Set(entry.outcome.to_owned()),
        detail: Set(entry.detail),
        daemon_name: Set(entry.daemon.to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// An alert with its delivery state and results, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRecord {
    /// Row id.
    pub id: Uuid,
    /// `INFO` … `CRITICAL`.
    pub severity: String,
    /// Category.
    pub category: String,
    /// Message.
    pub message: String,
    /// Details (JSON).
    pub details: serde_json::Value,
    /// When raised.
    pub created_at: DateTime<Utc>,
    /// Delivery status.
    pub delivery_status: String,
    /// When delivery finished (the last round, for a `failed` alert).
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a `failed` alert's next round is due; none: no further round.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Every attempt's result, oldest first.
    pub logs: Vec<LogRecord>,
}

/// One `alert_logs` row, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    /// Channel name.
    pub channel: Option<String>,
    /// Attempt number.
    pub attempt: i32,
    /// Outcome.
    pub outcome: String,
    /// Detail.
    pub detail: Option<String>,
    /// Daemon.
    pub daemon: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The newest `limit` alerts with their delivery results (`havend alerts
/// list`, the admin API).
pub async fn list(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<AlertRecord>, DbErr> {
    let rows = alerts::Entity::find().order_by_desc(alerts::Column::CreatedAt).limit(limit).all(db).await?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut logs: BTreeMap<Uuid, Vec<LogRecord>> = BTreeMap::new();
    for row in alert_logs::Entity::find()
        .filter(alert_logs::Column::AlertId.is_in(ids))
        .order_by_asc(alert_logs::Column::CreatedAt)
        .all(db)
        .await?
    {
        logs.entry(row.alert_id).or_default().push(LogRecord {
            channel: row.channel,
            attempt: row.attempt,
            outcome: row.outcome,
            detail: row.detail,
            daemon: row.daemon_name,
            at: row.created_at,
        });
    }
    Ok(rows
        .into_iter()
        .map(|row| AlertRecord {
            logs: logs.remove(&row.id).unwrap_or_default(),
            details: serde_json::from_str(&row.details).unwrap_or(serde_json::Value::String(row.details)),
            id: row.id,
            severity: row.severity,
            category: row.category,
            message: row.message,
            created_at: row.created_at,
            delivery_status: row.delivery_status,
            delivered_at: row.delivered_at,
            next_attempt_at: row.next_attempt_at,
        })
        .collect())
}

/// One alert with its results.
pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<AlertRecord>, DbErr> {
    let Some(row) = alerts::Entity::find_by_id(id).one(db).await? else { return Ok(None) };
    let logs = alert_logs::Entity::find()
        .filter(alert_logs::Column::AlertId.eq(id))
        .order_by_asc(alert_logs::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(|log| LogRecord {
            channel: log.channel,
            attempt: log.attempt,
            outcome: log.outcome,
            detail: log.detail,
            daemon: log.daemon_name,
            at: log.created_at,
        })
        .collect();
    Ok(Some(AlertRecord {
        details: serde_json::from_str(&row.details).unwrap_or(serde_json::Value::String(row.details)),
        id: row.id,
        severity: row.severity,
        category: row.category,
        message: row.message,
        created_at: row.created_at,
        delivery_status: row.delivery_status,
        delivered_at: row.delivered_at,
        next_attempt_at: row.next_attempt_at,
        logs,
    }))
}

/// Alert and delivery counts (`havend alerts stats`, the admin API).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertStats {
    /// Alerts in all.
    pub total: u64,
    /// Alerts per severity.
    pub by_severity: BTreeMap<String, u64>,
    /// Alerts per category.
    pub by_category: BTreeMap<String, u64>,
    /// Alerts per delivery status (`delivered`, `throttled`, …).
    pub by_delivery_status: BTreeMap<String, u64>,
    /// Attempt results per channel, then per outcome (`delivered`, `retrying`, `failed`).
    pub by_channel: BTreeMap<String, BTreeMap<String, u64>>,
    /// Repeats throttled, in all.
    pub throttled: u64,
}

/// Counts alerts by severity, category and delivery status, and attempt
/// results by channel and outcome.
pub async fn stats(db: &impl ConnectionTrait) -> Result<AlertStats, DbErr> {
    let mut stats = AlertStats::default();
    for (column, target) in [
        (alerts::Column::Severity, &mut stats.by_severity),
        (alerts::Column::Category, &mut stats.by_category),
        (alerts::Column::DeliveryStatus, &mut stats.by_delivery_status),
    ] {
        let counts: Vec<(String, i64)> = alerts::Entity::find()
            .select_only()
            .column(column)
            .column_as(alerts::Column::Id.count(), "n")
            .group_by(column)
            .into_tuple()
            .all(db)
            .await?;
        target.extend(counts.into_iter().map(|(key, n)| (key, n as u64)));
    }
    stats.total = stats.by_severity.values().sum();
    stats.throttled = stats.by_delivery_status.get(THROTTLED).copied().unwrap_or(0);
    let counts: Vec<(Option<String>, String, i64)> = alert_logs::Entity::find()
        .select_only()
        .column(alert_logs::Column::Channel)
        .column(alert_logs::Column::Outcome)
        .column_as(alert_logs::Column::Id.count(), "n")
        .filter(alert_logs::Column::Channel.is_not_null())
        .group_by(alert_logs::Column::Channel)
        .group_by(alert_logs::Column::Outcome)
        .into_tuple()
        .all(db)
        .await?;
    for (channel, outcome, n) in counts {
        stats.by_channel.entry(channel.unwrap_or_default()).or_default().insert(outcome, n as u64);
    }
    Ok(stats)
}
