//! The processor under crashes and concurrency: the real binary killed (and
//! aborted by a failpoint between the handler and its commit) while it
//! processes, several processors and daemons sharing one inbox, and
//! processors racing one user's daily limit. Always PostgreSQL: these are
//! the slow tests (DESIGN: a representative subset runs on SQLite elsewhere).

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use entity::{transactions, webhook_events};
use havend::webhooks::Partner;
use sea_orm::{ColumnTrait, Database, EntityTrait, PaginatorTrait, QueryFilter};

use crate::support::chain::{Prepared, TestChain, assert_executed_once, chain_config, drained, wallets_looked};
use crate::support::*;

const HAVEND: &str = env!("CARGO_BIN_EXE_havend");

fn hnv(whole: u64) -> U256 {
    U256::from(whole) * U256::from(10u64).pow(U256::from(18))
}

async fn count_status(db: &sea_orm::DatabaseConnection, status: &str) -> u64 {
    webhook_events::Entity::find().filter(webhook_events::Column::Status.eq(status)).count(db).await.unwrap()
}

async fn reconcile_clean(db: &sea_orm::DatabaseConnection, chain: &TestChain) {
    let report = havend::ledger::reconcile::reconcile(db, &chain.client(), chain.token).await.unwrap();
    assert!(report.is_clean(), "{}", serde_json::to_string_pretty(&report).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_aborted_mid_processing_every_event_is_processed_once() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let config_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "data_dir = {data:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = {url:?}\n[custody]\nmaster_key_file = {key:?}\n\
         [processor]\npoll_interval_ms = 100\n\
         [chain]\nrpc_url = {rpc:?}\ntoken = \"{token}\"\nchain_id = {chain_id}\nwallets = [\"{wallet}\"]\npoll_interval_ms = 100\nmax_in_flight = 256\nresend_after_ms = 1500\n",
        data = config_dir.path().join("data").display().to_string(),
        url = prepared.database.url,
        key = prepared.key_dir.path().join("master.key").display().to_string(),
        rpc = chain.url,
        token = chain.token,
        chain_id = chain.chain_id,
        wallet = prepared.wallets[0].address,
    );
    // Claims of one event make "after 20 commits" mean 20 events; the
    // other daemons commit batches of up to 64.
    let with_claims_of = |batch: u64| config.replace("[processor]\n", &format!("[processor]\nbatch = {batch}\n"));
    std::fs::write(config_dir.path().join("havend.toml"), with_claims_of(64)).unwrap();
    std::fs::write(config_dir.path().join("partners.toml"), format!("[partners.aurora]\nsecrets = [{AURORA_SECRET:?}]\n")).unwrap();
    let spawn = |failpoint: Option<&str>| -> Child {
        let mut command = Command::new(HAVEND);
        command.args(["run", "--config"]).arg(config_dir.path()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(failpoint) = failpoint {
            command.env("FAILPOINTS", failpoint);
        }
        command.spawn().unwrap()
    };
    let db = Database::connect(&prepared.database.url).await.unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let deliver = |i: usize| {
        let client = client.clone();
        async move {
            let body = format!(r#"{{"id":"bk_{i}","guest_id":"guest_{}","total_price":"10","nights":1}}"#, i % 50);
            let mut request = http::Request::post(format!("http://127.0.0.1:{port}/webhooks/aurora/booking-created"));
            for (name, value) in sign(Partner::Aurora, &body, now()) {
                request = request.header(name, value);
            }
            let response = client.request(request.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()).await;
            response.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    };

    // 500 bookings acknowledged, then SIGKILL while they are being processed
    // (each commit made slow, so most are still waiting when it dies).
    let mut first = spawn(Some("processor::before_commit=sleep(100)"));
    assert!(eventually(Duration::from_secs(30), || async { deliver(10_000).await == 200 }).await, "the daemon serves");
    for chunk in (0..500).collect::<Vec<_>>().chunks(25) {
        let statuses = futures_join(chunk.iter().map(|i| deliver(*i))).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    first.kill().unwrap();
    assert_eq!(first.wait().unwrap().signal(), Some(9));
    let after_kill = count_status(&db, "processed").await;

    assert!(after_kill < 450, "most events were still waiting when the daemon died ({after_kill} processed)");

    // Next, a daemon aborted between a handler and its commit, after 20 commits.
    std::fs::write(config_dir.path().join("havend.toml"), with_claims_of(1)).unwrap();
    let mut second = spawn(Some("processor::before_commit=20*off->return"));
    let aborted = tokio::task::spawn_blocking(move || second.wait().unwrap()).await.unwrap();
    assert_eq!(aborted.signal(), Some(6), "the failpoint aborted the daemon");
    let after_abort = count_status(&db, "processed").await;
    assert_eq!(after_abort, after_kill + 20, "the 21st commit never happened");

    // A clean restart finishes the rest.
    std::fs::write(config_dir.path().join("havend.toml"), with_claims_of(64)).unwrap();
    let mut third = spawn(None);
    assert!(eventually(Duration::from_secs(120), || async { count_status(&db, "processed").await == 501 }).await);
    assert!(
        eventually(Duration::from_secs(120), || async {
            transactions::Entity::find().filter(transactions::Column::Status.ne("confirmed")).count(&db).await.unwrap() == 0
        })
        .await,
        "every intent confirmed"
    );
    assert_eq!(transactions::Entity::find().count(&db).await.unwrap(), 501, "one intent per event");
    assert_eq!(chain.total_supply().await, hnv(20) * U256::from(501u64), "minted once each");
    reconcile_clean(&db, &chain).await;
    third.kill().unwrap();
    third.wait().unwrap();
}

/// Runs every future concurrently; their results in order.
async fn futures_join<F: Future<Output = u16> + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<u16> {
    let mut out = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    for (index, future) in futures.enumerate() {
        set.spawn(async move { (index, future.await) });
    }
    while let Some(result) = set.join_next().await {
        out.push(result.unwrap());
    }
    out.sort_unstable();
    out.into_iter().map(|(_, status)| status).collect()
}

/// Two daemons on one PostgreSQL inbox (one signing, one processing only),
/// each with two processors claiming 4 events at a time, 100 HNV a day per
/// user and `total_per_day`: 30 attendances of one member (25 HNV each) and
/// 60 of 60 others, delivered to both at once, processed and drained.
async fn two_daemons_process_90_attendances(total_per_day: &'static str) -> (TestChain, TestDaemon, TestDaemon) {
    let chain = TestChain::start(Some(1)).await;
    let Prepared { database, key_dir, wallets, .. } = Prepared::new(Backend::Postgres, &chain, 1).await;
    let url = database.url.clone();
    let key_file = key_dir.path().join("master.key");
    let wallet: Address = wallets[0].address.parse().unwrap();
    let rules = move |config: &mut havend::config::Config| {
        config.processor.workers = 2;
        config.processor.batch = 4;
        config.processor.poll_interval_ms = 50;
        config.rewards.limits.per_user_per_day = "100".parse().unwrap();
        config.rewards.limits.total_per_day = total_per_day.parse().unwrap();
    };
    let (signer_chain, signer_key) = (chain_config(&chain, &[wallet]), key_file.clone());
    let mut signer = TestDaemon::start_on(database, |db| db.url.clone(), move |config| {
        config.chain = Some(signer_chain);
        config.custody.master_key_file = Some(signer_key);
        config.daemon_name = "signer".into();
        rules(config);
    })
    .await;
    let other = TestDaemon::start_on(TestDatabase::shared(&url), |db| db.url.clone(), move |config| {
        config.custody.master_key_file = Some(key_file);
        config.daemon_name = "processor-only".into();
        rules(config);
    })
    .await;
    signer.keep.push(key_dir);

    let mut deliveries = Vec::new();
    for i in 0..90 {
        let member = if i < 30 { "busy".to_owned() } else { format!("m{i}") };
        let body = format!(r#"{{"id":"tev_{i}","attendee_id":"{member}","type":"meetup","attended":true}}"#);
        let daemon = if i % 2 == 0 { &signer } else { &other };
        let (client, addr) = (daemon.client.clone(), daemon.addr);
        deliveries.push(async move {
            let mut request = http::Request::post(format!("http://{addr}/webhooks/tribe/event-attendance"));
            for (name, value) in sign(Partner::Tribe, &body, now()) {
                request = request.header(name, value);
            }
            client.request(request.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()).await.map(|r| r.status().as_u16()).unwrap_or(0)
        });
    }
    let statuses = futures_join(deliveries.into_iter()).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(eventually(Duration::from_secs(60), || async { count_status(&signer.db, "processed").await == 90 }).await);
    assert!(drained(&signer, Duration::from_secs(60)).await);
    assert_eq!(transactions::Entity::find().count(&signer.db).await.unwrap(), 90, "one intent per event");
    (chain, signer, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_the_inbox_and_one_users_daily_limit_is_never_exceeded() {
    let (chain, signer, other) = two_daemons_process_90_attendances("1000000").await;
    let busy: Vec<transactions::Model> = transactions::Entity::find()
        .filter(transactions::Column::Source.like("tribe:event-attendance:%:busy"))
        .all(&signer.db)
        .await
        .unwrap();
    assert_eq!(busy.len(), 30, "one intent per event");
    let minted = busy.iter().filter(|t| t.status == "confirmed").count();
    let held = busy.iter().filter(|t| t.status == "held").count();
    assert_eq!((minted, held), (4, 26), "exactly the limit (4 x 25 = 100 HNV) minted, the rest held");
    assert_eq!(chain.total_supply().await, hnv(25) * U256::from(64u64));
    reconcile_clean(&signer.db, &chain).await;
    other.stop().await;
    signer.stop().await;
}

/// The day's total counter, shared by every processor of both daemons,
/// stops at its limit exactly: 64 mints are within the per-user limits and
/// the total lets 40 of them through (1,000 HNV).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_never_pass_the_days_total_limit() {
    let (chain, signer, other) = two_daemons_process_90_attendances("1000").await;
    let all = transactions::Entity::find().all(&signer.db).await.unwrap();
    let confirmed = all.iter().filter(|t| t.status == "confirmed").count();
    assert_eq!(confirmed, 40, "exactly the day's total (40 x 25 = 1,000 HNV) minted");
    assert_eq!(all.iter().filter(|t| t.status == "held").count(), 50);
    let busy = all.iter().filter(|t| t.source.ends_with(":busy") && t.status == "confirmed").count();
    assert!(busy <= 4, "the member's own limit still holds ({busy} minted)");
    let total = entity::mint_counters::Entity::find().filter(entity::mint_counters::Column::Scope.eq("total")).one(&signer.db).await.unwrap().unwrap();
    assert_eq!(total.used, hnv(1_000).to_string(), "the counter holds what was minted");
    assert_eq!(chain.total_supply().await, hnv(25) * U256::from(40u64));
    reconcile_clean(&signer.db, &chain).await;
    other.stop().await;
    signer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_signing_on_every_daemon_while_intake_goes_on() {
    let chain = TestChain::start(Some(1)).await;
    let Prepared { database, key_dir, wallets, .. } = Prepared::new(Backend::Postgres, &chain, 2).await;
    let url = database.url.clone();
    let key_file = key_dir.path().join("master.key");
    let addresses: Vec<Address> = wallets.iter().map(|w| w.address.parse().unwrap()).collect();
    let start = |database: TestDatabase, wallet: Address, name: &str| {
        let (config_chain, key_file, name) = (chain_config(&chain, &[wallet]), key_file.clone(), name.to_owned());
        TestDaemon::start_on(database, |db| db.url.clone(), move |config| {
            config.chain = Some(config_chain);
            config.custody.master_key_file = Some(key_file);
            config.daemon_name = name;
        })
    };
    let mut first = start(database, addresses[0], "first").await;
    let second = start(TestDatabase::shared(&url), addresses[1], "second").await;
    first.keep.push(key_dir);

    havend::ledger::pause::set_paused(&first.db, true, "test").await.unwrap();
    for i in 0..20 {
        let daemon = if i % 2 == 0 { &first } else { &second };
        let body = format!(r#"{{"id":"bk_p{i}","guest_id":"guest_p{i}","total_price":"1","nights":1}}"#);
        assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), &body).await.status, 200, "intake goes on");
    }
    assert!(eventually(Duration::from_secs(20), || async { count_status(&first.db, "processed").await == 20 }).await, "processing goes on");
    let users: Vec<entity::users::Model> = entity::users::Entity::find().all(&first.db).await.unwrap();
    assert!(users.iter().any(|u| u.hot_wallet_id == wallets[0].id) && users.iter().any(|u| u.hot_wallet_id == wallets[1].id), "both wallets have work");
    assert!(wallets_looked(&first).await && wallets_looked(&second).await, "both daemons' wallet actors looked at the queued work");
    assert_eq!(transactions::Entity::find().filter(transactions::Column::Status.ne("queued")).count(&first.db).await.unwrap(), 0, "nothing signed while paused");
    assert_eq!(chain.total_supply().await, U256::ZERO);

    havend::ledger::pause::set_paused(&first.db, false, "test").await.unwrap();
    assert!(drained(&first, Duration::from_secs(60)).await);
    assert_eq!(chain.total_supply().await, hnv(2) * U256::from(20u64));
    reconcile_clean(&first.db, &chain).await;
    second.stop().await;
    first.stop().await;
}

/// The claim is the fence of processing: a processor whose lease lapsed and
/// whose event another processor took over can neither finish it, nor
/// retry it, nor dead-letter it; the holder of the new claim can.
async fn a_lapsed_claim_cannot_write_once_another_processor_holds_the_event(backend: Backend) {
    use havend::rewards::inbox;
    let database = TestDatabase::create(backend).await;
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&database.url));
    let db = havend::db::connect(&config).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let now = chrono::Utc::now();
    let event = havend::intake::NewEvent {
        id: uuid::Uuid::now_v7(),
        partner: Partner::Aurora,
        partner_event_id: "booking-completed:bk_lease".into(),
        event_type: "booking-completed".into(),
        status: "pending",
        last_error: None,
        body: bytes::Bytes::from_static(br#"{"id":"bk_lease"}"#),
        headers: "{}".into(),
        source_ip: None,
        request_id: "test".into(),
        received_at: now,
    };
    havend::intake::store::insert_new(&db, &[&event]).await.unwrap();
    let lease = Duration::from_secs(10);
    let (first, second) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    assert_eq!(inbox::claim(&db, first, lease, 10, now).await.unwrap().len(), 1);
    assert!(inbox::claim(&db, second, lease, 10, now).await.unwrap().is_empty(), "a held claim is skipped");
    let later = now + chrono::Duration::seconds(11);
    assert_eq!(inbox::claim(&db, second, lease, 10, later).await.unwrap().len(), 1, "a lapsed claim is taken over");
    assert!(!inbox::finish(&db, event.id, first, inbox::PROCESSED, None, "late").await.unwrap());
    assert!(!inbox::retry_later(&db, event.id, first, later, true, "late").await.unwrap());
    assert!(!inbox::dead_letter(&db, event.id, first, "late").await.unwrap());
    let row = entity::webhook_events::Entity::find_by_id(event.id).one(&db).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 0), "the lapsed processor changed nothing");
    assert!(inbox::finish(&db, event.id, second, inbox::PROCESSED, None, "holder").await.unwrap());
    db.close().await.ok();
}

crate::on_both_backends!(a_lapsed_claim_cannot_write_once_another_processor_holds_the_event);

/// Two real `havend` processes on one PostgreSQL, each signing for its own
/// hot wallet, process one inbox (batches of 4): both do a real share of the
/// work (each name on at least 10% of the rows), one of them is SIGKILLed
/// mid-run and restarted, and still every event yields one intent, every
/// mint is on chain exactly once from the wallet of the daemon that owns
/// it, one user's daily limit is never exceeded, and `havend reconcile`
/// finds the ledger and the chain equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_havend_processes_share_one_inbox_through_a_sigkill_and_mint_exactly_once() {
    const EVENTS: usize = 400;
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 2).await;
    let names = ["alpha", "beta"];
    let mut dirs = Vec::new();
    let mut ports = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "daemon_name = \"{name}\"\ndata_dir = {data:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = {url:?}\n\
             [custody]\nmaster_key_file = {key:?}\n[processor]\nbatch = 4\npoll_interval_ms = 50\nlease_secs = 3\n\
             [chain]\nrpc_url = {rpc:?}\ntoken = \"{token}\"\nchain_id = {chain_id}\nwallets = [\"{wallet}\"]\npoll_interval_ms = 100\nmax_in_flight = 256\nresend_after_ms = 1500\n",
            data = dir.path().join("data").display().to_string(),
            url = prepared.database.url,
            key = prepared.key_dir.path().join("master.key").display().to_string(),
            rpc = chain.url,
            token = chain.token,
            chain_id = chain.chain_id,
            wallet = prepared.wallets[index].address,
        );
        std::fs::write(dir.path().join("havend.toml"), config).unwrap();
        std::fs::write(dir.path().join("partners.toml"), format!("[partners.tribe]\nsecrets = [{TRIBE_SECRET:?}]\n")).unwrap();
        std::fs::write(dir.path().join("rewards.toml"), "[limits]\nper_user_per_day = \"100\"\n").unwrap();
        dirs.push(dir);
        ports.push(port);
    }
    // Each commit made slower, so the SIGKILL lands while both still have work.
    let spawn = |index: usize| -> Child {
        Command::new(HAVEND)
            .args(["run", "--config"])
            .arg(dirs[index].path())
            .env("FAILPOINTS", "processor::before_commit=sleep(30)")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let db = Database::connect(&prepared.database.url).await.unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    // 40 attendances of one member (25 HNV each against the 100 HNV daily
    // limit: 4 minted, 36 held) and 4 of each of 90 others (exactly at it).
    let deliver = |i: usize| {
        let (client, port) = (client.clone(), ports[i % 2]);
        async move {
            let member = if i < 40 { "busy".to_owned() } else { format!("m{}", i % 90) };
            let body = format!(r#"{{"id":"tev_{i}","attendee_id":"{member}","type":"meetup","attended":true}}"#);
            let mut request = http::Request::post(format!("http://127.0.0.1:{port}/webhooks/tribe/event-attendance"));
            for (name, value) in sign(Partner::Tribe, &body, now()) {
                request = request.header(name, value);
            }
            let response = client.request(request.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()).await;
            response.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    };
    let by = |name: &'static str| {
        let db = db.clone();
        async move { webhook_events::Entity::find().filter(webhook_events::Column::ProcessedBy.eq(name)).count(&db).await.unwrap() }
    };

    let mut children = vec![spawn(0), spawn(1)];
    for port in &ports {
        let url = format!("http://127.0.0.1:{port}/health");
        let client = client.clone();
        let up = eventually(Duration::from_secs(30), || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(url.parse().unwrap()).await.is_ok() }
        })
        .await;
        assert!(up, "both daemons serve");
    }
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(20) {
        let statuses = futures_join(chunk.iter().map(|i| deliver(*i))).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }

    // SIGKILL beta once it has done its share, while the inbox still has work.
    let shared = eventually(Duration::from_secs(60), || async { by("beta").await >= (EVENTS / 10) as u64 }).await;
    let processed_at_kill = count_status(&db, "processed").await;
    children[1].kill().unwrap();
    assert_eq!(children[1].wait().unwrap().signal(), Some(9));
    assert!(shared, "beta processed at least 10% before it was killed");
    assert!(processed_at_kill < EVENTS as u64, "the kill landed mid-run ({processed_at_kill} of {EVENTS} processed)");
    children[1] = spawn(1);

    let all_processed = eventually(Duration::from_secs(120), || async { count_status(&db, "processed").await == EVENTS as u64 }).await;
    let all_final = eventually(Duration::from_secs(120), || async {
        transactions::Entity::find()
            .filter(transactions::Column::Status.is_in(["queued", "signed", "broadcast"]))
            .count(&db)
            .await
            .unwrap()
            == 0
    })
    .await;
    for child in &mut children {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        child.wait().unwrap();
    }
    assert!(all_processed && all_final, "every event processed and every intent final");

    // Both names carry a real share of the rows, and every row has one.
    let (alpha, beta) = (by("alpha").await, by("beta").await);
    eprintln!("two havend processes: alpha processed {alpha}, beta {beta}; beta was killed with {processed_at_kill} of {EVENTS} processed");
    assert!(alpha >= (EVENTS / 10) as u64 && beta >= (EVENTS / 10) as u64, "alpha {alpha}, beta {beta}");
    assert_eq!(alpha + beta, EVENTS as u64, "every processed row names its daemon");

    // One intent per event; the daily limit held: the busy member got 4 mints, no one more than 100 HNV a day.
    let intents = transactions::Entity::find().all(&db).await.unwrap();
    assert_eq!(intents.len(), EVENTS, "one intent per event");
    let mut per_user: std::collections::HashMap<uuid::Uuid, U256> = std::collections::HashMap::new();
    for intent in intents.iter().filter(|t| t.status != "held") {
        *per_user.entry(intent.user_id).or_default() += U256::from_str_radix(&intent.amount, 10).unwrap();
    }
    assert!(per_user.values().all(|total| *total <= hnv(100)), "no user over the daily limit");
    let busy: Vec<&transactions::Model> = intents.iter().filter(|t| t.source.ends_with(":busy")).collect();
    let busy_minted = busy.iter().filter(|t| t.status == "confirmed").count();
    let busy_held = busy.iter().filter(|t| t.status == "held").count();
    assert_eq!((busy_minted, busy_held), (4, 36), "the busy member: exactly the limit minted, the rest held");
    assert!(intents.iter().all(|t| t.status == "confirmed" || t.status == "held"), "nothing failed");

    // Exactly once on chain, each from the wallet its daemon signs for.
    let mut minted = U256::ZERO;
    for intent in intents.iter().filter(|t| t.status == "confirmed") {
        let wallet = prepared.wallets.iter().find(|w| w.id == intent.hot_wallet_id).unwrap();
        let receipt = assert_executed_once(&db, &chain, intent).await;
        assert_eq!(receipt.from, wallet.address.parse::<Address>().unwrap(), "signed by the intent's own hot wallet");
        minted += U256::from_str_radix(&intent.amount, 10).unwrap();
    }
    assert_eq!(minted, hnv(25) * U256::from(364u64));
    assert_eq!(chain.total_supply().await, minted, "totalSupply equals the ledger");
    for (index, name) in names.iter().enumerate() {
        let wallet = &prepared.wallets[index];
        let decrypted_by: std::collections::BTreeSet<String> = entity::wallet_audit_logs::Entity::find()
            .filter(entity::wallet_audit_logs::Column::WalletId.eq(wallet.id))
            .filter(entity::wallet_audit_logs::Column::Action.eq("decrypt"))
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|log| log.actor)
            .collect();
        assert_eq!(decrypted_by, std::collections::BTreeSet::from([name.to_string()]), "wallet {index}'s key was used by its own daemon only");
        let row = entity::wallets::Entity::find_by_id(wallet.id).one(&db).await.unwrap().unwrap();
        assert_eq!(row.owner.as_deref(), Some(*name));
        assert!(intents.iter().any(|t| t.hot_wallet_id == wallet.id && t.status == "confirmed"), "wallet {index} minted some");
    }
    assert!(alerts_of(&db, "wallet_fenced").await == 0, "no wallet was taken over by the other daemon");

    let reconcile = Command::new(HAVEND).args(["reconcile", "--config"]).arg(dirs[0].path()).output().unwrap();
    assert!(reconcile.status.success(), "havend reconcile is clean: {}{}", String::from_utf8_lossy(&reconcile.stdout), String::from_utf8_lossy(&reconcile.stderr));
}

