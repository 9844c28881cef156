//! The UAS side of one incoming call, as a sans-IO state machine.
//!
//! A [`UasCall`] owns the INVITE server transaction of an out-of-dialog
//! INVITE and everything the UAS core must do on top of it: the To tag,
//! reliable provisional responses retransmitted until their PRACK (RFC 3262),
//! the 2xx retransmitted until its ACK (RFC 3261 s.13.3.1.4), and the RFC 4028
//! session timer negotiation of the 2xx. Once the 2xx is sent, the requests we
//! send inside the dialog (BYE, re-INVITE, UPDATE, session refreshes) are the
//! [`Dialog`]'s.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::dialog::{ALLOW, CallOutput, HangupError};
use crate::in_dialog::{Dialog, DialogParts, OfferMethod, SessionTimer, contact_target, session_expires};
use crate::message::{
    Headers, Message, Request, Response, SipHeaders, Transmit, header_param, name_addr_uri, response_to,
};
use crate::transaction::{InviteServer, RetransmitAction, Retransmitter, ServerOutput, TimerConfig};
use crate::{CallEvent, EndCause, HangupKind, NameAddr, SipError, Transport};

/// Local identifiers and addressing chosen by the endpoint for an incoming call.
#[derive(Debug, Clone)]
pub struct UasSetup {
    /// Our To tag, the same in every response that creates the dialog.
    pub local_tag: String,
    pub local_host: String,
    pub local_port: u16,
    pub user_agent: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasPhase {
    /// No final response on the wire yet (a 2xx may be held for a PRACK).
    Early,
    /// The 2xx was sent and is retransmitted until the ACK.
    Answered,
    /// The ACK for the 2xx arrived.
    Confirmed,
    /// A non-2xx final response was sent; waiting for its ACK.
    Rejected,
    /// `CallEvent::Terminated` was emitted; the call may linger to absorb retransmissions.
    Terminated,
}

/// A response waiting for the PRACK of the previous reliable provisional (RFC 3262 s.3).
#[derive(Debug, Clone)]
enum Held {
    Provisional { response: Response, reliable: bool },
    Answer(Response),
}

#[derive(Debug)]
struct Unacked {
    response: Response,
    rseq: u32,
    retransmit: Retransmitter,
}

#[derive(Debug)]
pub struct UasCall {
    call_id: String,
    setup: UasSetup,
    transport: Transport,
    timers: TimerConfig,
    invite: Request,
    /// Top Via branch and sent-by of the INVITE: identify its retransmissions,
    /// its CANCEL and the ACK of a non-2xx (RFC 3261 s.17.2.3).
    branch: String,
    sent_by: String,
    invite_cseq: u32,
    response_dest: SocketAddr,
    invite_tx: InviteServer,
    supports_100rel: bool,
    requires_100rel: bool,
    remote_tag: String,
    /// RFC 3261 s.12.1.1: the caller's Contact and the Record-Route in order.
    remote_target: String,
    route_set: Vec<String>,
    phase: UasPhase,
    /// The gateway asked for a final response (it may still be held).
    final_requested: bool,
    /// Hang up once the 2xx is ACKed (s.15: no BYE before that).
    bye_pending: bool,
    /// Why the call ends, once that is decided here (the dialog knows its own causes).
    end_cause: Option<EndCause>,
    next_rseq: u32,
    unacked: Option<Unacked>,
    held: VecDeque<Held>,
    /// The 2xx, retransmitted until its ACK.
    answer: Option<(Response, Retransmitter)>,
    /// The SDP of ours in force: the answer, or the offer of an offerless INVITE.
    local_sdp: Option<String>,
    /// The confirmed dialog, from the 2xx on.
    dialog: Option<Dialog>,
    outputs: VecDeque<CallOutput>,
}

/// `"Bob" <sip:...>;tag=x` -> display name and URI.
pub fn parse_name_addr(value: &str) -> NameAddr {
    let uri = name_addr_uri(value).to_string();
    let display_name = value.find('<').map(|open| value[..open].trim()).filter(|name| !name.is_empty()).map(|name| {
        let unquoted = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(name);
        unquoted.replace("\\\"", "\"").replace("\\\\", "\\")
    });
    NameAddr { display_name, uri }
}

/// Why an INVITE cannot start a call; the endpoint answers it statelessly
/// through an INVITE server transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRefusal {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl UasCall {
    /// Checks an out-of-dialog INVITE and, if acceptable, starts the call:
    /// 100 Trying is queued at once (s.8.2.6: the caller stops retransmitting)
    /// followed by `CallEvent::Incoming`.
    pub fn new(
        invite: Request,
        setup: UasSetup,
        transport: Transport,
        response_dest: SocketAddr,
        timers: TimerConfig,
        now: Instant,
    ) -> Result<Self, InviteRefusal> {
        // RFC 3261 s.8.2.2.3: refuse extensions we do not implement.
        let unsupported: Vec<&str> = invite
            .headers
            .get_all("Require")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("100rel") && !t.eq_ignore_ascii_case("timer"))
            .collect();
        if !unsupported.is_empty() {
            return Err(InviteRefusal {
                status: 420,
                reason: "Bad Extension",
                headers: vec![("Unsupported", unsupported.join(", "))],
            });
        }
        // RFC 4028 s.8.1: a session interval below our minimum is refused with ours.
        if let Some((interval, _)) = session_expires(&invite.headers)
            && interval < timers.min_se
        {
            return Err(InviteRefusal {
                status: 422,
                reason: "Session Interval Too Small",
                headers: vec![("Min-SE", timers.min_se.to_string())],
            });
        }
        // The Contact is the remote target of the dialog (s.8.1.1.8): without a usable one no BYE
        // can reach the caller.
        let remote_target = contact_target(&invite.headers).map(str::to_string);
        let (Some(remote_target), Some(via), Some((invite_cseq, _))) = (remote_target, invite.top_via(), invite.cseq())
        else {
            return Err(InviteRefusal { status: 400, reason: "Missing or Invalid Contact", headers: vec![] });
        };
        let call_id = invite.call_id().unwrap_or_default().to_string();
        let supports_100rel =
            invite.headers.has_option_tag("Supported", "100rel") || invite.headers.has_option_tag("Require", "100rel");
        let requires_100rel = invite.headers.has_option_tag("Require", "100rel");
        let mut call = Self {
            call_id,
            setup,
            transport,
            timers,
            branch: via.branch.clone().unwrap_or_default(),
            sent_by: via.sent_by(),
            invite_cseq,
            response_dest,
            invite_tx: InviteServer::new(transport.is_reliable(), timers),
            supports_100rel,
            requires_100rel,
            remote_tag: invite.tag_of_from().unwrap_or_default().to_string(),
            remote_target,
            route_set: invite.headers.get_all("Record-Route").map(str::to_string).collect(),
            phase: UasPhase::Early,
            final_requested: false,
            bye_pending: false,
            end_cause: None,
            next_rseq: 1,
            unacked: None,
            held: VecDeque::new(),
            answer: None,
            local_sdp: None,
            dialog: None,
            outputs: VecDeque::new(),
            invite,
        };
        let trying = call.response(100, "Trying");
        call.invite_tx.respond(trying, now);
        let header = |name: &str| call.invite.headers.get(name);
        let event = CallEvent::Incoming {
            request_uri: call.invite.uri.clone(),
            from: parse_name_addr(header("From").unwrap_or_default()),
            to: parse_name_addr(header("To").unwrap_or_default()),
            p_asserted_identity: header("P-Asserted-Identity").map(parse_name_addr),
            privacy: header("Privacy").map(str::to_string),
            headers: call.invite.headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            sdp: call.invite.sdp(),
            supports_100rel,
        };
        call.emit(event);
        call.pump(now);
        Ok(call)
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn phase(&self) -> UasPhase {
        self.phase
    }

