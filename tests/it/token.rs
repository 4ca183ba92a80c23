//! The token API over HTTP: API keys, mints, redemptions with their
//! Idempotency-Key, payouts, and the same on anvil end to end.

use std::time::Duration;

use alloy::primitives::U256;
use bytes::Bytes;
use entity::{idempotency_keys, redemption_requests, transactions, wallets};
use havend::custody::{self, MasterKeys};
use http_body_util::Full;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::chain::*;
use crate::support::*;

/// A daemon without a chain whose ledger has one active hot wallet (nothing
/// is ever signed, so intents stay where the test puts them).
pub(crate) async fn ledger_daemon(backend: Backend, customize: impl FnOnce(&mut havend::config::Config)) -> TestDaemon {
    let (database, key_dir) = ledger_database(backend).await;
    let key_file = key_dir.path().join("master.key");
    let mut daemon = TestDaemon::start_on(database, database_url_of, move |config| {
        config.custody.master_key_file = Some(key_file);
        customize(config);
    })
    .await;
    daemon.keep.push(key_dir);
    daemon
}

/// A migrated database with one active hot wallet, and a directory holding its master key.
async fn ledger_database(backend: Backend) -> (TestDatabase, tempfile::TempDir) {
    let database = TestDatabase::create(backend).await;
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&database.url));
    let db = havend::db::connect(&config).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let keys = MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let wallet = custody::create_wallet(&db, &keys, custody::HOT, "test").await.unwrap();
    wallets::Entity::update_many()
        .col_expr(wallets::Column::Status, Expr::value(custody::ACTIVE))
        .filter(wallets::Column::Id.eq(wallet.id))
        .exec(&db)
        .await
        .unwrap();
    db.close().await.ok();
    let key_dir = tempfile::tempdir().unwrap();
    std::fs::write(key_dir.path().join("master.key"), TEST_MASTER_KEY).unwrap();
    (database, key_dir)
}

/// POSTs JSON to an API path with an API key and optional Idempotency-Key.
pub(crate) async fn call(daemon: &TestDaemon, path: &str, api_key: &str, idempotency_key: Option<&str>, body: &Value) -> Answer {
    let mut headers = vec![("authorization".to_owned(), format!("Bearer {api_key}")), ("content-type".to_owned(), "application/json".to_owned())];
    if let Some(key) = idempotency_key {
        headers.push(("idempotency-key".to_owned(), key.to_owned()));
    }
    daemon.post(path, &headers, body.to_string()).await
}

pub(crate) async fn get_with_key(daemon: &TestDaemon, path: &str, api_key: &str) -> Answer {
    let request = http::Request::get(format!("http://{}{path}", daemon.addr))
        .header("authorization", format!("Bearer {api_key}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    daemon.send(request).await
}

/// Gives `user` a confirmed balance of `hnv` whole HNV by an API mint marked confirmed.
async fn fund(daemon: &TestDaemon, user: &str, hnv: u64) {
    let answer = call(daemon, "/api/v1/token/mint", TOKEN_KEY, None, &json!({ "user": user, "amount": hnv.to_string() })).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json);
    let id: uuid::Uuid = answer.json["transaction_id"].as_str().unwrap().parse().unwrap();
    set_status(daemon, id, "confirmed").await;
}

async fn set_status(daemon: &TestDaemon, id: uuid::Uuid, status: &str) {
    transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(status))
        .filter(transactions::Column::Id.eq(id))
        .exec(&daemon.db)
        .await
        .unwrap();
}

async fn burns(daemon: &TestDaemon) -> u64 {
    transactions::Entity::find().filter(transactions::Column::Kind.eq("burn")).count(&daemon.db).await.unwrap()
}

fn redeem_body(user: &str, amount: &str) -> Value {
    json!({ "user": user, "amount": amount, "payout": { "method": "bank", "iban": "DE89370400440532013000" } })
}

async fn api_keys_are_required_and_scoped(backend: Backend) {
    let daemon = ledger_daemon(backend, |_| {}).await;
    let body = json!({ "user": "aurora:g1", "amount": "1" });
    let missing = daemon.post("/api/v1/token/mint", &[], body.to_string()).await;
    assert_eq!(missing.status, 401);
    assert_eq!(assert_error_shape(&missing), "UNAUTHORIZED");
    let unknown = call(&daemon, "/api/v1/token/mint", "tok_not_a_key_123", None, &body).await;
    assert_eq!(unknown.status, 401);
    let by_header = daemon.post("/api/v1/token/mint", &[("x-api-key".into(), TOKEN_KEY.into())], body.to_string()).await;
    assert_eq!(by_header.status, 202, "{:?}", by_header.json);
    assert_eq!(transactions::Entity::find().count(&daemon.db).await.unwrap(), 1, "only the authenticated mint was queued");
    daemon.stop().await;
}

