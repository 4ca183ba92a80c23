//! How often a supervisor may restart a child before it gives up and fails
//! upward: the root supervisor and the wallet registry share one rule. A
//! leaf, so neither imports the other for it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restarts allowed per child within [`RESTART_WINDOW`] before the supervisor
/// gives up and fails upward (systemd then restarts the process).
pub const MAX_RESTARTS: usize = 10;
/// The window [`MAX_RESTARTS`] is counted in.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// At most `max` restarts within a sliding `window`.
#[derive(Debug)]
pub struct RestartBudget {
    max: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// A budget of `max` restarts per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self { max, window, recent: VecDeque::new() }
    }

    /// Records a restart at `now`; false when the budget is spent.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_budget_refuses_the_restart_over_the_limit_and_recovers_after_the_window() {
        let start = Instant::now();
        let mut budget = RestartBudget::new(2, Duration::from_secs(60));
        assert!(budget.allow(start));
        assert!(budget.allow(start + Duration::from_secs(1)));
        assert!(!budget.allow(start + Duration::from_secs(2)));
        assert!(budget.allow(start + Duration::from_secs(62)));
    }
}
