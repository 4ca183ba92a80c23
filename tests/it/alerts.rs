//! Alert delivery: alerts raised as rows reach webhooks and e-mail, failed
//! deliveries are retried, repeats are throttled, every result lands in
//! `alert_logs`, and daemons sharing a database deliver each alert once.

use std::time::Duration;

use entity::{alert_logs, alert_throttles, alerts};
use havend::alert::{self, Severity, store};
use havend::config::{ChannelConfig, ChannelKind, Config, SmtpTls};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::json;

use crate::on_both_backends;
use crate::support::receivers::{self, SmtpSecurity, SmtpServer, WebhookReceiver};
use crate::support::*;

const DELIVERY_DEADLINE: Duration = Duration::from_secs(15);

/// Fast delivery for tests: quick polls and retries.
fn fast_alerts(config: &mut Config, channels: Vec<ChannelConfig>) {
    config.alerts.poll_interval_ms = 100;
    config.alerts.timeout_ms = 2_000;
    config.alerts.retry_base_ms = 50;
    config.alerts.retry_max_ms = 200;
    config.alerts.channels = channels;
}

fn channel(name: &str, kind: ChannelKind) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        kind,
        min_severity: Severity::Info,
        categories: Vec::new(),
        url: None,
        host: None,
        port: None,
        tls: SmtpTls::Starttls,
        ca_file: None,
        username: None,
        password: None,
        from: None,
        to: Vec::new(),
    }
}

fn webhook(name: &str, kind: ChannelKind, url: String) -> ChannelConfig {
    ChannelConfig { url: Some(havend::config::Secret::new(url)), ..channel(name, kind) }
}

async fn logs_of(daemon: &TestDaemon, alert: uuid::Uuid) -> Vec<alert_logs::Model> {
    alert_logs::Entity::find()
        .filter(alert_logs::Column::AlertId.eq(alert))
        .order_by_asc(alert_logs::Column::CreatedAt)
        .all(&daemon.db)
        .await
        .unwrap()
}

async fn status_of(daemon: &TestDaemon, alert: uuid::Uuid) -> String {
    alerts::Entity::find_by_id(alert).one(&daemon.db).await.unwrap().unwrap().delivery_status
}

async fn row_of(daemon: &TestDaemon, alert: uuid::Uuid) -> alerts::Model {
    alerts::Entity::find_by_id(alert).one(&daemon.db).await.unwrap().unwrap()
}

/// Waits until `alert` is failed for good (past its delivery horizon); true when it is.
async fn wait_until_given_up(daemon: &TestDaemon, alert: uuid::Uuid) -> bool {
    eventually(DELIVERY_DEADLINE, || async {
        let row = row_of(daemon, alert).await;
        row.delivery_status == store::FAILED && row.next_attempt_at.is_none()
    })
    .await
}

async fn wait_for_status(daemon: &TestDaemon, alert: uuid::Uuid) -> String {
    eventually(DELIVERY_DEADLINE, || async { status_of(daemon, alert).await != store::PENDING }).await;
    status_of(daemon, alert).await
}

async fn slack_webhook_gets_the_alert_text_and_no_secret_is_stored(backend: Backend) {
    let receiver = WebhookReceiver::start(Vec::new()).await;
    let url = receiver.url("T000-B000-s3cr3t");
    let daemon = TestDaemon::start_with(backend, |config| fast_alerts(config, vec![webhook("ops-slack", ChannelKind::Slack, url)])).await;

    let id = alert::record(&daemon.db, Severity::Warning, "circuit_open", "RPC breaker opened", &json!({"breaker": "rpc"})).await.unwrap();

    assert_eq!(wait_for_status(&daemon, id).await, store::DELIVERED);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].json, json!({"text": "[WARNING] circuit_open: RPC breaker opened"}));
    assert!(requests[0].path.starts_with("/services/T000-B000-s3cr3t"), "the full URL was used");
    let logs = logs_of(&daemon, id).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!((logs[0].channel.as_deref(), logs[0].outcome.as_str(), logs[0].attempt), (Some("ops-slack"), "delivered", 1));
    let detail = logs[0].detail.clone().unwrap();
    assert_eq!(detail, format!("HTTP 200 from http://{}", receiver.addr));
    assert!(!detail.contains("s3cr3t"));
    daemon.stop().await;
}

