//! The transaction monitor (SPEC section 4): every `monitor.interval_secs`
//! it looks at what is in flight and at the chain, and raises
//! `transaction_pending` (an intent signed longer than the threshold ago and
//! not final, or a wallet whose chain nonce has not moved for several looks
//! while it has work in flight) and `gas_price_spike` (the base fee above
//! `gas_spike_factor` × its moving baseline). It observes and alerts;
//! replacing a transaction stays the wallet planner's decision. While a
//! spike lasts (at most `monitor.gas_hold_max_secs`) it holds new mints by
//! writing the hold's deadline where every wallet actor reads it
//! ([`crate::ledger::gas_hold`]); burns and replacements never wait.
//!
//! - [`plan`] decides what to raise ([`plan::plan`]) and whether to hold
//!   ([`plan::hold_until`]), pure functions over one [`Observation`] and the
//!   monitor's [`Memory`].
//! - [`actor`] gathers, raises and writes, and samples the gauges.
//! - [`sample`] reads the ledger at a glance: the admin API's summary and
//!   the database gauges of `/metrics`.

pub mod actor;
pub mod plan;
pub mod sample;

pub use actor::{Monitor, MonitorArgs, MonitorMsg, MonitorState};
pub use plan::{Finding, Memory, Observation, PendingTx, WalletSample, hold_until, should_write_hold};
pub use sample::{Summary, summary};
