//! A test's own anvil with HAVEN deployed, hot wallets created by havend's
//! custody, funded and granted their roles, and a daemon signing for them.

use std::time::Duration;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder, ext::AnvilApi};
use alloy::signers::local::PrivateKeySigner;
use entity::{transactions, wallets};
use havend::chain::{CallKind, ChainClient, admin};
use havend::config::{ChainConfig, Config};
use havend::custody::{self, MasterKeys};
use havend::ledger::{self, NewIntent};
use havend::wallet::lifecycle;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use super::{Backend, TestDaemon, TestDatabase, eventually};

/// `chain.min_balance_wei` of the test config (its default).
pub const MIN_BALANCE_WEI: u128 = 10u128.pow(16);

/// A master key for tests (never used anywhere else).
pub const TEST_MASTER_KEY: &str = "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// An anvil of the test's own with the token deployed.
pub struct TestChain {
    /// Kept so anvil runs as long as the test (dropping it kills anvil).
    _anvil: AnvilInstance,
    pub url: String,
    pub admin: PrivateKeySigner,
    pub token: Address,
    pub chain_id: u64,
}

impl TestChain {
    /// Starts anvil on a free port; `block_time` in seconds (None: automine).
    pub async fn start(block_time: Option<u64>) -> TestChain {
        let anvil = tokio::task::spawn_blocking(move || {
            let mut anvil = Anvil::at(havend::chain::anvil::locate().expect("anvil is installed"))
                .port(0u16)
                .args(["--gas-limit", "3000000000"]);
            if let Some(seconds) = block_time {
                anvil = anvil.block_time(seconds);
            }
            anvil.try_spawn().expect("anvil starts")
        })
        .await
        .unwrap();
        let url = anvil.endpoint();
        let admin = PrivateKeySigner::from(anvil.keys()[0].clone());
        let token = admin::deploy_token(&url, &admin).await.expect("token deploys");
        let chain_id = anvil.chain_id();
        TestChain { _anvil: anvil, url, admin, token, chain_id }
    }

    pub fn client(&self) -> ChainClient {
        ChainClient::new(&self.url, Duration::from_secs(5)).unwrap()
    }

    /// A provider signing as the admin (anvil's first account).
    pub fn admin_provider(&self) -> impl Provider + Clone {
        ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(self.admin.clone()))
            .connect_http(self.url.parse().unwrap())
    }

    /// A transaction havend did not send: 1 wei to itself, signed with `key`, mined.
    pub async fn send_as(&self, key: PrivateKeySigner) {
        let address = key.address();
        let provider = ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(key))
            .connect_http(self.url.parse().unwrap());
        let tx = alloy::rpc::types::TransactionRequest::default().to(address).value(U256::from(1));
        provider.send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    }

    pub async fn total_supply(&self) -> U256 {
        self.client().total_supply(self.token).await.unwrap()
    }

    pub async fn balance_of(&self, account: Address) -> U256 {
        self.client().token_balance(self.token, account).await.unwrap()
    }

    /// Gas money and both roles for a hot wallet.
    pub async fn equip(&self, wallet: Address) {
        self.admin_provider().anvil_set_balance(wallet, U256::from(10u128.pow(21))).await.unwrap();
        admin::grant_roles(&self.url, &self.admin, self.token, wallet).await.unwrap();
    }

    /// `havend wallet activate`: checks roles and gas on this chain, then activates.
    pub async fn activate(&self, db: &sea_orm::DatabaseConnection, wallet: &wallets::Model) -> Result<lifecycle::Activation, lifecycle::LifecycleError> {
        let wallet = custody::find(db, &wallet.address).await.unwrap();
        lifecycle::activate_checked(db, &self.client(), self.token, U256::from(MIN_BALANCE_WEI), &wallet, "test").await
    }
}

/// The `[chain]` config for `chain` and `wallets`, tuned for tests.
pub fn chain_config(chain: &TestChain, wallets: &[Address]) -> ChainConfig {
    let toml = format!(
        "rpc_url = \"{}\"\ntoken = \"{}\"\nchain_id = {}\npoll_interval_ms = 100\nresend_after_ms = 1500\nmax_in_flight = 1024\nrpc_timeout_ms = 2000\n",
        chain.url, chain.token, chain.chain_id
    );
    let mut config: ChainConfig = toml::from_str(&toml).unwrap();
    config.wallets = wallets.to_vec();
    config
}

/// A database with `count` equipped hot wallets and a master key file.
pub struct Prepared {
    pub database: TestDatabase,
    pub keys: MasterKeys,
    pub key_dir: tempfile::TempDir,
    pub wallets: Vec<wallets::Model>,
}

