//! The transaction monitor against a slow chain: an intent that stays on its
//! way to the chain past the threshold raises `transaction_pending` once; a
//! gas spike holds new mints (never burns) until it falls back or the cap.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::ext::AnvilApi;
use havend::chain::CallKind;
use havend::ledger::{self, NewIntent, gas_hold};
use havend::webhooks::Partner;

use crate::support::chain::{Prepared, TestChain, alerts, chain_config, mint, wallets_looked};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_pending_past_the_threshold_raises_transaction_pending_once() {
    let chain = TestChain::start(None).await;
    let Prepared { database, key_dir, wallets, .. } = Prepared::new(Backend::Sqlite, &chain, 1).await;
    // From now on a block every 60 s: a signed mint stays pending long enough to be noticed.
    chain.admin_provider().anvil_set_interval_mining(60).await.unwrap();
    let key_file = key_dir.path().join("master.key");
    let wallet: Address = wallets[0].address.parse().unwrap();
    let config_chain = chain_config(&chain, &[wallet]);
    let mut daemon = TestDaemon::start_on(database, |db| db.url.clone(), move |config| {
        config.chain = Some(config_chain);
        config.custody.master_key_file = Some(key_file);
        config.monitor.interval_secs = 1;
        config.monitor.pending_after_secs = 2;
        config.monitor.stalled_looks = 3;
    })
    .await;
    daemon.keep.push(key_dir);
    let body = r#"{"id":"bk_slow","guest_id":"g_slow","total_price":"1","nights":1}"#;
    assert_eq!(daemon.deliver(Partner::Aurora, Some("booking-created"), body).await.status, 200);
    let raised = eventually(Duration::from_secs(20), || async { !alerts(&daemon, "transaction_pending").await.is_empty() }).await;
    assert!(raised, "the monitor raised transaction_pending");
    // Three more looks with the wallet's nonce unchanged: the stall is raised too.
    let stalled = eventually(Duration::from_secs(20), || async {
        alerts(&daemon, "transaction_pending").await.iter().any(|a| a.details.contains("looks"))
    })
    .await;
    assert!(stalled, "the stalled nonce was raised");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let raised = alerts(&daemon, "transaction_pending").await;
    let intent_alerts = raised.iter().filter(|a| a.details.contains("transaction_id")).count();
    let stall_alerts = raised.iter().filter(|a| a.details.contains("looks")).count();
    assert_eq!((intent_alerts, stall_alerts), (1, 1), "each raised once while it lasts: {raised:?}");
    let summary = havend::monitor::summary(&daemon.db).await.unwrap();
    assert!(summary.oldest_pending.is_some() && summary.wallets.len() == 1, "{summary:?}");
    daemon.stop().await;
}

async fn status_of(daemon: &TestDaemon, id: uuid::Uuid) -> String {
    use sea_orm::EntityTrait;
    entity::transactions::Entity::find_by_id(id).one(&daemon.db).await.unwrap().unwrap().status
}

/// Makes the next block's base fee `fee` and mines it: what the monitor reads as the latest base fee.
async fn set_base_fee(chain: &TestChain, fee: u128) {
    let admin = chain.admin_provider();
    admin.anvil_set_next_block_base_fee_per_gas(fee).await.unwrap();
    admin.evm_mine(None).await.unwrap();
}

