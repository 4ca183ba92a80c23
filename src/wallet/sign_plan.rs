//! The wallet actor's signing of new work as pure decisions: whether a tick
//! may sign at all (free window slots, the operators' pause, a gas spike
//! holding mints), which queued intents go (a reversal only after its mint),
//! the nonce each one gets, and what a refused broadcast leads to. The actor
//! reads what [`next`] asks for, feeds it back in a [`Seen`], and executes the
//! final [`Step::Sign`]; every rule here is tested without a database or a chain.
//!
//! A nonce carries a batch: up to the batch size of intents of one kind, in
//! queue order, each batch taking the next nonce in the order its first
//! intent was queued (one intent per nonce on a single-intent token).

use std::collections::HashMap;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use crate::chain::{Entry, TokenAbi};
use uuid::Uuid;

use super::store::ReversalDecision;
use crate::chain::{CallKind, SendRejection};
use crate::ledger::gas_hold;
use crate::retry::Backoff;

/// A queued intent as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The intent.
    pub id: Uuid,
    /// Mint or burn; `None` for a kind this build does not know (never signed).
    pub kind: Option<CallKind>,
    /// The mint this burn reverses.
    pub reverses: Option<Uuid>,
    /// The user credited or debited.
    pub user_id: Uuid,
    /// Amount in base units, as stored (a decimal string).
    pub amount: String,
    /// Its number on chain.
    pub seq: Option<i64>,
}

impl From<entity::transactions::Model> for Queued {
    fn from(t: entity::transactions::Model) -> Self {
        Queued { id: t.id, kind: CallKind::parse(&t.kind), reverses: t.reverses, user_id: t.user_id, amount: t.amount, seq: t.seq }
    }
}

/// How the queued reversals were decided against their mints (see
/// [`store::decide_reversals`](super::store::decide_reversals)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reversals {
    /// Per reversal, the decision.
    pub decisions: HashMap<Uuid, ReversalDecision>,
    /// The ready reversals read again (their amount may have been clipped to
    /// what the user holds); one missing here is signed as queued.
    pub reloaded: HashMap<Uuid, Queued>,
}

/// What the actor has read this tick, as [`next`] asked for it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Nonces signed and not yet final.
    pub in_flight: usize,
    /// The latest read of the queue.
    pub queued: Option<Vec<Queued>>,
    /// That read left mints out (a gas spike holds them).
    pub mints_left_out: bool,
    /// The operators' pause.
    pub paused: Option<bool>,
    /// The gas spike hold (read only when mints are queued).
    pub gas_hold: Option<bool>,
    /// The queued reversals, decided.
    pub reversals: Option<Reversals>,
}

/// What the actor is to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Sign nothing this tick; `more`: queued work is waiting beyond this batch.
    Stop {
        /// Run another tick at once.
        more: bool,
    },
    /// Read up to `limit` queued intents (free nonces × batch size), in
    /// queue order (mints left out when `hold_mints`).
    ReadQueue {
        /// Free window slots.
        limit: u64,
        /// Leave mints out.
        hold_mints: bool,
    },
    /// Read the operators' pause.
    ReadPause,
    /// Read the gas spike hold.
    ReadGasHold,
    /// Decide these `(reversal, original)` pairs against their originals.
    DecideReversals(Vec<(Uuid, Uuid)>),
    /// Sign these intents, in this order, batched into consecutive nonces by [`assign`].
    Sign {
        /// The intents.
        intents: Vec<Queued>,
        /// The queue filled the window: run another tick at once.
        more: bool,
    },
}

