//! Watches the device leg's connectivity and reports a device that is gone.
//!
//! A browser that is killed, loses its network or closes its tab without hanging up stops
//! answering ICE consent checks (RFC 7675); the peer connection goes `Disconnected` a few
//! seconds later and `Failed` later still. The device may come back (a network change followed
//! by an ICE restart), so the leg is reported failed only when it has not been `Connected`
//! again for the whole grace, measured from the first moment it was not.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

use crate::session::MediaEvent;

pub(crate) struct DeviceWatch {
    inner: Arc<Inner>,
}

struct Inner {
    key: String,
    grace: Duration,
    events: UnboundedSender<MediaEvent>,
    /// Set when the gateway closes the leg itself: nothing to report then.
    closing: Arc<AtomicBool>,
    /// Bumped each time the leg is `Connected`: a grace timer started before is void.
    connected_count: AtomicU64,
    /// Not connected since the grace timer started (`None` while connected).
    lost: Mutex<Option<RTCPeerConnectionState>>,
    reported: AtomicBool,
}

impl DeviceWatch {
    pub(crate) fn new(
        key: String,
        grace: Duration,
        events: UnboundedSender<MediaEvent>,
        closing: Arc<AtomicBool>,
    ) -> Self {
        let inner = Inner {
            key,
            grace,
            events,
            closing,
            connected_count: AtomicU64::new(0),
            lost: Mutex::new(None),
            reported: AtomicBool::new(false),
        };
        DeviceWatch { inner: Arc::new(inner) }
    }

    /// The peer connection's new state.
    pub(crate) fn changed(&self, state: RTCPeerConnectionState) {
        let inner = &self.inner;
        let mut lost = inner.lost.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            RTCPeerConnectionState::Connected => {
                inner.connected_count.fetch_add(1, Ordering::SeqCst);
                *lost = None;
            }
            RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed => {
                let first = lost.is_none();
                *lost = Some(state);
                if first {
                    let (inner, since) = (inner.clone(), inner.connected_count.load(Ordering::SeqCst));
                    tokio::spawn(async move {
                        tokio::time::sleep(inner.grace).await;
                        if inner.connected_count.load(Ordering::SeqCst) == since {
                            let state = *inner.lost.lock().unwrap_or_else(|e| e.into_inner());
                            inner.report(state);
                        }
                    });
                }
            }
            _ => {}
        }
    }
}

impl Inner {
    fn report(&self, state: Option<RTCPeerConnectionState>) {
        if self.closing.load(Ordering::Relaxed) || self.reported.swap(true, Ordering::SeqCst) {
            return;
        }
        let grace = self.grace.as_secs();
        let why = match state {
            Some(RTCPeerConnectionState::Failed) => {
                format!("ICE failed on the device leg and did not recover in {grace} s")
            }
            _ => format!("the device stopped answering ICE consent checks and did not come back in {grace} s"),
        };
        tracing::warn!(session = self.key, "{why}");
        let _ = self.events.send(MediaEvent::DeviceLegFailed { key: self.key.clone(), why });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RTCPeerConnectionState::*;

    fn watch(grace: u64) -> (DeviceWatch, tokio::sync::mpsc::UnboundedReceiver<MediaEvent>, Arc<AtomicBool>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let closing = Arc::new(AtomicBool::new(false));
        (DeviceWatch::new("ses-1".into(), Duration::from_secs(grace), tx, closing.clone()), rx, closing)
    }

    async fn advance(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_leg_lost_for_the_whole_grace_is_reported_once() {
        let (watch, mut events, _) = watch(10);
        watch.changed(Connected);
        watch.changed(Disconnected);
        advance(6).await;
        // Failed while the grace runs does not restart it.
        watch.changed(Failed);
        advance(3).await;
        assert!(events.try_recv().is_err(), "reported before the grace ended");
        advance(2).await;
        match events.try_recv() {
            Ok(MediaEvent::DeviceLegFailed { key, why }) => {
                assert_eq!(key, "ses-1");
                assert!(why.contains("ICE failed"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        watch.changed(Disconnected);
        advance(20).await;
        assert!(events.try_recv().is_err(), "reported twice");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leg_that_comes_back_within_the_grace_is_not_reported() {
        let (watch, mut events, _) = watch(10);
        watch.changed(Connected);
        watch.changed(Disconnected);
        advance(5).await;
        watch.changed(Connected);
        advance(20).await;
        assert!(events.try_recv().is_err());
        // A later loss has a grace of its own.
        watch.changed(Disconnected);
        advance(11).await;
        assert!(matches!(events.try_recv(), Ok(MediaEvent::DeviceLegFailed { why, .. }) if why.contains("consent")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leg_the_gateway_closes_is_not_reported() {
        let (watch, mut events, closing) = watch(1);
        watch.changed(Connected);
        closing.store(true, Ordering::Relaxed);
        watch.changed(Disconnected);
        advance(5).await;
        assert!(events.try_recv().is_err());
    }
}
