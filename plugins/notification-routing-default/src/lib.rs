//! Default notification routing of the CAMARA WebRTC gateway.
//!
//! Owns which subscriptions receive an event: the type subscribed (every subscription gets its
//! own `subscription-ended`), the same device and the same subscriber. Does not own what is sent,
//! sending, credentials, queues or the retry schedule: the host builds the CloudEvent
//! (structured JSON, `subscriptionId` in `data`), holds the `sinkCredential`, sends, retries with
//! back-off and Retry-After, and keeps what it cannot deliver in its dead letters.
//!
//! Configuration keys:
//! - `max-attempts` (default: none, the host's schedule): a delivery that failed this many times
//!   goes to the dead letters at once.

wit_bindgen::generate!({
    world: "notification-routing",
    path: "../../wit/v0.2.0",
});

use camara::gateway::config;

use exports::camara::gateway::routing::{
    DeliveryFailure, Event, Guest as RoutingGuest, RetryDecision, Routed, Subscription,
};

struct DefaultRouting;

const SUBSCRIPTION_ENDED: &str = "org.camaraproject.webrtc-events.v0.subscription-ended";

fn same_if_both(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn wants(sub: &Subscription, event: &Event) -> bool {
    let typed = sub.types.contains(&event.event_type) || event.event_type == SUBSCRIPTION_ENDED;
    typed
        && same_if_both(&sub.device_id, &event.device_id)
        && same_if_both(&sub.owner_phone_number, &event.phone_number)
}

impl RoutingGuest for DefaultRouting {
    fn route(event: Event, subscriptions: Vec<Subscription>) -> Vec<Routed> {
        subscriptions
            .into_iter()
            .filter(|sub| wants(sub, &event))
            .map(|sub| Routed { subscription_id: sub.id, headers: Vec::new() })
            .collect()
    }

    fn on_delivery_failure(failure: DeliveryFailure) -> RetryDecision {
        match config::get("max-attempts").and_then(|v| v.parse::<u32>().ok()) {
            Some(max) if failure.attempt >= max => {
                RetryDecision::GiveUp(format!("gave up after {} attempts (max-attempts)", failure.attempt))
            }
            _ => RetryDecision::AsScheduled,
        }
    }
}

impl Guest for DefaultRouting {
    fn validate_config(config: Vec<Pair>) -> Result<(), String> {
        for Pair { name, value } in &config {
            match name.as_str() {
                "max-attempts" => match value.parse::<u32>() {
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