async fn invalid_mints_get_400_in_the_error_shape_and_change_nothing(backend: Backend) {
    let daemon = ledger_daemon(backend, |_| {}).await;
    for (body, field) in [
        (json!({ "user": "aurora:g1", "amount": 5 }), "amount"),
        (json!({ "user": "aurora:g1", "amount": "-5" }), "amount"),
        (json!({ "user": "aurora:g1", "amount": "0" }), "amount"),
        (json!({ "user": "aurora:g1", "amount": "1.0000000000000000001" }), "amount"),
        (json!({ "amount": "1" }), "user"),
        (json!({ "user": "aurora:g1", "amount": "1", "idempotency_key": "bad key!" }), "Idempotency-Key"),
    ] {
        let answer = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, None, &body).await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(assert_error_shape(&answer), "VALIDATION_ERROR");
        assert_eq!(answer.json["details"]["field"], field, "{body}");
    }
    let not_json = daemon.post("/api/v1/token/mint", &[("x-api-key".into(), TOKEN_KEY.into())], "{nope").await;
    assert_eq!(not_json.status, 400);
    assert_eq!(transactions::Entity::find().count(&daemon.db).await.unwrap(), 0);
    daemon.stop().await;
}

async fn redeem_with_the_same_key_replays_status_headers_and_body_and_burns_once(backend: Backend) {
    let daemon = ledger_daemon(backend, |_| {}).await;
    fund(&daemon, "aurora:g1", 100).await;
    let body = redeem_body("aurora:g1", "40.5");
    let first = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("redeem-key-0001"), &body).await;
    assert_eq!(first.status, 202, "{:?}", first.json);
    assert_eq!(first.json["status"], "open");
    let second = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("redeem-key-0001"), &body).await;
    assert_eq!(second.status, first.status);
    assert_eq!(second.json, first.json, "the replay is the first response, byte for byte");
    assert_eq!(second.headers.get("content-type"), first.headers.get("content-type"));
    assert_eq!(second.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    // The key may also travel in the body (the header wins when both are sent).
    let mut in_body = body.clone();
    in_body["idempotency_key"] = json!("redeem-key-0001");
    let third = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, None, &in_body).await;
    assert_eq!(third.json, first.json);
    assert_eq!(burns(&daemon).await, 1);
    assert_eq!(redemption_requests::Entity::find().count(&daemon.db).await.unwrap(), 1);

    let other_body = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("redeem-key-0001"), &redeem_body("aurora:g1", "41")).await;
    assert_eq!(other_body.status, 422);
    assert_eq!(assert_error_shape(&other_body), "IDEMPOTENCY_KEY_REUSED");
    let missing = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, None, &body).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json["details"]["field"], "Idempotency-Key");
    let other_api_key = call(&daemon, "/api/v1/token/redeem", OTHER_TOKEN_KEY, Some("redeem-key-0001"), &redeem_body("aurora:g1", "10")).await;
    assert_eq!(other_api_key.status, 202, "the same key under another API key is another request: {:?}", other_api_key.json);
    assert_ne!(other_api_key.json["redemption_id"], first.json["redemption_id"]);
    assert_eq!(burns(&daemon).await, 2);
    daemon.stop().await;
}

async fn two_redemptions_that_together_exceed_the_balance_are_not_both_accepted(backend: Backend) {
    let user = match backend {
        Backend::Postgres => "aurora:split_pg",
        Backend::Sqlite => "aurora:split_lite",
    };
    let daemon = ledger_daemon(backend, |_| {}).await;
    fund(&daemon, user, 100).await;
    // Each redemption pauses between its balance check and its burn, so
    // without the per-user lock all six would see 100 and all would burn.
    arm_stall("token::stall_after_balance_check", user, 200);
    let stalls_before = havend::hooks::stalls_applied(user);
    // Six at once, 30 each, against 100: exactly three fit, whatever the interleaving.
    let body = redeem_body(user, "30");
    let keys: Vec<String> = (0..6).map(|i| format!("split-key-000{i}")).collect();
    let answers = futures_util::future::join_all(keys.iter().map(|key| call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some(key), &body))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 202, 202, 400, 400, 400], "{:?}", answers.iter().map(|a| &a.json).collect::<Vec<_>>());
    for refused in answers.iter().filter(|a| a.status == 400) {
        assert_eq!(refused.json["error"], "INSUFFICIENT_BALANCE");
        assert_eq!(refused.json["details"]["available"], "10");
    }
    assert_eq!(burns(&daemon).await, 3);
    assert_eq!(
        havend::hooks::stalls_applied(user) - stalls_before,
        3,
        "each accepted redemption stalled between its balance check and its burn, on this backend too"
    );
    disarm_stall("token::stall_after_balance_check", user);
    daemon.stop().await;
}

