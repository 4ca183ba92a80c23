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
/// gas per reward at batch sizes 1, 10 and 100, to new and to existing
/// holders, beside a single-intent token's. At 100, existing holders cost
/// at most a third of a single mint and new holders at most 0.4; the worst
/// case (new holders, each number opening a fresh bitmap slot) stays under
/// the default per-entry limits, so a batch sized by them never runs out of gas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_rewards_cost_under_a_third_of_single_ones_and_fit_the_default_gas_limits() {
    use havend::chain::{Entry, encode_call};
    use havend::config::{BATCH_BASE_GAS, PER_BURN_GAS, PER_MINT_GAS};
    let chain = TestChain::start(None).await;
    admin_may_mint_and_burn(&chain, chain.token).await;
    let single = admin::deploy_single_token(&chain.url, &chain.admin).await.unwrap();
    admin_may_mint_and_burn(&chain, single).await;
    let holder = |i: u64| Address::left_padding_from(&(0x1000 + i).to_be_bytes());
    let entries = |first_holder: u64, first_seq: u64, spacing: u64, n: u64| -> Vec<Entry> {
        (0..n)
            .map(|i| Entry { transaction_id: uuid::Uuid::now_v7(), seq: first_seq + i * spacing, account: holder(first_holder + i), amount: U256::from(10u64.pow(18)) })
            .collect()
    };
    let send = |to, abi, kind, entries: Vec<Entry>| {
        let n = entries.len() as u64;
        let input = encode_call(abi, kind, &entries);
        let chain = &chain;
        async move { gas_used(chain, to, input).await / n }
    };
    // Neither token's first mint (its total supply from zero) counts.
    send(single, TokenAbi::Single, CallKind::Mint, entries(100_000, 0, 1, 1)).await;
    send(chain.token, TokenAbi::Batch, CallKind::Mint, entries(100_000, 0, 1, 1)).await;
    let single_new = send(single, TokenAbi::Single, CallKind::Mint, entries(0, 0, 1, 1)).await;
    let single_existing = send(single, TokenAbi::Single, CallKind::Mint, entries(0, 0, 1, 1)).await;
    let mut rows = vec![format!("{:>5} {:>9} {:>9}", "batch", "new", "existing"), format!("{:>5} {single_new:>9} {single_existing:>9}  (single-intent token)", 1)];
    let mut at_100 = (0, 0);
    let mut seq = 1_000;
    for n in [1u64, 10, 100] {
        let first = 1_000 * n;
        // Consecutive numbers, as the database hands them out.
        let new = send(chain.token, TokenAbi::Batch, CallKind::Mint, entries(first, seq, 1, n)).await;
        let existing = send(chain.token, TokenAbi::Batch, CallKind::Mint, entries(first, seq + n, 1, n)).await;
        seq += 2 * n + 256;
        rows.push(format!("{n:>5} {new:>9} {existing:>9}"));
        at_100 = (new, existing);
    }
    // Worst cases: every number in its own fresh slot, every holder new; burns each in a fresh slot.
    let worst_mint = send(chain.token, TokenAbi::Batch, CallKind::Mint, entries(500_000, 1_000_000, 256, 100)).await;
    let worst_burn = send(chain.token, TokenAbi::Batch, CallKind::Burn, entries(500_000, 2_000_000, 256, 100)).await;
    let lone_mint = send(chain.token, TokenAbi::Batch, CallKind::Mint, entries(900_000, 3_000_000, 256, 1)).await;
    println!("gas per reward:\n{}\nworst case per mint {worst_mint}, per burn {worst_burn}; a lone mint in a fresh slot {lone_mint}", rows.join("\n"));
    let (new, existing) = at_100;
    assert!(existing * 3 <= single_existing, "existing holders: {existing} per reward in a batch of 100 vs {single_existing}");
    assert!(new * 10 <= single_new * 4, "new holders: {new} per reward in a batch of 100 vs {single_new}");
    assert!(worst_mint * 100 <= BATCH_BASE_GAS + 100 * PER_MINT_GAS, "worst mint batch over its default limit");
    assert!(worst_burn * 100 <= BATCH_BASE_GAS + 100 * PER_BURN_GAS, "worst burn batch over its default limit");
    assert!(lone_mint <= BATCH_BASE_GAS + PER_MINT_GAS, "a batch of one over its default limit");
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

/// A double-send bug (a confirmed intent queued again, as if never sent)
/// puts the intent's number into a second batch: the token skips it as used,
/// and havend records it confirmed by its first transaction; the guest is
/// credited once, the batch's other reward as usual.
async fn a_confirmed_intent_sent_again_in_a_new_batch_is_skipped_and_stays_confirmed_by_its_first_transaction(backend: Backend) {
    use sea_orm::ActiveModelTrait;
    let chain = TestChain::start(None).await;
    let prepared = Prepared::new(backend, &chain, 1).await;
    let (daemon, keys, _) = prepared.start(&chain).await;
    let first = mint(&daemon, &keys, "guest-again", 4, "again:1").await;
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let confirmed = transactions::Entity::find_by_id(first.id).one(&daemon.db).await.unwrap().unwrap();
    let mut row: transactions::ActiveModel = confirmed.clone().into();
    row.status = sea_orm::Set("queued".into());
    row.nonce = sea_orm::Set(None);
    row.tx_hash = sea_orm::Set(None);
    row.block_number = sea_orm::Set(None);
    row.update(&daemon.db).await.unwrap();
    let later = mint(&daemon, &keys, "guest-again", 1, "again:2").await;
    assert!(drained(&daemon, Duration::from_secs(30)).await);
    let again = transactions::Entity::find_by_id(first.id).one(&daemon.db).await.unwrap().unwrap();
    let later = transactions::Entity::find_by_id(later.id).one(&daemon.db).await.unwrap().unwrap();
    assert_eq!(again.status, "confirmed");
    assert_eq!((again.tx_hash.clone(), again.block_number), (confirmed.tx_hash.clone(), confirmed.block_number), "confirmed by its first transaction");
    assert_eq!(later.status, "confirmed");
    let sent = attempts_of(&daemon.db, first.id).await;
    assert_eq!(sent.len(), 2, "the intent went out in two transactions");
    let second = sent.iter().find(|a| Some(&a.tx_hash) != confirmed.tx_hash.as_ref()).unwrap();
    let receipt = chain.client().receipt(second.tx_hash.parse().unwrap()).await.unwrap().expect("mined");
    assert_eq!(entry_results(chain.token, receipt.logs()).get(&key(first.seq.unwrap() as u64)), Some(&EntryResult::Used), "skipped on chain");
    let guest = ledger::find_user(&daemon.db, "guest-again").await.unwrap().unwrap();
    assert_eq!(chain.balance_of(guest.address.parse().unwrap()).await, U256::from(5) * U256::from(10u64).pow(U256::from(18)), "credited once");
    assert_eq!(chain.total_supply().await, ledger_total(&daemon).await);
    // No nonce check: the simulated bug moved the intent's row off the nonce its first transaction used.
    daemon.stop().await;
}

crate::on_both_backends!(
    a_backlog_goes_out_in_full_batches_and_each_intent_is_confirmed_once,
    an_intent_executed_elsewhere_is_confirmed_by_that_transaction_and_minted_once,
    an_unfunded_burn_is_settled_for_nothing_with_its_shortfall_and_alerted,
    a_confirmed_intent_sent_again_in_a_new_batch_is_skipped_and_stays_confirmed_by_its_first_transaction,
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
