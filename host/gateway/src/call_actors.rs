//! One task per call: the SIP user agent's reports are routed by Call-ID to the call's own task,
//! which handles them one after the other, so one call's slow step (a plugin call, ICE
//! gathering for a new call's media, an `fsync`) delays that call only.
//!
//! The router itself never waits on a call: it creates the task on a call's first event and
//! hands each event to its bounded mailbox. A full mailbox (a call stuck for
//! [`MAILBOX`] events) makes the router wait for that call rather than drop a SIP event. A call's
//! task ends once it has handled `Terminated`; anything later with the same Call-ID starts a new
//! one, which finds the call ended.
//!
//! What is not here yet: the task does not own the call's state. The session record, the
//! media and the SIP dialog are still reached through the store, `MediaSessions` and the user
//! agent, and the API's requests (`DELETE`, `PUT .../status`) act on them from their own tasks.

use std::collections::HashMap;
use std::sync::Arc;

use camara_sip::{CallEvent, UaEvent};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::app::Gateway;

/// Events a call may have waiting before the router waits for it.
pub const MAILBOX: usize = 64;

/// Reads the SIP user agent's reports until it stops, and routes them.
pub async fn run(gw: Arc<Gateway>, mut events: mpsc::UnboundedReceiver<UaEvent>) {
    let mut calls: HashMap<String, mpsc::Sender<CallEvent>> = HashMap::new();
    while let Some(UaEvent { call_id, event }) = events.recv().await {
        match event {
            // Registration bindings are not calls: few, long-lived, handled in order here.
            CallEvent::Registration(event) => crate::bindings::on_event(&gw, &call_id, event).await,
            // Someone waits for it (`hold_or_resume`): handed over at once.
            CallEvent::ReinviteResponse { status, reason, sdp } => {
                crate::calls::reoffer_answered(&gw, &call_id, (status, reason, sdp));
            }
            event => {
                let ends = matches!(event, CallEvent::Terminated { .. });
                let mailbox = calls.entry(call_id.clone()).or_insert_with(|| spawn(gw.clone(), call_id.clone()));
                if let Err(mpsc::error::SendError(event)) = mailbox.send(event).await {
                    // The task is gone (it panicked): a fresh one takes the call's events.
                    tracing::error!(call_id, "call task gone; starting another");
                    let mailbox = spawn(gw.clone(), call_id.clone());
                    let _ = mailbox.send(event).await;
                    calls.insert(call_id.clone(), mailbox);
                }
                if ends {
                    // Dropping the sender lets the task finish what it has, then end.
                    calls.remove(&call_id);
                }
            }
        }
    }
}

/// The task of call `call_id`, and its mailbox.
fn spawn(gw: Arc<Gateway>, call_id: String) -> mpsc::Sender<CallEvent> {
    let (tx, mut rx) = mpsc::channel(MAILBOX);
    let span = tracing::info_span!("call", call_id);
    tokio::spawn(
        async move {
            while let Some(event) = rx.recv().await {
                crate::calls::on_event(&gw, &call_id, event).await;
            }
        }
        .instrument(span),
    );
    tx
}
