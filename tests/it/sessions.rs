//! Cross-app sessions (SPEC section 3): generated with an API key, checked by
//! a partner app with its shared secret, refused once expired, cleaned up.

use chrono::Utc;
use entity::{cross_app_sessions, idempotency_keys, users};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::json;

use crate::on_both_backends;
use crate::support::{Answer, Backend, TOKEN_KEY, TestDaemon, assert_error_shape};

/// The shared secret the test partner app sends.
const SHARED: &str = "ticketing-shared-secret-current";
/// The previous secret, still accepted during rotation.
const PREVIOUS: &str = "ticketing-shared-secret-previous";

async fn start(backend: Backend) -> TestDaemon {
    TestDaemon::start_with(backend, |config| {
        config.cross_app.shared_secrets = vec![havend::config::Secret::new(SHARED), havend::config::Secret::new(PREVIOUS)];
    })
    .await
}

fn json_headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    headers
}

async fn generate(daemon: &TestDaemon, user: &str) -> Answer {
    let bearer = format!("Bearer {TOKEN_KEY}");
    daemon.post("/api/cross-app/generate-session", &json_headers(&[("authorization", &bearer)]), json!({ "user": user }).to_string()).await
}

async fn token_for(daemon: &TestDaemon, user: &str) -> String {
    let answer = generate(daemon, user).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    answer.json["session_token"].as_str().unwrap().to_owned()
}

async fn validate(daemon: &TestDaemon, secret: Option<&str>, token: &str) -> Answer {
    let headers = match secret {
        Some(secret) => json_headers(&[("x-shared-secret", secret)]),
        None => json_headers(&[]),
    };
    daemon.post("/api/cross-app/validate-session", &headers, json!({ "session_token": token }).to_string()).await
}

async fn accounts(daemon: &TestDaemon, secret: &str, token: &str) -> Answer {
    let request = http::Request::get(format!("http://{}/api/cross-app/user-accounts", daemon.addr))
        .header("x-shared-secret", secret)
        .header("x-session-token", token)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    daemon.send(request).await
}

async fn permission(daemon: &TestDaemon, token: &str, permission: &str, resource: &str) -> Answer {
    let body = json!({ "session_token": token, "permission": permission, "resource": resource });
    daemon.post("/api/cross-app/validate-permission", &json_headers(&[("x-shared-secret", SHARED)]), body.to_string()).await
}

/// A user havend knows, with a custodial wallet address.
async fn insert_user(daemon: &TestDaemon, reference: &str, address: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    users::ActiveModel {
        id: Set(id),
        external_ref: Set(reference.into()),
        wallet_id: Set(uuid::Uuid::new_v4()),
        address: Set(address.into()),
        hot_wallet_id: Set(uuid::Uuid::new_v4()),
        created_at: Set(Utc::now()),
    }
    .insert(&daemon.db)
    .await
    .unwrap();
    id
}

/// Moves a session's expiry into the past, as if its 15 minutes had passed.
async fn age(daemon: &TestDaemon, token: &str) {
    let hash = havend::sessions::hash_token(token);
    cross_app_sessions::Entity::update_many()
        .col_expr(cross_app_sessions::Column::ExpiresAt, sea_orm::sea_query::Expr::value(Utc::now() - chrono::Duration::seconds(1)))
        .filter(cross_app_sessions::Column::TokenHash.eq(hash))
        .exec(&daemon.db)
        .await
        .unwrap();
}

