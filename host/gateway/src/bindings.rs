//! SIP registration bindings of `sip-account` mode: a REGISTER (with digest) when a device
//! registers, un-REGISTER when the registration is deleted or expires, and `registration-ends`
//! (NETWORK_TERMINATED) when the network stops accepting a binding.
//!
//! Bindings live in memory: after a restart the stored registrations have no network binding
//! until they are registered again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use camara_plugin_host::mapping::RegistrationPlan;
use camara_sip::{RegisterRequest, RegistrationEvent};
use tokio::sync::watch;

use crate::app::Gateway;
use crate::error::ApiError;
use crate::notify::{GatewayEvent, REGISTRATION_ENDS};
use crate::store::Registration;

#[derive(Default)]
pub struct Bindings {
    /// registration id -> binding id, and back.
    of_registration: Mutex<HashMap<String, String>>,
    registration_of: Mutex<HashMap<String, String>>,
    /// The latest event of each binding, for whoever waits on it.
    events: Mutex<HashMap<String, watch::Sender<Option<RegistrationEvent>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bindings {
    /// Created by whichever comes first, the waiter or the event, so neither can miss the other.
    fn channel(&self, binding: &str) -> watch::Sender<Option<RegistrationEvent>> {
        lock(&self.events).entry(binding.to_string()).or_insert_with(|| watch::channel(None).0).clone()
    }

    fn forget(&self, binding: &str) {
        lock(&self.events).remove(binding);
        if let Some(registration) = lock(&self.registration_of).remove(binding) {
            lock(&self.of_registration).remove(&registration);
        }
    }
}

/// REGISTERs `registration` as `plan` says and waits for the registrar's answer.
pub async fn bind(gw: &Gateway, registration: &Registration, plan: &RegistrationPlan) -> Result<(), ApiError> {
    let registrar =
        gw.config.sip.registrar.as_ref().ok_or_else(|| {
            ApiError::unavailable("sip-account registration needs [sip.registrar]; none is configured")
        })?;
    let account = gw.config.sip.accounts.get(&registration.phone_number).ok_or_else(|| {
        ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "No SIP account is provisioned for this phone number")
    })?;
    let request = RegisterRequest {
        registrar: registrar.address,
        transport: registrar.transport.transport(),
        domain: registrar.domain.clone(),
        aor: plan.aor.clone(),
        contact_user: plan.contact_user.clone(),
        username: account.username.clone(),
        password: account.password.clone(),
        expires: registrar.expires_seconds,
    };
    let binding =
        gw.sip.register(request).await.map_err(|e| ApiError::unavailable(format!("REGISTER not sent: {e}")))?;
    let mut answer = gw.bindings.channel(&binding).subscribe();
    let wait = Duration::from_millis(registrar.answer_timeout_ms);
    // The watch guard must not live across the awaits below (it is not `Send`).
    let event = match tokio::time::timeout(wait, answer.wait_for(Option::is_some)).await {
        Ok(Ok(event)) => event.clone(),
        _ => None,
    };
    match event {
        Some(RegistrationEvent::Registered { expires }) => {
            tracing::info!(registration = registration.id, binding, expires, "registered with the network");
            lock(&gw.bindings.of_registration).insert(registration.id.clone(), binding.clone());
            lock(&gw.bindings.registration_of).insert(binding, registration.id.clone());
            Ok(())
        }
        other => {
            // The client would keep retrying; this registration is refused, so stop it.
            let _ = gw.sip.unregister(&binding).await;
            gw.bindings.forget(&binding);
            Err(match other {
                Some(RegistrationEvent::Failed { status, reason }) => ApiError::unavailable(format!(
                    "The network refused the registration ({}{reason})",
                    status.map(|s| format!("{s} ")).unwrap_or_default()
                )),
                _ => {
                    ApiError::new(StatusCode::GATEWAY_TIMEOUT, "TIMEOUT", "The network did not answer the registration")
                }
            })
        }
    }
}

/// Un-REGISTERs the binding of `registration_id`, if it has one.
pub async fn unbind(gw: &Gateway, registration_id: &str) {
    let binding = lock(&gw.bindings.of_registration).get(registration_id).cloned();
    if let Some(binding) = binding {
        if let Err(e) = gw.sip.unregister(&binding).await {
            tracing::warn!(registration = registration_id, "un-REGISTER not sent: {e}");
        }
        gw.bindings.forget(&binding);
    }
}

/// What the SIP user agent reports about a binding.
pub async fn on_event(gw: &Gateway, binding: &str, event: RegistrationEvent) {
    let registration_id = lock(&gw.bindings.registration_of).get(binding).cloned();
    match (&event, registration_id) {
        // A binding that was up and is now refused: the network ended the registration.
        (RegistrationEvent::Failed { status, reason }, Some(id)) => {
            tracing::warn!(registration = id, ?status, reason, "the network ended a registration");
            let _ = gw.sip.unregister(binding).await;
            gw.bindings.forget(binding);
            if let Ok(Some(r)) = gw.store.backend().remove_registration(&id) {
                let event = GatewayEvent {
                    event_type: REGISTRATION_ENDS,
                    data: serde_json::json!({
                        "registrationId": r.id,
                        "terminationReason": "NETWORK_TERMINATED",
                        "terminationDescription": format!("The network refused the registration refresh: {reason}"),
                    }),
                    media_session_id: None,
                    registration_id: Some(r.id.clone()),
                    device_id: Some(r.device_id.clone()),
                    phone_number: Some(r.phone_number.clone()),
                };
                let subscriptions = gw.store.backend().subscriptions_of(&r.phone_number).unwrap_or_default();
                gw.notifier.publish(event, &subscriptions).await;
            }
        }
        (RegistrationEvent::Unregistered, _) => gw.bindings.forget(binding),
        _ => {
            // `send` drops the value when nobody subscribed yet; the waiter may subscribe later.
            gw.bindings.channel(binding).send_replace(Some(event));
        }
    }
}
