//! Call control: placing a call for `POST /sessions`, ending it for `DELETE`, and turning what
//! the SIP side reports into session statuses and `session-status` events.

use std::sync::Arc;

use camara_media::Direction as MediaDirection;
use camara_plugin_host::mapping::{self, CallDirection, SipEvent, SipRequest, SipResponse, StatusUpdate};
use camara_sip::{CallEvent, EndCause, HangupKind, NameAddr, OfferMethod, OutgoingInvite};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::app::Gateway;
use crate::config::ReofferMethod;
use crate::error::ApiError;
use crate::model::{CallType, MediaSessionCreate};
use crate::notify::{GatewayEvent, SESSION_STATUS};
use crate::store::{Direction, MediaSession, Registration, SessionStatus};
use camara_media::{MediaError, MediaEvent};

fn media_error(e: MediaError) -> ApiError {
    match e {
        MediaError::Sdp(why) => ApiError::invalid_argument(format!("offer.sdp: {why}")),
        MediaError::NoCommonCodec => ApiError::invalid_argument(
            "offer.sdp offers no audio codec the network accepts (G.711 or, transcoded, Opus)",
        ),
        e => ApiError::unavailable(format!("No media resources for the call: {e}")),
    }
}

/// The media of each call, by session id.
#[derive(Default)]
pub struct MediaSessions(std::sync::Mutex<std::collections::HashMap<String, CallMedia>>);

/// A session's media, with the SIP call it belongs to.
struct CallMedia {
    call_id: String,
    media: Arc<camara_media::MediaSession>,
}

impl MediaSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, CallMedia>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, session_id: &str, call_id: &str, media: Arc<camara_media::MediaSession>) {
        self.lock().insert(session_id.to_string(), CallMedia { call_id: call_id.to_string(), media });
    }

    /// The session of SIP call `call_id` that has media, and its media: for requests inside a
    /// confirmed dialog, where one device took the call. The SIP stack asks synchronously, so
    /// this is answered from memory, not from the store.
    pub fn of_call(&self, call_id: &str) -> Option<(String, Arc<camara_media::MediaSession>)> {
        self.lock().iter().find(|(_, c)| c.call_id == call_id).map(|(id, c)| (id.clone(), c.media.clone()))
    }

    /// Calls with media now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn get(&self, session_id: &str) -> Option<Arc<camara_media::MediaSession>> {
        self.lock().get(session_id).map(|c| c.media.clone())
    }

    /// Forgets the media of a session, so that it no longer counts as active; the caller
    /// closes it once the session's end is told.
    pub fn remove(&self, session_id: &str) -> Option<Arc<camara_media::MediaSession>> {
        self.lock().remove(session_id).map(|c| c.media)
    }

    /// Stops and forgets the media of a session.
    pub async fn close(&self, session_id: &str) {
        close(self.remove(session_id)).await;
    }
}

/// Closes media taken out of [`MediaSessions`] with [`MediaSessions::remove`].
pub(crate) async fn close(media: Option<Arc<camara_media::MediaSession>>) {
    if let Some(media) = media {
        crate::metrics::record_rtp(&media.stats());
        media.close().await;
    }
}

/// Answers the network's offers inside calls (its hold and resume), and makes ours for its
/// offerless re-INVITEs, from the call's media, synchronously, as the SIP stack asks.
pub struct NetworkOffers(pub std::sync::Weak<Gateway>);

impl NetworkOffers {
    fn media_of(&self, call_id: &str) -> Option<(Arc<Gateway>, String, Arc<camara_media::MediaSession>)> {
        let gw = self.0.upgrade()?;
        let (session_id, media) = gw.media_sessions.of_call(call_id)?;
        Some((gw, session_id, media))
    }
}

impl camara_sip::OfferAnswerer for NetworkOffers {
    fn make_offer(&self, call_id: &str) -> Option<String> {
        let (_, _, media) = self.media_of(call_id)?;
        Some(media.network_offer_again())
    }

    fn take_answer(&self, call_id: &str, answer: &str) {
        if let Some((_, session_id, media)) = self.media_of(call_id)
            && let Err(e) = media.network_reoffer_answered(answer)
        {
            tracing::warn!(session = session_id, "unusable answer in the network's ACK: {e}");
        }
    }

