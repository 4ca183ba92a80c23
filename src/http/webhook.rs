//! `POST /webhooks/{partner}/{event}` and `POST /webhooks/stripe`.
//!
//! Route → partner config (404) → partner allowlist (403) → per-IP rate
//! limit (429) → admission (503) → body limit (413) → signature and time
//! window (401) → partner rate limit (429) → payload (400) → one timed call
//! to the intake actor, answered after the commit.
//!
//! Nothing touches the database before the signature holds. The allowlist
//! and the per-IP limit act before any body is read or HMAC computed, so a
//! refused address costs havend next to nothing. Admission comes before the
//! body is read, so unauthenticated requests cannot make havend buffer more
//! than `max_in_flight_stores` bodies at once. The partner's limit counts
//! only correctly signed requests: counted earlier, anyone who knows the URL
//! could spend a partner's quota and have its real webhooks refused.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use ractor::call_t;
use serde_json::json;
use tracing::{debug, info, warn};

use super::{ApiError, AppState, Response, guard, json_response};
use crate::intake::{Delivery, IntakeMsg, NewEvent, Stored};
use crate::telemetry::metrics::{WEBHOOK_ACK_SECONDS, WEBHOOKS_RECEIVED};
use crate::webhooks::signature::{Signed, Verified, WEBHOOK_ID};
use crate::webhooks::{Partner, Window, payload};

/// Receives, verifies, validates and durably stores one partner event, and
/// counts the outcome and the time to answer.
pub async fn receive(
    state: &AppState,
    request: Request<Incoming>,
    partner: &str,
    event: Option<&str>,
    request_id: &str,
    client: IpAddr,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = store(state, request, partner, event, request_id, client).await;
    // Only known partners and events become label values: a path is attacker-chosen.
    let partner = partner.parse::<Partner>().ok();
    let known = |event: &str| partner.is_some_and(|partner| payload::is_known_event(partner, event));
    let event_label = match (&result, event) {
        (_, Some(event)) if known(event) => event.to_owned(),
        // Stripe names the type in the (verified) body.
        (Ok((_, _, event_type)), None) if crate::webhooks::event::STRIPE_HANDLED.contains(&event_type.as_str()) => event_type.clone(),
        (Ok(_), None) => "other".to_owned(),
        _ => "unknown".to_owned(),
    };
    let partner = partner.map_or("unknown", |partner| partner.as_str());
    let outcome = match &result {
        Ok((_, Stored::Duplicate, _)) => "duplicate".to_owned(),
        Ok(_) => "stored".to_owned(),
        Err(error) => error.code.to_ascii_lowercase(),
    };
    ::metrics::counter!(WEBHOOKS_RECEIVED, "partner" => partner, "event" => event_label, "outcome" => outcome).increment(1);
    ::metrics::histogram!(WEBHOOK_ACK_SECONDS, "partner" => partner).record(started.elapsed().as_secs_f64());
    result.map(|(response, _, _)| response)
}

async fn store(
    state: &AppState,
    request: Request<Incoming>,
    partner: &str,
    event: Option<&str>,
    request_id: &str,
    client: IpAddr,
) -> Result<(Response, Stored, String), ApiError> {
    let config = state.config.load_full();
    let partner: Partner = partner.parse().map_err(|_| ApiError::not_found(format!("unknown partner {partner}")))?;
    let partner_config = config
        .partners
        .get(&partner)
        .ok_or_else(|| ApiError::not_found(format!("partner {partner} is not configured")))?;
    let event_known = match event {
        None => !partner.event_in_path(),
        Some(event) => payload::is_known_event(partner, event),
    };
    if !event_known {
        return Err(ApiError::not_found(format!("unknown event {} for partner {partner}", event.unwrap_or("(none)"))));
    }

    if !guard::allowed(client, partner_config.allow_ips.as_deref()) {
        return Err(ApiError::ip_not_allowed(partner.as_str()));
    }
    state.limits.check_ip(&config, client).map_err(ApiError::rate_limited)?;

    let _admitted = state.admission.try_acquire().map_err(|_| ApiError::overloaded())?;
    let (parts, body) = request.into_parts();
    let limit = config.server.body_limit_bytes;
    let body = read_body(body, parts.headers.get(http::header::CONTENT_LENGTH), limit, config.server.body_read_timeout_ms).await?;

    let window = Window { past_secs: config.webhooks.tolerance_past_secs, future_secs: config.webhooks.tolerance_future_secs };
    let now = chrono::Utc::now();
    let scheme = partner_config.scheme_for(partner);
    // A `sign_event` partner signs the URL's event with the body (validation
    // allows it only for haven-hmac, whose partners name the event in the URL).
    let signed = Signed { event: event.filter(|_| partner_config.sign_event), body: &body };
    let verified = scheme
        .verify(partner, &parts.headers, signed, &partner_config.secrets, now.timestamp(), window)
        .inspect_err(|error| info!(%partner, %error, "Webhook signature refused"))?;
    state.limits.check_partner(&config, partner).map_err(ApiError::rate_limited)?;
    let parsed = payload::parse(partner, event, &body, now)?;

    let delivery = Delivery {
        headers: headers_of_interest(&parts.headers, &verified),
        source_ip: Some(client.to_string()),
        request_id: request_id.to_owned(),
        received_at: now,
    };
    let new_event = Box::new(NewEvent::new(partner, parsed, body, delivery));
    let (partner_event_id, event_type, status) = (new_event.partner_event_id.clone(), new_event.event_type.clone(), new_event.status);

    let intake = state
        .intake
        .load_full()
        .ok_or_else(|| ApiError::intake_unavailable("the intake actor is restarting"))?;
    let stored = call_t!(intake, IntakeMsg::Store, config.intake.store_timeout_ms, new_event)
        .map_err(|error| {
            warn!(%partner, event_id = %partner_event_id, %error, "Intake did not answer");
            ApiError::intake_unavailable("the event could not be stored in time")
        })??;

    let duplicate = stored == Stored::Duplicate;
    // DEBUG: at intake rates one INFO line per event drowns the log; the
    // inbox row is the record of what was acknowledged.
    debug!(%partner, event_id = %partner_event_id, duplicate, status, "Webhook stored");
    let mut body = json!({
        "received": true,
        "duplicate": duplicate,
        "partner": partner.as_str(),
        "partner_event_id": partner_event_id,
        "request_id": request_id,
    });
    if !duplicate {
        body["status"] = json!(status);
    }
    Ok((json_response(StatusCode::OK, &body), stored, event_type))
}

/// Reads the body within `limit` bytes and `timeout_ms`.
pub(super) async fn read_body(
    body: Incoming,
    content_length: Option<&http::HeaderValue>,
    limit: usize,
    timeout_ms: u64,
) -> Result<Bytes, ApiError> {
    let declared = content_length.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    match tokio::time::timeout(Duration::from_millis(timeout_ms), Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::body_timeout()),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::payload_too_large(limit)),
        Ok(Err(error)) => Err(ApiError::bad_body(format!("cannot read request body: {error}"))),
    }
}

/// The received headers worth keeping with the event (never the signature).
fn headers_of_interest(headers: &http::HeaderMap, verified: &Verified) -> String {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    json!({
        "content_type": text(http::header::CONTENT_TYPE.as_str()),
        "user_agent": text(http::header::USER_AGENT.as_str()),
        "webhook_id": verified.webhook_id.as_deref().or(text(WEBHOOK_ID)),
        "signature_timestamp": verified.timestamp,
    })
    .to_string()
}
