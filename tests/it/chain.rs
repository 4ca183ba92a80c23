//! The chain pipeline on a real anvil: exactly-once minting, nonces, fencing,
//! outages, replacements and custody.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use entity::users;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::support::chain::*;
use crate::support::gate::Gate;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_mints_over_two_wallets_all_confirm_and_match_the_ledger() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 2).await;
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    for i in 0..1000 {
        mint(&daemon, &keys, &format!("aurora:guest_{}", i % 50), 1 + (i % 7), &format!("test:{i}")).await;
    }
    daemon.daemon().nudge_wallets();
    assert!(drained(&daemon, Duration::from_secs(120)).await, "every intent reaches a final state");
    assert_eq!(count_with_status(&daemon, "confirmed").await, 1000);
    assert_eq!(chain.total_supply().await, ledger_total(&daemon).await);
    for user in users::Entity::find().all(&daemon.db).await.unwrap() {
        let on_chain = chain.balance_of(user.address.parse::<Address>().unwrap()).await;
        assert_eq!(on_chain, havend::ledger::ledger_balance(&daemon.db, user.id).await.unwrap(), "{}", user.external_ref);
    }
    for wallet in &wallets {
        assert_nonces_accounted(&daemon, &chain, wallet).await;
    }
    let statuses = daemon.daemon().wallet_statuses().await;
    assert_eq!(statuses.len(), 2);
    assert!(statuses.iter().all(|s| s.next_nonce > 0 && s.halted.is_none()), "{statuses:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_daemon_for_the_same_wallet_fences_the_first_and_nothing_mints_twice() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let url = prepared.database.url.clone();
    let (first, keys, wallets) = prepared.start(&chain).await;
    for i in 0..50 {
        mint(&first, &keys, &format!("tribe:member_{i}"), 3, &format!("fence:a:{i}")).await;
    }
    first.daemon().nudge_wallets();
    let second = start_daemon_for(&url, &chain, &[wallets[0].address.parse().unwrap()], "havend-b").await;
    for i in 0..50 {
        mint(&second, &keys, &format!("tribe:member_{i}"), 2, &format!("fence:b:{i}")).await;
    }
    assert!(drained(&second, Duration::from_secs(60)).await);
    assert!(
        eventually(Duration::from_secs(10), || async { !alerts(&first, "wallet_fenced").await.is_empty() }).await,
        "the fenced daemon raises an alert"
    );
    assert!(first.daemon().wallet_statuses().await.is_empty(), "the fenced wallet actor stopped");
    assert_eq!(count_with_status(&second, "confirmed").await, 100);
    assert_eq!(chain.total_supply().await, ledger_total(&second).await, "nothing minted twice");
    assert_nonces_accounted(&second, &chain, &wallets[0]).await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_transaction_on_the_hot_wallet_raises_critical_and_the_intent_still_mints_once() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    mint(&daemon, &keys, "aurora:guest_a", 10, "foreign:1").await;
    assert!(drained(&daemon, Duration::from_secs(30)).await);

    // Someone else with the key uses the wallet's next nonce.
    let key = havend::custody::export(&daemon.db, &keys, &wallets[0], "test").await.unwrap();
    chain.send_as(key.parse().unwrap()).await;

    // A batch of three whose nonce someone else takes.
    let batch = mint_together(&daemon, &keys, &[("aurora:guest_a", 3, "foreign:2"), ("aurora:guest_b", 1, "foreign:3"), ("aurora:guest_c", 1, "foreign:4")]).await;
    let second = batch[0].clone();
    daemon.daemon().nudge_wallets();
    // Its nonce was taken: two looks a block apart, then CRITICAL, requeued as the next generation, signing stopped.
    assert!(
        eventually(Duration::from_secs(30), || async {
            daemon.daemon().wallet_statuses().await.iter().any(|s| s.halted.is_some())
        })
        .await,
        "a foreign nonce at run time stops signing"
    );
    let critical = alerts(&daemon, "foreign_nonce").await;
    assert!(critical.iter().any(|a| a.severity == "CRITICAL"), "{critical:?}");
    for intent in &batch {
        let stored = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
        assert_eq!((stored.status.as_str(), stored.nonce, stored.generation), ("queued", None, 1), "the whole batch requeued as its next generation");
    }
    assert!(wallets_looked(&daemon).await);
    assert_eq!(status_of(&daemon, second.id).await, "queued", "nothing is signed while halted");

    // An operator looked and resumes the wallet.
    let wallet = havend::custody::find(&daemon.db, &wallets[0].address).await.unwrap();
    assert!(wallet.halted.is_some(), "the halt is stored, so a restart keeps it");
    havend::wallet::lifecycle::resume(&daemon.db, &wallet, "test").await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(60)).await);
    for intent in &batch {
        let stored = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
        assert_eq!((stored.status.as_str(), stored.nonce), ("confirmed", Some(2)), "re-signed together under the next nonce");
    }
    assert_eq!(chain.total_supply().await, U256::from(15u64) * U256::from(10u64).pow(U256::from(18)));
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_with_intent_already_used_is_recorded_confirmed_by_the_transaction_that_executed_it() {
    use sea_orm::ActiveModelTrait;
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    let intent = mint(&daemon, &keys, "aurora:guest_used", 7, "used:1").await;
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let first = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
    // As if its receipt had been missed and its nonce wrongly declared foreign: queued again as the next generation.
    let nonce = first.nonce.unwrap();
    let mut row: entity::transactions::ActiveModel = first.clone().into();
    row.status = sea_orm::Set("queued".into());
    row.nonce = sea_orm::Set(None);
    row.generation = sea_orm::Set(1);
    row.tx_hash = sea_orm::Set(None);
    row.update(&daemon.db).await.unwrap();
    entity::foreign_nonces::ActiveModel {
        wallet_id: sea_orm::Set(wallets[0].id),
        nonce: sea_orm::Set(nonce),
        detected_at: sea_orm::Set(chrono::Utc::now()),
    }
    .insert(&daemon.db)
    .await
    .unwrap();
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let second = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
    assert_ne!(second.nonce, first.nonce, "signed again under a new nonce, and reverted on chain");
    assert_eq!(second.status, "confirmed", "never `failed`: the intent was executed");
    assert_eq!(second.tx_hash, first.tx_hash, "recorded as confirmed by the transaction that executed it");
    assert!(alerts(&daemon, "transaction_failed").await.is_empty());
    assert_eq!(chain.total_supply().await, U256::from(7u64) * U256::from(10u64).pow(U256::from(18)));
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_nonce_mismatch_under_a_held_epoch_is_a_stale_state_not_a_takeover() {
    use havend::wallet::store::{self, Allowed, StoreError};
    let database = TestDatabase::create(Backend::Sqlite).await;
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&database.url));
    let db = havend::db::connect(&config).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let wallet = havend::custody::create_wallet(&db, &keys, havend::custody::HOT, "test").await.unwrap();
    let (epoch, _) = store::claim(&db, wallet.id, "test").await.unwrap();
    let txn = havend::db::begin_write(&db).await.unwrap();
    let stale = store::fence(&txn, wallet.id, epoch, 5, 5, Allowed::Bookkeeping).await;
    assert!(matches!(stale, Err(StoreError::Stale { stored: 0, expected: 5 })), "{stale:?}");
    let fenced = store::fence(&txn, wallet.id, epoch - 1, 0, 0, Allowed::Bookkeeping).await;
    assert!(matches!(fenced, Err(StoreError::Fenced)), "{fenced:?}");
    store::fence(&txn, wallet.id, epoch, 0, 0, Allowed::Bookkeeping).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_moves_queued_work_and_users_at_once_while_signed_work_finishes_with_a_replacement() {
    use alloy::providers::ext::AnvilApi;
    use havend::wallet::lifecycle::{self, LifecycleError};
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 2).await;
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    let (revoked, other) = (&wallets[0], &wallets[1]);
    let admin = chain.admin_provider();
    admin.anvil_set_auto_mine(false).await.unwrap();
    // The user was assigned the wallet about to be revoked; its mint is signed and pending.
    let user = havend::ledger::ensure_user(&daemon.db, &keys, "aurora:guest_rv", &[revoked.id]).await.unwrap();
    let minted = mint(&daemon, &keys, "aurora:guest_rv", 50, "rv:mint").await;
    daemon.daemon().nudge_wallets();
    assert!(eventually(Duration::from_secs(10), || async { status_of(&daemon, minted.id).await == "broadcast" }).await);
    // Its reversal is queued on the same wallet, waiting for the mint.
    let reversal = havend::ledger::enqueue(
        &daemon.db,
        &keys,
        havend::ledger::NewIntent {
            user: "aurora:guest_rv".into(),
            kind: havend::chain::CallKind::Burn,
            amount: U256::from(50u64) * U256::from(10u64).pow(U256::from(18)),
            reason: "test".into(),
            source: "rv:burn".into(),
            reverses: Some(minted.id),
        },
    )
    .await
    .unwrap();
    assert_eq!(reversal.hot_wallet_id, revoked.id);

    let revocation = lifecycle::revoke(&daemon.db, revoked, "test").await.unwrap();
    assert_eq!((revocation.moved_to.as_deref(), revocation.moved_intents, revocation.moved_users), (Some(other.address.as_str()), 1, 1));
    let moved = entity::transactions::Entity::find_by_id(reversal.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(moved.hot_wallet_id, other.id, "queued work moves at once");
    let later = mint(&daemon, &keys, "aurora:guest_rv", 5, "rv:later").await;
    assert_eq!(later.hot_wallet_id, other.id, "the user follows");
    assert!(matches!(lifecycle::revoke(&daemon.db, revoked, "test").await, Err(LifecycleError::WrongStatus { .. })));
    assert!(matches!(chain.activate(&daemon.db, revoked).await, Err(LifecycleError::WrongStatus { .. })), "a revoked wallet is never resurrected");

    // The signed mint gets stuck under the base fee: the revoked wallet may still replace it at its nonce.
    let pending = entity::tx_attempts::Entity::find()
        .filter(entity::tx_attempts::Column::TransactionId.eq(minted.id))
        .one(&daemon.db)
        .await
        .unwrap()
        .unwrap();
    let cap: u128 = pending.max_fee_per_gas.parse().unwrap();
    admin.anvil_set_next_block_base_fee_per_gas(cap * 3).await.unwrap();
    admin.evm_mine(None).await.unwrap();
    admin.anvil_set_auto_mine(true).await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(60)).await, "signed work finishes, moved work is done by the other wallet");
    let rows = entity::transactions::Entity::find().all(&daemon.db).await.unwrap();
    let by_id = |id| rows.iter().find(|t| t.id == id).unwrap();
    assert_eq!((by_id(minted.id).status.as_str(), by_id(minted.id).hot_wallet_id), ("confirmed", revoked.id));
    assert_eq!((by_id(reversal.id).status.as_str(), by_id(later.id).status.as_str()), ("confirmed", "confirmed"));
    let attempts = entity::tx_attempts::Entity::find()
        .filter(entity::tx_attempts::Column::TransactionId.eq(minted.id))
        .all(&daemon.db)
        .await
        .unwrap();
    assert!(attempts.len() >= 2 && attempts.iter().all(|a| a.nonce == pending.nonce), "replaced at the same nonce: {attempts:?}");
    let unit = U256::from(10u64).pow(U256::from(18));
    assert_eq!(chain.balance_of(user.address.parse().unwrap()).await, U256::from(5u64) * unit);
    assert_nonces_accounted(&daemon, &chain, revoked).await;
    assert_nonces_accounted(&daemon, &chain, other).await;
    let audit = entity::wallet_audit_logs::Entity::find()
        .filter(entity::wallet_audit_logs::Column::WalletId.eq(revoked.id))
        .filter(entity::wallet_audit_logs::Column::Action.eq("revoke"))
        .all(&daemon.db)
        .await
        .unwrap();
    assert_eq!((audit.len(), audit[0].severity.as_str()), (1, "HIGH"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_last_active_wallet_strands_work_with_an_alert_until_another_is_activated() {
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&prepared.database.url));
    let db = havend::db::connect(&config).await.unwrap();
    let keys = prepared.keys.clone();
    let queued = havend::ledger::enqueue(
        &db,
        &keys,
        havend::ledger::NewIntent {
            user: "aurora:guest_strand".into(),
            kind: havend::chain::CallKind::Mint,
            amount: U256::from(1u64),
            reason: "test".into(),
            source: "strand:1".into(),
            reverses: None,
        },
    )
    .await
    .unwrap();
    let revocation = havend::wallet::lifecycle::revoke(&db, &prepared.wallets[0], "test").await.unwrap();
    assert_eq!((revocation.moved_to, revocation.moved_intents), (None, 0));
    let stranded = entity::alerts::Entity::find().filter(entity::alerts::Column::Category.eq("wallet_stranded")).all(&db).await.unwrap();
    assert_eq!((stranded.len(), stranded[0].severity.as_str()), (1, "ERROR"));

    let next = havend::custody::create_wallet(&db, &keys, havend::custody::HOT, "test").await.unwrap();
    chain.equip(next.address.parse().unwrap()).await;
    let activation = chain.activate(&db, &next).await.unwrap();
    assert_eq!((activation.moved_intents, activation.moved_users), (1, 1), "stranded work moves to the next active wallet");
    let row = entity::transactions::Entity::find_by_id(queued.id).one(&db).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.hot_wallet_id), ("queued", next.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_encrypted_at_rest_and_a_wrong_master_key_fails_start_up() {
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    let database_file = prepared.database.url.trim_start_matches("sqlite://").trim_end_matches("?mode=rwc").to_owned();
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&prepared.database.url));
    let db = havend::db::connect(&config).await.unwrap();
    let key = havend::custody::export(&db, &prepared.keys, &prepared.wallets[0], "test").await.unwrap();
    db.close().await.ok();
    let key_bytes = hex::decode(key.trim_start_matches("0x")).unwrap();
    let mut raw = std::fs::read(&database_file).unwrap();
    raw.extend(std::fs::read(format!("{database_file}-wal")).unwrap_or_default());
    assert!(!raw.windows(32).any(|w| w == key_bytes.as_slice()), "key bytes in the database file");
    assert!(!raw.windows(64).any(|w| w.eq_ignore_ascii_case(key.trim_start_matches("0x").as_bytes())), "key hex in the database file");

    let wrong_dir = tempfile::tempdir().unwrap();
    std::fs::write(wrong_dir.path().join("master.key"), format!("1:{}", "ee".repeat(32))).unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&prepared.database.url, data_dir.path());
    config.chain = Some(chain_config(&chain, &[prepared.wallets[0].address.parse().unwrap()]));
    config.custody.master_key_file = Some(wrong_dir.path().join("master.key"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = havend::Daemon::start(config.clone(), listener).await.err().expect("start-up fails").to_string();
    assert!(error.contains("cannot decrypt wallet") && error.contains("wrong master key"), "{error}");

    config.custody.master_key_file = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = havend::Daemon::start(config, listener).await.err().expect("start-up fails").to_string();
    assert!(error.contains("no master key"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_takes_effect_on_activation_moving_queued_work_and_users_while_signed_work_finishes_on_the_old_wallet() {
    use havend::wallet::lifecycle::{self, LifecycleError};
    let chain = TestChain::start(Some(2)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let url = prepared.database.url.clone();
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    let old = wallets[0].clone();
    for i in 0..10 {
        mint(&daemon, &keys, &format!("aurora:g{i}"), 4, &format!("rot:a:{i}")).await;
    }
    daemon.daemon().nudge_wallets();
    assert!(eventually(Duration::from_secs(20), || async { count_with_status(&daemon, "broadcast").await > 0 }).await);
    // Stop signing new work, rotate while some are signed and some queued.
    daemon.stop().await;
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let new = lifecycle::rotate(&db, &keys, &old, "test").await.unwrap();
    assert_eq!(new.status, "standby");
    // Until the new wallet is activated, the old one stays active and takes the work, new users included.
    for i in 10..20 {
        let intent = havend::ledger::NewIntent {
            user: format!("aurora:g{}", i % 12),
            kind: havend::chain::CallKind::Mint,
            amount: U256::from(10u64).pow(U256::from(18)),
            reason: "test".into(),
            source: format!("rot:b:{i}"),
            reverses: None,
        };
        let queued = havend::ledger::enqueue(&db, &keys, intent).await.unwrap();
        assert_eq!(queued.hot_wallet_id, old.id, "no work for a standby wallet");
    }
    let old_row = entity::wallets::Entity::find_by_id(old.id).one(&db).await.unwrap().unwrap();
    assert_eq!((old_row.status.as_str(), old_row.rotated_to), ("active", Some(new.id)));
    let signed_before: Vec<uuid::Uuid> = entity::transactions::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.status != "queued")
        .map(|t| t.id)
        .collect();
    let refused = chain.activate(&db, &new).await;
    assert!(matches!(refused, Err(LifecycleError::MissingRole { .. })), "activation checks the roles on chain: {refused:?}");
    chain.equip(new.address.parse().unwrap()).await;
    let activation = chain.activate(&db, &new).await.unwrap();
    assert_eq!(activation.rotated, vec![old.address.clone()]);
    assert_eq!(activation.moved_intents as usize, 20 - signed_before.len());
    assert!(chain.activate(&db, &new).await.is_err(), "activation is a compare-and-set: once");

    let addresses = [old.address.parse().unwrap(), new.address.parse().unwrap()];
    let daemon = start_daemon_for(&url, &chain, &addresses, "havend").await;
    assert!(drained(&daemon, Duration::from_secs(60)).await);
    assert_eq!(count_with_status(&daemon, "confirmed").await, 20);
    assert_eq!(chain.total_supply().await, ledger_total(&daemon).await);
    for user in users::Entity::find().all(&daemon.db).await.unwrap() {
        assert_eq!(user.hot_wallet_id, new.id, "users follow the rotation");
        let on_chain = chain.balance_of(user.address.parse().unwrap()).await;
        assert_eq!(on_chain, havend::ledger::ledger_balance(&daemon.db, user.id).await.unwrap());
    }
    for tx in entity::transactions::Entity::find().all(&daemon.db).await.unwrap() {
        let expected = if signed_before.contains(&tx.id) { old.id } else { new.id };
        assert_eq!(tx.hot_wallet_id, expected, "signed work stays, queued work moves");
    }
    let old_row = entity::wallets::Entity::find_by_id(old.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!((old_row.status.as_str(), old_row.rotated_to), ("rotated", Some(new.id)));
    assert_nonces_accounted(&daemon, &chain, &old).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_wallet_waits_in_standby_and_takes_users_only_once_activated_with_roles_and_gas() {
    use havend::wallet::lifecycle::LifecycleError;
    let chain = TestChain::start(None).await;
    let database = TestDatabase::create(Backend::Sqlite).await;
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&database.url));
    let db = havend::db::connect(&config).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let wallet = havend::custody::create_wallet(&db, &keys, havend::custody::HOT, "test").await.unwrap();
    assert_eq!(wallet.status, "standby");
    let intent = |source: &str| havend::ledger::NewIntent {
        user: "aurora:guest_standby".into(),
        kind: havend::chain::CallKind::Mint,
        amount: U256::from(1u64),
        reason: "test".into(),
        source: source.into(),
        reverses: None,
    };
    let refused = havend::ledger::enqueue(&db, &keys, intent("standby:1")).await;
    assert!(matches!(refused, Err(havend::ledger::LedgerError::NoHotWallet)), "no user is pinned to a standby wallet: {refused:?}");

    let address: Address = wallet.address.parse().unwrap();
    havend::chain::admin::grant_roles(&chain.url, &chain.admin, chain.token, address).await.unwrap();
    let broke = chain.activate(&db, &wallet).await;
    assert!(matches!(broke, Err(LifecycleError::LowBalance { .. })), "activation checks the gas balance: {broke:?}");
    chain.equip(address).await;
    chain.activate(&db, &wallet).await.unwrap();
    let queued = havend::ledger::enqueue(&db, &keys, intent("standby:2")).await.unwrap();
    assert_eq!(queued.hot_wallet_id, wallet.id);
    let actions: Vec<String> = entity::wallet_audit_logs::Entity::find()
        .filter(entity::wallet_audit_logs::Column::WalletId.eq(wallet.id))
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["create", "activate"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_outage_opens_the_breaker_keeps_intents_queued_and_drains_after() {
    let chain = TestChain::start(Some(1)).await;
    let port = chain.url.rsplit(':').next().unwrap();
    let proxy = crate::support::proxy::TcpProxy::start(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let proxied_url = format!("http://{}", proxy.addr);
    let (daemon, keys, wallets) = prepared
        .start_with(&chain, |db| db.url.clone(), |config| {
            config.rpc_url = proxied_url;
            config.rpc_timeout_ms = 500;
        })
        .await;

    for i in 0..20 {
        mint(&daemon, &keys, &format!("tribe:u{i}"), 1, &format!("outage:a:{i}")).await;
    }
    assert!(drained(&daemon, Duration::from_secs(30)).await);

    proxy.cut();
    for i in 0..100 {
        mint(&daemon, &keys, &format!("tribe:u{}", i % 20), 2, &format!("outage:b:{i}")).await;
    }
    daemon.daemon().nudge_wallets();
    let opened = eventually(Duration::from_secs(15), || async {
        daemon.daemon().breaker_status().await.is_some_and(|s| s.state == havend::breaker::BreakerState::Open)
    })
    .await;
    assert!(opened, "five transport failures open the breaker");
    let health = daemon.get("/health").await;
    assert_eq!((health.status, health.json["status"].as_str()), (200, Some("degraded")));
    // Proof it kept trying: two probes (half-open) failed and re-opened it;
    // and the wallet actor looked at its queue since.
    let (reopened, was_half_open) = (std::cell::Cell::new(0), std::cell::Cell::new(false));
    let probed = eventually(Duration::from_secs(30), || async {
        match daemon.daemon().breaker_status().await.map(|s| s.state) {
            Some(havend::breaker::BreakerState::HalfOpen) => was_half_open.set(true),
            Some(havend::breaker::BreakerState::Open) if was_half_open.replace(false) => reopened.set(reopened.get() + 1),
            _ => {}
        }
        reopened.get() >= 2
    })
    .await;
    assert!(probed, "failed probes re-opened the breaker twice");
    assert!(wallets_looked(&daemon).await);
    assert_eq!(count_with_status(&daemon, "queued").await, 100, "intents stay queued while the RPC is down");
    assert_eq!(alerts(&daemon, "circuit_open").await.len(), 1, "one alert per opening, not one per failure");

    proxy.restore();
    assert!(drained(&daemon, Duration::from_secs(60)).await, "the queue drains once the RPC is back");
    let closed = daemon.daemon().breaker_status().await.unwrap();
    assert_eq!(closed.state, havend::breaker::BreakerState::Closed);
    assert_eq!(count_with_status(&daemon, "confirmed").await, 120);
    assert_eq!(chain.total_supply().await, ledger_total(&daemon).await);
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_transaction_is_rebroadcast_and_an_underpriced_one_is_replaced_with_one_mined() {
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    let admin = chain.admin_provider();
    use alloy::providers::ext::AnvilApi;

    // Dropped: stop mining, let the intent be broadcast, drop it from the pool.
    admin.anvil_set_auto_mine(false).await.unwrap();
    let first = mint(&daemon, &keys, "aurora:guest_d", 3, "drop:1").await;
    daemon.daemon().nudge_wallets();
    assert!(eventually(Duration::from_secs(10), || async { count_with_status(&daemon, "broadcast").await == 1 }).await);
    let attempt = entity::tx_attempts::Entity::find().one(&daemon.db).await.unwrap().unwrap();
    admin.anvil_drop_transaction(attempt.tx_hash.parse().unwrap()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            chain.client().is_known(attempt.tx_hash.parse().unwrap()).await.unwrap()
        })
        .await,
        "the dropped transaction is sent again"
    );
    admin.evm_mine(None).await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(15)).await);
    let confirmed = entity::transactions::Entity::find_by_id(first.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(confirmed.tx_hash.as_deref(), Some(attempt.tx_hash.as_str()), "the same bytes were mined");

    // Underpriced: a batch of three; the next block's base fee jumps above its cap.
    let batch = mint_together(&daemon, &keys, &[("aurora:guest_d", 2, "drop:2"), ("aurora:guest_e", 1, "drop:3"), ("aurora:guest_f", 1, "drop:4")]).await;
    let second = batch[0].clone();
    daemon.daemon().nudge_wallets();
    assert!(eventually(Duration::from_secs(10), || async { count_with_status(&daemon, "broadcast").await == 3 }).await);
    let pending = entity::tx_attempts::Entity::find()
        .filter(entity::tx_attempts::Column::TransactionId.eq(second.id))
        .one(&daemon.db)
        .await
        .unwrap()
        .unwrap();
    let cap: u128 = pending.max_fee_per_gas.parse().unwrap();
    admin.anvil_set_next_block_base_fee_per_gas(cap * 3).await.unwrap();
    admin.evm_mine(None).await.unwrap();
    admin.anvil_set_auto_mine(true).await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(30)).await, "a re-signed attempt gets mined");
    let attempts = attempts_of(&daemon.db, second.id).await;
    assert!(attempts.len() >= 2, "a replacement attempt was made");
    assert!(attempts.iter().all(|a| a.nonce == pending.nonce), "all attempts share the nonce");
    let ids: Vec<uuid::Uuid> = batch.iter().map(|t| t.id).collect();
    for attempt in &attempts {
        let mut links = entity::tx_attempt_intents::Entity::find()
            .filter(entity::tx_attempt_intents::Column::AttemptId.eq(attempt.id))
            .all(&daemon.db)
            .await
            .unwrap();
        links.sort_by_key(|l| l.position);
        assert_eq!(links.iter().map(|l| l.transaction_id).collect::<Vec<_>>(), ids, "attempt {} carries exactly the batch's intents", attempt.attempt);
    }
    let mut mined = 0;
    for attempt in &attempts {
        if chain.client().receipt(attempt.tx_hash.parse().unwrap()).await.unwrap().is_some() {
            mined += 1;
        }
    }
    assert_eq!(mined, 1, "exactly one attempt was ever mined");
    assert_eq!(chain.total_supply().await, U256::from(7u64) * U256::from(10u64).pow(U256::from(18)));
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}

#[test]
fn recompiling_the_contract_gives_the_committed_artifact() {
    let dir = havend::chain::anvil::contracts_dir();
    if !dir.join("node_modules/solc").exists() {
        let status = std::process::Command::new("npm").args(["install", "--no-audit", "--no-fund"]).current_dir(&dir).status().unwrap();
        assert!(status.success(), "npm install in {}", dir.display());
    }
    let output = std::process::Command::new("node").args(["compile.js", "--check"]).current_dir(&dir).output().unwrap();
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_burns_only_after_its_mint_is_confirmed_and_cancels_with_an_unmade_mint() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    let (daemon, keys, _) = prepared.start(&chain).await;
    let unit = U256::from(10u64).pow(U256::from(18));
    let intent = |source: &str, kind, reverses| havend::ledger::NewIntent {
        user: "aurora:guest_rev".into(),
        kind,
        amount: U256::from(50u64) * unit,
        reason: "test".into(),
        source: source.into(),
        reverses,
    };

    // Booking cancelled before its reward was minted: neither happens.
    // (A write transaction from the start: a deferred one that reads, then
    // writes, fails at once on SQLite if another writer committed between.)
    let txn = havend::db::begin_write(&daemon.db).await.unwrap();
    let early_mint = havend::ledger::enqueue_in(&txn, &keys, intent("rev:mint:1", havend::chain::CallKind::Mint, None)).await.unwrap();
    let early_burn = havend::ledger::enqueue_in(&txn, &keys, intent("rev:burn:1", havend::chain::CallKind::Burn, Some(early_mint.id))).await.unwrap();
    txn.commit().await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(20)).await);
    for id in [early_mint.id, early_burn.id] {
        let row = entity::transactions::Entity::find_by_id(id).one(&daemon.db).await.unwrap().unwrap();
        assert_eq!(row.status, "cancelled");
    }

    // Cancelled after the mint: the burn follows the confirmed mint.
    let minted = mint(&daemon, &keys, "aurora:guest_rev", 50, "rev:mint:2").await;
    daemon.daemon().nudge_wallets();
    let in_flight = eventually(Duration::from_secs(10), || async {
        let row = entity::transactions::Entity::find_by_id(minted.id).one(&daemon.db).await.unwrap().unwrap();
        row.status != "queued"
    })
    .await;
    assert!(in_flight);
    let burn = havend::ledger::enqueue(&daemon.db, &keys, intent("rev:burn:2", havend::chain::CallKind::Burn, Some(minted.id))).await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let minted = entity::transactions::Entity::find_by_id(minted.id).one(&daemon.db).await.unwrap().unwrap();
    let burned = entity::transactions::Entity::find_by_id(burn.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!((minted.status.as_str(), burned.status.as_str()), ("confirmed", "confirmed"));
    assert!(burned.block_number > minted.block_number, "the burn was mined after the mint");
    let first_burn_attempt = entity::tx_attempts::Entity::find()
        .filter(entity::tx_attempts::Column::TransactionId.eq(burn.id))
        .one(&daemon.db)
        .await
        .unwrap()
        .unwrap();
    assert!(first_burn_attempt.created_at >= minted.updated_at, "signed only after the mint was confirmed");
    let user = users::Entity::find().one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(chain.balance_of(user.address.parse().unwrap()).await, U256::ZERO);
    assert_eq!(chain.total_supply().await, U256::ZERO);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_gas_balance_holds_work_with_an_alert_until_topped_up() {
    use alloy::providers::ext::AnvilApi;
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let wallet: Address = prepared.wallets[0].address.parse().unwrap();
    chain.admin_provider().anvil_set_balance(wallet, U256::from(1_000_000_000_000u64)).await.unwrap();
    let (daemon, keys, _) = prepared.start(&chain).await;
    let intent = mint(&daemon, &keys, "aurora:guest_low", 1, "low:1").await;
    assert!(
        eventually(Duration::from_secs(15), || async { !alerts(&daemon, "low_balance").await.is_empty() }).await,
        "a low balance raises an alert"
    );
    assert!(wallets_looked(&daemon).await);
    let held = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(held.status, "queued", "work is held");
    assert!(daemon.daemon().wallet_statuses().await[0].held);

    chain.admin_provider().anvil_set_balance(wallet, U256::from(10u128.pow(21))).await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(30)).await, "topped up, the held work goes out");
    assert_eq!(count_with_status(&daemon, "confirmed").await, 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_reorged_away_is_checked_again_at_the_finality_depth_and_never_confirmed_from_memory() {
    use alloy::providers::ext::AnvilApi;
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let (daemon, keys, wallets) = prepared.start_with(&chain, |db| db.url.clone(), |config| config.finality_depth = 3).await;
    let admin = chain.admin_provider();
    admin.anvil_set_auto_mine(false).await.unwrap();
    let batch = mint_together(&daemon, &keys, &[("aurora:guest_reorg", 8, "reorg:1"), ("aurora:guest_reorg2", 1, "reorg:2")]).await;
    let intent = batch[0].clone();
    daemon.daemon().nudge_wallets();
    assert!(eventually(Duration::from_secs(10), || async { count_with_status(&daemon, "broadcast").await == 2 }).await);
    let attempt = entity::tx_attempts::Entity::find().one(&daemon.db).await.unwrap().unwrap();
    let snapshot = admin.anvil_snapshot().await.unwrap();
    admin.evm_mine(None).await.unwrap();
    // The daemon sees the receipt at depth 1 (its block scan records it).
    assert!(wallets_looked(&daemon).await);
    // That block disappears; empty blocks take its place until the old
    // receipt would be 3 deep. Only a fresh look at depth tells it is gone.
    assert!(admin.anvil_revert(snapshot).await.unwrap());
    let _ = admin.anvil_drop_transaction(attempt.tx_hash.parse().unwrap()).await;
    for _ in 0..3 {
        admin.evm_mine(None).await.unwrap();
    }
    assert!(wallets_looked(&daemon).await);
    assert_ne!(status_of(&daemon, intent.id).await, "confirmed", "a receipt remembered from a vanished block confirms nothing");
    admin.anvil_set_auto_mine(true).await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            let _ = admin.evm_mine(None).await;
            count_with_status(&daemon, "confirmed").await == 2
        })
        .await,
        "rebroadcast and confirmed at depth"
    );
    let row = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
    let receipt = chain.client().receipt(row.tx_hash.as_deref().unwrap().parse().unwrap()).await.unwrap().expect("the recorded transaction is on chain");
    assert_eq!(receipt.block_number.map(|b| b as i64), row.block_number, "recorded in the block that holds it");
    let other = entity::transactions::Entity::find_by_id(batch[1].id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!((other.tx_hash, other.block_number), (row.tx_hash.clone(), row.block_number), "the batch settled together");
    assert_eq!(chain.total_supply().await, U256::from(9u64) * U256::from(10u64).pow(U256::from(18)));
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_paused_before_its_fenced_write_is_refused_once_another_claimed_the_wallet() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let url = prepared.database.url.clone();
    let (first, keys, wallets) = prepared.start(&chain).await;
    let epoch_of = || async { entity::wallets::Entity::find_by_id(wallets[0].id).one(&first.db).await.unwrap().unwrap().epoch };
    let first_epoch = epoch_of().await;
    // Daemon A will stop inside its write-ahead transaction, just before the fence.
    let gate = Gate::arm("wallet::before_fence", "wallet::fence_target", &wallets[0].id.to_string()).await;
    for i in 0..5 {
        mint(&first, &keys, &format!("tribe:fence_{i}"), 1, &format!("fencefp:{i}")).await;
    }
    first.daemon().nudge_wallets();
    assert!(gate.reached(Duration::from_secs(10)).await, "daemon A reached its fence");
    // Daemon B claims the wallet while A is held.
    let second = start_daemon_for(&url, &chain, &[wallets[0].address.parse().unwrap()], "havend-b").await;
    assert!(eventually(Duration::from_secs(10), || async { epoch_of().await > first_epoch }).await, "daemon B took the epoch");
    let resumed_at = chrono::Utc::now();
    gate.release();

    assert!(
        eventually(Duration::from_secs(10), || async { !alerts(&first, "wallet_fenced").await.is_empty() }).await,
        "A's write was refused and A stopped signing"
    );
    assert!(drained(&second, Duration::from_secs(60)).await);
    let attempts = entity::tx_attempts::Entity::find().all(&second.db).await.unwrap();
    assert!(
        attempts.iter().all(|a| a.created_at > resumed_at),
        "nothing A wrote before the fence was committed: {:?}",
        attempts.iter().map(|a| (a.nonce, a.created_at)).collect::<Vec<_>>()
    );
    assert_eq!(count_with_status(&second, "confirmed").await, 5);
    assert_eq!(chain.total_supply().await, ledger_total(&second).await);
    assert_nonces_accounted(&second, &chain, &wallets[0]).await;
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_nonce_ahead_of_the_database_at_start_stops_signing_with_a_critical_alert() {
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    // While havend is down, someone with the key sends a transaction.
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&prepared.database.url));
    let db = havend::db::connect(&config).await.unwrap();
    let key = havend::custody::export(&db, &prepared.keys, &prepared.wallets[0], "test").await.unwrap();
    db.close().await.ok();
    chain.send_as(key.parse().unwrap()).await;

    let (daemon, keys, _) = prepared.start(&chain).await;
    let intent = mint(&daemon, &keys, "aurora:guest_ahead", 1, "ahead:1").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            daemon.daemon().wallet_statuses().await.iter().any(|s| s.halted.is_some())
        })
        .await,
        "signing stops"
    );
    assert!(alerts(&daemon, "foreign_nonce").await.iter().any(|a| a.severity == "CRITICAL"));
    assert!(wallets_looked(&daemon).await);
    let row = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.nonce), ("queued", None), "never skips ahead to a nonce of its own choosing");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_keeps_the_daemon_up_and_the_wallet_resumes_after_it() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let proxy = crate::support::proxy::TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let proxy_addr = proxy.addr;
    let (daemon, keys, wallets) = prepared
        .start_with(&chain, |db| db.url.replacen("127.0.0.1:5432", &proxy_addr.to_string(), 1), |_| {})
        .await;
    // The test's own connection goes straight to PostgreSQL, not through the proxy.
    let queue = |batch: &'static str| {
        let direct = daemon.db.clone();
        let keys = keys.clone();
        async move {
            for i in 0..20 {
                let intent = havend::ledger::NewIntent {
                    user: format!("tribe:db_{i}"),
                    kind: havend::chain::CallKind::Mint,
                    amount: U256::from(10u64).pow(U256::from(18)),
                    reason: "test".into(),
                    source: format!("dbout:{batch}:{i}"),
                    reverses: None,
                };
                havend::ledger::enqueue(&direct, &keys, intent).await.unwrap();
            }
        }
    };
    queue("a").await;
    assert!(drained(&daemon, Duration::from_secs(30)).await);

    proxy.cut();
    queue("b").await;
    let down = eventually(Duration::from_secs(20), || async {
        let health = daemon.get("/health").await;
        (health.status, health.json["database"].as_str()) == (503, Some("down"))
    })
    .await;
    assert!(down, "the daemon is up and says the database is down");

    proxy.restore();
    assert!(drained(&daemon, Duration::from_secs(60)).await, "the wallet resumes once the database is back");
    assert_eq!(count_with_status(&daemon, "confirmed").await, 40);
    assert_eq!(chain.total_supply().await, ledger_total(&daemon).await);
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypt_moves_every_wallet_to_the_new_master_key_version() {
    let database = TestDatabase::create(Backend::Sqlite).await;
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&database.url));
    let db = havend::db::connect(&config).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let v1 = format!("1:{}", "11".repeat(32));
    let old_keys = havend::custody::MasterKeys::parse(&v1).unwrap();
    let wallet = havend::custody::create_wallet(&db, &old_keys, havend::custody::HOT, "test").await.unwrap();
    let address = havend::custody::unlock(&db, &old_keys, &wallet, "test", "before").await.unwrap().address();

    let both = havend::custody::MasterKeys::parse(&format!("{v1},2:{}", "22".repeat(32))).unwrap();
    assert_eq!(havend::custody::reencrypt_all(&db, &both, "test").await.unwrap(), 1);
    let reencrypted = havend::custody::find(&db, &wallet.address).await.unwrap();
    assert_eq!(reencrypted.key_version, 2);
    let only_new = havend::custody::MasterKeys::parse(&format!("2:{}", "22".repeat(32))).unwrap();
    let signer = havend::custody::unlock(&db, &only_new, &reencrypted, "test", "after").await.unwrap();
    assert_eq!(signer.address(), address, "the same key, now under version 2 alone");
    assert!(havend::custody::unlock(&db, &old_keys, &reencrypted, "test", "old key").await.is_err());
    assert_eq!(havend::custody::reencrypt_all(&db, &both, "test").await.unwrap(), 0, "nothing left to move");
}

