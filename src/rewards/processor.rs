//! The processor actor: claims pending inbox events, runs each partner's
//! handler and commits the domain rows, the reward intents and the event's
//! new status in one transaction, conditional on still holding the claim.
//! Then it nudges the wallet actors that got work.
//!
//! What to do after a handler ran is decided by [`plan`], a pure function;
//! the actor gathers the facts and carries the step out.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::Utc;
use entity::webhook_events;
use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::batch::{self, Item, Rules, Target, Written};
use super::handlers::{self, Context, Handled, HandlerError};
use super::inbox::{self, INVALID, PROCESSED};
use super::limits::Bounds;
use crate::alert::{self, Severity};
use crate::config::{Config, ConfigHandle, ProcessorConfig};
use crate::custody::MasterKeys;
use crate::db::{Failure, WriteGate};
use crate::retry::Backoff;
use crate::webhooks::{Partner, payload};

/// Messages a processor handles.
pub enum ProcessorMsg {
    /// The periodic poll (events of other daemons, retries that fell due).
    Tick,
    /// New events were committed: claim now.
    Nudge,
}

/// Tells the wallet actor of a hot wallet that it has new work.
pub type WalletNudge = Arc<dyn Fn(Uuid) + Send + Sync>;

/// Where the running processors are published, for the intake actor's nudges.
pub type ProcessorSlot = Arc<ArcSwap<Vec<ActorRef<ProcessorMsg>>>>;

/// Tells every published processor that new events are waiting.
pub fn nudge(slot: &ProcessorSlot) {
    for processor in slot.load().iter() {
        let _ = processor.cast(ProcessorMsg::Nudge);
    }
}

/// How an event's handling ended, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Effects written, ready to commit.
    Processed,
    /// The stored body cannot be read, or the event is unusable.
    Invalid(String),
    /// Waits for something not yet seen.
    Wait(String),
    /// Failed in a way that repeats.
    Deterministic(String),
    /// Failed for a passing reason.
    Transient(String),
}

/// What the processor does with an event after its handler ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Commit the handler's writes with this final status.
    Finish { status: &'static str, note: Option<String> },
    /// Roll back; try again later. `attempt` picks the backoff delay;
    /// `count` records a deterministic failure.
    Retry { attempt: u32, count: bool, error: String },
    /// Roll back; set `dead_letter` and alert.
    DeadLetter { error: String },
}

/// Decides the step: only deterministic failures count toward the dead
/// letter (after `max_attempts` of them); a transient one retries without
/// counting; a wait becomes a dead letter once it outlasts `wait_limit`.
pub fn plan(outcome: Outcome, attempts_so_far: i32, max_attempts: i32, age: Duration, wait_limit: Duration) -> Step {
    match outcome {
        Outcome::Processed => Step::Finish { status: PROCESSED, note: None },
        Outcome::Invalid(reason) => Step::Finish { status: INVALID, note: Some(reason) },
        Outcome::Wait(reason) if age >= wait_limit => Step::DeadLetter { error: format!("{reason}; gave up waiting after {} days", wait_limit.as_secs() / 86_400) },
        Outcome::Wait(reason) => Step::Retry { attempt: age_attempt(age), count: false, error: reason },
        Outcome::Deterministic(error) if attempts_so_far + 1 >= max_attempts => Step::DeadLetter { error },
        Outcome::Deterministic(error) => Step::Retry { attempt: (attempts_so_far + 1) as u32, count: true, error },
        Outcome::Transient(error) => Step::Retry { attempt: 0, count: false, error },
    }
}

/// The stall armed for `key` on `processor::stall_before_commit` (`return(<key>=<ms>)`).
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn stall_before_commit(key: &str) -> Option<Duration> {
    fail::fail_point!("processor::stall_before_commit", |armed| crate::hooks::stall_for(armed, key));
    None
}

