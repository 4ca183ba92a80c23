//! The one place where errors become HTTP responses, in SPEC section 3's shape:
//! `{"error","message","user_message","error_id","request_id","timestamp","details"}`.

use http::{HeaderValue, StatusCode};
use sea_orm::DbErr;
use serde_json::{Value, json};

use crate::alert::AlertError;
use crate::custody::CustodyError;
use crate::idempotency::{KeyError, RunError};
use crate::intake::StoreError;
use crate::ledger::LedgerError;
use crate::rewards::operator::OperatorError;
use crate::token::TokenError;
use crate::wallet::lifecycle::LifecycleError;
use crate::webhooks::{PayloadError, SignatureError};

/// An error answer: status, machine code, messages and details.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`INVALID_SIGNATURE`, …).
    pub code: &'static str,
    /// Technical message for the integrator.
    pub message: String,
    /// Message safe to show an end user.
    pub user_message: &'static str,
    /// Structured details (the offending field, the limit, …).
    pub details: Value,
    /// Seconds to send in `Retry-After` (429/503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>, user_message: &'static str) -> Self {
        Self { status, code, message: message.into(), user_message, details: json!({}), retry_after: None }
    }

    /// 404: no such route, partner or event.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message, "The requested resource does not exist.")
    }

    /// 405: the path exists but not with this method.
    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("method not allowed; use {allowed}"),
            "This action is not supported.",
        )
        .with_details(json!({ "allowed": allowed }))
    }

    /// 413: the body is over the configured limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body exceeds {limit} bytes"),
            "The request is too large.",
        )
        .with_details(json!({ "limit_bytes": limit }))
    }

    /// 408: the client did not send its body in time.
    pub fn body_timeout() -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT", "request body not received in time", "The request timed out.")
    }

    /// 400: the body could not be read.
    pub fn bad_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message, "The request could not be read.")
    }

    /// 429: the client or the partner is over its rate limit; retry after
    /// `retry_after_secs` (also in `Retry-After`).
    pub fn rate_limited(retry_after_secs: u32) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("rate limit exceeded; retry after {retry_after_secs} s"),
            "Too many requests. Please retry later.",
        )
        .with_details(json!({ "retry_after_secs": retry_after_secs }))
        .retry_after(retry_after_secs)
    }

    /// 403: the client's address is not in the partner's allowlist.
    pub fn ip_not_allowed(partner: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "IP_NOT_ALLOWED",
            format!("this client address may not send webhooks for {partner}"),
            "The request is not allowed from this address.",
        )
    }

    /// 503: too many requests are waiting to be stored.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "OVERLOADED",
            "too many requests in flight; retry shortly",
            "The service is busy. Please retry.",
        )
        .retry_after(1)
    }

    /// 503: the intake actor is restarting or did not answer in time.
    pub fn intake_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORAGE_UNAVAILABLE",
            message,
            "The service is temporarily unavailable. Please retry.",
        )
        .retry_after(5)
    }

    /// 500: a bug; the details are in the log under the error id.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message, "Something went wrong on our side.")
    }

    /// 401: no API key, or an unknown one.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message, "The request could not be authenticated.")
    }

    /// 401: a cross-app session token that is unknown or expired.
    pub fn invalid_session(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_SESSION", message, "Your session has expired. Please sign in again.")
    }

    /// 401: a partner app's `X-Shared-Secret` is missing or wrong.
    pub fn invalid_shared_secret(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_SHARED_SECRET", message, "The request could not be authenticated.")
    }

    /// 503: too many live-update streams are open.
    pub fn too_many_streams(limit: usize) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_STREAMS",
            format!("{limit} live-update streams are open, the configured maximum; retry later"),
            "The service is busy. Please retry.",
        )
        .with_details(json!({ "max_streams": limit }))
        .retry_after(5)
    }

    /// 403: the key may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message, "You are not allowed to do this.")
    }

    /// 400: a field is missing or invalid.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message, "The request is not valid.").with_details(json!({ "field": field }))
    }

    /// 400: a request that is valid but cannot be done (a redemption over the
    /// available balance, say), with its own code.
    pub fn refused(code: &'static str, message: impl Into<String>, user_message: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message, user_message)
    }

    /// 409: the Idempotency-Key's first request is still running.
    pub fn in_progress() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_KEY_IN_USE",
            "a request with this Idempotency-Key is in progress; retry after it completes",
            "This request is already being processed.",
        )
        .retry_after(1)
    }

    /// 422: the Idempotency-Key was used with another request body.
    pub fn idempotency_mismatch() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with a different request body",
            "This request conflicts with an earlier one.",
        )
    }

    /// 422: the Idempotency-Key ran before and its stored response expired.
    pub fn idempotency_key_expired() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used before and its stored response has expired; send a new key",
            "This request conflicts with an earlier one.",
        )
    }

    /// 503: the database could not do the work.
    pub fn database_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE", message, "The service is temporarily unavailable. Please retry.")
            .retry_after(1)
    }

    /// 503: something the request needs is not there (no hot wallet to sign, …).
    pub fn dependency_unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message, "The service is temporarily unavailable. Please retry.").retry_after(5)
    }

    /// 409: the resource is not in a state that allows the action (a held
    /// intent already released, a revoked wallet), with its own code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message, "This action is not possible in the current state.")
    }

    /// 502: the chain answered with an error or not at all.
    pub fn chain(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "CHAIN_ERROR", message, "The blockchain could not be reached. Please retry.")
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Asks the client to wait `seconds` before retrying.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The response: the SPEC's JSON shape, `Retry-After` when set.
    pub fn into_response(self, request_id: &str) -> super::Response {
        let error_id = uuid::Uuid::new_v4().to_string();
        if self.status.is_server_error() {
            tracing::warn!(request_id, error_id, code = self.code, message = %self.message, "Request failed");
        }
        let body = json!({
            "error": self.code,
            "message": self.message,
            "user_message": self.user_message,
            "error_id": error_id,
            "request_id": request_id,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "details": self.details,
        });
        let mut response = super::json_response(self.status, &body);
        // The listener stores 5xx answers in `error_logs` under this same id,
        // whatever the body type; an extension never reaches the client.
        if let Ok(error_id) = uuid::Uuid::parse_str(&error_id) {
            response.extensions_mut().insert(ErrorRecord { error_id, code: self.code, message: self.message });
        }
        // RFC 9110: a 405 says which methods the resource has.
        if self.status == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = self.details["allowed"].as_str().and_then(|a| HeaderValue::from_str(a).ok())
        {
            response.headers_mut().insert(http::header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// What an error response was, attached to it as an extension so the
/// listener can store a 5xx in `error_logs` under the `error_id` the client saw.
#[derive(Debug, Clone)]
pub struct ErrorRecord {
    /// The `error_id` in the body.
    pub error_id: uuid::Uuid,
    /// The machine code.
    pub code: &'static str,
    /// The technical message.
    pub message: String,
}

impl From<SignatureError> for ApiError {
    fn from(error: SignatureError) -> Self {
        let details = match &error {
            SignatureError::MissingHeader(h) | SignatureError::MalformedHeader(h) => json!({ "header": h }),
            _ => json!({}),
        };
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE", error.to_string(), "The request could not be authenticated.")
            .with_details(details)
    }
}

impl From<PayloadError> for ApiError {
    fn from(error: PayloadError) -> Self {
        let details = error.field().map(|f| json!({ "field": f })).unwrap_or_else(|| json!({}));
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", error.to_string(), "The request is not valid.").with_details(details)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::intake_unavailable(error.to_string())
    }
}

impl From<DbErr> for ApiError {
    fn from(error: DbErr) -> Self {
        Self::database_unavailable(format!("database: {error}"))
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        Self::validation("Idempotency-Key", error.to_string())
    }
}

impl From<RunError<ApiError>> for ApiError {
    fn from(error: RunError<ApiError>) -> Self {
        match error {
            RunError::Mismatch => Self::idempotency_mismatch(),
            RunError::InProgress => Self::in_progress(),
            RunError::Db(error) => error.into(),
            RunError::Work(error) => error,
        }
    }
}

impl From<CustodyError> for ApiError {
    fn from(error: CustodyError) -> Self {
        match error {
            CustodyError::NotFound(wallet) => Self::not_found(format!("no wallet {wallet}")),
            CustodyError::NoMasterKey => Self::dependency_unavailable("NO_MASTER_KEY", error.to_string()),
            CustodyError::Db(error) => error.into(),
            error => Self::internal(error.to_string()),
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(error: LifecycleError) -> Self {
        match error {
            LifecycleError::WrongStatus { .. } => Self::conflict("WRONG_WALLET_STATUS", error.to_string()),
            LifecycleError::MissingRole { .. } => Self::conflict("MISSING_ROLE", error.to_string()),
            LifecycleError::LowBalance { .. } => Self::conflict("LOW_BALANCE", error.to_string()),
            // The RPC error may quote the node's URL, which can carry an API key.
            LifecycleError::Rpc(_) => Self::chain("the chain could not be asked about the wallet's roles and gas"),
            LifecycleError::Custody(error) => error.into(),
            LifecycleError::Db(error) => error.into(),
        }
    }
}

impl From<OperatorError> for ApiError {
    fn from(error: OperatorError) -> Self {
        match error {
            OperatorError::NotFound(id) => Self::not_found(format!("no intent {id}")),
            OperatorError::NotHeld { .. } => Self::conflict("NOT_HELD", error.to_string()),
            OperatorError::ReversalPending(_) => Self::conflict("REVERSAL_PENDING", error.to_string()),
            OperatorError::Db(error) => error.into(),
            error => Self::internal(error.to_string()),
        }
    }
}

impl From<AlertError> for ApiError {
    fn from(error: AlertError) -> Self {
        match error {
            AlertError::Db(error) => error.into(),
            AlertError::Timeout(..) => Self::dependency_unavailable("ALERT_TIMEOUT", error.to_string()),
            error => Self::internal(error.to_string()),
        }
    }
}

/// A token write's failure. The handler decides which of these are refusals
/// (stored and replayed under an Idempotency-Key) and which are errors.
impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::UnknownUser(user) => Self::not_found(format!("no user {user:?}")),
            TokenError::KeyAlreadyUsed => Self::idempotency_key_expired(),
            TokenError::InsufficientBalance { ref available, .. } => {
                let details = json!({ "available": available });
                Self::refused("INSUFFICIENT_BALANCE", error.to_string(), "The balance is too low for this redemption.").with_details(details)
            }
            TokenError::Ledger(LedgerError::Db(error)) => error.into(),
            TokenError::Ledger(LedgerError::NoHotWallet | LedgerError::NoMasterKey) => Self::dependency_unavailable("NO_SIGNER", error.to_string()),
            error => Self::database_unavailable(error.to_string()),
        }
    }
}
