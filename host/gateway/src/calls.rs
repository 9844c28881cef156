//! Call control: placing a call for `POST /sessions`, ending it for `DELETE`, and turning what
//! the SIP side reports into session statuses and `session-status` events.

use std::sync::Arc;

use camara_plugin_host::mapping::{self, CallDirection, SipEvent, SipRequest, SipResponse, StatusUpdate};
use camara_sip::{CallEvent, HangupKind, NameAddr, OutgoingInvite, Transport, UaEvent};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::app::Gateway;
use crate::config::SipTransportName;
use crate::error::ApiError;
use crate::model::{CallType, MediaSessionCreate};
use crate::notify::{GatewayEvent, SESSION_STATUS};
use crate::store::{Direction, MediaSession, Registration, is_final_status};

fn name_addr(n: mapping::NameAddr) -> NameAddr {
    NameAddr { display_name: n.display_name, uri: n.uri }
}

fn status_name(status: mapping::SessionStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Places the call of `POST /sessions` and returns the new session (status `Initial`).
pub async fn place_call(
    gw: &Gateway,
    phone_number: &str,
    registration: &Registration,
    request: MediaSessionCreate,
) -> Result<MediaSession, ApiError> {
    let call = mapping::OutgoingCall {
        originator_address: request.originator_address.clone(),
        originator_name: request.originator_name.clone(),
        receiver_address: request.receiver_address.clone(),
        receiver_name: request.receiver_name.clone(),
        call_type: match request.call_type {
            Some(CallType::Emergency) => mapping::CallType::Emergency,
            _ => mapping::CallType::Regular,
        },
        subscriber_phone_number: Some(phone_number.to_string()),
        location_json: request.location_details.as_ref().map(|l| l.to_string()),
    };
    let plan = gw
        .plugins
        .mapping
        .map_outgoing_call(&call, &gw.network)
        .await?
        .map_err(|e| ApiError::from_plugin_decision(e.status, e.code, e.message))?;
    let next_hop = gw.config.sip.next_hop.ok_or_else(|| {
        ApiError::unavailable("No SIP next hop is configured ([sip] next_hop): calls cannot be placed")
    })?;
    let session_id = uuid::Uuid::new_v4().to_string();
    let sip_sdp =
        crate::sdp::sip_offer(&request.offer.sdp, &gw.media_address, gw.rtp_ports.next(), rand::random::<u32>().into());
    let call_id = format!("{}@{}", uuid::Uuid::new_v4().simple(), gw.network.local_host);
    let invite = OutgoingInvite {
        call_id: Some(call_id.clone()),
        request_uri: plan.request_uri,
        from: name_addr(plan.from),
        to: name_addr(plan.to),
        p_asserted_identity: plan.p_asserted_identity.map(name_addr),
        privacy: plan.privacy,
        extra_headers: plan.extra_headers.into_iter().map(|p| (p.name, p.value)).collect(),
        sdp: Some(sip_sdp.clone()),
        next_hop,
        transport: match gw.config.sip.next_hop_transport {
            SipTransportName::Udp => Transport::Udp,
            SipTransportName::Tcp => Transport::Tcp,
        },
    };
    // The session exists before the INVITE leaves, so no response can outrun it.
    let session = MediaSession {
        id: session_id,
        owner_phone_number: phone_number.to_string(),
        registration_id: registration.id.clone(),
        device_id: registration.device_id.clone(),
        direction: Direction::Outgoing,
        sip_call_id: Some(call_id),
        originator_address: request.originator_address,
        originator_name: request.originator_name,
        receiver_address: request.receiver_address,
        receiver_name: request.receiver_name,
        offer_sdp: request.offer.sdp,
        answer_sdp: None,
        sip_local_sdp: Some(sip_sdp),
        status: "Initial".into(),
        sequence: 0,
        local_hangup: None,
        created_at: chrono::Utc::now(),
    };
    gw.store.insert_session(session.clone())?;
    match gw.sip.invite(invite).await {
        Ok(_) => Ok(session),
        Err(e) => {
            tracing::warn!(session = session.id, "INVITE not sent: {e}");
            let _ = gw.store.update_session(&session.id, &mut |s| s.status = "Failed".into());
            Err(ApiError::unavailable(format!("The call could not be sent to the network: {e}")))
        }
    }
}

/// Ends the call of `DELETE /sessions/{id}`: BYE when answered, CANCEL before.
pub async fn end_call(gw: &Gateway, session: &MediaSession) -> Result<(), ApiError> {
    let Some(call_id) = &session.sip_call_id else { return Ok(()) };
    if is_final_status(&session.status) {
        return Ok(());
    }
    // Recorded before the hangup leaves: the SIP side may report the end of the call before
    // `hangup` returns, and that report must already know the device ended it.
    let answered = matches!(session.status.as_str(), "Connected" | "Hold" | "Resume");
    let expected = if answered { "BYE" } else { "CANCEL" };
    gw.store.update_session(&session.id, &mut |s| s.local_hangup = Some(expected.to_string()))?;
    match gw.sip.hangup(call_id).await {
        Ok(kind) => {
            let method = match kind {
                HangupKind::Bye => "BYE",
                HangupKind::Cancel | HangupKind::Reject => "CANCEL",
            };
            if method != expected {
                gw.store.update_session(&session.id, &mut |s| s.local_hangup = Some(method.to_string()))?;
            }
            Ok(())
        }
        // The SIP side already ended; the status event for that is on its way.
        Err(e) => {
            tracing::debug!(session = session.id, "hangup of a finished call: {e}");
            Ok(())
        }
    }
}

/// Callers waiting for the final response to their re-INVITE, by Call-ID.
#[derive(Default)]
pub struct Reoffers {
    waiting: std::sync::Mutex<std::collections::HashMap<String, tokio::sync::oneshot::Sender<(u16, String)>>>,
}

impl Reoffers {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, tokio::sync::oneshot::Sender<(u16, String)>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hold or resume an answered outgoing call (`PUT .../status`): a re-INVITE whose SDP says
/// `sendonly` or `sendrecv`. Answers once the network has accepted or refused it.
pub async fn hold_or_resume(gw: &Gateway, session: &MediaSession, hold: bool) -> Result<MediaSession, ApiError> {
    let conflict = |m: String| ApiError::conflict("CONFLICT", m);
    let (Some(call_id), Some(local_sdp)) = (&session.sip_call_id, &session.sip_local_sdp) else {
        return Err(conflict("The session has no call in progress".into()));
    };
    if session.direction != Direction::Outgoing || !matches!(session.status.as_str(), "Connected" | "Hold" | "Resume") {
        return Err(conflict(format!("A {} session cannot be put on hold or resumed", session.status)));
    }
    let sdp = crate::sdp::with_direction(local_sdp, if hold { "sendonly" } else { "sendrecv" });
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Registered before the re-INVITE leaves, so its answer cannot arrive unseen.
    gw.reoffers.lock().insert(call_id.clone(), tx);
    if let Err(e) = gw.sip.reinvite(call_id, sdp.clone()).await {
        gw.reoffers.lock().remove(call_id);
        return Err(conflict(format!("The call cannot be changed now: {e}")));
    }
    let (status, reason) = match tokio::time::timeout(std::time::Duration::from_secs(32), rx).await {
        Ok(Ok(answer)) => answer,
        _ => {
            gw.reoffers.lock().remove(call_id);
            return Err(ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "TIMEOUT",
                "The network did not answer the re-INVITE",
            ));
        }
    };
    if !(200..300).contains(&status) {
        return Err(conflict(format!("The network refused the change: {status} {reason}")));
    }
    gw.store.update_session(&session.id, &mut |s| s.sip_local_sdp = Some(sdp.clone()))?;
    let (status, reason) = if hold {
        (mapping::SessionStatus::Hold, "Call put on hold by the device")
    } else {
        (mapping::SessionStatus::Resume, "Call resumed by the device")
    };
    apply_status(gw, &session.id, StatusUpdate { status, reason: reason.into() }).await;
    gw.store.session(&session.id, &session.owner_phone_number)?.ok_or_else(|| ApiError::not_found("Session not found"))
}

/// Reads the SIP user agent's reports until it stops.
pub async fn run_sip_events(gw: Arc<Gateway>, mut events: UnboundedReceiver<UaEvent>) {
    while let Some(UaEvent { call_id, event }) = events.recv().await {
        match event {
            CallEvent::Incoming { request_uri, from, to, p_asserted_identity, privacy, headers, .. } => {
                let invite = mapping::IncomingInvite {
                    request_uri,
                    from: mapping::NameAddr { display_name: from.display_name, uri: from.uri },
                    to: mapping::NameAddr { display_name: to.display_name, uri: to.uri },
                    p_asserted_identity: p_asserted_identity
                        .map(|p| mapping::NameAddr { display_name: p.display_name, uri: p.uri }),
                    privacy,
                    headers: headers
                        .into_iter()
                        .map(|(name, value)| camara_plugin_host::authorization::camara::gateway::types::Pair {
                            name,
                            value,
                        })
                        .collect(),
                };
                on_incoming(&gw, &call_id, invite).await;
            }
            CallEvent::Registration(event) => crate::bindings::on_event(&gw, &call_id, event).await,
            CallEvent::ReinviteResponse { status, reason, .. } => {
                if let Some(waiter) = gw.reoffers.lock().remove(&call_id) {
                    let _ = waiter.send((status, reason));
                }
            }
            event => on_call_event(&gw, &call_id, event).await,
        }
    }
}

/// An INVITE from the network. The mapping plugin names the subscriber it is for; a number
/// nobody registered is refused as the plugin says (404 by default).
///
/// A registered device cannot be offered the call yet: `session-invitation` needs a WebRTC offer,
/// which only the media anchor can produce. Until then such calls get 480, so the network can
/// try elsewhere (voicemail, another device) instead of waiting.
async fn on_incoming(gw: &Gateway, call_id: &str, invite: mapping::IncomingInvite) {
    let (status, reason) = match gw.plugins.mapping.map_incoming_call(&invite).await {
        Ok(Ok(call)) => match gw.store.registrations_of(&call.target_phone_number, None) {
            Ok(registrations) if registrations.is_empty() => (404, "Not Found".to_string()),
            Ok(_) => {
                tracing::warn!(
                    call_id,
                    target = call.target_phone_number,
                    "incoming call refused: no media anchor yet"
                );
                (480, "Temporarily Unavailable".to_string())
            }
            Err(_) => (500, "Server Internal Error".to_string()),
        },
        Ok(Err(rejection)) => (rejection.status_code, rejection.reason_phrase),
        Err(e) => {
            tracing::error!(call_id, "incoming call not mapped: {e}");
            (500, "Server Internal Error".to_string())
        }
    };
    if let Err(e) = gw.sip.reject(call_id, status, &reason).await {
        tracing::warn!(call_id, "incoming call not refused: {e}");
    }
}

async fn on_call_event(gw: &Gateway, call_id: &str, event: CallEvent) {
    let session = match gw.store.session_by_call_id(call_id) {
        Ok(Some(session)) => session,
        Ok(None) => {
            tracing::debug!(call_id, "SIP event for an unknown call");
            return;
        }
        Err(_) => return,
    };
    let last = matches!(event, CallEvent::Terminated);
    let direction = match session.direction {
        Direction::Outgoing => CallDirection::Outgoing,
        Direction::Incoming => CallDirection::Incoming,
    };
    let sip_event = match event {
        // After DELETE, the final response only confirms the hangup reported at Terminated.
        CallEvent::Response { status, .. } if status >= 300 && session.local_hangup.is_some() => None,
        CallEvent::Response { status, reason, sdp, reliable } => Some(SipEvent::InviteResponse(SipResponse {
            status_code: status,
            reason_phrase: reason,
            has_sdp: sdp.is_some(),
            reliable,
        })),
        CallEvent::Request { method, reason, sdp } => {
            Some(SipEvent::Request(SipRequest { method, reason, has_sdp: sdp.is_some() }))
        }
        CallEvent::Timeout => Some(SipEvent::Timeout),
        // Handled by `on_incoming`; an incoming call has no session before it is offered.
        CallEvent::Incoming { .. } => None,
        // Handled by `bindings::on_event`: a REGISTER binding has no session.
        CallEvent::Registration(_) => None,
        // Handled by `hold_or_resume`, which waits for it.
        CallEvent::ReinviteResponse { .. } => None,
        CallEvent::Terminated => session.local_hangup.clone().map(SipEvent::LocalHangup),
    };
    let update = match sip_event {
        Some(e) => match gw.plugins.mapping.map_sip_event(&e, direction).await {
            Ok(update) => update,
            Err(err) => {
                tracing::error!(session = session.id, "status of a SIP event unknown: {err}");
                None
            }
        },
        None => None,
    };
    if let Some(update) = update {
        apply_status(gw, &session.id, update).await;
    }
    if last {
        let _ = gw.store.update_session(&session.id, &mut |s| s.sip_call_id = None);
    }
}

async fn apply_status(gw: &Gateway, session_id: &str, update: StatusUpdate) {
    let status = status_name(update.status);
    let mut changed = false;
    let Ok(session) = gw.store.update_session(session_id, &mut |s| {
        changed = !is_final_status(&s.status);
        if changed {
            s.status = status.clone();
            s.sequence += 1;
        }
    }) else {
        return;
    };
    if !changed {
        return;
    }
    tracing::info!(session = session.id, status, reason = update.reason, "session status");
    let mut data = serde_json::json!({
        "mediaSessionId": session.id,
        "originatorAddress": session.originator_address,
        "receiverAddress": session.receiver_address,
        "status": status,
        "reason": update.reason,
        "sequenceNumber": session.sequence,
    });
    if let Some(name) = &session.originator_name {
        data["originatorName"] = name.clone().into();
    }
    if let Some(name) = &session.receiver_name {
        data["receiverName"] = name.clone().into();
    }
    let event = GatewayEvent {
        event_type: SESSION_STATUS,
        data,
        media_session_id: Some(session.id.clone()),
        registration_id: Some(session.registration_id.clone()),
        device_id: Some(session.device_id.clone()),
        phone_number: Some(session.owner_phone_number.clone()),
    };
    let Ok(subscriptions) = gw.store.subscriptions_of(&session.owner_phone_number) else { return };
    gw.notifier.publish(event, &subscriptions).await;
}
