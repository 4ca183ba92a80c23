//! What the transaction monitor decides, as pure functions over one
//! [`Observation`] and its [`Memory`]: which alerts to raise ([`plan`]) and
//! whether to hold new mints ([`hold_until`], [`should_write_hold`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::config::MonitorConfig;

/// An intent on its way to the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTx {
    /// The intent.
    pub id: Uuid,
    /// Its hot wallet.
    pub wallet: Uuid,
    /// When it was signed (its last status change).
    pub since: DateTime<Utc>,
}

/// One hot wallet as seen this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletSample {
    /// The wallet.
    pub wallet: Uuid,
    /// Its mined nonce, when the chain answered.
    pub chain_nonce: Option<u64>,
    /// Intents it has in flight.
    pub in_flight: usize,
}

/// What the monitor saw in one look.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// When.
    pub now: DateTime<Utc>,
    /// Intents signed or broadcast.
    pub pending: Vec<PendingTx>,
    /// Hot wallets.
    pub wallets: Vec<WalletSample>,
    /// The latest block's base fee in wei, when the chain answered.
    pub base_fee: Option<u128>,
}

/// What the monitor remembers between looks.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    alerted: HashSet<Uuid>,
    nonces: HashMap<Uuid, (u64, u32, bool)>,
    baseline: Option<u128>,
    spiking: bool,
    /// When the current spike was first seen.
    spike_since: Option<DateTime<Utc>>,
    /// The current spike has outlasted the hold's cap and that was raised.
    cap_raised: bool,
    /// The hold deadline last written (outer `None`: nothing written yet).
    hold_written: Option<Option<DateTime<Utc>>>,
}

impl Memory {
    /// Remembers that the hold deadline `written` is now what the ledger holds.
    pub fn hold_recorded(&mut self, written: Option<DateTime<Utc>>) {
        self.hold_written = Some(written);
    }
}

/// Something to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// An intent has been in flight longer than the threshold.
    Pending { id: Uuid, wallet: Uuid, age_secs: i64 },
    /// A wallet's chain nonce has not moved for `looks` looks while it has work in flight.
    Stalled { wallet: Uuid, nonce: u64, looks: u32, in_flight: usize },
    /// The base fee is over the factor × baseline.
    GasSpike { base_fee: u128, baseline: u128 },
    /// The base fee is back under it.
    GasNormal { base_fee: u128, baseline: u128 },
    /// A spike has held mints for `monitor.gas_hold_max_secs`; they go now although it lasts.
    GasHoldLapsed { since: DateTime<Utc>, max_secs: u64 },
}

/// Decides what to raise from one look; each condition is raised once until it clears.
pub fn plan(observation: &Observation, memory: &mut Memory, settings: &MonitorConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    let still_pending: HashSet<Uuid> = observation.pending.iter().map(|p| p.id).collect();
    memory.alerted.retain(|id| still_pending.contains(id));
    for tx in &observation.pending {
        let age = (observation.now - tx.since).num_seconds();
        if age >= settings.pending_after_secs as i64 && memory.alerted.insert(tx.id) {
            findings.push(Finding::Pending { id: tx.id, wallet: tx.wallet, age_secs: age });
        }
    }
    for sample in &observation.wallets {
        let Some(nonce) = sample.chain_nonce else { continue };
        // The first look only records the nonce; the looks after it that find it unchanged count.
        let Some(entry) = memory.nonces.get_mut(&sample.wallet) else {
            memory.nonces.insert(sample.wallet, (nonce, 0, false));
            continue;
        };
        if nonce != entry.0 || sample.in_flight == 0 {
            *entry = (nonce, 0, false);
            continue;
        }
        entry.1 += 1;
        if entry.1 >= settings.stalled_looks && !entry.2 {
            entry.2 = true;
            findings.push(Finding::Stalled { wallet: sample.wallet, nonce, looks: entry.1, in_flight: sample.in_flight });
        }
    }
    if let Some(base_fee) = observation.base_fee {
        let baseline = *memory.baseline.get_or_insert(base_fee.max(1));
        let spiking = base_fee > baseline.saturating_mul(u128::from(settings.gas_spike_factor));
        if spiking && !memory.spiking {
            findings.push(Finding::GasSpike { base_fee, baseline });
            memory.spike_since = Some(observation.now);
            memory.cap_raised = false;
        } else if !spiking && memory.spiking {
            findings.push(Finding::GasNormal { base_fee, baseline });
            memory.spike_since = None;
        }
        memory.spiking = spiking;
        // The baseline follows the fee (an exponential moving average over
        // about 8 looks) but not while it spikes, so a long spike still counts as one.
        if !spiking {
            memory.baseline = Some((baseline * 7 + base_fee).div_ceil(8).max(1));
        }
    }
    if let Some(since) = memory.spike_since
        && settings.gas_hold
        && !memory.cap_raised
        && observation.now >= cap_of(since, settings)
    {
        memory.cap_raised = true;
        findings.push(Finding::GasHoldLapsed { since, max_secs: settings.gas_hold_max_secs });
    }
    findings
}

