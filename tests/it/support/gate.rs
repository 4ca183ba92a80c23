//! Holding a daemon at an exact point: a failpoint whose callback parks the
//! first thread that reaches it until the test releases it. Failpoints are
//! process-wide, so the tests that hold one take turns (one lock for all):
//! two tests arming `wallet::fence_target` for their own wallets at once
//! would otherwise overwrite each other's target and hold nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// One gate armed at a time in this process.
static TURN: std::sync::LazyLock<Arc<Mutex<()>>> = std::sync::LazyLock::new(Arc::default);

/// How long a held thread waits for its release before it goes on anyway,
/// so a failed test never leaves a daemon parked.
const HOLD_AT_MOST: Duration = Duration::from_secs(30);

/// A failpoint that holds the first thread to reach it (for `target` only).
pub struct Gate {
    failpoint: &'static str,
    target_failpoint: &'static str,
    reached: Arc<AtomicBool>,
    go: Arc<AtomicBool>,
    _turn: OwnedMutexGuard<()>,
}

impl Gate {
    /// Arms `failpoint` to hold the first thread that reaches it, with
    /// `target_failpoint` set to `return(target)` (the wallet or user the
    /// daemon checks it against).
    pub async fn arm(failpoint: &'static str, target_failpoint: &'static str, target: &str) -> Gate {
        let turn = TURN.clone().lock_owned().await;
        fail::cfg(target_failpoint, &format!("return({target})")).unwrap();
        let (reached, go) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (r, g) = (reached.clone(), go.clone());
        fail::cfg_callback(failpoint, move || {
            if r.swap(true, Ordering::SeqCst) {
                return;
            }
            // Hand this worker's other tasks (the test's own among them) to another thread while held.
            tokio::task::block_in_place(|| {
                let deadline = std::time::Instant::now() + HOLD_AT_MOST;
                while !g.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        })
        .unwrap();
        Gate { failpoint, target_failpoint, reached, go, _turn: turn }
    }

    /// Whether a thread reached the gate within `within`.
    pub async fn reached(&self, within: Duration) -> bool {
        super::eventually(within, || async { self.reached.load(Ordering::SeqCst) }).await
    }

    /// Lets the held thread go on and disarms the failpoints.
    pub fn release(self) {}
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.go.store(true, Ordering::SeqCst);
        fail::remove(self.failpoint);
        fail::remove(self.target_failpoint);
    }
}
