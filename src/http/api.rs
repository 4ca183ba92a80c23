//! The token API (SPEC section 3): `POST /api/v1/token/mint`,
//! `POST /api/v1/token/redeem`, `GET /api/v1/users/{user}`,
//! `GET /api/v1/transactions/{id}`.
//!
//! A write with an Idempotency-Key runs at most once per (API key, key):
//! Redis is asked first (a completed response is replayed from it, an
//! in-flight mark answers 409), then the database claim decides; the work
//! and its stored response commit in one transaction that first checks the
//! claim still holds. A response is stored only if that commit happened.

use std::time::Duration;

use alloy::primitives::U256;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sea_orm::DatabaseTransaction;
use serde_json::{Value, json};
use tracing::info;
use uuid::Uuid;

use super::auth::Caller;
use super::{ApiError, AppState, Response, json_response};
use crate::chain::{format_units, parse_units};
use crate::idempotency::{self, Keyed, Ran, StoredResponse};
use crate::token::{self, MintOrder, RedeemOrder, TokenError};

/// Longest `reason` an API mint may carry.
pub const MAX_REASON_LEN: usize = 512;
/// How long `GET /users` waits for the chain's balance before leaving it out.
const CHAIN_BALANCE_TIMEOUT: Duration = Duration::from_secs(2);

/// `202` of a mint.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MintAccepted {
    /// The intent.
    #[schema(value_type = String, format = "uuid")]
    pub transaction_id: Uuid,
    /// `queued`, or `held` over a mint limit.
    pub status: String,
    /// The user as sent.
    pub user: String,
    /// HNV.
    pub amount: String,
    /// Why, for operators.
    pub reason: String,
    /// The limit it is held over, when held.
    pub held_reason: Option<String>,
}

/// `202` of a redemption.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RedeemAccepted {
    /// The redemption (Stripe payouts name it in `metadata.redemption_id`).
    #[schema(value_type = String, format = "uuid")]
    pub redemption_id: Uuid,
    /// Its burn intent.
    #[schema(value_type = String, format = "uuid")]
    pub transaction_id: Uuid,
    /// `open`.
    pub status: String,
    /// The burn's status (`queued`).
    pub burn_status: String,
    /// Whether the payout may be made (only once the burn is confirmed).
    pub payable: bool,
    /// The user as sent.
    pub user: String,
    /// HNV.
    pub amount: String,
}

/// A redemption as seen on its burn.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RedemptionView {
    /// The redemption.
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// `open`, `paid` or `failed`.
    pub status: String,
    /// Open and its burn confirmed.
    pub payable: bool,
}

/// `GET /api/v1/transactions/{id}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TransactionView {
    /// The intent.
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// `mint` or `burn`.
    pub kind: String,
    /// `queued`, `held`, `signed`, `broadcast`, `confirmed`, `failed` or `cancelled`.
    pub status: String,
    /// HNV.
    pub amount: String,
    /// `{partner}:{external id}`.
    pub user: Option<String>,
    /// Why.
    pub reason: String,
    /// The mined (or latest) transaction hash.
    pub tx_hash: Option<String>,
    /// Its nonce, once signed.
    pub nonce: Option<i64>,
    /// Its block, once mined.
    pub block_number: Option<i64>,
    /// Signed attempts (replacements included).
    pub attempts: u64,
    /// The last problem, if any.
    pub last_error: Option<String>,
    /// The redemption this burn belongs to, if any.
    pub redemption: Option<RedemptionView>,
    /// RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A token write, validated.
#[derive(Debug, Clone)]
enum Operation {
    Mint { user: String, amount: U256, reason: String },
    Redeem { user: String, amount: U256, payout: Value },
}

impl Operation {
    fn route(&self) -> &'static str {
        match self {
            Operation::Mint { .. } => "POST /api/v1/token/mint",
            Operation::Redeem { .. } => "POST /api/v1/token/redeem",
        }
    }
}

/// What the work inside the transaction decided.
enum Performed {
    /// Done: status, body and the hot wallet that got work.
    Done(StatusCode, Value, Uuid),
    /// A decision that executed nothing but is the answer to this request
    /// (unknown user, over the balance): stored and replayed like a success.
    Refused(ApiError),
}

/// `POST /api/v1/token/mint`: `{"user","amount","reason"}`; Idempotency-Key optional.
pub async fn mint(state: &AppState, request: Request<Incoming>, caller: &Caller, request_id: &str) -> Result<Response, ApiError> {
    let (key, body) = read_request(state, request).await?;
    let user = user_field(&body)?;
    let amount = amount_field(&body)?;
    let reason = match body.get("reason") {
        None | Some(Value::Null) => "API mint".to_owned(),
        Some(Value::String(reason)) if reason.len() <= MAX_REASON_LEN => reason.clone(),
        Some(_) => return Err(ApiError::validation("reason", format!("reason must be a string of at most {MAX_REASON_LEN} bytes"))),
    };
    let operation = Operation::Mint { user, amount, reason };
    match key {
        Some(key) => run_keyed(state, caller, &key, &body, operation, request_id).await,
        None => run_unkeyed(state, caller, operation, request_id).await,
    }
}

