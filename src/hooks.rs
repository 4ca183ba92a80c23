//! What the test-only failpoints share (compiled to no-ops without the
//! `test-hooks` feature, which only the integration tests enable).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Stalls applied so far, per target: a test's proof that its stall
/// happened (an armed failpoint that never fires proves nothing).
static APPLIED: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Mutex::default);

/// A stall armed as `return(<target>=<ms>[,<target>=<ms>…])`: the pause,
/// when `armed` names `target`. Failpoints are process-wide, so a test arms
/// them for its own keys or users only (several when its variants run at
/// once), and the tests beside it run undisturbed.
pub fn stall_for(armed: Option<String>, target: &str) -> Option<Duration> {
    let stall = armed?.split(',').find_map(|entry| {
        let (name, ms) = entry.rsplit_once('=')?;
        (name == target).then(|| Duration::from_millis(ms.parse().unwrap_or(0)))
    })?;
    *APPLIED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(target.to_owned()).or_default() += 1;
    Some(stall)
}

/// Whether a stall armed as for [`stall_for`] names `target`, without
/// applying or counting it (to route the event to where the stall fires).
pub fn names(armed: Option<String>, target: &str) -> bool {
    armed.is_some_and(|armed| armed.split(',').any(|entry| entry.rsplit_once('=').is_some_and(|(name, _)| name == target)))
}

/// How many stalls [`stall_for`] applied to `target` in this process.
pub fn stalls_applied(target: &str) -> u64 {
    APPLIED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(target).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_applies_to_its_targets_only_and_is_counted() {
        assert_eq!(stall_for(Some("aurora:g=200".into()), "aurora:g"), Some(Duration::from_millis(200)));
        assert_eq!(stall_for(Some("key-1=50".into()), "key-2"), None);
        assert_eq!(stall_for(None, "key-1"), None);
        assert_eq!(stall_for(Some("u-pg=10,u-lite=20".into()), "u-lite"), Some(Duration::from_millis(20)));
        assert_eq!(stall_for(Some("u-pg=10,u-lite=20".into()), "u-pg"), Some(Duration::from_millis(10)));
        assert_eq!((stalls_applied("u-lite"), stalls_applied("u-pg"), stalls_applied("key-2")), (1, 1, 0));
        assert!(names(Some("u-pg=10,u-lite=20".into()), "u-lite"));
        assert!(!names(Some("u-pg=10".into()), "u-lite") && !names(None, "u-lite"));
        assert_eq!(stalls_applied("u-lite"), 1, "naming a target applies nothing");
    }
}