/// Whether `processor::stall_before_commit` names `key` (nothing applied):
/// such an event goes the one-at-a-time way, where the stall fires.
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn stall_armed(key: &str) -> bool {
    fail::fail_point!("processor::stall_before_commit", |armed| crate::hooks::names(armed, key));
    false
}

/// Test hook: `processor::one_at_a_time` armed with `return(<daemon>[,…])`
/// makes those daemons handle every event alone with its handler: the
/// reference the batches are compared against.
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
fn one_at_a_time(daemon: &str) -> bool {
    fail::fail_point!("processor::one_at_a_time", |armed: Option<String>| armed.is_some_and(|armed| armed.split(',').any(|name| name == daemon)));
    false
}

/// What a stored event says, or why it cannot be read (it is then invalid).
fn read_event(event: &webhook_events::Model, now: chrono::DateTime<Utc>) -> Result<crate::webhooks::EventData, String> {
    let partner = event.partner.parse::<Partner>().map_err(|e| e.to_string())?;
    payload::read(partner, &event.event_type, &event.body, now).map_err(|e| format!("stored body cannot be read: {e}"))
}

/// How long one handler may run: half the lease, so its transaction still
/// commits while the claim holds.
fn handler_budget(settings: &ProcessorConfig) -> Duration {
    Duration::from_secs(settings.lease_secs) / 2
}

/// Whether an event's claims lapsed (without an outcome) often enough to
/// dead-letter it rather than run it again: as many as the deterministic
/// failures a dead letter takes.
pub fn lapsed_too_often(lapses: i32, max_attempts: i32) -> bool {
    lapses >= max_attempts
}

/// A waiting event is looked at again less often the longer it waits.
fn age_attempt(age: Duration) -> u32 {
    (age.as_secs() / 60).max(1).ilog2() + 1
}

/// The delay before retry number `attempt` (from 1) after a deterministic
/// failure or a wait: exponential from `retry_base_ms`, capped, with jitter.
fn retry_delay(config: &ProcessorConfig, attempt: u32) -> Duration {
    Backoff::doubling(Duration::from_millis(config.retry_base_ms), Duration::from_secs(config.retry_max_secs)).jittered().delay(attempt.saturating_sub(1))
}

/// The delay before an event's next transient retry after `failures`
/// earlier transient failures in a row: `transient_retry_ms` doubling up to
/// `transient_retry_max_secs`. A daemon that cannot process an event (no
/// master key for a new user, no active wallet) so looks at it less and
/// less often instead of claiming it again every few seconds forever.
pub fn transient_delay(config: &ProcessorConfig, failures: u32) -> Duration {
    let base = Duration::from_millis(config.transient_retry_ms);
    Backoff::doubling(base, Duration::from_secs(config.transient_retry_max_secs).max(base)).delay(failures)
}

/// What a handler's panic said, for the event's `last_error`.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("no message");
    format!("handler panicked: {text}")
}

/// Since when each event has been failing transiently, so that an event
/// stuck on a passing condition is alerted by name however many other
/// events succeed meanwhile.
#[derive(Debug, Default)]
pub struct StallWatch {
    events: HashMap<Uuid, Stall>,
}

#[derive(Debug, Clone, Copy)]
struct Stall {
    /// Its first transient failure in this stretch.
    since: Instant,
    /// Its latest one (an event another processor finished is forgotten).
    seen: Instant,
    /// Whether this stretch was alerted already.
    alerted: bool,
    /// Its transient failures in this stretch.
    failures: u32,
}

impl StallWatch {
    /// Records a transient failure of `event` at `now`; returns how long it
    /// has been failing when that reaches `threshold` for the first time in
    /// this stretch (raise the alert), else `None`.
    pub fn failed(&mut self, event: Uuid, now: Instant, threshold: Duration) -> Option<Duration> {
        let stall = self.events.entry(event).or_insert(Stall { since: now, seen: now, alerted: false, failures: 0 });
        stall.seen = now;
        stall.failures = stall.failures.saturating_add(1);
        let failing = now.saturating_duration_since(stall.since);
        if stall.alerted || failing < threshold {
            return None;
        }
        stall.alerted = true;
        Some(failing)
    }