/// Decides the next step of a tick's signing from what was read so far.
/// Reads happen only when needed, in the order the checks are cheap in: the
/// queue first (an idle wallet pays one query), then the pause, then the gas
/// hold (only with mints queued), then the reversals.
pub fn next(max_in_flight: usize, batch_size: usize, seen: &Seen) -> Step {
    let capacity = max_in_flight.saturating_sub(seen.in_flight).saturating_mul(batch_size.max(1));
    if capacity == 0 {
        return Step::Stop { more: false };
    }
    let Some(queued) = &seen.queued else { return Step::ReadQueue { limit: capacity as u64, hold_mints: false } };
    if queued.is_empty() {
        return Step::Stop { more: false };
    }
    // Checked again inside the reserve transaction; this only saves signing a batch for nothing.
    match seen.paused {
        None => return Step::ReadPause,
        Some(true) => return Step::Stop { more: false },
        Some(false) => {}
    }
    // A gas spike: mints wait, burns behind them go.
    if !seen.mints_left_out && queued.iter().any(|t| t.kind.is_some_and(gas_hold::waits_for_gas)) {
        match seen.gas_hold {
            None => return Step::ReadGasHold,
            Some(true) => return Step::ReadQueue { limit: capacity as u64, hold_mints: true },
            Some(false) => {}
        }
    }
    let more = queued.len() == capacity;
    let pairs = reversal_pairs(queued);
    let intents = if pairs.is_empty() {
        queued.clone()
    } else {
        let Some(reversals) = &seen.reversals else { return Step::DecideReversals(pairs) };
        select(queued, &pairs, reversals)
    };
    if intents.is_empty() {
        return Step::Stop { more };
    }
    Step::Sign { intents, more }
}

/// The `(reversal, original)` pairs among the queued intents.
fn reversal_pairs(queued: &[Queued]) -> Vec<(Uuid, Uuid)> {
    queued.iter().filter_map(|t| Some((t.id, t.reverses?))).collect()
}

/// A reversal burn is signed only after its mint is confirmed: a reversal
/// goes only when decided ready (as read again), and the original of a
/// cancelled reversal stays out (the reserve's compare-and-set on `queued`
/// would refuse it anyway). Queue order is kept.
fn select(queued: &[Queued], pairs: &[(Uuid, Uuid)], reversals: &Reversals) -> Vec<Queued> {
    let decided = |id: &Uuid| reversals.decisions.get(id);
    let originals: Vec<Uuid> =
        pairs.iter().filter(|(reversal, _)| decided(reversal) == Some(&ReversalDecision::Cancelled)).map(|(_, original)| *original).collect();
    queued
        .iter()
        .filter(|t| decided(&t.id).is_none_or(|d| *d == ReversalDecision::Ready) && !originals.contains(&t.id))
        .map(|t| reversals.reloaded.get(&t.id).unwrap_or(t).clone())
        .collect()
}

/// One batch with its nonce and what its call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Mint or burn, for every entry.
    pub kind: CallKind,
    /// Its nonce.
    pub nonce: u64,
    /// The intents, in call order.
    pub entries: Vec<Entry>,
    /// Its gas limit.
    pub gas_limit: u64,
}

/// The configured gas limits (pipelined calls cannot be estimated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasLimits {
    /// The token's calls.
    pub abi: TokenAbi,
    /// A single token's `mint`.
    pub mint: u64,
    /// A single token's `burn`.
    pub burn: u64,
    /// A batch's base.
    pub batch_base: u64,
    /// Per mint entry of a batch.
    pub per_mint: u64,
    /// Per burn entry of a batch.
    pub per_burn: u64,
}

impl GasLimits {
    /// The gas limit of a call of `kind` with `entries` intents.
    pub fn of(&self, kind: CallKind, entries: usize) -> u64 {
        match (self.abi, kind) {
            (TokenAbi::Single, CallKind::Mint) => self.mint,
            (TokenAbi::Single, CallKind::Burn) => self.burn,
            (TokenAbi::Batch, CallKind::Mint) => self.batch_base.saturating_add(self.per_mint.saturating_mul(entries as u64)),
            (TokenAbi::Batch, CallKind::Burn) => self.batch_base.saturating_add(self.per_burn.saturating_mul(entries as u64)),
        }
    }
}

