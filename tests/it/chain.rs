//! The chain pipeline on a real anvil: exactly-once minting, nonces, fencing,
//! outages, replacements and custody.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use entity::users;
use sea_orm::EntityTrait;

use crate::support::chain::*;
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
async fn contract_rejects_a_reused_intent_id() {
    let chain = TestChain::start(None).await;
    let contract = havend::chain::HavenToken::new(chain.token, chain.admin_provider());
    let minter = contract.MINTER_ROLE().call().await.unwrap();
    contract.grantRole(minter, chain.admin.address()).send().await.unwrap().get_receipt().await.unwrap();
    let intent = havend::chain::intent_id(uuid::Uuid::now_v7());
    let to = Address::repeat_byte(0x42);
    let first = contract.mint(to, U256::from(5), intent).send().await.unwrap().get_receipt().await.unwrap();
    assert!(first.status());
    let second = contract.mint(to, U256::from(5), intent).send().await;
    let reverted = match second {
        Err(_) => true,
        Ok(pending) => !pending.get_receipt().await.unwrap().status(),
    };
    assert!(reverted, "the second mint of one intent id reverts");
    assert_eq!(chain.total_supply().await, U256::from(5));
}