    /// How many transient failures of `event` this stretch has seen so far.
    pub fn failures(&self, event: Uuid) -> u32 {
        self.events.get(&event).map_or(0, |stall| stall.failures)
    }

    /// `event` got any other outcome: its stretch ends.
    pub fn settled(&mut self, event: Uuid) {
        self.events.remove(&event);
    }

    /// Forgets events not seen failing for longer than `keep` (finished by
    /// another processor, or gone), so the map stays bounded.
    pub fn forget_older_than(&mut self, now: Instant, keep: Duration) {
        self.events.retain(|_, stall| now.saturating_duration_since(stall.seen) <= keep);
    }
}

/// The processor actor.
pub struct Processor;

/// What a processor starts with.
pub struct ProcessorArgs {
    /// The inbox and ledger.
    pub db: DatabaseConnection,
    /// Config; the reward rules are read once per claimed batch.
    pub config: ConfigHandle,
    /// To create custodial wallets for new users (none: new users wait).
    pub keys: Option<MasterKeys>,
    /// Nudges the wallet actors that got work (a no-op without a chain).
    pub nudge_wallet: WalletNudge,
    /// Shared with intake: on SQLite, each claim and write waits its turn.
    pub gate: WriteGate,
}

/// A processor's state.
pub struct ProcessorState {
    args: ProcessorArgs,
    /// Since when claiming keeps failing (reset by any claim or success).
    failing_since: Option<Instant>,
    /// Whether that stretch was alerted already.
    failing_alerted: bool,
    /// Events failing transiently, each alerted on its own.
    stalls: StallWatch,
}

impl Actor for Processor {
    type Msg = ProcessorMsg;
    type State = ProcessorState;
    type Arguments = ProcessorArgs;

    async fn pre_start(&self, myself: ActorRef<ProcessorMsg>, args: ProcessorArgs) -> Result<ProcessorState, ActorProcessingErr> {
        myself.cast(ProcessorMsg::Tick)?;
        Ok(ProcessorState { args, failing_since: None, failing_alerted: false, stalls: StallWatch::default() })
    }

    async fn handle(&self, myself: ActorRef<ProcessorMsg>, msg: ProcessorMsg, state: &mut ProcessorState) -> Result<(), ActorProcessingErr> {
        let full = state.run_batch().await;
        if full {
            // More may be waiting: go on after whatever else is in the mailbox.
            myself.cast(ProcessorMsg::Nudge)?;
        }
        if matches!(msg, ProcessorMsg::Tick) {
            let poll = Duration::from_millis(state.args.config.load().processor.poll_interval_ms);
            myself.send_after(poll, || ProcessorMsg::Tick);
        }
        Ok(())
    }
}