async fn webhook_answering_500_twice_gets_the_alert_on_the_third_attempt(backend: Backend) {
    let receiver = WebhookReceiver::start(vec![500, 500]).await;
    let url = receiver.url("generic-token");
    let daemon = TestDaemon::start_with(backend, |config| fast_alerts(config, vec![webhook("generic", ChannelKind::Webhook, url)])).await;

    let id = alert::record(&daemon.db, Severity::Error, "transaction_failed", "Intent reverted", &json!({"intent": "i-1"})).await.unwrap();

    assert_eq!(wait_for_status(&daemon, id).await, store::DELIVERED);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "two failures, then the success");
    assert!(requests.iter().all(|r| r.json["id"] == json!(id) && r.json["details"]["intent"] == "i-1"), "the full alert each time");
    let outcomes: Vec<_> = logs_of(&daemon, id).await.into_iter().map(|log| (log.attempt, log.outcome, log.detail.unwrap())).collect();
    let origin = format!("http://{}", receiver.addr);
    assert_eq!(
        outcomes,
        [
            (1, "retrying".to_owned(), format!("HTTP 500 from {origin}")),
            (2, "retrying".to_owned(), format!("HTTP 500 from {origin}")),
            (3, "delivered".to_owned(), format!("HTTP 200 from {origin}")),
        ]
    );
    daemon.stop().await;
}

async fn webhook_that_keeps_failing_is_recorded_failed_after_the_retries(backend: Backend) {
    let receiver = WebhookReceiver::start(vec![503; 10]).await;
    let url = receiver.url("t");
    let daemon = TestDaemon::start_with(backend, |config| {
        fast_alerts(config, vec![webhook("discord", ChannelKind::Discord, url)]);
        config.alerts.retries = 2;
        // One round only: later rounds have tests of their own.
        config.alerts.delivery_horizon_secs = 0;
    })
    .await;

    let id = alert::record(&daemon.db, Severity::Critical, "foreign_nonce", "Nonce 7 used by someone else", &json!({})).await.unwrap();

    assert_eq!(wait_for_status(&daemon, id).await, store::FAILED);
    assert_eq!(row_of(&daemon, id).await.next_attempt_at, None, "no further round");
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(receiver.requests()[0].json, json!({"content": "[CRITICAL] foreign_nonce: Nonce 7 used by someone else"}));
    let outcomes: Vec<_> = logs_of(&daemon, id).await.into_iter().map(|log| log.outcome).collect();
    assert_eq!(outcomes, ["retrying", "retrying", "failed"]);
    let stats = store::stats(&daemon.db).await.unwrap();
    assert_eq!(stats.by_channel["discord"]["failed"], 1);
    assert_eq!(stats.by_channel["discord"]["retrying"], 2);
    assert_eq!(stats.by_delivery_status["failed"], 1);
    daemon.stop().await;
}

/// Later rounds for a failed alert: quick ones here (a 200 ms cap between
/// rounds instead of 15 minutes), so an outage many times longer than one
/// round's budget (two attempts) passes in about a second.
fn quick_rounds(config: &mut Config, url: String) {
    fast_alerts(config, vec![webhook("generic", ChannelKind::Webhook, url)]);
    config.alerts.retries = 1;
    config.alerts.redelivery_max_ms = 200;
}

/// The receiver fails for five rounds' worth of attempts, far past the one
/// round (attempt and retries) after which delivery used to give up for
/// good; the alert is `failed` in between and delivered when it comes back.
async fn a_failed_alert_is_retried_in_later_rounds_and_delivered_when_the_channel_comes_back(backend: Backend) {
    let receiver = WebhookReceiver::start(vec![503; 10]).await;
    let url = receiver.url("outage");
    let daemon = TestDaemon::start_with(backend, |config| quick_rounds(config, url)).await;

    let id = alert::record(&daemon.db, Severity::Critical, "foreign_nonce", "Nonce 9 used by someone else", &json!({})).await.unwrap();

    let delivered = eventually(DELIVERY_DEADLINE, || async { status_of(&daemon, id).await == store::DELIVERED }).await;
    let logs = logs_of(&daemon, id).await;
    assert!(delivered, "delivered once the receiver answers 200: {logs:?}");
    assert_eq!(receiver.requests().len(), 11, "ten failures, then the success");
    let attempts: Vec<_> = logs.iter().map(|log| (log.attempt, log.outcome.as_str())).collect();
    let mut expected: Vec<(i32, &str)> = (1..=10).map(|n| (n, if n % 2 == 0 { "failed" } else { "retrying" })).collect();
    expected.push((11, "delivered"));
    assert_eq!(attempts, expected, "each round is an attempt and one retry; attempts are numbered on across rounds");
    assert_eq!(row_of(&daemon, id).await.next_attempt_at, None);
    daemon.stop().await;
}