/// Why a batch cannot be assigned (the stored intents are inconsistent: restart and reload).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssignError {
    /// The intent's user has no custodial address.
    #[error("user of intent {0} not found")]
    UnknownUser(Uuid),
    /// The stored amount is not a decimal number of base units.
    #[error("bad amount on intent {0}")]
    BadAmount(Uuid),
    /// The intent has no number on chain.
    #[error("intent {0} has no seq")]
    NoSeq(Uuid),
}

/// Batches the intents, in queue order, into calls of one kind of at most
/// `batch_size` entries each, and gives the batches consecutive nonces from
/// `start` in the order of their first intents: no wait for a batch to
/// fill, so a lone intent goes at once, a long queue in full batches. At
/// most `max_nonces` batches; an intent that would need another stays
/// queued (and with it every later one of its kind, so each kind keeps its
/// queue order). An intent of an unknown kind is left out.
pub fn assign(
    start: u64,
    intents: &[Queued],
    accounts: &HashMap<Uuid, Address>,
    gas: GasLimits,
    batch_size: usize,
    max_nonces: usize,
) -> Result<Vec<Assignment>, AssignError> {
    let batch_size = batch_size.max(1);
    let mut batches: Vec<(CallKind, Vec<Entry>)> = Vec::new();
    // The batch of each kind still filling: (mint, burn).
    let mut filling: (Option<usize>, Option<usize>) = (None, None);
    for intent in intents {
        let Some(kind) = intent.kind else { continue };
        let account = accounts.get(&intent.user_id).copied().ok_or(AssignError::UnknownUser(intent.id))?;
        let amount = U256::from_str_radix(&intent.amount, 10).map_err(|_| AssignError::BadAmount(intent.id))?;
        let seq = intent.seq.and_then(|seq| u64::try_from(seq).ok()).ok_or(AssignError::NoSeq(intent.id))?;
        let entry = Entry { transaction_id: intent.id, seq, account, amount };
        let open = match kind {
            CallKind::Mint => &mut filling.0,
            CallKind::Burn => &mut filling.1,
        };
        match open {
            Some(i) if batches[*i].1.len() < batch_size => batches[*i].1.push(entry),
            _ if batches.len() < max_nonces => {
                *open = Some(batches.len());
                batches.push((kind, vec![entry]));
            }
            _ => {}
        }
    }
    Ok(batches
        .into_iter()
        .enumerate()
        .map(|(i, (kind, entries))| Assignment { kind, nonce: start + i as u64, gas_limit: gas.of(kind, entries.len()), entries })
        .collect())
}

/// What the actor does after broadcasting one intent of a new batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSend {
    /// The node has it: record it as broadcast.
    Sent,
    /// The wallet lacks gas funds: hold new work and send no more of the batch.
    HoldForFunds,
    /// Underpriced: left as signed; the reconciliation planner replaces it on the next tick.
    LeaveToPlanner,
    /// Refused for a reason an operator must see: alert and back off.
    Refused(SendRejection),
    /// The transport failed: the rest stay signed and go out when it is back.
    StopSending,
}

/// Classifies a new batch's broadcast result (`Err`: the transport failed).
pub fn after_send(result: Result<Option<SendRejection>, ()>) -> AfterSend {
    match result {
        Ok(None | Some(SendRejection::AlreadyHandled)) => AfterSend::Sent,
        Ok(Some(SendRejection::InsufficientFunds)) => AfterSend::HoldForFunds,
        Ok(Some(SendRejection::Underpriced)) => AfterSend::LeaveToPlanner,
        Ok(Some(rejection)) => AfterSend::Refused(rejection),
        Err(()) => AfterSend::StopSending,
    }
}

/// The longest wait before a transaction the node refused is sent again.
pub const MAX_REFUSAL_BACKOFF: Duration = Duration::from_secs(300);