    /// Done with everything, including absorbing retransmissions.
    pub fn is_finished(&self) -> bool {
        self.phase == UasPhase::Terminated
            && self.invite_tx.is_terminated()
            && self.dialog.as_ref().is_none_or(Dialog::is_settled)
    }

    /// Whether a request with this top Via branch and sent-by is the INVITE
    /// (retransmitted), its CANCEL, or the ACK of its non-2xx response.
    pub fn matches_invite(&self, branch: &str, sent_by: &str) -> bool {
        self.branch == branch && self.sent_by.eq_ignore_ascii_case(sent_by)
    }

    /// The confirmed dialog as a snapshot, once there is one and while it is not ending.
    pub fn dialog_snapshot(&self) -> Option<crate::in_dialog::DialogSnapshot> {
        self.dialog.as_ref().filter(|d| !d.is_ending()).map(Dialog::snapshot)
    }

    /// Whether an in-dialog request with these tags belongs to this call.
    pub fn matches_dialog(&self, local_tag: &str, remote_tag: &str) -> bool {
        local_tag == self.setup.local_tag && remote_tag == self.remote_tag
    }

    pub fn provisional(
        &mut self,
        status: u16,
        sdp: Option<String>,
        reliable: bool,
        now: Instant,
    ) -> Result<(), SipError> {
        if !(101..=199).contains(&status) {
            return Err(SipError::InvalidStatus(status));
        }
        self.check_early("a final response was already sent")?;
        // RFC 3262 s.3: reliability needs the caller's support, and is
        // mandatory when the caller required it.
        let reliable = (reliable && self.supports_100rel) || self.requires_100rel;
        let mut response = self.response(status, reason_phrase(status));
        set_sdp(&mut response, sdp);
        self.send_or_hold(Held::Provisional { response, reliable }, now);
        self.pump(now);
        Ok(())
    }

