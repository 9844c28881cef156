//! One device socket: sends the channel's event frames, reads the device's acks, keeps the
//! connection alive, and closes when a newer socket replaces it or the channel ends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::time::Instant;

use crate::channel::{Channel, Ended, Link};
use crate::protocol::{self, DeviceFrame, RelayFrame};

fn close_for(why: Ended) -> (u16, &'static str) {
    match why {
        Ended::Deleted => (protocol::CLOSE_DELETED, "channel deleted"),
        Ended::Expired => (protocol::CLOSE_EXPIRED, "channel expired"),
    }
}

pub(crate) async fn run(channel: Arc<Channel>, mut socket: WebSocket, ping_interval: Duration) {
    let (generation, mut changes, mut frames) = match channel.attach() {
        Ok(attached) => attached,
        Err(why) => {
            close(&mut socket, close_for(why)).await;
            return;
        }
    };
    tracing::debug!(channel = channel.id, generation, "device socket connected");
    let ready = protocol::to_text(&RelayFrame::Ready { channel_id: channel.id.clone() });
    let mut closing = None;
    if socket.send(Message::Text(ready.into())).await.is_ok() {
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        let mut last_heard = Instant::now();
        closing = loop {
            tokio::select! {
                // First: a replacement or the channel's end also closes `frames`, and the close
                // frame should say which.
                biased;
                changed = changes.changed() => {
                    if changed.is_err() {
                        break None;
                    }
                    if let Some(reason) = superseded(&changes.borrow_and_update(), generation) {
                        break Some(reason);
                    }
                }
                frame = frames.recv() => {
                    let Some(frame) = frame else {
                        break superseded(&changes.borrow(), generation);
                    };
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        break None;
                    }
                }
                incoming = socket.recv() => {
                    let Some(Ok(message)) = incoming else { break None };
                    last_heard = Instant::now();
                    match message {
                        Message::Text(text) => {
                            if let Some(reply) = on_device_frame(&channel, text.as_str())
                                && socket.send(Message::Text(reply.into())).await.is_err()
                            {
                                break None;
                            }
                        }
                        Message::Close(_) => break None,
                        Message::Binary(_) | Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= ping_interval * 2 {
                        break Some((protocol::CLOSE_KEEPALIVE, "no answer to keepalive"));
                    }
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                }
            }
        };
    }
    // Deliveries stop targeting this socket before it says goodbye; one waiting for an ack on it
    // sees its frame queue close and waits for the next socket.
    channel.detach(generation);
    drop(frames);
    tracing::debug!(channel = channel.id, generation, reason = ?closing, "device socket closed");
    if let Some(reason) = closing {
        close(&mut socket, reason).await;
    }
}

/// Why the socket of `generation` must close, given the channel's link now.
fn superseded(link: &Link, generation: u64) -> Option<(u16, &'static str)> {
    match link {
        Link::Connected(c) if c.generation == generation => None,
        Link::Connected(_) | Link::Waiting => Some((protocol::CLOSE_REPLACED, "replaced by a newer connection")),
        Link::Ended(why) => Some(close_for(*why)),
    }
}

async fn close(socket: &mut WebSocket, (code, reason): (u16, &'static str)) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.send(Message::Close(Some(frame)))).await;
}

/// Handles a device frame; returns the reply to send, if any.
fn on_device_frame(channel: &Channel, text: &str) -> Option<String> {
    match serde_json::from_str::<DeviceFrame>(text) {
        Ok(DeviceFrame::Ack { delivery_id }) => {
            if !channel.ack(&delivery_id) {
                tracing::debug!(channel = channel.id, delivery = delivery_id, "ack of no pending delivery");
            }
            None
        }
        Ok(DeviceFrame::Ping) => Some(protocol::to_text(&RelayFrame::Pong)),
        Err(e) => {
            tracing::debug!(channel = channel.id, "unintelligible device frame ignored: {e}");
            None
        }
    }
}
