//! Scheduled jobs: a partner sync against a partner API served by the test,
//! and the staking job fired by its cron.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use entity::{transactions, webhook_events};
use havend::schedule::{JobKind, run_job};
use havend::webhooks::Partner;
use http_body_util::Full;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::on_both_backends;
use crate::support::chain::TEST_MASTER_KEY;
use crate::support::{Backend, TestDaemon, eventually};

/// What the partner API saw: the query string and the Authorization header of each request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Serves `page` as the partner's sync API on 127.0.0.1:0.
async fn partner_api(page: serde_json::Value) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let (page, record) = (Bytes::from(page.to_string()), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (page, record) = (page.clone(), record.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let query = request.uri().query().unwrap_or_default().to_owned();
                    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    record.lock().unwrap().push((query, auth));
                    let page = page.clone();
                    async move { Ok::<_, Infallible>(http::Response::builder().header("content-type", "application/json").body(Full::new(page)).unwrap()) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    (format!("http://{addr}/sync"), seen)
}

async fn partner_sync_stores_only_what_webhooks_missed_and_an_overlapping_sync_stores_nothing(backend: Backend) {
    // Ten bookings as the partner's API lists them: camelCase, `booking_id` for `id`, one id with a `:`.
    let bookings: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let id = if i == 9 { "bk:colon".to_owned() } else { format!("bk_sync_{i}") };
            serde_json::json!({ "event": "booking-created", "payload": { "booking_id": id, "guestId": format!("g{i}"), "totalPrice": "10", "nights": 1 } })
        })
        .collect();
    let (url, seen) = partner_api(serde_json::json!({ "events": bookings, "next_since": "2026-11-24T06:00:00Z" })).await;
    let sync_url = url.clone();
    let daemon = TestDaemon::start_with_active_wallet(backend, move |config| {
        let aurora = config.partners.get_mut(&Partner::Aurora).unwrap();
        aurora.sync_url = Some(sync_url);
        aurora.api_key = Some(havend::config::Secret::new("aurora-api-key"));
    })
    .await;
    // Three of them arrived by webhook first.
    for i in 0..3 {
        let body = format!(r#"{{"id":"bk_sync_{i}","guest_id":"g{i}","total_price":"10","nights":1}}"#);
        assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), &body).await.status, 200);
    }
    let config = daemon.daemon().config().load_full();
    let report = run_job(JobKind::AuroraSync, daemon.daemon().db(), &config, None).await.unwrap();
    assert_eq!((report["fetched"].as_u64(), report["stored"].as_u64(), report["duplicates"].as_u64()), (Some(10), Some(7), Some(3)), "{report}");
    daemon.daemon().nudge_processors();
    let processed = eventually(Duration::from_secs(20), || async {
        webhook_events::Entity::find().filter(webhook_events::Column::Status.eq("processed")).count(&daemon.db).await.unwrap() == 10
    })
    .await;
    assert!(processed, "all ten processed");
    assert_eq!(transactions::Entity::find().count(&daemon.db).await.unwrap(), 10, "one intent each");
    assert!(daemon.event(Partner::Aurora, "booking-created:bk%3Acolon").await.is_some(), "the key is built as a webhook's would be");

    // The next sync asks from the stored mark minus the overlap and stores nothing new.
    let again = run_job(JobKind::AuroraSync, daemon.daemon().db(), &config, None).await.unwrap();
    assert_eq!((again["stored"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(10)), "{again}");
    assert_eq!(again["since"], "2026-11-24T05:00:00Z", "since = next_since - 1 h of overlap, not the wall clock");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|(_, auth)| auth == "Bearer aurora-api-key"), "{requests:?}");
    assert_eq!(requests[1].0, "since=2026-11-24T05%3A00%3A00Z");
    daemon.stop().await;
}