impl Prepared {
    pub async fn new(backend: Backend, chain: &TestChain, count: usize) -> Prepared {
        let database = TestDatabase::create(backend).await;
        let key_dir = tempfile::tempdir().unwrap();
        std::fs::write(key_dir.path().join("master.key"), TEST_MASTER_KEY).unwrap();
        let keys = MasterKeys::parse(TEST_MASTER_KEY).unwrap();
        let mut config = Config::default();
        config.database.url = Some(havend::config::Secret::new(&database.url));
        let db = havend::db::connect(&config).await.unwrap();
        havend::db::migrate_up(&db).await.unwrap();
        let mut wallets = Vec::new();
        for _ in 0..count {
            let wallet = custody::create_wallet(&db, &keys, custody::HOT, "test").await.unwrap();
            chain.equip(wallet.address.parse().unwrap()).await;
            chain.activate(&db, &wallet).await.expect("an equipped wallet activates");
            wallets.push(custody::find(&db, &wallet.address).await.unwrap());
        }
        db.close().await.ok();
        Prepared { database, keys, key_dir, wallets }
    }

    /// Starts a daemon signing for every prepared wallet.
    pub async fn start(self, chain: &TestChain) -> (TestDaemon, MasterKeys, Vec<wallets::Model>) {
        self.start_with(chain, |db| db.url.clone(), |_| {}).await
    }

    /// [`Prepared::start`] with the daemon's database URL from `route` (a
    /// proxy, say) and its `[chain]` config adjusted by `tweak`.
    pub async fn start_with(
        self,
        chain: &TestChain,
        route: impl FnOnce(&TestDatabase) -> String,
        tweak: impl FnOnce(&mut ChainConfig),
    ) -> (TestDaemon, MasterKeys, Vec<wallets::Model>) {
        let Prepared { database, keys, key_dir, wallets } = self;
        let key_file = key_dir.path().join("master.key");
        let addresses: Vec<Address> = wallets.iter().map(|w| w.address.parse().unwrap()).collect();
        let mut chain_config = chain_config(chain, &addresses);
        tweak(&mut chain_config);
        let mut daemon = TestDaemon::start_on(database, route, move |config| {
            config.chain = Some(chain_config);
            config.custody.master_key_file = Some(key_file);
            config.breaker.open_secs = 2;
        })
        .await;
        daemon.keep.push(key_dir);
        (daemon, keys, wallets)
    }
}

/// Queues a mint of `amount` whole HNV for `user`.
pub async fn mint(daemon: &TestDaemon, keys: &MasterKeys, user: &str, amount: u64, source: &str) -> transactions::Model {
    let db = daemon.daemon().db().clone();
    ledger::enqueue(
        &db,
        keys,
        NewIntent {
            user: user.into(),
            kind: CallKind::Mint,
            amount: U256::from(amount) * U256::from(10u64).pow(U256::from(18)),
            reason: "test".into(),
            source: source.into(),
            reverses: None,
        },
    )
    .await
    .unwrap()
}

/// Queues mints `(user, whole HNV, source)` in one commit, so a wallet
/// actor sees them at once and signs them as one batch.
pub async fn mint_together(daemon: &TestDaemon, keys: &MasterKeys, mints: &[(&str, u64, &str)]) -> Vec<transactions::Model> {
    use sea_orm::TransactionTrait;
    let txn = daemon.daemon().db().begin().await.unwrap();
    let mut queued = Vec::new();
    for (user, amount, source) in mints {
        let intent = NewIntent {
            user: (*user).into(),
            kind: CallKind::Mint,
            amount: U256::from(*amount) * U256::from(10u64).pow(U256::from(18)),
            reason: "test".into(),
            source: (*source).into(),
            reverses: None,
        };
        queued.push(ledger::enqueue_in(&txn, keys, intent).await.unwrap());
    }
    txn.commit().await.unwrap();
    queued
}

pub async fn count_with_status(daemon: &TestDaemon, status: &str) -> u64 {
    transactions::Entity::find().filter(transactions::Column::Status.eq(status)).count(&daemon.db).await.unwrap()
}

/// Waits until no intent is queued, signed or broadcast.
pub async fn drained(daemon: &TestDaemon, timeout: Duration) -> bool {
    eventually(timeout, || async {
        daemon.daemon().nudge_wallets();
        transactions::Entity::find()
            .filter(transactions::Column::Status.is_in(["queued", "signed", "broadcast"]))
            .count(&daemon.db)
            .await
            .unwrap()
            == 0
    })
    .await
}

/// Sum of confirmed mints minus confirmed burns, by the ledger.
pub async fn ledger_total(daemon: &TestDaemon) -> U256 {
    let rows = transactions::Entity::find().filter(transactions::Column::Status.eq("confirmed")).all(&daemon.db).await.unwrap();
    rows.iter().fold(U256::ZERO, |sum, t| {
        let amount = U256::from_str_radix(&t.amount, 10).unwrap();
        if t.kind == "burn" { sum - amount } else { sum + amount }
    })
}

