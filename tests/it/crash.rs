//! The real binary killed while it signs and broadcasts, then restarted:
//! every intent is minted exactly once. Failpoints abort the process (as
//! SIGKILL would: no destructors, no flush) at exact points; a plain SIGKILL
//! at an arbitrary moment covers the rest.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::primitives::U256;
use entity::transactions;
use havend::chain::CallKind;
use havend::ledger::{self, NewIntent};
use sea_orm::{ColumnTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

use crate::support::chain::*;
use crate::support::*;

const HAVEND: &str = env!("CARGO_BIN_EXE_havend");

struct Setup {
    chain: TestChain,
    prepared: Prepared,
    config_dir: tempfile::TempDir,
    db: DatabaseConnection,
}

async fn setup(backend: Backend) -> Setup {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(backend, &chain, 1).await;
    let config_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let wallet = &prepared.wallets[0].address;
    // Batches of 50: a round of 120 intents is three transactions to crash between.
    let config = format!(
        "data_dir = {data:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = {url:?}\n[custody]\nmaster_key_file = {key:?}\n\
         [chain]\nrpc_url = {rpc:?}\ntoken = \"{token}\"\nchain_id = {chain_id}\nwallets = [\"{wallet}\"]\npoll_interval_ms = 100\nmax_in_flight = 256\nresend_after_ms = 1500\n\
         max_batch = 50\n",
        data = config_dir.path().join("data").display().to_string(),
        url = prepared.database.url,
        key = prepared.key_dir.path().join("master.key").display().to_string(),
        rpc = chain.url,
        token = chain.token,
        chain_id = chain.chain_id,
    );
    std::fs::write(config_dir.path().join("havend.toml"), config).unwrap();
    let db = Database::connect(&prepared.database.url).await.unwrap();
    Setup { chain, prepared, config_dir, db }
}

impl Setup {
    fn spawn(&self, failpoint: Option<&str>) -> Child {
        let mut command = Command::new(HAVEND);
        // The log of every run, appended, so a failed round can show what the daemon did.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        command.args(["run", "--config"]).arg(self.config_dir.path()).stdout(Stdio::null()).stderr(log);
        if let Some(failpoint) = failpoint {
            command.env("FAILPOINTS", failpoint);
        }
        command.spawn().unwrap()
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.config_dir.path().join("havend.log")
    }

    /// The last lines the daemons logged.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn enqueue(&self, batch: &str, count: usize) {
        for i in 0..count {
            let intent = NewIntent {
                user: format!("aurora:crash_{}", i % 25),
                kind: CallKind::Mint,
                amount: U256::from(1 + i as u64 % 5) * U256::from(10u64).pow(U256::from(18)),
                reason: "crash test".into(),
                source: format!("crash:{batch}:{i}"),
                reverses: None,
            };
            ledger::enqueue(&self.db, &self.prepared.keys, intent).await.unwrap();
        }
    }

    async fn unfinished(&self) -> u64 {
        transactions::Entity::find()
            .filter(transactions::Column::Status.is_in(["queued", "signed", "broadcast"]))
            .count(&self.db)
            .await
            .unwrap()
    }

    /// Every intent confirmed, each by exactly one mined attempt, nothing
    /// reverted, supply equal to the ledger, every nonce accounted for.
    async fn assert_exactly_once(&self) {
        let intents = transactions::Entity::find().all(&self.db).await.unwrap();
        assert!(intents.iter().all(|t| t.status == "confirmed"), "all confirmed");
        let client = self.chain.client();
        let mut total = U256::ZERO;
        for intent in &intents {
            assert_executed_once(&self.db, &self.chain, intent).await;
            total += U256::from_str_radix(&intent.amount, 10).unwrap();
        }
        assert_eq!(self.chain.total_supply().await, total, "totalSupply equals the ledger");
        // And each user holds exactly what the ledger confirmed for them.
        let users = entity::users::Entity::find().all(&self.db).await.unwrap();
        assert_eq!(users.len(), 25, "one custodial address per user");
        for user in &users {
            let owed = intents
                .iter()
                .filter(|t| t.user_id == user.id)
                .fold(U256::ZERO, |sum, t| sum + U256::from_str_radix(&t.amount, 10).unwrap());
            assert_eq!(self.chain.balance_of(user.address.parse().unwrap()).await, owed, "balanceOf({}) equals its confirmed mints", user.external_ref);
        }
        let report = havend::ledger::reconcile::reconcile(&self.db, &client, self.chain.token).await.unwrap();
        assert!(report.differences.is_empty() && report.ledger_total == report.total_supply, "reconcile is clean: {report:?}");
        let nonce = client.nonce_at(self.prepared.wallets[0].address.parse().unwrap(), alloy::eips::BlockId::latest()).await.unwrap();
        // A batch's intents share its nonce.
        let nonces: std::collections::BTreeSet<i64> = intents.iter().filter_map(|t| t.nonce).collect();
        assert_eq!(nonces.into_iter().collect::<Vec<_>>(), (0..nonce as i64).collect::<Vec<_>>(), "every nonce used, none skipped");
    }
}

