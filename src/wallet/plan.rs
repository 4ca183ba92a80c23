//! The wallet actor's reconciliation decisions as one pure function: what
//! havend has in flight and what the chain said this tick go in, actions
//! (settle, requeue, halt, send, re-sign with bumped fees) come out. No I/O,
//! no clock: the actor gathers the [`Snapshot`] and executes the [`Action`]s
//! with fenced writes, so every rule here is tested without a chain.
//!
//! A nonce carries a batch: 1..B intents of one kind that every attempt at
//! that nonce executes, settled together (each with its own outcome, from
//! the token's logs) and requeued together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use alloy::primitives::B256;
use uuid::Uuid;

use crate::chain::{EntryResult, Fees};

/// One attempt (signed transaction) of an in-flight intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptView {
    /// Its hash.
    pub hash: B256,
    /// Its fees.
    pub fees: Fees,
}

/// One signed batch at its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightView {
    /// The nonce every attempt of its generation shares.
    pub nonce: u64,
    /// The intents every attempt at the nonce carries, in call order.
    pub entries: Vec<Uuid>,
    /// Its attempts at `nonce`, oldest first; the newest is the one sent.
    pub attempts: Vec<AttemptView>,
    /// Time since the newest attempt was last sent; `None`: not sent since
    /// this actor started (it may or may not be in the node's pool).
    pub sent_ago: Option<Duration>,
    /// The node refused it lately and its retry backoff has not run out.
    pub backing_off: bool,
    /// The node refused its newest attempt as underpriced (under the base
    /// fee, or too small a bump over the pooled one): only a replacement helps.
    pub refused_underpriced: bool,
}

/// Where the node says a transaction was mined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    /// The transaction.
    pub hash: B256,
    /// Its block.
    pub block: u64,
    /// That block's hash (a reorg replaces it).
    pub block_hash: B256,
    /// Executed (true) or reverted.
    pub success: bool,
}

/// What the chain said this tick.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The node's chain id.
    pub chain_id: u64,
    /// The head block number.
    pub head: u64,
    /// The wallet's nonce at the head: nonces below it are consumed.
    pub latest_nonce: u64,
    /// The wallet's nonce at the finality depth: nonces below it are final.
    pub final_nonce: u64,
    /// Receipts of our attempts, current as of this tick, by attempt hash.
    pub receipts: HashMap<B256, Mined>,
    /// Attempt hashes whose receipt and presence the node was asked about
    /// this tick; a hash not here tells nothing.
    pub looked_up: HashSet<B256>,
    /// Of `looked_up`, the hashes the node knows (pooled or mined).
    pub known: HashSet<B256>,
    /// Base fee of the next block, wei.
    pub base_fee: u128,
    /// The tip the market pays now, wei.
    pub market_tip: u128,
    /// How long `latest_nonce` has not moved while work was pending.
    pub stalled_for: Duration,
    /// What the token's logs say each successful receipt of `receipts` did
    /// with each of its intents, by attempt hash. A receipt not here was not read.
    pub results: HashMap<B256, HashMap<Uuid, EntryResult>>,
    /// For intents whose transaction reverted or skipped them as used: the
    /// transaction that settled the intent earlier (its `IntentExecuted`
    /// log, or its skip of a burn its holder could not cover), `None` if
    /// there is none. An intent not here was not looked up.
    pub executed_by: HashMap<Uuid, Option<(Mined, EntryResult)>>,
}

/// How one intent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Minted or burned.
    Confirmed,
    /// A burn its holder could not cover: settled for nothing, the amount
    /// becomes the shortfall.
    Unfunded,
    /// Reverted, and no other transaction executed it.
    Failed,
}

/// The final outcome of one intent of a settled nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The intent.
    pub transaction_id: Uuid,
    /// The transaction that decided it: the mined attempt, or for an
    /// intent settled earlier, the one whose log says so.
    pub mined: Mined,
    /// How.
    pub settlement: Settlement,
}

/// The configuration the rules depend on.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The chain the wallet signs for.
    pub chain_id: u64,
    /// Blocks a receipt needs (1 = the head itself) to be final.
    pub finality_depth: u64,
    /// When a sent, unmined transaction is checked for again.
    pub resend_after: Duration,
    /// How long the chain nonce may stand still before the lowest pending
    /// transaction counts as stuck (and is replaced if its tip is under the market).
    pub stuck_after: Duration,
}

/// What the planner remembers between ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Consumed nonces none of whose attempts the node knows, with the head
    /// of the first look: a second look at a later block is needed before
    /// such a nonce is declared foreign.
    pub suspects: BTreeMap<u64, u64>,
}