/// Issue 13, defect 10: a partner answering an older `next_since` (echoing
/// `since`) once moved the mark back, and the refused events' alert was
/// raised after the commit that moved the mark past them.
async fn a_sync_mark_never_moves_back_and_refused_events_are_alerted_with_it(backend: Backend) {
    let daemon = TestDaemon::start_with_active_wallet(backend, |_| {}).await;
    let (ahead, _) = partner_api(serde_json::json!({ "events": [], "next_since": "2026-11-24T06:00:00Z" })).await;
    let refused = serde_json::json!({ "event": "booking-created", "payload": { "id": "bk_bad", "guest_id": "g", "total_price": "-1", "nights": 1 } });
    let (behind, _) = partner_api(serde_json::json!({ "events": [refused], "next_since": "2026-11-01T00:00:00Z" })).await;
    let syncing_from = |url: &str| {
        let mut config = (*daemon.daemon().config().load_full()).clone();
        config.partners.get_mut(&Partner::Aurora).unwrap().sync_url = Some(url.to_owned());
        config
    };
    run_job(JobKind::AuroraSync, daemon.daemon().db(), &syncing_from(&ahead), None).await.unwrap();
    let report = run_job(JobKind::AuroraSync, daemon.daemon().db(), &syncing_from(&behind), None).await.unwrap();
    assert_eq!((report["refused"].as_u64(), report["next_since"].as_str()), (Some(1), Some("2026-11-24T06:00:00Z")), "{report}");
    let mark = entity::sync_state::Entity::find_by_id("aurora".to_owned()).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(mark.since.to_rfc3339(), "2026-11-24T06:00:00+00:00", "the stored mark stays at its maximum");
    let alerts = entity::alerts::Entity::find().filter(entity::alerts::Column::Category.eq("sync_events_refused")).count(&daemon.db).await.unwrap();
    assert_eq!(alerts, 1, "the refused event is alerted");
    daemon.stop().await;
}

async fn the_cron_fires_the_staking_job_and_pays_each_week_once(backend: Backend) {
    let daemon = TestDaemon::start_with_active_wallet(backend, |config| config.schedule.staking_rewards = "* * * * * *".into()).await;
    let started = (chrono::Utc::now() - chrono::Duration::days(22)).to_rfc3339();
    let body = format!(r#"{{"id":"st_cron","user_id":"staker","amount":"365","started_at":"{started}"}}"#);
    assert_eq!(daemon.deliver(Partner::Tribe, Some("staking-started"), &body).await.status, 200);
    let staking = || async {
        transactions::Entity::find().filter(transactions::Column::Source.starts_with("staking:st_cron:")).count(&daemon.db).await.unwrap()
    };
    // 22 days hold two or three completed Monday-to-Sunday weeks, depending on today's weekday.
    assert!(eventually(Duration::from_secs(20), || async { staking().await >= 2 }).await, "the cron ran the job");
    let paid = staking().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(staking().await, paid, "later runs pay nothing twice");
    assert!((2..=3).contains(&paid), "{paid}");
    daemon.stop().await;
}

async fn a_failing_scheduled_job_raises_an_alert_and_runs_again(backend: Backend) {
    // A partner API that refuses connections: the port is bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let daemon = TestDaemon::start_with_active_wallet(backend, move |config| {
        config.schedule.aurora_sync = "* * * * * *".into();
        config.partners.get_mut(&Partner::Aurora).unwrap().sync_url = Some(format!("http://127.0.0.1:{port}/sync"));
    })
    .await;
    let failures = || async {
        entity::alerts::Entity::find().filter(entity::alerts::Column::Category.eq("scheduled_job_failed")).count(&daemon.db).await.unwrap()
    };
    assert!(eventually(Duration::from_secs(20), || async { failures().await >= 2 }).await, "each failed run is alerted, and the job is not stuck");
    daemon.stop().await;
}

on_both_backends!(
    a_failing_scheduled_job_raises_an_alert_and_runs_again,
    partner_sync_stores_only_what_webhooks_missed_and_an_overlapping_sync_stores_nothing,
    the_cron_fires_the_staking_job_and_pays_each_week_once,
    a_sync_mark_never_moves_back_and_refused_events_are_alerted_with_it,
);