async fn alerts_of(db: &sea_orm::DatabaseConnection, category: &str) -> u64 {
    entity::alerts::Entity::find().filter(entity::alerts::Column::Category.eq(category)).count(db).await.unwrap()
}

/// `processor.enabled = false` makes a daemon that only stores webhooks: on
/// one database with a daemon that processes (both with the master key and
/// an active wallet to use), every event delivered to the intake-only daemon
/// is processed, and all of them by the other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intake_only_daemon_stores_events_and_leaves_every_one_to_the_processing_daemon() {
    let worker = TestDaemon::start_with_active_wallet(Backend::Postgres, |config| {
        config.daemon_name = "worker".into();
    })
    .await;
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("master.key");
    std::fs::write(&key_file, crate::support::chain::TEST_MASTER_KEY).unwrap();
    let url = worker.daemon().config().load().database.url.as_ref().expect("the test database").expose().to_owned();
    let mut front = TestDaemon::start_on(TestDatabase::shared(&url), |db| db.url.clone(), move |config| {
        config.daemon_name = "front".into();
        config.custody.master_key_file = Some(key_file);
        config.processor.enabled = false;
        config.processor.workers = 2;
        config.processor.poll_interval_ms = 20;
    })
    .await;
    front.keep.push(key_dir);
    for i in 0..20 {
        let body = format!(r#"{{"id":"bk_front_{i}","guest_id":"front_{i}","total_price":"10","nights":1}}"#);
        assert_eq!(front.deliver(Partner::Aurora, Some("booking-created"), &body).await.status, 200);
    }
    let done = eventually(Duration::from_secs(30), || async { count_status(&worker.db, "processed").await == 20 }).await;
    assert!(done, "the processing daemon takes every event the intake-only one stored");
    let by: Vec<Option<String>> = webhook_events::Entity::find().all(&worker.db).await.unwrap().into_iter().map(|e| e.processed_by).collect();
    assert!(by.iter().all(|name| name.as_deref() == Some("worker")), "the intake-only daemon processed none: {by:?}");
    front.stop().await;
    worker.stop().await;
}