/// What the actor is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop signing for the wallet.
    Halt {
        /// Why.
        reason: String,
        /// A transaction havend did not send used a nonce: CRITICAL, kept
        /// until an operator resumes the wallet.
        foreign: bool,
    },
    /// Record the final outcome of every intent at `nonce`.
    Settle {
        /// Its nonce.
        nonce: u64,
        /// One per intent of the batch, in its order.
        outcomes: Vec<Settled>,
    },
    /// A transaction we did not send consumed `nonce` (final, none of our
    /// attempts known on two looks): record it and queue its intents again
    /// as their next generation, together.
    Requeue {
        /// The foreign nonce.
        nonce: u64,
        /// Every intent of the batch.
        transaction_ids: Vec<Uuid>,
    },
    /// Send the newest attempt at `nonce` (again): never sent since start,
    /// or the node forgot it. The same bytes, so harmless.
    Send {
        /// The nonce.
        nonce: u64,
    },
    /// Sign a new attempt at `nonce` with bumped fees and send it.
    Bump {
        /// The nonce.
        nonce: u64,
    },
}

/// Decides this tick's actions. `in_flight` is ordered by nonce; `memory`
/// is updated in place.
pub fn plan(in_flight: &[InFlightView], snapshot: &Snapshot, rules: &Rules, memory: &mut Memory) -> Vec<Action> {
    if snapshot.chain_id != rules.chain_id {
        // Nothing the node says about another chain may settle or requeue anything.
        return vec![Action::Halt { reason: format!("node is on chain {}, config says {}", snapshot.chain_id, rules.chain_id), foreign: false }];
    }
    let mut actions = Vec::new();
    let mut foreign = false;
    memory.suspects.retain(|nonce, _| in_flight.iter().any(|f| f.nonce == *nonce));
    for entry in in_flight {
        let mined = entry.attempts.iter().find_map(|a| snapshot.receipts.get(&a.hash));
        if let Some(mined) = mined {
            memory.suspects.remove(&entry.nonce);
            if let Some(action) = settle(entry, mined, snapshot, rules) {
                actions.push(action);
            }
        } else if entry.nonce < snapshot.latest_nonce {
            if is_foreign(entry, snapshot, memory) {
                actions.push(Action::Requeue { nonce: entry.nonce, transaction_ids: entry.entries.clone() });
                foreign = true;
            }
        } else {
            memory.suspects.remove(&entry.nonce);
            if let Some(action) = resend(entry, snapshot, rules) {
                actions.push(action);
            }
        }
    }
    if foreign {
        actions.push(Action::Halt { reason: "a transaction havend did not send used a nonce of this wallet".into(), foreign: true });
    }
    actions
}

/// A mined batch, once final at the depth, settles every intent at once:
/// executed → confirmed by it; a burn its holder could not cover → settled
/// for nothing by it; skipped as used, or reverted → decided by the earlier
/// transaction whose log settled the intent (confirmed, or unfunded), once
/// that one is final too; a reverted intent nothing else executed → failed.
/// A number used with no earlier log found was executed all the same (only
/// an execution or an unfunded skip marks it): confirmed by this one.
fn settle(entry: &InFlightView, mined: &Mined, snapshot: &Snapshot, rules: &Rules) -> Option<Action> {
    let is_final = |m: &Mined| m.block + rules.finality_depth <= snapshot.head + 1;
    if !is_final(mined) {
        return None;
    }
    let results = if mined.success { Some(snapshot.results.get(&mined.hash)?) } else { None };
    let mut outcomes = Vec::with_capacity(entry.entries.len());
    for &transaction_id in &entry.entries {
        let direct = results.map(|r| r.get(&transaction_id).copied());
        let (decided, settlement) = match direct {
            Some(Some(EntryResult::Executed)) => (*mined, Settlement::Confirmed),
            Some(Some(EntryResult::Insufficient)) => (*mined, Settlement::Unfunded),
            // Mined without a word about it: not the token havend calls.
            Some(None) => (*mined, Settlement::Failed),
            Some(Some(EntryResult::Used)) | None => match snapshot.executed_by.get(&transaction_id)? {
                Some((earlier, result)) if is_final(earlier) => {
                    (*earlier, if *result == EntryResult::Insufficient { Settlement::Unfunded } else { Settlement::Confirmed })
                }
                Some(_) => return None,
                None if mined.success => (*mined, Settlement::Confirmed),
                None => (*mined, Settlement::Failed),
            },
        };
        outcomes.push(Settled { transaction_id, mined: decided, settlement });
    }
    Some(Action::Settle { nonce: entry.nonce, outcomes })
}