    fn answer_offer(&self, call_id: &str, offer: &str) -> Option<String> {
        let (gw, session_id, media) = self.media_of(call_id)?;
        match media.network_reoffered(offer) {
            Ok((answer, _)) => {
                // The SIP stack waits for the answer, not for the store: the record follows.
                let sdp = answer.clone();
                tokio::spawn(async move {
                    let _ = gw.store.update_session(&session_id, move |s| s.sip_local_sdp = Some(sdp.clone())).await;
                });
                Some(answer)
            }
            Err(e) => {
                tracing::info!(session = session_id, "network re-offer refused: {e}");
                None
            }
        }
    }
}

/// Reads the media anchor's reports until it stops.
pub async fn run_media_events(gw: Arc<Gateway>, mut events: UnboundedReceiver<MediaEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            MediaEvent::NetworkSilent { key, after } => {
                let Ok(Some(session)) = gw.store.session_by_id(&key).await else { continue };
                tracing::warn!(session = key, "no RTP from the network for {after:?}: ending the call");
                let reason = format!("No media from the network for {} s", after.as_secs());
                end_by_gateway(&gw, &session, &reason).await;
            }
            MediaEvent::DeviceLegFailed { key, why } => {
                let Ok(Some(session)) = gw.store.session_by_id(&key).await else { continue };
                if session.status.is_final() || session.sip_call_id.is_none() {
                    continue;
                }
                tracing::warn!(session = key, "device leg failed ({why}): ending the call");
                end_by_gateway(&gw, &session, &format!("The device's media connection failed: {why}")).await;
            }
        }
    }
}

/// Ends a call the gateway cannot or will not carry on (its media failed, a shutdown): BYE (or
/// CANCEL, or 480) towards the network, `Terminated` with `reason` towards the device. The BYE
/// says why in its Reason header (RFC 3326): Q.850 cause 41, temporary failure, and `reason`.
pub(crate) async fn end_by_gateway(gw: &Gateway, session: &MediaSession, reason: &str) {
    // Out of the active calls before the device hears the call ended.
    let media = gw.media_sessions.remove(&session.id);
    let update = StatusUpdate { status: mapping::SessionStatus::Terminated, reason: reason.to_string() };
    apply_status(gw, &session.id, update).await;
    let text: String = reason.chars().filter(|c| !matches!(c, '"' | '\\') && !c.is_control()).collect();
    let header = format!("Q.850;cause=41;text=\"{text}\"");
    if let Some(call_id) = &session.sip_call_id
        && let Err(e) = gw.sip.hangup_with_reason(call_id, Some(header)).await
    {
        tracing::debug!(session = session.id, "hangup of a call the gateway ends: {e}");
    }
    close(media).await;
}

fn name_addr(n: mapping::NameAddr) -> NameAddr {
    NameAddr { display_name: n.display_name, uri: n.uri }
}

/// Places the call of `POST /sessions` and returns the new session (status `Initial`).
pub async fn place_call(
    gw: &Gateway,
    phone_number: &str,
    registration: &Registration,
    request: MediaSessionCreate,
) -> Result<MediaSession, ApiError> {
    let started = std::time::Instant::now();
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
        location: request.location_details.clone(),
    };
    let session_id = uuid::Uuid::new_v4().to_string();
    let call_id = format!("{}@{}", uuid::Uuid::new_v4().simple(), gw.network.local_host);
    let context = mapping::CallContext {
        session_id: session_id.clone(),
        direction: CallDirection::Outgoing,
        call_id: Some(call_id.clone()),
    };
    let plan = gw
        .plugins
        .get()
        .mapping
        .map_outgoing_call(&call, &context, &gw.network)
        .await?
        .map_err(|e| ApiError::from_plugin_decision(e.status, e.code, e.message))?;
    let next_hop = gw.config.sip.next_hop.ok_or_else(|| {
        ApiError::unavailable("No SIP next hop is configured ([sip] next_hop): calls cannot be placed")
    })?;
    let (media, sip_sdp) = gw.media.outgoing(&session_id, &request.offer.sdp).await.map_err(media_error)?;
    gw.media_sessions.insert(&session_id, &call_id, media);
    let invite = OutgoingInvite {
        call_id: Some(call_id.clone()),
        request_uri: plan.request_uri,
        from: name_addr(plan.from),
        to: name_addr(plan.to),
        p_asserted_identity: plan.p_asserted_identity.map(name_addr),
        privacy: plan.privacy,
        extra_headers: plan.extra_headers.into_iter().map(|p| (p.name, p.value)).collect(),
        extra_body_parts: plan
            .body_parts
            .into_iter()
            .map(|p| camara_sip::BodyPart { content_type: p.content_type, content_id: p.content_id, body: p.body })
            .collect(),
        sdp: Some(sip_sdp.clone()),
        next_hop,
        transport: gw.config.sip.next_hop_transport.transport(),
        credentials: gw
            .config
            .sip
            .accounts
            .get(phone_number)
            .or(gw.config.sip.trunk_account.as_ref())
            .map(|a| camara_sip::Credentials { username: a.username.clone(), password: a.password.clone() }),
    };
    // The session exists before the INVITE leaves, so no response can outrun it.
    let session = MediaSession {
        id: session_id.clone(),
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
        status: SessionStatus::Initial,
        sequence: 0,
        sip_dialog: None,
        local_hangup: None,
        node: Some(gw.store.node().to_owned()),
        created_at: chrono::Utc::now(),
        revision: 0,
    };
    let session = match gw.store.insert_session(session, Vec::new()).await {
        Ok(committed) => committed.record,
        Err(e) => {
            gw.media_sessions.close(&session_id).await;
            return Err(e);
        }
    };
    match gw.sip.invite(invite).await {
        Ok(_) => {
            metrics::histogram!(crate::metrics::CALL_SETUP).record(started.elapsed().as_secs_f64());
            Ok(session)
        }
        Err(e) => {
            tracing::warn!(session = session.id, "INVITE not sent: {e}");
            gw.media_sessions.close(&session.id).await;
            let _ = gw.store.update_session(&session.id, |s| s.status = SessionStatus::Failed).await;
            Err(ApiError::unavailable(format!("The call could not be sent to the network: {e}")))
        }
    }
}

