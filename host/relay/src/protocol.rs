//! The JSON exchanged with the device over its WebSocket (text frames, one JSON object each).
//!
//! Relay to device:
//! - `{"type":"ready","channelId":"<id>"}` once the socket is the channel's live one;
//! - `{"type":"event","deliveryId":"<id>","event":<the CloudEvent exactly as the gateway sent it>}`;
//! - `{"type":"pong"}` in answer to a device's `ping`.
//!
//! Device to relay:
//! - `{"type":"ack","deliveryId":"<id>"}` once the event is handled;
//! - `{"type":"ping"}`, an application-level keepalive for clients that cannot see WebSocket pings.
//!
//! The relay also sends WebSocket pings; a socket that answers nothing for two ping intervals is
//! closed. Close codes: `4000` replaced by a newer socket of the same channel, `4001` channel
//! deleted, `4002` channel expired, `4003` keepalive timeout.

use serde::{Deserialize, Serialize};

/// Closes the old socket when a new one connects to the same channel.
pub const CLOSE_REPLACED: u16 = 4000;
pub const CLOSE_DELETED: u16 = 4001;
pub const CLOSE_EXPIRED: u16 = 4002;
pub const CLOSE_KEEPALIVE: u16 = 4003;

/// A frame the relay sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum RelayFrame {
    Ready { channel_id: String },
    Event { delivery_id: String, event: serde_json::Value },
    Pong,
}

/// A frame the device sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum DeviceFrame {
    Ack { delivery_id: String },
    Ping,
}

/// The `event` frame, with the CloudEvent's JSON embedded byte for byte (`event_json` is a JSON
/// object; `delivery_id` a UUID, which needs no escaping).
pub(crate) fn event_frame(delivery_id: &str, event_json: &str) -> String {
    format!(r#"{{"type":"event","deliveryId":"{delivery_id}","event":{}}}"#, event_json.trim())
}

pub(crate) fn to_text(frame: &RelayFrame) -> String {
    serde_json::to_string(frame).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_frame_embeds_the_event_as_received() {
        let event = r#" {"specversion":"1.0","id":"e1","type":"t","source":"s","data":{"z":1,"a":[2]}} "#;
        let text = event_frame("d1", event);
        assert!(text.contains(event.trim()));
        let frame: RelayFrame = serde_json::from_str(&text).unwrap();
        let RelayFrame::Event { delivery_id, event: parsed } = frame else { panic!("{text}") };
        assert_eq!(delivery_id, "d1");
        assert_eq!(parsed["data"], json!({"z": 1, "a": [2]}));
    }

    #[test]
    fn frames_have_the_documented_shape() {
        assert_eq!(
            serde_json::to_value(RelayFrame::Ready { channel_id: "c".into() }).unwrap(),
            json!({"type": "ready", "channelId": "c"})
        );
        assert_eq!(to_text(&RelayFrame::Pong), r#"{"type":"pong"}"#);
        assert_eq!(
            serde_json::from_value::<DeviceFrame>(json!({"type": "ack", "deliveryId": "d"})).unwrap(),
            DeviceFrame::Ack { delivery_id: "d".into() }
        );
        assert_eq!(serde_json::from_value::<DeviceFrame>(json!({"type": "ping"})).unwrap(), DeviceFrame::Ping);
    }
}
