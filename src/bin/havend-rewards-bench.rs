//! Rewards benchmark (figures, not a test):
//! 1. `backlog`: the processor's inbox → intents rate for a stored backlog of
//!    bookings, for returning users or for new users (each needs a new
//!    custodial key), on the database given (default: SQLite).
//! 2. `latency`: signed webhooks at a steady rate through the real listener,
//!    the processor, the wallet actors and anvil (`--block-time 1`):
//!    webhook → confirmed percentiles, and where the time goes.
//! 3. `sustain`: the same path at rising rates, `--seconds` each (60 by
//!    default), until the backlog (pending events and unconfirmed intents)
//!    grows: the highest rate the daemon keeps up with, and its latency.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::node_bindings::Anvil;
use alloy::primitives::{Address, U256};
use alloy::providers::{ProviderBuilder, ext::AnvilApi};
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use entity::{transactions, tx_attempts, webhook_events};
use havend::chain::{self, admin};
use havend::config::{ChainConfig, Config, PartnerConfig, Secret};
use havend::custody::{self, MasterKeys};
use havend::intake::{Delivery, NewEvent};
use havend::webhooks::{Partner, Scheme};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

/// Measures the rewards engine.
#[derive(Debug, Parser)]
#[command(name = "havend-rewards-bench")]
struct Args {
    /// Database (default: SQLite in a temporary directory).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Keep the default mint limits: every mint then updates the day's
    /// counters as in production (without it they are raised out of reach,
    /// which measures the engine alone and hides the counter rows).
    #[arg(long, global = true)]
    default_limits: bool,
    /// Which measurement.
    #[command(subcommand)]
    phase: Phase,
}

#[derive(Debug, Subcommand)]
enum Phase {
    /// Inbox → intents rate for a stored backlog.
    Backlog {
        /// Events in the backlog.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Every event for a new user (else 1,000 users who exist already).
        #[arg(long)]
        new_users: bool,
        /// Processor actors.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Events per claim.
        #[arg(long, default_value_t = 64)]
        batch: u64,
        /// While the backlog drains, also send signed bookings over this
        /// many connections back to back (closed loop) and report the
        /// intake's and the processors' rates over the same seconds.
        #[arg(long)]
        intake_concurrency: Option<usize>,
        /// Seconds of that intake load.
        #[arg(long, default_value_t = 10)]
        intake_seconds: u64,
    },
    /// Webhook → confirmed latency on anvil.
    Latency {
        /// Bookings per second.
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Seconds of steady load.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Hot wallets.
        #[arg(long, default_value_t = 1)]
        wallets: usize,
    },
    /// The highest sustained webhook → confirmed rate on anvil.
    Sustain {
        /// First rate, bookings per second (doubled each step).
        #[arg(long, default_value_t = 50)]
        start: u64,
        /// Highest rate tried.
        #[arg(long, default_value_t = 6_400)]
        max_rate: u64,
        /// Seconds of steady load per step.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Hot wallets.
        #[arg(long, default_value_t = 4)]
        wallets: usize,
    },
}

const SECRET: &str = "bench-aurora-secret";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    config.database.url = Some(Secret::new(args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()))));
    config.database.max_connections = 32;
    config.partners.insert(Partner::Aurora, PartnerConfig { scheme: Some(Scheme::HavenHmac), secrets: vec![Secret::new(SECRET)], ..PartnerConfig::default() });
    if !args.default_limits {
        config.rewards.limits.per_user_per_day = "1000000000".parse()?;
        config.rewards.limits.total_per_day = "1000000000000".parse()?;
    }
    let key_text = MasterKeys::generate_text(1);
    std::fs::write(dir.path().join("master.key"), &key_text)?;
    config.custody.master_key_file = Some(dir.path().join("master.key"));
    let keys = MasterKeys::parse(&key_text)?;
    let db = havend::db::connect(&config).await?;
    havend::db::migrate_up(&db).await?;
    vacuum_if_autovacuum_is_off(&db).await?;
    match args.phase {
        Phase::Backlog { events, new_users, workers, batch, intake_concurrency, intake_seconds } => {
            let intake = intake_concurrency.map(|concurrency| (concurrency, Duration::from_secs(intake_seconds)));
            backlog(config, db, keys, Backlog { events, new_users, workers, batch, intake }).await
        }
        Phase::Latency { rate, seconds, wallets } => latency(config, db, keys, rate, seconds, wallets).await,
        Phase::Sustain { start, max_rate, seconds, wallets } => sustain(config, db, keys, start, max_rate, seconds, wallets).await,
    }
}

