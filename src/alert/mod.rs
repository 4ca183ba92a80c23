//! Alerts for operators: stored, logged at a level that matches their
//! severity, and delivered from the table by the delivery actor.
//!
//! - [`raise`] records an alert; whoever raises one commits its row, often
//!   inside its own transaction, so an alert exists exactly when the
//!   condition that raised it was committed.
//! - [`plan`] decides routing, throttling, message shapes and retries (pure).
//! - [`store`] claims undelivered rows and records every result (`alert_logs`).
//! - [`deliver`] sends one claimed alert to its channels (webhooks, e-mail).
//! - [`actor`] polls (and is nudged) and delivers claimed batches.

pub mod actor;
pub mod deliver;
pub mod plan;
pub mod store;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbErr, Set};
use serde_json::Value;
use tokio::sync::Notify;
use tracing::{error, info, warn};
use uuid::Uuid;

pub use actor::{AlertActor, AlertArgs, AlertMsg};
pub use crate::severity::Severity;

/// The category of the alert `havend alerts test` raises.
pub const SYSTEM_TEST: &str = "system_test";

/// An alert as the delivery side reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Row id.
    pub id: Uuid,
    /// How urgent.
    pub severity: Severity,
    /// What kind (`transaction_failed`, `system_test`, …).
    pub category: String,
    /// What happened, for people; also the throttling subject unless the
    /// details name one (see [`SUBJECT`]).
    pub message: String,
    /// Structured details.
    pub details: Value,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
}

/// The details key naming an alert's throttling subject when its message
/// cannot be one: alerts that differ only in what they list (the held
/// mints of a limit) are repeats of each other.
pub const SUBJECT: &str = "subject";

impl Alert {
    /// What repeats of this alert share: the details' [`SUBJECT`], else the message.
    pub fn subject(&self) -> &str {
        self.details.get(SUBJECT).and_then(Value::as_str).unwrap_or(&self.message)
    }
}

impl From<&entity::alerts::Model> for Alert {
    fn from(row: &entity::alerts::Model) -> Self {
        Alert {
            id: row.id,
            severity: Severity::from_stored(&row.severity),
            category: row.category.clone(),
            message: row.message.clone(),
            details: serde_json::from_str(&row.details).unwrap_or_else(|_| Value::String(row.details.clone())),
            created_at: row.created_at,
        }
    }
}

/// Wakes this process's delivery actors when an alert is raised. A hint
/// only: it may come before the raiser's transaction commits, so polling
/// remains the guarantee. Process-wide because `raise` is called from
/// everywhere with nothing but a connection.
static DELIVERY_NUDGE: Notify = Notify::const_new();

/// Records an alert and logs it. A failure to store is logged, never fatal:
/// the condition that raised it must still be handled.
pub async fn raise(db: &impl ConnectionTrait, severity: Severity, category: &str, message: &str, details: Value) {
    if let Err(error) = record(db, severity, category, message, &details).await {
        error!(category, %error, "Alert could not be stored");
    }
}

/// [`raise`], returning the stored alert's id (`havend alerts test` waits for its delivery).
pub async fn record(db: &impl ConnectionTrait, severity: Severity, category: &str, message: &str, details: &Value) -> Result<Uuid, DbErr> {
    log(severity, category, message, details);
    let id = Uuid::now_v7();
    row(id, severity, category, message, details).insert(db).await?;
    DELIVERY_NUDGE.notify_waiters();
    Ok(id)
}

/// Records many alerts of one severity and category in one statement, each
/// logged as [`raise`] logs it (a batch of held mints raises one per mint).
pub async fn raise_many(db: &impl ConnectionTrait, severity: Severity, category: &str, alerts: &[(String, Value)]) {
    if alerts.is_empty() {
        return;
    }
    let rows = alerts.iter().map(|(message, details)| {
        log(severity, category, message, details);
        row(Uuid::now_v7(), severity, category, message, details)
    });
    match <entity::alerts::Entity as sea_orm::EntityTrait>::insert_many(rows).exec_without_returning(db).await {
        Ok(_) => DELIVERY_NUDGE.notify_waiters(),
        Err(error) => error!(category, %error, count = alerts.len(), "Alerts could not be stored"),
    }
}

fn log(severity: Severity, category: &str, message: &str, details: &Value) {
    match severity {
        Severity::Critical | Severity::Error => error!(severity = severity.as_str(), category, %details, "{message}"),
        Severity::Warning => warn!(severity = severity.as_str(), category, %details, "{message}"),
        Severity::Info => info!(severity = severity.as_str(), category, %details, "{message}"),
    }
}

/// A new alert's row, pending delivery.
fn row(id: Uuid, severity: Severity, category: &str, message: &str, details: &Value) -> entity::alerts::ActiveModel {
    entity::alerts::ActiveModel {
        id: Set(id),
        severity: Set(severity.as_str().to_owned()),
        category: Set(category.to_owned()),
        message: Set(message.to_owned()),
        details: Set(details.to_string()),
        created_at: Set(Utc::now()),
        delivery_status: Set(store::PENDING.to_owned()),
        claim_token: Set(None),
        claimed_until: Set(None),
        delivered_at: Set(None),
        next_attempt_at: Set(None),
    }
}

/// Why a test alert has no delivery result.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The webhook client could not be built.
    #[error(transparent)]
    Delivery(#[from] deliver::DeliveryError),
    /// A daemon claimed the alert and did not finish it in time.
    #[error("alert {0} has no delivery result after {1:?}")]
    Timeout(Uuid, Duration),
}

/// How often `havend alerts test` looks at its alert while a daemon delivers it.
const TEST_POLL: Duration = Duration::from_millis(200);

/// Raises a `system_test` INFO alert and waits for its delivery result
/// (`havend alerts test`, the admin API). It delivers the alert itself
/// unless a running daemon claimed it first, so it works with or without
/// one, and the alert is still delivered once.
pub async fn send_test(db: &DatabaseConnection, config: &crate::config::Config, requested_by: &str) -> Result<store::AlertRecord, AlertError> {
    let details = serde_json::json!({ "requested_by": requested_by, "daemon": config.daemon_name });
    let id = record(db, Severity::Info, SYSTEM_TEST, "Test alert: delivery works", &details).await?;
    let settings = std::sync::Arc::new(config.alerts.clone());
    // A daemon that claimed it may take its whole lease; after that the claim lapses and this takes over.
    let deadline = tokio::time::Instant::now() + settings.lease() + settings.lease();
    let delivery = deliver::Delivery { http: deliver::webhook_client()?, config: settings.clone(), daemon: config.daemon_name.clone() };
    loop {
        let token = Uuid::now_v7();
        if let Some(row) = store::claim_one(db, id, token, settings.lease(), Utc::now()).await? {
            deliver::deliver(db, &delivery, &row, token).await?;
        }
        match store::get(db, id).await? {
            Some(alert) if alert.delivery_status != store::PENDING => return Ok(alert),
            _ if tokio::time::Instant::now() >= deadline => return Err(AlertError::Timeout(id, settings.lease() * 2)),
            _ => tokio::time::sleep(TEST_POLL).await,
        }
    }
}

/// Waits for the next [`raise`] in this process.
pub(crate) async fn raised() {
    DELIVERY_NUDGE.notified().await
}