async fn an_api_mint_over_a_limit_is_held_with_202(backend: Backend) {
    let daemon = ledger_daemon(backend, |config| config.rewards.limits.max_per_event = rust_decimal::Decimal::from(500)).await;
    let answer = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, Some("big-mint-0001"), &json!({ "user": "tribe:m1", "amount": "501" })).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json);
    assert_eq!(answer.json["status"], "held");
    assert!(answer.json["held_reason"].as_str().unwrap().contains("per-event"), "{:?}", answer.json);
    let id: uuid::Uuid = answer.json["transaction_id"].as_str().unwrap().parse().unwrap();
    let got = get_with_key(&daemon, &format!("/api/v1/transactions/{id}"), TOKEN_KEY).await;
    assert_eq!((got.status, got.json["status"].as_str()), (200, Some("held")));
    assert_eq!(got.json["amount"], "501");
    daemon.stop().await;
}

/// SPEC: a request whose Idempotency-Key another request holds (still
/// executing) is refused with 409 `IDEMPOTENCY_KEY_IN_USE` and a
/// `Retry-After`, and does not execute; the first one then completes.
async fn a_same_key_request_while_the_first_is_stalled_gets_409_with_retry_after(backend: Backend) {
    let (user, key) = match backend {
        Backend::Postgres => ("aurora:inuse_pg", "in-use-key-pg-01"),
        Backend::Sqlite => ("aurora:inuse_lite", "in-use-key-lite-01"),
    };
    let daemon = ledger_daemon(backend, |_| {}).await;
    fund(&daemon, user, 100).await;
    let body = redeem_body(user, "30");
    let stalls_before = havend::hooks::stalls_applied(key);
    arm_stall("api::stall_after_claim", key, 5_000);
    let first = {
        let (client, addr, body) = (daemon.client.clone(), daemon.addr, body.to_string());
        tokio::spawn(async move {
            let request = http::Request::post(format!("http://{addr}/api/v1/token/redeem"))
                .header("authorization", format!("Bearer {TOKEN_KEY}"))
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            client.request(request).await.map(|r| r.status().as_u16()).unwrap_or(0)
        })
    };
    // The first request holds the key and sits in its stall.
    assert!(eventually(Duration::from_secs(10), || async { havend::hooks::stalls_applied(key) > stalls_before }).await, "the first request reached its stall");
    let second = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some(key), &body).await;
    assert!(!first.is_finished(), "the second request was answered while the first was still stalled");
    disarm_stall("api::stall_after_claim", key);
    assert_eq!(second.status, 409, "{:?}", second.json);
    assert_eq!(assert_error_shape(&second), "IDEMPOTENCY_KEY_IN_USE");
    let retry_after: u64 = second.headers.get("retry-after").expect("Retry-After is sent").to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "Retry-After is a positive number of seconds");
    assert_eq!(first.await.unwrap(), 202, "the first request completes");
    assert_eq!(havend::hooks::stalls_applied(key) - stalls_before, 1, "only the first request reached the execution");
    assert_eq!(burns(&daemon).await, 1);
    let replay = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some(key), &body).await;
    assert_eq!((replay.status, replay.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap())), (202, Some("true")));
    daemon.stop().await;
}

/// Opens a redemption of `amount` HNV for `user` under `key`, its burn confirmed; returns the redemption's id.
async fn confirmed_redemption(daemon: &TestDaemon, user: &str, amount: &str, key: &str) -> String {
    let opened = call(daemon, "/api/v1/token/redeem", TOKEN_KEY, Some(key), &redeem_body(user, amount)).await;
    assert_eq!(opened.status, 202, "{:?}", opened.json);
    set_status(daemon, opened.json["transaction_id"].as_str().unwrap().parse().unwrap(), "confirmed").await;
    opened.json["redemption_id"].as_str().unwrap().to_owned()
}

/// The re-credit of `redemption` and the `mint_held` alerts raised for it.
async fn recredit_and_alerts(daemon: &TestDaemon, redemption: &str) -> (transactions::Model, u64) {
    let recredit = transactions::Entity::find().filter(transactions::Column::Source.eq(format!("recredit:{redemption}"))).one(&daemon.db).await.unwrap().unwrap();
    let alerts = entity::alerts::Entity::find()
        .filter(entity::alerts::Column::Category.eq("mint_held"))
        .all(&daemon.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.message.contains(&recredit.id.to_string()))
        .count() as u64;
    (recredit, alerts)
}

async fn a_recredit_counts_toward_the_mint_limits_and_is_held_over_one(backend: Backend) {
    let daemon = ledger_daemon(backend, |config| config.rewards.limits.per_user_per_day = rust_decimal::Decimal::from(110)).await;
    fund(&daemon, "aurora:rc_limit", 100).await;
    let id = confirmed_redemption(&daemon, "aurora:rc_limit", "25", "rc-limit-0001").await;
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_rc_limit", "payout.failed", &id)).await;
    assert!(processed(&daemon, "evt_rc_limit").await);
    let (recredit, alerts) = recredit_and_alerts(&daemon, &id).await;
    assert_eq!(recredit.status, "held", "100 minted today plus a 25 re-credit exceed the daily 110: {:?}", recredit.last_error);
    assert!(recredit.last_error.as_deref().is_some_and(|e| e.contains("daily limit")), "{:?}", recredit.last_error);
    assert_eq!(alerts, 1, "the held re-credit is alerted");
    let day = chrono::Utc::now().date_naive().to_string();
    let used = havend::rewards::limits::used_by(&daemon.db, "aurora:rc_limit", &day).await.unwrap();
    assert_eq!(used, U256::from(100u64) * U256::from(10u64).pow(U256::from(18)), "a held re-credit is not counted");
    daemon.stop().await;
}

