//! One channel: its secrets, its (at most one) device socket, and the delivery handshake that
//! moves one event at a time from its sink to that socket.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SubsecRound, Utc};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::auth::DeviceIdentity;
use crate::config::Settings;
use crate::{RelayError, protocol};

/// A socket is given this many sends before the delivery gives up on a device that keeps
/// dropping its connection before it acknowledges.
const MAX_SENDS_PER_DELIVERY: usize = 3;

/// CloudEvents are unique by `source` + `id` (CloudEvents 1.0, `id`).
pub(crate) type EventKey = (String, String);

/// The live connection of a channel, as the delivery side sees it.
#[derive(Clone)]
pub(crate) struct Conn {
    pub generation: u64,
    pub frames: mpsc::Sender<String>,
}

/// Why a channel's socket is being closed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Deleted,
    Expired,
}

#[derive(Clone)]
pub(crate) enum Link {
    Waiting,
    Connected(Conn),
    Ended(Ended),
}

/// The delivery waiting for an ack. It stays after its POST has been answered (or abandoned) so
/// that a late ack still marks the event as delivered and the gateway's retry is deduplicated.
struct PendingAck {
    delivery_id: String,
    key: EventKey,
    done: oneshot::Sender<()>,
}

/// How a delivery succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    Acked,
    /// The device had already acknowledged this event: not pushed again.
    Duplicate,
}

pub(crate) struct Channel {
    pub id: String,
    pub owner: DeviceIdentity,
    sink_token: String,
    ws_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    link: watch::Sender<Link>,
    next_generation: AtomicU64,
    /// Held by the delivery in flight; tokio's mutex is fair, so POSTs go out in arrival order.
    turn: tokio::sync::Mutex<()>,
    /// Deliveries in flight or waiting for their turn.
    queued: AtomicUsize,
    pending_ack: Mutex<Option<PendingAck>>,
    delivered: Mutex<DedupWindow>,
    dedup_window: Duration,
    dedup_capacity: usize,
}

