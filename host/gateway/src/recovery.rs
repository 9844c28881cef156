//! Start-up reconciliation of the calls a previous run left behind.
//!
//! A call's media, its SIP transactions and its offer/answer state live in the process; after
//! a crash (or any exit that did not end its calls) none of it can be resumed, yet the network
//! still holds the call and the device's session still reads as it was. So at start-up every
//! session that still names a SIP call is ended: the device hears `Terminated` (in the same
//! write that ends the session), and a call whose dialog was confirmed is ended towards the
//! network with a BYE built from the dialog snapshot kept in the session
//! ([`crate::calls::remember_dialog`]). A call that never reached a confirmed dialog has nothing
//! to address a BYE to: the network's own timers end it (no ACK for an incoming call's 2xx, Timer
//! C or the no-answer timer for an outgoing one).

use std::sync::Arc;

use camara_plugin_host::mapping;
use camara_sip::DialogSnapshot;

use crate::app::Gateway;

/// The `reason` of the `Terminated` event of a recovered call.
pub const REASON: &str = "The gateway restarted and could not resume the call";

/// Ends every call a previous run left up. Runs before the SIP events are read, so nothing of
/// the new run can be mistaken for one of these calls.
pub async fn end_calls_of_previous_run(gw: &Arc<Gateway>) {
    let sessions = match gw.store.calls_here().await {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::error!("calls of the previous run not read: {e}");
            return;
        }
    };
    if !sessions.is_empty() {
        tracing::info!(count = sessions.len(), "ending the calls of the previous run");
    }
    end_calls(gw, sessions, REASON).await;
}

/// Ends calls whose process is gone (a previous run, a dead node): each session `Terminated`
/// with `reason`, and a BYE from its dialog snapshot when the call was up.
pub async fn end_calls(gw: &Arc<Gateway>, sessions: Vec<crate::store::MediaSession>, reason: &str) {
    for session in sessions {
        let snapshot = session
            .sip_dialog
            .clone()
            .filter(|_| !session.status.is_final())
            .and_then(|d| serde_json::from_value::<DialogSnapshot>(d).ok());
        let update = mapping::StatusUpdate { status: mapping::SessionStatus::Terminated, reason: reason.into() };
        crate::calls::apply_status(gw, &session.id, update).await;
        // The call is forgotten before its BYE leaves: what the SIP side reports about it
        // concerns no session any more.
        let _ = gw
            .store
            .update_session(&session.id, |s| {
                s.sip_call_id = None;
                s.sip_dialog = None;
            })
            .await;
        if let Some(snapshot) = snapshot {
            tracing::info!(
                session = session.id,
                call_id = snapshot.parts.call_id,
                "BYE for a call whose process is gone"
            );
            if let Err(e) = gw.sip.end_recovered(snapshot).await {
                tracing::warn!(session = session.id, "call whose process is gone not ended: {e}");
            }
        }
    }
}