/// A channel that never answers: rounds stop at the delivery horizon and
/// the alert stays `failed`. Proof that the actor kept looking: a second
/// alert raised afterwards goes through rounds until its own horizon, while
/// the first gets no further attempt.
async fn a_failed_alert_stays_failed_once_past_its_delivery_horizon(backend: Backend) {
    let receiver = WebhookReceiver::start(vec![503; 10_000]).await;
    let url = receiver.url("down");
    let daemon = TestDaemon::start_with(backend, |config| {
        quick_rounds(config, url);
        config.alerts.delivery_horizon_secs = 1;
    })
    .await;

    let first = alert::record(&daemon.db, Severity::Error, "transaction_failed", "Intent 1 reverted", &json!({})).await.unwrap();
    assert!(wait_until_given_up(&daemon, first).await, "{:?}", row_of(&daemon, first).await);
    let attempts = logs_of(&daemon, first).await.len();
    assert!(attempts > 2, "more than one round before the horizon: {attempts}");

    let second = alert::record(&daemon.db, Severity::Error, "transaction_failed", "Intent 2 reverted", &json!({})).await.unwrap();
    assert!(wait_until_given_up(&daemon, second).await, "{:?}", row_of(&daemon, second).await);
    assert!(logs_of(&daemon, second).await.len() > 2, "the actor ran later rounds meanwhile");
    assert_eq!(logs_of(&daemon, first).await.len(), attempts, "none for the alert past its horizon");
    daemon.stop().await;
}

async fn flood_of_100_identical_alerts_is_delivered_once_with_a_throttled_count(backend: Backend) {
    let receiver = WebhookReceiver::start(Vec::new()).await;
    let url = receiver.url("flood");
    let daemon = TestDaemon::start_with(backend, |config| fast_alerts(config, vec![webhook("ops-slack", ChannelKind::Slack, url)])).await;

    for _ in 0..100 {
        alert::raise(&daemon.db, Severity::Error, "gas_price_spike", "Gas price 3x its baseline", json!({})).await;
    }

    let settled = eventually(DELIVERY_DEADLINE, || async {
        alerts::Entity::find().filter(alerts::Column::DeliveryStatus.eq(store::PENDING)).count(&daemon.db).await.unwrap() == 0
    })
    .await;
    assert!(settled, "every alert was handled");
    assert_eq!(receiver.requests().len(), 1, "one delivery");
    let stats = store::stats(&daemon.db).await.unwrap();
    assert_eq!((stats.by_delivery_status["delivered"], stats.throttled), (1, 99), "{stats:?}");
    let window = alert_throttles::Entity::find().one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(window.suppressed, 99);
    let throttled_logs = alert_logs::Entity::find().filter(alert_logs::Column::Outcome.eq("throttled")).count(&daemon.db).await.unwrap();
    assert_eq!(throttled_logs, 99, "each throttled alert's result is logged");
    daemon.stop().await;
}

async fn alerts_below_a_channels_minimum_severity_or_outside_its_categories_are_not_sent(backend: Backend) {
    let receiver = WebhookReceiver::start(Vec::new()).await;
    let mut pager = webhook("pager", ChannelKind::Webhook, receiver.url("p"));
    pager.min_severity = Severity::Error;
    pager.categories = vec!["transaction_failed".into()];
    let daemon = TestDaemon::start_with(backend, |config| fast_alerts(config, vec![pager])).await;

    let info = alert::record(&daemon.db, Severity::Info, "transaction_failed", "minor", &json!({})).await.unwrap();
    let other = alert::record(&daemon.db, Severity::Critical, "circuit_open", "other category", &json!({})).await.unwrap();
    let routed = alert::record(&daemon.db, Severity::Error, "transaction_failed", "routed", &json!({})).await.unwrap();

    assert_eq!(wait_for_status(&daemon, routed).await, store::DELIVERED);
    assert_eq!(wait_for_status(&daemon, info).await, store::UNROUTED);
    assert_eq!(wait_for_status(&daemon, other).await, store::UNROUTED);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json["message"], "routed");
    daemon.stop().await;
}