/// Posts a signed Tribe `staking-started` for `stake` (started `days_ago`) to the binary on `port`.
async fn start_stake(port: u16, stake: &str, days_ago: i64) -> u16 {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let started = (chrono::Utc::now() - chrono::Duration::days(days_ago)).to_rfc3339();
    let body = format!(r#"{{"id":"{stake}","user_id":"staker_{stake}","amount":"365","started_at":"{started}"}}"#);
    let mut request = http::Request::post(format!("http://127.0.0.1:{port}/webhooks/tribe/staking-started"));
    for (name, value) in crate::support::sign(Partner::Tribe, &body, crate::support::now()) {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    client.request(request).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// The cron fires the staking job in the real binary, which is SIGKILLed
/// between two stakes' commits (a failpoint parks the job there); the
/// restarted daemon (start-up run and cron) pays every stake's weeks, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_staking_job_and_a_restart_pay_each_stake_once_for_the_week() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    let database = crate::support::TestDatabase::create(Backend::Postgres).await;
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&database.url));
    let db = havend::db::connect(&config).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let hot = havend::custody::create_wallet(&db, &keys, havend::custody::HOT, "test").await.unwrap();
    entity::wallets::Entity::update_many()
        .col_expr(entity::wallets::Column::Status, sea_orm::sea_query::Expr::value(havend::custody::ACTIVE))
        .filter(entity::wallets::Column::Id.eq(hot.id))
        .exec(&db)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.key"), TEST_MASTER_KEY).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let daemon_file = |staking_cron: &str| {
        format!(
            "data_dir = {data:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = {url:?}\n[custody]\nmaster_key_file = {key:?}\n\
             [processor]\npoll_interval_ms = 100\n[schedule]\nstaking_rewards = {staking_cron:?}\n",
            data = dir.path().join("data").display().to_string(),
            url = database.url,
            key = dir.path().join("master.key").display().to_string(),
        )
    };
    // No staking schedule yet: the stakes arrive first, then a reload turns the cron on.
    std::fs::write(dir.path().join("havend.toml"), daemon_file("")).unwrap();
    std::fs::write(dir.path().join("partners.toml"), format!("[partners.tribe]\nsecrets = [{:?}]\n", crate::support::TRIBE_SECRET)).unwrap();
    let spawn = |failpoints: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_havend"));
        command.args(["run", "--config"]).arg(dir.path()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        command.spawn().unwrap()
    };
    // The job parks after its first stake's commit until the test kills it.
    let mut child = spawn(Some("staking::after_stake=sleep(120000)"));

    let stakes = ["st_kill_a", "st_kill_b", "st_kill_c"];
    let up = eventually(Duration::from_secs(30), || async { start_stake(port, stakes[0], 22).await == 200 }).await;
    assert!(up, "the daemon takes the first stake");
    for stake in &stakes[1..] {
        assert_eq!(start_stake(port, stake, 22).await, 200);
    }
    let recorded = eventually(Duration::from_secs(20), || async {
        entity::staking_records::Entity::find().count(&db).await.unwrap() == stakes.len() as u64
    })
    .await;
    assert!(recorded, "the processor recorded the three stakes");
    let staking = || async {
        transactions::Entity::find().filter(transactions::Column::Source.starts_with("staking:")).all(&db).await.unwrap()
    };
    // The start-up run is spawned beside the listener: on a loaded machine it
    // may read the stakes only after they arrive, pay the first and park at
    // the failpoint itself. Either way one job is parked mid-way when killed.
    let early: std::collections::BTreeSet<String> = staking().await.iter().map(|t| t.source.split(':').nth(1).unwrap().to_owned()).collect();
    assert!(early.len() <= 1, "before the cron, at most the start-up run's first stake is paid: {early:?}");

    std::fs::write(dir.path().join("havend.toml"), daemon_file("* * * * * *")).unwrap();
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    let started = eventually(Duration::from_secs(20), || async { !staking().await.is_empty() }).await;
    assert!(started, "the cron fired the staking job");
    // Parked at the failpoint: one stake paid, the others not, for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mid_job = staking().await;
    let paid_stakes: std::collections::BTreeSet<String> = mid_job.iter().map(|t| t.source.split(':').nth(1).unwrap().to_owned()).collect();
    assert_eq!(paid_stakes.len(), 1, "killed in the middle of the job: {paid_stakes:?}");
    assert!(Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().signal(), Some(9));

    let mut child = spawn(None);
    let expected: usize = {
        let records = entity::staking_records::Entity::find().all(&db).await.unwrap();
        records.iter().map(|r| havend::rewards::staking::completed_weeks(r.started_at, chrono::Utc::now(), chrono_tz::Tz::UTC).len()).sum()
    };
    assert!(expected >= 6, "22 days hold two or three weeks per stake: {expected}");
    let paid = eventually(Duration::from_secs(30), || async { staking().await.len() >= expected }).await;
    // A few more cron runs pay nothing twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = staking().await;
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(paid, "the restart paid the stakes the killed job left");
    assert_eq!(rows.len(), expected, "each stake's weeks paid once: {:?}", rows.iter().map(|t| &t.source).collect::<Vec<_>>());
    for stake in stakes {
        let record = entity::staking_records::Entity::find_by_id(stake.to_owned()).one(&db).await.unwrap().unwrap();
        let weeks = havend::rewards::staking::completed_weeks(record.started_at, chrono::Utc::now(), chrono_tz::Tz::UTC);
        let mut sources: Vec<String> = rows.iter().filter(|t| t.source.starts_with(&format!("staking:{stake}:"))).map(|t| t.source.clone()).collect();
        sources.sort();
        let wanted: Vec<String> = weeks.iter().map(|monday| format!("staking:{stake}:{monday}")).collect();
        assert_eq!(sources, wanted, "stake {stake}: every completed week, once");
    }
    assert!(status.success(), "SIGTERM after the restart exits cleanly");
}