/// A mint and its reversal for `user`, the mint left in `mint_status` (set
/// in the same commit, so no wallet actor ever sees it queued unless asked).
async fn mint_and_reversal(daemon: &TestDaemon, keys: &havend::custody::MasterKeys, user: &str, tag: &str, mint_status: &str) -> (uuid::Uuid, uuid::Uuid) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let unit = U256::from(10u64).pow(U256::from(18));
    let intent = |source: String, kind, reverses| havend::ledger::NewIntent {
        user: user.into(),
        kind,
        amount: U256::from(50u64) * unit,
        reason: "test".into(),
        source,
        reverses,
    };
    let txn = daemon.db.begin().await.unwrap();
    let original = havend::ledger::enqueue_in(&txn, keys, intent(format!("{tag}:mint"), havend::chain::CallKind::Mint, None)).await.unwrap();
    txn.execute_unprepared(&format!("UPDATE transactions SET status = '{mint_status}' WHERE id = '{}'", original.id)).await.unwrap();
    let reversal = havend::ledger::enqueue_in(&txn, keys, intent(format!("{tag}:burn"), havend::chain::CallKind::Burn, Some(original.id))).await.unwrap();
    txn.commit().await.unwrap();
    (original.id, reversal.id)
}

async fn status_of(daemon: &TestDaemon, id: uuid::Uuid) -> String {
    entity::transactions::Entity::find_by_id(id).one(&daemon.db).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_waits_when_its_mint_is_signed_between_the_decision_and_the_cancel() {
    use sea_orm::ConnectionTrait;
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    // Hold this test's wallet actor right after it read the mint's status.
    let gate = Gate::arm("wallet::reversal_decided", "wallet::reversal_target", &wallets[0].id.to_string()).await;
    let (original, reversal) = mint_and_reversal(&daemon, &keys, "aurora:guest_race", "race", "queued").await;
    daemon.daemon().nudge_wallets();
    let paused = gate.reached(Duration::from_secs(10)).await;
    // Meanwhile the mint is signed (another signer won the race for it).
    daemon.db.execute_unprepared(&format!("UPDATE transactions SET status = 'signed' WHERE id = '{original}'")).await.unwrap();
    gate.release();
    assert!(paused, "the wallet actor reached the reversal decision");
    assert!(wallets_looked(&daemon).await);
    assert_eq!(status_of(&daemon, original).await, "signed", "a signed mint is never cancelled");
    let row = entity::transactions::Entity::find_by_id(reversal).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(row.status, "queued", "its reversal waits for it instead of being dropped ({:?})", row.last_error);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_reversal_lets_later_work_through_without_spinning_and_is_rechecked_on_the_tick() {
    use sea_orm::ConnectionTrait;
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let (daemon, keys, _) = prepared.start_with(&chain, |db| db.url.clone(), |config| config.max_in_flight = 1).await;
    let (original, reversal) = mint_and_reversal(&daemon, &keys, "aurora:guest_wait", "wait", "broadcast").await;
    let later = mint(&daemon, &keys, "aurora:guest_other", 2, "wait:other").await;
    daemon.daemon().nudge_wallets();
    assert!(
        eventually(Duration::from_secs(20), || async { status_of(&daemon, later.id).await == "confirmed" }).await,
        "unrelated work queued after a waiting reversal is not held back"
    );
    let ticks = || async { daemon.daemon().wallet_statuses().await[0].ticks };
    let before = ticks().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = ticks().await - before;
    assert!(spent < 60, "a waiting reversal is looked at on the normal tick, not in a loop: {spent} ticks in 2 s");
    assert_eq!(status_of(&daemon, reversal).await, "queued");
    // The mint failed after all: the next normal tick cancels the reversal.
    daemon.db.execute_unprepared(&format!("UPDATE transactions SET status = 'failed' WHERE id = '{original}'")).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { status_of(&daemon, reversal).await == "cancelled" }).await);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_on_a_wallet_no_daemon_signs_for_is_alerted_once_after_ten_minutes() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    // A second active wallet that no daemon names in its chain.wallets.
    let orphan = havend::custody::create_wallet(&daemon.db, &keys, havend::custody::HOT, "test").await.unwrap();
    chain.equip(orphan.address.parse().unwrap()).await;
    chain.activate(&daemon.db, &orphan).await.unwrap();
    let mut stranded = 0;
    for i in 0..20 {
        let intent = mint(&daemon, &keys, &format!("tribe:orphan_{i}"), 1, &format!("orphan:{i}")).await;
        stranded += u64::from(intent.hot_wallet_id == orphan.id);
    }
    assert!(stranded > 0 && stranded < 20, "users are spread over both active wallets");
    let served = || async {
        entity::transactions::Entity::find()
            .filter(entity::transactions::Column::HotWalletId.eq(wallets[0].id))
            .filter(entity::transactions::Column::Status.ne("confirmed"))
            .all(&daemon.db)
            .await
            .unwrap()
            .is_empty()
    };
    assert!(eventually(Duration::from_secs(30), || async { daemon.daemon().nudge_wallets(); served().await }).await);

    assert!(havend::wallet::unclaimed_wallets(&daemon.db, chrono::Utc::now()).await.unwrap().is_empty(), "not before ten minutes");
    let later = chrono::Utc::now() + chrono::Duration::minutes(11);
    let unclaimed = havend::wallet::unclaimed_wallets(&daemon.db, later).await.unwrap();
    assert_eq!(unclaimed.iter().map(|u| (u.wallet_id, u.queued)).collect::<Vec<_>>(), vec![(orphan.id, stranded)], "the signed-for wallet is not reported");
    let mut alerted = std::collections::HashSet::new();
    havend::wallet::alert_unclaimed(&daemon.db, later, &mut alerted).await.unwrap();
    havend::wallet::alert_unclaimed(&daemon.db, later, &mut alerted).await.unwrap();
    let raised = alerts(&daemon, "wallet_unclaimed").await;
    assert_eq!(raised.len(), 1, "one alert per stranding: {raised:?}");
    assert!(raised[0].message.contains(&orphan.address));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_actor_that_keeps_failing_is_parked_with_an_alert_retried_later_and_intake_stays_up() {
    use sea_orm::ActiveModelTrait;
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let (daemon, keys, wallets) = prepared.start(&chain).await;
    // An intent whose user does not exist: every tick of the wallet fails on it.
    let id = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    entity::transactions::ActiveModel {
        id: sea_orm::Set(id),
        intent_id: sea_orm::Set(havend::chain::intent_id(id).to_string()),
        source: sea_orm::Set("poison:1".into()),
        user_id: sea_orm::Set(uuid::Uuid::now_v7()),
        hot_wallet_id: sea_orm::Set(wallets[0].id),
        kind: sea_orm::Set("mint".into()),
        amount: sea_orm::Set("1".into()),
        reason: sea_orm::Set("test".into()),
        status: sea_orm::Set("queued".into()),
        generation: sea_orm::Set(0),
        nonce: sea_orm::Set(None),
        reverses: sea_orm::Set(None),
        tx_hash: sea_orm::Set(None),
        block_number: sea_orm::Set(None),
        last_error: sea_orm::Set(None),
        created_at: sea_orm::Set(now),
        updated_at: sea_orm::Set(now),
        ..Default::default()
    }
    .insert(&daemon.db)
    .await
    .unwrap();
    daemon.daemon().nudge_wallets();
    assert!(
        eventually(Duration::from_secs(30), || async { !alerts(&daemon, "wallet_parked").await.is_empty() }).await,
        "a wallet that keeps failing is parked with an alert"
    );
    let answer = daemon.deliver(havend::webhooks::Partner::Aurora, Some("booking-created"), &booking_created("bk_parked")).await;
    assert!(answer.status < 300, "webhook intake stays up while a wallet is parked: {answer:?}");
    assert_eq!(daemon.get("/health").await.status, 200);

    // Once the bad row is dealt with, the parked wallet comes back after its backoff.
    entity::transactions::Entity::delete_by_id(id).exec(&daemon.db).await.unwrap();
    let intent = mint(&daemon, &keys, "aurora:guest_parked", 1, "parked:1").await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            daemon.daemon().nudge_wallets();
            status_of(&daemon, intent.id).await == "confirmed"
        })
        .await,
        "the parked wallet is retried and signs again"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refusing_a_misconfigured_gas_limit_raises_an_alert_and_holds_new_work() {
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    // Over the block gas limit: no node will take it.
    let (daemon, keys, _) = prepared.start_with(&chain, |db| db.url.clone(), |config| config.gas_limit_batch_base = 4_000_000_000).await;
    let first = mint(&daemon, &keys, "aurora:guest_gas", 1, "gas:1").await;
    daemon.daemon().nudge_wallets();
    assert!(
        eventually(Duration::from_secs(15), || async { !alerts(&daemon, "transaction_refused").await.is_empty() }).await,
        "a refusal an operator must fix is alerted, never only logged"
    );
    let refused = alerts(&daemon, "transaction_refused").await;
    assert!(refused[0].message.contains("Misconfigured") && refused[0].severity == "ERROR", "{refused:?}");
    let second = mint(&daemon, &keys, "aurora:guest_gas", 1, "gas:2").await;
    assert!(wallets_looked(&daemon).await);
    assert_eq!(status_of(&daemon, second.id).await, "queued", "new work is held until the configuration is fixed");
    assert_ne!(status_of(&daemon, first.id).await, "queued");
    assert_eq!(alerts(&daemon, "transaction_refused").await.len(), 1, "alerted once, retried with backoff");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_actor_that_cannot_unlock_the_key_takes_no_epoch_from_the_signing_daemon() {
    use havend::breaker::{BreakerActor, BreakerArgs, BreakerConfig, BreakerHandle, BreakerState};
    use havend::wallet::{WalletActor, WalletArgs, WalletDeps, WalletSettings};
    let database = TestDatabase::create(Backend::Sqlite).await;
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(&database.url));
    let db = havend::db::connect(&config).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let keys = havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    let wallet = havend::custody::create_wallet(&db, &keys, havend::custody::HOT, "test").await.unwrap();
    let (epoch, _) = havend::wallet::store::claim(&db, wallet.id, "signing-daemon").await.unwrap();

    let (state_tx, state_rx) = tokio::sync::watch::channel(BreakerState::Closed);
    let breaker_config = BreakerConfig { failure_threshold: 5, open_for: Duration::from_secs(30), close_after: 2 };
    let (breaker, _) = ractor::Actor::spawn(None, BreakerActor, BreakerArgs { name: "rpc".into(), config: breaker_config, state_tx, db: db.clone() }).await.unwrap();
    let chain: havend::config::ChainConfig =
        toml::from_str(&format!("rpc_url = \"http://127.0.0.1:1\"\ntoken = \"{}\"\nchain_id = 1\n", Address::ZERO)).unwrap();
    let deps = WalletDeps {
        owner: "misconfigured-daemon".into(),
        db: db.clone(),
        keys: havend::custody::MasterKeys::parse(&format!("1:{}", "ee".repeat(32))).unwrap(),
        chain: havend::chain::ChainClient::new("http://127.0.0.1:1", Duration::from_secs(1)).unwrap(),
        breaker: BreakerHandle::new(breaker.clone(), state_rx),
        settings: WalletSettings::from_config(&chain),
    };
    let started = ractor::Actor::spawn(None, WalletActor, WalletArgs { wallet_id: wallet.id, deps }).await;
    assert!(started.is_err(), "a wrong master key cannot start a wallet actor");
    let row = entity::wallets::Entity::find_by_id(wallet.id).one(&db).await.unwrap().unwrap();
    assert_eq!((row.epoch, row.owner.as_deref()), (epoch, Some("signing-daemon")), "the daemon that can sign keeps the wallet");
    breaker.stop(None);
}

