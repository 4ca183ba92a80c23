//! `GET /health`: 503 only when webhooks cannot be stored (database down);
//! a chain or Redis outage is `degraded` with 200, so a load balancer keeps sending
//! webhooks. The chain part is the last reading of the background refresher
//! ([`crate::chain_health`]): a request never makes an RPC call.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use super::{AppState, Response, json_response};

/// How long the database check may take before it counts as down.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports each dependency; only the database decides the status code.
pub async fn health(state: &AppState) -> Response {
    let database_up = matches!(tokio::time::timeout(HEALTH_CHECK_TIMEOUT, state.db.ping()).await, Ok(Ok(())));
    let intake_up = state.intake.load().is_some();
    let (blockchain, supply) = match state.chain.load_full() {
        None => ("not_configured", None),
        Some(chain) => {
            let (word, supply) = chain.health.load().word(chain.breaker.state(), Instant::now());
            (word, supply.map(crate::chain::format_units))
        }
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