async fn a_payout_failed_after_paid_queues_its_recredit_held_with_an_alert(backend: Backend) {
    let daemon = ledger_daemon(backend, |_| {}).await;
    fund(&daemon, "aurora:rc_paid", 50).await;
    let id = confirmed_redemption(&daemon, "aurora:rc_paid", "10", "rc-paid-00001").await;
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_rc_paid", "payout.paid", &id)).await;
    assert!(processed(&daemon, "evt_rc_paid").await);
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_rc_failed", "payout.failed", &id)).await;
    assert!(processed(&daemon, "evt_rc_failed").await);
    assert_eq!(redemption(&daemon, &id).await.status, "failed", "the failure still wins");
    let (recredit, alerts) = recredit_and_alerts(&daemon, &id).await;
    assert_eq!(recredit.status, "held", "well within the limits, but the money went out: an operator decides");
    assert!(recredit.last_error.as_deref().is_some_and(|e| e.contains("after payout.paid")), "{:?}", recredit.last_error);
    assert_eq!(alerts, 1);
    daemon.stop().await;
}

/// Delivers a signed Tribe attendance (25 HNV) of `member` and returns the
/// intent the processor made of it.
async fn attendance(daemon: &TestDaemon, id: &str, member: &str) -> transactions::Model {
    let body = format!(r#"{{"id":"{id}","attendee_id":"{member}","type":"meetup","attended":true}}"#);
    assert_eq!(daemon.deliver(havend::webhooks::Partner::Tribe, Some("event-attendance"), &body).await.status, 200);
    let source = format!("tribe:event-attendance:{id}:{member}");
    let made = eventually(Duration::from_secs(20), || async {
        transactions::Entity::find().filter(transactions::Column::Source.eq(source.as_str())).one(&daemon.db).await.unwrap().is_some()
    })
    .await;
    assert!(made, "the attendance {id} was processed");
    transactions::Entity::find().filter(transactions::Column::Source.eq(source)).one(&daemon.db).await.unwrap().unwrap()
}

/// SPEC section 2: the total of all users' mints in a UTC day is limited;
/// the mint that would pass it is held (whoever it is for), alerted, and
/// not counted, so a smaller one later that day still fits.
async fn the_total_per_day_limit_holds_the_mint_that_would_pass_it_whoever_it_is_for(backend: Backend) {
    let daemon = ledger_daemon(backend, |config| config.rewards.limits.total_per_day = rust_decimal::Decimal::from(100)).await;
    for i in 0..4 {
        let intent = attendance(&daemon, &format!("tev_total_{i}"), &format!("total_m{i}")).await;
        assert_eq!(intent.status, "queued", "{} of 100 HNV minted today", 25 * (i + 1));
    }
    let over = attendance(&daemon, "tev_total_4", "total_m4").await;
    assert_eq!(over.status, "held", "a fifth member's 25 HNV would pass the total of 100");
    assert!(over.last_error.as_deref().is_some_and(|e| e.contains("total daily limit")), "{:?}", over.last_error);
    assert!(!alerts(&daemon, "mint_held").await.is_empty(), "the held mint is alerted");
    let held = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, None, &json!({ "user": "tribe:total_m0", "amount": "1" })).await;
    assert_eq!((held.status, held.json["status"].as_str()), (202, Some("held")), "an API mint meets the same total: {:?}", held.json);
    daemon.stop().await;
}

/// SPEC section 2: every mint path goes through the limits, so API mints
/// count toward a user's daily limit that webhook rewards then meet, and
/// the other way round.
async fn api_mints_count_toward_the_mint_limits(backend: Backend) {
    let daemon = ledger_daemon(backend, |config| config.rewards.limits.per_user_per_day = rust_decimal::Decimal::from(100)).await;
    let mint = |amount: &'static str| {
        let daemon = &daemon;
        async move { call(daemon, "/api/v1/token/mint", TOKEN_KEY, None, &json!({ "user": "tribe:api_m", "amount": amount })).await }
    };
    let first = mint("80").await;
    assert_eq!((first.status, first.json["status"].as_str()), (202, Some("queued")), "{:?}", first.json);
    let reward = attendance(&daemon, "tev_api_1", "api_m").await;
    assert_eq!(reward.status, "held", "80 HNV minted by the API plus a 25 HNV reward pass the daily 100");
    assert!(reward.last_error.as_deref().is_some_and(|e| e.contains("daily limit")), "{:?}", reward.last_error);
    let fits = mint("20").await;
    assert_eq!(fits.json["status"], "queued", "the held reward was not counted: {:?}", fits.json);
    let over = mint("0.000000000000000001").await;
    assert_eq!(over.json["status"], "held", "the API mints filled the day: {:?}", over.json);
    let day = chrono::Utc::now().date_naive().to_string();
    let used = havend::rewards::limits::used_by(&daemon.db, "tribe:api_m", &day).await.unwrap();
    assert_eq!(used, U256::from(100u64) * U256::from(10u64).pow(U256::from(18)));
    daemon.stop().await;
}

