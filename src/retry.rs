//! The one backoff policy every retry in the daemon is planned with: alert
//! deliveries, the reward processor's failed events, transactions the node
//! refused and parked wallet actors. Delays grow from a base by a factor up
//! to a cap, optionally with jitter, on `backon`'s exponential backoff, so
//! there is one definition of how a wait grows and how it is jittered.
//!
//! A leaf: it imports nothing from the crate.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How the waits between attempts grow: `base` for the first, multiplied by
/// `factor` for each one after it, never above `max` (a base above `max` is
/// still waited once, then `max`, as `backon` does). With `jitter`, each wait
/// gets up to itself again added at random (so at most twice the plain
/// wait), so callers that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait.
    pub base: Duration,
    /// What each wait is multiplied by to get the next (at least 1).
    pub factor: f32,
    /// The longest wait, before jitter.
    pub max: Duration,
    /// Whether each wait gets a random part of itself added.
    pub jitter: bool,
}

impl Backoff {
    /// Waits that double from `base` up to `max`, without jitter.
    pub const fn doubling(base: Duration, max: Duration) -> Self {
        Backoff { base, factor: 2.0, max, jitter: false }
    }

    /// The same waits with jitter.
    pub const fn jittered(self) -> Self {
        Backoff { jitter: true, ..self }
    }

    /// The wait before retry number `attempt + 1`: attempt 0 waits `base`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let plain = self.plain_delay(attempt);
        if !self.jitter {
            return plain;
        }
        // backon jitters a wait by what it adds to it: a one-wait backoff
        // starting at `plain` draws exactly that.
        ExponentialBuilder::new().with_min_delay(plain).with_jitter().with_max_times(1).build().next().unwrap_or(plain)
    }

    /// The waits of a round of `times` retries, in order (jittered each on its own).
    pub fn delays(&self, times: usize) -> impl Iterator<Item = Duration> + Send + use<> {
        self.builder().with_max_times(times).build()
    }

    /// The wait before retry `attempt + 1` without jitter. The walk along
    /// the waits stops once they no longer change (at the cap), so a large
    /// attempt number costs no more than the climb to the cap.
    fn plain_delay(&self, attempt: u32) -> Duration {
        let mut waits = Backoff { jitter: false, ..*self }.builder().without_max_times().build();
        let mut wait = waits.next().unwrap_or(self.base);
        for _ in 0..attempt {
            let next = waits.next().unwrap_or(wait);
            if next == wait {
                break;
            }
            wait = next;
        }
        wait
    }

    fn builder(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::new().with_min_delay(self.base).with_max_delay(self.max).with_factor(self.factor);
        if self.jitter { builder.with_jitter() } else { builder }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubling_waits_climb_to_the_cap_and_stay_there() {
        let park = Backoff::doubling(Duration::from_secs(15), Duration::from_secs(600));
        let got: Vec<u64> = (0..8).map(|attempt| park.delay(attempt).as_secs()).collect();
        assert_eq!(got, vec![15, 30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(park.delay(u32::MAX), Duration::from_secs(600), "a huge attempt number is cheap and capped");
        assert_eq!(park.delays(3).map(|d| d.as_secs()).collect::<Vec<_>>(), vec![15, 30, 60]);
    }

    #[test]
    fn a_base_above_the_cap_is_waited_once_then_the_cap() {
        let odd = Backoff::doubling(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!((odd.delay(0), odd.delay(1), odd.delay(9)), (Duration::from_secs(10), Duration::from_secs(5), Duration::from_secs(5)));
    }

    /// A policy whose base is within its cap and whose factor grows waits.
    fn policy() -> impl Strategy<Value = Backoff> {
        (0u64..10_000_000, 0u64..1_000_000_000, 1.5f32..4.0, any::<bool>()).prop_map(|(base_ms, extra_ms, factor, jitter)| Backoff {
            base: Duration::from_millis(base_ms),
            factor,
            max: Duration::from_millis(base_ms + extra_ms),
            jitter,
        })
    }

    proptest! {
        // No regression files: the repository's top level holds only what SPEC section 1 lists.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Without jitter no wait exceeds the cap, and none is shorter than the one before.
        #[test]
        fn plain_waits_never_exceed_the_cap_nor_shrink(policy in policy(), attempt in 0u32..200) {
            let plain = Backoff { jitter: false, ..policy };
            let now = plain.delay(attempt);
            prop_assert!(now <= plain.max, "{now:?} over {:?}", plain.max);
            prop_assert!(now <= plain.delay(attempt + 1));
            prop_assert!(plain.delay(0) == plain.base);
        }

        /// Jitter only adds, and at most the plain wait again, so a jittered
        /// wait is within twice the cap.
        #[test]
        fn jitter_stays_within_its_bound(policy in policy(), attempt in 0u32..200) {
            let plain = Backoff { jitter: false, ..policy }.delay(attempt);
            let jittered = policy.jittered().delay(attempt);
            prop_assert!(plain <= jittered && jittered <= plain * 2, "{jittered:?} against {plain:?}");
            prop_assert!(jittered <= policy.max * 2);
        }

        /// A round has as many waits as retries, each within the bound of its attempt's.
        #[test]
        fn a_round_has_its_retries_waits_each_within_bound(policy in policy(), times in 0usize..40) {
            let waits: Vec<Duration> = policy.delays(times).collect();
            prop_assert_eq!(waits.len(), times);
            for (attempt, wait) in (0u32..).zip(waits) {
                let plain = Backoff { jitter: false, ..policy }.delay(attempt);
                prop_assert!(plain <= wait && wait <= plain * 2, "attempt {attempt}: {wait:?} against {plain:?}");
            }
        }
    }
}