    pub fn accept(&mut self, sdp: Option<String>, now: Instant) -> Result<(), SipError> {
        self.check_early("a final response was already sent")?;
        self.final_requested = true;
        let mut response = self.response(200, "OK");
        response.headers.push("Supported", "100rel, timer");
        if let Some((interval, we_refresh)) = self.negotiate_session() {
            // In the INVITE's transaction, refresher=uac names the caller.
            let refresher = if we_refresh { "uas" } else { "uac" };
            if self.caller_supports_timers() {
                response.headers.push("Require", "timer");
            }
            response.headers.push("Session-Expires", format!("{interval};refresher={refresher}"));
        }
        if sdp.is_some() {
            self.local_sdp = sdp.clone();
        }
        set_sdp(&mut response, sdp);
        self.send_or_hold(Held::Answer(response), now);
        self.pump(now);
        Ok(())
    }

    pub fn reject(&mut self, status: u16, reason: &str, now: Instant) -> Result<(), SipError> {
        if !(300..=699).contains(&status) {
            return Err(SipError::InvalidStatus(status));
        }
        if reason.chars().any(char::is_control) {
            return Err(SipError::InvalidHeader { name: "reason phrase".into(), reason: "control characters".into() });
        }
        self.check_early("a final response was already sent")?;
        self.send_reject(status, reason, EndCause::Local, now);
        self.pump(now);
        Ok(())
    }

    /// BYE once answered; 480 before.
    /// The Reason header of the BYE that ends this call, if it ends with one of ours.
    pub fn set_bye_reason(&mut self, reason: String) {
        if let Some(dialog) = &mut self.dialog {
            dialog.set_bye_reason(reason);
        }
    }

    pub fn hangup(&mut self, now: Instant) -> Result<HangupKind, HangupError> {
        let kind = match self.phase {
            UasPhase::Terminated => return Err(HangupError::Finished),
            UasPhase::Rejected => HangupKind::Reject,
            UasPhase::Early => {
                self.send_reject(480, "Temporarily Unavailable", EndCause::Local, now);
                HangupKind::Reject
            }
            UasPhase::Answered => {
                // s.15: the BYE waits for the ACK (or for the 2xx to time out).
                self.bye_pending = true;
                HangupKind::Bye
            }
            UasPhase::Confirmed => {
                self.send_bye(now);
                HangupKind::Bye
            }
        };
        self.pump(now);
        Ok(kind)
    }

