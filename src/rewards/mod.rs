//! The rewards engine: every stored partner event becomes exact,
//! exactly-once reward intents.
//!
//! - [`rules`]: what the reward rules mean (pure amounts in HNV).
//! - [`amount`]: the one rounding rule from HNV to base units.
//! - [`handlers`]: each event's domain rows and intents, in the caller's transaction.
//! - [`batch`]: a run of events decided from one snapshot and written set-based.
//! - [`limits`]: the mint limit counters.
//! - [`inbox`]: claims, final statuses, retries, dead letters and replay.
//! - [`processor`]: the actor that ties them together.
//! - [`staking`]: the weekly staking yield job.
//! - [`operator`]: held intents (release, cancel).

pub mod amount;
pub mod batch;
pub mod handlers;
pub mod inbox;
pub mod limits;
pub mod operator;
pub mod processor;
pub mod rules;
pub mod staking;

pub use processor::{Processor, ProcessorArgs, ProcessorMsg, ProcessorSlot, WalletNudge};
