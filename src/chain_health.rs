//! The chain part of `GET /health`, refreshed in the background: one
//! `totalSupply()` call at most every [`REFRESH_EVERY`], whatever the request
//! rate, so an unauthenticated flood of health checks never becomes RPC load
//! (which would open the breaker for the wallets). The listener only reads
//! the last reading from a [`ChainHealthSlot`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use arc_swap::ArcSwap;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::chain::ChainClient;
use crate::breaker::{BreakerHandle, BreakerState};

/// How often the chain is asked, at most.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// How long one reading may take before the chain counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A reading older than this means the refresher is stuck or gone: the
/// chain is reported down rather than as it was.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// What the chain looked like at the last refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainReading {
    /// Not read yet (the first refresh runs right after start-up).
    Starting,
    /// The node answered with the token's total supply.
    Ok(U256),
    /// The node did not answer in time, or failed.
    Down,
    /// The breaker was open: the node was not asked.
    CircuitOpen,
}

/// The last reading and how many there have been.
#[derive(Debug, Clone, Copy)]
pub struct ChainHealth {
    /// What the chain said.
    pub reading: ChainReading,
    /// When it said it (`None` before the first refresh).
    pub at: Option<Instant>,
    /// Refreshes so far, across restarts of the refresher: each asks the
    /// node at most once, so RPC load from health is bounded by this count.
    pub refreshes: u64,
}

impl ChainHealth {
    /// What `/health` reports now: the breaker's current state wins (it is
    /// read without a call); a reading older than [`STALE_AFTER`] is down.
    pub fn word(&self, breaker: BreakerState, now: Instant) -> (&'static str, Option<U256>) {
        if breaker == BreakerState::Open {
            return ("circuit_open", None);
        }
        if self.at.is_some_and(|at| now.saturating_duration_since(at) > STALE_AFTER) {
            return ("down", None);
        }
        match self.reading {
            ChainReading::Starting => ("starting", None),
            ChainReading::Ok(supply) => ("ok", Some(supply)),
            ChainReading::Down => ("down", None),
            ChainReading::CircuitOpen => ("circuit_open", None),
        }
    }
}

/// Where the refresher publishes and the listener reads.
pub type ChainHealthSlot = Arc<ArcSwap<ChainHealth>>;

/// A slot holding "not read yet".
pub fn empty_slot() -> ChainHealthSlot {
    Arc::new(ArcSwap::from_pointee(ChainHealth { reading: ChainReading::Starting, at: None, refreshes: 0 }))
}

/// The refresher actor.
pub struct ChainHealthActor;

/// What the refresher starts with (kept by the supervisor to restart it).
#[derive(Clone)]
pub struct ChainHealthArgs {
    /// RPC client.
    pub client: ChainClient,
    /// The token contract.
    pub token: Address,
    /// The RPC breaker: while it is open the node is not asked.
    pub breaker: BreakerHandle,
    /// Where readings are published.
    pub slot: ChainHealthSlot,
}

/// Messages the refresher handles.
pub enum ChainHealthMsg {
    /// Read the chain now and schedule the next reading.
    Refresh,
}

impl Actor for ChainHealthActor {
    type Msg = ChainHealthMsg;
    type State = ChainHealthArgs;
    type Arguments = ChainHealthArgs;

    async fn pre_start(&self, myself: ActorRef<ChainHealthMsg>, args: ChainHealthArgs) -> Result<ChainHealthArgs, ActorProcessingErr> {
        myself.cast(ChainHealthMsg::Refresh)?;
        Ok(args)
    }

    async fn handle(&self, myself: ActorRef<ChainHealthMsg>, msg: ChainHealthMsg, state: &mut ChainHealthArgs) -> Result<(), ActorProcessingErr> {
        let ChainHealthMsg::Refresh = msg;
        let reading = if state.breaker.state() == BreakerState::Open {
            ChainReading::CircuitOpen
        } else {
            match tokio::time::timeout(CHECK_TIMEOUT, state.client.total_supply(state.token)).await {
                Ok(Ok(supply)) => ChainReading::Ok(supply),
                _ => ChainReading::Down,
            }
        };
        let refreshes = state.slot.load().refreshes + 1;
        state.slot.store(Arc::new(ChainHealth { reading, at: Some(Instant::now()), refreshes }));
        // One timer at a time: the next reading comes a full period after this one.
        myself.send_after(REFRESH_EVERY, || ChainHealthMsg::Refresh);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_the_last_reading_the_open_breaker_at_once_and_a_stale_reading_as_down() {
        let now = Instant::now();
        let supply = U256::from(5u64);
        let fresh = ChainHealth { reading: ChainReading::Ok(supply), at: Some(now), refreshes: 1 };
        assert_eq!(fresh.word(BreakerState::Closed, now + Duration::from_secs(1)), ("ok", Some(supply)));
        assert_eq!(fresh.word(BreakerState::Open, now), ("circuit_open", None), "the breaker is read live");
        assert_eq!(fresh.word(BreakerState::Closed, now + STALE_AFTER + Duration::from_secs(1)), ("down", None));
        let down = ChainHealth { reading: ChainReading::Down, ..fresh };
        assert_eq!(down.word(BreakerState::HalfOpen, now), ("down", None));
        let starting = ChainHealth { reading: ChainReading::Starting, at: None, refreshes: 0 };
        assert_eq!(starting.word(BreakerState::Closed, now), ("starting", None));
    }
}