    pub fn handle_invite_retransmission(&mut self, now: Instant) {
        self.invite_tx.handle_retransmission();
        self.pump(now);
    }

    /// An ACK with this Call-ID: for the non-2xx (same branch, absorbed by the
    /// transaction) or for the 2xx (reported once).
    pub fn handle_ack(&mut self, request: &Request, now: Instant) {
        let via = request.top_via();
        let same_branch =
            via.as_ref().is_some_and(|v| self.matches_invite(v.branch.as_deref().unwrap_or_default(), &v.sent_by()));
        if same_branch && self.invite_tx.handle_ack(now) {
            if self.phase == UasPhase::Rejected {
                self.terminate(EndCause::Local);
            }
        } else if self.phase == UasPhase::Answered
            && request.cseq().is_some_and(|(n, _)| n == self.invite_cseq)
            && request.tag_of_to() == Some(self.setup.local_tag.as_str())
        {
            self.answer = None;
            self.phase = UasPhase::Confirmed;
            self.emit(request_event(request));
            if self.bye_pending {
                self.send_bye(now);
            }
        } else {
            tracing::debug!(call_id = %self.call_id, "ACK absorbed");
        }
        self.pump(now);
    }

    /// A CANCEL for the INVITE, already answered 200 by the endpoint
    /// (s.9.2): the INVITE is ended with 487 if it has no final response yet.
    pub fn handle_cancel(&mut self, request: &Request, now: Instant) {
        if self.phase == UasPhase::Early {
            self.emit(request_event(request));
            self.send_reject(487, "Request Terminated", EndCause::Remote, now);
        }
        self.pump(now);
    }

    /// The answer to a PRACK (RFC 3262 s.3): 200 if it acknowledges the
    /// reliable provisional in flight, 481 otherwise.
    pub fn prack_status(&self, request: &Request) -> u16 {
        let rack = request.headers.get("RAck").and_then(parse_rack);
        match (&self.unacked, rack) {
            (Some(unacked), Some((rseq, cseq, method)))
                if rseq == unacked.rseq && cseq == self.invite_cseq && method.eq_ignore_ascii_case("INVITE") =>
            {
                200
            }
            _ => 481,
        }
    }

    /// A PRACK the endpoint answered 200 ([`Self::prack_status`]).
    pub fn handle_prack(&mut self, request: &Request, now: Instant) {
        if self.prack_status(request) == 200 {
            self.unacked = None;
            self.emit(request_event(request));
            self.release_held(now);
        }
        self.pump(now);
    }

    /// A BYE from the caller, already answered 200 by the endpoint.
    pub fn handle_remote_bye(&mut self, request: &Request, now: Instant) {
        if self.phase != UasPhase::Terminated {
            // s.15.1.2: a BYE ends the pending INVITE with 487.
            if !self.invite_tx.is_final() {
                let response = self.response(487, "Request Terminated");
                self.invite_tx.respond(response, now);
            }
            self.stop_retransmissions();
            self.emit(request_event(request));
            self.terminate(EndCause::Remote);
        }
        self.pump(now);
    }

    /// Sends `sdp` as an offer in the confirmed dialog, in a re-INVITE or an UPDATE; its final
    /// response is reported as [`CallEvent::ReinviteResponse`].
    pub fn offer(&mut self, method: OfferMethod, sdp: String, now: Instant) -> Result<(), SipError> {
        let call_id = self.call_id.clone();
        let dialog = self
            .dialog
            .as_mut()
            .filter(|_| self.phase == UasPhase::Confirmed && !self.bye_pending)
            .ok_or(SipError::WrongState { call_id, reason: "the call is not answered and ACKed, or is ending" })?;
        dialog.offer(method, sdp, now)?;
        self.pump(now);
        Ok(())
    }

    /// Whether a re-INVITE or UPDATE of ours has no final response yet.
    pub fn offer_pending(&self) -> bool {
        self.dialog.as_ref().is_some_and(Dialog::offer_pending)
    }

