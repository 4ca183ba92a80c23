//! Durable webhook intake: the actor that group-commits verified events into
//! the inbox table, and the handle through which the listener reaches it.

mod actor;
pub mod store;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ractor::ActorRef;

pub use actor::{IntakeActor, IntakeArgs, IntakeMsg, IntakeState, OnCommit};
pub use store::{Delivery, NewEvent};

/// The outcome of storing one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new inbox row was committed.
    New,
    /// The (partner, partner event id) was already stored; nothing new was written.
    Duplicate,
}

/// Why an event was not stored (answered 503; the partner retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database did not commit the event.
    #[error("the event store is unavailable")]
    Unavailable,
}

/// Where the current intake actor is published. The supervisor swaps in a
/// new actor after a restart; `None` while there is none.
pub type IntakeSlot = Arc<ArcSwapOption<ActorRef<IntakeMsg>>>;
