//! The admin API over HTTP: admin keys only, every action in `audit_log`,
//! wallets, the pause switch, held intents, events, alerts, the config, and
//! 5xx answers in `error_logs`.

use std::time::Duration;

use bytes::Bytes;
use entity::{audit_log, error_logs};
use havend::webhooks::Partner;
use http_body_util::Full;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::*;
use crate::token::{call, ledger_daemon};

/// Sends `method path` with `key` (none: no key), `X-Request-Id: request_id` and a JSON body.
async fn admin(daemon: &TestDaemon, method: &str, path: &str, key: Option<&str>, request_id: &str, body: &Value) -> Answer {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", daemon.addr))
        .header("x-request-id", request_id)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let body = if method == "GET" { Bytes::new() } else { Bytes::from(body.to_string()) };
    daemon.send(request.body(Full::new(body)).unwrap()).await
}

async fn get(daemon: &TestDaemon, path: &str) -> Answer {
    admin(daemon, "GET", path, Some(ADMIN_KEY), &uuid::Uuid::new_v4().to_string(), &Value::Null).await
}

async fn post(daemon: &TestDaemon, path: &str, body: &Value) -> Answer {
    admin(daemon, "POST", path, Some(ADMIN_KEY), &uuid::Uuid::new_v4().to_string(), body).await
}

async fn audit_rows(daemon: &TestDaemon, action: &str) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq(action))
        .order_by_asc(audit_log::Column::CreatedAt)
        .all(&daemon.db)
        .await
        .unwrap()
}

async fn admin_endpoints_reject_the_token_key_with_403_and_a_missing_key_with_401(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let routes = [
        ("GET", "/api/v1/admin/wallets"),
        ("POST", "/api/v1/admin/wallets"),
        ("GET", "/api/v1/admin/pause"),
        ("POST", "/api/v1/admin/pause"),
        ("POST", "/api/v1/admin/breakers/reset"),
        ("GET", "/api/v1/admin/events"),
        ("POST", "/api/v1/admin/events/stripe:evt_1/replay"),
        ("POST", "/api/v1/admin/alerts/test"),
        ("GET", "/api/v1/admin/config"),
        ("POST", "/api/v1/admin/config/reload"),
    ];
    for (method, path) in routes {
        let missing = admin(&daemon, method, path, None, "no-key", &json!({ "paused": true })).await;
        assert_eq!(missing.status, 401, "{method} {path}: {:?}", missing.json);
        assert_eq!(assert_error_shape(&missing), "UNAUTHORIZED");
        let token = admin(&daemon, method, path, Some(TOKEN_KEY), "token-key", &json!({ "paused": true })).await;
        assert_eq!(token.status, 403, "{method} {path}: {:?}", token.json);
        assert_eq!(assert_error_shape(&token), "FORBIDDEN");
    }
    assert_eq!(get(&daemon, "/api/v1/admin/pause").await.json["paused"], false, "nothing was paused by the refused calls");
    assert!(audit_log::Entity::find().all(&daemon.db).await.unwrap().is_empty(), "refused calls ran no admin action");
    daemon.stop().await;
}