/// The inbox is a queue: every event's row is updated at claim and at
/// finish, and without vacuum its dead versions pile up in the due index
/// until each claim walks past hundreds of thousands of them. A server with
/// `autovacuum = off` (as some test machines run) would measure that, not
/// havend: the bench then vacuums and analyzes the database every 5 s
/// itself, as autovacuum would, and says so. Every table, not only the
/// queues: a table that grew from empty without an analyze keeps the
/// sequential-scan plans its prepared statements were first given (the
/// batch's booking lookup fell from 3,300 to 1,264 events/s over a
/// 60,000-event backlog that way).
async fn vacuum_if_autovacuum_is_off(db: &DatabaseConnection) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let setting = db.query_one_raw(Statement::from_string(DbBackend::Postgres, "SHOW autovacuum")).await?;
    if setting.and_then(|row| row.try_get::<String>("", "autovacuum").ok()).as_deref() != Some("off") {
        return Ok(());
    }
    println!("note:     this server runs with autovacuum = off; the bench vacuums and analyzes the database every 5 s");
    let db = db.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = db.execute_unprepared("VACUUM (ANALYZE)").await;
        }
    });
    Ok(())
}

/// What `backlog` measures.
struct Backlog {
    events: usize,
    new_users: bool,
    workers: usize,
    batch: u64,
    /// Intake load while the backlog drains: connections and how long.
    intake: Option<(usize, Duration)>,
}

