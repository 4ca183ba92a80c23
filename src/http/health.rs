//! `GET /health`: 503 only when webhooks cannot be stored (database down);
//! a chain or Redis outage is `degraded` with 200, so a load balancer keeps sending
//! webhooks.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::{AppState, Response, json_response};
use crate::breaker::BreakerState;

/// How long each dependency check may take before it counts as down.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports each dependency; only the database decides the status code.
pub async fn health(state: &AppState) -> Response {
    let database_up = matches!(tokio::time::timeout(HEALTH_CHECK_TIMEOUT, state.db.ping()).await, Ok(Ok(())));
    let intake_up = state.intake.load().is_some();
    let (blockchain, supply) = match state.chain.load_full() {
        None => ("not_configured", None),
        Some(chain) if chain.breaker.state() == BreakerState::Open => ("circuit_open", None),
        Some(chain) => match tokio::time::timeout(HEALTH_CHECK_TIMEOUT, chain.client.total_supply(chain.token)).await {
            Ok(Ok(supply)) => ("ok", Some(crate::chain::format_units(supply))),
            _ => ("down", None),
        },
    };
    let redis = crate::idempotency::cache::health_word(&state.idempotency);
    let (status, code) = if !(database_up && intake_up) {
        ("unavailable", StatusCode::SERVICE_UNAVAILABLE)
    } else if matches!(blockchain, "down" | "circuit_open") || redis == "degraded" {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    json_response(
        code,
        &json!({
            "status": status,
            "database": if database_up { "ok" } else { "down" },
            "intake": if intake_up { "ok" } else { "restarting" },
            "blockchain": blockchain,
            "redis": redis,
            "circulating_supply": supply,
        }),
    )
}
