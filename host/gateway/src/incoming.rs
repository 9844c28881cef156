//! Incoming calls: an INVITE from the network rings the devices registered for its number.
//!
//! Every device rung gets a session of its own (its own media anchor, its own WebRTC offer, its
//! own `session-invitation`); the sessions of one call share its Call-ID, like the branches of a
//! forking proxy share the INVITE. The first device that answers with media (`InProgress` or
//! `Connected`) takes the call: the SIP answer is its media's, and every other device's session
//! ends `SessionCancelled` ("answered on another device"). A device that declines, does not
//! answer in time or hangs up while ringing ends only its own session; the network hears a
//! final response once no device is left ringing (603 when the last one declined, 480
//! otherwise).
//!
//! Which devices ring is the `forking` policy, read from the API-mapping plugin's `config`
//! (where the operator configures how calls map to subscribers): `all` (the default: parallel
//! ringing), `most-recent` (the device registered last) or `sequential` (most recent first,
//! each for its share of `[sip] no_answer_seconds`).
//!
//! What is kept in memory here (which devices are still to ring, who took the call) concerns a
//! call whose INVITE transaction lives in this process; after a restart the call is gone anyway
//! (see [`crate::recovery`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camara_plugin_host::mapping::{self, StatusUpdate};

use crate::app::Gateway;
use crate::calls::{apply_status, session_data};
use crate::error::ApiError;
use crate::notify::{GatewayEvent, SESSION_INVITATION};
use crate::store::{Direction, MediaSession, Registration, SessionStatus};

/// The reason every other device's session ends with once one device took the call.
pub const ANSWERED_ELSEWHERE: &str = "The call was answered on another device";

/// The plugin configuration key of the policy.
pub const FORKING_KEY: &str = "forking";

/// Which of the devices registered for the called number ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Forking {
    #[default]
    All,
    MostRecent,
    Sequential,
}

impl Forking {
    /// The policy in the API-mapping plugin's configuration; `all` when it names none.
    pub fn from_plugin_config(config: &std::collections::BTreeMap<String, String>) -> Result<Forking, String> {
        match config.get(FORKING_KEY).map(String::as_str) {
            None | Some("all") => Ok(Forking::All),
            Some("most-recent") => Ok(Forking::MostRecent),
            Some("sequential") => Ok(Forking::Sequential),
            Some(other) => Err(format!("{FORKING_KEY} must be all, most-recent or sequential, not {other:?}")),
        }
    }

    /// The devices to ring, in the order they ring: the most recently registered first.
    fn devices(self, mut registrations: Vec<Registration>) -> Vec<Registration> {
        registrations.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.device_id.cmp(&b.device_id)));
        if self == Forking::MostRecent {
            registrations.truncate(1);
        }
        registrations
    }
}

/// An incoming call while it has not been answered.
struct RingingCall {
    call: mapping::IncomingCall,
    sdp: Option<String>,
    /// Devices still to ring (`sequential`).
    waiting: VecDeque<Registration>,
    /// How long each device rings.
    ring_time: Duration,
    /// The session that took the call.
    answered_by: Option<String>,
    /// A 180 went out (one is enough, whichever device rang first).
    ringing_sent: bool,
}

/// The incoming calls of this process by Call-ID, from their INVITE to their end.
#[derive(Default)]
pub struct RingingCalls(Mutex<HashMap<String, RingingCall>>);

impl RingingCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RingingCall>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the call to `session_id` unless another session has it; true if it is now its.
    fn claim(&self, call_id: &str, session_id: &str) -> bool {
        match self.lock().get_mut(call_id) {
            Some(call) => match &call.answered_by {
                Some(owner) => owner == session_id,
                None => {
                    call.answered_by = Some(session_id.to_string());
                    call.waiting.clear();
                    true
                }
            },
            // Not ringing here any more (ended, or a session of the previous run).
            None => false,
        }
    }

    fn answered_by_other(&self, call_id: &str, session_id: &str) -> bool {
        self.lock().get(call_id).and_then(|c| c.answered_by.as_deref()).is_some_and(|owner| owner != session_id)
    }

    /// Whether this is the first device's ringing of the call (the one a 180 goes out for).
    fn first_ringing(&self, call_id: &str) -> bool {
        self.lock().get_mut(call_id).is_some_and(|c| !std::mem::replace(&mut c.ringing_sent, true))
    }

    /// The call is over on the SIP side.
    pub fn forget(&self, call_id: &str) {
        self.lock().remove(call_id);
    }
}