/// `POST /api/v1/token/redeem`: `{"user","amount","payout":{…}}`; Idempotency-Key required.
pub async fn redeem(state: &AppState, request: Request<Incoming>, caller: &Caller, request_id: &str) -> Result<Response, ApiError> {
    let (key, body) = read_request(state, request).await?;
    let key = key.ok_or_else(|| ApiError::validation("Idempotency-Key", "a redemption needs an Idempotency-Key (header, or idempotency_key in the body)"))?;
    let user = user_field(&body)?;
    let amount = amount_field(&body)?;
    let payout = match body.get("payout") {
        Some(payout @ Value::Object(_)) => payout.clone(),
        _ => return Err(ApiError::validation("payout", "payout must be an object saying where the money goes")),
    };
    run_keyed(state, caller, &key, &body, Operation::Redeem { user, amount, payout }, request_id).await
}

/// `GET /api/v1/users/{user}`: the wallet address, the ledger's balances and
/// the on-chain balance (null when the chain does not answer in time).
pub async fn user(state: &AppState, reference: &str) -> Result<Response, ApiError> {
    let reference = percent_encoding::percent_decode_str(reference).decode_utf8_lossy().into_owned();
    let mut summary = crate::ledger::summary(&state.db, &reference)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {reference:?}")))?;
    if let (Some(chain), Ok(address)) = (state.chain.load_full(), summary.address.parse()) {
        let balance = tokio::time::timeout(CHAIN_BALANCE_TIMEOUT, chain.client.token_balance(chain.token, address)).await;
        summary.on_chain = match balance {
            Ok(Ok(units)) => Some(format_units(units)),
            _ => None,
        };
    }
    Ok(json_response(StatusCode::OK, &json!(summary)))
}

/// `GET /api/v1/transactions/{id}`: status, hash, nonce and attempts of an intent.
pub async fn transaction(state: &AppState, id: &str) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::validation("id", "a transaction id is a UUID"))?;
    let intent = crate::ledger::find_intent(&state.db, id).await?.ok_or_else(|| ApiError::not_found(format!("no transaction {id}")))?;
    let attempts = crate::wallet::store::attempt_count(&state.db, id).await?;
    let user = crate::ledger::find_user_by_id(&state.db, intent.user_id).await?;
    let redemption = crate::ledger::redemption::by_burn(&state.db, id).await?;
    let redemption = redemption.map(|r| RedemptionView { payable: crate::ledger::redemption::payable(&r, &intent.status), id: r.id, status: r.status });
    let view = TransactionView {
        id: intent.id,
        kind: intent.kind,
        status: intent.status,
        amount: format_units(U256::from_str_radix(&intent.amount, 10).unwrap_or_default()),
        user: user.map(|u| u.external_ref),
        reason: intent.reason,
        tx_hash: intent.tx_hash,
        nonce: intent.nonce,
        block_number: intent.block_number,
        attempts,
        last_error: intent.last_error,
        redemption,
        created_at: intent.created_at,
        updated_at: intent.updated_at,
    };
    Ok(json_response(StatusCode::OK, &json!(view)))
}

/// Reads a JSON object body within the body limit and its Idempotency-Key
/// (header first, then `idempotency_key` in the body).
async fn read_request(state: &AppState, request: Request<Incoming>) -> Result<(Option<String>, Value), ApiError> {
    let (parts, body) = super::read_json(state, request).await?;
    let header = match parts.headers.get(idempotency::HEADER) {
        Some(value) => Some(value.to_str().map_err(|_| idempotency::KeyError::Malformed)?),
        None => None,
    };
    let key = idempotency::key_of(header, &body)?;
    Ok((key, body))
}

pub(super) fn user_field(body: &Value) -> Result<String, ApiError> {
    match body.get("user") {
        Some(Value::String(user)) if !user.trim().is_empty() && user.len() <= 255 && !user.contains('\0') => Ok(user.clone()),
        _ => Err(ApiError::validation("user", "user must be a user reference such as \"aurora:guest_001\" (at most 255 bytes)")),
    }
}

fn amount_field(body: &Value) -> Result<U256, ApiError> {
    let text = match body.get("amount") {
        Some(Value::String(text)) => text,
        Some(Value::Number(_)) => return Err(ApiError::validation("amount", "amount must be a decimal string such as \"12.5\", not a JSON number")),
        _ => return Err(ApiError::validation("amount", "amount is required (a decimal string of HNV)")),
    };
    match parse_units(text) {
        Some(units) if !units.is_zero() => Ok(units),
        _ => Err(ApiError::validation("amount", format!("amount {text:?} must be a positive decimal with at most 18 decimals"))),
    }
}