/// Ends the call of `DELETE /sessions/{id}`: BYE when answered, CANCEL before.
pub async fn end_call(gw: &Arc<Gateway>, session: &MediaSession) -> Result<(), ApiError> {
    let Some(call_id) = &session.sip_call_id else { return Ok(()) };
    if session.status.is_final() || crate::incoming::end_ringing_device(gw, session).await {
        return Ok(());
    }
    // Recorded before the hangup leaves: the SIP side may report the end of the call before
    // `hangup` returns, and that report must already know the device ended it.
    let answered = session.status.is_answered();
    let expected = if answered { "BYE" } else { "CANCEL" };
    gw.store.update_session(&session.id, |s| s.local_hangup = Some(expected.to_string())).await?;
    match gw.sip.hangup(call_id).await {
        Ok(kind) => {
            let method = match kind {
                HangupKind::Bye => "BYE",
                HangupKind::Cancel | HangupKind::Reject => "CANCEL",
            };
            if method != expected {
                gw.store.update_session(&session.id, |s| s.local_hangup = Some(method.to_string())).await?;
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

/// The final response to a re-INVITE: status, reason phrase and SDP answer.
pub(crate) type ReofferAnswer = (u16, String, Option<String>);
type ReofferWaiters = std::collections::HashMap<String, tokio::sync::oneshot::Sender<ReofferAnswer>>;

/// Callers waiting for the final response to their re-INVITE, by Call-ID.
#[derive(Default)]
pub struct Reoffers {
    waiting: std::sync::Mutex<ReofferWaiters>,
}

impl Reoffers {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReofferWaiters> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hold or resume an answered call of either direction (`PUT .../status`): a re-INVITE (or an
/// UPDATE, `[sip] reoffer_method`) whose SDP says `sendonly` or `sendrecv`. Answers once the
/// network has accepted or refused it.
pub async fn hold_or_resume(gw: &Gateway, session: &MediaSession, hold: bool) -> Result<MediaSession, ApiError> {
    let conflict = |m: String| ApiError::conflict("INCOMPATIBLE_STATE", m);
    let (Some(call_id), Some(media)) = (&session.sip_call_id, gw.media_sessions.get(&session.id)) else {
        return Err(conflict("The session has no call in progress".into()));
    };
    if !session.status.is_answered() {
        return Err(conflict(format!("A {} session cannot be put on hold or resumed", session.status)));
    }
    let sdp = media.network_reoffer(if hold { MediaDirection::SendOnly } else { MediaDirection::SendRecv });
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Registered before the re-INVITE leaves, so its answer cannot arrive unseen.
    gw.reoffers.lock().insert(call_id.clone(), tx);
    let method = match gw.config.sip.reoffer_method {
        ReofferMethod::Reinvite => OfferMethod::Reinvite,
        ReofferMethod::Update => OfferMethod::Update,
    };
    if let Err(e) = gw.sip.offer(call_id, method, sdp.clone()).await {
        gw.reoffers.lock().remove(call_id);
        return Err(conflict(format!("The call cannot be changed now: {e}")));
    }
    let (status, reason, answer) = match tokio::time::timeout(std::time::Duration::from_secs(32), rx).await {
        Ok(Ok(answer)) => answer,
        _ => {
            gw.reoffers.lock().remove(call_id);
            return Err(ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "TIMEOUT",
                "The network did not answer the re-offer",
            ));
        }
    };
    if !(200..300).contains(&status) {
        return Err(conflict(format!("The network refused the change: {status} {reason}")));
    }
    if let Some(answer) = answer
        && let Err(e) = media.network_reoffer_answered(&answer)
    {
        tracing::warn!(session = session.id, "unusable answer to the re-INVITE: {e}");
    }
    gw.store.update_session(&session.id, |s| s.sip_local_sdp = Some(sdp.clone())).await?;
    let (status, reason) = if hold {
        (mapping::SessionStatus::Hold, "Call put on hold by the device")
    } else {
        (mapping::SessionStatus::Resume, "Call resumed by the device")
    };
    apply_status(gw, &session.id, StatusUpdate { status, reason: reason.into() }).await;
    gw.store
        .session(&session.id, &session.owner_phone_number)
        .await?
        .ok_or_else(|| ApiError::not_found("Session not found"))
}

/// SIP headers as the plugins' pairs.
fn pairs(headers: Vec<(String, String)>) -> Vec<mapping::Pair> {
    headers.into_iter().map(|(name, value)| mapping::Pair { name, value }).collect()
}

/// Handles one event of call `call_id`; the call's actor ([`crate::call_actors`]) calls it
/// with the call's events in order.
pub(crate) async fn on_event(gw: &Arc<Gateway>, call_id: &str, event: CallEvent) {
    match event {
        CallEvent::Incoming { request_uri, from, to, p_asserted_identity, privacy, headers, sdp, .. } => {
            let invite = mapping::IncomingInvite {
                request_uri,
                from: mapping::NameAddr { display_name: from.display_name, uri: from.uri },
                to: mapping::NameAddr { display_name: to.display_name, uri: to.uri },
                p_asserted_identity: p_asserted_identity
                    .map(|p| mapping::NameAddr { display_name: p.display_name, uri: p.uri }),
                privacy,
                headers: pairs(headers),
            };
            crate::incoming::on_incoming(gw, call_id, invite, sdp).await;
        }
        event => on_call_event(gw, call_id, event).await,
    }
}

/// The final response to a re-INVITE of ours, to whoever waits for it.
pub(crate) fn reoffer_answered(gw: &Gateway, call_id: &str, answer: ReofferAnswer) {
    if let Some(waiter) = gw.reoffers.lock().remove(call_id) {
        let _ = waiter.send(answer);
    }
}

/// A SIP event of a call, for each of its sessions: one, or one per device while an incoming
/// call rings several.
async fn on_call_event(gw: &Gateway, call_id: &str, event: CallEvent) {
    let sessions = match gw.store.sessions_of_call(call_id).await {
        Ok(sessions) => sessions,
        Err(_) => return,
    };
    if sessions.is_empty() {
        tracing::debug!(call_id, "SIP event for an unknown call");
    }
    if let CallEvent::Terminated { cause } = &event {
        metrics::counter!(crate::metrics::CALL_ENDS, "cause" => cause.name()).increment(1);
        gw.ringing.forget(call_id);
    }
    for session in sessions {
        on_session_event(gw, call_id, session, event.clone()).await;
    }
}

async fn on_session_event(gw: &Gateway, call_id: &str, session: MediaSession, event: CallEvent) {
    let ended = match event {
        CallEvent::Terminated { cause } => Some(cause),
        _ => None,
    };
    // The dialog is confirmed: our 2xx was ACKed, or the network's 2xx arrived.
    let confirmed = match (&event, session.direction) {
        (CallEvent::Request { method, .. }, Direction::Incoming) => method == "ACK",
        (CallEvent::Response { status, .. }, Direction::Outgoing) => (200..300).contains(status),
        _ => false,
    };
    if let CallEvent::Response { status, .. } = &event
        && session.direction == Direction::Outgoing
    {
        metrics::counter!(crate::metrics::SIP_RESPONSES, "code" => status.to_string()).increment(1);
    }
    // An offer inside the call, already answered by `NetworkOffers`: the network holds (it will
    // not receive: sendonly or inactive) or resumes.
    if let CallEvent::Request { method, sdp: Some(offer), .. } = &event
        && matches!(method.as_str(), "INVITE" | "UPDATE")
    {
        let held = camara_media::sdp::parse_audio(offer).is_ok_and(|audio| !audio.direction.receives());
        let update = match (held, session.status) {
            (true, status) if status != SessionStatus::Hold => {
                Some((mapping::SessionStatus::Hold, "Call put on hold by the remote party"))
            }
            (false, SessionStatus::Hold) => Some((mapping::SessionStatus::Resume, "Call resumed by the remote party")),
            _ => None,
        };
        if let Some((status, reason)) = update {
            apply_status(gw, &session.id, StatusUpdate { status, reason: reason.into() }).await;
        }
        return;
    }
    // The network's answer to the offer we made for its offerless INVITE.
    if let CallEvent::Request { method, sdp: Some(answer), .. } = &event
        && matches!(method.as_str(), "ACK" | "PRACK")
        && let Some(media) = gw.media_sessions.get(&session.id)
        && media.is_offerless()
    {
        if let Err(e) = media.network_answered_our_offer(answer) {
            tracing::warn!(session = session.id, "the network's answer is unusable: {e}");
            end_by_gateway(gw, &session, &format!("The network's media answer is unusable: {e}")).await;
        }
        return;
    }
    // After DELETE, responses to the INVITE only confirm the hangup (a 200 crossing our CANCEL
    // is ACKed and ended with BYE by the SIP side): the device hears of the cancellation only.
    if matches!(event, CallEvent::Response { .. }) && session.local_hangup.is_some() {
        tracing::debug!(session = session.id, "response after the device hung up; not reported");
        return;
    }
    if let CallEvent::Response { status, sdp: Some(sdp), reliable, .. } = &event
        && (*reliable || (200..300).contains(status))
        && session.direction == Direction::Outgoing
        && let Some(media) = gw.media_sessions.get(&session.id)
    {
        match media.network_answered(sdp).await {
            Ok(Some(answer)) => {
                let _ = gw.store.update_session(&session.id, |s| s.answer_sdp = Some(answer.clone())).await;
            }
            Ok(None) => {}
            Err(e) => {
                // The call cannot carry media: end it rather than leave the device waiting.
                tracing::warn!(session = session.id, "network answer unusable: {e}");
                end_by_gateway(gw, &session, &format!("The network's media answer is unusable: {e}")).await;
                return;
            }
        }
    }
    let context = mapping::CallContext {
        session_id: session.id.clone(),
        direction: match session.direction {
            Direction::Outgoing => CallDirection::Outgoing,
            Direction::Incoming => CallDirection::Incoming,
        },
        call_id: Some(call_id.to_string()),
    };
    let sip_event = match event {
        CallEvent::Response { status, reason, sdp, reliable, headers } => Some(SipEvent::InviteResponse(SipResponse {
            status_code: status,
            reason_phrase: reason,
            has_sdp: sdp.is_some(),
            reliable,
            headers: pairs(headers),
        })),
        CallEvent::Request { method, reason, sdp, headers } => {
            Some(SipEvent::Request(SipRequest { method, reason, has_sdp: sdp.is_some(), headers: pairs(headers) }))
        }
        CallEvent::Timeout => Some(SipEvent::Timeout),
        // Handled by `incoming::on_incoming`; an incoming call has no session before it rings.
        CallEvent::Incoming { .. } => None,
        // Handled by `bindings::on_event`: a REGISTER binding has no session.
        CallEvent::Registration(_) => None,
        // Handled by `hold_or_resume`, which waits for it.
        CallEvent::ReinviteResponse { .. } => None,
        CallEvent::Terminated { .. } => session.local_hangup.clone().map(SipEvent::LocalHangup),
    };
    let update = match sip_event {
        Some(e) => match gw.plugins.get().mapping.map_sip_event(&e, &context).await {
            Ok(update) => update,
            Err(err) => {
                tracing::error!(session = session.id, "status of a SIP event unknown: {err}");
                None
            }
        },
        None => None,
    };
    // Kept before the status is told: a device that saw `Connected` has a call the next start
    // can end.
    if confirmed {
        remember_dialog(gw, &session.id, call_id).await;
    }
    // Out of the active calls before the device hears the call ended.
    let media = ended.is_some().then(|| gw.media_sessions.remove(&session.id)).flatten();
    if let Some(update) = update {
        apply_status(gw, &session.id, update).await;
    }
    if let Some(cause) = ended {
        // Whatever ended the call and whatever the plugin made of the SIP events before, the
        // session ends here: `apply_status` leaves a session that is already final as it is.
        let update = StatusUpdate { status: mapping::SessionStatus::Terminated, reason: end_reason(cause) };
        apply_status(gw, &session.id, update).await;
        let _ = gw.store.update_session(&session.id, |s| s.sip_call_id = None).await;
    }
    close(media).await;
}

/// Keeps what the SIP side needs to end the call after a crash (see [`crate::recovery`]).
pub(crate) async fn remember_dialog(gw: &Gateway, session_id: &str, call_id: &str) {
    let Some(snapshot) = gw.sip.dialog_snapshot(call_id).await else { return };
    match serde_json::to_value(&snapshot) {
        Ok(dialog) => {
            let _ = gw.store.update_session(session_id, |s| s.sip_dialog = Some(dialog.clone())).await;
        }
        Err(e) => tracing::warn!(session = session_id, "dialog not kept: {e}"),
    }
}

/// The `reason` of the session-status `Terminated` for a call that ended without a status from
/// the events before (a session timer, a failed re-offer, a missing ACK...).
fn end_reason(cause: EndCause) -> String {
    match cause {
        EndCause::Remote => "Call terminated by the remote party".into(),
        EndCause::Local => "Call terminated by the gateway".into(),
        cause => cause.describe(),
    }
}

/// The fields every session event carries.
pub(crate) fn session_data(session: &MediaSession) -> serde_json::Value {
    let mut data = serde_json::json!({
        "mediaSessionId": session.id,
        "originatorAddress": session.originator_address,
        "receiverAddress": session.receiver_address,
        "status": session.status.as_str(),
        "sequenceNumber": session.sequence,
    });
    if let Some(name) = &session.originator_name {
        data["originatorName"] = name.clone().into();
    }
    if let Some(name) = &session.receiver_name {
        data["receiverName"] = name.clone().into();
    }
    data
}

/// Moves a session to `update`'s status, unless it is final already, and queues its
/// session-status event in the same write.
pub(crate) async fn apply_status(gw: &Gateway, session_id: &str, update: StatusUpdate) {
    let status = crate::plugins::session_status(update.status);
    let Ok(Some(current)) = gw.store.session_by_id(session_id).await else { return };
    let Ok(subscriptions) = gw.store.subscriptions_of(&current.owner_phone_number).await else { return };
    let mut changed = false;
    let committed = gw
        .store
        .update_session_with_events(session_id, &mut |s| {
            changed = !s.status.is_final();
            if !changed {
                return Vec::new();
            }
            s.status = status;
            s.sequence += 1;
            gw.notifier.event(status_event(s, &update.reason), &subscriptions).into_iter().collect()
        })
        .await;
    let Ok(committed) = committed else { return };
    if !changed {
        return;
    }
    let session = &committed.record;
    tracing::info!(session = session.id, status = status.as_str(), reason = update.reason, "session status");
    let direction = match session.direction {
        Direction::Outgoing => "outgoing",
        Direction::Incoming => "incoming",
    };
    metrics::counter!(crate::metrics::SESSION_STATUS, "direction" => direction, "status" => status.as_str())
        .increment(1);
    gw.notifier.dispatch(committed.events).await;
}

/// The session-status event of `session` as it now is.
fn status_event(session: &MediaSession, reason: &str) -> GatewayEvent {
    let mut data = session_data(session);
    data["reason"] = reason.into();
    // As the call-flow examples show: the session's offer and, once there is one, its answer.
    data["offer"] = serde_json::json!({ "sdp": session.offer_sdp });
    if let Some(answer) = &session.answer_sdp {
        data["answer"] = serde_json::json!({ "sdp": answer });
    }
    GatewayEvent {
        event_type: SESSION_STATUS,
        data,
        media_session_id: Some(session.id.clone()),
        registration_id: Some(session.registration_id.clone()),
        device_id: Some(session.device_id.clone()),
        phone_number: Some(session.owner_phone_number.clone()),
    }
}