async fn a_session_token_is_valid_for_fifteen_minutes_and_stored_hashed(backend: Backend) {
    let daemon = start(backend).await;
    let before = Utc::now();
    let answer = generate(&daemon, "aurora:guest_1").await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    let token = answer.json["session_token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
    let expires: chrono::DateTime<Utc> = answer.json["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - before;
    assert!(ttl <= chrono::Duration::seconds(15 * 60 + 1) && ttl >= chrono::Duration::seconds(15 * 60 - 5), "{ttl}");

    let row = cross_app_sessions::Entity::find().one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(row.token_hash, havend::sessions::hash_token(&token), "only the hash is stored");
    assert_ne!(row.token_hash, token);

    for secret in [SHARED, PREVIOUS] {
        let answer = validate(&daemon, Some(secret), &token).await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert_eq!(answer.json, json!({ "valid": true, "user": "aurora:guest_1", "expires_at": answer.json["expires_at"] }));
        assert_eq!(answer.json["expires_at"].as_str().unwrap().parse::<chrono::DateTime<Utc>>().unwrap().timestamp(), expires.timestamp());
    }
    daemon.stop().await;
}

async fn an_expired_or_unknown_session_token_is_refused_with_401(backend: Backend) {
    let daemon = start(backend).await;
    let token = token_for(&daemon, "aurora:guest_2").await;
    age(&daemon, &token).await;
    for answer in [
        validate(&daemon, Some(SHARED), &token).await,
        accounts(&daemon, SHARED, &token).await,
        permission(&daemon, &token, "read", "user:aurora:guest_2").await,
        validate(&daemon, Some(SHARED), "no-such-token").await,
        accounts(&daemon, SHARED, "no-such-token").await,
    ] {
        assert_eq!(answer.status, 401, "{:?}", answer.json);
        assert_eq!(assert_error_shape(&answer), "INVALID_SESSION");
    }
    daemon.stop().await;
}

async fn a_wrong_or_missing_shared_secret_is_refused_with_401(backend: Backend) {
    let daemon = start(backend).await;
    let token = token_for(&daemon, "aurora:guest_3").await;
    for answer in [
        validate(&daemon, Some("ticketing-shared-secret-wrong"), &token).await,
        validate(&daemon, None, &token).await,
        accounts(&daemon, "ticketing-shared-secret-wrong", &token).await,
    ] {
        assert_eq!(answer.status, 401, "{:?}", answer.json);
        assert_eq!(assert_error_shape(&answer), "INVALID_SHARED_SECRET");
    }
    // Generating needs a token API key.
    let answer = daemon.post("/api/cross-app/generate-session", &json_headers(&[]), json!({ "user": "aurora:guest_3" }).to_string()).await;
    assert_eq!(answer.status, 401);
    let answer = generate(&daemon, "").await;
    assert_eq!((answer.status, assert_error_shape(&answer)), (400, "VALIDATION_ERROR".to_owned()));
    daemon.stop().await;
}

async fn user_accounts_lists_the_havend_user_and_its_wallet(backend: Backend) {
    let daemon = start(backend).await;
    let address = "0x00000000000000000000000000000000000000aB";
    let id = insert_user(&daemon, "aurora:guest_4", address).await;
    let token = token_for(&daemon, "aurora:guest_4").await;
    let answer = accounts(&daemon, SHARED, &token).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    assert_eq!(
        answer.json,
        json!({ "user": "aurora:guest_4", "accounts": [{ "id": id, "role": "havend_user" }, { "id": address, "role": "custodial_wallet" }] })
    );
    // A user havend has not rewarded yet has no accounts.
    let token = token_for(&daemon, "aurora:newcomer").await;
    let answer = accounts(&daemon, SHARED, &token).await;
    assert_eq!(answer.json, json!({ "user": "aurora:newcomer", "accounts": [] }));
    daemon.stop().await;
}

async fn a_session_may_read_only_its_own_user_and_wallet(backend: Backend) {
    let daemon = start(backend).await;
    insert_user(&daemon, "aurora:guest_5", "0x00000000000000000000000000000000000000Cd").await;
    let token = token_for(&daemon, "aurora:guest_5").await;
    for (perm, resource, allowed) in [
        ("read", "user:aurora:guest_5", true),
        ("read", "wallet:0x00000000000000000000000000000000000000cd", true),
        ("write", "user:aurora:guest_5", false),
        ("read", "user:aurora:guest_6", false),
        ("read", "wallet:0x00000000000000000000000000000000000000ef", false),
        ("read", "transactions", false),
    ] {
        let answer = permission(&daemon, &token, perm, resource).await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert_eq!(answer.json, json!({ "allowed": allowed }), "{perm} {resource}");
    }
    let answer = daemon
        .post("/api/cross-app/validate-permission", &json_headers(&[("x-shared-secret", SHARED)]), json!({ "session_token": token }).to_string())
        .await;
    assert_eq!((answer.status, assert_error_shape(&answer)), (400, "VALIDATION_ERROR".to_owned()));
    daemon.stop().await;
}

async fn the_cleanup_job_removes_expired_sessions_and_idempotency_keys(backend: Backend) {
    let daemon = start(backend).await;
    let expired = token_for(&daemon, "aurora:guest_7").await;
    let live = token_for(&daemon, "aurora:guest_7").await;
    age(&daemon, &expired).await;
    let now = Utc::now();
    for (key, expires_at) in [("old-key-0001", now - chrono::Duration::hours(1)), ("new-key-0001", now + chrono::Duration::hours(1))] {
        idempotency_keys::ActiveModel {
            api_key: Set("backend".into()),
            key: Set(key.into()),
            fingerprint: Set("0".repeat(64)),
            lease_token: Set(None),
            lease_until: Set(None),
            response_status: Set(Some(202)),
            response_headers: Set(Some("[]".into())),
            response_body: Set(Some("{}".into())),
            created_at: Set(now - chrono::Duration::days(2)),
            expires_at: Set(expires_at),
        }
        .insert(&daemon.db)
        .await
        .unwrap();
    }
    let config = havend::config::Config::default();
    let cleaned = havend::schedule::cleanup(&daemon.db, &config, Utc::now()).await.unwrap();
    assert_eq!((cleaned.sessions, cleaned.idempotency_keys), (1, 1), "{cleaned:?}");
    assert_eq!(cross_app_sessions::Entity::find().count(&daemon.db).await.unwrap(), 1);
    assert_eq!(idempotency_keys::Entity::find().one(&daemon.db).await.unwrap().unwrap().key, "new-key-0001");
    assert_eq!(validate(&daemon, Some(SHARED), &live).await.status, 200, "the live session survives");
    let again = havend::schedule::cleanup(&daemon.db, &config, Utc::now()).await.unwrap();
    assert_eq!(serde_json::to_value(again).unwrap(), json!({ "sessions": 0, "idempotency_keys": 0, "stream_events": 0 }));
    daemon.stop().await;
}

on_both_backends!(
    a_session_token_is_valid_for_fifteen_minutes_and_stored_hashed,
    an_expired_or_unknown_session_token_is_refused_with_401,
    a_wrong_or_missing_shared_secret_is_refused_with_401,
    user_accounts_lists_the_havend_user_and_its_wallet,
    a_session_may_read_only_its_own_user_and_wallet,
    the_cleanup_job_removes_expired_sessions_and_idempotency_keys,
);
