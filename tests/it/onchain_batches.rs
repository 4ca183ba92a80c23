//! Batch minting: the token's `mintBatch`/`burnBatch` with a bitmap of used
//! intent numbers, and the wallet actors sending many intents per
//! transaction while every intent still ends in exactly one effective
//! execution, against real anvil and both databases.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use entity::transactions;
use havend::chain::{CallKind, EntryResult, HavenToken, HavenTokenSingle, TokenAbi, admin, entry_results};
use havend::ledger::{self, NewIntent};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::support::chain::*;
use crate::support::*;

fn seqs(values: &[u64]) -> Vec<U256> {
    values.iter().map(|v| U256::from(*v)).collect()
}

fn key(seq: u64) -> B256 {
    B256::from(U256::from(seq))
}

/// Grants the admin account both roles, so a test can call the token directly.
async fn admin_may_mint_and_burn(chain: &TestChain, token: Address) {
    admin::grant_roles(&chain.url, &chain.admin, token, chain.admin.address()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_skips_used_numbers_and_unfunded_burns_and_executes_the_rest() {
    let chain = TestChain::start(None).await;
    admin_may_mint_and_burn(&chain, chain.token).await;
    let token = HavenToken::new(chain.token, chain.admin_provider());
    let (a, b) = (Address::repeat_byte(0x42), Address::repeat_byte(0x43));

    let first = token.mintBatch(vec![a, b], seqs(&[5, 7]), seqs(&[1, 2])).send().await.unwrap().get_receipt().await.unwrap();
    assert!(first.status());
    // Number 2 again: skipped, never reverting the batch; number 3 mints.
    let second = token.mintBatch(vec![a, b], seqs(&[5, 9]), seqs(&[3, 2])).send().await.unwrap().get_receipt().await.unwrap();
    assert!(second.status(), "a used number does not revert the batch");
    assert_eq!(entry_results(chain.token, second.logs()), HashMap::from([(key(3), EntryResult::Executed), (key(2), EntryResult::Used)]));
    assert_eq!((chain.balance_of(a).await, chain.balance_of(b).await), (U256::from(10), U256::from(7)));

    // b holds 7: burning 100 is skipped as unfunded, the others go.
    let third = token.burnBatch(vec![a, b, a], seqs(&[4, 100, 1]), seqs(&[4, 5, 1])).send().await.unwrap().get_receipt().await.unwrap();
    assert!(third.status());
    assert_eq!(
        entry_results(chain.token, third.logs()),
        HashMap::from([(key(4), EntryResult::Executed), (key(5), EntryResult::Insufficient), (key(1), EntryResult::Used)])
    );
    assert_eq!((chain.balance_of(a).await, chain.balance_of(b).await), (U256::from(6), U256::from(7)));
    assert!(token.intentUsed(U256::from(5)).call().await.unwrap(), "an unfunded burn's number is used");
    // …so it never burns later.
    let fourth = token.burnBatch(vec![b], seqs(&[1]), seqs(&[5])).send().await.unwrap().get_receipt().await.unwrap();
    assert_eq!(entry_results(chain.token, fourth.logs()), HashMap::from([(key(5), EntryResult::Used)]));
    assert_eq!(chain.balance_of(b).await, U256::from(7));
    assert_eq!(chain.total_supply().await, U256::from(13));

    // The log search finds what settled each number: an execution, an unfunded skip; a used skip settles nothing.
    let head = chain.client().block_number().await.unwrap();
    let found = chain.client().intent_executions(chain.token, &[key(2), key(5), key(99)], 0, head).await.unwrap();
    assert_eq!(found.get(&key(2)).map(|f| (f.0, f.3)), Some((first.transaction_hash, EntryResult::Executed)));
    assert_eq!(found.get(&key(5)).map(|f| (f.0, f.3)), Some((third.transaction_hash, EntryResult::Insufficient)));
    assert!(!found.contains_key(&key(99)));

    let mismatched = token.mintBatch(vec![a], seqs(&[1, 2]), seqs(&[9])).send().await;
    let reverted = match mismatched {
        Err(_) => true,
        Ok(pending) => !pending.get_receipt().await.unwrap().status(),
    };
    assert!(reverted, "arrays of different lengths revert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_intent_token_rejects_a_reused_intent_id() {
    let chain = TestChain::start(None).await;
    let address = admin::deploy_single_token(&chain.url, &chain.admin).await.unwrap();
    admin_may_mint_and_burn(&chain, address).await;
    let contract = HavenTokenSingle::new(address, chain.admin_provider());
    let intent = havend::chain::intent_id(uuid::Uuid::now_v7());
    let to = Address::repeat_byte(0x42);
    let first = contract.mint(to, U256::from(5), intent).send().await.unwrap().get_receipt().await.unwrap();
    assert!(first.status());
    assert_eq!(entry_results(address, first.logs()), HashMap::from([(intent, EntryResult::Executed)]));
    let second = contract.mint(to, U256::from(5), intent).send().await;
    let reverted = match second {
        Err(_) => true,
        Ok(pending) => !pending.get_receipt().await.unwrap().status(),
    };
    assert!(reverted, "the second mint of one intent id reverts");
    assert_eq!(chain.client().total_supply(address).await.unwrap(), U256::from(5));
}

/// Gas used by one transaction of `input` to the token, sent by the admin and mined.
async fn gas_used(chain: &TestChain, to: Address, input: alloy::primitives::Bytes) -> u64 {
    let tx = alloy::rpc::types::TransactionRequest::default().to(to).input(input.into()).gas_limit(29_000_000);
    let receipt = chain.admin_provider().send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());
    receipt.gas_used
}

/// The figures behind the defaults (printed; `cargo test … -- --nocapture`):
/// per reward, a batch of 100 costs under a third of a single-intent
/// transaction, and the worst case (new holders, each number opening a fresh
/// bitmap slot) stays under the default per-entry limits, so a batch sized by
/// them never runs out of gas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_rewards_cost_under_a_third_of_single_ones_and_fit_the_default_gas_limits() {
    use havend::chain::{Entry, encode_call};
    use havend::config::{BATCH_BASE_GAS, PER_BURN_GAS, PER_MINT_GAS};
    let chain = TestChain::start(None).await;
    admin_may_mint_and_burn(&chain, chain.token).await;
    let single = admin::deploy_single_token(&chain.url, &chain.admin).await.unwrap();
    admin_may_mint_and_burn(&chain, single).await;
    let holder = |i: u64| Address::left_padding_from(&(0x1000 + i).to_be_bytes());
    let entries = |first_holder: u64, seq: &dyn Fn(u64) -> u64, n: u64| -> Vec<Entry> {
        (0..n).map(|i| Entry { transaction_id: uuid::Uuid::now_v7(), seq: seq(i), account: holder(first_holder + i), amount: U256::from(10u64.pow(18)) }).collect()
    };
    let call = |abi, kind, entries: &[Entry]| encode_call(abi, kind, entries);

    let single_new = gas_used(&chain, single, call(TokenAbi::Single, CallKind::Mint, &entries(0, &|i| i, 1))).await;
    let single_existing = gas_used(&chain, single, call(TokenAbi::Single, CallKind::Mint, &entries(0, &|i| i, 1))).await;
    // Dense numbers to new holders (the processor's common case), then to the same holders.
    let dense_new = gas_used(&chain, chain.token, call(TokenAbi::Batch, CallKind::Mint, &entries(0, &|i| 1 + i, 100))).await;
    let dense_existing = gas_used(&chain, chain.token, call(TokenAbi::Batch, CallKind::Mint, &entries(0, &|i| 101 + i, 100))).await;
    // Worst cases: every number in its own fresh slot, every holder new; burns each in a fresh slot.
    let worst_mint = gas_used(&chain, chain.token, call(TokenAbi::Batch, CallKind::Mint, &entries(500, &|i| 1_000_000 + i * 256, 100))).await;
    let worst_burn = gas_used(&chain, chain.token, call(TokenAbi::Batch, CallKind::Burn, &entries(500, &|i| 2_000_000 + i * 256, 100))).await;
    let one_mint = gas_used(&chain, chain.token, call(TokenAbi::Batch, CallKind::Mint, &entries(900, &|i| 3_000_000 + i * 256, 1))).await;
    println!(
        "gas per reward: single token {single_new} (new holder) / {single_existing} (existing); batch of 100: {} (new) / {} (existing); \
         worst case per mint {} and per burn {}; a batch of one {one_mint}",
        dense_new / 100,
        dense_existing / 100,
        worst_mint / 100,
        worst_burn / 100
    );
    assert!(dense_new * 3 < single_new * 100, "new holders: {} per reward in a batch vs {single_new}", dense_new / 100);
    assert!(dense_existing * 3 < single_existing * 100, "existing holders: {} per reward in a batch vs {single_existing}", dense_existing / 100);
    assert!(worst_mint <= BATCH_BASE_GAS + 100 * PER_MINT_GAS, "worst mint batch {worst_mint} over its default limit");
    assert!(worst_burn <= BATCH_BASE_GAS + 100 * PER_BURN_GAS, "worst burn batch {worst_burn} over its default limit");
    assert!(one_mint <= BATCH_BASE_GAS + PER_MINT_GAS, "a batch of one {one_mint} over its default limit");
}

async fn connect(url: &str) -> DatabaseConnection {
    let mut config = havend::config::Config::default();
    config.database.url = Some(havend::config::Secret::new(url));
    havend::db::connect(&config).await.unwrap()
}

fn intent(user: &str, kind: CallKind, whole: u64, source: &str) -> NewIntent {
    NewIntent {
        user: user.into(),
        kind,
        amount: U256::from(whole) * U256::from(10u64).pow(U256::from(18)),
        reason: "test".into(),
        source: source.into(),
        reverses: None,
    }
}

/// 250 mints queued before the daemon starts go out as 100 + 100 + 50 in
/// three nonces, and each is confirmed once, by the batch that carried it.
async fn a_backlog_goes_out_in_full_batches_and_each_intent_is_confirmed_once(backend: Backend) {
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(backend, &chain, 1).await;
    let keys = prepared.keys.clone();
    let db = connect(&prepared.database.url).await;
    for i in 0..250 {
        ledger::enqueue(&db, &keys, intent(&format!("guest-{}", i % 40), CallKind::Mint, 1 + i % 3, &format!("backlog:{i}"))).await.unwrap();
    }
    db.close().await.ok();
    let (daemon, _, wallets) = prepared.start(&chain).await;
    assert!(drained(&daemon, Duration::from_secs(60)).await, "the backlog drains");
    let rows = transactions::Entity::find().all(&daemon.db).await.unwrap();
    assert!(rows.iter().all(|t| t.status == "confirmed"), "every intent confirmed");
    let mut per_nonce: HashMap<i64, usize> = HashMap::new();
    for t in &rows {
        *per_nonce.entry(t.nonce.unwrap()).or_default() += 1;
    }
    let mut sizes: Vec<usize> = per_nonce.values().copied().collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![50, 100, 100], "batches by nonce");
    let seqs: BTreeSet<i64> = rows.iter().map(|t| t.seq.unwrap()).collect();
    assert_eq!(seqs.len(), rows.len(), "every intent has its own number");
    assert_eq!(chain.total_supply().await, ledger_total(&daemon).await, "supply == ledger");
    for i in 0..40 {
        let user = ledger::find_user(&daemon.db, &format!("guest-{i}")).await.unwrap().unwrap();
        let owed = ledger::holdings(&daemon.db, user.id, uuid::Uuid::nil()).await.unwrap();
        assert_eq!(chain.balance_of(user.address.parse().unwrap()).await, owed, "guest-{i}: chain == ledger");
    }
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}