async fn email_alert_reaches_a_plaintext_smtp_server(backend: Backend) {
    let mut smtp = SmtpServer::start(SmtpSecurity::Plain).await;
    let mut email = channel("oncall", ChannelKind::Email);
    email.host = Some("127.0.0.1".into());
    email.port = Some(smtp.addr.port());
    email.tls = SmtpTls::None;
    email.from = Some("havend@example.com".into());
    email.to = vec!["ops@example.com".into(), "oncall@example.com".into()];
    let daemon = TestDaemon::start_with(backend, |config| fast_alerts(config, vec![email])).await;

    let id = alert::record(&daemon.db, Severity::Critical, "low_balance", "Hot wallet low on gas", &json!({"wallet": "0x1"})).await.unwrap();

    let mail = tokio::time::timeout(DELIVERY_DEADLINE, smtp.mail.recv()).await.expect("mail arrives").unwrap();
    assert_eq!(mail.from, "havend@example.com");
    assert_eq!(mail.to, ["ops@example.com", "oncall@example.com"]);
    assert_eq!(mail.auth, None, "no credentials configured, none sent");
    assert!(!mail.tls);
    assert!(mail.data.contains("Subject: [CRITICAL] low_balance: Hot wallet low on gas"), "{}", mail.data);
    assert!(mail.data.contains(&id.to_string()), "{}", mail.data);
    assert_eq!(wait_for_status(&daemon, id).await, store::DELIVERED);
    daemon.stop().await;
}

/// A daemon that crashed mid-delivery leaves its claim behind; once the
/// lease lapses another daemon delivers the alert: none is lost, none sent twice.
async fn alert_claimed_by_a_crashed_daemon_is_delivered_once_its_lease_lapses(backend: Backend) {
    let receiver = WebhookReceiver::start(Vec::new()).await;
    let database = TestDatabase::create(backend).await;
    let crashed = sea_orm::Database::connect(&database.url).await.unwrap();
    havend::db::migrate_up(&crashed).await.unwrap();
    let id = alert::record(&crashed, Severity::Critical, "wallet_parked", "Wallet actor parked", &json!({})).await.unwrap();
    let lease = Duration::from_secs(1);
    let claimed = store::claim(&crashed, uuid::Uuid::now_v7(), lease, 10, chrono::Utc::now()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let lease_ends = claimed[0].claimed_until.expect("the crashed daemon's claim has a lease");
    crashed.close().await.unwrap();

    let url = receiver.url("lease");
    let daemon = TestDaemon::start_on(database, |db| db.url.clone(), |config| fast_alerts(config, vec![webhook("ops", ChannelKind::Webhook, url)])).await;

    assert_eq!(wait_for_status(&daemon, id).await, store::DELIVERED);
    let attempts = logs_of(&daemon, id).await;
    assert!(!attempts.is_empty() && attempts.iter().all(|log| log.created_at >= lease_ends), "not before the crashed daemon's lease lapsed: {attempts:?}");
    assert_eq!(receiver.requests().len(), 1);
    daemon.stop().await;
}

on_both_backends!(
    alert_claimed_by_a_crashed_daemon_is_delivered_once_its_lease_lapses,
    slack_webhook_gets_the_alert_text_and_no_secret_is_stored,
    webhook_answering_500_twice_gets_the_alert_on_the_third_attempt,
    webhook_that_keeps_failing_is_recorded_failed_after_the_retries,
    a_failed_alert_is_retried_in_later_rounds_and_delivered_when_the_channel_comes_back,
    a_failed_alert_stays_failed_once_past_its_delivery_horizon,
    flood_of_100_identical_alerts_is_delivered_once_with_a_throttled_count,
    alerts_below_a_channels_minimum_severity_or_outside_its_categories_are_not_sent,
    email_alert_reaches_a_plaintext_smtp_server,
);

/// E-mail over TLS to a server whose self-signed certificate is trusted
/// through `ca_file` only; the password goes inside TLS and is stored nowhere.
async fn email_over_tls(starttls: bool) {
    let (acceptor, pem) = receivers::self_signed_tls();
    let security = if starttls { SmtpSecurity::Starttls(acceptor) } else { SmtpSecurity::Implicit(acceptor) };
    let mut smtp = SmtpServer::start(security).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, pem).unwrap();
    let mut email = channel("oncall-tls", ChannelKind::Email);
    email.host = Some("127.0.0.1".into());
    email.port = Some(smtp.addr.port());
    email.tls = if starttls { SmtpTls::Starttls } else { SmtpTls::Tls };
    email.ca_file = Some(ca_file);
    email.username = Some("havend".into());
    email.password = Some(havend::config::Secret::new("smtp-pass"));
    email.from = Some("havend@example.com".into());
    email.to = vec!["ops@example.com".into()];
    let daemon = TestDaemon::start_with(Backend::Sqlite, |config| fast_alerts(config, vec![email])).await;

    let id = alert::record(&daemon.db, Severity::Error, "webhook_dead_letter", "Event dead-lettered", &json!({})).await.unwrap();

    let Ok(Some(mail)) = tokio::time::timeout(DELIVERY_DEADLINE, smtp.mail.recv()).await else {
        panic!("no mail over TLS; attempts: {:?}", logs_of(&daemon, id).await);
    };
    assert!(mail.data.contains("Subject: [ERROR] webhook_dead_letter: Event dead-lettered"), "{}", mail.data);
    assert!(mail.tls, "handed over inside TLS");
    assert_eq!(mail.auth.as_deref(), Some("havend:smtp-pass"), "logged in, inside TLS");
    assert_eq!(wait_for_status(&daemon, id).await, store::DELIVERED);
    let stored = format!("{:?}", logs_of(&daemon, id).await);
    assert!(!stored.contains("smtp-pass"), "{stored}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_alert_over_starttls_trusts_the_ca_file() {
    email_over_tls(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_alert_over_implicit_tls_trusts_the_ca_file() {
    email_over_tls(false).await
}

/// Two daemons on one PostgreSQL claim with `SKIP LOCKED`: each alert is
/// delivered exactly once, whichever daemon takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_deliver_each_alert_once() {
    let receiver = WebhookReceiver::start(Vec::new()).await;
    let url = receiver.url("shared");
    let setup = |name: &'static str, url: String| {
        move |config: &mut Config| {
            fast_alerts(config, vec![webhook("generic", ChannelKind::Webhook, url)]);
            config.alerts.batch = 4;
            config.daemon_name = name.into();
        }
    };
    let database = TestDatabase::create(Backend::Postgres).await;
    let shared = TestDatabase::shared(&database.url);
    let first = TestDaemon::start_on(database, |db| db.url.clone(), setup("alpha", url.clone())).await;
    let second = TestDaemon::start_on(shared, |db| db.url.clone(), setup("beta", url)).await;

    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(alert::record(&first.db, Severity::Warning, "processing_stalled", &format!("Stall {n}"), &json!({})).await.unwrap());
    }

    let settled = eventually(DELIVERY_DEADLINE, || async {
        alerts::Entity::find().filter(alerts::Column::DeliveryStatus.eq(store::DELIVERED)).count(&first.db).await.unwrap() == 60
    })
    .await;
    assert!(settled, "every alert delivered");
    let requests = receiver.requests();
    let mut delivered: Vec<String> = requests.iter().map(|r| r.json["id"].as_str().unwrap().to_owned()).collect();
    delivered.sort();
    let mut expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(delivered, expected, "each alert once, none twice");
    let by_daemon: std::collections::BTreeSet<String> = alert_logs::Entity::find().all(&first.db).await.unwrap().into_iter().map(|l| l.daemon_name).collect();
    // Each raise nudges both daemons, so both take a share; the point is that sharing never doubles.
    assert_eq!(by_daemon.len(), 2, "both daemons delivered: {by_daemon:?}");
    second.stop().await;
    first.stop().await;
}