impl ProcessorState {
    /// Claims and processes one batch; true when the batch was full.
    async fn run_batch(&mut self) -> bool {
        let config = self.args.config.load_full();
        let settings = &config.processor;
        let token = Uuid::now_v7();
        let turn = self.args.gate.enter().await;
        let claimed = inbox::claim(&self.args.db, token, Duration::from_secs(settings.lease_secs), settings.batch, Utc::now()).await;
        drop(turn);
        let claimed = match claimed {
            Ok(claimed) => {
                self.failing_since = None;
                self.failing_alerted = false;
                claimed
            }
            Err(error) => {
                warn!(%error, "Cannot claim inbox events");
                self.transient_failure(&error.to_string()).await;
                return false;
            }
        };
        if claimed.is_empty() {
            return false;
        }
        let threshold = Duration::from_secs(settings.transient_alert_secs);
        // Kept longer than the longest transient delay, so an event's backoff
        // does not start over while it waits for its next retry.
        let longest_transient = Duration::from_secs(settings.transient_retry_max_secs).max(Duration::from_millis(settings.transient_retry_ms));
        let keep = threshold.max(Duration::from_secs(settings.lease_secs)).max(longest_transient);
        self.stalls.forget_older_than(Instant::now(), keep * 2);
        let full = claimed.len() as u64 == settings.batch;
        let rules_hash = config.rewards.hash();
        let mut wallets = BTreeSet::new();
        let mut claimed = claimed;
        // The order one event at a time would see them in.
        claimed.sort_by_key(|event| (event.received_at, event.id));
        let mut index = 0;
        while index < claimed.len() {
            let event = &claimed[index];
            if lapsed_too_often(event.lapses, settings.max_attempts) {
                // A poison event that crashes or hangs whoever runs it must
                // not be claimed again at every lease forever.
                let error = format!("its claim lapsed {} times without an outcome: a processor crashed or hung on it", event.lapses);
                let _turn = self.args.gate.enter().await;
                if let Err(error) = self.dead_letter(event, token, &error).await {
                    warn!(partner = %event.partner, event_id = %event.partner_event_id, %error, "Cannot dead-letter an event whose claims keep lapsing");
                }
                index += 1;
                continue;
            }
            let settled = if one_at_a_time(&config.daemon_name) { 0 } else { self.run_set(&config, &rules_hash, token, &claimed[index..], &mut wallets).await };
            if settled > 0 {
                index += settled;
                continue;
            }
            self.process_one(&config, &rules_hash, token, event, &mut wallets).await;
            index += 1;
        }
        for wallet in wallets {
            (self.args.nudge_wallet)(wallet);
        }
        full
    }

