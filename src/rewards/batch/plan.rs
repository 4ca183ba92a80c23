//! The batch planner: what a run of claimed events does, decided in memory
//! from one snapshot of what they read, as each event's handler would have
//! decided it alone in the same (received_at, id) order. Pure: the I/O
//! module reads the snapshot and writes the plan.
//!
//! A run covers the events the planner can decide from the snapshot alone:
//! mints to known users (bookings, reviews, attendances, contributions,
//! coaching, referrals, payments), stakes, and events that end invalid,
//! waiting or failed. It ends before the first event that needs more (a
//! new user, a cancellation, a payout, a booking seen before), which the
//! processor handles one at a time with the handlers, so the order holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use alloy::primitives::U256;
use chrono::{DateTime, Utc};
use entity::{aurora_bookings, staking_records, tribe_events, tribe_rewards, webhook_events};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::super::amount::to_base_units;
use super::super::limits::{self, Admission, Bounds, CounterAdd};
use super::super::processor::Outcome;
use super::super::rules::RewardRules;
use crate::webhooks::EventData;

/// One claimed event, read.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    /// The inbox row.
    pub event: &'a webhook_events::Model,
    /// What it says, or why its stored body cannot be read.
    pub data: Result<EventData, String>,
    /// A test aims a failpoint at it: leave it to the handlers.
    pub hooked: bool,
}

/// What the events of a run read, as of one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Users whose hot wallet takes new work: external ref → (user, hot wallet).
    pub users: HashMap<String, (Uuid, Uuid)>,
    /// Users whose hot wallet is rotating or revoked: they follow their work
    /// through `ledger::assign_wallet`, so their events go to the handlers.
    pub moving: BTreeSet<String>,
    /// The active hot wallets, in the order a new user is assigned one.
    pub hot_wallets: Vec<Uuid>,
    /// Bookings by id → whether their guest is known (a stub is not).
    pub bookings: HashMap<String, bool>,
    /// Intents by source → (intent, hot wallet).
    pub intents: HashMap<String, (Uuid, Uuid)>,
    /// Mint counters by (scope, day) (absent: nothing counted yet).
    pub counters: HashMap<(String, String), U256>,
}

/// What a snapshot must hold for a set of items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// External refs of the users the items may mint to.
    pub users: BTreeSet<String>,
    /// Booking ids they read.
    pub bookings: BTreeSet<String>,
    /// Intent sources they may create.
    pub sources: BTreeSet<String>,
    /// Counters they may count against.
    pub counters: BTreeSet<(String, String)>,
}

/// A new mint intent, held with its reason when over a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMint {
    /// Its id, chosen here.
    pub id: Uuid,
    /// The inbox event that caused it.
    pub event: Uuid,
    /// `{partner}:{external id}`.
    pub user_ref: String,
    /// The user's id.
    pub user_id: Uuid,
    /// The hot wallet that takes it.
    pub hot_wallet: Uuid,
    /// Base units.
    pub amount: U256,
    /// Why, for operators.
    pub reason: String,
    /// Its unique cause.
    pub source: String,
    /// The UTC day it counts toward.
    pub day: String,
    /// The limit it is over, if any: stored `held` with an alert.
    pub held: Option<String>,
}

/// A user seen for the first time: created with a custodial wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// `{partner}:{external id}`.
    pub reference: String,
    /// The user's id, chosen here.
    pub id: Uuid,
    /// The hot wallet that takes the user's work.
    pub hot_wallet: Uuid,
}

/// Everything a run writes, and what became of each of its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// One outcome per event of the run, in order; the run covers
    /// `outcomes.len()` events.
    pub outcomes: Vec<Outcome>,
    /// New bookings (none of them known before).
    pub bookings: Vec<aurora_bookings::Model>,
    /// Attendances (a duplicate changes nothing).
    pub tribe_events: Vec<tribe_events::Model>,
    /// Contributions, coaching milestones, referrals (likewise).
    pub tribe_rewards: Vec<tribe_rewards::Model>,
    /// Stakes (likewise).
    pub stakes: Vec<staking_records::Model>,
    /// New users, in order.
    pub new_users: Vec<NewUser>,
    /// New intents, in order.
    pub mints: Vec<NewMint>,
    /// What the admitted mints add to each counter.
    pub counters: BTreeMap<(String, String), CounterAdd>,
    /// Hot wallets that got work.
    pub wallets: BTreeSet<Uuid>,
}