/// A spike holds a new mint while a burn (a reversal) goes; the mint goes
/// once the fee falls back (INFO alert). A second spike outlasts a shorter
/// cap (set by a reload): the mint then goes while the fee is still high.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mints_wait_out_a_gas_spike_that_burns_skip_and_go_when_it_falls_back_or_at_the_cap() {
    let chain = TestChain::start(None).await;
    let Prepared { database, keys, key_dir, wallets } = Prepared::new(Backend::Sqlite, &chain, 1).await;
    let key_file = key_dir.path().join("master.key");
    let wallet: Address = wallets[0].address.parse().unwrap();
    let config_chain = chain_config(&chain, &[wallet]);
    let mut daemon = TestDaemon::start_on(database, |db| db.url.clone(), move |config| {
        config.chain = Some(config_chain);
        config.custody.master_key_file = Some(key_file);
        config.monitor.interval_secs = 1;
        config.monitor.gas_spike_factor = 2;
        config.monitor.gas_hold_max_secs = 120;
    })
    .await;
    daemon.keep.push(key_dir);
    let held = || async { gas_hold::is_held(&daemon.db, chrono::Utc::now()).await.unwrap() };
    let unit = U256::from(10u64).pow(U256::from(18));

    // A mint confirmed before the spike, to be reversed during it.
    let before = mint(&daemon, &keys, "aurora:gas_guest", 10, "gas:before").await;
    daemon.daemon().nudge_wallets();
    assert!(eventually(Duration::from_secs(20), || async { status_of(&daemon, before.id).await == "confirmed" }).await);
    // Two looks at a quiet chain: the baseline is set and the flag written clear.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!held().await);
    let normal = chain.client().base_fee().await.unwrap().max(1);

    set_base_fee(&chain, normal * 50).await;
    assert!(eventually(Duration::from_secs(10), || async { held().await }).await, "the monitor holds mints during the spike");
    let waiting = mint(&daemon, &keys, "aurora:gas_guest", 7, "gas:during").await;
    let burn = ledger::enqueue(
        &daemon.db,
        &keys,
        NewIntent {
            user: "aurora:gas_guest".into(),
            kind: CallKind::Burn,
            amount: U256::from(10u64) * unit,
            reason: "test".into(),
            source: "gas:reversal".into(),
            reverses: Some(before.id),
        },
    )
    .await
    .unwrap();
    daemon.daemon().nudge_wallets();
    let burned = eventually(Duration::from_secs(20), || async { status_of(&daemon, burn.id).await == "confirmed" }).await;
    assert!(burned, "a burn never waits for gas");
    // Whole wallet ticks after the burn went: the mint is still queued.
    assert!(wallets_looked(&daemon).await);
    assert_eq!(status_of(&daemon, waiting.id).await, "queued", "a new mint waits out the spike");
    assert!(daemon.daemon().wallet_statuses().await.iter().all(|w| w.gas_hold), "the wallet reports the hold");
    let spikes = alerts(&daemon, "gas_price_spike").await;
    assert!(spikes.iter().any(|a| a.severity == "WARNING" && a.message.contains("new mints wait")), "{spikes:?}");

    set_base_fee(&chain, normal).await;
    let minted = eventually(Duration::from_secs(20), || async { status_of(&daemon, waiting.id).await == "confirmed" }).await;
    assert!(minted, "the mint goes once the fee falls back");
    assert!(!held().await);
    let fell_back = alerts(&daemon, "gas_price_spike").await.into_iter().filter(|a| a.severity == "INFO").count();
    assert_eq!(fell_back, 1, "falling back is raised at INFO");
    assert_eq!(chain.balance_of(havend::ledger::ensure_user(&daemon.db, &keys, "aurora:gas_guest", &[]).await.unwrap().address.parse().unwrap()).await, U256::from(7u64) * unit);

    // A shorter cap, as a reload would set it; then a spike that does not end.
    // The cap leaves room for two wallet ticks on a loaded CI machine (a
    // 4 s cap once lapsed before the test could see the mint held).
    let mut config = (**daemon.daemon().config().load()).clone();
    config.monitor.gas_hold_max_secs = 10;
    daemon.daemon().config().store(std::sync::Arc::new(config));
    set_base_fee(&chain, normal * 50).await;
    assert!(eventually(Duration::from_secs(10), || async { held().await }).await, "the second spike holds mints too");
    let capped = mint(&daemon, &keys, "aurora:gas_guest", 3, "gas:capped").await;
    assert!(wallets_looked(&daemon).await);
    assert_eq!(status_of(&daemon, capped.id).await, "queued", "held at first");
    let went = eventually(Duration::from_secs(30), || async { status_of(&daemon, capped.id).await == "confirmed" }).await;
    assert!(went, "after the cap the mint goes although the fee is still high");
    let base_fee_now = chain.client().base_fee().await.unwrap();
    assert!(base_fee_now > normal * 2, "the spike still lasts: {base_fee_now} vs {normal}");
    let raised = alerts(&daemon, "gas_price_spike").await;
    assert_eq!(raised.iter().filter(|a| a.severity == "INFO").count(), 1, "no fall-back was raised: {raised:?}");
    assert!(raised.iter().any(|a| a.message.contains("outlasted")), "the lapsed hold is raised: {raised:?}");
    daemon.stop().await;
}
