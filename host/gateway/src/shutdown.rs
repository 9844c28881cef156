//! The graceful drain on SIGTERM / SIGINT.
//!
//! From the signal on, the gateway takes no new call: `createSession` answers 503 with
//! `Retry-After` (another node, or this one restarted, takes it) and an incoming INVITE gets SIP
//! 503. Live calls go on for most of `[shutdown] drain_seconds`; those still up when only
//! [`ShutdownConfig::ending_reserve`](crate::config::ShutdownConfig::ending_reserve) is left are
//! ended with BYE (CANCEL, 480) and a session-status `Terminated`, and the drain waits for the
//! network's answers and for the events due before the deadline to be delivered. Everything else
//! stays as it is: registrations, subscriptions and undelivered events are in the store for the
//! next start. A call whose end could not be completed is ended by that start
//! ([`crate::recovery`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::app::Gateway;

/// The `reason` of the `Terminated` event of a call the drain ends.
pub const REASON: &str = "The gateway is shutting down";

/// How often the drain looks whether it is done.
const POLL: Duration = Duration::from_millis(100);

/// Whether the gateway is draining; shared by the request handlers and the SIP side.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Drains `gw`; returns when nothing is left to do or at the deadline.
pub async fn drain(gw: &Gateway) {
    let config = &gw.config.shutdown;
    let deadline = Instant::now() + config.period();
    gw.drain.start();
    tracing::info!(seconds = config.drain_seconds, "draining: new calls are refused");
    let calls_left = async || gw.store.calls_here().await.map(|s| s.len()).unwrap_or(0);
    if !wait_until(deadline - config.ending_reserve(), async || calls_left().await == 0).await {
        let sessions = gw.store.calls_here().await.unwrap_or_default();
        tracing::info!(calls = sessions.len(), "draining: ending the calls still up");
        for session in sessions.iter().filter(|s| !s.status.is_final()) {
            crate::calls::end_by_gateway(gw, session, REASON).await;
        }
    }
    let settled = wait_until(deadline, async || calls_left().await == 0 && nothing_due(gw, deadline).await).await;
    if settled {
        tracing::info!("drained");
    } else {
        tracing::warn!(calls = calls_left().await, "drain period over: exiting with work left for the next start");
    }
}

/// No event or notification in the outbox is due before `deadline` (those retried later, after
/// a failure, wait for the next start).
async fn nothing_due(gw: &Gateway, deadline: Instant) -> bool {
    let backend = gw.store.backend();
    let by = chrono::Utc::now()
        + chrono::Duration::from_std(deadline.saturating_duration_since(Instant::now())).unwrap_or_default();
    let notifications = backend.pending_notifications(usize::MAX).await.unwrap_or_default();
    let events = backend.pending_events(usize::MAX).await.unwrap_or_default();
    notifications.iter().all(|n| n.not_before > by) && events.iter().all(|e| e.not_before > by)
}

/// Polls `done` until it holds (true) or `until` passes (false).
async fn wait_until(until: Instant, done: impl AsyncFn() -> bool) -> bool {
    loop {
        if done().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(POLL.min(until.saturating_duration_since(Instant::now()))).await;
    }
}
