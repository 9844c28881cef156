//! The notification-routing hooks: which subscriptions get an event, and what follows a failed
//! delivery.

use serde::{Deserialize, Serialize};

pub use super::Pair;

/// An event as the outbox keeps it until it is routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Full CloudEvents type.
    pub event_type: String,
    /// The CloudEvent the host built (structured JSON, `data` without `subscriptionId`).
    pub cloudevent_json: String,
    /// The CloudEvent's `id` and `time` (RFC 3339) and, for session-status, `data.status`,
    /// kept beside the JSON so that no hook parses it again. Empty in events an older gateway
    /// queued: read from the JSON then ([`Event::head`]).
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub status: Option<super::SessionStatus>,
    pub media_session_id: Option<String>,
    pub registration_id: Option<String>,
    pub device_id: Option<String>,
    pub phone_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub sink: String,
    pub types: Vec<String>,
    pub device_id: Option<String>,
    pub owner_phone_number: Option<String>,
    /// Whether the host will add `Authorization: Bearer` from the `sinkCredential`.
    pub has_sink_credential: bool,
}

/// One POST the host will make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub subscription_id: String,
    pub sink: String,
    pub content_type: String,
    /// Extra headers (the host sets Authorization, Content-Type and x-correlator itself).
    pub headers: Vec<Pair>,
    /// What the plugin built; `None`: the host's CloudEvent, with `subscriptionId` in `data`
    /// (0.2.0 plugins name subscriptions only).
    pub payload: Option<String>,
}

impl Event {
    /// The id, time and status of the event, from the JSON when an older gateway queued it
    /// without them.
    pub fn head(&self) -> (String, String, Option<super::SessionStatus>) {
        if !self.id.is_empty() {
            return (self.id.clone(), self.time.clone(), self.status);
        }
        #[derive(Deserialize, Default)]
        struct Head {
            #[serde(default)]
            id: String,
            #[serde(default)]
            time: String,
            #[serde(default)]
            data: Option<DataHead>,
        }
        #[derive(Deserialize)]
        struct DataHead {
            status: Option<super::SessionStatus>,
        }
        let head: Head = serde_json::from_str(&self.cloudevent_json).unwrap_or_default();
        (head.id, head.time, head.data.and_then(|d| d.status))
    }
}

impl Delivery {
    /// What is POSTed for `event`: the plugin's payload, or the host's CloudEvent with the
    /// subscription's id added to `data` (as CAMARA's event schemas carry it).
    pub fn body(&self, event: &Event) -> String {
        if let Some(payload) = &self.payload {
            return payload.clone();
        }
        let Ok(mut cloudevent) = serde_json::from_str::<serde_json::Value>(&event.cloudevent_json) else {
            return event.cloudevent_json.clone();
        };
        if let Some(data) = cloudevent.get_mut("data").and_then(|d| d.as_object_mut()) {
            data.insert("subscriptionId".into(), self.subscription_id.clone().into());
        }
        cloudevent.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    HttpStatus,
    Timeout,
    Connection,
}

/// A failed delivery that the host's schedule would retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    pub subscription_id: String,
    pub sink: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub kind: FailureKind,
    pub status_code: Option<u16>,
    /// What the sink's Retry-After asked for.
    pub retry_after_ms: Option<u64>,
    /// When the host's schedule would try again, from now.
    pub next_attempt_ms: Option<u64>,
}

/// What follows a failed delivery, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryDecision {
    /// The host's schedule.
    AsScheduled,
    /// No sooner than this many milliseconds from now (never sooner than the schedule).
    NotBeforeMs(u64),
    /// To the dead letters now.
    GiveUp(String),
}