async fn backlog(mut config: Config, db: DatabaseConnection, keys: MasterKeys, run: Backlog) -> anyhow::Result<()> {
    let Backlog { events, new_users, workers, batch, intake } = run;
    let hot = custody::create_wallet(&db, &keys, custody::HOT, "bench").await?;
    // No chain in this phase, so nothing to check roles on: the wallet only
    // has to be assignable.
    entity::wallets::Entity::update_many()
        .col_expr(entity::wallets::Column::Status, sea_orm::sea_query::Expr::value(custody::ACTIVE))
        .filter(entity::wallets::Column::Id.eq(hot.id))
        .exec(&db)
        .await?;
    let users = if new_users { events } else { 1_000 };
    if !new_users {
        for user in 0..users {
            havend::ledger::ensure_user(&db, &keys, &format!("aurora:guest_{user}"), &[hot.id]).await?;
        }
    }
    let now = chrono::Utc::now();
    let mut rows = Vec::with_capacity(events);
    for i in 0..events {
        // Through the same schema and constructor as a webhook, so the backlog is what intake stores.
        let body = Bytes::from(format!(r#"{{"id":"bk_{i}","guest_id":"guest_{}","total_price":"120.50","nights":2}}"#, i % users));
        let parsed = havend::webhooks::payload::parse(Partner::Aurora, Some("booking-created"), &body, now)?;
        let delivery = Delivery { headers: "{}".into(), source_ip: None, request_id: "bench".into(), received_at: now };
        rows.push(NewEvent::new(Partner::Aurora, parsed, body, delivery));
    }
    for chunk in rows.chunks(1_000) {
        havend::intake::store::insert_new(&db, &chunk.iter().collect::<Vec<_>>()).await?;
    }
    println!("backlog:  {events} pending bookings for {} {} users", users, if new_users { "new" } else { "returning" });
    config.processor.workers = workers;
    config.processor.batch = batch;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let daemon = havend::Daemon::start(config, listener).await?;
    let mut target = events;
    if let Some((concurrency, seconds)) = intake {
        target += intake_while_draining(&db, addr, concurrency, seconds, users).await?;
    }
    // Counting what is still pending gets cheaper as the backlog drains;
    // counting what was processed read the whole inbox ten times a second,
    // on the cores the processors were measured on.
    while pending_count(&db).await? > 0 {
        if started.elapsed() > Duration::from_secs(1_800) {
            anyhow::bail!("{} of {target} events still pending after 30 minutes", pending_count(&db).await?);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let processed = processed_count(&db).await?;
    anyhow::ensure!(processed as usize == target, "only {processed} of {target} events were processed");
    let intents = transactions::Entity::find().count(&db).await?;
    println!(
        "processor: {target} events -> {intents} intents in {:.2} s = {:.0} events/s ({workers} worker(s), claims of {batch})",
        elapsed.as_secs_f64(),
        target as f64 / elapsed.as_secs_f64()
    );
    // How long each batch's write transaction stayed open (on SQLite, the
    // write lock intake waits for), as the daemon's summary has it.
    for line in havend::telemetry::metrics::render().lines().filter(|line| line.starts_with(havend::rewards::batch::BATCH_WRITE_SECONDS)) {
        println!("  {line}");
    }
    daemon.shutdown().await;
    Ok(())
}

async fn pending_count(db: &DatabaseConnection) -> anyhow::Result<u64> {
    use sea_orm::{ConnectionTrait, Statement};
    // The status as a literal: a parameter's generic plan scans the table.
    let sql = "SELECT COUNT(*) AS pending FROM webhook_events WHERE status = 'pending'";
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await?;
    Ok(row.map(|row| row.try_get::<i64>("", "pending")).transpose()?.unwrap_or_default() as u64)
}

async fn processed_count(db: &DatabaseConnection) -> anyhow::Result<u64> {
    Ok(webhook_events::Entity::find().filter(webhook_events::Column::Status.eq("processed")).count(db).await?)
}

/// Sends signed bookings (for the backlog's `users`) over `concurrency`
/// connections back to back for `seconds` while the processors drain, and
/// prints both rates over that window; returns how many were stored.
async fn intake_while_draining(db: &DatabaseConnection, addr: std::net::SocketAddr, concurrency: usize, seconds: Duration, users: usize) -> anyhow::Result<usize> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let before = processed_count(db).await?;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..concurrency {
        let client = client.clone();
        senders.spawn(async move {
            let (mut latencies_ms, mut refused) = (Vec::new(), 0usize);
            let mut i = 0usize;
            while started.elapsed() < seconds {
                let body = format!(r#"{{"id":"live_{sender}_{i}","guest_id":"guest_{}","total_price":"120.50","nights":2}}"#, (sender + i) % users);
                i += 1;
                let headers = Scheme::HavenHmac.sign(Partner::Aurora, &Secret::new(SECRET), body.as_bytes(), chrono::Utc::now().timestamp(), "").map_err(anyhow::Error::msg)?;
                let mut request = http::Request::post(format!("http://{addr}/webhooks/aurora/booking-created"));
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let request = request.body(http_body_util::Full::new(Bytes::from(body)))?;
                let sent = Instant::now();
                match client.request(request).await {
                    Ok(response) if response.status() == http::StatusCode::OK => latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0),
                    _ => refused += 1,
                }
            }
            anyhow::Ok((latencies_ms, refused))
        });
    }
    let (mut latencies_ms, mut refused) = (Vec::new(), 0);
    while let Some(sender) = senders.join_next().await {
        let (latencies, not_acknowledged) = sender??;
        latencies_ms.extend(latencies);
        refused += not_acknowledged;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let processed = processed_count(db).await? - before;
    let stored = latencies_ms.len();
    let (p50, p99) = percentiles(&mut latencies_ms);
    println!(
        "intake:   {stored} bookings acknowledged in {elapsed:.1} s = {:.0}/s (p50 {p50:.2} ms, p99 {p99:.2} ms, {refused} not acknowledged) over {concurrency} connections",
        stored as f64 / elapsed
    );
    println!("  while the processors settled {processed} events = {:.0}/s", processed as f64 / elapsed);
    Ok(stored)
}

/// A daemon on a fresh anvil (`--block-time 1`) with `wallets` funded,
/// active hot wallets.
struct OnChain {
    daemon: havend::Daemon,
    addr: std::net::SocketAddr,
    _anvil: alloy::node_bindings::AnvilInstance,
}

async fn on_chain(mut config: Config, db: &DatabaseConnection, keys: &MasterKeys, wallets: usize) -> anyhow::Result<OnChain> {
    let anvil_path = chain::anvil::locate().map_err(anyhow::Error::msg)?;
    let anvil = tokio::task::spawn_blocking(move || Anvil::at(anvil_path).port(0u16).block_time(1).args(["--gas-limit", "30000000000"]).try_spawn()).await??;
    let url = anvil.endpoint();
    let admin_key = PrivateKeySigner::from(anvil.keys()[0].clone());
    let token = admin::deploy_token(&url, &admin_key).await?;
    let provider = ProviderBuilder::new().connect_http(url.parse()?);
    let mut addresses = Vec::new();
    for _ in 0..wallets {
        let hot = custody::create_wallet(db, keys, custody::HOT, "bench").await?;
        let address: Address = hot.address.parse()?;
        provider.anvil_set_balance(address, U256::from(10u128.pow(22))).await.context("funding")?;
        admin::grant_roles(&url, &admin_key, token, address).await?;
        let client = chain::ChainClient::new(&url, Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
        havend::wallet::lifecycle::activate_checked(db, &client, token, U256::from(1u64), &hot, "bench").await?;
        addresses.push(address);
    }
    let mut chain_config: ChainConfig = toml::from_str(&format!("rpc_url = {url:?}\ntoken = \"{token}\"\nchain_id = {}\npoll_interval_ms = 50\nmax_in_flight = 1024\n", anvil.chain_id()))?;
    chain_config.wallets = addresses;
    config.chain = Some(chain_config);
    config.processor.poll_interval_ms = 50;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let daemon = havend::Daemon::start(config, listener).await?;
    Ok(OnChain { daemon, addr, _anvil: anvil })
}

/// Sends `rate` signed bookings a second for `seconds` (ids from `first`);
/// returns when each acknowledged one was sent, by intent source, and how
/// many were not acknowledged (refused, or the connection failed).
async fn drive(addr: std::net::SocketAddr, rate: u64, seconds: u64, first: usize) -> anyhow::Result<(HashMap<String, chrono::DateTime<chrono::Utc>>, usize)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let total = (rate * seconds) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut sent_at = HashMap::with_capacity(total);
    let mut next = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in first..first + total {
        tokio::time::sleep_until(next.into()).await;
        let body = format!(r#"{{"id":"lat_{i}","guest_id":"guest_{}","total_price":"10","nights":1}}"#, i % 500);
        let headers = Scheme::HavenHmac.sign(Partner::Aurora, &Secret::new(SECRET), body.as_bytes(), chrono::Utc::now().timestamp(), "").map_err(anyhow::Error::msg)?;
        let mut request = http::Request::post(format!("http://{addr}/webhooks/aurora/booking-created"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let source = format!("aurora:booking-created:lat_{i}");
        sent_at.insert(source.clone(), chrono::Utc::now());
        let client = client.clone();
        let request = request.body(http_body_util::Full::new(Bytes::from(body)))?;
        requests.spawn(async move { (source, client.request(request).await.map(|r| r.status().as_u16()).unwrap_or(0)) });
        next += interval;
    }
    let mut refused = 0;
    while let Some(answer) = requests.join_next().await {
        let (source, status) = answer?;
        if status != 200 {
            sent_at.remove(&source);
            refused += 1;
        }
    }
    Ok((sent_at, refused))
}

/// Waits up to `patience` for every booking of `sent_at` to be confirmed;
/// returns how many were, and webhook → confirmed p50/p99 in ms.
async fn confirmed_latency(db: &DatabaseConnection, sent_at: &HashMap<String, chrono::DateTime<chrono::Utc>>, patience: Duration) -> anyhow::Result<(usize, f64, f64)> {
    let deadline = Instant::now() + patience;
    let sources: Vec<String> = sent_at.keys().cloned().collect();
    loop {
        let mut rows = Vec::new();
        for chunk in sources.chunks(5_000) {
            rows.extend(transactions::Entity::find().filter(transactions::Column::Status.eq("confirmed")).filter(transactions::Column::Source.is_in(chunk.iter().cloned())).all(db).await?);
        }
        if rows.len() >= sent_at.len() || Instant::now() > deadline {
            let mut ms: Vec<f64> = rows.iter().filter_map(|intent| sent_at.get(&intent.source).map(|sent| (intent.updated_at - *sent).num_microseconds().unwrap_or_default() as f64 / 1000.0)).collect();
            let (p50, p99) = percentiles(&mut ms);
            return Ok((rows.len(), p50, p99));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let pick = |q: f64| values.get(((values.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
    (pick(0.5), pick(0.99))
}

/// Events not yet processed plus intents not yet confirmed (or given up).
async fn backlog_now(db: &DatabaseConnection) -> anyhow::Result<u64> {
    let pending = webhook_events::Entity::find().filter(webhook_events::Column::Status.eq("pending")).count(db).await?;
    let open = transactions::Entity::find().filter(transactions::Column::Status.is_in(["queued", "signed", "broadcast"])).count(db).await?;
    Ok(pending + open)
}

async fn sustain(config: Config, db: DatabaseConnection, keys: MasterKeys, start: u64, max_rate: u64, seconds: u64, wallets: usize) -> anyhow::Result<()> {
    let chain = on_chain(config, &db, &keys, wallets).await?;
    let (mut rate, mut first, mut best) = (start.max(1), 0usize, None);
    while rate <= max_rate {
        // The backlog once a second while the load runs.
        let sampler = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                for _ in 0..seconds {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    samples.push(backlog_now(&db).await.unwrap_or_default());
                }
                samples
            })
        };
        let (sent_at, refused) = drive(chain.addr, rate, seconds, first).await?;
        first += (rate * seconds) as usize;
        let samples = sampler.await?;
        // Growing: the last quarter's mean backlog passes the second
        // quarter's by more than a second of load (one block's worth of
        // unconfirmed intents is the floor at any rate).
        let mean = |part: &[u64]| part.iter().sum::<u64>() as f64 / part.len().max(1) as f64;
        let quarter = samples.len() / 4;
        let (early, late) = (mean(&samples[quarter..2 * quarter]), mean(&samples[samples.len() - quarter..]));
        let growing = late > early + rate as f64;
        let (confirmed, p50, p99) = confirmed_latency(&db, &sent_at, Duration::from_secs(180)).await?;
        println!(
            "sustain:  {rate:>5}/s for {seconds} s over {wallets} wallet(s): backlog {early:.0} -> {late:.0} ({}), {refused} not acknowledged, {confirmed} of {} confirmed, webhook -> confirmed p50 {p50:.0} ms, p99 {p99:.0} ms",
            if growing { "growing" } else { "steady" },
            sent_at.len()
        );
        if growing || refused > 0 || confirmed < sent_at.len() {
            break;
        }
        best = Some((rate, p50, p99));
        rate *= 2;
    }
    match best {
        Some((rate, p50, p99)) => println!("sustained: {rate}/s (p50 {p50:.0} ms, p99 {p99:.0} ms); the next step did not keep up"),
        None => println!("sustained: not even {start}/s"),
    }
    chain.daemon.shutdown().await;
    Ok(())
}

async fn latency(config: Config, db: DatabaseConnection, keys: MasterKeys, rate: u64, seconds: u64, wallets: usize) -> anyhow::Result<()> {
    let chain = on_chain(config, &db, &keys, wallets).await?;
    let (sent_at, refused) = drive(chain.addr, rate, seconds, 0).await?;
    anyhow::ensure!(refused == 0, "{refused} webhooks were not acknowledged");
    let total = sent_at.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    let confirmed = loop {
        let rows = transactions::Entity::find().filter(transactions::Column::Status.eq("confirmed")).all(&db).await?;
        if rows.len() >= total || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let events: HashMap<uuid::Uuid, webhook_events::Model> = webhook_events::Entity::find().all(&db).await?.into_iter().map(|e| (e.id, e)).collect();
    let first_attempts: HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>> = {
        let mut map = HashMap::new();
        for attempt in tx_attempts::Entity::find().all(&db).await? {
            let entry = map.entry(attempt.transaction_id).or_insert(attempt.created_at);
            *entry = (*entry).min(attempt.created_at);
        }
        map
    };
    let (mut total_ms, mut intake, mut processing, mut signing, mut mining) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for intent in &confirmed {
        let (Some(sent), Some(event), Some(signed)) =
            (sent_at.get(&intent.source), intent.event_id.and_then(|id| events.get(&id)), first_attempts.get(&intent.id))
        else {
            continue;
        };
        let ms = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| (to - from).num_microseconds().unwrap_or_default() as f64 / 1000.0;
        total_ms.push(ms(*sent, intent.updated_at));
        intake.push(ms(*sent, event.received_at));
        processing.push(ms(event.received_at, intent.created_at));
        signing.push(ms(intent.created_at, *signed));
        mining.push(ms(*signed, intent.updated_at));
    }
    let (p50, p99) = percentiles(&mut total_ms);
    println!("latency:  {} of {total} bookings at {rate}/s over {wallets} wallet(s), webhook -> confirmed: p50 {p50:.0} ms, p99 {p99:.0} ms (block time 1 s)", total_ms.len());
    let mean = |values: &Vec<f64>| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let whole = mean(&intake) + mean(&processing) + mean(&signing) + mean(&mining);
    for (name, values) in [("intake", &mut intake), ("processing", &mut processing), ("signing", &mut signing), ("mining+confirm", &mut mining)] {
        let share = 100.0 * mean(values) / whole.max(f64::EPSILON);
        let (p50, p99) = percentiles(values);
        println!("  {name:<15} p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  ({share:.0}% of the mean)");
    }
    chain.daemon.shutdown().await;
    Ok(())
}