/// Invariant 4: every nonce of `wallet` from its first to the chain's is one
/// batch of confirmed/failed intents or one recorded foreign nonce; none
/// both, none skipped.
pub async fn assert_nonces_accounted(daemon: &TestDaemon, chain: &TestChain, wallet: &wallets::Model) {
    let address: Address = wallet.address.parse().unwrap();
    let chain_nonce = chain.client().nonce_at(address, alloy::eips::BlockId::latest()).await.unwrap();
    let mut used: Vec<i64> = transactions::Entity::find()
        .filter(transactions::Column::HotWalletId.eq(wallet.id))
        .filter(transactions::Column::Status.is_in(["confirmed", "failed"]))
        .all(&daemon.db)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|t| t.nonce)
        .collect();
    let foreign = entity::foreign_nonces::Entity::find()
        .filter(entity::foreign_nonces::Column::WalletId.eq(wallet.id))
        .all(&daemon.db)
        .await
        .unwrap();
    // The intents of a batch share its nonce.
    used.sort_unstable();
    used.dedup();
    assert!(foreign.iter().all(|f| used.binary_search(&f.nonce).is_err()), "a nonce both ours and foreign");
    used.extend(foreign.iter().map(|f| f.nonce));
    used.sort_unstable();
    let expected: Vec<i64> = (0..chain_nonce as i64).collect();
    assert_eq!(used, expected, "wallet {} nonces", wallet.address);
    let stored = wallets::Entity::find_by_id(wallet.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(stored.next_nonce as u64, chain_nonce, "stored next_nonce matches the chain");
}

/// Starts another daemon on `database_url` signing for `wallets`.
pub async fn start_daemon_for(database_url: &str, chain: &TestChain, wallets: &[Address], daemon_name: &str) -> TestDaemon {
    let key_dir = tempfile::tempdir().unwrap();
    std::fs::write(key_dir.path().join("master.key"), TEST_MASTER_KEY).unwrap();
    let key_file = key_dir.path().join("master.key");
    let chain_config = chain_config(chain, wallets);
    let name = daemon_name.to_owned();
    let mut daemon = TestDaemon::start_on(TestDatabase::shared(database_url), |db| db.url.clone(), move |config| {
        config.chain = Some(chain_config);
        config.custody.master_key_file = Some(key_file);
        config.breaker.open_secs = 2;
        config.daemon_name = name;
    })
    .await;
    daemon.keep.push(key_dir);
    daemon
}

/// Alerts of `category` raised so far.
pub async fn alerts(daemon: &TestDaemon, category: &str) -> Vec<entity::alerts::Model> {
    entity::alerts::Entity::find().filter(entity::alerts::Column::Category.eq(category)).all(&daemon.db).await.unwrap()
}

/// Proof for a "nothing happened" check: every wallet actor of `daemon` ran
/// a whole tick that began after this call (its tick counter moved on by
/// two), so whatever the test set up before was looked at. Never a sleep.
pub async fn wallets_looked(daemon: &TestDaemon) -> bool {
    let before: std::collections::HashMap<Address, u64> = daemon.daemon().wallet_statuses().await.into_iter().map(|s| (s.address, s.ticks)).collect();
    if before.is_empty() {
        return false;
    }
    daemon.daemon().nudge_wallets();
    eventually(Duration::from_secs(20), || async {
        let now = daemon.daemon().wallet_statuses().await;
        now.len() == before.len() && now.iter().all(|s| before.get(&s.address).is_some_and(|ticks| s.ticks >= ticks + 2))
    })
    .await
}

/// Every attempt that carried `intent` (through `tx_attempt_intents`: a
/// batch's attempts carry all its intents).
pub async fn attempts_of(db: &impl sea_orm::ConnectionTrait, intent: uuid::Uuid) -> Vec<entity::tx_attempts::Model> {
    let links = entity::tx_attempt_intents::Entity::find()
        .filter(entity::tx_attempt_intents::Column::TransactionId.eq(intent))
        .all(db)
        .await
        .unwrap();
    entity::tx_attempts::Entity::find()
        .filter(entity::tx_attempts::Column::Id.is_in(links.into_iter().map(|l| l.attempt_id)))
        .all(db)
        .await
        .unwrap()
}

/// Exactly once on chain: of the attempts that carried `intent`, exactly one
/// was mined, without reverting, and its logs say it executed the intent's
/// number (a double-send would show as a skip of a used number); returns
/// that receipt.
pub async fn assert_executed_once(db: &impl sea_orm::ConnectionTrait, chain: &TestChain, intent: &transactions::Model) -> alloy::rpc::types::TransactionReceipt {
    let client = chain.client();
    let mut mined = Vec::new();
    for attempt in attempts_of(db, intent.id).await {
        if let Some(receipt) = client.receipt(attempt.tx_hash.parse().unwrap()).await.unwrap() {
            mined.push(receipt);
        }
    }
    assert_eq!(mined.len(), 1, "intent {} has exactly one mined attempt", intent.id);
    let receipt = mined.pop().unwrap();
    assert!(receipt.status(), "no attempt reverted");
    let key = alloy::primitives::B256::from(U256::from(intent.seq.expect("numbered") as u64));
    let results = havend::chain::entry_results(chain.token, receipt.logs());
    assert_eq!(results.get(&key), Some(&havend::chain::EntryResult::Executed), "intent {} executed by its mined attempt", intent.id);
    receipt
}

