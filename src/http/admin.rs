//! The admin API (SPEC section 3, issue 9 item 5) under `/api/v1/admin/…`,
//! admin-scope keys only: wallets, breakers, held intents and the pause
//! switch, transactions, webhook events, alerts and the config.
//!
//! Each endpoint calls the same library function as its `havend` CLI
//! command, so the two cannot drift apart. Every action that changes
//! something, and every read of the config, is written to `audit_log` with
//! the key's name, the client IP, the request id and the status answered,
//! whatever the outcome.

use std::net::IpAddr;
use std::sync::Arc;

use entity::{transactions, wallets, webhook_events};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tracing::info;
use uuid::Uuid;

use super::auth::Caller;
use super::routes::Admin;
use super::trail::{self, AuditEntry};
use super::{ApiError, AppState, Response, json_response};
use crate::chain::format_units;
use crate::reload::ReloadHandle;
use crate::custody;
use crate::ledger::{BROADCAST, CANCELLED, CONFIRMED, FAILED, HELD, QUEUED, SIGNED};
use crate::rewards::{ProcessorSlot, inbox, operator};
use crate::wallet::lifecycle;
use crate::wallet::{RegistryMsg, WalletSettings};

/// How long the wallet list waits for the wallet actors' live status.
const WALLET_STATUS_TIMEOUT_MS: u64 = 2_000;
/// Events listed when `limit` is not given.
const DEFAULT_EVENT_LIMIT: u64 = 50;
/// Most events one list returns (rows are loaded whole, bodies included, so keep it modest).
const MAX_EVENT_LIMIT: u64 = 200;
/// Alerts listed when `limit` is not given.
const DEFAULT_ALERT_LIMIT: u64 = 20;
/// Most alerts one list returns.
const MAX_ALERT_LIMIT: u64 = 500;

/// What only the admin API needs from the daemon, beyond the listener's own state.
pub struct AdminHandles {
    /// The config actor's handle: reload now, last reload result.
    pub reload: Arc<ReloadHandle>,
    /// The processors, nudged after a replay so the event is not left to the next poll.
    pub processors: ProcessorSlot,
}

/// Runs one admin endpoint and audits it (see [`Admin::audited`]).
pub async fn handle(
    state: &AppState,
    request: Request<Incoming>,
    action: Admin,
    params: &[&str],
    caller: &Caller,
    client: IpAddr,
    request_id: &str,
) -> Result<Response, ApiError> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut details = Map::new();
    if !params.is_empty() {
        details.insert("params".into(), json!(params.iter().map(|p| decode(p)).collect::<Vec<_>>()));
    }
    let call = Call { state, params, actor: format!("admin:{}", caller.key_name) };
    let result = call.run(action, request, &mut details).await;
    if action.audited(&method) {
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(error) => {
                details.insert("error".into(), json!(error.code));
                error.status.as_u16()
            }
        };
        info!(key_name = %caller.key_name, action = action.name(), status, "Admin action");
        let entry = AuditEntry {
            key_name: &caller.key_name,
            client,
            request_id,
            method: &method,
            path: &path,
            action: action.name(),
            status,
            details: Value::Object(details),
        };
        trail::audit(state, entry).await;
    }
    result
}

/// One admin request's context.
struct Call<'a> {
    state: &'a AppState,
    params: &'a [&'a str],
    /// Who the library functions record as acting (`admin:{key name}`).
    actor: String,
}