/// The intents of a final mined batch whose outcome needs the earlier
/// transaction that settled them: all of a reverted one, and those a
/// successful one skipped as used (its logs in `results`).
pub fn needs_lookup(entry: &InFlightView, mined: &Mined, results: Option<&HashMap<Uuid, EntryResult>>) -> Vec<Uuid> {
    if !mined.success {
        return entry.entries.clone();
    }
    let Some(results) = results else { return Vec::new() };
    entry.entries.iter().filter(|id| results.get(id) == Some(&EntryResult::Used)).copied().collect()
}

/// A consumed nonce without a receipt of ours is foreign only when it is
/// final, every attempt was asked about and is unknown to the node, and that
/// held on an earlier look at an earlier block too.
fn is_foreign(entry: &InFlightView, snapshot: &Snapshot, memory: &mut Memory) -> bool {
    let all_asked = entry.attempts.iter().all(|a| snapshot.looked_up.contains(&a.hash));
    let any_known = entry.attempts.iter().any(|a| snapshot.known.contains(&a.hash));
    if !all_asked || any_known || entry.nonce >= snapshot.final_nonce {
        if any_known {
            memory.suspects.remove(&entry.nonce);
        }
        return false;
    }
    match memory.suspects.get(&entry.nonce) {
        Some(first) if snapshot.head > *first => {
            memory.suspects.remove(&entry.nonce);
            true
        }
        Some(_) => false,
        None => {
            memory.suspects.insert(entry.nonce, snapshot.head);
            false
        }
    }
}

/// A pending intent: not sent since start → send; fee cap under the base
/// fee, or the lowest pending one stuck with a tip under the market →
/// replace; the node forgot it → send again.
fn resend(entry: &InFlightView, snapshot: &Snapshot, rules: &Rules) -> Option<Action> {
    if entry.backing_off {
        return None;
    }
    let newest = entry.attempts.last()?;
    if entry.refused_underpriced {
        return Some(Action::Bump { nonce: entry.nonce });
    }
    let Some(sent_ago) = entry.sent_ago else { return Some(Action::Send { nonce: entry.nonce }) };
    // Each attempt gets `resend_after` to be mined before it is judged, so
    // fees rise one bump per period, not one per tick.
    if sent_ago < rules.resend_after {
        return None;
    }
    let stuck = entry.nonce == snapshot.latest_nonce && snapshot.stalled_for >= rules.stuck_after;
    if newest.fees.max_fee_per_gas < snapshot.base_fee || stuck && newest.fees.max_priority_fee_per_gas < snapshot.market_tip {
        return Some(Action::Bump { nonce: entry.nonce });
    }
    let forgotten = snapshot.looked_up.contains(&newest.hash) && !snapshot.known.contains(&newest.hash);
    forgotten.then_some(Action::Send { nonce: entry.nonce })
}

