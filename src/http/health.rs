//! `GET /health`: 503 only when webhooks cannot be stored.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::{AppState, Response, json_response};

/// How long the database ping may take before it counts as down.
pub const HEALTH_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports each dependency; the database decides the status code.
pub async fn health(state: &AppState) -> Response {
    let database_up = matches!(tokio::time::timeout(HEALTH_DB_TIMEOUT, state.db.ping()).await, Ok(Ok(())));
    let intake_up = state.intake.load().is_some();
    let (status, code) = match (database_up, intake_up) {
        (true, true) => ("ok", StatusCode::OK),
        _ => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
    };
    json_response(
        code,
        &json!({
            "status": status,
            "database": if database_up { "ok" } else { "down" },
            "intake": if intake_up { "ok" } else { "restarting" },
        }),
    )
}