/// A reward whose number was executed on chain by another transaction (a
/// double-send anywhere upstream) is skipped by havend's batch and recorded
/// as confirmed by that transaction: the guest is credited once.
async fn an_intent_executed_elsewhere_is_confirmed_by_that_transaction_and_minted_once(backend: Backend) {
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(backend, &chain, 1).await;
    let keys = prepared.keys.clone();
    let db = connect(&prepared.database.url).await;
    let twice = ledger::enqueue(&db, &keys, intent("guest-twice", CallKind::Mint, 7, "twice")).await.unwrap();
    let other = ledger::enqueue(&db, &keys, intent("guest-other", CallKind::Mint, 3, "other")).await.unwrap();
    let guest = ledger::find_user(&db, "guest-twice").await.unwrap().unwrap();
    db.close().await.ok();
    admin_may_mint_and_burn(&chain, chain.token).await;
    let token = HavenToken::new(chain.token, chain.admin_provider());
    let amount = U256::from_str_radix(&twice.amount, 10).unwrap();
    let elsewhere = token
        .mintBatch(vec![guest.address.parse().unwrap()], vec![amount], seqs(&[twice.seq.unwrap() as u64]))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let (daemon, _, _) = prepared.start(&chain).await;
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let twice = transactions::Entity::find_by_id(twice.id).one(&daemon.db).await.unwrap().unwrap();
    let other = transactions::Entity::find_by_id(other.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!((twice.status.as_str(), other.status.as_str()), ("confirmed", "confirmed"));
    assert_eq!(twice.tx_hash, Some(elsewhere.transaction_hash.to_string()), "confirmed by the transaction that executed it");
    assert_ne!(other.tx_hash, twice.tx_hash);
    assert_eq!(chain.balance_of(guest.address.parse().unwrap()).await, amount, "minted once");
    assert_eq!(chain.total_supply().await, ledger_total(&daemon).await);
    daemon.stop().await;
}

/// A burn its holder cannot cover on chain (here: someone burned the tokens
/// outside havend) is skipped by the token, recorded confirmed for nothing
/// with its amount as the shortfall, and alerted; the batch's other burn goes.
async fn an_unfunded_burn_is_settled_for_nothing_with_its_shortfall_and_alerted(backend: Backend) {
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(backend, &chain, 1).await;
    let (daemon, keys, _) = prepared.start(&chain).await;
    let db = daemon.daemon().db().clone();
    for (user, source) in [("guest-a", "mint-a"), ("guest-b", "mint-b")] {
        ledger::enqueue(&db, &keys, intent(user, CallKind::Mint, 5, source)).await.unwrap();
    }
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let a = ledger::find_user(&db, "guest-a").await.unwrap().unwrap();
    let a_address: Address = a.address.parse().unwrap();
    admin_may_mint_and_burn(&chain, chain.token).await;
    let token = HavenToken::new(chain.token, chain.admin_provider());
    let five = U256::from(5) * U256::from(10u64).pow(U256::from(18));
    token.burnBatch(vec![a_address], vec![five], seqs(&[u64::MAX >> 1])).send().await.unwrap().get_receipt().await.unwrap();
    let gone = ledger::enqueue(&db, &keys, intent("guest-a", CallKind::Burn, 2, "burn-a")).await.unwrap();
    let kept = ledger::enqueue(&db, &keys, intent("guest-b", CallKind::Burn, 2, "burn-b")).await.unwrap();
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let gone = transactions::Entity::find_by_id(gone.id).one(&db).await.unwrap().unwrap();
    let kept = transactions::Entity::find_by_id(kept.id).one(&db).await.unwrap().unwrap();
    assert_eq!((gone.status.as_str(), gone.amount.as_str()), ("confirmed", "0"));
    assert_eq!(gone.shortfall, Some((U256::from(2) * U256::from(10u64).pow(U256::from(18))).to_string()));
    assert_eq!((kept.status.as_str(), kept.nonce), ("confirmed", gone.nonce), "one burn batch carried both");
    let b = ledger::find_user(&db, "guest-b").await.unwrap().unwrap();
    assert_eq!(chain.balance_of(b.address.parse().unwrap()).await, U256::from(3) * U256::from(10u64).pow(U256::from(18)));
    let alerted = alerts(&daemon, "burn_unfunded").await;
    assert_eq!(alerted.len(), 1, "{alerted:?}");
    assert!(alerted[0].details.contains(&gone.id.to_string()));
    daemon.stop().await;
}

crate::on_both_backends!(
    a_backlog_goes_out_in_full_batches_and_each_intent_is_confirmed_once,
    an_intent_executed_elsewhere_is_confirmed_by_that_transaction_and_minted_once,
    an_unfunded_burn_is_settled_for_nothing_with_its_shortfall_and_alerted,
);

/// A deployment whose token predates batches (`chain.token_abi = "single"`)
/// still gets one `mint` per intent, each confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_intent_token_still_gets_one_transaction_per_intent() {
    let mut chain = TestChain::start(None).await;
    chain.token = admin::deploy_single_token(&chain.url, &chain.admin).await.unwrap();
    let prepared = Prepared::new(Backend::Sqlite, &chain, 1).await;
    let (daemon, keys, wallets) = prepared.start_with(&chain, |db| db.url.clone(), |config| config.token_abi = TokenAbi::Single).await;
    for i in 0..3 {
        mint(&daemon, &keys, "guest", 2, &format!("single:{i}")).await;
    }
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let rows = transactions::Entity::find().filter(transactions::Column::Status.eq("confirmed")).all(&daemon.db).await.unwrap();
    let nonces: BTreeSet<i64> = rows.iter().filter_map(|t| t.nonce).collect();
    assert_eq!((rows.len(), nonces.len()), (3, 3), "one nonce per intent");
    assert_eq!(chain.total_supply().await, U256::from(6) * U256::from(10u64).pow(U256::from(18)));
    assert_nonces_accounted(&daemon, &chain, &wallets[0]).await;
    daemon.stop().await;
}