/// `havend alerts test` raises a `system_test` INFO alert and, with no daemon
/// running, delivers it itself and prints the result (a second test right
/// after is not throttled); `list` and `stats` print JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_test_alert_is_delivered_and_listed_in_stats() {
    let receiver = WebhookReceiver::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {:?}\n[alerts]\nretry_base_ms = 50\n[[alerts.channels]]\nname = \"ops\"\nkind = \"slack\"\nurl = \"{}\"\n",
        dir.path().join("data").display().to_string(),
        receiver.url("cli-token"),
    );
    std::fs::write(dir.path().join("havend.toml"), config).unwrap();
    let run = |args: &'static [&'static str]| {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_havend")).arg("alerts").arg("--config").arg(dir).args(args).output().unwrap()
        })
    };

    let test = run(&["test"]).await.unwrap();
    assert!(test.status.success(), "{}", String::from_utf8_lossy(&test.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&test.stdout).unwrap();
    assert_eq!((printed["category"].as_str(), printed["delivery_status"].as_str()), (Some("system_test"), Some("delivered")));
    assert_eq!(printed["logs"][0]["detail"], format!("HTTP 200 from http://{}", receiver.addr));
    assert_eq!(receiver.requests()[0].json, json!({"text": "[INFO] system_test: Test alert: delivery works"}));

    let again = run(&["test"]).await.unwrap();
    assert!(again.status.success(), "a requested test alert is never throttled: {}", String::from_utf8_lossy(&again.stdout));

    let list: serde_json::Value = serde_json::from_slice(&run(&["list"]).await.unwrap().stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let stats: serde_json::Value = serde_json::from_slice(&run(&["stats"]).await.unwrap().stdout).unwrap();
    assert_eq!(stats["by_category"]["system_test"], 2);
    assert_eq!(stats["by_channel"]["ops"]["delivered"], 2);
}