impl Call<'_> {
    fn param(&self, index: usize) -> String {
        decode(self.params.get(index).copied().unwrap_or_default())
    }

    async fn run(&self, action: Admin, request: Request<Incoming>, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let query = query_pairs(request.uri().query());
        match action {
            Admin::Wallets => self.wallets().await,
            Admin::WalletCreate => self.wallet_create(details).await,
            Admin::Wallet => self.wallet().await,
            Admin::WalletActivate => self.wallet_activate(details).await,
            Admin::WalletRotate => self.wallet_rotate(details).await,
            Admin::WalletRevoke => self.wallet_revoke(details).await,
            Admin::WalletResume => self.wallet_resume(details).await,
            Admin::Breakers => self.breakers().await,
            Admin::BreakerReset => self.breaker_reset().await,
            Admin::HeldIntents => {
                let held = operator::list_held(&self.state.db).await?;
                ok(json!({ "intents": held.iter().map(describe_intent).collect::<Vec<_>>() }))
            }
            Admin::IntentRelease => self.intent(true).await,
            Admin::IntentCancel => self.intent(false).await,
            Admin::Pause => ok(json!({ "paused": crate::ledger::pause::is_paused(&self.state.db).await? })),
            Admin::PauseSet => self.pause_set(request, details).await,
            Admin::TransactionsSummary => ok(json!(crate::monitor::summary(&self.state.db).await?)),
            Admin::TransactionRetry => self.transaction_retry(details).await,
            Admin::Events => self.events(&query).await,
            Admin::Event => self.event().await,
            Admin::EventReplay => self.event_replay().await,
            Admin::Alerts => {
                let limit = limit(&query, DEFAULT_ALERT_LIMIT, MAX_ALERT_LIMIT)?;
                ok(json!({ "alerts": crate::alert::store::list(&self.state.db, limit).await? }))
            }
            Admin::AlertStats => ok(json!(crate::alert::store::stats(&self.state.db).await?)),
            Admin::AlertTest => self.alert_test(details).await,
            Admin::Config => self.config(),
            Admin::ConfigReload => self.config_reload(details).await,
        }
    }

    async fn wallets(&self) -> Result<Response, ApiError> {
        let rows = custody::list_hot(&self.state.db).await?;
        let live = match self.state.chain.load_full() {
            Some(chain) => ractor::call_t!(chain.registry, RegistryMsg::Statuses, WALLET_STATUS_TIMEOUT_MS).ok(),
            None => None,
        };
        let wallets: Vec<Value> = rows
            .iter()
            .map(|wallet| {
                let mut described = describe_wallet(wallet);
                let actor = live.as_ref().and_then(|statuses| {
                    let address = wallet.address.parse::<alloy::primitives::Address>().ok()?;
                    statuses.iter().find(|status| status.address == address)
                });
                described["actor"] = json!(actor);
                described
            })
            .collect();
        ok(json!({ "wallets": wallets, "live_status": live.is_some() }))
    }

    async fn wallet(&self) -> Result<Response, ApiError> {
        let wallet = self.find_wallet().await?;
        let audit: Vec<Value> = custody::audit_log(&self.state.db, wallet.id)
            .await?
            .into_iter()
            .map(|row| {
                let details = serde_json::from_str::<Value>(&row.details).unwrap_or(Value::String(row.details));
                json!({ "at": row.created_at, "action": row.action, "severity": row.severity, "actor": row.actor, "details": details })
            })
            .collect();
        ok(json!({ "wallet": describe_wallet(&wallet), "audit_log": audit }))
    }

    async fn wallet_create(&self, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let keys = self.keys()?;
        let wallet = custody::create_wallet(&self.state.db, keys, custody::HOT, &self.actor).await?;
        details.insert("address".into(), json!(wallet.address));
        Ok(json_response(StatusCode::CREATED, &json!({ "wallet": describe_wallet(&wallet) })))
    }

    async fn wallet_activate(&self, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let chain = self.state.chain.load_full().ok_or_else(no_chain)?;
        let min_balance = match &self.state.config.load().chain {
            Some(config) => WalletSettings::from_config(config).min_balance,
            None => return Err(no_chain()),
        };
        let wallet = self.find_wallet().await?;
        details.insert("address".into(), json!(wallet.address));
        let activation = lifecycle::activate_checked(&self.state.db, &chain.client, chain.token, min_balance, &wallet, &self.actor)
            .await?;
        let _ = chain.registry.cast(RegistryMsg::Nudge(None));
        let wallet = custody::find(&self.state.db, &wallet.address).await?;
        ok(json!({ "wallet": describe_wallet(&wallet), "activation": activation }))
    }

    async fn wallet_rotate(&self, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let keys = self.keys()?;
        let old = self.find_wallet().await?;
        details.insert("address".into(), json!(old.address));
        let new = lifecycle::rotate(&self.state.db, keys, &old, &self.actor).await?;
        details.insert("rotated_to".into(), json!(new.address));
        let next = format!(
            "grant {} its roles, fund it, add it to chain.wallets, then activate it; {} signs until then",
            new.address, old.address
        );
        Ok(json_response(StatusCode::CREATED, &json!({ "wallet": describe_wallet(&new), "rotating": old.address, "next_steps": next })))
    }

    async fn wallet_revoke(&self, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let wallet = self.find_wallet().await?;
        details.insert("address".into(), json!(wallet.address));
        let revocation = lifecycle::revoke(&self.state.db, &wallet, &self.actor).await?;
        self.nudge_wallets(None);
        let wallet = custody::find(&self.state.db, &wallet.address).await?;
        ok(json!({ "wallet": describe_wallet(&wallet), "revocation": revocation }))
    }

    async fn wallet_resume(&self, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let wallet = self.find_wallet().await?;
        details.insert("address".into(), json!(wallet.address));
        let lifted = lifecycle::resume(&self.state.db, &wallet, &self.actor).await?;
        self.nudge_wallets(Some(wallet.id));
        let wallet = custody::find(&self.state.db, &wallet.address).await?;
        ok(json!({ "wallet": describe_wallet(&wallet), "lifted_halt": lifted }))
    }

    async fn breakers(&self) -> Result<Response, ApiError> {
        let Some(chain) = self.state.chain.load_full() else { return ok(json!({ "breakers": [] })) };
        let status = chain.breaker.status().await.ok_or_else(|| ApiError::dependency_unavailable("BREAKER_UNAVAILABLE", "the RPC breaker did not answer in time"))?;
        ok(json!({ "breakers": [status] }))
    }

    async fn breaker_reset(&self) -> Result<Response, ApiError> {
        let chain = self.state.chain.load_full().ok_or_else(no_chain)?;
        chain.breaker.reset();
        // The actor handles messages in order, so this status follows the reset.
        ok(json!({ "reset": true, "breakers": chain.breaker.status().await.into_iter().collect::<Vec<_>>() }))
    }

    async fn intent(&self, release: bool) -> Result<Response, ApiError> {
        let id = uuid_param(&self.param(0))?;
        let intent = if release {
            operator::release(&self.state.db, id, &self.actor).await
        } else {
            operator::cancel(&self.state.db, id, &self.actor).await
        }?;
        if release {
            self.nudge_wallets(Some(intent.hot_wallet_id));
        }
        ok(describe_intent(&intent))
    }

    async fn pause_set(&self, request: Request<Incoming>, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let body = super::read_json(self.state, request).await?.1;
        let Some(paused) = body.get("paused").and_then(Value::as_bool) else {
            return Err(ApiError::validation("paused", "paused must be true or false"));
        };
        details.insert("paused".into(), json!(paused));
        crate::ledger::pause::set_paused(&self.state.db, paused, &self.actor).await?;
        if !paused {
            self.nudge_wallets(None);
        }
        ok(json!({ "paused": paused }))
    }

    /// Retry never sends anything itself: an intent in flight (`queued`,
    /// `signed`, `broadcast`) gets its wallet actor nudged, which rebroadcasts
    /// or replaces at the same nonce as its planner decides, so the intent
    /// still becomes exactly one effective transaction. A `failed` intent
    /// reverted on chain and is not re-sent: re-queueing it could mint (or
    /// burn) after a reversal, recredit or payout already settled around the
    /// failure; a new mint is the operator's explicit decision. A held intent
    /// is released or cancelled through its own endpoints, which check for a
    /// pending reversal.
    async fn transaction_retry(&self, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let id = uuid_param(&self.param(0))?;
        let intent = crate::ledger::find_intent(&self.state.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no transaction {id}")))?;
        details.insert("status".into(), json!(intent.status));
        match intent.status.as_str() {
            QUEUED | SIGNED | BROADCAST => {
                let chain = self.state.chain.load_full().ok_or_else(no_chain)?;
                let _ = chain.registry.cast(RegistryMsg::Nudge(Some(intent.hot_wallet_id)));
                Ok(json_response(StatusCode::ACCEPTED, &json!({ "id": id, "status": intent.status, "action": "wallet_nudged" })))
            }
            HELD => Err(ApiError::conflict("INTENT_HELD", format!("intent {id} is held over a mint limit; release or cancel it"))),
            FAILED => Err(ApiError::conflict(
                "NOT_RETRYABLE",
                format!("intent {id} reverted on chain; it is not re-sent automatically (a new mint is an explicit decision)"),
            )),
            CONFIRMED | CANCELLED => Err(ApiError::conflict("NOT_RETRYABLE", format!("intent {id} is {}: nothing to retry", intent.status))),
            other => Err(ApiError::conflict("NOT_RETRYABLE", format!("intent {id} is {other}"))),
        }
    }

    async fn events(&self, query: &[(String, String)]) -> Result<Response, ApiError> {
        let limit = limit(query, DEFAULT_EVENT_LIMIT, MAX_EVENT_LIMIT)?;
        let rows = inbox::list_events(&self.state.db, value(query, "partner"), value(query, "status"), limit).await?;
        ok(json!({ "events": rows.iter().map(describe_event).collect::<Vec<_>>() }))
    }

    async fn event(&self) -> Result<Response, ApiError> {
        let (partner, event_id) = (self.param(0), self.param(1));
        let event = inbox::find_event(&self.state.db, &partner, &event_id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no event {event_id:?} from {partner:?}")))?;
        ok(describe_event(&event))
    }

    async fn event_replay(&self) -> Result<Response, ApiError> {
        let reference = self.param(0);
        match inbox::replay(&self.state.db, &reference).await? {
            inbox::Replay::Requeued(id) => {
                crate::rewards::processor::nudge(&self.state.admin.processors);
                ok(json!({ "replayed": id, "status": inbox::PENDING }))
            }
            inbox::Replay::NotFound => Err(ApiError::not_found(format!("no event {reference:?} (havend's id or partner:partner_event_id)"))),
            inbox::Replay::NotDeadLettered(status) => Err(ApiError::conflict(
                "NOT_DEAD_LETTERED",
                format!("event {reference:?} is {status}; only dead-lettered events are replayed"),
            )),
        }
    }

    async fn alert_test(&self, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let config = self.state.config.load_full();
        let alert = crate::alert::send_test(&self.state.db, &config, &self.actor).await?;
        details.insert("alert_id".into(), json!(alert.id));
        details.insert("delivery_status".into(), json!(alert.delivery_status));
        ok(json!(alert))
    }

    fn config(&self) -> Result<Response, ApiError> {
        let config = self.state.config.load_full();
        // The same effective view as `havend check-config`: `Secret`s and URLs
        // with credentials serialize redacted, API keys only as their hashes.
        let text = config.to_redacted_toml();
        let effective = toml::from_str::<toml::Value>(&text).map(|value| json!(value)).unwrap_or(Value::String(text));
        ok(json!({ "effective": effective, "last_reload": self.state.admin.reload.last().as_deref() }))
    }

    async fn config_reload(&self, details: &mut Map<String, Value>) -> Result<Response, ApiError> {
        let report = self.state.admin.reload.reload().await.ok_or_else(|| {
            ApiError::dependency_unavailable("RELOAD_UNAVAILABLE", "no config actor: the daemon runs without a config directory, or it did not answer in time")
        })?;
        details.insert("outcome".into(), json!(report.outcome));
        if let Some(error) = &report.error {
            details.insert("reload_error".into(), json!(error));
        }
        ok(json!(report))
    }

    async fn find_wallet(&self) -> Result<wallets::Model, ApiError> {
        Ok(custody::find(&self.state.db, &self.param(0)).await?)
    }

    fn keys(&self) -> Result<&custody::MasterKeys, ApiError> {
        self.state.keys.as_ref().ok_or_else(|| {
            ApiError::dependency_unavailable("NO_MASTER_KEY", "this daemon has no master key (HAVEND_MASTER_KEY or custody.master_key_file)")
        })
    }

    fn nudge_wallets(&self, wallet: Option<Uuid>) {
        if let Some(chain) = self.state.chain.load_full() {
            let _ = chain.registry.cast(RegistryMsg::Nudge(wallet));
        }
    }
}

fn ok(body: Value) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &body))
}

