//! Expiry of registrations and subscriptions. Every sweep reads what is due from the store, so
//! expiry survives a restart: a gateway that was down ends what expired meanwhile when it is up.

use std::sync::Arc;
use std::time::Duration;

use camara_store::{StoreError, SubscriptionEnd};
use chrono::Utc;

use crate::app::Gateway;
use crate::notify::GatewayEvent;
use crate::store::{Registration, Subscription};

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
pub async fn sweep(gw: &Arc<Gateway>) {
    let now = Utc::now();
    let backend = gw.store.backend();
    match backend.registrations_expiring_before(now).await {
        Ok(due) => {
            // Each node ends its own: the SIP binding and the calls of a registration are there.
            for registration in due.into_iter().filter(|r| crate::cluster::is_here(gw, r.node.as_deref())) {
                let description = "The registration reached its expiry time";
                if end_registration(gw, &registration, "REGISTRATION_EXPIRED", description).await {
                    tracing::info!(registration = registration.id, "registration expired");
                    crate::bindings::unbind(gw, &registration.id).await;
                    if gw.config.registration.end_calls_on_expiry {
                        end_calls_of(gw, &registration.id).await;
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
    match backend.subscriptions_expiring_before(now + notice).await {
        Ok(due) => {
            for ending in due {
                let (reason, description) = match ending.reason {
                    SubscriptionEnd::Expired if ending.at > now => continue,
                    SubscriptionEnd::Expired => ("SUBSCRIPTION_EXPIRED", "The subscription reached its expiry time"),
                    SubscriptionEnd::AccessTokenExpired => {
                        ("ACCESS_TOKEN_EXPIRED", "The sink credential's access token expires")
                    }
                };
                let s = &ending.subscription;
                if end_subscription(gw, s, reason, description).await.unwrap_or(false) {
                    tracing::info!(subscription = s.id, reason, "subscription ended");
                }
            }
        }
        Err(e) => tracing::error!("subscription expiry sweep failed: {e}"),
    }
}

/// Removes `registration` with its `registration-ends` (to the subscriptions of its number) in
/// one write, so a crash cannot keep one without the other, and routes the event. False if it
/// was gone already (or the store failed, logged).
pub async fn end_registration(gw: &Gateway, registration: &Registration, reason: &str, description: &str) -> bool {
    let backend = gw.store.backend();
    let subscriptions = backend.subscriptions_of(&registration.phone_number).await.unwrap_or_default();
    let event = GatewayEvent::registration_ended(registration, reason, description);
    let events = gw.notifier.event(event, &subscriptions).into_iter().collect();
    match backend.remove_registration(&registration.id, events).await {
        Ok(Some(ended)) => {
            gw.notifier.dispatch(ended.events).await;
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::error!(registration = registration.id, "registration not ended: {e}");
            false
        }
    }
}

/// Removes `subscription` with its `subscription-ended` in one write, routes the event and
/// closes the subscription's delivery queue once that is delivered. `Ok(false)` if it was gone.
pub async fn end_subscription(
    gw: &Gateway,
    subscription: &Subscription,
    reason: &str,
    description: &str,
) -> Result<bool, StoreError> {
    let event = GatewayEvent::subscription_ended(subscription, reason, description);
    let events = gw.notifier.event(event, std::slice::from_ref(subscription)).into_iter().collect();
    let Some(ended) = gw.store.backend().remove_subscription(&subscription.id, events).await? else {
        return Ok(false);
    };
    gw.notifier.dispatch(ended.events).await;
    gw.notifier.close(&subscription.id);
    Ok(true)
}

/// Ends the calls still up on a registration that is gone.
async fn end_calls_of(gw: &Arc<Gateway>, registration_id: &str) {
    let sessions = match gw.store.calls_here().await {
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

/// Ends the subscriptions whose sink failed for the whole retry horizon, as they are reported:
/// `subscription-ended` (`NETWORK_TERMINATED`) goes to the outbox with the removal, for a sink
/// that can be reached again (it is dead-lettered like the rest otherwise), and the end is logged
/// and counted either way.
pub async fn end_unreachable(gw: Arc<Gateway>, mut reported: tokio::sync::mpsc::UnboundedReceiver<String>) {
    while let Some(id) = reported.recv().await {
        let Ok(Some(s)) = gw.store.backend().subscription(&id).await else { continue };
        let description = "The sink failed every delivery attempt for the whole retry horizon";
        if end_subscription(&gw, &s, "NETWORK_TERMINATED", description).await.unwrap_or(false) {
            tracing::warn!(subscription = id, sink = s.sink, "subscription ended: its sink is unreachable");
            metrics::counter!(crate::metrics::SUBSCRIPTIONS_ENDED, "reason" => "sink_unreachable").increment(1);
        }
    }
}