/// A fresh 256-bit secret, base64url without padding.
fn secret() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn same_secret(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

impl Channel {
    pub fn new(owner: DeviceIdentity, settings: &Settings) -> Self {
        let created_at = Utc::now().trunc_subsecs(0);
        Channel {
            id: uuid::Uuid::new_v4().to_string(),
            owner,
            sink_token: secret(),
            ws_token: secret(),
            created_at,
            expires_at: created_at + settings.channel_ttl,
            link: watch::Sender::new(Link::Waiting),
            next_generation: AtomicU64::new(0),
            turn: tokio::sync::Mutex::new(()),
            queued: AtomicUsize::new(0),
            pending_ack: Mutex::new(None),
            delivered: Mutex::new(DedupWindow::default()),
            dedup_window: settings.dedup_window,
            dedup_capacity: settings.dedup_capacity,
        }
    }

    pub fn sink_token(&self) -> &str {
        &self.sink_token
    }

    pub fn ws_token(&self) -> &str {
        &self.ws_token
    }

    /// Constant-time comparison with the sink credential.
    pub fn is_sink_token(&self, given: &str) -> bool {
        same_secret(&self.sink_token, given)
    }

    /// Constant-time comparison with the WebSocket token.
    pub fn is_ws_token(&self, given: &str) -> bool {
        same_secret(&self.ws_token, given)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    pub fn is_connected(&self) -> bool {
        matches!(&*self.link.borrow(), Link::Connected(c) if !c.frames.is_closed())
    }

    /// Deliveries in flight or waiting.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Closes the channel for good: its socket closes, waiting deliveries fail.
    pub fn end(&self, why: Ended) {
        self.link.send_replace(Link::Ended(why));
    }

    /// Makes a new socket the channel's only one (the previous one sees the change and closes).
    /// Returns its generation, a receiver of link changes (subscribed before the change, so its
    /// first `changed()` is this attachment) and the receiver of the frames to send; `None` when
    /// the channel has ended.
    pub fn attach(&self) -> Result<(u64, watch::Receiver<Link>, mpsc::Receiver<String>), Ended> {
        let generation = self.next_generation.fetch_add(1, Ordering::AcqRel) + 1;
        let (frames, rx) = mpsc::channel(4);
        let changes = self.link.subscribe();
        let mut ended = None;
        self.link.send_if_modified(|link| match link {
            Link::Ended(why) => {
                ended = Some(*why);
                false
            }
            _ => {
                *link = Link::Connected(Conn { generation, frames });
                true
            }
        });
        match ended {
            Some(why) => Err(why),
            None => Ok((generation, changes, rx)),
        }
    }

    /// The socket of `generation` is gone; nothing changes if a newer one replaced it already.
    pub fn detach(&self, generation: u64) {
        self.link.send_if_modified(|link| match link {
            Link::Connected(c) if c.generation == generation => {
                *link = Link::Waiting;
                true
            }
            _ => false,
        });
    }

    /// The device acknowledged `delivery_id`. Acks of anything but the latest delivery are
    /// ignored (they can only be late duplicates).
    pub fn ack(&self, delivery_id: &str) -> bool {
        let pending = {
            let mut slot = self.pending_ack.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(p) if p.delivery_id == delivery_id => slot.take(),
                _ => None,
            }
        };
        let Some(pending) = pending else {
            return false;
        };
        self.remember(pending.key);
        let _ = pending.done.send(());
        true
    }

    fn remember(&self, key: EventKey) {
        let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        delivered.insert(key, self.dedup_window, self.dedup_capacity, Instant::now());
    }

    fn was_delivered(&self, key: &EventKey) -> bool {
        let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        delivered.contains(key, self.dedup_window, Instant::now())
    }

    /// Delivers one event (`event_json` as received, already checked to be a JSON object) to the
    /// device and waits for its ack: in order with the other deliveries of this channel, at most
    /// `max_queued_per_channel` waiting behind the one in flight.
    pub async fn deliver(&self, event_json: &str, key: EventKey, settings: &Settings) -> Result<Delivered, RelayError> {
        if self.was_delivered(&key) {
            return Ok(Delivered::Duplicate);
        }
        let _slot = QueueSlot::take(&self.queued, settings.max_queued_per_channel + 1)
            .ok_or(RelayError::QueueFull { retry_after_seconds: settings.retry_after_seconds })?;
        let _turn = self.turn.lock().await;
        // A retry may have waited behind the original, which the device has acknowledged since.
        if self.was_delivered(&key) {
            return Ok(Delivered::Duplicate);
        }

        let delivery_id = uuid::Uuid::new_v4().to_string();
        let frame = protocol::event_frame(&delivery_id, event_json);
        let mut reconnect_deadline = Instant::now() + settings.reconnect_wait;
        for _ in 0..MAX_SENDS_PER_DELIVERY {
            let conn = self.wait_connected(reconnect_deadline, settings).await?;
            let (done, mut acked) = oneshot::channel();
            *self.pending_ack.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(PendingAck { delivery_id: delivery_id.clone(), key: key.clone(), done });
            if conn.frames.send(frame.clone()).await.is_err() {
                continue; // that socket has just gone: wait for the next one
            }
            tokio::select! {
                biased;
                result = &mut acked => if result.is_ok() {
                    return Ok(Delivered::Acked);
                },
                _ = conn.frames.closed() => {
                    // The socket went away before it acknowledged: send again on the next one
                    // (same deliveryId, same event id: the device can tell it is a repeat).
                    if acked.try_recv().is_ok() {
                        return Ok(Delivered::Acked);
                    }
                    tracing::debug!(channel = self.id, delivery = delivery_id, "socket lost before the ack");
                    reconnect_deadline = Instant::now() + settings.reconnect_wait;
                }
                _ = tokio::time::sleep(settings.ack_timeout) => {
                    return Err(RelayError::AckTimeout(settings.ack_timeout));
                }
            }
        }
        Err(RelayError::DeviceUnavailable { retry_after_seconds: settings.retry_after_seconds })
    }

    /// The channel's live connection, waiting for one until `deadline`.
    async fn wait_connected(&self, deadline: Instant, settings: &Settings) -> Result<Conn, RelayError> {
        let mut changes = self.link.subscribe();
        loop {
            let link = changes.borrow_and_update().clone();
            match link {
                Link::Connected(conn) if !conn.frames.is_closed() => return Ok(conn),
                Link::Ended(Ended::Deleted) => return Err(RelayError::ChannelNotFound),
                Link::Ended(Ended::Expired) => return Err(RelayError::CredentialExpired),
                Link::Connected(_) | Link::Waiting => {}
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(RelayError::ChannelNotFound),
                Err(_) => {
                    return Err(RelayError::DeviceUnavailable { retry_after_seconds: settings.retry_after_seconds });
                }
            }
        }
    }
}

/// A place in a channel's delivery queue, given back on drop (also when the POST is abandoned).
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(QueueSlot(counter))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Event keys the device acknowledged, for `window`, at most `capacity` of them.
#[derive(Default)]
struct DedupWindow {
    order: VecDeque<(Instant, EventKey)>,
    keys: HashSet<EventKey>,
}

impl DedupWindow {
    fn prune(&mut self, window: Duration, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.keys.remove(&key);
            }
        }
    }

    fn contains(&mut self, key: &EventKey, window: Duration, now: Instant) -> bool {
        self.prune(window, now);
        self.keys.contains(key)
    }

    fn insert(&mut self, key: EventKey, window: Duration, capacity: usize, now: Instant) {
        self.prune(window, now);
        if capacity == 0 || window.is_zero() || self.keys.contains(&key) {
            return;
        }
        while self.order.len() >= capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        self.keys.insert(key.clone());
        self.order.push_back((now, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> EventKey {
        ("src".into(), id.into())
    }

    #[test]
    fn dedup_window_forgets_old_and_excess_keys() {
        let mut w = DedupWindow::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(10);
        w.insert(key("a"), window, 2, t0);
        w.insert(key("b"), window, 2, t0 + Duration::from_secs(5));
        assert!(w.contains(&key("a"), window, t0 + Duration::from_secs(6)));
        w.insert(key("c"), window, 2, t0 + Duration::from_secs(6));
        assert!(!w.contains(&key("a"), window, t0 + Duration::from_secs(6)), "capacity evicts the oldest");
        assert!(w.contains(&key("b"), window, t0 + Duration::from_secs(6)));
        assert!(!w.contains(&key("b"), window, t0 + Duration::from_secs(15)), "window expired");
        assert!(w.contains(&key("c"), window, t0 + Duration::from_secs(15)));
        assert!(!w.contains(&("other".into(), "c".into()), window, t0 + Duration::from_secs(15)));
    }

    #[test]
    fn secrets_are_256_bit_and_compared_exactly() {
        let s = secret();
        assert_eq!(URL_SAFE_NO_PAD.decode(&s).unwrap().len(), 32);
        assert_ne!(s, secret());
        assert!(same_secret(&s, &s.clone()));
        assert!(!same_secret(&s, &s[..s.len() - 1]));
        assert!(!same_secret(&s, ""));
    }

    #[test]
    fn queue_slots_are_bounded_and_given_back() {
        let counter = AtomicUsize::new(0);
        let a = QueueSlot::take(&counter, 2).unwrap();
        let _b = QueueSlot::take(&counter, 2).unwrap();
        assert!(QueueSlot::take(&counter, 2).is_none());
        drop(a);
        assert!(QueueSlot::take(&counter, 2).is_some());
    }
}