/// An INVITE from the network. The mapping plugin names the subscriber it is for; a number
/// nobody registered is refused (404). Otherwise the devices ring as the policy says.
pub(crate) async fn on_incoming(
    gw: &Arc<Gateway>,
    call_id: &str,
    invite: mapping::IncomingInvite,
    sdp: Option<String>,
) {
    if gw.drain.is_draining() {
        return refuse(gw, call_id, 503, "Service Unavailable").await;
    }
    let plugins = gw.plugins.get();
    let call = match plugins.mapping.map_incoming_call(&invite, call_id).await {
        Ok(Ok(call)) => call,
        Ok(Err(rejection)) => return refuse(gw, call_id, rejection.status_code, &rejection.reason_phrase).await,
        Err(e) => {
            tracing::error!(call_id, "incoming call not mapped: {e}");
            return refuse(gw, call_id, 500, "Server Internal Error").await;
        }
    };
    let devices = match gw.store.registrations_of(&call.target_phone_number, None).await {
        Ok(registrations) => plugins.forking.devices(registrations),
        Err(_) => return refuse(gw, call_id, 500, "Server Internal Error").await,
    };
    if devices.is_empty() {
        return refuse(gw, call_id, 404, "Not Found").await;
    }
    let no_answer = Duration::from_secs(gw.config.sip.no_answer_seconds.max(1));
    let (now, later): (Vec<_>, VecDeque<_>) = match plugins.forking {
        Forking::Sequential => {
            let mut devices = VecDeque::from(devices);
            (devices.pop_front().into_iter().collect(), devices)
        }
        _ => (devices, VecDeque::new()),
    };
    let ring_time = match plugins.forking {
        Forking::Sequential => (no_answer / (later.len() as u32 + 1)).max(Duration::from_secs(5).min(no_answer)),
        _ => no_answer,
    };
    let ringing = RingingCall {
        call: call.clone(),
        sdp: sdp.clone(),
        waiting: later,
        ring_time,
        answered_by: None,
        ringing_sent: false,
    };
    gw.ringing.lock().insert(call_id.to_string(), ringing);
    let mut rung = 0;
    let mut refusal = (488, "Not Acceptable Here");
    for device in now {
        match ring(gw, call_id, &call, sdp.as_deref(), &device, ring_time).await {
            Ok(()) => rung += 1,
            Err(why) => refusal = why,
        }
    }
    if rung == 0 {
        next_device_or_refuse(gw, call_id, refusal).await;
    }
}

async fn refuse(gw: &Gateway, call_id: &str, status: u16, reason: &str) {
    gw.ringing.forget(call_id);
    if let Err(e) = gw.sip.reject(call_id, status, reason).await {
        tracing::warn!(call_id, "incoming call not refused: {e}");
    }
}