async fn the_pause_switch_round_trips_and_every_action_is_audited_with_key_ip_and_request_id(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    assert_eq!(get(&daemon, "/api/v1/admin/pause").await.json, json!({ "paused": false }));
    let paused = admin(&daemon, "POST", "/api/v1/admin/pause", Some(ADMIN_KEY), "audit-pause-1", &json!({ "paused": true })).await;
    assert_eq!((paused.status, &paused.json), (200, &json!({ "paused": true })));
    assert_eq!(get(&daemon, "/api/v1/admin/pause").await.json["paused"], true);
    let resumed = admin(&daemon, "POST", "/api/v1/admin/pause", Some(ADMIN_KEY), "audit-pause-2", &json!({ "paused": false })).await;
    assert_eq!(resumed.status, 200);
    assert_eq!(get(&daemon, "/api/v1/admin/pause").await.json["paused"], false);
    let invalid = admin(&daemon, "POST", "/api/v1/admin/pause", Some(ADMIN_KEY), "audit-pause-3", &json!({ "paused": "yes" })).await;
    assert_eq!(invalid.status, 400);
    assert_eq!(assert_error_shape(&invalid), "VALIDATION_ERROR");

    let rows = audit_rows(&daemon, "pause_set").await;
    let seen: Vec<(&str, i32, &str)> = rows.iter().map(|r| (r.request_id.as_str(), r.status, r.details.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("audit-pause-1", 200, r#"{"paused":true}"#),
            ("audit-pause-2", 200, r#"{"paused":false}"#),
            ("audit-pause-3", 400, r#"{"error":"VALIDATION_ERROR"}"#),
        ],
        "every action, whatever its outcome"
    );
    for row in &rows {
        assert_eq!((row.key_name.as_str(), row.client_ip.as_str()), (ADMIN_KEY_NAME, "127.0.0.1"));
        assert_eq!((row.method.as_str(), row.path.as_str()), ("POST", "/api/v1/admin/pause"));
    }
    assert!(audit_rows(&daemon, "pause_get").await.is_empty(), "plain reads are not audited");
    let config = admin(&daemon, "GET", "/api/v1/admin/config", Some(ADMIN_KEY), "audit-config-1", &Value::Null).await;
    assert_eq!(config.status, 200);
    let reads = audit_rows(&daemon, "config_show").await;
    assert_eq!(reads.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["audit-config-1"], "who read the config is kept");
    daemon.stop().await;
}

async fn wallets_are_listed_shown_with_their_audit_log_created_and_revoked(backend: Backend) {
    let daemon = ledger_daemon(backend, |_| {}).await;
    let listed = get(&daemon, "/api/v1/admin/wallets").await;
    assert_eq!(listed.status, 200, "{:?}", listed.json);
    let wallets = listed.json["wallets"].as_array().unwrap();
    assert_eq!(wallets.len(), 1);
    assert_eq!(wallets[0]["status"], "active");
    let address = wallets[0]["address"].as_str().unwrap().to_owned();

    let shown = get(&daemon, &format!("/api/v1/admin/wallets/{address}")).await;
    assert_eq!(shown.status, 200, "{:?}", shown.json);
    assert_eq!(shown.json["wallet"]["address"], address.as_str());
    let actions: Vec<&str> = shown.json["audit_log"].as_array().unwrap().iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"create"), "{actions:?}");
    assert_eq!(get(&daemon, "/api/v1/admin/wallets/0x0000000000000000000000000000000000000001").await.status, 404);

    let created = post(&daemon, "/api/v1/admin/wallets", &json!({})).await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    assert_eq!(created.json["wallet"]["status"], "standby");
    assert!(!created.json.to_string().contains("encrypted"), "no key material: {}", created.json);
    let standby = created.json["wallet"]["address"].as_str().unwrap().to_owned();
    let activate = post(&daemon, &format!("/api/v1/admin/wallets/{standby}/activate"), &json!({})).await;
    assert_eq!((activate.status, assert_error_shape(&activate)), (503, "NO_CHAIN".to_owned()), "activation checks the chain");
    let revoked = post(&daemon, &format!("/api/v1/admin/wallets/{standby}/revoke"), &json!({})).await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.json);
    assert_eq!(revoked.json["wallet"]["status"], "revoked");
    let again = post(&daemon, &format!("/api/v1/admin/wallets/{standby}/revoke"), &json!({})).await;
    assert_eq!((again.status, assert_error_shape(&again)), (409, "WRONG_WALLET_STATUS".to_owned()));

    let audited: Vec<(String, i32)> = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::CreatedAt)
        .all(&daemon.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.status))
        .collect();
    let expected = [("wallet_create", 201), ("wallet_activate", 503), ("wallet_revoke", 200), ("wallet_revoke", 409)];
    assert_eq!(audited, expected.map(|(a, s)| (a.to_owned(), s)));
    daemon.stop().await;
}

