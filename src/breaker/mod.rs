//! Circuit breakers, one per dependency (the chain RPC first): the pure state
//! machine here, the actor that owns one in [`actor`].
//!
//! CLOSED → OPEN after `failure_threshold` consecutive transport failures;
//! OPEN → HALF_OPEN after `open_for`; HALF_OPEN lets one probe through at a
//! time and closes after `close_after` successes; any failure there re-opens.

pub mod actor;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use actor::{BreakerActor, BreakerArgs, BreakerHandle, BreakerMsg, BreakerStatus};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until `open_for` has passed.
    Open,
    /// One probe at a time decides.
    HalfOpen,
}

impl BreakerState {
    /// The state as a number for the `havend_breaker_state` gauge: 0
    /// closed, 1 half-open, 2 open (ordered by how bad it is).
    pub fn as_gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// Thresholds of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open it.
    pub failure_threshold: u32,
    /// How long it stays open before probing.
    pub open_for: Duration,
    /// Successful probes that close it.
    pub close_after: u32,
}

/// A change of state, for logs and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: BreakerState,
    /// After.
    pub to: BreakerState,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    probe_successes: u32,
    probe_in_flight: bool,
    opened_at: Option<Instant>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, state: BreakerState::Closed, consecutive_failures: 0, probe_successes: 0, probe_in_flight: false, opened_at: None }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Moves OPEN → HALF_OPEN once `open_for` has passed.
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) if now.duration_since(at) >= self.config.open_for => {
                self.probe_successes = 0;
                self.probe_in_flight = false;
                self.to(BreakerState::HalfOpen)
            }
            _ => None,
        }
    }

    /// Whether a call may go out now; in HALF_OPEN this takes the single probe slot.
    pub fn try_acquire(&mut self, now: Instant) -> (bool, Option<Transition>) {
        let transition = self.poll(now);
        let allowed = match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if self.probe_in_flight => false,
            BreakerState::HalfOpen => {
                self.probe_in_flight = true;
                true
            }
        };
        (allowed, transition)
    }

    /// A call succeeded (the node answered, even with an error).
    pub fn on_success(&mut self) -> Option<Transition> {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures = 0;
                None
            }
            BreakerState::HalfOpen => {
                self.probe_in_flight = false;
                self.probe_successes += 1;
                if self.probe_successes >= self.config.close_after {
                    self.consecutive_failures = 0;
                    self.to(BreakerState::Closed)
                } else {
                    None
                }
            }
            // A late answer to a call made before it opened changes nothing.
            BreakerState::Open => None,
        }
    }

    /// A call failed in transport.
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures += 1;
                if self.consecutive_failures >= self.config.failure_threshold {
                    self.opened_at = Some(now);
                    self.to(BreakerState::Open)
                } else {
                    None
                }
            }
            BreakerState::HalfOpen => {
                self.probe_in_flight = false;
                self.opened_at = Some(now);
                self.to(BreakerState::Open)
            }
            BreakerState::Open => None,
        }
    }

    /// Operator reset: closed, counters cleared.
    pub fn reset(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.probe_successes = 0;
        self.probe_in_flight = false;
        self.opened_at = None;
        self.to(BreakerState::Closed)
    }

    fn to(&mut self, next: BreakerState) -> Option<Transition> {
        let from = std::mem::replace(&mut self.state, next);
        (from != next).then_some(Transition { from, to: next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BreakerConfig = BreakerConfig { failure_threshold: 5, open_for: Duration::from_secs(30), close_after: 2 };

    #[test]
    fn opens_after_five_consecutive_failures_only() {
        let now = Instant::now();
        let mut breaker = Breaker::new(CONFIG);
        for _ in 0..4 {
            assert_eq!(breaker.on_failure(now), None);
        }
        breaker.on_success();
        for _ in 0..4 {
            breaker.on_failure(now);
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "a success resets the count");
        assert_eq!(breaker.on_failure(now), Some(Transition { from: BreakerState::Closed, to: BreakerState::Open }));
        assert!(!breaker.try_acquire(now).0);
    }

    #[test]
    fn half_open_lets_one_probe_at_a_time_and_closes_after_two_successes() {
        let now = Instant::now();
        let mut breaker = Breaker::new(CONFIG);
        for _ in 0..5 {
            breaker.on_failure(now);
        }
        assert!(!breaker.try_acquire(now + Duration::from_secs(29)).0);
        let later = now + Duration::from_secs(30);
        assert_eq!(breaker.try_acquire(later), (true, Some(Transition { from: BreakerState::Open, to: BreakerState::HalfOpen })));
        assert!(!breaker.try_acquire(later).0, "second probe refused while one is out");
        assert_eq!(breaker.on_success(), None);
        assert!(breaker.try_acquire(later).0);
        assert_eq!(breaker.on_success(), Some(Transition { from: BreakerState::HalfOpen, to: BreakerState::Closed }));
    }

    #[test]
    fn any_failure_in_half_open_reopens() {
        let now = Instant::now();
        let mut breaker = Breaker::new(CONFIG);
        for _ in 0..5 {
            breaker.on_failure(now);
        }
        let later = now + Duration::from_secs(31);
        assert!(breaker.try_acquire(later).0);
        breaker.on_success();
        assert!(breaker.try_acquire(later).0);
        assert_eq!(breaker.on_failure(later), Some(Transition { from: BreakerState::HalfOpen, to: BreakerState::Open }));
        assert!(!breaker.try_acquire(later + Duration::from_secs(29)).0, "open for the full period again");
    }

    #[test]
    fn reset_closes() {
        let now = Instant::now();
        let mut breaker = Breaker::new(CONFIG);
        for _ in 0..5 {
            breaker.on_failure(now);
        }
        assert!(breaker.reset().is_some());
        assert!(breaker.try_acquire(now).0);
    }
}