fn no_chain() -> ApiError {
    ApiError::dependency_unavailable("NO_CHAIN", "this daemon has no [chain] configured")
}

fn uuid_param(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::validation("id", "an intent id is a UUID"))
}

/// A path segment or query value, percent-decoded (`aurora%3Ab1` → `aurora:b1`).
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The query string's pairs, decoded (`+` is a space, as forms send it).
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(&name.replace('+', " ")), decode(&value.replace('+', " ")))
        })
        .collect()
}

fn value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str())
}

/// `limit` from the query: `default` when absent, 400 unless 1..=`max`.
fn limit(query: &[(String, String)], default: u64, max: u64) -> Result<u64, ApiError> {
    match value(query, "limit") {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
            _ => Err(ApiError::validation("limit", format!("limit must be a whole number from 1 to {max}"))),
        },
    }
}

/// A wallet's public information (never key material).
fn describe_wallet(w: &wallets::Model) -> Value {
    json!({
        "id": w.id, "address": w.address, "kind": w.kind, "status": w.status, "key_version": w.key_version,
        "next_nonce": w.next_nonce, "owner": w.owner, "rotated_to": w.rotated_to, "created_at": w.created_at,
        "heartbeat_at": w.heartbeat_at, "halted": w.halted,
    })
}

/// An intent, its amount as a decimal string of HNV.
fn describe_intent(t: &transactions::Model) -> Value {
    json!({
        "id": t.id, "source": t.source, "kind": t.kind, "amount": format_units(t.amount.parse().unwrap_or_default()),
        "status": t.status, "reason": t.reason, "note": t.last_error, "hot_wallet_id": t.hot_wallet_id, "tx_hash": t.tx_hash,
        "created_at": t.created_at, "updated_at": t.updated_at,
    })
}