/// Holds the processing transaction of a booking for `guest` at `hook` (a
/// failpoint inside `ledger::enqueue_with`) while the rotation of the
/// guest's wallet is activated, then lets both finish: the reward must end
/// up signed by the new wallet, nothing left on the rotated one.
async fn a_rotation_racing_a_reward(hook: &'static str, guest: &str, returning: bool) {
    use havend::wallet::lifecycle;
    use sea_orm::{ConnectionTrait, Statement};
    let chain = TestChain::start(Some(1)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let (url, keys, old) = (prepared.database.url.clone(), havend::custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap(), prepared.wallets[0].clone());
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let new = lifecycle::rotate(&db, &keys, &old, "test").await.unwrap();
    chain.equip(new.address.parse().unwrap()).await;
    let daemon = start_daemon_for(&url, &chain, &[old.address.parse().unwrap(), new.address.parse().unwrap()], "havend").await;
    let user = format!("aurora:{guest}");
    if returning {
        mint(&daemon, &keys, &user, 1, &format!("{guest}:first")).await;
        assert!(drained(&daemon, Duration::from_secs(30)).await, "the returning user has a confirmed reward on the old wallet");
    }
    let gate = Gate::arm(hook, "ledger::hook_target", &user.to_string()).await;
    let booking = format!(r#"{{"id":"bk_{guest}","guest_id":"{guest}","total_price":"100","nights":1}}"#);
    assert_eq!(daemon.deliver(havend::webhooks::Partner::Aurora, Some("booking-created"), &booking).await.status, 200);
    let held = gate.reached(Duration::from_secs(10)).await;
    let (client, token, activated_db, standby) = (chain.client(), chain.token, sea_orm::Database::connect(&url).await.unwrap(), new.clone());
    let activation = tokio::spawn(async move {
        let standby = havend::custody::find(&activated_db, &standby.address).await.unwrap();
        lifecycle::activate_checked(&activated_db, &client, token, U256::from(MIN_BALANCE_WEI), &standby, "test").await
    });
    // Held after its wallet check, the processing transaction holds the activation back; held before it, the activation commits first.
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let activation_waits = || async {
        let row = db.query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, waiting)).await.unwrap().unwrap();
        row.try_get::<i64>("", "n").unwrap() > 0
    };
    let settled = match hook {
        "ledger::before_insert" => eventually(Duration::from_secs(10), activation_waits).await,
        _ => eventually(Duration::from_secs(10), || async { activation.is_finished() }).await,
    };
    gate.release();
    assert!(held, "the processing transaction reached {hook}");
    assert!(settled, "the activation {}", if hook == "ledger::before_insert" { "waits for the intent's commit" } else { "committed while the intent was being queued" });
    let activation = activation.await.unwrap().expect("the activation succeeds");
    assert_eq!(activation.rotated, vec![old.address.clone()]);
    let source = format!("aurora:booking-created:bk_{guest}");
    assert!(
        eventually(Duration::from_secs(30), || async {
            daemon.daemon().nudge_wallets();
            entity::transactions::Entity::find()
                .filter(entity::transactions::Column::Source.eq(source.as_str()))
                .one(&db)
                .await
                .unwrap()
                .is_some_and(|t| t.status == "confirmed")
        })
        .await,
        "the reward is signed and confirmed"
    );
    let reward = entity::transactions::Entity::find().filter(entity::transactions::Column::Source.eq(source.as_str())).one(&db).await.unwrap().unwrap();
    assert_eq!(reward.hot_wallet_id, new.id, "signed by the new wallet");
    let stranded = entity::transactions::Entity::find()
        .filter(entity::transactions::Column::HotWalletId.eq(old.id))
        .filter(entity::transactions::Column::Status.is_in(["queued", "held"]))
        .count(&db)
        .await
        .unwrap();
    assert_eq!(stranded, 0, "no queued or held intent on the rotated wallet");
    let on_old = users::Entity::find().filter(users::Column::HotWalletId.eq(old.id)).count(&db).await.unwrap();
    assert_eq!(on_old, 0, "no user on the rotated wallet");
    let address: Address = users::Entity::find().filter(users::Column::ExternalRef.eq(user.as_str())).one(&db).await.unwrap().unwrap().address.parse().unwrap();
    let expected = U256::from(if returning { 201u64 } else { 200u64 }) * U256::from(10u64).pow(U256::from(18));
    assert_eq!(chain.balance_of(address).await, expected);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_waits_for_a_reward_being_queued_on_the_wallet_it_rotates_and_moves_it() {
    a_rotation_racing_a_reward("ledger::before_insert", "race_new", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reward_queued_after_a_rotation_committed_follows_its_user_to_the_new_wallet() {
    a_rotation_racing_a_reward("ledger::before_wallet_check", "race_back", true).await;
}

async fn work_left_on_a_retired_wallet_is_swept_to_an_active_one(backend: Backend) {
    use havend::custody;
    let database = TestDatabase::create(backend).await;
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    havend::db::migrate_up(&db).await.unwrap();
    let keys = custody::MasterKeys::parse(TEST_MASTER_KEY).unwrap();
    use entity::{transactions, wallets};
    use sea_orm::sea_query::Expr;
    let set_wallet = |id: uuid::Uuid, status: &'static str, rotated_to: Option<uuid::Uuid>| {
        wallets::Entity::update_many()
            .col_expr(wallets::Column::Status, Expr::value(status))
            .col_expr(wallets::Column::RotatedTo, Expr::value(rotated_to))
            .filter(wallets::Column::Id.eq(id))
    };
    let mut hot = Vec::new();
    for _ in 0..3 {
        let wallet = custody::create_wallet(&db, &keys, custody::HOT, "test").await.unwrap();
        set_wallet(wallet.id, "active", None).exec(&db).await.unwrap();
        hot.push(wallet);
    }
    let (rotated, successor, revoked) = (&hot[0], &hot[1], &hot[2]);
    let queued = mint_on(&db, &keys, "tribe:swept_a", "swept:a").await;
    let held = mint_on(&db, &keys, "tribe:swept_b", "swept:b").await;
    // Work that landed on retired wallets (an intent queued again after a foreign nonce, say).
    set_wallet(rotated.id, "rotated", Some(successor.id)).exec(&db).await.unwrap();
    set_wallet(revoked.id, "revoked", None).exec(&db).await.unwrap();
    for (tx, wallet, status, user) in [(queued.id, rotated.id, "queued", "tribe:swept_a"), (held.id, revoked.id, "held", "tribe:swept_b")] {
        transactions::Entity::update_many()
            .col_expr(transactions::Column::HotWalletId, Expr::value(wallet))
            .col_expr(transactions::Column::Status, Expr::value(status))
            .filter(transactions::Column::Id.eq(tx))
            .exec(&db)
            .await
            .unwrap();
        users::Entity::update_many().col_expr(users::Column::HotWalletId, Expr::value(wallet)).filter(users::Column::ExternalRef.eq(user)).exec(&db).await.unwrap();
    }
    let swept = havend::wallet::lifecycle::sweep(&db).await.unwrap();
    assert_eq!(swept.len(), 2, "{swept:?}");
    for tx in [queued.id, held.id] {
        let row = entity::transactions::Entity::find_by_id(tx).one(&db).await.unwrap().unwrap();
        assert_eq!(row.hot_wallet_id, successor.id, "the rotation target (the oldest active wallet for a revoked one) takes it");
    }
    let users = users::Entity::find().all(&db).await.unwrap();
    assert!(users.iter().all(|u| u.hot_wallet_id == successor.id), "users follow their work");
    assert!(havend::wallet::lifecycle::sweep(&db).await.unwrap().is_empty(), "nothing left to move");
}

/// Queues a 1 HNV mint for `user` directly on the ledger.
async fn mint_on(db: &sea_orm::DatabaseConnection, keys: &havend::custody::MasterKeys, user: &str, source: &str) -> entity::transactions::Model {
    let intent = havend::ledger::NewIntent {
        user: user.into(),
        kind: havend::chain::CallKind::Mint,
        amount: U256::from(10u64).pow(U256::from(18)),
        reason: "test".into(),
        source: source.into(),
        reverses: None,
    };
    havend::ledger::enqueue(db, keys, intent).await.unwrap()
}

async fn two_reversals_of_one_user_in_one_batch_together_burn_no_more_than_the_user_holds(backend: Backend) {
    use havend::chain::CallKind;
    use sea_orm::TransactionTrait;
    let chain = TestChain::start(Some(1)).await;
    let (daemon, keys, _) = Prepared::new(backend, &chain, 1).await.start(&chain).await;
    let unit = U256::from(10u64).pow(U256::from(18));
    let user = "aurora:twice_reversed";
    let first = mint(&daemon, &keys, user, 50, "twice:mint:1").await;
    let second = mint(&daemon, &keys, user, 50, "twice:mint:2").await;
    let intent = |source: &str, kind, amount: u64, reverses| havend::ledger::NewIntent {
        user: user.into(),
        kind,
        amount: U256::from(amount) * unit,
        reason: "test".into(),
        source: source.into(),
        reverses,
    };
    havend::ledger::enqueue(&daemon.db, &keys, intent("twice:spent", CallKind::Burn, 60, None)).await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    // The user holds 40; both mints are reversed in one commit, so one batch decides both.
    let txn = daemon.db.begin().await.unwrap();
    let reversals = [
        havend::ledger::enqueue_in(&txn, &keys, intent("twice:reversal:1", CallKind::Burn, 50, Some(first.id))).await.unwrap().id,
        havend::ledger::enqueue_in(&txn, &keys, intent("twice:reversal:2", CallKind::Burn, 50, Some(second.id))).await.unwrap().id,
    ];
    txn.commit().await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    assert_eq!(count_with_status(&daemon, "failed").await, 0, "no burn reverted on chain");
    let rows: Vec<entity::transactions::Model> =
        entity::transactions::Entity::find().filter(entity::transactions::Column::Id.is_in(reversals)).all(&daemon.db).await.unwrap();
    let burned = rows.iter().filter(|t| t.status == "confirmed").fold(U256::ZERO, |sum, t| sum + U256::from_str_radix(&t.amount, 10).unwrap());
    let shortfall = rows.iter().fold(U256::ZERO, |sum, t| sum + t.shortfall.as_deref().map_or(U256::ZERO, |s| U256::from_str_radix(s, 10).unwrap()));
    assert_eq!((burned, shortfall), (U256::from(40u64) * unit, U256::from(60u64) * unit), "{rows:?}");
    let holder = users::Entity::find().filter(users::Column::ExternalRef.eq(user)).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(chain.balance_of(holder.address.parse().unwrap()).await, U256::ZERO);
    assert_eq!(chain.total_supply().await, ledger_total(&daemon).await);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_is_answered_only_after_the_batch_in_flight_committed_and_nothing_is_signed_after_it() {
    use sea_orm::{ConnectionTrait, Statement};
    let chain = TestChain::start(Some(1)).await;
    let (daemon, keys, wallets) = Prepared::new(Backend::Postgres, &chain, 1).await.start(&chain).await;
    // The wallet actor stops inside its reserve transaction, after it read "not paused".
    let gate = Gate::arm("wallet::before_fence", "wallet::fence_target", &wallets[0].id.to_string()).await;
    // One commit, so one batch takes all three.
    let txn = sea_orm::TransactionTrait::begin(&daemon.db).await.unwrap();
    let mut before = Vec::new();
    for i in 0..3 {
        let intent = havend::ledger::NewIntent {
            user: format!("tribe:pause_{i}"),
            kind: havend::chain::CallKind::Mint,
            amount: U256::from(10u64).pow(U256::from(18)),
            reason: "test".into(),
            source: format!("pause:before:{i}"),
            reverses: None,
        };
        before.push(havend::ledger::enqueue_in(&txn, &keys, intent).await.unwrap().id);
    }
    txn.commit().await.unwrap();
    daemon.daemon().nudge_wallets();
    let held = gate.reached(Duration::from_secs(10)).await;
    let headers = [("authorization".to_owned(), format!("Bearer {ADMIN_KEY}")), ("content-type".to_owned(), "application/json".to_owned())];
    let mut pause = Box::pin(daemon.post("/api/v1/admin/pause", &headers, serde_json::json!({ "paused": true }).to_string()));
    let lock_wait = || async {
        let sql = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let row = daemon.db.query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql)).await.unwrap().unwrap();
        row.try_get::<i64>("", "n").unwrap() > 0
    };
    let waited = tokio::select! {
        answer = &mut pause => Err(answer),
        waited = eventually(Duration::from_secs(10), lock_wait) => Ok(waited),
    };
    gate.release();
    assert!(held, "the wallet actor reached its reserve's fence");
    assert!(matches!(waited, Ok(true)), "the pause waits for the reserve in flight instead of answering: {waited:?}");
    let answer = pause.await;
    assert_eq!((answer.status, &answer.json), (200, &serde_json::json!({ "paused": true })));
    let statuses: Vec<String> =
        entity::transactions::Entity::find().filter(entity::transactions::Column::Id.is_in(before)).all(&daemon.db).await.unwrap().into_iter().map(|t| t.status).collect();
    assert!(statuses.iter().all(|s| s != "queued"), "the batch in flight committed before the answer: {statuses:?}");

    // After the answer nothing more is signed, however often the actor looks.
    let attempts = entity::tx_attempts::Entity::find().count(&daemon.db).await.unwrap();
    let after = mint(&daemon, &keys, "tribe:pause_after", 1, "pause:after").await;
    let ticks = || async { daemon.daemon().wallet_statuses().await[0].ticks };
    let looked_from = ticks().await;
    daemon.daemon().nudge_wallets();
    assert!(eventually(Duration::from_secs(10), || async { ticks().await >= looked_from + 5 }).await, "the wallet actor kept looking");
    assert_eq!(status_of(&daemon, after.id).await, "queued", "nothing is signed after the pause was answered");
    assert_eq!(entity::tx_attempts::Entity::find().count(&daemon.db).await.unwrap(), attempts, "no attempt was written after the answer");
    havend::ledger::pause::set_paused(&daemon.db, false, "test").await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    assert_eq!(count_with_status(&daemon, "confirmed").await, 4);
    daemon.stop().await;
}

crate::on_both_backends!(
    work_left_on_a_retired_wallet_is_swept_to_an_active_one,
    two_reversals_of_one_user_in_one_batch_together_burn_no_more_than_the_user_holds,
);

/// A provider that refuses `eth_getLogs` over more than 2 blocks (as public
/// ones refuse wide ranges), `chain.log_range_blocks = 2`, an execution 10
/// blocks after its attempt was signed and 20 blocks before the revert: the
/// search for the executing transaction starts at the block the intent's
/// first attempt was signed at (recorded on every attempt) and walks forward
/// in windows the provider accepts until it finds it. Searching from block 0
/// to the head, as before, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intent_executed_search_walks_forward_from_the_signing_block_in_windows_the_provider_accepts() {
    use alloy::providers::ext::AnvilApi;
    use sea_orm::ActiveModelTrait;
    use crate::support::rpc_proxy::{RpcProxy, is_method};
    let chain = TestChain::start(Some(1)).await;
    let proxy = RpcProxy::start(&chain.url, Some(2)).await;
    let prepared = Prepared::new(Backend::Postgres, &chain, 1).await;
    let rpc_url = proxy.url.clone();
    let (daemon, keys, wallets) = prepared
        .start_with(&chain, |db| db.url.clone(), move |config| {
            config.rpc_url = rpc_url;
            config.log_range_blocks = 2;
        })
        .await;
    // Room below the head for an attempt signed well before it was mined.
    chain.admin_provider().anvil_mine(Some(20), None).await.unwrap();
    let intent = mint(&daemon, &keys, "aurora:guest_window", 7, "window:1").await;
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let first = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
    let attempts = entity::tx_attempts::Entity::find().filter(entity::tx_attempts::Column::TransactionId.eq(intent.id)).all(&daemon.db).await.unwrap();
    let recorded = attempts.iter().map(|a| a.sent_block.expect("every attempt records the block it was signed at")).min().unwrap();
    assert!(recorded >= 20 && recorded < first.block_number.unwrap(), "the head when it was signed, before the block that mined it: {recorded}");
    // As if it had waited 10 blocks in the pool (a slow or congested chain).
    let signed_at = recorded - 10;
    entity::tx_attempts::Entity::update_many()
        .col_expr(entity::tx_attempts::Column::SentBlock, sea_orm::sea_query::Expr::value(signed_at))
        .filter(entity::tx_attempts::Column::TransactionId.eq(intent.id))
        .exec(&daemon.db)
        .await
        .unwrap();

    // The execution falls far behind the head; then, as if its receipt had
    // been missed and its nonce wrongly declared foreign, the intent is
    // queued again as its next generation, signed anew, and reverts.
    chain.admin_provider().anvil_mine(Some(20), None).await.unwrap();
    let nonce = first.nonce.unwrap();
    let mut row: entity::transactions::ActiveModel = first.clone().into();
    row.status = sea_orm::Set("queued".into());
    row.nonce = sea_orm::Set(None);
    row.generation = sea_orm::Set(1);
    row.tx_hash = sea_orm::Set(None);
    row.update(&daemon.db).await.unwrap();
    entity::foreign_nonces::ActiveModel {
        wallet_id: sea_orm::Set(wallets[0].id),
        nonce: sea_orm::Set(nonce),
        detected_at: sea_orm::Set(chrono::Utc::now()),
    }
    .insert(&daemon.db)
    .await
    .unwrap();
    daemon.daemon().nudge_wallets();
    assert!(drained(&daemon, Duration::from_secs(60)).await, "the reverted second generation is settled");
    let second = entity::transactions::Entity::find_by_id(intent.id).one(&daemon.db).await.unwrap().unwrap();
    assert_ne!(second.nonce, first.nonce, "signed again under a new nonce, and reverted on chain");
    assert_eq!((second.status.as_str(), &second.tx_hash), ("confirmed", &first.tx_hash), "confirmed by the transaction that executed it");

    let block = |value: &serde_json::Value| value.as_str().and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
    let searches = proxy.count(|call| is_method(call, "eth_getLogs"));
    assert!(searches >= 5, "the 10 blocks between signing and execution take five 2-block windows: {searches}");
    // The search starts the finality depth below the signing block (a reorg can lower the head).
    let depth = daemon.daemon().config().load().chain.as_ref().unwrap().finality_depth;
    let before_signing = proxy.count(|call| is_method(call, "eth_getLogs") && block(&call["params"][0]["fromBlock"]).is_none_or(|from| from + depth < signed_at as u64));
    assert_eq!(before_signing, 0, "no search starts before the first attempt was signed, less the finality depth");
    assert!(alerts(&daemon, "transaction_failed").await.is_empty());
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}
