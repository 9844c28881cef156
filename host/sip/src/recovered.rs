//! A call of a previous run of the process, known only by its [`DialogSnapshot`]: it is ended
//! with BYE, and nothing else.
//!
//! After a crash the media, the offer/answer state and every transaction of the call are gone,
//! so the call cannot be resumed; but the network still has it. The application persists a
//! snapshot of each confirmed dialog and, at start-up, hands it back to
//! [`Endpoint::end_recovered`](crate::endpoint::Endpoint::end_recovered), which sends the BYE
//! through this state machine: the BYE's client transaction and retransmissions, a BYE that
//! crosses ours, then `Terminated`.

use std::net::SocketAddr;
use std::time::Instant;

use crate::dialog::CallOutput;
use crate::in_dialog::{Dialog, DialogSnapshot};
use crate::message::{Request, Response, header_param};
use crate::transaction::TimerConfig;
use crate::{CallEvent, EndCause, Transport};

/// How far the BYE's CSeq jumps past the snapshot's: requests sent after the snapshot was taken
/// (session refreshes, re-offers) used numbers the snapshot does not know, and a peer refuses a
/// CSeq lower than one it has seen (RFC 3261 s.12.2.2) but accepts any higher one.
pub const CSEQ_GAP: u32 = 1000;

#[derive(Debug)]
pub struct RecoveredCall {
    dialog: Dialog,
    local_tag: String,
    remote_tag: String,
    transport: Transport,
    /// The peer sent BYE too.
    remote_ended: bool,
    /// `Terminated` was emitted.
    ended: bool,
}

impl RecoveredCall {
    /// Starts the BYE of the dialog `snapshot` describes.
    pub fn new(snapshot: DialogSnapshot, timers: TimerConfig, now: Instant) -> Self {
        let tag = |value: &str| header_param(value, "tag").flatten().unwrap_or_default().to_owned();
        let local_tag = tag(&snapshot.parts.local);
        let remote_tag = tag(&snapshot.parts.remote);
        let cseq = snapshot.local_cseq.saturating_add(CSEQ_GAP);
        let transport = snapshot.parts.transport;
        // No session timer: it is not refreshed, the dialog is ending.
        let timers = TimerConfig { session_expires: 0, ..timers };
        let mut dialog = Dialog::new(snapshot.parts, timers, cseq, false, None, None);
        dialog.bye(now);
        Self { transport, dialog, local_tag, remote_tag, remote_ended: false, ended: false }
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn is_finished(&self) -> bool {
        self.ended && self.dialog.is_settled()
    }

    pub fn matches_dialog(&self, local_tag: &str, remote_tag: &str) -> bool {
        local_tag == self.local_tag && remote_tag == self.remote_tag
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        if let Some(out) = self.dialog.poll_output() {
            return Some(out);
        }
        if (self.dialog.is_over() || self.remote_ended) && !self.ended {
            self.ended = true;
            return Some(CallOutput::Event(CallEvent::Terminated { cause: EndCause::Local }));
        }
        None
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dialog.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.dialog.handle_timeout(now);
    }

    pub fn handle_response(&mut self, response: Response, now: Instant) {
        self.dialog.handle_response(response, now);
    }

    pub fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        self.dialog.transport_failed(dest, now);
    }

    /// The peer's BYE crossed ours (the endpoint answered it): the call is over either way.
    pub fn handle_remote_bye(&mut self, _request: &Request, _now: Instant) {
        self.dialog.close();
        self.remote_ended = true;
    }
}
