//! The transaction monitor against a slow chain: an intent that stays on its
//! way to the chain past the threshold raises `transaction_pending` once.

use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::ext::AnvilApi;
use havend::webhooks::Partner;

use crate::support::chain::{Prepared, TestChain, alerts, chain_config};
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
