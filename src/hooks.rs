//! What the test-only failpoints share (compiled to no-ops without the
//! `test-hooks` feature, which only the integration tests enable).

use std::time::Duration;

/// A stall armed as `return(<target>=<ms>)`: the pause, when `armed` names
/// `target`. Failpoints are process-wide, so a test arms them for its own
/// key or user only, and the tests beside it run undisturbed.
pub fn stall_for(armed: Option<String>, target: &str) -> Option<Duration> {
    let armed = armed?;
    let (name, ms) = armed.rsplit_once('=')?;
    (name == target).then(|| Duration::from_millis(ms.parse().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_applies_to_its_target_only() {
        assert_eq!(stall_for(Some("aurora:g=200".into()), "aurora:g"), Some(Duration::from_millis(200)));
        assert_eq!(stall_for(Some("key-1=50".into()), "key-2"), None);
        assert_eq!(stall_for(None, "key-1"), None);
    }
}