/// Rings `device`: its media, its session and its invitation, in one write with the session;
/// then its no-answer timer. `Err` is the SIP refusal this device alone would call for.
async fn ring(
    gw: &Arc<Gateway>,
    call_id: &str,
    call: &mapping::IncomingCall,
    sdp: Option<&str>,
    device: &Registration,
    ring_time: Duration,
) -> Result<(), (u16, &'static str)> {
    let session_id = uuid::Uuid::new_v4().to_string();
    // An offerless INVITE gets our offer with the device's answer; the network answers in the
    // PRACK or the ACK.
    let media = match sdp {
        Some(sdp) => gw.media.incoming(&session_id, sdp).await,
        None => gw.media.incoming_offerless(&session_id).await,
    };
    let (media, webrtc_offer) = media.map_err(|e| {
        tracing::warn!(call_id, device = device.device_id, "incoming call without usable media: {e}");
        (488, "Not Acceptable Here")
    })?;
    gw.media_sessions.insert(&session_id, call_id, media);
    let session = MediaSession {
        id: session_id.clone(),
        owner_phone_number: call.target_phone_number.clone(),
        registration_id: device.id.clone(),
        device_id: device.device_id.clone(),
        direction: Direction::Incoming,
        sip_call_id: Some(call_id.to_string()),
        originator_address: call.originator_address.clone(),
        originator_name: call.originator_name.clone(),
        receiver_address: call.receiver_address.clone(),
        receiver_name: None,
        offer_sdp: webrtc_offer,
        answer_sdp: None,
        sip_local_sdp: None,
        status: SessionStatus::Initial,
        sequence: 1,
        sip_dialog: None,
        local_hangup: None,
        node: Some(gw.store.node().to_owned()),
        created_at: chrono::Utc::now(),
        revision: 0,
    };
    let mut data = session_data(&session);
    data["offer"] = serde_json::json!({ "sdp": session.offer_sdp });
    let event = GatewayEvent {
        event_type: SESSION_INVITATION,
        data,
        media_session_id: Some(session.id.clone()),
        registration_id: Some(session.registration_id.clone()),
        device_id: Some(session.device_id.clone()),
        phone_number: Some(session.owner_phone_number.clone()),
    };
    let subscriptions = gw.store.subscriptions_of(&session.owner_phone_number).await.unwrap_or_default();
    let invitation = gw.notifier.event(event, &subscriptions).into_iter().collect();
    match gw.store.insert_session(session, invitation).await {
        Ok(committed) => gw.notifier.dispatch(committed.events).await,
        Err(_) => {
            gw.media_sessions.close(&session_id).await;
            return Err((500, "Server Internal Error"));
        }
    }
    tracing::info!(call_id, session = session_id, device = device.device_id, "device invited");
    tokio::spawn(no_answer_timer(gw.clone(), session_id, ring_time));
    Ok(())
}

/// Ends the ringing of a device that has not answered within `ring_time`. Boxed: it may ring
/// the next device, whose timer is another of these.
fn no_answer_timer(
    gw: Arc<Gateway>,
    session_id: String,
    ring_time: Duration,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        tokio::time::sleep(ring_time).await;
        let Ok(Some(session)) = gw.store.session_by_id(&session_id).await else { return };
        if session.status.is_unanswered() && session.sip_call_id.is_some() {
            tracing::info!(session = session_id, "no answer within {ring_time:?}");
            end_device(&gw, &session, mapping::SessionStatus::NoAnswer, "Not answered in time", "NoAnswer").await;
        }
    })
}

/// Ends the ringing of one device: its session takes `status` and leaves the call; the call
/// rings the next device, or is refused once no device is left.
async fn end_device(
    gw: &Arc<Gateway>,
    session: &MediaSession,
    status: mapping::SessionStatus,
    reason: &str,
    hangup: &str,
) {
    let Some(call_id) = session.sip_call_id.clone() else { return };
    leave_call(gw, &session.id, status, reason, hangup).await;
    let refusal = match status {
        mapping::SessionStatus::Declined => (603, "Decline"),
        _ => (480, "Temporarily Unavailable"),
    };
    next_device_or_refuse(gw, &call_id, refusal).await;
}