/// SPEC: a response is stored only if its transaction committed. A keyed
/// mint that fails with a server error before its commit (no hot wallet to
/// sign it yet) is not replayed: the same key and body, sent again once a
/// signer exists, run and mint once; only that answer is replayed after.
async fn a_server_error_before_the_commit_is_not_replayed(backend: Backend) {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("master.key");
    std::fs::write(&key_file, TEST_MASTER_KEY).unwrap();
    let mut daemon = TestDaemon::start_with(backend, move |config| config.custody.master_key_file = Some(key_file)).await;
    daemon.keep.push(key_dir);
    let body = json!({ "user": "aurora:before_commit", "amount": "5" });
    let key = "before-commit-key-01";
    let failed = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, Some(key), &body).await;
    assert!(failed.status >= 500, "{} {:?}", failed.status, failed.json);
    assert_eq!(assert_error_shape(&failed), "NO_SIGNER");
    assert_eq!(transactions::Entity::find().count(&daemon.db).await.unwrap(), 0, "nothing committed");

    let keys = MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let wallet = custody::create_wallet(&daemon.db, &keys, custody::HOT, "test").await.unwrap();
    wallets::Entity::update_many()
        .col_expr(wallets::Column::Status, Expr::value(custody::ACTIVE))
        .filter(wallets::Column::Id.eq(wallet.id))
        .exec(&daemon.db)
        .await
        .unwrap();
    let retried = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, Some(key), &body).await;
    assert_eq!(retried.status, 202, "the failed answer was not replayed: {:?}", retried.json);
    assert!(retried.headers.get("idempotent-replayed").is_none(), "the retry ran");
    let replayed = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, Some(key), &body).await;
    assert_eq!((replayed.status, &replayed.json), (202, &retried.json));
    assert_eq!(replayed.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"), "the committed answer is");
    assert_eq!(transactions::Entity::find().count(&daemon.db).await.unwrap(), 1, "minted once");
    daemon.stop().await;
}

on_both_backends!(
    the_total_per_day_limit_holds_the_mint_that_would_pass_it_whoever_it_is_for,
    api_mints_count_toward_the_mint_limits,
    a_server_error_before_the_commit_is_not_replayed,
    a_recredit_counts_toward_the_mint_limits_and_is_held_over_one,
    a_payout_failed_after_paid_queues_its_recredit_held_with_an_alert,
    a_same_key_request_while_the_first_is_stalled_gets_409_with_retry_after,
    api_keys_are_required_and_scoped,
    invalid_mints_get_400_in_the_error_shape_and_change_nothing,
    redeem_with_the_same_key_replays_status_headers_and_body_and_burns_once,
    two_redemptions_that_together_exceed_the_balance_are_not_both_accepted,
    an_api_mint_over_a_limit_is_held_with_202,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_execute_once() {
    let daemon = ledger_daemon(Backend::Postgres, |_| {}).await;
    fund(&daemon, "aurora:g3", 1000).await;
    let body = redeem_body("aurora:g3", "5");
    let answers = futures_util::future::join_all((0..50).map(|_| call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("concurrent-key-01"), &body))).await;
    let accepted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    assert!(answers.iter().all(|a| a.status == 202 || a.status == 409), "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    assert!(!accepted.is_empty());
    assert!(accepted.iter().all(|a| a.json == accepted[0].json), "every 202 is the one execution or its replay");
    for conflict in answers.iter().filter(|a| a.status == 409) {
        assert_eq!(conflict.json["error"], "IDEMPOTENCY_KEY_IN_USE");
    }
    assert_eq!(burns(&daemon).await, 1);
    let after = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("concurrent-key-01"), &body).await;
    assert_eq!(after.json, accepted[0].json);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_request_stalled_past_its_lease_cannot_commit_after_another_took_the_key() {
    let daemon = ledger_daemon(Backend::Postgres, |config| config.api.idempotency_lease_secs = 1).await;
    fund(&daemon, "aurora:g4", 100).await;
    let key = "stalled-key-0001";
    // Both requests stall after their claim, so the first wakes up while the
    // second (which took the lapsed key over) is still running.
    arm_stall("api::stall_after_claim", key, 2500);
    let body = redeem_body("aurora:g4", "30");
    let (first, second) = tokio::join!(call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some(key), &body), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some(key), &body).await
    });
    disarm_stall("api::stall_after_claim", key);
    assert_eq!(second.status, 202, "the second request took the lapsed key over: {:?}", second.json);
    assert_eq!(first.status, 409, "the stalled first request lost its claim: {:?}", first.json);
    assert_eq!(burns(&daemon).await, 1);
    let replay = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some(key), &body).await;
    assert_eq!(replay.json, second.json);
    daemon.stop().await;
}

