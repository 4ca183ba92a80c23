//! Cross-app sessions for the ticketing integration (SPEC section 3):
//! `POST /api/cross-app/generate-session` (API key) and, for the partner app
//! with its `X-Shared-Secret`, `validate-session`, `user-accounts` and
//! `validate-permission`. Unknown or expired tokens are 401; so is a missing
//! or wrong shared secret. Tokens never reach a log.

use chrono::{DateTime, SecondsFormat, Utc};
use entity::{cross_app_sessions, users};
use http::{HeaderMap, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tracing::info;

use super::auth::Caller;
use super::{ApiError, AppState, Response, json_response};
use crate::sessions::{self, Subject, store};

/// The header a partner app sends its shared secret in.
pub const SHARED_SECRET_HEADER: &str = "x-shared-secret";
/// The header `user-accounts` takes the session token in.
pub const SESSION_TOKEN_HEADER: &str = "x-session-token";
/// Longest session token read (ours are 43 characters).
const MAX_TOKEN_LEN: usize = 256;

/// `POST /api/cross-app/generate-session`: `{"user"}` → `{"session_token","expires_at"}`.
pub async fn generate_session(state: &AppState, request: Request<Incoming>, caller: &Caller) -> Result<Response, ApiError> {
    let ttl = state.config.load().cross_app.session_ttl_secs;
    let (_, body) = super::read_json(state, request).await?;
    let user = super::api::user_field(&body)?;
    let token = sessions::new_token();
    let ttl = chrono::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX));
    let session = store::create(&state.db, &token, &user, &caller.key_name, Utc::now(), ttl).await?;
    info!(user = %user, api_key = %caller.key_name, expires_at = %session.expires_at, "Cross-app session generated");
    Ok(json_response(StatusCode::OK, &json!({ "session_token": token, "expires_at": timestamp(session.expires_at) })))
}

/// `POST /api/cross-app/validate-session`: `{"session_token"}` → `{"valid","user","expires_at"}`.
pub async fn validate_session(state: &AppState, request: Request<Incoming>) -> Result<Response, ApiError> {
    check_shared_secret(state, request.headers())?;
    let (_, body) = super::read_json(state, request).await?;
    let session = session_of(state, token_field(&body)?).await?;
    Ok(json_response(StatusCode::OK, &json!({ "valid": true, "user": session.user_ref, "expires_at": timestamp(session.expires_at) })))
}

/// `GET /api/cross-app/user-accounts` (`X-Session-Token`) → `{"user","accounts":[{"id","role"}]}`.
///
/// A user's accounts are what havend holds for them: their havend user id
/// (role `havend_user`) and their custodial wallet's address (role
/// `custodial_wallet`). A user havend has not rewarded yet has none.
pub async fn user_accounts(state: &AppState, request: Request<Incoming>) -> Result<Response, ApiError> {
    let headers = request.headers();
    check_shared_secret(state, headers)?;
    let token = headers
        .get(SESSION_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid_session("the X-Session-Token header is required"))?;
    let session = session_of(state, token).await?;
    let accounts = match known_user(state, &session.user_ref).await? {
        Some(user) => vec![json!({ "id": user.id, "role": "havend_user" }), json!({ "id": user.address, "role": "custodial_wallet" })],
        None => Vec::new(),
    };
    Ok(json_response(StatusCode::OK, &json!({ "user": session.user_ref, "accounts": accounts })))
}

/// `POST /api/cross-app/validate-permission`: `{"session_token","permission","resource"}`
/// → `{"allowed"}`, by the model in [`crate::sessions`].
pub async fn validate_permission(state: &AppState, request: Request<Incoming>) -> Result<Response, ApiError> {
    check_shared_secret(state, request.headers())?;
    let (_, body) = super::read_json(state, request).await?;
    let token = token_field(&body)?;
    let permission = string_field(&body, "permission")?;
    let resource = string_field(&body, "resource")?;
    let session = session_of(state, token).await?;
    let address = known_user(state, &session.user_ref).await?.map(|user| user.address);
    let subject = Subject { user_ref: session.user_ref, address };
    Ok(json_response(StatusCode::OK, &json!({ "allowed": sessions::allowed(&subject, permission, resource) })))
}

/// 401 unless the request carries one of the configured shared secrets.
fn check_shared_secret(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(SHARED_SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::invalid_shared_secret("the X-Shared-Secret header is required"))?;
    let config = state.config.load();
    if config.cross_app.shared_secrets.is_empty() {
        return Err(ApiError::invalid_shared_secret("no cross-app shared secret is configured"));
    }
    if !sessions::shared_secret_matches(presented, &config.cross_app.shared_secrets) {
        return Err(ApiError::invalid_shared_secret("the X-Shared-Secret is not valid"));
    }
    Ok(())
}

/// The unexpired session of `token`, or 401.
async fn session_of(state: &AppState, token: &str) -> Result<cross_app_sessions::Model, ApiError> {
    store::find_valid(&state.db, token, Utc::now())
        .await?
        .ok_or_else(|| ApiError::invalid_session("the session token is unknown or expired"))
}

async fn known_user(state: &AppState, reference: &str) -> Result<Option<users::Model>, ApiError> {
    Ok(crate::ledger::find_user_by_ref(&state.db, reference).await?)
}

fn token_field(body: &Value) -> Result<&str, ApiError> {
    match body.get("session_token") {
        Some(Value::String(token)) if !token.is_empty() && token.len() <= MAX_TOKEN_LEN => Ok(token),
        _ => Err(ApiError::validation("session_token", "session_token must be the token generate-session returned")),
    }
}

fn string_field<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(value)) if !value.is_empty() && value.len() <= 512 => Ok(value),
        _ => Err(ApiError::validation(field, format!("{field} must be a non-empty string of at most 512 bytes"))),
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