/// An inbox event without its body or headers (personal data, signatures).
fn describe_event(e: &webhook_events::Model) -> Value {
    json!({
        "id": e.id, "partner": e.partner, "partner_event_id": e.partner_event_id, "event_type": e.event_type,
        "status": e.status, "attempts": e.attempts, "next_attempt_at": e.next_attempt_at, "last_error": e.last_error,
        "source_ip": e.source_ip, "request_id": e.request_id, "received_at": e.received_at, "processed_at": e.processed_at,
        "processed_by": e.processed_by, "body_purged_at": e.body_purged_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded_and_limits_bounded() {
        let query = query_pairs(Some("partner=aurora&status=dead_letter&limit=5&x=a%3Ab+c"));
        assert_eq!(value(&query, "partner"), Some("aurora"));
        assert_eq!(value(&query, "x"), Some("a:b c"));
        assert_eq!(limit(&query, 50, 200).unwrap(), 5);
        assert_eq!(limit(&[], 50, 200).unwrap(), 50);
        assert_eq!(limit(&query_pairs(Some("limit=0")), 50, 200).unwrap_err().status, 400);
        assert_eq!(limit(&query_pairs(Some("limit=201")), 50, 200).unwrap_err().status, 400);
        assert!(query_pairs(None).is_empty());
    }
}
