//! Alerts for operators: stored, and logged at a level that matches their
//! severity. Delivery (e-mail, chat webhooks, throttling) builds on the
//! stored rows.

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set};
use serde_json::Value;
use tracing::{error, info, warn};

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// For the record.
    Info,
    /// Recovered or degraded; look when convenient.
    Warning,
    /// Something failed; an operator should act.
    Error,
    /// Money or keys at risk; act now.
    Critical,
}

impl Severity {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// Records an alert and logs it. A failure to store is logged, never fatal:
/// the condition that raised it must still be handled.
pub async fn raise(db: &impl ConnectionTrait, severity: Severity, category: &str, message: &str, details: Value) {
    match severity {
        Severity::Critical | Severity::Error => error!(severity = severity.as_str(), category, %details, "{message}"),
        Severity::Warning => warn!(severity = severity.as_str(), category, %details, "{message}"),
        Severity::Info => info!(severity = severity.as_str(), category, %details, "{message}"),
    }
    if let Err(error) = store(db, severity, category, message, &details).await {
        error!(category, %error, "Alert could not be stored");
    }
}

async fn store(db: &impl ConnectionTrait, severity: Severity, category: &str, message: &str, details: &Value) -> Result<(), DbErr> {
    entity::alerts::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        severity: Set(severity.as_str().to_owned()),
        category: Set(category.to_owned()),
        message: Set(message.to_owned()),
        details: Set(details.to_string()),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(db)
    .await
    .map(|_| ())
}
