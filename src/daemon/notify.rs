//! systemd notification (`Type=notify`): `READY=1` once listening, `STATUS=` lines,
//! `STOPPING=1` at shutdown, and the watchdog (`WATCHDOG=1` every `WATCHDOG_USEC/2`, sent
//! only while the store actor answers a trivial call, so a wedged store stops the pings and
//! systemd restarts the daemon). Everything is a no-op when `$NOTIFY_SOCKET` is unset.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

use super::Shared;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// `READY=1` plus a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A `STATUS=` line.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `STOPPING=1` plus a status line.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The status line: where the daemon listens, how many consoles and sessions.
pub fn status_line(listening: &str, shared: &Shared) -> String {
    format!(
        "listening on {listening}; {} consoles, {} running sessions",
        shared.consoles.count(),
        shared.sessions.running().len()
    )
}

/// The watchdog period systemd asked for (`WATCHDOG_USEC`, if meant for this process).
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Spawns the watchdog and status task. Every `WATCHDOG_USEC/2` (or every 10 s without a
/// watchdog) it asks the store actor for a trivial answer; if the answer comes within the
/// period it sends `WATCHDOG=1` (when enabled) and refreshes `STATUS=`. A store that does not
/// answer stops the pings. Returns `None` when `$NOTIFY_SOCKET` is unset.
pub fn spawn_watchdog(shared: Shared, listening: String) -> Option<JoinHandle<()>> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let watchdog = watchdog_period();
    let period = watchdog
        .map(|d| (d / 2).max(Duration::from_millis(10)))
        .unwrap_or(Duration::from_secs(10));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let alive = tokio::time::timeout(period, shared.store.call(|_| ())).await;
            match alive {
                Ok(Ok(())) => {
                    let line = status_line(&listening, &shared);
                    let ping = watchdog.is_some();
                    // The datagram send blocks if the receiver stops reading: keep it off the
                    // async workers (systemd reads promptly; a test harness may not).
                    let sent = tokio::task::spawn_blocking(move || {
                        if ping {
                            send(&[NotifyState::Watchdog, NotifyState::Status(&line)]);
                        } else {
                            status(&line);
                        }
                    });
                    let _ = tokio::time::timeout(period, sent).await;
                }
                Ok(Err(_)) => {
                    tracing::error!("watchdog: the store actor is gone; no more pings");
                    return;
                }
                Err(_) => {
                    tracing::error!(
                        "watchdog: the store did not answer within {period:?}; ping withheld"
                    );
                }
            }
        }
    }))
}
