//! Config hot reload: file edits and SIGHUP apply without a restart; a bad
//! edit is refused, alerted, and the last good config keeps serving.

use std::time::{Duration, Instant};

use havend::config::{ApiKey, Scope};
use havend::webhooks::{Partner, Scheme};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::on_both_backends;
use crate::support::*;

const OLD: &str = "reload-secret-old";
const NEW: &str = "reload-secret-new";

fn partners(secret: &str) -> String {
    format!("[partners.aurora]\nsecrets = [\"{secret}\"]\n")
}

/// Delivers a fresh booking signed with `secret`; returns the status.
async fn deliver_signed(daemon: &TestDaemon, secret: &str) -> u16 {
    let body = booking_created(&format!("bk_{}", uuid::Uuid::new_v4().simple()));
    let headers = sign_with(Partner::Aurora, Scheme::HavenHmac, secret, &body, now());
    daemon.post("/webhooks/aurora/booking-created", &headers, body).await.status
}

async fn an_edited_secret_is_accepted_within_two_seconds_and_the_removed_one_refused(backend: Backend) {
    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, "", &partners(OLD)).await;
    assert_eq!(deliver_signed(&daemon, OLD).await, 200);
    assert_eq!(deliver_signed(&daemon, NEW).await, 401);

    let written = Instant::now();
    replace_file(&dir.join("partners.toml"), &partners(NEW));
    let mut accepted_after = None;
    while written.elapsed() < Duration::from_secs(2) {
        if deliver_signed(&daemon, NEW).await == 200 {
            accepted_after = Some(written.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let accepted_after = accepted_after.expect("the new secret is accepted within 2 s of the write");
    eprintln!("reload: new secret accepted {accepted_after:?} after the write ({backend:?})");
    assert_eq!(deliver_signed(&daemon, OLD).await, 401, "the removed secret is refused");

    let report = daemon.daemon().last_reload().expect("a reload ran");
    assert_eq!((report.trigger, report.outcome), ("file", "applied"));
    assert_eq!(report.changed, ["partners.aurora.secrets"]);
    daemon.stop().await;
}

async fn invalid_toml_keeps_the_last_good_config_and_raises_config_rejected(backend: Backend) {
    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, "", &partners(OLD)).await;
    std::fs::write(dir.join("partners.toml"), format!("[partners.aurora\nsecrets = [\"{NEW}\"]\n")).unwrap();
    let rejected = eventually(Duration::from_secs(2), || async {
        entity::alerts::Entity::find()
            .filter(entity::alerts::Column::Category.eq("config_rejected"))
            .one(&daemon.db)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(rejected, "a config_rejected alert is stored");
    assert_eq!(deliver_signed(&daemon, OLD).await, 200, "the last good config keeps serving");
    assert_eq!(deliver_signed(&daemon, NEW).await, 401);

    let report = daemon.daemon().last_reload().unwrap();
    assert_eq!(report.outcome, "rejected");
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("partners.toml"), "{error}");
    assert!(!error.contains(NEW), "the error does not quote the line holding a secret: {error}");
    daemon.stop().await;
}

/// A reload that edits the listen address and the worker count keeps both
/// at their running values and says so, while the hot edit beside them applies.
async fn restart_only_edits_are_kept_and_reported(backend: Backend) {
    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, "", &partners(OLD)).await;
    let running = daemon.daemon().config().load_full();
    let text = std::fs::read_to_string(dir.join("havend.toml")).unwrap();
    let edited = format!("{text}[server]\nlisten = \"127.0.0.1:1\"\n[processor]\nworkers = 3\nbatch = 9\n");
    std::fs::write(dir.join("havend.toml"), edited).unwrap();
    let report = daemon.daemon().reload().await.expect("the config actor answers");
    assert_eq!(report.outcome, "applied");
    assert_eq!(report.needs_restart, ["processor.workers", "server.listen"]);
    let now = daemon.daemon().config().load_full();
    assert_eq!(now.processor.batch, 9, "the hot setting applies");
    assert_eq!((now.processor.workers, now.server.listen), (running.processor.workers, running.server.listen));
    daemon.stop().await;
}

/// The cross-app secret before and after an in-place rotation.
const SHARED_OLD: &str = "cross-app-shared-secret-old";
const SHARED_NEW: &str = "cross-app-shared-secret-new";

/// Adds `api_keys.toml` with the test token and admin keys and reloads, so a
/// daemon started from files has the keys the other tests' daemons have.
async fn grant_test_keys(daemon: &TestDaemon, dir: &std::path::Path) {
    let key = |name: &str, scope: Scope, raw: &str| format!("[keys.{name}]\nscope = \"{}\"\nsha256 = \"{}\"\n", scope.as_str(), ApiKey::from_raw(raw, scope).sha256);
    let text = format!("{}{}", key(TOKEN_KEY_NAME, Scope::Token, TOKEN_KEY), key(ADMIN_KEY_NAME, Scope::Admin, ADMIN_KEY));
    std::fs::write(dir.join("api_keys.toml"), text).unwrap();
    let report = daemon.daemon().reload().await.expect("the config actor answers");
    assert_eq!(report.outcome, "applied", "{report:?}");
}

/// `method path` with the admin key, as an operator's tooling sends it.
async fn as_admin(daemon: &TestDaemon, method: &str, path: &str) -> Answer {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", daemon.addr))
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    daemon.send(request).await
}

/// `POST /api/cross-app/validate-session` with `secret`.
async fn validate_session(daemon: &TestDaemon, secret: &str, token: &str) -> Answer {
    let headers = [("content-type".to_owned(), "application/json".to_owned()), ("x-shared-secret".to_owned(), secret.to_owned())];
    daemon.post("/api/cross-app/validate-session", &headers, serde_json::json!({ "session_token": token }).to_string()).await
}

/// Only the secret's value changes: the redacted views of the two configs
/// are identical, and the reload must still see, report and apply it.
async fn a_cross_app_secret_rotated_in_place_is_applied_and_the_old_one_refused(backend: Backend) {
    let cross_app = format!("[cross_app]\nshared_secrets = [\"{SHARED_OLD}\"]\n");
    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, &cross_app, &partners(OLD)).await;
    grant_test_keys(&daemon, &dir).await;
    let bearer = format!("Bearer {TOKEN_KEY}");
    let headers = [("content-type".to_owned(), "application/json".to_owned()), ("authorization".to_owned(), bearer)];
    let generated = daemon.post("/api/cross-app/generate-session", &headers, r#"{"user":"aurora:guest_rotation"}"#).await;
    assert_eq!(generated.status, 200, "{:?}", generated.json);
    let token = generated.json["session_token"].as_str().unwrap().to_owned();
    assert_eq!(validate_session(&daemon, SHARED_OLD, &token).await.status, 200);

    let text = std::fs::read_to_string(dir.join("havend.toml")).unwrap();
    std::fs::write(dir.join("havend.toml"), text.replace(SHARED_OLD, SHARED_NEW)).unwrap();
    let answer = as_admin(&daemon, "POST", "/api/v1/admin/config/reload").await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    assert_eq!(answer.json["outcome"], "applied", "{}", answer.json);
    assert_eq!(answer.json["changed"], serde_json::json!(["cross_app.shared_secrets"]));
    let shown = answer.json.to_string();
    assert!(!shown.contains(SHARED_OLD) && !shown.contains(SHARED_NEW), "the report names the key, not the value: {shown}");

    let old = validate_session(&daemon, SHARED_OLD, &token).await;
    assert_eq!((old.status, assert_error_shape(&old)), (401, "INVALID_SHARED_SECRET".to_owned()));
    assert_eq!(validate_session(&daemon, SHARED_NEW, &token).await.status, 200);
    daemon.stop().await;
}

/// `secrets = "…"` where a list belongs: serde's own message quotes the
/// string; the rejection names file, key and type wherever it is shown.
async fn a_type_error_is_rejected_naming_file_key_and_type_but_never_the_secret(backend: Backend) {
    const LEAKED: &str = "whsec_live_must_not_leak";
    let (daemon, dir) = TestDaemon::start_with_config_dir(backend, "", &partners(OLD)).await;
    grant_test_keys(&daemon, &dir).await;
    std::fs::write(dir.join("partners.toml"), format!("[partners.aurora]\nsecrets = \"{LEAKED}\"\n")).unwrap();
    let answer = as_admin(&daemon, "POST", "/api/v1/admin/config/reload").await;
    assert_eq!(answer.json["outcome"], "rejected", "{}", answer.json);
    let error = answer.json["error"].as_str().unwrap();
    assert!(error.contains("partners.toml: partners.aurora.secrets: expected an array, found string"), "{error}");

    let rejected = eventually(Duration::from_secs(2), || async {
        entity::alerts::Entity::find().filter(entity::alerts::Column::Category.eq("config_rejected")).one(&daemon.db).await.unwrap().is_some()
    })
    .await;
    assert!(rejected, "a config_rejected alert is stored");
    let alerts = entity::alerts::Entity::find().all(&daemon.db).await.unwrap();
    let shown = as_admin(&daemon, "GET", "/api/v1/admin/config").await;
    assert_eq!(shown.status, 200);
    for text in [answer.json.to_string(), shown.json.to_string(), format!("{alerts:?}")] {
        assert!(!text.contains(LEAKED), "{text}");
    }
    assert_eq!(deliver_signed(&daemon, OLD).await, 200, "the last good config keeps serving");
    daemon.stop().await;
}

/// SPEC: reward rates, monitor thresholds and alert routes reload without a
/// restart. After one reload, a new event earns the new rate, the monitor
/// alerts an intent under the new threshold, and the alert goes to the
/// channel the new routes name, not the one the old ones did.
async fn a_reload_of_reward_rates_monitor_thresholds_and_alert_routes_takes_effect(backend: Backend) {
    use crate::support::receivers::WebhookReceiver;
    let (first, second) = (WebhookReceiver::start(Vec::new()).await, WebhookReceiver::start(Vec::new()).await);
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("master.key");
    std::fs::write(&key_file, crate::support::chain::TEST_MASTER_KEY).unwrap();
    let settings = |pending_after_secs: u64, first_routes: &str, second_routes: &str| {
        format!(
            "[custody]\nmaster_key_file = {key:?}\n[monitor]\ninterval_secs = 1\npending_after_secs = {pending_after_secs}\n\
             [alerts]\npoll_interval_ms = 100\nretry_base_ms = 50\nretry_max_ms = 200\n\
             [[alerts.channels]]\nname = \"first\"\nkind = \"webhook\"\nurl = {a:?}\nmin_severity = \"INFO\"\ncategories = [{first_routes}]\n\
             [[alerts.channels]]\nname = \"second\"\nkind = \"webhook\"\nurl = {b:?}\nmin_severity = \"INFO\"\ncategories = [{second_routes}]\n",
            key = key_file.display().to_string(),
            a = first.url("first"),
            b = second.url("second"),
        )
    };
    let before = settings(3_600, "\"transaction_pending\"", "\"system_test\"");
    let tribe = format!("[partners.tribe]\nsecrets = [{TRIBE_SECRET:?}]\n");
    let (mut daemon, dir) = TestDaemon::start_with_config_dir(backend, &before, &tribe).await;
    daemon.keep.push(key_dir);
    // An active hot wallet, so events are processed (nothing is signed: no chain).
    let keys = havend::custody::MasterKeys::parse(crate::support::chain::TEST_MASTER_KEY).unwrap();
    let wallet = havend::custody::create_wallet(&daemon.db, &keys, havend::custody::HOT, "test").await.unwrap();
    entity::wallets::Entity::update_many()
        .col_expr(entity::wallets::Column::Status, sea_orm::sea_query::Expr::value(havend::custody::ACTIVE))
        .filter(entity::wallets::Column::Id.eq(wallet.id))
        .exec(&daemon.db)
        .await
        .unwrap();
    let attend = |id: &str| format!(r#"{{"id":"{id}","attendee_id":"m_reload","type":"meetup","attended":true}}"#);
    let intent_of = |id: &'static str| {
        let db = daemon.db.clone();
        async move {
            entity::transactions::Entity::find()
                .filter(entity::transactions::Column::Source.eq(format!("tribe:event-attendance:{id}:m_reload")))
                .one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(daemon.deliver(Partner::Tribe, Some("event-attendance"), &attend("tev_r1")).await.status, 200);
    assert!(eventually(Duration::from_secs(20), || async { intent_of("tev_r1").await.is_some() }).await, "the first attendance is processed");
    let old_rate = intent_of("tev_r1").await.unwrap();
    assert_eq!(old_rate.amount, (25u128 * 10u128.pow(18)).to_string(), "25 HNV by the default rate");
    // It has been on its way to the chain for two minutes: under the hour of
    // the running threshold, over the minute of the next one.
    entity::transactions::Entity::update_many()
        .col_expr(entity::transactions::Column::Status, sea_orm::sea_query::Expr::value("signed"))
        .col_expr(entity::transactions::Column::UpdatedAt, sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::seconds(120)))
        .filter(entity::transactions::Column::Id.eq(old_rate.id))
        .exec(&daemon.db)
        .await
        .unwrap();

    std::fs::write(dir.join("rewards.toml"), "[tribe]\nattendance_default = \"40\"\n").unwrap();
    let text = std::fs::read_to_string(dir.join("havend.toml")).unwrap();
    std::fs::write(dir.join("havend.toml"), text.replace(&before, &settings(60, "\"system_test\"", "\"transaction_pending\""))).unwrap();
    let report = daemon.daemon().reload().await.expect("the config actor answers");
    assert_eq!(report.outcome, "applied", "{report:?}");
    assert!(report.needs_restart.is_empty(), "all three are hot settings: {report:?}");

    assert_eq!(daemon.deliver(Partner::Tribe, Some("event-attendance"), &attend("tev_r2")).await.status, 200);
    assert!(eventually(Duration::from_secs(20), || async { intent_of("tev_r2").await.is_some() }).await, "the second attendance is processed");
    assert_eq!(intent_of("tev_r2").await.unwrap().amount, (40u128 * 10u128.pow(18)).to_string(), "the reloaded rate applies");

    let delivered = eventually(Duration::from_secs(30), || async {
        second.requests().iter().any(|r| r.json.to_string().contains("transaction_pending"))
    })
    .await;
    assert!(delivered, "the monitor alerted under the new threshold, and the new route carried it");
    let pending = entity::alerts::Entity::find().filter(entity::alerts::Column::Category.eq("transaction_pending")).all(&daemon.db).await.unwrap();
    assert!(!pending.is_empty() && pending.iter().all(|a| a.message.contains(&old_rate.id.to_string())), "{pending:?}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            entity::alerts::Entity::find()
                .filter(entity::alerts::Column::Category.eq("transaction_pending"))
                .all(&daemon.db)
                .await
                .unwrap()
                .iter()
                .all(|a| a.delivery_status == "delivered")
        })
        .await,
        "its delivery is finished"
    );
    assert!(!first.requests().iter().any(|r| r.json.to_string().contains("transaction_pending")), "the old route no longer carries it");
    daemon.stop().await;
}

on_both_backends!(
    an_edited_secret_is_accepted_within_two_seconds_and_the_removed_one_refused,
    invalid_toml_keeps_the_last_good_config_and_raises_config_rejected,
    restart_only_edits_are_kept_and_reported,
    a_cross_app_secret_rotated_in_place_is_applied_and_the_old_one_refused,
    a_type_error_is_rejected_naming_file_key_and_type_but_never_the_secret,
    a_reload_of_reward_rates_monitor_thresholds_and_alert_routes_takes_effect,
);
