//! SIP registration bindings of `sip-account` mode: a REGISTER (with digest) when a device
//! registers, un-REGISTER when the registration is deleted or expires, and `registration-ends`
//! (NETWORK_TERMINATED) when the network stops accepting a binding.
//!
//! Bindings live in memory; the registrations are stored. After a restart [`restore`]
//! REGISTERs the stored registrations again (the registrar may have forgotten them, and the
//! gateway's contact may have moved).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use camara_plugin_host::mapping::{RegistrationPlan, RegistrationRequest as MappingRequest};
use camara_sip::{RegisterRequest, RegistrationEvent};
use tokio::sync::watch;

use crate::app::Gateway;
use crate::error::ApiError;
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

/// REGISTERs `registration` as `plan` says and waits for the registrar's answer
/// (`[sip.registrar] answer_timeout_ms`).
pub async fn bind(gw: &Gateway, registration: &Registration, plan: &RegistrationPlan) -> Result<(), ApiError> {
    bind_within(gw, registration, plan, None).await
}

/// [`bind`], waiting up to `patience` instead, through unanswered attempts (the SIP client keeps
/// retransmitting and retrying) until the registrar answers or refuses.
async fn bind_within(
    gw: &Gateway,
    registration: &Registration,
    plan: &RegistrationPlan,
    patience: Option<Duration>,
) -> Result<(), ApiError> {
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
    let channel = gw.bindings.channel(&binding);
    let mut answer = channel.subscribe();
    let deadline = tokio::time::Instant::now() + patience.unwrap_or(Duration::from_millis(registrar.answer_timeout_ms));
    let event = loop {
        // The watch guard must not live across the awaits below (it is not `Send`).
        let event = match tokio::time::timeout_at(deadline, answer.wait_for(Option::is_some)).await {
            Ok(Ok(event)) => event.clone(),
            _ => None,
        };
        match event {
            Some(RegistrationEvent::Failed { status: None, .. }) if patience.is_some() => {
                channel.send_replace(None);
            }
            event => break event,
        }
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
            end_registration(gw, &id, &format!("The network refused the registration refresh: {reason}")).await;
        }
        (RegistrationEvent::Unregistered, _) => gw.bindings.forget(binding),
        _ => {
            // `send` drops the value when nobody subscribed yet; the waiter may subscribe later.
            gw.bindings.channel(binding).send_replace(Some(event));
        }
    }
}

/// Removes a registration the network no longer accepts and tells its subscribers
/// (`registration-ends`, NETWORK_TERMINATED).
async fn end_registration(gw: &Gateway, registration_id: &str, description: &str) {
    if let Ok(Some(r)) = gw.store.backend().registration(registration_id).await {
        crate::lifecycle::end_registration(gw, &r, "NETWORK_TERMINATED", description).await;
    }
}

/// At start-up: every stored registration the mapping plugin sends to a registrar is
/// REGISTERed again, all at once. The registrar may be coming up with the gateway: each waits
/// up to [`RESTORE_PATIENCE`] through unanswered attempts. One the network refuses, or that is
/// never answered, ends (`registration-ends`, so the device registers anew). One the mapping
/// plugin cannot plan (a faulty plugin) is kept and logged.
pub async fn restore(gw: std::sync::Arc<Gateway>) {
    let registrations =
        match gw.store.backend().registrations_expiring_before(chrono::DateTime::<chrono::Utc>::MAX_UTC).await {
            Ok(registrations) => registrations,
            Err(e) => {
                tracing::error!("stored registrations not readable; none REGISTERed again: {e}");
                return;
            }
        };
    // Other nodes sharing the store keep theirs.
    let ours = registrations.into_iter().filter(|r| crate::cluster::is_here(&gw, r.node.as_deref())).collect();
    rebind(gw, ours).await;
}

/// REGISTERs `registrations` again (after a restart, or a dead node's), as [`restore`] says.
pub async fn rebind(gw: std::sync::Arc<Gateway>, registrations: Vec<crate::store::Registration>) {
    let mut binds = tokio::task::JoinSet::new();
    for registration in registrations {
        let request = MappingRequest {
            phone_number: registration.phone_number.clone(),
            device_id: registration.device_id.clone(),
            registration_id: registration.id.clone(),
        };
        let plan = match gw.plugins.get().mapping.map_registration(&request, &gw.network).await {
            Ok(Ok(plan)) if plan.send_register => plan,
            Ok(Ok(_)) => continue,
            Ok(Err(refusal)) => {
                tracing::warn!(
                    registration = registration.id,
                    message = refusal.message,
                    "mapping refuses a stored registration"
                );
                continue;
            }
            Err(e) => {
                tracing::error!(registration = registration.id, "mapping plugin failed; not REGISTERed again: {e}");
                continue;
            }
        };
        let gw = gw.clone();
        binds.spawn(async move {
            match bind_within(&gw, &registration, &plan, Some(RESTORE_PATIENCE)).await {
                // Deleted while the registrar was being waited for: the binding must go too.
                Ok(()) if !matches!(gw.store.backend().registration(&registration.id).await, Ok(Some(_))) => {
                    unbind(&gw, &registration.id).await;
                }
                Ok(()) => tracing::info!(registration = registration.id, "stored registration REGISTERed again"),
                Err(e) => {
                    tracing::warn!(
                        registration = registration.id,
                        "stored registration not REGISTERed again: {}",
                        e.message
                    );
                    let why = format!("Not registered again after a restart: {}", e.message);
                    end_registration(&gw, &registration.id, &why).await;
                }
            }
        });
    }
    while binds.join_next().await.is_some() {}
}

/// How long a stored registration waits for the registrar at start-up.
const RESTORE_PATIENCE: Duration = Duration::from_secs(120);