async fn held_intents_are_listed_released_and_cancelled(backend: Backend) {
    let daemon = ledger_daemon(backend, |config| config.rewards.limits.max_per_event = rust_decimal::Decimal::from(500)).await;
    let mut ids = Vec::new();
    for user in ["tribe:h1", "tribe:h2"] {
        let minted = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, None, &json!({ "user": user, "amount": "501.5" })).await;
        assert_eq!((minted.status, minted.json["status"].as_str()), (202, Some("held")), "{:?}", minted.json);
        ids.push(minted.json["transaction_id"].as_str().unwrap().to_owned());
    }
    let held = get(&daemon, "/api/v1/admin/intents/held").await;
    assert_eq!(held.status, 200);
    let listed: Vec<&str> = held.json["intents"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(held.json["intents"][0]["amount"], "501.5", "amounts are decimal strings");

    let released = post(&daemon, &format!("/api/v1/admin/intents/{}/release", ids[0]), &json!({})).await;
    assert_eq!((released.status, released.json["status"].as_str()), (200, Some("queued")), "{:?}", released.json);
    let cancelled = post(&daemon, &format!("/api/v1/admin/intents/{}/cancel", ids[1]), &json!({})).await;
    assert_eq!((cancelled.status, cancelled.json["status"].as_str()), (200, Some("cancelled")), "{:?}", cancelled.json);
    let twice = post(&daemon, &format!("/api/v1/admin/intents/{}/release", ids[1]), &json!({})).await;
    assert_eq!((twice.status, assert_error_shape(&twice)), (409, "NOT_HELD".to_owned()));
    let not_uuid = post(&daemon, "/api/v1/admin/intents/nope/release", &json!({})).await;
    assert_eq!(not_uuid.status, 400);
    assert!(get(&daemon, "/api/v1/admin/intents/held").await.json["intents"].as_array().unwrap().is_empty());

    let retry_cancelled = post(&daemon, &format!("/api/v1/admin/transactions/{}/retry", ids[1]), &json!({})).await;
    assert_eq!((retry_cancelled.status, assert_error_shape(&retry_cancelled)), (409, "NOT_RETRYABLE".to_owned()));
    let retry_queued = post(&daemon, &format!("/api/v1/admin/transactions/{}/retry", ids[0]), &json!({})).await;
    assert_eq!((retry_queued.status, assert_error_shape(&retry_queued)), (503, "NO_CHAIN".to_owned()), "no wallet actor to nudge");
    let summary = get(&daemon, "/api/v1/admin/transactions/summary").await;
    assert_eq!(summary.status, 200);
    assert_eq!((summary.json["by_status"]["queued"].as_u64(), summary.json["by_status"]["cancelled"].as_u64()), (Some(1), Some(1)));

    let release_rows = audit_rows(&daemon, "intent_release").await;
    assert_eq!(release_rows.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 409, 400]);
    assert_eq!(release_rows[0].details, json!({ "params": [ids[0]] }).to_string());
    daemon.stop().await;
}

async fn events_are_listed_filtered_shown_and_a_dead_letter_replayed(backend: Backend) {
    let daemon = ledger_daemon(backend, |config| config.processor.max_attempts = 1).await;
    let unknown = uuid::Uuid::new_v4();
    let payout = json!({ "id": "evt_admin_1", "type": "payout.paid", "data": { "object": { "metadata": { "redemption_id": unknown } } } });
    assert_eq!(daemon.deliver(Partner::Stripe, None, &payout.to_string()).await.status, 200);
    assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), &booking_created("bk_admin_1")).await.status, 200);
    let settled = eventually(Duration::from_secs(10), || async {
        let dead = daemon.event(Partner::Stripe, "evt_admin_1").await.is_some_and(|e| e.status == "dead_letter");
        let done = daemon.event(Partner::Aurora, "booking-created:bk_admin_1").await.is_some_and(|e| e.status == "processed");
        dead && done
    })
    .await;
    assert!(settled, "{:?} {:?}", daemon.event(Partner::Stripe, "evt_admin_1").await, daemon.event(Partner::Aurora, "booking-created:bk_admin_1").await);

    let all = get(&daemon, "/api/v1/admin/events").await;
    assert_eq!((all.status, all.json["events"].as_array().unwrap().len()), (200, 2));
    assert!(all.json["events"].as_array().unwrap().iter().all(|e| e.get("body").is_none() && e.get("headers").is_none()), "no bodies");
    assert!(!all.json.to_string().contains("guest_001"), "no personal data from bodies: {}", all.json);
    let dead = get(&daemon, "/api/v1/admin/events?status=dead_letter").await;
    let dead: Vec<&str> = dead.json["events"].as_array().unwrap().iter().map(|e| e["partner_event_id"].as_str().unwrap()).collect();
    assert_eq!(dead, ["evt_admin_1"]);
    let aurora = get(&daemon, "/api/v1/admin/events?partner=aurora&limit=10").await;
    assert_eq!(aurora.json["events"][0]["partner_event_id"], "booking-created:bk_admin_1");
    assert_eq!(aurora.json["events"].as_array().unwrap().len(), 1);
    assert_eq!(get(&daemon, "/api/v1/admin/events?limit=0").await.status, 400);

    let status = get(&daemon, "/api/v1/admin/events/by-partner/stripe/evt_admin_1").await;
    assert_eq!((status.status, status.json["status"].as_str()), (200, Some("dead_letter")), "{:?}", status.json);
    assert_eq!(get(&daemon, "/api/v1/admin/events/by-partner/stripe/evt_nope").await.status, 404);
    let booking = get(&daemon, "/api/v1/admin/events/by-partner/aurora/booking-created%3Abk_admin_1").await;
    assert_eq!(booking.json["status"], "processed", "{:?}", booking.json);

    let processed = post(&daemon, "/api/v1/admin/events/aurora:booking-created:bk_admin_1/replay", &json!({})).await;
    assert_eq!((processed.status, assert_error_shape(&processed)), (409, "NOT_DEAD_LETTERED".to_owned()));
    let replayed = post(&daemon, "/api/v1/admin/events/stripe:evt_admin_1/replay", &json!({})).await;
    assert_eq!(replayed.status, 200, "{:?}", replayed.json);
    assert_eq!(replayed.json["replayed"], status.json["id"]);
    // Still an unknown redemption: it runs again and is dead-lettered again.
    let again = eventually(Duration::from_secs(10), || async {
        daemon.event(Partner::Stripe, "evt_admin_1").await.is_some_and(|e| e.status == "dead_letter" && e.attempts >= 1)
    })
    .await;
    assert!(again, "the replayed event was processed again");
    assert_eq!(audit_rows(&daemon, "event_replay").await.iter().map(|r| r.status).collect::<Vec<_>>(), [409, 200]);
    daemon.stop().await;
}