/// The rules a run is decided with.
pub struct Rules<'a> {
    /// The reward rules snapshot.
    pub rules: &'a RewardRules,
    /// The limits in base units.
    pub bounds: Bounds,
    /// The rules' hash, stored on every intent.
    pub rules_hash: &'a str,
    /// When the run is decided (row timestamps).
    pub now: DateTime<Utc>,
    /// Whether new users can be given a custodial wallet (this daemon has
    /// the master key); without, their events go to the handlers.
    pub create_users: bool,
}

/// What an event needs from a snapshot: the users it may mint to, the
/// bookings it reads, the sources it may create (with the event's day).
pub fn needs(items: &[Item<'_>]) -> Needs {
    let mut needs = Needs::default();
    // Nothing past an event that always ends a run is read.
    for item in items.iter().take_while(|item| may_decide(item)) {
        let Ok(data) = &item.data else { continue };
        let day = day_of(item.event);
        let mint_to = |user: String, source: String, needs: &mut Needs| {
            needs.counters.insert(limits::user_key(&user, &day));
            needs.counters.insert(limits::total_key(&day));
            needs.users.insert(user);
            needs.sources.insert(source);
        };
        let own = own_source(item.event);
        match data {
            EventData::BookingCreated { booking, guest, .. } => {
                needs.bookings.insert(booking.clone());
                mint_to(format!("aurora:{guest}"), own, &mut needs);
            }
            EventData::ReviewSubmitted { booking, guest, .. } => {
                needs.bookings.insert(booking.clone());
                mint_to(format!("aurora:{guest}"), format!("review-bonus:{booking}"), &mut needs);
            }
            EventData::Attendance { attendee: user, .. }
            | EventData::Contribution { user, .. }
            | EventData::CoachingMilestone { user, .. }
            | EventData::Referral { referrer: user, .. } => mint_to(format!("tribe:{user}"), own, &mut needs),
            EventData::StripePayment { user, .. } => mint_to(user.clone(), own, &mut needs),
            _ => {}
        }
    }
    needs
}

/// Whether a run can cover `item` at all: not one a test hooks, nor a kind
/// only its handler decides (cancellations, completions, payouts, ticketing,
/// payments by havend user id). The processor skips the snapshot for those.
pub fn may_decide(item: &Item<'_>) -> bool {
    match &item.data {
        _ if item.hooked => false,
        Err(_) => true,
        Ok(EventData::BookingCancelled { .. } | EventData::BookingCompleted { .. } | EventData::StripePayout { .. } | EventData::TicketingStatusChanged { .. }) => false,
        Ok(EventData::StripePayment { user, .. }) => Uuid::parse_str(user).is_err(),
        Ok(_) => true,
    }
}

/// Plans the longest run of `items` (in their order) the snapshot decides,
/// as one event at a time would: each event sees the bookings, intents and
/// counters of those before it. `new_id` names new intents.
pub fn plan(items: &[Item<'_>], snapshot: &Snapshot, rules: &Rules<'_>, new_id: &mut impl FnMut() -> Uuid) -> Plan {
    let mut run = Run { snapshot: snapshot.clone(), plan: Plan::default(), rules, new_id };
    for item in items {
        let Some(outcome) = run.step(item) else { break };
        run.plan.outcomes.push(outcome);
    }
    run.plan
}

/// The planner's state: the snapshot as the run so far changed it.
struct Run<'a, 'r, F> {
    snapshot: Snapshot,
    plan: Plan,
    rules: &'a Rules<'r>,
    new_id: &'a mut F,
}

/// An event the snapshot cannot decide: the run ends before it.
struct Beyond;

impl<F: FnMut() -> Uuid> Run<'_, '_, F> {
    /// One event's outcome, or `None` when it ends the run (nothing of it
    /// is in the plan then).
    fn step(&mut self, item: &Item<'_>) -> Option<Outcome> {
        if !may_decide(item) {
            return None;
        }
        let data = match &item.data {
            Ok(data) => data,
            Err(reason) => return Some(Outcome::Invalid(reason.clone())),
        };
        self.decide(item.event, data).ok()
    }

    fn decide(&mut self, event: &webhook_events::Model, data: &EventData) -> Result<Outcome, Beyond> {
        let rules = self.rules.rules;
        let now = self.rules.now;
        let own = own_source(event);
        match data {
            EventData::BookingCreated { booking, guest, total_price, nights } => self.booking_created(event, booking, guest, *total_price, *nights),
            EventData::ReviewSubmitted { booking, guest, rating } => self.review(event, booking, guest, *rating),
            EventData::Attendance { event: tribe_event, attendee, kind, attended } => {
                let amount = rules.attendance(kind, *attended);
                if let Some(amount) = amount
                    && let Err(outcome) = self.mint(event, &format!("tribe:{attendee}"), amount, format!("attended {kind} {tribe_event}"), own)?
                {
                    return Ok(outcome);
                }
                self.plan.tribe_events.push(tribe_events::Model {
                    tribe_event_id: tribe_event.clone(),
                    attendee_id: attendee.clone(),
                    event_type: kind.clone(),
                    attended: *attended,
                    amount: amount.unwrap_or_default().normalize().to_string(),
                    created_at: now,
                });
                Ok(Outcome::Processed)
            }
            EventData::Contribution { id, user, quality } => match rules.contribution(*quality) {
                Some(amount) => self.tribe_reward(event, "contribution", id, user, &quality.to_string(), amount, format!("contribution {id}")),
                None => Ok(overflow()),
            },
            EventData::CoachingMilestone { id, user, milestone } => match rules.coaching(milestone) {
                Some(amount) => self.tribe_reward(event, "coaching", id, user, milestone, amount, format!("coaching milestone {milestone}")),
                None => Ok(Outcome::Invalid(format!("no reward tier for coaching milestone {milestone:?}"))),
            },
            EventData::Referral { id, referrer, tier } => match rules.referral(tier) {
                Some(amount) => self.tribe_reward(event, "referral", id, referrer, tier, amount, format!("{tier} referral {id}")),
                None => Ok(Outcome::Invalid(format!("no reward for referral tier {tier:?}"))),
            },
            EventData::StakingStarted { id, user, amount, started_at } => {
                self.plan.stakes.push(staking_records::Model {
                    stake_id: id.clone(),
                    user_ref: format!("tribe:{user}"),
                    amount: amount.normalize().to_string(),
                    status: "active".into(),
                    started_at: started_at.unwrap_or(event.received_at),
                    created_at: now,
                });
                Ok(Outcome::Processed)
            }
            // A payment by havend's own user id resolves through the users
            // table: left to the handler.
            EventData::StripePayment { user, .. } if Uuid::parse_str(user).is_ok() => Err(Beyond),
            EventData::StripePayment { user, amount_minor, currency } => match rules.payment(*amount_minor, currency) {
                Some(Ok(amount)) => match self.mint(event, user, amount, format!("payment of {amount_minor} {currency} (minor units)"), own)? {
                    Ok(_) => Ok(Outcome::Processed),
                    Err(outcome) => Ok(outcome),
                },
                Some(Err(_)) => Ok(overflow()),
                None => Ok(Outcome::Invalid(format!("no HNV rate for currency {:?}", currency.to_ascii_uppercase()))),
            },
            _ => Err(Beyond),
        }
    }

    fn booking_created(&mut self, event: &webhook_events::Model, booking: &str, guest: &str, total_price: Decimal, nights: i64) -> Result<Outcome, Beyond> {
        if self.snapshot.bookings.contains_key(booking) {
            return Err(Beyond);
        }
        let Some(amount) = self.rules.rules.booking(total_price, nights) else { return Ok(overflow()) };
        let guest_ref = format!("aurora:{guest}");
        let mint_intent = match self.mint(event, &guest_ref, amount, format!("booking {booking}: {total_price} CAD, {nights} nights"), own_source(event))? {
            Ok(intent) => intent,
            Err(outcome) => return Ok(outcome),
        };
        self.snapshot.bookings.insert(booking.to_owned(), true);
        let now = self.rules.now;
        self.plan.bookings.push(aurora_bookings::Model {
            booking_id: booking.to_owned(),
            guest_ref: Some(guest_ref),
            total_price: Some(total_price.to_string()),
            nights: Some(nights),
            status: "created".into(),
            mint_intent,
            created_at: now,
            updated_at: now,
        });
        Ok(Outcome::Processed)
    }

    fn review(&mut self, event: &webhook_events::Model, booking: &str, guest: &str, rating: i64) -> Result<Outcome, Beyond> {
        if self.snapshot.bookings.get(booking) != Some(&true) {
            return Ok(Outcome::Wait(format!("booking {booking} not seen yet")));
        }
        if let Some(bonus) = self.rules.rules.review(rating) {
            let reason = format!("review of booking {booking} rated {rating}");
            if let Err(outcome) = self.mint(event, &format!("aurora:{guest}"), bonus, reason, format!("review-bonus:{booking}"))? {
                return Ok(outcome);
            }
        }
        Ok(Outcome::Processed)
    }

    #[allow(clippy::too_many_arguments)]
    fn tribe_reward(&mut self, event: &webhook_events::Model, kind: &str, id: &str, user: &str, detail: &str, amount: Decimal, reason: String) -> Result<Outcome, Beyond> {
        let user_ref = format!("tribe:{user}");
        if let Err(outcome) = self.mint(event, &user_ref, amount, reason, own_source(event))? {
            return Ok(outcome);
        }
        self.plan.tribe_rewards.push(tribe_rewards::Model {
            kind: kind.into(),
            tribe_id: id.into(),
            user_ref,
            detail: detail.chars().take(128).collect(),
            amount: amount.normalize().to_string(),
            created_at: self.rules.now,
        });
        Ok(Outcome::Processed)
    }

    /// A mint as the handlers queue it: nothing for an amount that rounds
    /// to zero, the existing intent for a source seen before, else a new
    /// intent counted against the limits (held when over one). The inner
    /// error is the event's outcome when the amount cannot be converted;
    /// [`Beyond`] when its user is not known with an active hot wallet.
    fn mint(&mut self, event: &webhook_events::Model, user_ref: &str, amount: Decimal, reason: String, source: String) -> Result<Result<Option<Uuid>, Outcome>, Beyond> {
        let units = match to_base_units(amount) {
            Ok(units) => units,
            Err(error) => return Ok(Err(Outcome::Deterministic(error.to_string()))),
        };
        if units.is_zero() {
            return Ok(Ok(None));
        }
        if ledger_hooked(user_ref) {
            return Err(Beyond);
        }
        if let Some(&(id, wallet)) = self.snapshot.intents.get(&source) {
            self.plan.wallets.insert(wallet);
            return Ok(Ok(Some(id)));
        }
        let (user_id, hot_wallet) = self.user(user_ref)?;
        let day = day_of(event);
        let (user_key, total_key) = (limits::user_key(user_ref, &day), limits::total_key(&day));
        let used = |key: &(String, String)| self.snapshot.counters.get(key).copied().unwrap_or_default();
        let held = match limits::check(&self.rules.rules.limits, &self.rules.bounds, user_ref, &day, units, used(&user_key), used(&total_key)) {
            Admission::Within => {
                for key in [user_key, total_key] {
                    let old = self.snapshot.counters.get(&key).copied();
                    let count = self.plan.counters.entry(key.clone()).or_insert(CounterAdd { old, add: U256::ZERO });
                    count.add += units;
                    self.snapshot.counters.insert(key, old.unwrap_or_default() + units);
                }
                None
            }
            Admission::Over(reason) => Some(reason),
        };
        let id = (self.new_id)();
        self.snapshot.intents.insert(source.clone(), (id, hot_wallet));
        self.plan.wallets.insert(hot_wallet);
        self.plan.mints.push(NewMint { id, event: event.id, user_ref: user_ref.to_owned(), user_id, hot_wallet, amount: units, reason, source, day, held });
        Ok(Ok(Some(id)))
    }

    /// The user to mint to (id, hot wallet): known, or new and created with
    /// the hot wallet `ledger::ensure_user` would give it.
    fn user(&mut self, user_ref: &str) -> Result<(Uuid, Uuid), Beyond> {
        if let Some(&user) = self.snapshot.users.get(user_ref) {
            return Ok(user);
        }
        if !self.rules.create_users || self.snapshot.hot_wallets.is_empty() || self.snapshot.moving.contains(user_ref) {
            return Err(Beyond);
        }
        let user = ((self.new_id)(), crate::ledger::pick_hot_wallet(user_ref, &self.snapshot.hot_wallets));
        self.snapshot.users.insert(user_ref.to_owned(), user);
        self.plan.new_users.push(NewUser { reference: user_ref.to_owned(), id: user.0, hot_wallet: user.1 });
        Ok(user)
    }
}

/// Whether a test aims the ledger's failpoints at `user_ref`.
fn ledger_hooked(user_ref: &str) -> bool {
    crate::ledger::hook_targets(user_ref)
}

/// The source of an event's own reward: `{partner}:{partner event id}`.
fn own_source(event: &webhook_events::Model) -> String {
    format!("{}:{}", event.partner, event.partner_event_id)
}

/// The UTC day an event's mints count toward.
pub fn day_of(event: &webhook_events::Model) -> String {
    event.received_at.date_naive().to_string()
}

/// A reward too large to compute fails the same way every time.
fn overflow() -> Outcome {
    Outcome::Deterministic(super::super::rules::Overflow.to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    use super::*;

    /// Known users (with an active hot wallet); `guest_9` and `tribe:m9` are new.
    const KNOWN: &[&str] = &["aurora:guest_0", "aurora:guest_1", "tribe:m0", "tribe:m1", "cus_0"];

    fn event(n: usize, partner: &str, event_type: &str) -> webhook_events::Model {
        let at = DateTime::from_timestamp(1_790_000_000 + n as i64, 0).unwrap_or_default();
        webhook_events::Model {
            id: Uuid::from_u128(n as u128 + 1),
            partner: partner.into(),
            partner_event_id: format!("ev_{n}"),
            event_type: event_type.into(),
            status: "pending".into(),
            attempts: 0,
            next_attempt_at: Some(at),
            last_error: None,
            body: Vec::new(),
            headers: "{}".into(),
            source_ip: None,
            request_id: "test".into(),
            received_at: at,
            processed_at: None,
            processed_by: None,
            claim_token: None,
            claimed_until: None,
            lapses: 0,
            body_purged_at: None,
        }
    }

    fn snapshot() -> Snapshot {
        let users = KNOWN.iter().enumerate().map(|(n, user)| ((*user).to_owned(), (Uuid::from_u128(1_000 + n as u128), Uuid::from_u128(7)))).collect();
        Snapshot { users, hot_wallets: vec![Uuid::from_u128(7), Uuid::from_u128(8)], ..Snapshot::default() }
    }

    fn rules() -> RewardRules {
        let mut rules = RewardRules::default();
        rules.limits.max_per_event = dec!(400);
        rules.limits.per_user_per_day = dec!(600);
        rules.limits.total_per_day = dec!(1500);
        rules
    }

    fn ids() -> impl FnMut() -> Uuid {
        let mut next = 0u128;
        move || {
            next += 1;
            Uuid::from_u128(1 << 64 | next)
        }
    }

    fn run(events: &[(webhook_events::Model, EventData)], snapshot: &Snapshot, new_id: &mut impl FnMut() -> Uuid) -> Plan {
        run_creating(events, snapshot, new_id, false)
    }

    fn run_creating(events: &[(webhook_events::Model, EventData)], snapshot: &Snapshot, new_id: &mut impl FnMut() -> Uuid, create_users: bool) -> Plan {
        let rules = rules();
        let items: Vec<Item<'_>> = events.iter().map(|(event, data)| Item { event, data: Ok(data.clone()), hooked: false }).collect();
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        let at = Rules { rules: &rules, bounds: Bounds::of(&rules.limits), rules_hash: "hash", now, create_users };
        plan(&items, snapshot, &at, new_id)
    }

    fn booking(booking: &str, guest: &str, price: Decimal) -> EventData {
        EventData::BookingCreated { booking: booking.into(), guest: guest.into(), total_price: price, nights: 1 }
    }

    #[test]
    fn a_review_in_the_same_run_as_its_booking_is_rewarded_and_one_before_it_waits() {
        let events = vec![
            (event(0, "aurora", "review-submitted"), EventData::ReviewSubmitted { booking: "bk_1".into(), guest: "guest_0".into(), rating: 5 }),
            (event(1, "aurora", "booking-created"), booking("bk_1", "guest_0", dec!(100))),
            (event(2, "aurora", "review-submitted"), EventData::ReviewSubmitted { booking: "bk_1".into(), guest: "guest_0".into(), rating: 5 }),
        ];
        let plan = run(&events, &snapshot(), &mut ids());
        assert!(matches!(plan.outcomes[0], Outcome::Wait(_)), "{:?}", plan.outcomes);
        assert_eq!(plan.outcomes[1..], [Outcome::Processed, Outcome::Processed]);
        let sources: Vec<&str> = plan.mints.iter().map(|mint| mint.source.as_str()).collect();
        assert_eq!(sources, ["aurora:ev_1", "review-bonus:bk_1"]);
        assert_eq!(plan.bookings[0].mint_intent, Some(plan.mints[0].id));
    }

    #[test]
    fn the_run_ends_before_a_new_user_a_cancellation_or_a_booking_seen_before() {
        let mut known = snapshot();
        known.bookings.insert("bk_old".into(), true);
        for stop in [booking("bk_2", "guest_9", dec!(10)), EventData::BookingCancelled { booking: "bk_1".into() }, booking("bk_old", "guest_0", dec!(10))] {
            let events = vec![(event(0, "aurora", "booking-created"), booking("bk_1", "guest_0", dec!(10))), (event(1, "aurora", "x"), stop.clone()), (event(2, "aurora", "booking-created"), booking("bk_3", "guest_1", dec!(10)))];
            let plan = run(&events, &known, &mut ids());
            assert_eq!(plan.outcomes, [Outcome::Processed], "{stop:?}");
            assert_eq!(plan.mints.len(), 1, "nothing of the event that ends the run is planned");
        }
    }

    #[test]
    fn mints_over_a_limit_are_held_with_the_reason_one_at_a_time_would_give() {
        // 2 HNV per CAD: 350 + 350 passes the 600 a day of guest_0 at the second.
        let events: Vec<_> = (0..3).map(|n| (event(n, "aurora", "booking-created"), booking(&format!("bk_{n}"), "guest_0", dec!(175)))).collect();
        let plan = run(&events, &snapshot(), &mut ids());
        let held: Vec<Option<&str>> = plan.mints.iter().map(|mint| mint.held.as_deref()).collect();
        let over = "aurora:guest_0 would exceed the daily limit of 600 HNV on 2026-09-21";
        assert_eq!(held, [None, Some(over), Some(over)]);
        let units = to_base_units(dec!(350)).unwrap_or_default();
        assert_eq!(plan.counters.get(&limits::user_key("aurora:guest_0", "2026-09-21")), Some(&CounterAdd { old: None, add: units }));
        assert_eq!(plan.counters.get(&limits::total_key("2026-09-21")), Some(&CounterAdd { old: None, add: units }));
    }

    #[test]
    fn a_new_user_is_created_once_with_the_hot_wallet_ensure_user_gives_and_seen_by_later_events() {
        let events: Vec<_> = (0..3).map(|n| (event(n, "aurora", "booking-created"), booking(&format!("bk_{n}"), "guest_9", dec!(10)))).collect();
        let plan = run_creating(&events, &snapshot(), &mut ids(), true);
        assert_eq!(plan.outcomes, [Outcome::Processed, Outcome::Processed, Outcome::Processed]);
        let hot = crate::ledger::pick_hot_wallet("aurora:guest_9", &snapshot().hot_wallets);
        assert_eq!(plan.new_users, [NewUser { reference: "aurora:guest_9".into(), id: Uuid::from_u128(1 << 64 | 1), hot_wallet: hot }]);
        assert!(plan.mints.iter().all(|mint| mint.user_id == plan.new_users[0].id && mint.hot_wallet == hot));
        let mut moving = snapshot();
        moving.moving.insert("aurora:guest_9".into());
        assert!(run_creating(&events, &moving, &mut ids(), true).outcomes.is_empty(), "a user whose wallet is moving goes to the handlers");
    }

    /// What a committed plan leaves for the next one to read.
    fn apply(snapshot: &mut Snapshot, plan: &Plan) {
        for user in &plan.new_users {
            snapshot.users.insert(user.reference.clone(), (user.id, user.hot_wallet));
        }
        for booking in &plan.bookings {
            snapshot.bookings.insert(booking.booking_id.clone(), booking.guest_ref.is_some());
        }
        for mint in &plan.mints {
            snapshot.intents.insert(mint.source.clone(), (mint.id, mint.hot_wallet));
        }
        for (key, count) in &plan.counters {
            snapshot.counters.insert(key.clone(), count.old.unwrap_or_default() + count.add);
        }
    }

    fn any_event() -> impl Strategy<Value = EventData> {
        let guest = prop_oneof![Just("guest_0"), Just("guest_1"), Just("guest_9")].prop_map(str::to_owned);
        let member = prop_oneof![Just("m0"), Just("m1"), Just("m9")].prop_map(str::to_owned);
        let booking_id = (0..4u8).prop_map(|n| format!("bk_{n}"));
        prop_oneof![
            4 => (booking_id.clone(), guest.clone(), 0..500u32).prop_map(|(b, g, price)| booking(&b, &g, Decimal::from(price))),
            2 => (booking_id.clone(), guest, 1..6i64).prop_map(|(booking, guest, rating)| EventData::ReviewSubmitted { booking, guest, rating }),
            1 => booking_id.prop_map(|booking| EventData::BookingCancelled { booking }),
            2 => ((0..3u8), member.clone(), any::<bool>()).prop_map(|(n, attendee, attended)| EventData::Attendance { event: format!("te_{n}"), attendee, kind: "workshop".into(), attended }),
            2 => ((0..3u8), member.clone(), 0..30u32).prop_map(|(n, user, q)| EventData::Contribution { id: format!("c_{n}"), user, quality: Decimal::new(q.into(), 1) }),
            1 => ((0..3u8), member, prop_oneof![Just("gold"), Just("nope")]).prop_map(|(n, referrer, tier)| EventData::Referral { id: format!("r_{n}"), referrer, tier: tier.into() }),
            2 => (0..90_000i64, prop_oneof![Just("CAD"), Just("XXX")]).prop_map(|(amount_minor, currency)| EventData::StripePayment { user: "cus_0".into(), amount_minor, currency: currency.into() }),
        ]
    }

    proptest! {
        /// A run decided at once equals its events decided one at a time,
        /// each from the snapshot the ones before it left: the planner
        /// carries every booking, intent and counter it plans forward.
        #[test]
        fn a_run_decides_each_event_as_one_at_a_time_would(datas in proptest::collection::vec(any_event(), 1..24), create_users in any::<bool>()) {
            let events: Vec<_> = datas.into_iter().enumerate().map(|(n, data)| (event(n, "aurora", "x"), data)).collect();
            let whole = run_creating(&events, &snapshot(), &mut ids(), create_users);
            let mut state = snapshot();
            let mut new_id = ids();
            let (mut outcomes, mut mints, mut bookings, mut users) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut counters: BTreeMap<(String, String), CounterAdd> = BTreeMap::new();
            for one in events.chunks(1) {
                let plan = run_creating(one, &state, &mut new_id, create_users);
                if plan.outcomes.is_empty() {
                    break;
                }
                apply(&mut state, &plan);
                outcomes.extend(plan.outcomes);
                mints.extend(plan.mints);
                bookings.extend(plan.bookings);
                users.extend(plan.new_users);
                for (key, count) in plan.counters {
                    counters.entry(key).and_modify(|sum| sum.add += count.add).or_insert(count);
                }
            }
            prop_assert_eq!(whole.outcomes, outcomes);
            prop_assert_eq!(whole.mints, mints);
            prop_assert_eq!(whole.bookings, bookings);
            prop_assert_eq!(whole.new_users, users);
            prop_assert_eq!(&whole.counters, &counters);
            // The counters never pass a limit.
            let bounds = Bounds::of(&rules().limits);
            for ((scope, _), count) in &whole.counters {
                let limit = if scope == "total" { bounds.total } else { bounds.per_user };
                prop_assert!(count.old.unwrap_or_default() + count.add <= limit);
            }
        }
    }
}