/// How long a nonce the node refused `refusals` times in a row waits
/// before it is sent again: `resend_after` doubled per refusal (the
/// exponent stops at 8), at most [`MAX_REFUSAL_BACKOFF`].
pub fn refusal_backoff(resend_after: Duration, refusals: u32) -> Duration {
    // The exponent stopping at 8 is a cap of 2^8 times `resend_after`.
    let cap = resend_after.saturating_mul(1 << 8).min(MAX_REFUSAL_BACKOFF);
    Backoff::doubling(resend_after, cap).delay(refusals)
}

/// Whether a refusal holds new work until an operator fixes its cause (a
/// configured gas limit, the node's fee cap); the refused nonce is still retried.
pub fn refusal_holds_new_work(rejection: SendRejection) -> bool {
    matches!(rejection, SendRejection::Misconfigured | SendRejection::FeeCapExceeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(n: u128, kind: CallKind, reverses: Option<u128>) -> Queued {
        Queued { id: Uuid::from_u128(n), kind: Some(kind), reverses: reverses.map(Uuid::from_u128), user_id: Uuid::from_u128(1_000 + n), amount: n.to_string(), seq: Some(n as i64) }
    }

    /// Runs the plan to its end against a world where the store answers
    /// `queue` (mints left out when asked), `paused`, `gas_hold` and the
    /// reversal `decisions`; returns the final step and the reads made.
    fn drive(max: usize, in_flight: usize, queue: &[Queued], paused: bool, gas_hold: bool, decisions: &HashMap<Uuid, ReversalDecision>) -> (Step, Vec<Step>) {
        let mut seen = Seen { in_flight, ..Seen::default() };
        let mut reads = Vec::new();
        loop {
            let step = next(max, 1, &seen);
            match &step {
                Step::ReadQueue { limit, hold_mints } => {
                    let kept = queue.iter().filter(|t| !hold_mints || t.kind != Some(CallKind::Mint));
                    seen.queued = Some(kept.take(*limit as usize).cloned().collect());
                    seen.mints_left_out = *hold_mints;
                }
                Step::ReadPause => seen.paused = Some(paused),
                Step::ReadGasHold => seen.gas_hold = Some(gas_hold),
                Step::DecideReversals(pairs) => {
                    let decisions: HashMap<Uuid, ReversalDecision> = pairs.iter().filter_map(|(r, _)| Some((*r, *decisions.get(r)?))).collect();
                    seen.reversals = Some(Reversals { decisions, reloaded: HashMap::new() });
                }
                Step::Stop { .. } | Step::Sign { .. } => return (step, reads),
            }
            assert!(reads.len() < 8, "the plan does not converge: {reads:?}");
            reads.push(step);
        }
    }

    #[test]
    fn an_idle_or_full_wallet_reads_at_most_the_queue() {
        let none = HashMap::new();
        assert_eq!(drive(4, 4, &[intent(1, CallKind::Mint, None)], false, false, &none), (Step::Stop { more: false }, vec![]));
        let (step, reads) = drive(4, 0, &[], false, false, &none);
        assert_eq!(step, Step::Stop { more: false });
        assert_eq!(reads, vec![Step::ReadQueue { limit: 4, hold_mints: false }]);
    }

    #[test]
    fn a_pause_stops_and_a_gas_spike_holds_mints_only() {
        let none = HashMap::new();
        let queue = [intent(1, CallKind::Mint, None), intent(2, CallKind::Burn, None)];
        assert_eq!(drive(4, 0, &queue, true, false, &none).0, Step::Stop { more: false });
        let (step, reads) = drive(4, 0, &queue, false, true, &none);
        assert_eq!(step, Step::Sign { intents: vec![queue[1].clone()], more: false });
        assert_eq!(reads.last(), Some(&Step::ReadQueue { limit: 4, hold_mints: true }));
        // Burns only: the hold is not even read.
        let (_, reads) = drive(4, 0, &queue[1..], false, true, &none);
        assert!(!reads.contains(&Step::ReadGasHold));
    }

    #[test]
    fn reversals_wait_for_their_mint_and_a_cancelled_one_takes_its_mint_along() {
        let queue = [intent(1, CallKind::Mint, None), intent(2, CallKind::Burn, Some(1)), intent(3, CallKind::Burn, Some(9)), intent(4, CallKind::Burn, Some(8))];
        let decisions = HashMap::from([
            (Uuid::from_u128(2), ReversalDecision::Cancelled),
            (Uuid::from_u128(3), ReversalDecision::Wait),
            (Uuid::from_u128(4), ReversalDecision::Ready),
        ]);
        let (step, _) = drive(4, 0, &queue, false, false, &decisions);
        assert_eq!(step, Step::Sign { intents: vec![queue[3].clone()], more: true });
        // A ready reversal read again is signed as read again (clipped).
        let pairs = reversal_pairs(&queue);
        let clipped = Queued { amount: "1".into(), ..queue[3].clone() };
        let reversals = Reversals { decisions, reloaded: HashMap::from([(clipped.id, clipped.clone())]) };
        assert_eq!(select(&queue, &pairs, &reversals), vec![clipped]);
    }

    #[test]
    fn nonces_follow_the_batch_and_unknown_kinds_take_none() {
        let mut odd = intent(2, CallKind::Mint, None);
        odd.kind = None;
        let intents = [intent(1, CallKind::Mint, None), odd, intent(3, CallKind::Burn, None)];
        let accounts: HashMap<Uuid, Address> = intents.iter().map(|t| (t.user_id, Address::repeat_byte(7))).collect();
        let gas = GasLimits { abi: TokenAbi::Single, mint: 100, burn: 200, batch_base: 1_000, per_mint: 10, per_burn: 20 };
        let assigned = assign(40, &intents, &accounts, gas, 1, 8).expect("assigned");
        let got: Vec<(u64, u64)> = assigned.iter().map(|a| (a.nonce, a.gas_limit)).collect();
        assert_eq!(got, vec![(40, 100), (41, 200)]);
        assert_eq!(assign(0, &intents, &HashMap::new(), gas, 1, 8), Err(AssignError::UnknownUser(intents[0].id)));
        let bad = Queued { amount: "1.5".into(), ..intents[0].clone() };
        assert_eq!(assign(0, std::slice::from_ref(&bad), &accounts, gas, 1, 8), Err(AssignError::BadAmount(bad.id)));
        let unnumbered = Queued { seq: None, ..intents[0].clone() };
        assert_eq!(assign(0, std::slice::from_ref(&unnumbered), &accounts, gas, 1, 8), Err(AssignError::NoSeq(unnumbered.id)));
    }

    #[test]
    fn intents_batch_by_kind_in_queue_order_with_gas_per_entry() {
        let kinds = [CallKind::Mint, CallKind::Burn, CallKind::Mint, CallKind::Mint, CallKind::Burn, CallKind::Mint];
        let intents: Vec<Queued> = kinds.iter().enumerate().map(|(i, k)| intent(i as u128 + 1, *k, None)).collect();
        let accounts: HashMap<Uuid, Address> = intents.iter().map(|t| (t.user_id, Address::repeat_byte(7))).collect();
        let gas = GasLimits { abi: TokenAbi::Batch, mint: 100, burn: 200, batch_base: 1_000, per_mint: 10, per_burn: 20 };
        let batches = |max_nonces| {
            assign(7, &intents, &accounts, gas, 2, max_nonces)
                .expect("assigned")
                .into_iter()
                .map(|a| (a.nonce, a.kind, a.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), a.gas_limit))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            batches(8),
            vec![
                (7, CallKind::Mint, vec![1, 3], 1_020),
                (8, CallKind::Burn, vec![2, 5], 1_040),
                (9, CallKind::Mint, vec![4, 6], 1_020),
            ]
        );
        assert_eq!(batches(2), vec![(7, CallKind::Mint, vec![1, 3], 1_020), (8, CallKind::Burn, vec![2, 5], 1_040)], "what needs a third nonce waits");
    }

    #[test]
    fn refusals_back_off_from_twice_resend_after_up_to_the_cap() {
        let second = Duration::from_secs(1);
        let got: Vec<u64> = (1..=10).map(|n| refusal_backoff(second, n).as_secs()).collect();
        assert_eq!(got, vec![2, 4, 8, 16, 32, 64, 128, 256, 256, 256], "the exponent stops at 8");
        assert_eq!(refusal_backoff(Duration::from_secs(5), 7), MAX_REFUSAL_BACKOFF);
        assert_eq!(after_send(Ok(Some(SendRejection::Other))), AfterSend::Refused(SendRejection::Other));
        assert_eq!(after_send(Err(())), AfterSend::StopSending);
        assert!(refusal_holds_new_work(SendRejection::FeeCapExceeded) && !refusal_holds_new_work(SendRejection::Other));
    }

    mod properties {
        use std::collections::HashSet;

        use proptest::prelude::*;

        use super::*;

        fn decision() -> impl Strategy<Value = ReversalDecision> {
            prop_oneof![Just(ReversalDecision::Ready), Just(ReversalDecision::Wait), Just(ReversalDecision::Cancelled)]
        }

        /// A queue of mints and burns, some burns reversing earlier intents, with their decisions.
        fn world() -> impl Strategy<Value = (Vec<Queued>, HashMap<Uuid, ReversalDecision>)> {
            proptest::collection::vec((any::<bool>(), proptest::option::of(0u128..12), decision()), 0..12).prop_map(|items| {
                let mut queue = Vec::new();
                let mut decisions = HashMap::new();
                for (i, (mint, reverses, decided)) in items.into_iter().enumerate() {
                    let n = i as u128 + 1;
                    let reverses = if mint { None } else { reverses.filter(|r| *r != n) };
                    let t = intent(n, if mint { CallKind::Mint } else { CallKind::Burn }, reverses);
                    if reverses.is_some() {
                        decisions.insert(t.id, decided);
                    }
                    queue.push(t);
                }
                (queue, decisions)
            })
        }

        proptest! {
            // No regression files: the repository's top level holds only what SPEC section 1 lists.
            #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

            /// Never signs while paused or at capacity, never a mint while
            /// gas-held, never more than the free slots; a reversal goes only
            /// when ready, the mint of a cancelled one never; queue order kept.
            #[test]
            fn signs_only_what_the_gates_and_the_reversal_order_allow(
                (queue, decisions) in world(), max in 0usize..8, in_flight in 0usize..8, paused in any::<bool>(), gas_hold in any::<bool>(),
            ) {
                let (step, reads) = drive(max, in_flight, &queue, paused, gas_hold, &decisions);
                prop_assert!(reads.iter().filter(|r| **r == Step::ReadPause).count() <= 1);
                let Step::Sign { intents, .. } = step else { return Ok(()) };
                prop_assert!(!paused, "signed while paused");
                prop_assert!(!intents.is_empty() && intents.len() <= max.saturating_sub(in_flight), "signed beyond the free slots");
                prop_assert!(!gas_hold || intents.iter().all(|t| t.kind != Some(CallKind::Mint)), "signed a mint during a gas spike");
                // Only the reversals the plan read can cancel their mints: a
                // cancelled reversal beyond the window is decided on a later tick.
                let Some(Step::ReadQueue { limit, hold_mints }) = reads.iter().rev().find(|r| matches!(r, Step::ReadQueue { .. })) else {
                    return Err(TestCaseError::fail("signed without reading the queue"));
                };
                let window: Vec<&Queued> = queue.iter().filter(|t| !hold_mints || t.kind != Some(CallKind::Mint)).take(*limit as usize).collect();
                let cancelled_originals: HashSet<Uuid> = window
                    .iter()
                    .filter(|t| decisions.get(&t.id) == Some(&ReversalDecision::Cancelled))
                    .filter_map(|t| t.reverses)
                    .collect();
                for t in &intents {
                    if t.reverses.is_some() {
                        prop_assert_eq!(decisions.get(&t.id), Some(&ReversalDecision::Ready), "a reversal signed before its mint");
                    }
                    prop_assert!(!cancelled_originals.contains(&t.id), "signed the mint of a cancelled reversal");
                }
                let positions: Vec<usize> = intents.iter().map(|t| queue.iter().position(|q| q.id == t.id).expect("from the queue")).collect();
                prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "queue order not kept");
            }

            /// Batches take consecutive nonces from the start, none twice, at
            /// most `max_nonces`; each holds 1..=batch size intents of one
            /// kind; every intent of a known kind is in at most one batch,
            /// each kind in queue order, and what is left out of a kind is
            /// its tail; with nonces to spare, none is left out.
            #[test]
            fn batches_take_consecutive_nonces_and_each_intent_at_most_once(
                (queue, _) in world(), start in 0u64..1_000_000, unknown in proptest::collection::vec(any::<bool>(), 12),
                batch_size in 1usize..5, max_nonces in 1usize..6,
            ) {
                let intents: Vec<Queued> = queue.into_iter().zip(unknown).map(|(t, u)| if u { Queued { kind: None, ..t } } else { t }).collect();
                let accounts: HashMap<Uuid, Address> = intents.iter().map(|t| (t.user_id, Address::repeat_byte(1))).collect();
                let gas = GasLimits { abi: TokenAbi::Batch, mint: 1, burn: 2, batch_base: 10, per_mint: 3, per_burn: 4 };
                let assigned = assign(start, &intents, &accounts, gas, batch_size, max_nonces).expect("consistent intents");
                prop_assert!(assigned.len() <= max_nonces);
                let nonces: Vec<u64> = assigned.iter().map(|a| a.nonce).collect();
                prop_assert_eq!(nonces, (start..start + assigned.len() as u64).collect::<Vec<_>>());
                let mut seen = HashSet::new();
                for a in &assigned {
                    prop_assert!(!a.entries.is_empty() && a.entries.len() <= batch_size);
                    prop_assert_eq!(a.gas_limit, gas.of(a.kind, a.entries.len()));
                    for e in &a.entries {
                        prop_assert!(seen.insert(e.transaction_id), "an intent in two batches");
                        prop_assert_eq!(intents.iter().find(|t| t.id == e.transaction_id).and_then(|t| t.kind), Some(a.kind), "a batch mixes kinds");
                    }
                }
                let count = |kind| intents.iter().filter(|t| t.kind == Some(kind)).count();
                let needed = count(CallKind::Mint).div_ceil(batch_size) + count(CallKind::Burn).div_ceil(batch_size);
                for kind in [CallKind::Mint, CallKind::Burn] {
                    let queued: Vec<Uuid> = intents.iter().filter(|t| t.kind == Some(kind)).map(|t| t.id).collect();
                    let signed: Vec<Uuid> = assigned.iter().filter(|a| a.kind == kind).flat_map(|a| a.entries.iter().map(|e| e.transaction_id)).collect();
                    prop_assert_eq!(&signed[..], &queued[..signed.len()], "a kind out of queue order, or a gap in it");
                    if needed <= max_nonces {
                        prop_assert_eq!(signed.len(), queued.len(), "left an intent out with nonces to spare");
                    }
                }
            }

            /// The refusal backoff never shrinks with more refusals and stays within its cap.
            #[test]
            fn refusal_backoff_grows_and_stays_capped(resend_ms in 0u64..1_000_000, refusals in 1u32..64) {
                let resend_after = Duration::from_millis(resend_ms);
                let now = refusal_backoff(resend_after, refusals);
                prop_assert!(now <= MAX_REFUSAL_BACKOFF);
                prop_assert!(now <= refusal_backoff(resend_after, refusals + 1));
            }
        }
    }
}
