//! systemd's notification protocol (`Type=notify`): READY=1 once the daemon
//! serves, WATCHDOG=1 while its actors are alive, STOPPING=1 on shutdown.
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`).

use std::convert::Infallible;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

/// Tells systemd the daemon is up: migrations applied, actors started, listening.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("Serving")]);
}

/// Tells systemd the daemon is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("Draining in-flight work")]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// recommends, so one late ping does not get the daemon killed. `None` when
/// no watchdog is configured for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2).filter(|interval| !interval.is_zero())
}

/// Pings the watchdog every `interval` while `alive` holds; never returns.
/// A daemon whose actors are gone stops pinging, and systemd restarts it.
pub async fn watchdog(interval: Duration, alive: impl Fn() -> bool) -> Infallible {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive() {
            send(&[NotifyState::Watchdog]);
        } else {
            warn!("Actors are not running; withholding the watchdog ping");
        }
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "Cannot notify systemd");
    }
}