async fn alerts_are_tested_listed_and_counted(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let tested = post(&daemon, "/api/v1/admin/alerts/test", &json!({})).await;
    assert_eq!(tested.status, 200, "{:?}", tested.json);
    assert_eq!(tested.json["category"], "system_test");
    let listed = get(&daemon, "/api/v1/admin/alerts?limit=5").await;
    assert_eq!(listed.status, 200);
    assert!(listed.json["alerts"].as_array().unwrap().iter().any(|a| a["id"] == tested.json["id"]), "{:?}", listed.json);
    let stats = get(&daemon, "/api/v1/admin/alerts/stats").await;
    assert_eq!(stats.status, 200);
    assert!(stats.json.to_string().contains("system_test"), "{:?}", stats.json);
    assert_eq!(audit_rows(&daemon, "alert_test").await.len(), 1);
    daemon.stop().await;
}

async fn the_config_shows_no_secret_and_reload_reports_its_error(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    let shown = get(&daemon, "/api/v1/admin/config").await;
    assert_eq!(shown.status, 200, "{:?}", shown.json);
    let text = shown.json.to_string();
    for secret in [AURORA_SECRET, AURORA_OLD_SECRET, TRIBE_SECRET, STRIPE_SECRET, HI_EVENTS_SECRET, TOKEN_KEY, ADMIN_KEY] {
        assert!(!text.contains(secret), "{secret} shown in {text}");
    }
    assert!(shown.json["effective"]["partners"]["aurora"].is_object(), "{text}");
    assert!(shown.json["last_reload"].is_null());
    let no_reload = post(&daemon, "/api/v1/admin/config/reload", &json!({})).await;
    assert_eq!((no_reload.status, assert_error_shape(&no_reload)), (503, "RELOAD_UNAVAILABLE".to_owned()));
    daemon.stop().await;

    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, "", "[partners.aurora]\nsecrets = [\"aurora-file-secret\"]\n").await;
    let admin_key = havend::config::ApiKey::from_raw(ADMIN_KEY, havend::config::Scope::Admin);
    std::fs::write(dir.join("api_keys.toml"), format!("[keys.{ADMIN_KEY_NAME}]\nscope = \"admin\"\nsha256 = \"{}\"\n", admin_key.sha256)).unwrap();
    let applied = daemon.daemon().reload().await.expect("the config actor answers");
    assert_eq!(applied.outcome, "applied", "{applied:?}");
    std::fs::write(dir.join("partners.toml"), "[partners.aurora\nsecrets = [\"aurora-file-secret\"]\n").unwrap();
    let rejected = post(&daemon, "/api/v1/admin/config/reload", &json!({})).await;
    assert_eq!(rejected.status, 200, "{:?}", rejected.json);
    assert_eq!(rejected.json["outcome"], "rejected");
    assert!(rejected.json["error"].as_str().is_some_and(|e| e.contains("partners.toml")), "{:?}", rejected.json);
    let shown = get(&daemon, "/api/v1/admin/config").await;
    assert_eq!(shown.json["last_reload"]["outcome"], "rejected");
    assert_eq!(shown.json["last_reload"]["error"], rejected.json["error"]);
    assert!(!shown.json.to_string().contains("aurora-file-secret"));
    let reloads = audit_rows(&daemon, "config_reload").await;
    assert_eq!(reloads.len(), 1);
    assert!(reloads[0].details.contains("rejected"), "{}", reloads[0].details);
    daemon.stop().await;
}