/// A daemon that cannot process an event (here: a new user, and no master
/// key to create the user's wallet) looks at it less and less often: the
/// transient retries back off from `transient_retry_ms` up to
/// `transient_retry_max_secs` instead of coming back at a fixed pace forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_keeps_failing_transiently_is_retried_less_and_less_often() {
    let daemon = TestDaemon::start_with(Backend::Postgres, |config| {
        config.processor.poll_interval_ms = 20;
        config.processor.transient_retry_ms = 100;
        config.processor.transient_retry_max_secs = 2;
    })
    .await;
    let body = r#"{"id":"bk_backoff","guest_id":"nobody_yet","total_price":"10","nights":1}"#;
    assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), body).await.status, 200);
    // Every retry writes a new next_attempt_at: watch them for a few seconds.
    let mut seen: Vec<chrono::DateTime<chrono::Utc>> = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        let event = daemon.event(Partner::Aurora, "booking-created:bk_backoff").await.expect("stored");
        if let Some(next) = event.next_attempt_at.filter(|_| event.last_error.is_some())
            && seen.last() != Some(&next)
        {
            seen.push(next);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let event = daemon.event(Partner::Aurora, "booking-created:bk_backoff").await.unwrap();
    assert_eq!((event.status.as_str(), event.attempts), ("pending", 0), "transient failures never count");
    assert!(seen.len() >= 4, "the event was retried: {seen:?}");
    // At a fixed 100 ms it would come back some 30 times in 5 s; doubling to 2 s, about 7.
    assert!(seen.len() <= 10, "retried {} times in 5 s: {seen:?}", seen.len());
    let gaps: Vec<i64> = seen.windows(2).map(|w| (w[1] - w[0]).num_milliseconds()).collect();
    assert!(gaps.iter().any(|gap| *gap >= 700), "later retries wait longer: {gaps:?}");
    daemon.stop().await;
}