async fn wait_for_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "havend did not exit in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn finish_and_stop(setup: &Setup) {
    let mut child = setup.spawn(None);
    let done = eventually(Duration::from_secs(90), || async { setup.unfinished().await == 0 }).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = wait_for_exit(&mut child, Duration::from_secs(30)).await;
    assert!(done, "the restarted daemon finishes every intent");
    assert!(status.success(), "SIGTERM exits cleanly: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_each_broadcast_step_then_restart_mints_every_intent_exactly_once() {
    crash_at_each_broadcast_step_then_restart(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_on_sqlite_at_each_broadcast_step_then_restart_mints_every_intent_exactly_once() {
    crash_at_each_broadcast_step_then_restart(Backend::Sqlite).await;
}

async fn crash_at_each_broadcast_step_then_restart(backend: Backend) {
    let setup = setup(backend).await;
    for (round, failpoint) in [
        "wallet::after_write_ahead=return",
        "wallet::after_broadcast=return",
        "wallet::mid_broadcast=1*off->return",
    ]
    .into_iter()
    .enumerate()
    {
        setup.enqueue(&format!("r{round}"), 120).await;
        let mut child = setup.spawn(Some(failpoint));
        let status = wait_for_exit(&mut child, Duration::from_secs(60)).await;
        assert_eq!(status.signal(), Some(6), "{failpoint}: the failpoint aborted the process ({status:?})");
    }
    finish_and_stop(&setup).await;
    setup.assert_exactly_once().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_broadcasting_then_restart_mints_every_intent_exactly_once() {
    sigkill_while_broadcasting_then_restart(Backend::Postgres).await;
}

/// The same on the embedded SQLite, the default a fresh install runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_sqlite_while_broadcasting_then_restart_mints_every_intent_exactly_once() {
    sigkill_while_broadcasting_then_restart(Backend::Sqlite).await;
}

async fn sigkill_while_broadcasting_then_restart(backend: Backend) {
    let setup = setup(backend).await;
    for round in 0..3 {
        setup.enqueue(&format!("k{round}"), 300).await;
        let mut child = setup.spawn(None);
        // Generous: a debug binary starting under the whole suite's load on two cores.
        let busy = eventually(Duration::from_secs(60), || async {
            transactions::Entity::find()
                .filter(transactions::Column::Status.is_in(["signed", "broadcast"]))
                .count(&setup.db)
                .await
                .unwrap()
                > 0
        })
        .await;
        assert!(busy, "round {round}: the daemon started signing; its log ends:\n{}", setup.log_tail());
        let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
        let status = wait_for_exit(&mut child, Duration::from_secs(10)).await;
        assert_eq!(status.signal(), Some(9));
    }
    finish_and_stop(&setup).await;
    setup.assert_exactly_once().await;
}