async fn a_server_error_lands_in_error_logs_under_the_error_id_it_answered(backend: Backend) {
    let daemon = TestDaemon::start(backend).await;
    // Without a chain there is no breaker to reset: 503.
    let failed = admin(&daemon, "POST", "/api/v1/admin/breakers/reset", Some(ADMIN_KEY), "err-req-1", &json!({})).await;
    assert_eq!((failed.status, assert_error_shape(&failed)), (503, "NO_CHAIN".to_owned()));
    let error_id: uuid::Uuid = failed.json["error_id"].as_str().unwrap().parse().unwrap();
    let stored = eventually(Duration::from_secs(5), || async {
        error_logs::Entity::find_by_id(error_id).one(&daemon.db).await.unwrap().is_some()
    })
    .await;
    assert!(stored, "the 5xx is stored under its error id");
    let row = error_logs::Entity::find_by_id(error_id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!((row.request_id.as_str(), row.status, row.code.as_str()), ("err-req-1", 503, "NO_CHAIN"));
    assert_eq!((row.method.as_str(), row.path.as_str()), ("POST", "/api/v1/admin/breakers/reset"));
    // A 4xx is not a server error.
    let refused = admin(&daemon, "GET", "/api/v1/admin/pause", None, "err-req-2", &Value::Null).await;
    assert_eq!(refused.status, 401);
    // Proof the trail saw the requests after it: a later 5xx is stored.
    let later = admin(&daemon, "POST", "/api/v1/admin/breakers/reset", Some(ADMIN_KEY), "err-req-3", &json!({})).await;
    let later_id: uuid::Uuid = later.json["error_id"].as_str().unwrap().parse().unwrap();
    assert!(eventually(Duration::from_secs(5), || async { error_logs::Entity::find_by_id(later_id).one(&daemon.db).await.unwrap().is_some() }).await);
    let requests: Vec<String> = error_logs::Entity::find().all(&daemon.db).await.unwrap().into_iter().map(|row| row.request_id).collect();
    assert_eq!(requests.len(), 2, "the 401 in between was not stored: {requests:?}");
    assert!(!requests.iter().any(|r| r == "err-req-2"));
    daemon.stop().await;
}

on_both_backends!(
    admin_endpoints_reject_the_token_key_with_403_and_a_missing_key_with_401,
    the_pause_switch_round_trips_and_every_action_is_audited_with_key_ip_and_request_id,
    wallets_are_listed_shown_with_their_audit_log_created_and_revoked,
    held_intents_are_listed_released_and_cancelled,
    events_are_listed_filtered_shown_and_a_dead_letter_replayed,
    alerts_are_tested_listed_and_counted,
    the_config_shows_no_secret_and_reload_reports_its_error,
    a_server_error_lands_in_error_logs_under_the_error_id_it_answered,
);

/// PostgreSQL only: with the database cut off behind the test proxy, an
/// admin call still answers (a 503) promptly: neither the audit row nor the
/// error row can hold the answer up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_does_not_hang_the_error_path() {
    use crate::support::proxy::TcpProxy;
    let upstream: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = TcpProxy::start(upstream).await;
    let proxy_addr = proxy.addr;
    let database = TestDatabase::create(Backend::Postgres).await;
    let daemon = TestDaemon::start_on(database, |db| db.url.replacen("127.0.0.1:5432", &proxy_addr.to_string(), 1), |_| {}).await;
    proxy.cut();
    // Answered while the database is still cut off (it is restored only
    // after): the answer waited for no audit or error row. The deadline
    // only keeps a hang from stalling the suite.
    let answer = tokio::time::timeout(Duration::from_secs(60), admin(&daemon, "POST", "/api/v1/admin/pause", Some(ADMIN_KEY), "cut-req-1", &json!({ "paused": true })))
        .await
        .expect("answered while the database is cut off");
    assert!(answer.status >= 500, "{:?}", answer.json);
    assert_error_shape(&answer);
    proxy.restore();
    daemon.stop().await;
}