fn cap_of(since: DateTime<Utc>, settings: &MonitorConfig) -> DateTime<Utc> {
    since + chrono::Duration::seconds(settings.gas_hold_max_secs.min(i64::MAX as u64 / 1_000) as i64)
}

/// Until when new mints wait, as of the latest look: the current spike's
/// start plus the cap, or `None` (no spike, or the hold switched off). The
/// wallets compare the deadline with their clock, so the cap holds even if
/// this monitor stops looking.
pub fn hold_until(memory: &Memory, settings: &MonitorConfig) -> Option<DateTime<Utc>> {
    memory.spike_since.filter(|_| settings.gas_hold).map(|since| cap_of(since, settings))
}

/// Whether the monitor writes the hold flag after a look: when its decision
/// changed, on its first look that reached the chain (a restarted monitor
/// clears a hold a crashed one left), and on every look while it holds, so
/// a hold that a second daemon's fresh monitor cleared is restored within
/// one interval. Never without a base fee: no answer from the chain changes nothing.
pub fn should_write_hold(memory: &Memory, desired: Option<DateTime<Utc>>, saw_base_fee: bool) -> bool {
    saw_base_fee && (memory.hold_written != Some(desired) || desired.is_some())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn settings() -> MonitorConfig {
        MonitorConfig { interval_secs: 60, pending_after_secs: 300, stalled_looks: 3, gas_spike_factor: 2, gas_hold: true, gas_hold_max_secs: 600 }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn an_intent_pending_past_the_threshold_is_raised_once() {
        let mut memory = Memory::default();
        let tx = PendingTx { id: Uuid::from_u128(1), wallet: Uuid::from_u128(9), since: at(0) };
        let look = |now| Observation { now: at(now), pending: vec![tx.clone()], ..Observation::default() };
        assert!(plan(&look(299), &mut memory, &settings()).is_empty());
        assert_eq!(plan(&look(300), &mut memory, &settings()), vec![Finding::Pending { id: tx.id, wallet: tx.wallet, age_secs: 300 }]);
        assert!(plan(&look(360), &mut memory, &settings()).is_empty(), "once");
    }

    #[test]
    fn a_nonce_that_does_not_move_with_work_in_flight_is_a_stall() {
        let mut memory = Memory::default();
        let wallet = Uuid::from_u128(9);
        let look = |nonce, in_flight| Observation { wallets: vec![WalletSample { wallet, chain_nonce: Some(nonce), in_flight }], ..Observation::default() };
        for _ in 0..3 {
            assert!(plan(&look(5, 2), &mut memory, &settings()).is_empty());
        }
        assert_eq!(plan(&look(5, 2), &mut memory, &settings()), vec![Finding::Stalled { wallet, nonce: 5, looks: 3, in_flight: 2 }]);
        assert!(plan(&look(5, 2), &mut memory, &settings()).is_empty(), "once per stall");
        assert!(plan(&look(6, 2), &mut memory, &settings()).is_empty(), "the nonce moved");
        let mut idle = Memory::default();
        for _ in 0..10 {
            assert!(plan(&look(5, 0), &mut idle, &settings()).is_empty(), "nothing in flight is no stall");
        }
    }

    #[test]
    fn a_spike_over_twice_the_baseline_is_raised_and_cleared() {
        let mut memory = Memory::default();
        let look = |fee| Observation { base_fee: Some(fee), ..Observation::default() };
        assert!(plan(&look(100), &mut memory, &settings()).is_empty());
        assert!(plan(&look(200), &mut memory, &settings()).is_empty(), "twice is not over twice");
        let spike = plan(&look(400), &mut memory, &settings());
        assert!(matches!(spike.as_slice(), [Finding::GasSpike { base_fee: 400, .. }]), "{spike:?}");
        assert!(plan(&look(500), &mut memory, &settings()).is_empty(), "one spike, one alert");
        assert!(matches!(plan(&look(150), &mut memory, &settings()).as_slice(), [Finding::GasNormal { .. }]));
    }

    #[test]
    fn a_spike_holds_mints_until_it_falls_back_or_the_cap() {
        let mut memory = Memory::default();
        let look = |secs, fee| Observation { now: at(secs), base_fee: Some(fee), ..Observation::default() };
        plan(&look(0, 100), &mut memory, &settings());
        assert_eq!(hold_until(&memory, &settings()), None, "no spike, no hold");
        plan(&look(60, 400), &mut memory, &settings());
        assert_eq!(hold_until(&memory, &settings()), Some(at(660)), "the spike's start plus the cap");
        assert!(plan(&look(120, 400), &mut memory, &settings()).is_empty());
        assert_eq!(hold_until(&memory, &settings()), Some(at(660)), "a long spike keeps its first deadline");
        let off = MonitorConfig { gas_hold: false, ..settings() };
        assert_eq!(hold_until(&memory, &off), None, "the switch turns the hold off");
        assert!(matches!(plan(&look(180, 100), &mut memory, &settings()).as_slice(), [Finding::GasNormal { .. }]));
        assert_eq!(hold_until(&memory, &settings()), None, "fallen back: mints go");
    }

    #[test]
    fn a_spike_that_outlasts_the_cap_is_raised_once_and_holds_no_longer() {
        let mut memory = Memory::default();
        let look = |secs, fee| Observation { now: at(secs), base_fee: Some(fee), ..Observation::default() };
        plan(&look(0, 100), &mut memory, &settings());
        plan(&look(60, 400), &mut memory, &settings());
        assert!(plan(&look(659, 400), &mut memory, &settings()).is_empty());
        assert_eq!(plan(&look(660, 400), &mut memory, &settings()), vec![Finding::GasHoldLapsed { since: at(60), max_secs: 600 }]);
        assert!(plan(&look(720, 400), &mut memory, &settings()).is_empty(), "once");
        let until = hold_until(&memory, &settings()).unwrap();
        assert!(!crate::ledger::gas_hold::holds_at(Some(&until.to_rfc3339()), at(720)), "the wallets no longer hold");
        // Falling back and spiking again starts a new hold with its own cap.
        plan(&look(780, 100), &mut memory, &settings());
        plan(&look(840, 400), &mut memory, &settings());
        assert_eq!(hold_until(&memory, &settings()), Some(at(1_440)));
    }

    #[test]
    fn the_hold_is_written_on_change_on_the_first_look_and_while_it_holds() {
        let mut memory = Memory::default();
        assert!(!should_write_hold(&memory, None, false), "no answer from the chain changes nothing");
        assert!(should_write_hold(&memory, None, true), "the first look clears what a crashed monitor left");
        memory.hold_written = Some(None);
        assert!(!should_write_hold(&memory, None, true), "quiet: no writes");
        assert!(should_write_hold(&memory, Some(at(10)), true), "a spike starts");
        memory.hold_written = Some(Some(at(10)));
        assert!(should_write_hold(&memory, Some(at(10)), true), "refreshed while it holds");
        assert!(should_write_hold(&memory, None, true), "cleared when it falls back");
    }

    proptest! {
        /// Whatever the fees, mints are held exactly while a spike lasts,
        /// never past its start plus the cap.
        #[test]
        fn the_hold_follows_the_spike_and_never_outlasts_the_cap(fees in proptest::collection::vec(1u128..10_000, 1..60)) {
            let mut memory = Memory::default();
            let mut spike_started = None;
            for (i, fee) in fees.into_iter().enumerate() {
                let now = at(i as i64 * 60);
                for finding in plan(&Observation { now, base_fee: Some(fee), ..Observation::default() }, &mut memory, &settings()) {
                    match finding {
                        Finding::GasSpike { .. } => spike_started = Some(now),
                        Finding::GasNormal { .. } => spike_started = None,
                        _ => {}
                    }
                }
                let until = hold_until(&memory, &settings());
                prop_assert_eq!(until, spike_started.map(|start| start + chrono::Duration::seconds(600)));
            }
        }
    }

    proptest! {
        /// Whatever the fees, spike and normal alternate: never two spikes without a normal between.
        #[test]
        fn spike_and_normal_alternate(fees in proptest::collection::vec(1u128..10_000, 1..60)) {
            let mut memory = Memory::default();
            let mut spiking = false;
            for fee in fees {
                for finding in plan(&Observation { base_fee: Some(fee), ..Observation::default() }, &mut memory, &settings()) {
                    match finding {
                        Finding::GasSpike { .. } => { prop_assert!(!spiking); spiking = true; }
                        Finding::GasNormal { .. } => { prop_assert!(spiking); spiking = false; }
                        _ => {}
                    }
                }
            }
        }
    }
}