/// A Redis server of the test's own, so the test can stop and flush it.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    fn start_on(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnRedis { port, child }
    }

    fn cli(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_flushed_or_absent_never_executes_a_key_twice() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = OwnRedis::start_on(port);
    let daemon = ledger_daemon(Backend::Postgres, |config| {
        config.redis.url = Some(havend::config::Secret::new(format!("redis://127.0.0.1:{port}")));
        config.redis.key_prefix = "t:".into();
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || async { daemon.get("/health").await.json["redis"] == "ok" }).await);
    fund(&daemon, "aurora:g5", 1000).await;
    let redeem = |key: &'static str| {
        let daemon = &daemon;
        async move { call(daemon, "/api/v1/token/redeem", TOKEN_KEY, Some(key), &redeem_body("aurora:g5", "1")).await }
    };

    let first = redeem("redis-key-0001").await;
    assert_eq!(first.status, 202);
    assert!(redis.cli(&["GET", "t:idem:backend:redis-key-0001"]).contains("\"done\""), "the response is cached");
    // Served from Redis: the database row can go and the replay still comes back.
    idempotency_keys::Entity::delete_many().filter(idempotency_keys::Column::Key.eq("redis-key-0001")).exec(&daemon.db).await.unwrap();
    assert_eq!(redeem("redis-key-0001").await.json, first.json);

    redis.stop();
    let during = redeem("redis-key-0002").await;
    assert_eq!(during.status, 202, "Redis down: the database serves: {:?}", during.json);
    assert_eq!(redeem("redis-key-0002").await.json, during.json);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let health = daemon.get("/health").await;
            (health.status, health.json["redis"].as_str(), health.json["status"].as_str()) == (200, Some("degraded"), Some("degraded"))
        })
        .await,
        "health reports Redis down as degraded, still 200"
    );

    let mut redis = OwnRedis::start_on(port);
    assert!(eventually(Duration::from_secs(10), || async { daemon.get("/health").await.json["redis"] == "ok" }).await, "reconnects");
    let after = redeem("redis-key-0003").await;
    assert_eq!(after.status, 202);
    redis.cli(&["FLUSHALL"]);
    assert_eq!(redeem("redis-key-0003").await.json, after.json, "a flushed cache falls back to the database");
    // A mark left behind by a cache write lost after the commit does not block the key.
    redis.cli(&["SET", "t:idem:backend:redis-key-0003", r#"{"state":"in_flight"}"#]);
    assert_eq!(redeem("redis-key-0003").await.json, after.json, "a stale in-flight mark is checked against the database");
    assert_eq!(redeem("redis-key-0002").await.json, during.json);
    assert_eq!(burns(&daemon).await, 3, "one burn per key");
    redis.stop();
    daemon.stop().await;

    let without = ledger_daemon(Backend::Sqlite, |_| {}).await;
    assert_eq!(without.get("/health").await.json["redis"], "not_configured");
    fund(&without, "aurora:g6", 10).await;
    let once = call(&without, "/api/v1/token/redeem", TOKEN_KEY, Some("no-redis-0001"), &redeem_body("aurora:g6", "1")).await;
    let twice = call(&without, "/api/v1/token/redeem", TOKEN_KEY, Some("no-redis-0001"), &redeem_body("aurora:g6", "1")).await;
    assert_eq!((once.status, &once.json), (twice.status, &twice.json));
    assert_eq!(burns(&without).await, 1);
    without.stop().await;
}

/// A Stripe payout event for `redemption`.
fn payout(event_id: &str, kind: &str, redemption: &str) -> String {
    json!({ "id": event_id, "type": kind, "data": { "object": { "metadata": { "redemption_id": redemption } } } }).to_string()
}

async fn redemption(daemon: &TestDaemon, id: &str) -> redemption_requests::Model {
    redemption_requests::Entity::find_by_id(id.parse::<uuid::Uuid>().unwrap()).one(&daemon.db).await.unwrap().unwrap()
}

async fn recredits(daemon: &TestDaemon, redemption: &str) -> u64 {
    transactions::Entity::find().filter(transactions::Column::Source.eq(format!("recredit:{redemption}"))).count(&daemon.db).await.unwrap()
}

async fn processed(daemon: &TestDaemon, event_id: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        daemon.event(havend::webhooks::Partner::Stripe, event_id).await.is_some_and(|e| e.status == "processed")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_failed_recredits_once_only_after_a_confirmed_burn_and_wins_over_paid() {
    let daemon = ledger_daemon(Backend::Postgres, |_| {}).await;
    fund(&daemon, "aurora:p1", 100).await;
    let opened = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("payout-key-0001"), &redeem_body("aurora:p1", "25")).await;
    let id = opened.json["redemption_id"].as_str().unwrap().to_owned();
    set_status(&daemon, opened.json["transaction_id"].as_str().unwrap().parse().unwrap(), "confirmed").await;
    let payable = get_with_key(&daemon, &format!("/api/v1/transactions/{}", opened.json["transaction_id"].as_str().unwrap()), TOKEN_KEY).await;
    assert_eq!(payable.json["redemption"]["payable"], true);

    for _ in 0..3 {
        assert_eq!(daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_fail_1", "payout.failed", &id)).await.status, 200);
    }
    assert!(processed(&daemon, "evt_fail_1").await);
    // Another failure event for the same redemption re-credits nothing more.
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_fail_2", "payout.failed", &id)).await;
    assert!(processed(&daemon, "evt_fail_2").await);
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_paid_1", "payout.paid", &id)).await;
    assert!(processed(&daemon, "evt_paid_1").await);
    assert_eq!(recredits(&daemon, &id).await, 1);
    assert_eq!(redemption(&daemon, &id).await.status, "failed", "a paid after the failure changes nothing");
    let recredit = transactions::Entity::find().filter(transactions::Column::Source.eq(format!("recredit:{id}"))).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(U256::from_str_radix(&recredit.amount, 10).unwrap(), U256::from(25u64) * U256::from(10u64).pow(U256::from(18)));

    // A redemption whose burn never confirmed: the burn is withdrawn, nothing re-credited.
    let unconfirmed = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("payout-key-0002"), &redeem_body("aurora:p1", "5")).await;
    let other = unconfirmed.json["redemption_id"].as_str().unwrap().to_owned();
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_fail_3", "payout.failed", &other)).await;
    assert!(processed(&daemon, "evt_fail_3").await);
    assert_eq!(recredits(&daemon, &other).await, 0);
    let burn = transactions::Entity::find_by_id(unconfirmed.json["transaction_id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(burn.status, "cancelled");

    // Paid first, then failed: the failure wins.
    let third = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("payout-key-0003"), &redeem_body("aurora:p1", "5")).await;
    let third_id = third.json["redemption_id"].as_str().unwrap().to_owned();
    set_status(&daemon, third.json["transaction_id"].as_str().unwrap().parse().unwrap(), "confirmed").await;
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_paid_3", "payout.paid", &third_id)).await;
    assert!(processed(&daemon, "evt_paid_3").await);
    assert_eq!(redemption(&daemon, &third_id).await.status, "paid");
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_fail_4", "payout.failed", &third_id)).await;
    assert!(processed(&daemon, "evt_fail_4").await);
    assert_eq!(redemption(&daemon, &third_id).await.status, "failed");
    assert_eq!(recredits(&daemon, &third_id).await, 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_and_redeem_on_anvil_leave_exact_balances_on_chain_and_in_get_users() {
    let chain = TestChain::start(Some(1)).await;
    let (daemon, _keys, _wallets) = Prepared::new(Backend::Postgres, &chain, 1).await.start(&chain).await;
    let minted = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, Some("anvil-mint-0001"), &json!({ "user": "aurora:chain_guest", "amount": "100.5", "reason": "welcome" })).await;
    assert_eq!(minted.status, 202, "{:?}", minted.json);
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let user = get_with_key(&daemon, "/api/v1/users/aurora:chain_guest", TOKEN_KEY).await;
    assert_eq!(user.status, 200, "{:?}", user.json);
    assert_eq!((user.json["confirmed"].as_str(), user.json["on_chain"].as_str()), (Some("100.5"), Some("100.5")));

    let redeemed = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("anvil-redeem-01"), &redeem_body("aurora:chain_guest", "40.25")).await;
    assert_eq!(redeemed.status, 202, "{:?}", redeemed.json);
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let user = get_with_key(&daemon, "/api/v1/users/aurora:chain_guest", TOKEN_KEY).await;
    assert_eq!((user.json["confirmed"].as_str(), user.json["available"].as_str(), user.json["on_chain"].as_str()), (Some("60.25"), Some("60.25"), Some("60.25")));
    let address = user.json["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(chain.balance_of(address).await, U256::from(6025u64) * U256::from(10u64).pow(U256::from(16)));
    let burn = get_with_key(&daemon, &format!("/api/v1/transactions/{}", redeemed.json["transaction_id"].as_str().unwrap()), TOKEN_KEY).await;
    assert_eq!((burn.json["status"].as_str(), burn.json["kind"].as_str(), burn.json["attempts"].as_u64()), (Some("confirmed"), Some("burn"), Some(1)));
    assert!(burn.json["tx_hash"].as_str().is_some_and(|h| h.starts_with("0x")));
    assert_eq!(burn.json["redemption"]["payable"], true);
    let unknown = get_with_key(&daemon, "/api/v1/users/aurora:nobody", TOKEN_KEY).await;
    assert_eq!(unknown.status, 404);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_commit_and_the_answer_replays_the_stored_result_on_retry() {
    const HAVEND: &str = env!("CARGO_BIN_EXE_havend");
    let (database, key_dir) = ledger_database(Backend::Postgres).await;
    let config_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "data_dir = {data:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = {url:?}\n[custody]\nmaster_key_file = {key:?}\n",
        data = config_dir.path().join("data").display().to_string(),
        url = database.url,
        key = key_dir.path().join("master.key").display().to_string(),
    );
    std::fs::write(config_dir.path().join("havend.toml"), config).unwrap();
    let spawn = |failpoint: Option<&str>| {
        let mut command = std::process::Command::new(HAVEND);
        command
            .args(["run", "--config"])
            .arg(config_dir.path())
            .env("HAVEND_API_KEYS", format!("{TOKEN_KEY_NAME}:token:{TOKEN_KEY}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(failpoint) = failpoint {
            command.env("FAILPOINTS", failpoint);
        }
        command.spawn().unwrap()
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mint = || {
        let request = http::Request::post(format!("http://127.0.0.1:{port}/api/v1/token/mint"))
            .header("authorization", format!("Bearer {TOKEN_KEY}"))
            .header("idempotency-key", "crash-mint-0001")
            .body(Full::new(Bytes::from(json!({ "user": "aurora:crash", "amount": "7" }).to_string())))
            .unwrap();
        client.request(request)
    };
    let serving = || async {
        let health = http::Request::get(format!("http://127.0.0.1:{port}/health")).body(Full::new(Bytes::new())).unwrap();
        client.request(health).await.is_ok_and(|r| r.status() == 200)
    };

    let mut crashing = spawn(Some("api::after_commit=return"));
    assert!(eventually(Duration::from_secs(30), serving).await, "the daemon serves");
    assert!(mint().await.is_err(), "the daemon dies after the commit, before answering");
    let status = crashing.wait().unwrap();
    assert!(!status.success(), "aborted: {status:?}");

    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    let stored = transactions::Entity::find().all(&db).await.unwrap();
    assert_eq!(stored.len(), 1, "the intent committed before the crash");

    let mut restarted = spawn(None);
    assert!(eventually(Duration::from_secs(30), serving).await, "the daemon serves again");
    let response = mint().await.expect("answered");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    use http_body_util::BodyExt;
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["transaction_id"], stored[0].id.to_string(), "the retry gets the stored result");
    assert_eq!(transactions::Entity::find().count(&db).await.unwrap(), 1, "nothing executed twice");
    let _ = std::process::Command::new("kill").args(["-TERM", &restarted.id().to_string()]).status();
    assert!(restarted.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_after_its_response_expired_is_refused_and_runs_nothing() {
    let daemon = ledger_daemon(Backend::Postgres, |config| {
        config.api.idempotency_lease_secs = 1;
        config.api.idempotency_ttl_secs = 1;
    })
    .await;
    let body = json!({ "user": "aurora:ttl", "amount": "3" });
    let first = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, Some("expiring-key-01"), &body).await;
    assert_eq!(first.status, 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = call(&daemon, "/api/v1/token/mint", TOKEN_KEY, Some("expiring-key-01"), &body).await;
    assert_eq!(again.status, 422, "{:?}", again.json);
    assert_eq!(again.json["error"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(transactions::Entity::find().count(&daemon.db).await.unwrap(), 1, "the second request ran nothing");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_paid_before_its_burn_confirms_is_settled_at_once_and_alerted() {
    let daemon = ledger_daemon(Backend::Postgres, |_| {}).await;
    fund(&daemon, "aurora:p2", 50).await;
    let opened = call(&daemon, "/api/v1/token/redeem", TOKEN_KEY, Some("early-paid-0001"), &redeem_body("aurora:p2", "10")).await;
    let id = opened.json["redemption_id"].as_str().unwrap().to_owned();
    daemon.deliver(havend::webhooks::Partner::Stripe, None, &payout("evt_early_paid", "payout.paid", &id)).await;
    assert!(processed(&daemon, "evt_early_paid").await);
    assert_eq!(redemption(&daemon, &id).await.status, "paid", "the money went out: never payable again");
    let burn = opened.json["transaction_id"].as_str().unwrap();
    set_status(&daemon, burn.parse().unwrap(), "confirmed").await;
    let view = get_with_key(&daemon, &format!("/api/v1/transactions/{burn}"), TOKEN_KEY).await;
    assert_eq!(view.json["redemption"]["payable"], false, "a confirmed burn does not make a paid redemption payable");
    let raised = entity::alerts::Entity::find().filter(entity::alerts::Column::Category.eq("payout_before_burn")).count(&daemon.db).await.unwrap();
    assert_eq!(raised, 1);
    daemon.stop().await;
}
