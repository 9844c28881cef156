//! Expiry of registrations and subscriptions. Every sweep reads what is due from the store, so
//! expiry survives a restart: a gateway that was down ends what expired meanwhile when it is up.

use std::sync::Arc;
use std::time::Duration;

use camara_store::SubscriptionEnd;
use chrono::Utc;

use crate::app::Gateway;
use crate::notify::{GatewayEvent, REGISTRATION_ENDS};

/// How often due expiries are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep(&gw).await;
    }
}

/// Ends every registration and subscription that is due now.
pub async fn sweep(gw: &Gateway) {
    let now = Utc::now();
    let backend = gw.store.backend();
    match backend.registrations_expiring_before(now) {
        Ok(due) => {
            for registration in due {
                if let Ok(Some(r)) = backend.remove_registration(&registration.id) {
                    tracing::info!(registration = r.id, "registration expired");
                    let event = GatewayEvent {
                        event_type: REGISTRATION_ENDS,
                        data: serde_json::json!({
                            "registrationId": r.id,
                            "terminationReason": "REGISTRATION_EXPIRED",
                            "terminationDescription": "The registration reached its expiry time",
                        }),
                        media_session_id: None,
                        registration_id: Some(r.id.clone()),
                        device_id: Some(r.device_id.clone()),
                        phone_number: Some(r.phone_number.clone()),
                    };
                    let subscriptions = backend.subscriptions_of(&r.phone_number).unwrap_or_default();
                    gw.notifier.publish(event, &subscriptions).await;
                    crate::bindings::unbind(gw, &r.id).await;
                    if gw.config.registration.end_calls_on_expiry {
                        end_calls_of(gw, &r.id).await;
                    }
                }
            }
        }
        Err(e) => tracing::error!("registration expiry sweep failed: {e}"),
    }
    // A credential is announced as expiring shortly before it does, while the sink still
    // accepts it; the subscription itself ends at its own time.
    let notice = chrono::Duration::seconds(
        i64::try_from(gw.config.notifications.credential_expiry_notice_seconds).unwrap_or(60),
    );
    match backend.subscriptions_expiring_before(now + notice) {
        Ok(due) => {
            for ending in due {
                let (reason, description) = match ending.reason {
                    SubscriptionEnd::Expired if ending.at > now => continue,
                    SubscriptionEnd::Expired => ("SUBSCRIPTION_EXPIRED", "The subscription reached its expiry time"),
                    SubscriptionEnd::AccessTokenExpired => {
                        ("ACCESS_TOKEN_EXPIRED", "The sink credential's access token expires")
                    }
                };
                if let Ok(Some(s)) = backend.remove_subscription(&ending.subscription.id) {
                    tracing::info!(subscription = s.id, reason, "subscription ended");
                    let event = GatewayEvent::subscription_ended(&s, reason, description);
                    gw.notifier.publish(event, std::slice::from_ref(&s)).await;
                    gw.notifier.close(&s.id);
                }
            }
        }
        Err(e) => tracing::error!("subscription expiry sweep failed: {e}"),
    }
}

/// Ends the calls still up on a registration that is gone.
async fn end_calls_of(gw: &Gateway, registration_id: &str) {
    let sessions = match gw.store.backend().sessions_with_call() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("calls of an expired registration not found: {e}");
            return;
        }
    };
    for session in sessions.iter().filter(|s| s.registration_id == registration_id) {
        tracing::info!(session = session.id, "ending the call of an expired registration");
        let _ = crate::calls::end_call(gw, session).await;
    }
}
