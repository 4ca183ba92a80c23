//! The intake actor: group-commits verified webhooks into the inbox.
//!
//! HTTP handlers `call` it with one event each. The first event of a batch
//! queues a `Flush` (after `flush_delay_us`, by default at once, behind the
//! events already waiting); a full batch flushes immediately. While a flush
//! awaits the database the mailbox fills, so under load many requests share
//! one commit. Every caller is answered only after that commit.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sea_orm::DatabaseConnection;
use tracing::{debug, warn};

use super::store::{self, NewEvent};
use super::{StoreError, Stored};
use crate::config::ConfigHandle;
use crate::db::WriteGate;
use crate::webhooks::Partner;

/// Messages the intake actor handles.
pub enum IntakeMsg {
    /// Store one event durably; answered after the commit.
    /// (Boxed: an event is large, and mailbox messages are moved around.)
    Store(Box<NewEvent>, RpcReplyPort<Result<Stored, StoreError>>),
    /// Write the collected batch now.
    Flush,
    /// Test-only: make the handler panic, to prove supervision.
    #[cfg(feature = "test-hooks")]
    Panic,
}

/// The intake actor (stateless itself; see [`IntakeState`]).
pub struct IntakeActor;

/// What the intake actor is started with.
pub struct IntakeArgs {
    /// The inbox database.
    pub db: DatabaseConnection,
    /// Config, read afresh for each batch so reloads apply.
    pub config: ConfigHandle,
    /// Called after a commit that stored new events (nudges the processors).
    pub on_commit: OnCommit,
    /// Shared with the processors: on SQLite, each batch waits its turn.
    pub gate: WriteGate,
}

/// What the intake actor calls after committing new events.
pub type OnCommit = std::sync::Arc<dyn Fn() + Send + Sync>;

/// The batch being collected.
pub struct IntakeState {
    db: DatabaseConnection,
    config: ConfigHandle,
    on_commit: OnCommit,
    gate: WriteGate,
    batch: Vec<(NewEvent, RpcReplyPort<Result<Stored, StoreError>>)>,
}

impl Actor for IntakeActor {
    type Msg = IntakeMsg;
    type State = IntakeState;
    type Arguments = IntakeArgs;

    async fn pre_start(&self, _myself: ActorRef<IntakeMsg>, args: IntakeArgs) -> Result<IntakeState, ActorProcessingErr> {
        Ok(IntakeState { db: args.db, config: args.config, on_commit: args.on_commit, gate: args.gate, batch: Vec::new() })
    }

    async fn handle(&self, myself: ActorRef<IntakeMsg>, msg: IntakeMsg, state: &mut IntakeState) -> Result<(), ActorProcessingErr> {
        match msg {
            IntakeMsg::Store(event, reply) => {
                let config = state.config.load();
                if !config.intake.group_commit {
                    // One transaction per request, run concurrently on the pool.
                    let (db, gate) = (state.db.clone(), state.gate.clone());
                    let timeout = Duration::from_millis(config.intake.store_timeout_ms);
                    tokio::spawn(async move {
                        let _turn = gate.enter().await;
                        let mut outcome = write_batch(&db, vec![(*event, reply)], timeout).await;
                        outcome.pop().map(|(result, reply)| reply.send(result));
                    });
                    return Ok(());
                }
                if state.batch.is_empty() {
                    // With no delay the Flush still queues behind every Store
                    // already in the mailbox, so those share the commit.
                    match config.intake.flush_delay_us {
                        0 => myself.cast(IntakeMsg::Flush)?,
                        delay => {
                            myself.send_after(Duration::from_micros(delay), || IntakeMsg::Flush);
                        }
                    }
                }
                state.batch.push((*event, reply));
                if state.batch.len() >= config.intake.max_batch {
                    state.flush().await;
                }
            }
            IntakeMsg::Flush => state.flush().await,
            #[cfg(feature = "test-hooks")]
            IntakeMsg::Panic => panic!("intake panic injected by a test"),
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<IntakeMsg>, state: &mut IntakeState) -> Result<(), ActorProcessingErr> {
        // A stop between a Store and its Flush must still answer its callers.
        state.flush().await;
        Ok(())
    }
}

impl IntakeState {
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let timeout = Duration::from_millis(self.config.load().intake.store_timeout_ms);
        #[cfg(feature = "test-hooks")]
        let crash_marked = batch.iter().any(|(e, _)| e.partner_event_id.ends_with("crash"));
        let turn = self.gate.enter().await;
        let outcomes = write_batch(&self.db, batch, timeout).await;
        drop(turn);
        // Test hook: the actor dies with a batch written but not yet answered,
        // when the batch holds an id ending in "crash".
        #[cfg(feature = "test-hooks")]
        fail::fail_point!("intake::crash_after_write", crash_marked, |_| ());
        let mut stored_new = false;
        for (result, reply) in outcomes {
            stored_new |= result == Ok(Stored::New);
            // A caller that gave up (timeout) has dropped its port; nothing to do.
            let _ = reply.send(result);
        }
        if stored_new {
            (self.on_commit)();
        }
    }
}