/// Where the search for an intent's `IntentExecuted` log starts, given the
/// block each of its attempts (every generation) was signed at: the
/// earliest, since no execution can precede the first signature, less the
/// finality depth (a reorg can put the head back below the block a
/// signature saw, and the transaction into a lower block). An attempt
/// signed before the block was recorded (`None`), or none at all, leaves
/// only the token's `deploy_block` as a safe start.
pub fn log_search_start(sent_blocks: &[Option<i64>], deploy_block: u64, finality_depth: u64) -> u64 {
    let recorded: Option<Vec<u64>> = sent_blocks.iter().map(|b| b.and_then(|b| u64::try_from(b).ok())).collect();
    match recorded.and_then(|blocks| blocks.into_iter().min()) {
        Some(first) => first.saturating_sub(finality_depth).max(deploy_block),
        None => deploy_block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_search_starts_at_the_first_signature_or_else_at_the_deploy_block() {
        assert_eq!(log_search_start(&[Some(120), Some(95), Some(130)], 10, 1), 94, "the earliest generation, less the depth");
        assert_eq!(log_search_start(&[Some(120), Some(95)], 10, 12), 83, "a reorg as deep as finality");
        assert_eq!(log_search_start(&[Some(120), None], 10, 1), 10, "an attempt from before the block was recorded");
        assert_eq!(log_search_start(&[], 10, 1), 10);
        assert_eq!(log_search_start(&[Some(5)], 10, 1), 10, "never before the token existed");
        assert_eq!(log_search_start(&[Some(-1)], 10, 1), 10);
    }

    const DEPTH: u64 = 3;

    fn rules() -> Rules {
        Rules { chain_id: 1, finality_depth: DEPTH, resend_after: Duration::from_secs(6), stuck_after: Duration::from_secs(6) }
    }

    fn hash(nonce: u64, attempt: u64) -> B256 {
        B256::left_padding_from(&(nonce * 1_000 + attempt + 1).to_be_bytes())
    }

    fn fees(cap: u128, tip: u128) -> Fees {
        Fees { max_fee_per_gas: cap, max_priority_fee_per_gas: tip }
    }

    /// In flight at `nonce` with `attempts` attempts (cap 100, tip 10), sent
    /// `sent` seconds ago, carrying one intent.
    fn entry(nonce: u64, attempts: u64, sent: Option<u64>) -> InFlightView {
        batch(nonce, attempts, sent, 1)
    }

    /// [`entry`] carrying `width` intents.
    fn batch(nonce: u64, attempts: u64, sent: Option<u64>, width: u64) -> InFlightView {
        InFlightView {
            nonce,
            entries: (0..width).map(|i| Uuid::from_u64_pair(nonce, i)).collect(),
            attempts: (0..attempts).map(|a| AttemptView { hash: hash(nonce, a), fees: fees(100 + a as u128 * 20, 10 + a as u128 * 2) }).collect(),
            sent_ago: sent.map(Duration::from_secs),
            backing_off: false,
            refused_underpriced: false,
        }
    }

    fn view(head: u64, latest: u64, fin: u64) -> Snapshot {
        Snapshot { chain_id: 1, head, latest_nonce: latest, final_nonce: fin, base_fee: 10, market_tip: 1, ..Snapshot::default() }
    }

    fn mined(hash: B256, block: u64, success: bool) -> Mined {
        Mined { hash, block, block_hash: B256::repeat_byte(block as u8), success }
    }

    /// `hash` mined `entry`, and its logs say `result` for each intent.
    fn logged(snapshot: &mut Snapshot, entry: &InFlightView, hash: B256, result: EntryResult) {
        snapshot.results.insert(hash, entry.entries.iter().map(|id| (*id, result)).collect());
    }

    /// Every attempt of `entry` asked about; `known` ones known to the node.
    fn looked(snapshot: &mut Snapshot, entry: &InFlightView, known: bool) {
        for a in &entry.attempts {
            snapshot.looked_up.insert(a.hash);
            if known {
                snapshot.known.insert(a.hash);
            }
        }
    }

    #[test]
    fn a_receipt_settles_only_at_the_finality_depth() {
        let e = entry(0, 1, Some(1));
        for (head, settles) in [(10, true), (9, false), (12, true)] {
            let mut s = view(head, 1, 1);
            s.receipts.insert(hash(0, 0), mined(hash(0, 0), 8, true));
            logged(&mut s, &e, hash(0, 0), EntryResult::Executed);
            let actions = plan(std::slice::from_ref(&e), &s, &rules(), &mut Memory::default());
            assert_eq!(actions.iter().any(|a| matches!(a, Action::Settle { .. })), settles, "head {head}");
        }
    }

    #[test]
    fn a_replacement_that_was_mined_settles_with_its_own_hash() {
        let e = entry(4, 3, Some(1));
        let mut s = view(20, 5, 5);
        s.receipts.insert(hash(4, 1), mined(hash(4, 1), 10, true));
        let actions = plan(std::slice::from_ref(&e), &s, &rules(), &mut Memory::default());
        assert!(actions.is_empty(), "a receipt whose logs were not read settles nothing: {actions:?}");
        logged(&mut s, &e, hash(4, 1), EntryResult::Executed);
        let actions = plan(std::slice::from_ref(&e), &s, &rules(), &mut Memory::default());
        let outcomes = vec![Settled { transaction_id: e.entries[0], mined: mined(hash(4, 1), 10, true), settlement: Settlement::Confirmed }];
        assert_eq!(actions, vec![Action::Settle { nonce: 4, outcomes }]);
    }

    #[test]
    fn a_batch_settles_each_intent_as_the_token_logged_it() {
        let e = batch(6, 1, Some(1), 5);
        let ours = mined(hash(6, 0), 10, true);
        let earlier = mined(B256::repeat_byte(0xee), 4, true);
        let mut s = view(20, 7, 7);
        s.receipts.insert(ours.hash, ours);
        let [executed, unfunded, used_elsewhere, used_unfunded_elsewhere, used_unfound] = e.entries[..] else { unreachable!() };
        s.results.insert(
            ours.hash,
            HashMap::from([
                (executed, EntryResult::Executed),
                (unfunded, EntryResult::Insufficient),
                (used_elsewhere, EntryResult::Used),
                (used_unfunded_elsewhere, EntryResult::Used),
                (used_unfound, EntryResult::Used),
            ]),
        );
        assert_eq!(needs_lookup(&e, &ours, s.results.get(&ours.hash)), vec![used_elsewhere, used_unfunded_elsewhere, used_unfound]);
        assert!(plan(std::slice::from_ref(&e), &s, &rules(), &mut Memory::default()).is_empty(), "skips not looked up yet: the whole batch waits");
        s.executed_by.insert(used_elsewhere, Some((earlier, EntryResult::Executed)));
        s.executed_by.insert(used_unfunded_elsewhere, Some((earlier, EntryResult::Insufficient)));
        s.executed_by.insert(used_unfound, None);
        let actions = plan(std::slice::from_ref(&e), &s, &rules(), &mut Memory::default());
        let settled = |transaction_id, mined, settlement| Settled { transaction_id, mined, settlement };
        let expected = vec![
            settled(executed, ours, Settlement::Confirmed),
            settled(unfunded, ours, Settlement::Unfunded),
            settled(used_elsewhere, earlier, Settlement::Confirmed),
            settled(used_unfunded_elsewhere, earlier, Settlement::Unfunded),
            settled(used_unfound, ours, Settlement::Confirmed),
        ];
        assert_eq!(actions, vec![Action::Settle { nonce: 6, outcomes: expected }]);
        // The earlier transaction not final yet (a reorg could still drop it): wait.
        s.executed_by.insert(used_elsewhere, Some((mined(earlier.hash, 19, true), EntryResult::Executed)));
        assert!(plan(std::slice::from_ref(&e), &s, &rules(), &mut Memory::default()).is_empty());
    }

    #[test]
    fn a_foreign_nonce_requeues_every_intent_of_its_batch_together() {
        let e = batch(3, 2, Some(30), 4);
        let mut memory = Memory { suspects: BTreeMap::from([(3, 40)]) };
        let mut s = view(50, 4, 4);
        looked(&mut s, &e, false);
        let actions = plan(std::slice::from_ref(&e), &s, &rules(), &mut memory);
        assert!(actions.contains(&Action::Requeue { nonce: 3, transaction_ids: e.entries.clone() }), "{actions:?}");
    }

    #[test]
    fn a_revert_of_an_intent_executed_elsewhere_settles_confirmed_by_that_transaction() {
        let e = entry(2, 1, Some(1));
        let elsewhere = mined(B256::repeat_byte(0xee), 5, true);
        let later = mined(B256::repeat_byte(0xee), 19, true);
        let failed = mined(hash(2, 0), 10, false);
        // (what the log lookup found, if it ran) → how the intent settles, if it does.
        type Case = (Option<Option<(Mined, EntryResult)>>, Option<(Mined, Settlement)>);
        let cases: [Case; 4] = [
            (None, None),                                                                    // not looked up yet: no decision
            (Some(None), Some((failed, Settlement::Failed))),                                // really failed
            (Some(Some((elsewhere, EntryResult::Executed))), Some((elsewhere, Settlement::Confirmed))), // IntentAlreadyUsed: confirmed by the other
            (Some(Some((later, EntryResult::Executed))), None),                              // the other not final yet: wait
        ];
        for (executed, expected) in cases {
            let mut s = view(20, 3, 3);
            s.receipts.insert(hash(2, 0), mined(hash(2, 0), 10, false));
            if let Some(executed) = executed {
                s.executed_by.insert(e.entries[0], executed);
            }
            let actions = plan(std::slice::from_ref(&e), &s, &rules(), &mut Memory::default());
            let settled = actions.iter().find_map(|a| match a {
                Action::Settle { outcomes, .. } => Some((outcomes[0].mined, outcomes[0].settlement)),
                _ => None,
            });
            assert_eq!(settled, expected, "{executed:?}");
        }
    }

    #[test]
    fn a_nonce_is_foreign_only_when_final_unknown_and_seen_so_on_two_looks_a_block_apart() {
        let e = entry(3, 2, Some(30));
        let requeued = |actions: &[Action]| actions.iter().any(|a| matches!(a, Action::Requeue { nonce: 3, .. }));
        // Unknown and final: first look only suspects it.
        let mut memory = Memory::default();
        let mut s = view(50, 4, 4);
        looked(&mut s, &e, false);
        assert!(!requeued(&plan(std::slice::from_ref(&e), &s, &rules(), &mut memory)));
        // The same block looked at again: still no.
        assert!(!requeued(&plan(std::slice::from_ref(&e), &s, &rules(), &mut memory)));
        // A later block: foreign, requeued and the wallet halts (CRITICAL).
        s.head = 51;
        let actions = plan(std::slice::from_ref(&e), &s, &rules(), &mut memory);
        assert!(requeued(&actions));
        assert!(actions.contains(&Action::Halt { reason: "a transaction havend did not send used a nonce of this wallet".into(), foreign: true }));

        // Not final (a lagging node or a reorg): never.
        let mut memory = Memory::default();
        for head in [50, 51, 52] {
            let mut s = view(head, 4, 3);
            looked(&mut s, &e, false);
            assert!(!requeued(&plan(std::slice::from_ref(&e), &s, &rules(), &mut memory)));
        }
        // One attempt still known to the node (a missed receipt): never, and the suspicion is dropped.
        let mut memory = Memory { suspects: BTreeMap::from([(3, 40)]) };
        let mut s = view(50, 4, 4);
        looked(&mut s, &e, false);
        s.known.insert(hash(3, 1));
        assert!(!requeued(&plan(std::slice::from_ref(&e), &s, &rules(), &mut memory)));
        assert!(memory.suspects.is_empty());
        // An attempt not asked about this tick: no decision.
        let mut memory = Memory { suspects: BTreeMap::from([(3, 40)]) };
        let mut s = view(50, 4, 4);
        s.looked_up.insert(hash(3, 0));
        assert!(!requeued(&plan(&[e], &s, &rules(), &mut memory)));
    }

    #[test]
    fn pending_transactions_are_sent_replaced_or_left_alone() {
        let stalled = Duration::from_secs(60);
        // (sent ago, base fee, market tip, stalled for, node knows it, nonce == chain nonce) → action
        let cases = [
            (None, 10, 1, Duration::ZERO, true, true, Some("send")),          // not sent since start
            (Some(1), 500, 1, Duration::ZERO, true, true, None),              // just sent: give it time
            (Some(10), 500, 1, Duration::ZERO, true, true, Some("bump")),     // cap under the base fee
            (Some(10), 10, 50, stalled, true, true, Some("bump")),            // stuck, tip under the market
            (Some(10), 10, 50, stalled, true, false, None),                   // not the lowest pending nonce
            (Some(10), 10, 50, Duration::ZERO, true, true, None),             // tip low but the chain moves
            (Some(10), 10, 5, stalled, true, true, None),                     // stuck, but the tip is the market's
            (Some(10), 10, 1, Duration::ZERO, false, true, Some("send")),     // the node forgot it
            (Some(10), 10, 1, Duration::ZERO, true, true, None),              // pooled and fine
        ];
        for (sent, base_fee, tip, stalled_for, known, lowest, expected) in cases {
            let e = entry(7, 1, sent);
            let mut s = view(100, if lowest { 7 } else { 6 }, 6);
            s.base_fee = base_fee;
            s.market_tip = tip;
            s.stalled_for = stalled_for;
            s.looked_up.insert(hash(7, 0));
            if known {
                s.known.insert(hash(7, 0));
            }
            let e = if lowest { e } else { InFlightView { nonce: 7, ..e } };
            let actions = plan(&[e], &s, &rules(), &mut Memory::default());
            let got = actions.first().map(|a| match a {
                Action::Send { .. } => "send",
                Action::Bump { .. } => "bump",
                other => panic!("unexpected {other:?}"),
            });
            assert_eq!(got, expected, "sent {sent:?} base {base_fee} tip {tip} stalled {stalled_for:?} known {known} lowest {lowest}");
        }
        let mut refused = entry(7, 1, None);
        refused.refused_underpriced = true;
        assert_eq!(plan(&[refused], &view(100, 7, 7), &rules(), &mut Memory::default()), vec![Action::Bump { nonce: 7 }], "refused as underpriced: replaced");
        let mut backing_off = entry(7, 1, Some(100));
        backing_off.backing_off = true;
        let mut s = view(100, 7, 7);
        s.base_fee = 500;
        assert!(plan(&[backing_off], &s, &rules(), &mut Memory::default()).is_empty(), "a refused nonce waits out its backoff");
    }

    #[test]
    fn a_node_on_another_chain_halts_everything_and_settles_nothing() {
        let e = entry(0, 1, Some(1));
        let mut s = view(100, 1, 1);
        s.chain_id = 5;
        s.receipts.insert(hash(0, 0), mined(hash(0, 0), 10, true));
        let actions = plan(&[e], &s, &rules(), &mut Memory::default());
        assert!(matches!(actions.as_slice(), [Action::Halt { foreign: false, .. }]), "{actions:?}");
    }

    mod properties {
        use proptest::prelude::*;

        use alloy::primitives::U256;

        use super::*;

        /// What became of one in-flight nonce in a generated chain view.
        #[derive(Debug, Clone)]
        enum Fate {
            /// Attempt `attempt` mined at `depth_back` blocks below the head.
            /// Its logs say `results[i]` of intent `i` (0 executed, 1 used, 2 insufficient).
            Mined { attempt: usize, depth_back: u64, success: bool, results: Vec<u8> },
            /// No receipt; `known` says which attempts the node knows.
            Unmined { known: Vec<bool> },
        }

        #[derive(Debug, Clone)]
        struct Case {
            in_flight: Vec<InFlightView>,
            snapshot: Snapshot,
        }

        fn case() -> impl Strategy<Value = Case> {
            let nonce = (1usize..4, prop_oneof![
                (0usize..3, 0u64..6, any::<bool>(), proptest::collection::vec(0u8..3, 4))
                    .prop_map(|(attempt, depth_back, success, results)| Fate::Mined { attempt, depth_back, success, results }),
                proptest::collection::vec(any::<bool>(), 3).prop_map(|known| Fate::Unmined { known }),
            ], any::<bool>(), proptest::option::of(0u64..20), 1u64..5, proptest::option::of(0u64..8));
            (0u64..50, proptest::collection::vec(nonce, 0..8), 0u64..10, 0u64..10, any::<bool>())
                .prop_map(|(first, nonces, consumed, unfinal, all_looked)| {
                    let head = 100;
                    let mut snapshot = view(head, 0, 0);
                    let mut in_flight = Vec::new();
                    for (i, (attempts, fate, looked, sent, width, earlier)) in nonces.into_iter().enumerate() {
                        let n = first + i as u64;
                        let mut e = batch(n, attempts as u64, sent, width);
                        e.attempts.truncate(attempts);
                        match fate {
                            Fate::Mined { attempt, depth_back, success, results } => {
                                let a = &e.attempts[attempt % attempts];
                                let ours = mined(a.hash, head - depth_back, success);
                                snapshot.receipts.insert(a.hash, ours);
                                snapshot.looked_up.insert(a.hash);
                                snapshot.known.insert(a.hash);
                                let results: HashMap<Uuid, EntryResult> = e.entries.iter().zip(results).map(|(id, r)| {
                                    (*id, [EntryResult::Executed, EntryResult::Used, EntryResult::Insufficient][r as usize])
                                }).collect();
                                // Intents settled earlier by another transaction, `earlier` blocks back (none when absent).
                                for id in needs_lookup(&e, &ours, success.then_some(&results)) {
                                    let other = earlier.map(|back| (mined(B256::from(U256::from(n * 10 + back)), head - back, true), EntryResult::Executed));
                                    snapshot.executed_by.insert(id, other);
                                }
                                if success {
                                    snapshot.results.insert(a.hash, results);
                                }
                            }
                            Fate::Unmined { known } => {
                                for (a, known) in e.attempts.iter().zip(known) {
                                    if looked || all_looked {
                                        snapshot.looked_up.insert(a.hash);
                                        if known {
                                            snapshot.known.insert(a.hash);
                                        }
                                    }
                                }
                            }
                        }
                        in_flight.push(e);
                    }
                    let last = first + in_flight.len() as u64;
                    snapshot.latest_nonce = (first + consumed).min(last + 2);
                    snapshot.final_nonce = snapshot.latest_nonce.saturating_sub(unfinal).max(first.min(snapshot.latest_nonce));
                    Case { in_flight, snapshot }
                })
        }

        fn attempts_of(case: &Case, nonce: u64) -> &[AttemptView] {
            &in_flight_at(case, nonce).attempts
        }

        fn in_flight_at(case: &Case, nonce: u64) -> &InFlightView {
            case.in_flight.iter().find(|e| e.nonce == nonce).expect("an action names an in-flight nonce")
        }

        proptest! {
            // No regression files: the repository's top level holds only what SPEC section 1 lists.
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

            /// Invariant 3: a nonce is requeued only when it is final and
            /// none of its attempts was mined or is known to the node, and
            /// then with every intent of its batch; a settled nonce settles
            /// each of its intents exactly once, by one of its own attempts
            /// or by the earlier transaction that settled that intent, never
            /// before the finality depth.
            #[test]
            fn never_requeues_a_nonce_one_of_ours_mined_and_settles_one_attempt_per_nonce(case in case(), earlier in proptest::option::of(90u64..=100)) {
                let mut memory = Memory::default();
                if let Some(first_look) = earlier {
                    for e in &case.in_flight {
                        memory.suspects.insert(e.nonce, first_look);
                    }
                }
                let actions = plan(&case.in_flight, &case.snapshot, &rules(), &mut memory);
                let mut settled = HashSet::new();
                for action in &actions {
                    match action {
                        Action::Requeue { nonce, transaction_ids } => {
                            prop_assert_eq!(transaction_ids, &in_flight_at(&case, *nonce).entries, "a batch requeued in part");
                            let attempts = attempts_of(&case, *nonce);
                            prop_assert!(*nonce < case.snapshot.final_nonce, "requeued a nonce that is not final");
                            prop_assert!(attempts.iter().all(|a| !case.snapshot.receipts.contains_key(&a.hash)), "requeued a nonce one of ours mined");
                            prop_assert!(attempts.iter().all(|a| case.snapshot.looked_up.contains(&a.hash) && !case.snapshot.known.contains(&a.hash)));
                            prop_assert!(earlier.is_some_and(|first| first < case.snapshot.head), "requeued without an earlier look at an earlier block");
                        }
                        Action::Settle { nonce, outcomes } => {
                            prop_assert!(settled.insert(*nonce), "nonce {} settled twice", nonce);
                            let ids: Vec<Uuid> = outcomes.iter().map(|o| o.transaction_id).collect();
                            prop_assert_eq!(&ids, &in_flight_at(&case, *nonce).entries, "not every intent of the batch settled, once each");
                            for outcome in outcomes {
                                let own = attempts_of(&case, *nonce).iter().any(|a| a.hash == outcome.mined.hash);
                                let earlier = case.snapshot.executed_by.get(&outcome.transaction_id).copied().flatten().map(|(m, _)| m);
                                prop_assert!(own || earlier == Some(outcome.mined), "settled by a transaction that is neither its own nor its earlier one");
                                prop_assert!(outcome.mined.block + DEPTH <= case.snapshot.head + 1, "settled before the finality depth");
                                prop_assert!(outcome.settlement != Settlement::Failed || !outcome.mined.success || !own, "a successful batch failed an intent");
                            }
                        }
                        Action::Send { nonce } | Action::Bump { nonce } => {
                            prop_assert!(*nonce >= case.snapshot.latest_nonce, "re-sent or replaced a consumed nonce");
                            attempts_of(&case, *nonce);
                        }
                        Action::Halt { foreign, .. } => prop_assert!(*foreign),
                    }
                }
                let requeued: HashSet<u64> = actions.iter().filter_map(|a| match a { Action::Requeue { nonce, .. } => Some(*nonce), _ => None }).collect();
                prop_assert!(requeued.is_disjoint(&settled));
            }

            /// Invariant 4: over two looks a block apart, every final
            /// consumed nonce whose attempts were all asked about is
            /// accounted for: settled by its receipt, requeued as foreign,
            /// or still known to the node (a receipt yet to come). None is
            /// silently skipped.
            #[test]
            fn every_final_consumed_nonce_is_accounted_for_within_two_looks(case in case()) {
                let mut memory = Memory::default();
                let mut snapshot = case.snapshot.clone();
                let mut actions = plan(&case.in_flight, &snapshot, &rules(), &mut memory);
                snapshot.head += 1;
                actions.extend(plan(&case.in_flight, &snapshot, &rules(), &mut memory));
                for e in case.in_flight.iter().filter(|e| e.nonce < case.snapshot.final_nonce) {
                    if !e.attempts.iter().all(|a| snapshot.looked_up.contains(&a.hash)) {
                        continue;
                    }
                    let receipt = e.attempts.iter().find_map(|a| snapshot.receipts.get(&a.hash));
                    let known = e.attempts.iter().any(|a| snapshot.known.contains(&a.hash));
                    let settled = actions.iter().any(|a| matches!(a, Action::Settle { nonce, .. } if *nonce == e.nonce));
                    let requeued = actions.iter().any(|a| matches!(a, Action::Requeue { nonce, .. } if *nonce == e.nonce));
                    let accounted = match receipt {
                        // A fresh receipt waits for depth; one whose intents wait for an earlier transaction, for that.
                        Some(m) => {
                            let waits_for_earlier = e.entries.iter().any(|id| snapshot.executed_by.get(id).copied().flatten().is_some_and(|(o, _)| o.block + DEPTH > snapshot.head + 1));
                            settled || waits_for_earlier || m.block + DEPTH > snapshot.head + 1
                        }
                        None => requeued || known,
                    };
                    prop_assert!(accounted, "nonce {} left unaccounted: {:?}", e.nonce, actions);
                }
            }

            /// Replacements keep the nonce: every action that signs or sends
            /// names a nonce of the in-flight set, and each nonce gets at
            /// most one such action per tick.
            #[test]
            fn replacements_keep_their_nonce_and_come_one_per_tick(case in case()) {
                let actions = plan(&case.in_flight, &case.snapshot, &rules(), &mut Memory::default());
                let mut touched = HashSet::new();
                for action in &actions {
                    if let Action::Send { nonce } | Action::Bump { nonce } = action {
                        prop_assert!(case.in_flight.iter().any(|e| e.nonce == *nonce));
                        prop_assert!(touched.insert(*nonce), "two sends or bumps of nonce {} in one tick", nonce);
                    }
                }
            }
        }
    }
}
