//! The listener's trails in the database: `audit_log` rows for admin actions
//! and `error_logs` rows for every 5xx answered.
//!
//! Both are best-effort and bounded in time: an answer is never held up for
//! long, and never changed, by a database that cannot take the row (the
//! tracing log still has it, under the same request id and error id).

use std::net::IpAddr;
use std::time::Duration;

use entity::{audit_log, error_logs};
use http::Method;
use sea_orm::{ActiveModelTrait, DbErr, Set};
use serde_json::Value;
use tracing::warn;

use super::error::ErrorRecord;
use super::{AppState, Response};

/// How long an audit row may take before the answer goes out without it.
pub const AUDIT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the background write of an error row may take.
pub const ERROR_LOG_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest message stored in `error_logs` (the log has the rest).
const MAX_STORED_MESSAGE: usize = 2_000;

/// One admin action to audit.
pub struct AuditEntry<'a> {
    /// The API key's name.
    pub key_name: &'a str,
    /// The resolved client IP.
    pub client: IpAddr,
    /// The request id.
    pub request_id: &'a str,
    /// The method.
    pub method: &'a Method,
    /// The path.
    pub path: &'a str,
    /// The action's name.
    pub action: &'static str,
    /// The status answered.
    pub status: u16,
    /// What to keep about it (never a secret).
    pub details: Value,
}

/// Writes an `audit_log` row, waiting at most [`AUDIT_WRITE_TIMEOUT`]: the
/// action already happened, so a lost row is logged loudly rather than
/// turned into an error answer the client would retry.
pub async fn audit(state: &AppState, entry: AuditEntry<'_>) {
    let row = audit_log::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        key_name: Set(entry.key_name.to_owned()),
        client_ip: Set(entry.client.to_string()),
        request_id: Set(entry.request_id.to_owned()),
        method: Set(entry.method.as_str().to_owned()),
        path: Set(entry.path.to_owned()),
        action: Set(entry.action.to_owned()),
        status: Set(i32::from(entry.status)),
        details: Set(entry.details.to_string()),
        created_at: Set(chrono::Utc::now()),
    };
    let written = tokio::time::timeout(AUDIT_WRITE_TIMEOUT, row.insert(&state.db)).await;
    let error = match written {
        Ok(Ok(_)) => return,
        Ok(Err(error)) => error,
        Err(_) => DbErr::Custom(format!("no answer within {AUDIT_WRITE_TIMEOUT:?}")),
    };
    warn!(
        %error,
        key_name = entry.key_name,
        action = entry.action,
        status = entry.status,
        details = %entry.details,
        "Cannot write the audit log; the admin action is recorded here only"
    );
}

/// Server-error rows being written at most; more are logged only.
pub const MAX_PENDING_ERROR_WRITES: usize = 16;

/// Stores a 5xx answer in `error_logs` under the `error_id` its body carries,
/// in a background task with a timeout, so a database that is down (often
/// the very cause of the 5xx) never holds the answer up. At most
/// [`MAX_PENDING_ERROR_WRITES`] writes are pending at once (further ones are
/// logged only), and load shedding (`OVERLOADED`, `TOO_MANY_STREAMS`) and
/// `/health`'s 503 are answers by design, not errors: none of them may turn
/// a flood of cheap requests into database work.
pub fn record_server_error(state: &AppState, response: &Response, request_id: &str, method: &Method, path: &str) {
    static PENDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_PENDING_ERROR_WRITES);
    let Some(record) = response.extensions().get::<ErrorRecord>() else { return };
    if matches!(record.code, "OVERLOADED" | "TOO_MANY_STREAMS") {
        return;
    }
    let (error_id, code, message) = (record.error_id, record.code, record.message.clone());
    let Ok(permit) = PENDING.try_acquire() else {
        warn!(%error_id, code, "Too many error_logs writes pending; this server error is logged only");
        return;
    };
    let message = truncate(message, MAX_STORED_MESSAGE);
    let row = error_logs::ActiveModel {
        error_id: Set(error_id),
        request_id: Set(request_id.to_owned()),
        status: Set(i32::from(response.status().as_u16())),
        code: Set(code.to_owned()),
        message: Set(message),
        method: Set(method.as_str().to_owned()),
        path: Set(path.to_owned()),
        created_at: Set(chrono::Utc::now()),
    };
    let db = state.db.clone();
    tokio::spawn(async move {
        let _permit = permit;
        match tokio::time::timeout(ERROR_LOG_WRITE_TIMEOUT, row.insert(&db)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => warn!(%error, %error_id, "Cannot store a server error in error_logs"),
            Err(_) => warn!(%error_id, "Storing a server error in error_logs timed out"),
        }
    });
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("short".into(), 100), "short");
    }
}
