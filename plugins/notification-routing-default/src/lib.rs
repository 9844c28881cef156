//! Default notification routing of the CAMARA WebRTC gateway.
//!
//! Owns which subscriptions receive an event (type subscribed, same device, same subscriber),
//! the shape of what is POSTed (a CloudEvents 1.0 structured JSON event whose `data` carries the
//! `subscriptionId`), and the retry policy (exponential backoff on 5xx, 429, timeouts and
//! connection errors; no retry on other 4xx). Does not own sending, credentials or queues: the
//! host holds the `sinkCredential`, sends, and keeps undelivered events.
//!
//! Configuration keys:
//! - `max-attempts` (default 6), `initial-backoff-ms` (default 500), `max-backoff-ms` (default 30000).

wit_bindgen::generate!({
    world: "notification-routing",
    path: "../../wit",
});

use camara::gateway::config;

use exports::camara::gateway::routing::{
    Delivery, DeliveryFailure, Event, FailureKind, Guest as RoutingGuest, RetryDecision, Subscription,
};

struct DefaultRouting;

const SUBSCRIPTION_ENDED: &str = "org.camaraproject.webrtc-events.v0.subscription-ended";

fn number(key: &str, default: u32) -> u32 {
    config::get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn same_if_both(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn wants(sub: &Subscription, event: &Event) -> bool {
    // Every subscription gets its own `subscription-ended`, subscribed or not.
    let typed = sub.types.contains(&event.event_type) || event.event_type == SUBSCRIPTION_ENDED;
    typed
        && same_if_both(&sub.device_id, &event.device_id)
        && same_if_both(&sub.owner_phone_number, &event.phone_number)
}

impl RoutingGuest for DefaultRouting {
    fn route(event: Event, subscriptions: Vec<Subscription>) -> Vec<Delivery> {
        let Ok(cloudevent) = serde_json::from_str::<serde_json::Value>(&event.cloudevent_json) else {
            camara::gateway::log::log(camara::gateway::log::Level::Error, "event is not JSON; dropped");
            return Vec::new();
        };
        subscriptions
            .iter()
            .filter(|sub| wants(sub, &event))
            .map(|sub| {
                let mut body = cloudevent.clone();
                if let Some(data) = body.get_mut("data").and_then(|d| d.as_object_mut()) {
                    data.insert("subscriptionId".into(), sub.id.clone().into());
                }
                Delivery {
                    subscription_id: sub.id.clone(),
                    sink: sub.sink.clone(),
                    content_type: "application/cloudevents+json".into(),
                    headers: Vec::new(),
                    payload: body.to_string(),
                }
            })
            .collect()
    }

    fn on_delivery_failure(failure: DeliveryFailure) -> RetryDecision {
        let max_attempts = number("max-attempts", 6);
        let retryable = match failure.kind {
            FailureKind::Timeout | FailureKind::Connection => true,
            FailureKind::HttpStatus => matches!(failure.status_code, Some(429) | Some(500..=599)),
        };
        if !retryable {
            return RetryDecision::GiveUp(format!("sink answered {:?}: not retried", failure.status_code));
        }
        if failure.attempt >= max_attempts {
            return RetryDecision::GiveUp(format!("gave up after {} attempts", failure.attempt));
        }
        let initial = number("initial-backoff-ms", 500) as u64;
        let cap = number("max-backoff-ms", 30_000) as u64;
        let exponent = failure.attempt.saturating_sub(1).min(20);
        RetryDecision::RetryAfterMs((initial << exponent).min(cap) as u32)
    }
}

impl Guest for DefaultRouting {
    fn validate_config(config: Vec<Pair>) -> Result<(), String> {
        for Pair { name, value } in &config {
            match name.as_str() {
                "max-attempts" | "initial-backoff-ms" | "max-backoff-ms" => match value.parse::<u32>() {
                    Ok(v) if v > 0 => {}
                    _ => return Err(format!("{name} must be a positive integer, not {value:?}")),
                },
                other => return Err(format!("unknown configuration key {other:?}")),
            }
        }
        Ok(())
    }
}

export!(DefaultRouting);