    /// A re-INVITE or UPDATE from the caller, answered 2xx (with `our_sdp`, an answer or, to an
    /// offerless re-INVITE, an offer): a target and session refresh.
    pub fn handle_peer_refresh(&mut self, request: &Request, our_sdp: Option<&str>, now: Instant) {
        if self.phase != UasPhase::Terminated
            && let Some(dialog) = &mut self.dialog
        {
            dialog.handle_peer_request(request, our_sdp, now);
        }
        self.pump(now);
    }

    /// A response with this call's Call-ID: only requests of the dialog expect one.
    pub fn handle_response(&mut self, response: Response, now: Instant) {
        let status = response.status;
        if !self.dialog.as_mut().is_some_and(|d| d.handle_response(response, now)) {
            tracing::debug!(call_id = %self.call_id, status, "response matches no transaction");
        }
        self.pump(now);
    }

    pub fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        if dest == self.response_dest && !self.invite_tx.is_terminated() {
            self.invite_tx.transport_error();
            self.stop_retransmissions();
            if self.phase != UasPhase::Terminated {
                self.emit(CallEvent::Timeout);
                self.terminate(EndCause::TransportFailed);
            }
        }
        if let Some(dialog) = &mut self.dialog {
            dialog.transport_failed(dest, now);
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.invite_tx.handle_timeout(now);
        if let Some(unacked) = &mut self.unacked {
            match unacked.retransmit.handle_timeout(now) {
                RetransmitAction::Nothing => {}
                RetransmitAction::Retransmit => {
                    let response = unacked.response.clone();
                    self.transmit_response(response);
                }
                RetransmitAction::GiveUp => {
                    // RFC 3262 s.3: no PRACK in 64*T1, the INVITE SHOULD be rejected with a 5xx.
                    tracing::warn!(call_id = %self.call_id, "no PRACK for a reliable provisional; rejecting");
                    self.emit(CallEvent::Timeout);
                    self.send_reject(504, "No PRACK", EndCause::NoPrack, now);
                }
            }
        }
        if let Some((response, retransmit)) = &mut self.answer {
            match retransmit.handle_timeout(now) {
                RetransmitAction::Nothing => {}
                RetransmitAction::Retransmit => {
                    let response = response.clone();
                    self.transmit_response(response);
                }
                RetransmitAction::GiveUp => {
                    // s.13.3.1.4: the dialog is confirmed but the session is ended with BYE.
                    tracing::warn!(call_id = %self.call_id, "no ACK for the 2xx; sending BYE");
                    self.answer = None;
                    self.phase = UasPhase::Confirmed;
                    self.end_cause.get_or_insert(EndCause::NoAck);
                    self.emit(CallEvent::Timeout);
                    self.send_bye(now);
                }
            }
        }
        if let Some(dialog) = &mut self.dialog {
            dialog.handle_timeout(now);
        }
        self.pump(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.invite_tx.poll_timeout(),
            self.unacked.as_ref().map(|u| u.retransmit.poll_timeout()),
            self.answer.as_ref().map(|(_, r)| r.poll_timeout()),
            self.dialog.as_ref().and_then(Dialog::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    fn check_early(&self, reason: &'static str) -> Result<(), SipError> {
        if self.phase == UasPhase::Early && !self.final_requested {
            Ok(())
        } else {
            Err(SipError::WrongState { call_id: self.call_id.clone(), reason })
        }
    }

    fn emit(&mut self, event: CallEvent) {
        self.outputs.push_back(CallOutput::Event(event));
    }

    /// Ends the call; a cause decided earlier here (a refusal, a missing ACK) comes first.
    fn terminate(&mut self, cause: EndCause) {
        if self.phase != UasPhase::Terminated {
            self.phase = UasPhase::Terminated;
            self.stop_retransmissions();
            if let Some(dialog) = &mut self.dialog {
                dialog.close();
            }
            let cause = self.end_cause.unwrap_or(cause);
            self.emit(CallEvent::Terminated { cause });
        }
    }

    fn stop_retransmissions(&mut self) {
        self.unacked = None;
        self.held.clear();
        self.answer = None;
    }

    fn transmit_response(&mut self, response: Response) {
        self.outputs.push_back(CallOutput::Transmit(Transmit {
            transport: self.transport,
            dest: self.response_dest,
            message: Message::Response(response),
        }));
    }

    /// Moves transaction outputs into call outputs.
    fn pump(&mut self, _now: Instant) {
        while let Some(out) = self.invite_tx.poll_output() {
            match out {
                ServerOutput::Transmit(response) => self.transmit_response(response),
                ServerOutput::Timeout => {
                    // Timer H: the non-2xx was never ACKed; nothing more to wait for.
                    tracing::debug!(call_id = %self.call_id, "no ACK for the final response");
                    self.terminate(EndCause::Local);
                }
            }
        }
        if let Some(dialog) = &mut self.dialog {
            while let Some(out) = dialog.poll_output() {
                self.outputs.push_back(out);
            }
            if dialog.is_over() {
                let cause = dialog.end_cause().unwrap_or(EndCause::Local);
                self.terminate(cause);
            }
        }
    }

    /// A response to the INVITE with our To tag, plus the headers every
    /// dialog-creating response carries (s.12.1.1).
    fn response(&self, status: u16, reason: &str) -> Response {
        let mut response = response_to(&self.invite, status, reason, Some(&self.setup.local_tag));
        if (101..300).contains(&status) {
            for rr in self.invite.headers.get_all("Record-Route") {
                response.headers.push("Record-Route", rr);
            }
            response.headers.push("Contact", self.contact());
        }
        if status >= 200 {
            response.headers.push("Allow", ALLOW);
        }
        if !self.setup.user_agent.is_empty() {
            response.headers.push("Server", self.setup.user_agent.as_str());
        }
        response
    }

    /// RFC 3262 s.3: nothing reliable, and no 2xx, goes out while a reliable
    /// provisional awaits its PRACK; order is kept behind it.
    fn send_or_hold(&mut self, item: Held, now: Instant) {
        if self.unacked.is_some() || !self.held.is_empty() {
            self.held.push_back(item);
        } else {
            self.send_now(item, now);
        }
    }

    fn release_held(&mut self, now: Instant) {
        while self.unacked.is_none() {
            let Some(item) = self.held.pop_front() else {
                break;
            };
            self.send_now(item, now);
        }
    }

    fn send_now(&mut self, item: Held, now: Instant) {
        match item {
            Held::Provisional { mut response, reliable } => {
                if reliable {
                    let rseq = self.next_rseq;
                    self.next_rseq = self.next_rseq.wrapping_add(1);
                    insert_before_body_headers(&mut response.headers, "Require", "100rel");
                    insert_before_body_headers(&mut response.headers, "RSeq", &rseq.to_string());
                    self.unacked = Some(Unacked {
                        response: response.clone(),
                        rseq,
                        retransmit: Retransmitter::for_reliable_provisional(self.timers, now),
                    });
                }
                self.invite_tx.respond(response, now);
            }
            Held::Answer(response) => {
                let session = session_expires(&response.headers)
                    .map(|(interval, refresher)| SessionTimer::new(interval, refresher.as_deref() == Some("uas"), now));
                self.invite_tx.respond(response.clone(), now);
                self.answer = Some((response, Retransmitter::for_2xx(self.timers, now)));
                self.phase = UasPhase::Answered;
                let allows_update = self.invite.headers.has_option_tag("Allow", "UPDATE");
                let parts = self.dialog_parts();
                let local_sdp = self.local_sdp.clone();
                self.dialog = Some(Dialog::new(parts, self.timers, 0, allows_update, local_sdp, session));
            }
        }
    }

    fn send_reject(&mut self, status: u16, reason: &str, cause: EndCause, now: Instant) {
        self.end_cause.get_or_insert(cause);
        // A final non-2xx may overtake unacknowledged provisionals (RFC 3262 s.3).
        self.stop_retransmissions();
        self.final_requested = true;
        let response = self.response(status, reason);
        self.invite_tx.respond(response, now);
        self.phase = UasPhase::Rejected;
    }

    /// BYE now (answered and ACKed), or once the ACK arrives (s.15).
    fn send_bye(&mut self, now: Instant) {
        self.bye_pending = false;
        if let Some(dialog) = &mut self.dialog {
            dialog.bye(now);
        }
    }

    /// RFC 4028 s.9: the session interval of the 2xx and whether we refresh, if any. The
    /// caller's Session-Expires is honoured, shortened to ours when that is smaller (never below
    /// Min-SE); with none, ours is added when configured. The caller refreshes when it asked to,
    /// or when it asked for a timer, supports them and left the choice to us; otherwise we do.
    fn negotiate_session(&self) -> Option<(u32, bool)> {
        let ours = (self.timers.session_expires > 0).then(|| self.timers.session_expires.max(self.timers.min_se));
        let requested = session_expires(&self.invite.headers);
        let interval = match (requested.as_ref().map(|(n, _)| *n), ours) {
            (Some(theirs), Some(ours)) => theirs.min(ours),
            (Some(theirs), None) => theirs,
            (None, ours) => ours?,
        };
        let caller_supports = self.caller_supports_timers();
        let we_refresh = match requested {
            Some((_, Some(refresher))) => refresher == "uas",
            Some((_, None)) => !caller_supports,
            // The timer is ours: so is the refreshing.
            None => true,
        };
        Some((interval, we_refresh))
    }

    fn caller_supports_timers(&self) -> bool {
        self.invite.headers.has_option_tag("Supported", "timer")
            || self.invite.headers.has_option_tag("Require", "timer")
    }

    /// RFC 3261 s.12.1.1 from the callee's side: From is our To, To the caller's From, the
    /// remote target the caller's Contact, the route set the Record-Route in order.
    fn dialog_parts(&self) -> DialogParts {
        let to = self.invite.headers.get("To").unwrap_or_default();
        let local = if header_param(to, "tag").is_some() {
            to.to_string()
        } else {
            format!("{to};tag={}", self.setup.local_tag)
        };
        DialogParts {
            call_id: self.call_id.clone(),
            transport: self.transport,
            local_host: self.setup.local_host.clone(),
            local_port: self.setup.local_port,
            user_agent: self.setup.user_agent.clone(),
            local,
            remote: self.invite.headers.get("From").unwrap_or_default().to_string(),
            contact: self.contact(),
            remote_target: self.remote_target.clone(),
            route_set: self.route_set.clone(),
            fallback_dest: self.response_dest,
        }
    }

    fn contact(&self) -> String {
        format!("<sip:{}:{};transport={}>", self.setup.local_host, self.setup.local_port, self.transport.uri_param())
    }
}

/// Require/RSeq go before Allow/Server so the provisional reads like the call-flow example.
fn insert_before_body_headers(headers: &mut Headers, name: &str, value: &str) {
    let mut entries: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let at = entries
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case("Allow") || n.eq_ignore_ascii_case("Server"))
        .unwrap_or(entries.len());
    entries.insert(at, (name.to_string(), value.to_string()));
    let mut rebuilt = Headers::default();
    for (n, v) in entries {
        rebuilt.push(n, v);
    }
    *headers = rebuilt;
}

fn set_sdp(response: &mut Response, sdp: Option<String>) {
    if let Some(sdp) = sdp {
        response.headers.push("Content-Type", "application/sdp");
        response.body = sdp.into_bytes();
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        _ => "Progress",
    }
}

/// `RAck: 1 1 INVITE` -> (RSeq, CSeq number, method).
fn parse_rack(value: &str) -> Option<(u32, u32, &str)> {
    let mut parts = value.split_whitespace();
    let rseq = parts.next()?.parse().ok()?;
    let cseq = parts.next()?.parse().ok()?;
    let method = parts.next()?;
    Some((rseq, cseq, method))
}

fn request_event(request: &Request) -> CallEvent {
    CallEvent::Request {
        method: request.method.to_string(),
        reason: request.headers.get("Reason").map(str::to_string),
        sdp: request.sdp(),
        headers: request.headers.to_vec(),
    }
}
