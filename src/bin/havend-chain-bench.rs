//! Chain benchmark, all in one run on one anvil (`--block-time 1`):
//! 1. the ceiling: anvil accepting pre-signed transactions from one wallet
//!    as fast as one sender can submit them, in nonce order;
//! 2. a naive sender: send, wait for the receipt, send the next;
//! 3. havend: one wallet actor draining a queue of intents with its window
//!    and batch size (`--max-in-flight`, `--max-batch`): its broadcast rate
//!    and its confirmed rewards per second, then intents arriving at a
//!    steady rate and their intent → `confirmed` latency.

use std::time::{Duration, Instant};

use alloy::node_bindings::Anvil;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder, ext::AnvilApi};
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context;
use clap::Parser;
use havend::chain::{self, CallKind, ChainClient, Fees, TxRequest, admin};
use havend::config::{ChainConfig, Config, Secret};
use havend::custody::{self, MasterKeys};
use havend::ledger::{self, NewIntent};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

/// Measures havend's per-wallet broadcast rate against anvil's ceiling and a naive sender.
#[derive(Debug, Parser)]
#[command(name = "havend-chain-bench")]
struct Args {
    /// Transactions for the ceiling and for havend's burst.
    #[arg(long, default_value_t = 3000)]
    count: usize,
    /// Seconds the naive sender runs.
    #[arg(long, default_value_t = 10)]
    naive_seconds: u64,
    /// Intents per second in the latency phase.
    #[arg(long, default_value_t = 50)]
    latency_rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Database for havend (default: SQLite in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
    /// havend's window per wallet (`chain.max_in_flight`): 16 is what geth
    /// guarantees one sender.
    #[arg(long, default_value_t = 16)]
    max_in_flight: usize,
    /// Rewards per transaction (`chain.max_batch`; 1: one reward per transaction).
    #[arg(long, default_value_t = 100)]
    max_batch: usize,
}

const GAS_LIMIT: u64 = 150_000;
/// Intent numbers of the ceiling and naive runs start here, far above the
/// ones havend's database hands out (from 1): the token would skip havend's
/// intents as already used, and the bench would measure skips.
const OUTSIDE_HAVEND: u64 = 1 << 40;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let anvil_path = chain::anvil::locate().map_err(anyhow::Error::msg)?;
    let anvil = tokio::task::spawn_blocking(move || {
        Anvil::at(anvil_path).port(0u16).block_time(1).args(["--gas-limit", "30000000000"]).try_spawn()
    })
    .await??;
    let url = anvil.endpoint();
    let admin_key = PrivateKeySigner::from(anvil.keys()[0].clone());
    let token = admin::deploy_token(&url, &admin_key).await?;
    let provider = ProviderBuilder::new().connect_http(url.parse()?);
    let client = ChainClient::new(&url, Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
    let chain_id = client.chain_id().await.map_err(anyhow::Error::msg)?;

    // 1. Ceiling.
    let ceiling_key = PrivateKeySigner::random();
    equip(&provider, &url, &admin_key, token, ceiling_key.address()).await?;
    let base_fee = client.base_fee().await.map_err(anyhow::Error::msg)?;
    let fees = Fees { max_fee_per_gas: base_fee * 4 + 1_000_000_000, max_priority_fee_per_gas: 1_000_000_000 };
    let presigned: Vec<Vec<u8>> = (0..args.count)
        .map(|nonce| {
            let request = TxRequest {
                chain_id,
                token,
                nonce: nonce as u64,
                gas_limit: GAS_LIMIT,
                fees,
                input: chain::encode_call(
                    chain::TokenAbi::Batch,
                    CallKind::Mint,
                    &[chain::Entry { transaction_id: uuid::Uuid::new_v4(), seq: OUTSIDE_HAVEND + nonce as u64, account: Address::repeat_byte(1), amount: U256::from(1) }],
                ),
            };
            chain::sign(&ceiling_key, &request).map(|s| s.raw)
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for raw in &presigned {
        client.send_raw(raw).await.map_err(anyhow::Error::msg)?;
    }
    let ceiling = args.count as f64 / started.elapsed().as_secs_f64();
    println!("ceiling:  anvil accepted {} pre-signed txs from one wallet at {ceiling:.0} tx/s", args.count);

    // 2. Naive sender.
    let naive_key = PrivateKeySigner::random();
    equip(&provider, &url, &admin_key, token, naive_key.address()).await?;
    let naive_provider = ProviderBuilder::new().wallet(alloy::network::EthereumWallet::from(naive_key.clone())).connect_http(url.parse()?);
    let naive_token = chain::HavenToken::new(token, &naive_provider);
    let started = Instant::now();
    let mut naive = 0u64;
    while started.elapsed() < Duration::from_secs(args.naive_seconds) {
        // Numbers above the ceiling's, so none is skipped as used.
        let seq = U256::from(OUTSIDE_HAVEND + args.count as u64 + naive);
        naive_token.mintBatch(vec![Address::repeat_byte(2)], vec![U256::from(1)], vec![seq]).send().await?.get_receipt().await?;
        naive += 1;
    }
    let naive_rate = naive as f64 / started.elapsed().as_secs_f64();
    println!("naive:    send, wait for receipt, next: {naive} txs, {naive_rate:.2} tx/s");

    // 3. havend.
    let dir = tempfile::tempdir()?;
    let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    config.database.url = Some(Secret::new(args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()))));
    let key_text = MasterKeys::generate_text(1);
    std::fs::write(dir.path().join("master.key"), &key_text)?;
    config.custody.master_key_file = Some(dir.path().join("master.key"));
    let keys = MasterKeys::parse(&key_text)?;
    let db = havend::db::connect(&config).await?;
    havend::db::migrate_up(&db).await?;
    let hot = custody::create_wallet(&db, &keys, custody::HOT, "bench").await?;
    let hot_address: Address = hot.address.parse()?;
    equip(&provider, &url, &admin_key, token, hot_address).await?;
    let client = havend::chain::ChainClient::new(&url, Duration::from_secs(10)).map_err(anyhow::Error::msg)?;
    havend::wallet::lifecycle::activate_checked(&db, &client, token, U256::ZERO, &hot, "bench").await?;
    let mut chain_config: ChainConfig =
        toml::from_str(&format!("rpc_url = {url:?}\ntoken = \"{token}\"\nchain_id = {chain_id}\npoll_interval_ms = 50\nmax_in_flight = {}\nmax_batch = {}\n", args.max_in_flight, args.max_batch))?;
    chain_config.wallets = vec![hot_address];
    config.chain = Some(chain_config);

    for i in 0..args.count {
        ledger::enqueue(&db, &keys, intent(i % 100, &format!("burst:{i}"))).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let daemon = havend::Daemon::start(config, listener).await?;
    let started = Instant::now();
    let mut first_signed = None;
    loop {
        let sent = count_in(&db, &["broadcast", "confirmed"]).await?;
        if first_signed.is_none() && count_in(&db, &["signed", "broadcast", "confirmed"]).await? > 0 {
            first_signed = Some(started.elapsed());
        }
        if sent as usize >= args.count {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let mut counts = Vec::new();
            for status in ["queued", "signed", "broadcast", "confirmed", "failed"] {
                counts.push(format!("{status} {}", count_in(&db, &[status]).await?));
            }
            anyhow::bail!("burst did not finish: {}", counts.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let broadcast_time = started.elapsed() - first_signed.unwrap_or_default();
    let havend_rate = args.count as f64 / broadcast_time.as_secs_f64();
    println!(
        "havend:   one wallet broadcast {} intents in {:.2} s: {havend_rate:.0} intents/s = {:.0}% of the ceiling's tx/s, {:.0}x the naive sender",
        args.count,
        broadcast_time.as_secs_f64(),
        100.0 * havend_rate / ceiling,
        havend_rate / naive_rate
    );
    while count_in(&db, &["confirmed"]).await? < args.count as u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed() - first_signed.unwrap_or_default();
    println!(
        "havend:   all {} confirmed after {:.2} s: {:.0} rewards/s confirmed per wallet (max_in_flight {}, max_batch {})",
        args.count,
        drained.as_secs_f64(),
        args.count as f64 / drained.as_secs_f64(),
        args.max_in_flight,
        args.max_batch
    );

    // Latency: intents arriving at a steady rate, queued → confirmed.
    let interval = Duration::from_nanos(1_000_000_000 / args.latency_rate.max(1));
    let total = (args.latency_rate * args.latency_seconds) as usize;
    let mut next = Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(next.into()).await;
        ledger::enqueue(&db, &keys, intent(i % 100, &format!("latency:{i}"))).await?;
        daemon.nudge_wallets();
        next += interval;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let latencies = loop {
        let rows = entity::transactions::Entity::find()
            .filter(entity::transactions::Column::Source.starts_with("latency:"))
            .filter(entity::transactions::Column::Status.eq("confirmed"))
            .all(&db)
            .await?;
        if rows.len() == total || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut millis: Vec<i64> = latencies.iter().map(|t| (t.updated_at - t.created_at).num_milliseconds()).collect();
    millis.sort_unstable();
    let pick = |q: f64| millis.get(((millis.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
    println!(
        "latency:  {} intents at {}/s, queued -> confirmed: p50 {} ms, p99 {} ms, max {} ms (block time 1 s, finality depth 1)",
        millis.len(),
        args.latency_rate,
        pick(0.5),
        pick(0.99),
        millis.last().copied().unwrap_or_default()
    );
    let supply = client.total_supply(token).await.map_err(anyhow::Error::msg)?;
    println!("check:    totalSupply {} HNV (havend minted 1 HNV per intent; the ceiling and naive runs 1 base unit each)", chain::format_units(supply));
    daemon.shutdown().await;
    Ok(())
}

fn intent(user: usize, source: &str) -> NewIntent {
    NewIntent {
        user: format!("aurora:bench_{user}"),
        kind: CallKind::Mint,
        amount: U256::from(10u64).pow(U256::from(18)),
        reason: "bench".into(),
        source: source.into(),
        reverses: None,
    }
}

async fn count_in(db: &sea_orm::DatabaseConnection, statuses: &[&str]) -> anyhow::Result<u64> {
    Ok(entity::transactions::Entity::find()
        .filter(entity::transactions::Column::Status.is_in(statuses.iter().copied()))
        .count(db)
        .await?)
}

async fn equip(provider: &impl Provider, url: &str, admin_key: &PrivateKeySigner, token: Address, wallet: Address) -> anyhow::Result<()> {
    provider.anvil_set_balance(wallet, U256::from(10u128.pow(22))).await.context("funding")?;
    admin::grant_roles(url, admin_key, token, wallet).await?;
    Ok(())
}