    /// Processes the longest run at the head of `events` that one snapshot
    /// decides, in one transaction (see [`batch`]); returns how many events
    /// it settled (0: the first event goes [`Self::process_one`]'s way).
    async fn run_set(&mut self, config: &Config, rules_hash: &str, token: Uuid, events: &[webhook_events::Model], wallets: &mut BTreeSet<Uuid>) -> usize {
        let settings = &config.processor;
        let end = events.iter().position(|event| lapsed_too_often(event.lapses, settings.max_attempts)).unwrap_or(events.len());
        let now = Utc::now();
        // Read up to the first event that always ends a run: the run stops
        // there, and the next call starts from it.
        let mut items: Vec<Item<'_>> = Vec::new();
        for event in &events[..end] {
            let item = Item { event, data: read_event(event, now), hooked: handlers::hooked(&event.partner_event_id) || stall_armed(&event.partner_event_id) };
            let last = !batch::plan::may_decide(&item);
            items.push(item);
            if last {
                break;
            }
        }
        if !items.first().is_some_and(batch::plan::may_decide) {
            return 0;
        }
        let snapshot = match batch::snapshot(&self.args.db, &batch::plan::needs(&items)).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                warn!(%error, "Cannot read a batch's snapshot; processing its events one at a time");
                return 0;
            }
        };
        let bounds = Bounds::of(&config.rewards.limits);
        let rules = Rules { rules: &config.rewards, bounds, rules_hash, now, create_users: self.args.keys.is_some() };
        let decided = batch::plan::plan(&items, &snapshot, &rules, &mut Uuid::now_v7);
        if decided.outcomes.is_empty() {
            return 0;
        }
        let run: Vec<&webhook_events::Model> = items[..decided.outcomes.len()].iter().map(|item| item.event).collect();
        let keys = self.args.keys.clone();
        let target = Target { events: &run, token, daemon: &config.daemon_name, bounds, rules_hash, budget: handler_budget(settings), keys: keys.as_ref() };
        // The turn lasts through the outcomes' hand-backs below.
        let turn = self.args.gate.enter().await;
        match batch::write(&self.args.db, &decided, &target).await {
            Ok(Written::Committed) => {}
            Ok(Written::RolledBack { held, why }) => {
                drop(turn);
                debug!(events = run.len(), %why, "A batch did not write as planned; processing its events one at a time");
                for event in run.iter().filter(|event| held.contains(&event.id)) {
                    self.process_one(config, rules_hash, token, event, wallets).await;
                }
                return run.len();
            }
            Err(error) => {
                warn!(%error, "Cannot begin a batch's transaction; processing its events one at a time");
                return 0;
            }
        }
        wallets.extend(decided.wallets.iter().copied());
        let wait_limit = Duration::from_secs(config.rewards.aurora.review_wait_days.max(1) as u64 * 86_400);
        for (event, outcome) in run.iter().zip(decided.outcomes) {
            match outcome {
                Outcome::Processed => debug!(partner = %event.partner, event_id = %event.partner_event_id, "Event processed"),
                Outcome::Invalid(note) => info!(partner = %event.partner, event_id = %event.partner_event_id, status = INVALID, %note, "Event processed"),
                outcome => {
                    let age = (Utc::now() - event.received_at).to_std().unwrap_or_default();
                    let step = plan(outcome, event.attempts, settings.max_attempts, age, wait_limit);
                    if let Err(error) = self.give_back(event, token, settings, step).await {
                        self.event_failing(event, token, &format!("database: {error}"), settings).await;
                        continue;
                    }
                }
            }
            self.stalls.settled(event.id);
        }
        run.len()
    }

    /// Processes one event in a transaction of its own, with its handler.
    async fn process_one(&mut self, config: &Config, rules_hash: &str, token: Uuid, event: &webhook_events::Model, wallets: &mut BTreeSet<Uuid>) {
        let keys = self.args.keys.clone();
        let ctx = Context { rules: &config.rewards, rules_hash, keys: keys.as_ref(), event };
        let _turn = self.args.gate.enter().await;
        self.process(&ctx, token, &config.processor, wallets).await;
    }

    async fn process(&mut self, ctx: &Context<'_>, token: Uuid, settings: &ProcessorConfig, wallets: &mut BTreeSet<Uuid>) {
        let event = ctx.event;
        let txn = match crate::db::begin_write(&self.args.db).await {
            Ok(txn) => txn,
            Err(error) => return self.event_failing(event, token, &format!("database: {error}"), settings).await,
        };
        let (outcome, touched) = match read_event(event, Utc::now()) {
            Err(reason) => (Outcome::Invalid(reason), BTreeSet::new()),
            // A handler that panics anyway fails this event only (and counts
            // toward its dead letter), never the processor and its batch.
            // One that hangs (a lock wait, a dead connection) fails this event
            // once its budget is spent, so a lone processor is never stuck on it.
            Ok(data) => match tokio::time::timeout(handler_budget(settings), AssertUnwindSafe(handlers::handle(&txn, ctx, data)).catch_unwind())
                .await
                .unwrap_or_else(|_| Ok(Err(HandlerError::Deterministic(format!("the handler did not finish within {} ms", handler_budget(settings).as_millis())))))
                .unwrap_or_else(|panic| Err(HandlerError::Deterministic(panic_message(panic.as_ref()))))
            {
                Ok((Handled::Processed, touched)) => (Outcome::Processed, touched),
                Ok((Handled::Invalid(reason), _)) => (Outcome::Invalid(reason), BTreeSet::new()),
                Ok((Handled::Wait(reason), _)) => (Outcome::Wait(reason), BTreeSet::new()),
                Err(HandlerError::Deterministic(error)) => (Outcome::Deterministic(error), BTreeSet::new()),
                Err(HandlerError::Transient(error)) => (Outcome::Transient(error), BTreeSet::new()),
            },
        };
        let age = (Utc::now() - event.received_at).to_std().unwrap_or_default();
        let wait_limit = Duration::from_secs(ctx.rules.aurora.review_wait_days.max(1) as u64 * 86_400);
        let transient = match &outcome {
            Outcome::Transient(error) => Some(error.clone()),
            _ => None,
        };
        // Test hook (compiled in only with `test-hooks`): a processor that
        // hangs after the handler, outside its budget, as one that crashed would.
        if let Some(stall) = stall_before_commit(&event.partner_event_id) {
            tokio::time::sleep(stall).await;
        }
        let step = plan(outcome, event.attempts, settings.max_attempts, age, wait_limit);
        let result = match step {
            Step::Finish { status, note } => match self.finish(txn, event, token, status, note).await {
                Ok(done) => {
                    if done && status == PROCESSED {
                        wallets.extend(touched);
                    }
                    Ok(())
                }
                // The database refused the commit itself (a deferred
                // constraint): as deterministic as a refused write.
                Err(error) if crate::db::classify(&error) == Failure::Deterministic => {
                    let step = plan(Outcome::Deterministic(format!("database: {error}")), event.attempts, settings.max_attempts, age, wait_limit);
                    self.give_back(event, token, settings, step).await
                }
                Err(error) => Err(error),
            },
            step => {
                let _ = txn.rollback().await;
                self.give_back(event, token, settings, step).await
            }
        };
        match result {
            Err(error) => self.event_failing(event, token, &format!("database: {error}"), settings).await,
            Ok(()) if let Some(error) = transient => self.event_failing(event, token, &error, settings).await,
            Ok(()) => self.stalls.settled(event.id),
        }
    }

    /// Hands a failed event back to the inbox: retried later, or dead-lettered.
    async fn give_back(&self, event: &webhook_events::Model, token: Uuid, settings: &ProcessorConfig, step: Step) -> Result<(), sea_orm::DbErr> {
        match step {
            Step::Retry { attempt, count, error } => {
                // Attempt 0 is a transient failure (see `plan`).
                let delay = if attempt == 0 { transient_delay(settings, self.stalls.failures(event.id)) } else { retry_delay(settings, attempt) };
                let next_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                debug!(partner = %event.partner, event_id = %event.partner_event_id, %error, count, "Event will be retried");
                inbox::retry_later(&self.args.db, event.id, token, next_at, count, &error).await.map(|_| ())
            }
            Step::DeadLetter { error } => self.dead_letter(event, token, &error).await,
            // Not a failure: committed by `finish`, nothing to hand back.
            Step::Finish { .. } => Ok(()),
        }
    }

    /// `event` failed for a passing reason: retried without counting, and
    /// alerted by name once it has been failing for `transient_alert_secs`,
    /// whatever other events do meanwhile.
    async fn event_failing(&mut self, event: &webhook_events::Model, token: Uuid, error: &str, settings: &ProcessorConfig) {
        // Hand the claim back uncounted where the database lets us (a no-op
        // when the retry above already did): a claim left to lapse would
        // count as a crash of this event.
        let next_at = Utc::now() + chrono::Duration::from_std(transient_delay(settings, self.stalls.failures(event.id))).unwrap_or_default();
        let _ = inbox::retry_later(&self.args.db, event.id, token, next_at, false, error).await;
        let threshold = Duration::from_secs(settings.transient_alert_secs);
        let Some(failing) = self.stalls.failed(event.id, Instant::now(), threshold) else { return };
        let error = inbox::storable(error);
        alert::raise(
            &self.args.db,
            Severity::Warning,
            "processing_stalled",
            &format!(
                "Event {}:{} ({}) has been failing for {} s and is retried without counting toward its dead letter: {error}",
                event.partner,
                event.partner_event_id,
                event.id,
                failing.as_secs()
            ),
            json!({ "event": event.id, "partner": event.partner, "partner_event_id": event.partner_event_id, "failing_secs": failing.as_secs(), "error": error }),
        )
        .await;
    }

    async fn finish(
        &self,
        txn: sea_orm::DatabaseTransaction,
        event: &webhook_events::Model,
        token: Uuid,
        status: &'static str,
        note: Option<String>,
    ) -> Result<bool, sea_orm::DbErr> {
        let daemon = self.args.config.load().daemon_name.clone();
        if !inbox::finish(&txn, event.id, token, status, note.clone(), &daemon).await? {
            // Our lease lapsed and another processor took the event: its
            // transaction decides, ours must not commit.
            txn.rollback().await?;
            warn!(partner = %event.partner, event_id = %event.partner_event_id, "Lost the claim on an event; its effects were rolled back");
            return Ok(false);
        }
        fail::fail_point!("processor::before_commit", |_| std::process::abort());
        txn.commit().await?;
        match note {
            Some(note) => info!(partner = %event.partner, event_id = %event.partner_event_id, status, %note, "Event processed"),
            None => debug!(partner = %event.partner, event_id = %event.partner_event_id, status, "Event processed"),
        }
        Ok(true)
    }

    /// The dead letter and its alert commit together.
    async fn dead_letter(&self, event: &webhook_events::Model, token: Uuid, error: &str) -> Result<(), sea_orm::DbErr> {
        let error = &inbox::storable(error);
        let txn = crate::db::begin_write(&self.args.db).await?;
        if !inbox::dead_letter(&txn, event.id, token, error).await? {
            return txn.rollback().await;
        }
        alert::raise(
            &txn,
            Severity::Error,
            "webhook_dead_letter",
            &format!("Event {}:{} was dead-lettered: {error}. Replay it with `havend events replay {}` once the cause is fixed.", event.partner, event.partner_event_id, event.id),
            json!({ "event": event.id, "partner": event.partner, "partner_event_id": event.partner_event_id, "attempts": event.attempts + 1, "error": error }),
        )
        .await;
        txn.commit().await
    }

    /// Claims that keep failing (no event to name) retry quietly until they
    /// last long enough to tell someone.
    async fn transient_failure(&mut self, error: &str) {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        let threshold = Duration::from_secs(self.args.config.load().processor.transient_alert_secs);
        if !self.failing_alerted && since.elapsed() >= threshold {
            self.failing_alerted = true;
            alert::raise(
                &self.args.db,
                Severity::Warning,
                "processing_stalled",
                &format!("The processor has been unable to claim inbox events for {} s: {error}", since.elapsed().as_secs()),
                json!({ "error": error }),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn outcomes_become_steps() {
        let max = 5;
        assert_eq!(plan(Outcome::Processed, 0, max, DAY, 7 * DAY), Step::Finish { status: PROCESSED, note: None });
        assert_eq!(plan(Outcome::Invalid("x".into()), 0, max, DAY, 7 * DAY), Step::Finish { status: INVALID, note: Some("x".into()) });
        assert_eq!(plan(Outcome::Deterministic("e".into()), 0, max, DAY, 7 * DAY), Step::Retry { attempt: 1, count: true, error: "e".into() });
        assert_eq!(plan(Outcome::Deterministic("e".into()), 4, max, DAY, 7 * DAY), Step::DeadLetter { error: "e".into() });
        assert_eq!(plan(Outcome::Transient("t".into()), 4, max, DAY, 7 * DAY), Step::Retry { attempt: 0, count: false, error: "t".into() });
        assert!(matches!(plan(Outcome::Wait("w".into()), 0, max, DAY, 7 * DAY), Step::Retry { count: false, .. }));
        assert!(matches!(plan(Outcome::Wait("w".into()), 0, max, 8 * DAY, 7 * DAY), Step::DeadLetter { .. }));
    }

    #[test]
    fn an_event_failing_transiently_is_alerted_once_per_stretch_whatever_other_events_do() {
        let (event, other) = (Uuid::now_v7(), Uuid::now_v7());
        let start = Instant::now();
        let secs = |n: u64| start + Duration::from_secs(n);
        let threshold = Duration::from_secs(60);
        let mut watch = StallWatch::default();
        assert_eq!(watch.failed(event, start, threshold), None);
        // Other events succeeding does not reset this one's stretch.
        watch.settled(other);
        assert_eq!(watch.failed(event, secs(30), threshold), None);
        assert_eq!(watch.failed(event, secs(61), threshold), Some(Duration::from_secs(61)));
        assert_eq!(watch.failed(event, secs(90), threshold), None, "alerted once per stretch");
        // Its own success ends the stretch; a new one starts from scratch.
        watch.settled(event);
        assert_eq!(watch.failed(event, secs(100), threshold), None);
        assert_eq!(watch.failed(event, secs(161), threshold), Some(Duration::from_secs(61)));
        watch.forget_older_than(secs(400), threshold);
        assert!(watch.events.is_empty(), "an event not seen failing for a while is forgotten");
    }

    #[test]
    fn retry_delays_grow_and_stay_capped() {
        let config = ProcessorConfig { retry_base_ms: 1_000, retry_max_secs: 60, ..ProcessorConfig::default() };
        let first = retry_delay(&config, 1);
        assert!(first >= Duration::from_secs(1) && first < Duration::from_secs(2), "{first:?}");
        assert!(retry_delay(&config, 3) >= Duration::from_secs(4));
        assert!(retry_delay(&config, 30) <= Duration::from_secs(120));
    }

    #[test]
    fn an_event_that_keeps_failing_transiently_is_retried_less_and_less_often() {
        let config = ProcessorConfig { transient_retry_ms: 2_000, transient_retry_max_secs: 60, ..ProcessorConfig::default() };
        let delays: Vec<u64> = (0..8).map(|failures| transient_delay(&config, failures).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        let mut watch = StallWatch::default();
        let (event, start) = (Uuid::now_v7(), Instant::now());
        assert_eq!(watch.failures(event), 0, "the first failure waits the base delay");
        watch.failed(event, start, Duration::from_secs(300));
        watch.failed(event, start, Duration::from_secs(300));
        assert_eq!(watch.failures(event), 2);
        watch.settled(event);
        assert_eq!(watch.failures(event), 0, "a success starts the backoff over");
        // A cap below the base never shortens the first delay.
        let odd = ProcessorConfig { transient_retry_ms: 5_000, transient_retry_max_secs: 1, ..ProcessorConfig::default() };
        assert_eq!(transient_delay(&odd, 3), Duration::from_secs(5));
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Processed),
            Just(Outcome::Invalid("i".into())),
            Just(Outcome::Wait("w".into())),
            Just(Outcome::Deterministic("d".into())),
            Just(Outcome::Transient("t".into())),
        ]
    }

    proptest! {
        /// Replaying any sequence of outcomes as the processor would: only
        /// deterministic failures count, the dead letter comes exactly at the
        /// limit, and a transient failure never dead-letters.
        #[test]
        fn only_deterministic_failures_lead_to_the_dead_letter(outcomes in proptest::collection::vec(outcome(), 1..40), max in 1i32..8, age_days in 0u64..10) {
            let mut attempts = 0;
            for outcome in outcomes {
                let deterministic = matches!(outcome, Outcome::Deterministic(_));
                let transient = matches!(outcome, Outcome::Transient(_));
                let step = plan(outcome, attempts, max, Duration::from_secs(age_days * 86_400), 7 * DAY);
                match step {
                    Step::Retry { count, .. } => {
                        prop_assert_eq!(count, deterministic);
                        if count { attempts += 1; }
                        prop_assert!(attempts < max);
                    }
                    Step::DeadLetter { .. } => {
                        prop_assert!(!transient);
                        prop_assert!(!deterministic || attempts + 1 == max);
                        break;
                    }
                    Step::Finish { .. } => break,
                }
            }
        }

        /// A transient retry's delay never shrinks as failures repeat, never
        /// drops below the first delay and never passes the cap (or the first
        /// delay, if that is longer).
        #[test]
        fn transient_delays_grow_within_their_bounds(base_ms in 1u64..100_000, max_secs in 0u64..10_000, failures in 0u32..200) {
            let config = ProcessorConfig { transient_retry_ms: base_ms, transient_retry_max_secs: max_secs, ..ProcessorConfig::default() };
            let (now, next) = (transient_delay(&config, failures), transient_delay(&config, failures + 1));
            let base = Duration::from_millis(base_ms);
            prop_assert!(now <= next);
            prop_assert!(now >= base);
            prop_assert!(now <= Duration::from_secs(max_secs).max(base));
        }
    }
}