type Reply = RpcReplyPort<Result<Stored, StoreError>>;

/// Writes a batch and pairs every caller with its outcome.
///
/// Events sharing a key are written once; the first is `New` or `Duplicate`
/// as the database says, the rest are `Duplicate`. If the multi-row insert
/// fails for a reason other than an unreachable database, each row is retried
/// alone so one bad row cannot fail its neighbours.
async fn write_batch(
    db: &DatabaseConnection,
    batch: Vec<(NewEvent, Reply)>,
    timeout: Duration,
) -> Vec<(Result<Stored, StoreError>, Reply)> {
    let mut first_of_key: HashMap<(Partner, String), usize> = HashMap::new();
    let mut leaders: Vec<usize> = Vec::new();
    for (index, (event, _)) in batch.iter().enumerate() {
        first_of_key.entry((event.partner, event.partner_event_id.clone())).or_insert_with(|| {
            leaders.push(index);
            index
        });
    }
    let leader_events: Vec<&NewEvent> = leaders.iter().map(|&i| &batch[i].0).collect();
    let started = std::time::Instant::now();

    let outcome_of_leader: Vec<Result<Stored, StoreError>> =
        match with_timeout(timeout, store::insert_new(db, &leader_events)).await {
            Ok(stored) => leader_events
                .iter()
                .map(|e| Ok(if stored.contains(&e.id) { Stored::New } else { Stored::Duplicate }))
                .collect(),
            Err(error) if error.unreachable => {
                warn!(error = %error.message, rows = leader_events.len(), "Inbox unreachable; answering 503");
                leader_events.iter().map(|_| Err(StoreError::Unavailable)).collect()
            }
            Err(error) => {
                warn!(error = %error.message, rows = leader_events.len(), "Batch insert failed; retrying row by row");
                retry_one_by_one(db, &leader_events, timeout).await
            }
        };
    debug!(events = batch.len(), rows = leader_events.len(), elapsed_us = started.elapsed().as_micros() as u64, "Inbox batch written");

    let leader_result: HashMap<usize, &Result<Stored, StoreError>> =
        leaders.iter().copied().zip(outcome_of_leader.iter()).collect();
    batch
        .into_iter()
        .enumerate()
        .map(|(index, (event, reply))| {
            let leader = first_of_key[&(event.partner, event.partner_event_id.clone())];
            let result = match leader_result[&leader] {
                Ok(_) if leader != index => Ok(Stored::Duplicate),
                other => other.clone(),
            };
            (result, reply)
        })
        .collect()
}

async fn retry_one_by_one(db: &DatabaseConnection, events: &[&NewEvent], timeout: Duration) -> Vec<Result<Stored, StoreError>> {
    let mut results = Vec::with_capacity(events.len());
    let mut unreachable = false;
    for event in events {
        if unreachable {
            results.push(Err(StoreError::Unavailable));
            continue;
        }
        results.push(match with_timeout(timeout, store::insert_new(db, &[*event])).await {
            Ok(stored) => Ok(if stored.is_empty() { Stored::Duplicate } else { Stored::New }),
            Err(error) => {
                unreachable = error.unreachable;
                warn!(partner = %event.partner, event_id = %event.partner_event_id, error = %error.message, "Event could not be stored");
                Err(StoreError::Unavailable)
            }
        });
    }
    results
}

struct WriteFailure {
    message: String,
    unreachable: bool,
}

/// A write whose outcome is unknown after `timeout` counts as failed: the
/// caller gets 503, and a redelivery is then stored or found a duplicate.
async fn with_timeout<T>(
    timeout: Duration,
    write: impl Future<Output = Result<T, sea_orm::DbErr>>,
) -> Result<T, WriteFailure> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(WriteFailure { unreachable: store::is_unreachable(&error), message: error.to_string() }),
        Err(_) => Err(WriteFailure { message: "timed out".into(), unreachable: true }),
    }
}