/// A write with an Idempotency-Key: replayed, refused or run exactly once.
async fn run_keyed(state: &AppState, caller: &Caller, key: &str, body: &Value, operation: Operation, request_id: &str) -> Result<Response, ApiError> {
    let (lease, ttl) = {
        let config = state.config.load();
        (Duration::from_secs(config.api.idempotency_lease_secs), Duration::from_secs(config.api.idempotency_ttl_secs))
    };
    let fingerprint = idempotency::fingerprint(operation.route(), body);
    let keyed = Keyed { caller: &caller.key_name, key, fingerprint: &fingerprint, lease, ttl };
    let source = format!("api:{}:{key}", caller.key_name);
    let work = async |txn: &DatabaseTransaction| -> Result<(StoredResponse, Option<Uuid>), ApiError> {
        Ok(match perform(txn, state, operation, source).await? {
            Performed::Done(status, body, wallet) => (stored(status, &body), Some(wallet)),
            Performed::Refused(error) => (stored_error(error, request_id).await, None),
        })
    };
    match idempotency::run_once(&state.db, &state.idempotency, keyed, work).await? {
        Ran::Replayed(response) => Ok(replay(response)),
        Ran::Done(response, wallet) => {
            nudge(state, wallet);
            Ok(respond(&response))
        }
    }
}

/// A mint without an Idempotency-Key: runs every time it is sent.
async fn run_unkeyed(state: &AppState, caller: &Caller, operation: Operation, request_id: &str) -> Result<Response, ApiError> {
    let source = format!("api:{}:{}", caller.key_name, Uuid::now_v7());
    let txn = crate::db::begin_write(&state.db).await?;
    match perform(&txn, state, operation, source).await? {
        Performed::Done(status, body, wallet) => {
            txn.commit().await?;
            nudge(state, Some(wallet));
            Ok(json_response(status, &body))
        }
        Performed::Refused(error) => Ok(error.into_response(request_id)),
    }
}

async fn perform(txn: &DatabaseTransaction, state: &AppState, operation: Operation, source: String) -> Result<Performed, ApiError> {
    let config = state.config.load_full();
    let result = match operation {
        Operation::Mint { user, amount, reason } => {
            token::mint(txn, state.keys.as_ref(), &config.rewards.limits, MintOrder { user: user.clone(), amount, reason: reason.clone(), source }).await.map(|minted| {
                let status = minted.intent.status.clone();
                info!(user = %user, transaction_id = %minted.intent.id, %status, "API mint queued");
                let body = MintAccepted { transaction_id: minted.intent.id, status, user, amount: format_units(amount), reason, held_reason: minted.held };
                Performed::Done(StatusCode::ACCEPTED, json!(body), minted.intent.hot_wallet_id)
            })
        }
        Operation::Redeem { user, amount, payout } => token::redeem(txn, RedeemOrder { user: user.clone(), amount, payout, source }).await.map(|redeemed| {
            info!(user = %user, redemption_id = %redeemed.redemption.id, transaction_id = %redeemed.burn.id, "Redemption opened");
            let body = RedeemAccepted {
                redemption_id: redeemed.redemption.id,
                transaction_id: redeemed.burn.id,
                status: redeemed.redemption.status,
                burn_status: redeemed.burn.status,
                payable: false,
                user,
                amount: format_units(amount),
            };
            Performed::Done(StatusCode::ACCEPTED, json!(body), redeemed.burn.hot_wallet_id)
        }),
    };
    match result {
        Ok(performed) => Ok(performed),
        // Nothing executed, but the refusal is this request's answer.
        Err(error @ (TokenError::UnknownUser(_) | TokenError::InsufficientBalance { .. })) => Ok(Performed::Refused(error.into())),
        // `KeyAlreadyUsed` among them: nothing ran and nothing is stored, so the key stays unusable.
        Err(error) => Err(error.into()),
    }
}

fn stored(status: StatusCode, body: &Value) -> StoredResponse {
    StoredResponse { status: status.as_u16(), headers: vec![("content-type".into(), "application/json".into())], body: body.to_string() }
}

async fn stored_error(error: ApiError, request_id: &str) -> StoredResponse {
    let response = error.into_response(request_id);
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_else(|_| Bytes::new());
    StoredResponse { status, headers: vec![("content-type".into(), "application/json".into())], body: String::from_utf8_lossy(&body).into_owned() }
}

/// A stored response as sent.
fn respond(stored: &StoredResponse) -> Response {
    let mut response = http::Response::new(super::full(stored.body.clone()));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A stored response again, marked as a replay.
fn replay(stored: StoredResponse) -> Response {
    let mut response = respond(&stored);
    response.headers_mut().insert(idempotency::REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}


fn nudge(state: &AppState, wallet: Option<Uuid>) {
    if let (Some(wallet), Some(chain)) = (wallet, state.chain.load_full()) {
        let _ = chain.registry.cast(crate::wallet::RegistryMsg::Nudge(Some(wallet)));
    }
}