/// After a device stopped ringing: the next one rings (`sequential`), or, once no device of
/// the call is left, the network hears `refusal`.
async fn next_device_or_refuse(gw: &Arc<Gateway>, call_id: &str, refusal: (u16, &'static str)) {
    loop {
        let next = {
            let mut calls = gw.ringing.lock();
            let Some(call) = calls.get_mut(call_id) else { return };
            if call.answered_by.is_some() {
                return;
            }
            call.waiting.pop_front().map(|device| (device, call.call.clone(), call.sdp.clone(), call.ring_time))
        };
        match next {
            Some((device, call, sdp, ring_time)) => {
                if ring(gw, call_id, &call, sdp.as_deref(), &device, ring_time).await.is_ok() {
                    return;
                }
            }
            None => break,
        }
    }
    let still_ringing = gw.store.sessions_of_call(call_id).await.map(|s| !s.is_empty()).unwrap_or(false);
    if !still_ringing {
        tracing::info!(call_id, status = refusal.0, "no device left ringing");
        refuse(gw, call_id, refusal.0, refusal.1).await;
    }
}

/// Every other device of the call stops ringing: `session_id` took it.
async fn cancel_other_devices(gw: &Arc<Gateway>, call_id: &str, session_id: &str) {
    let Ok(sessions) = gw.store.sessions_of_call(call_id).await else { return };
    for other in sessions.into_iter().filter(|s| s.id != session_id) {
        let cancelled = mapping::SessionStatus::SessionCancelled;
        leave_call(gw, &other.id, cancelled, ANSWERED_ELSEWHERE, "AnsweredElsewhere").await;
    }
}

/// One device's session leaves the call: it takes `status`, forgets the Call-ID (so the call's
/// later SIP events no longer reach it) and its media closes.
async fn leave_call(gw: &Gateway, session_id: &str, status: mapping::SessionStatus, reason: &str, hangup: &str) {
    let media = gw.media_sessions.remove(session_id);
    apply_status(gw, session_id, StatusUpdate { status, reason: reason.into() }).await;
    let _ = gw
        .store
        .update_session(session_id, |s| {
            s.sip_call_id = None;
            s.local_hangup = Some(hangup.to_string());
        })
        .await;
    crate::calls::close(media).await;
}

/// `DELETE` of an incoming session that has not been answered, while other devices of the call
/// still ring (or are still to ring): only this device stops. `false` when this is the call's
/// last device, which `DELETE` ends as any call.
pub(crate) async fn end_ringing_device(gw: &Arc<Gateway>, session: &MediaSession) -> bool {
    let Some(call_id) = &session.sip_call_id else { return false };
    let others = gw.store.sessions_of_call(call_id).await.map(|s| s.len() > 1).unwrap_or(false);
    let waiting = gw.ringing.lock().get(call_id).is_some_and(|c| !c.waiting.is_empty());
    if session.direction != Direction::Incoming || !session.status.is_unanswered() || !(others || waiting) {
        return false;
    }
    let reason = "Ended by the device while ringing";
    end_device(gw, session, mapping::SessionStatus::Terminated, reason, "CANCEL").await;
    true
}

/// The device's answer to an incoming call (`PUT .../status`): `InProgress` (183 with the SDP
/// answer, reliable), `Ringing` (180), `Connected` (200 with the answer) or `Declined` (this
/// device stops ringing).
pub async fn answer_incoming(
    gw: &Arc<Gateway>,
    session: &MediaSession,
    status: SessionStatus,
    answer_sdp: Option<String>,
) -> Result<MediaSession, ApiError> {
    let conflict = |m: String| ApiError::conflict("INCOMPATIBLE_STATE", m);
    let (Some(call_id), Some(media)) = (&session.sip_call_id, gw.media_sessions.get(&session.id)) else {
        return Err(conflict("The session has no call in progress".into()));
    };
    if !session.status.is_unanswered() {
        return Err(conflict(format!("A {} session cannot be answered", session.status)));
    }
    let current = async |gw: &Gateway| {
        gw.store
            .session(&session.id, &session.owner_phone_number)
            .await?
            .ok_or_else(|| ApiError::not_found("Session not found"))
    };
    if status == SessionStatus::Declined {
        end_device(gw, session, mapping::SessionStatus::Declined, "Declined by the device", "Declined").await;
        return current(gw).await;
    }
    if gw.ringing.answered_by_other(call_id, &session.id) {
        return Err(conflict(ANSWERED_ELSEWHERE.into()));
    }
    // The first answer sets up the media; the SIP answer then goes in every later response.
    let sip_answer = match (&session.sip_local_sdp, answer_sdp) {
        (Some(sip_answer), _) => Some(sip_answer.clone()),
        (None, Some(answer)) => {
            let sip_answer = media.device_answered(&answer).await.map_err(|e| match e {
                camara_media::MediaError::Sdp(why) => ApiError::invalid_argument(format!("answer.sdp: {why}")),
                camara_media::MediaError::NoCommonCodec => {
                    ApiError::invalid_argument("answer.sdp has no codec of the offer")
                }
                e => ApiError::unavailable(format!("The media could not be set up: {e}")),
            })?;
            gw.store
                .update_session(&session.id, |s| {
                    s.answer_sdp = Some(answer.clone());
                    s.sip_local_sdp = Some(sip_answer.clone());
                })
                .await?;
            Some(sip_answer)
        }
        (None, None) if status == SessionStatus::Ringing => None,
        (None, None) => return Err(ApiError::invalid_argument(format!("status {status} needs answer.sdp"))),
    };
    // An answer with media commits the SIP answer to this device's media: it takes the call.
    let takes_call = status != SessionStatus::Ringing;
    if takes_call && !gw.ringing.claim(call_id, &session.id) {
        return Err(conflict(ANSWERED_ELSEWHERE.into()));
    }
    let sent = match status {
        SessionStatus::InProgress => {
            if media.is_offerless() {
                media.offer_sent_early();
            }
            gw.sip.provisional(call_id, 183, sip_answer, true).await
        }
        SessionStatus::Ringing if gw.ringing.first_ringing(call_id) => {
            gw.sip.provisional(call_id, 180, None, true).await
        }
        SessionStatus::Ringing => Ok(()),
        _ if media.exchange_completed_early() => gw.sip.accept(call_id, None).await,
        _ => gw.sip.accept(call_id, sip_answer).await,
    };
    sent.map_err(|e| conflict(format!("The call is gone: {e}")))?;
    if takes_call {
        cancel_other_devices(gw, call_id, &session.id).await;
    }
    let (status, reason) = match status {
        SessionStatus::InProgress => (mapping::SessionStatus::InProgress, "Answer sent to the network (183)"),
        SessionStatus::Ringing => (mapping::SessionStatus::Ringing, "The device is ringing (180)"),
        _ => (mapping::SessionStatus::Connected, "Answered by the device (200)"),
    };
    apply_status(gw, &session.id, StatusUpdate { status, reason: reason.into() }).await;
    current(gw).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(device: &str, created: i64) -> Registration {
        let at = chrono::DateTime::from_timestamp(created, 0).unwrap();
        Registration {
            id: format!("reg-{device}"),
            device_id: device.into(),
            phone_number: "+818000000002".into(),
            expires_at: at + chrono::Duration::hours(1),
            created_at: at,
            node: None,
        }
    }

    #[test]
    fn the_policy_comes_from_the_mapping_plugins_config() {
        let config = |v: &str| [(FORKING_KEY.to_string(), v.to_string())].into_iter().collect();
        assert_eq!(Forking::from_plugin_config(&Default::default()), Ok(Forking::All));
        assert_eq!(Forking::from_plugin_config(&config("all")), Ok(Forking::All));
        assert_eq!(Forking::from_plugin_config(&config("most-recent")), Ok(Forking::MostRecent));
        assert_eq!(Forking::from_plugin_config(&config("sequential")), Ok(Forking::Sequential));
        assert!(Forking::from_plugin_config(&config("random")).unwrap_err().contains("most-recent"));
    }

    #[test]
    fn devices_ring_most_recent_first() {
        let devices = || vec![registration("a", 10), registration("b", 30), registration("c", 20)];
        let ids = |r: Vec<Registration>| r.into_iter().map(|r| r.device_id).collect::<Vec<_>>();
        assert_eq!(ids(Forking::All.devices(devices())), ["b", "c", "a"]);
        assert_eq!(ids(Forking::Sequential.devices(devices())), ["b", "c", "a"]);
        assert_eq!(ids(Forking::MostRecent.devices(devices())), ["b"]);
    }
}
