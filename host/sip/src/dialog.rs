//! The UAC side of one outgoing call, as a sans-IO state machine.
//!
//! A [`UacCall`] owns the INVITE client transaction and the client transactions of the early
//! dialogs (PRACK, CANCEL, the BYE of an unwanted fork). It turns responses into [`CallEvent`]s
//! and produces the requests RFC 3261 and RFC 3262 require, addressed to the right hop. Once a
//! 2xx confirms the dialog, the requests sent inside it (re-INVITE, UPDATE, BYE) and the session
//! timer are the [`Dialog`]'s.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::digest::{Challenge, DigestInput, authorization};
use crate::in_dialog::{Dialog, DialogParts, OfferMethod, SessionTimer, contact_target, min_se, session_expires};
use crate::message::{Headers, Message, Method, Request, Response, SipHeaders, Transmit, new_branch, random_token};
use crate::transaction::{ClientOutput, InviteClient, NonInviteClient, TimerConfig};
use crate::{CallEvent, Credentials, EndCause, HangupKind, NameAddr, OutgoingInvite, SipError, Transport};

pub use crate::in_dialog::ALLOW;

/// Identifiers and local addressing chosen by the endpoint for a new call.
#[derive(Debug, Clone)]
pub struct CallSetup {
    pub call_id: String,
    pub local_tag: String,
    pub branch: String,
    /// Host written in Via and Contact.
    pub local_host: String,
    /// Port of the listener of the call's transport.
    pub local_port: u16,
    pub user_agent: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// INVITE sent, nothing heard.
    Calling,
    /// At least one provisional response received.
    Proceeding,
    /// A 2xx was received and ACKed.
    Confirmed,
    /// `CallEvent::Terminated` was emitted; the call may linger to absorb
    /// retransmissions.
    Terminated,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HangupError {
    #[error("the call is already over")]
    Finished,
}

/// The remote side of a (possibly early) dialog, learnt from a response.
#[derive(Debug, Clone)]
struct Peer {
    remote_tag: String,
    remote_target: String,
    route_set: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Prack,
    Cancel,
    /// BYE for a 2xx that lost the race against the first one (s.13.2.2.4).
    StrayBye,
}

#[derive(Debug)]
struct ClientTx {
    purpose: Purpose,
    method: Method,
    branch: String,
    dest: SocketAddr,
    tx: NonInviteClient,
}

/// An INVITE transaction replaced by a retry (after a 422 or a digest challenge), kept to
/// absorb retransmissions of its final response.
#[derive(Debug)]
struct RetiredInvite {
    cseq: u32,
    branch: String,
    tx: InviteClient,
}

/// An `Authorization` (or, from a proxy, `Proxy-Authorization`) value for one realm.
#[derive(Debug, Clone)]
struct AuthAnswer {
    proxy: bool,
    realm: String,
    value: String,
}

/// A new challenge for a realm already answered means the credentials were refused, unless it
/// says the nonce was stale; this bounds the stale case too.
const MAX_INVITE_CHALLENGES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutput {
    Transmit(Transmit),
    Event(CallEvent),
}

#[derive(Debug)]
pub struct UacCall {
    setup: CallSetup,
    transport: Transport,
    next_hop: SocketAddr,
    timers: TimerConfig,
    invite_cseq: u32,
    /// Last CSeq number used outside the confirmed dialog (INVITE retries, PRACK, CANCEL).
    last_cseq: u32,
    invite_tx: InviteClient,
    retired_invites: Vec<RetiredInvite>,
    phase: CallPhase,
    hangup: Option<HangupKind>,
    cancel_sent: bool,
    /// RFC 3261 s.9.1: give up on a CANCELled INVITE after 64*T1 without a final response.
    cancel_deadline: Option<Instant>,
    /// Last RSeq per early dialog (RFC 3262 s.4).
    rseqs: HashMap<String, u32>,
    /// Unreliable provisionals already reported: (status, To tag, body).
    seen_provisionals: HashSet<(u16, Option<String>, Vec<u8>)>,
    early_tags: HashSet<String>,
    /// The To tag of the winning 2xx.
    confirmed_tag: Option<String>,
    /// The ACK for the winning 2xx, re-sent on each 2xx retransmission.
    ack: Option<(Request, SocketAddr)>,
    client_txs: Vec<ClientTx>,
    /// The confirmed dialog, from the winning 2xx on.
    dialog: Option<Dialog>,
    /// The offer of the INVITE.
    offer: Option<String>,
    /// Session interval asked for (raised by a 422); 0: no session timer.
    session_interval: u32,
    /// The INVITE was already retried after a 422 (RFC 4028 s.7.2).
    retried_422: bool,
    credentials: Option<Credentials>,
    /// The answer to each challenge, sent again with every retry of the INVITE.
    auth_answers: Vec<AuthAnswer>,
    outputs: VecDeque<CallOutput>,
}

impl UacCall {
    /// Validates the caller's input and starts the INVITE transaction.
    pub fn new(invite: &OutgoingInvite, setup: CallSetup, timers: TimerConfig, now: Instant) -> Result<Self, SipError> {
        let request = build_invite(invite, &setup, &timers)?;
        let invite_tx = InviteClient::new(request, invite.transport.is_reliable(), timers, now);
        let mut call = Self {
            setup,
            transport: invite.transport,
            next_hop: invite.next_hop,
            timers,
            invite_cseq: 1,
            last_cseq: 1,
            invite_tx,
            retired_invites: Vec::new(),
            phase: CallPhase::Calling,
            hangup: None,
            cancel_sent: false,
            cancel_deadline: None,
            rseqs: HashMap::new(),
            seen_provisionals: HashSet::new(),
            early_tags: HashSet::new(),
            confirmed_tag: None,
            ack: None,
            client_txs: Vec::new(),
            dialog: None,
            offer: invite.sdp.clone(),
            session_interval: timers.session_expires,
            retried_422: false,
            credentials: invite.credentials.clone(),
            auth_answers: Vec::new(),
            outputs: VecDeque::new(),
        };
        call.pump(now);
        Ok(call)
    }

    pub fn call_id(&self) -> &str {
        &self.setup.call_id
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn phase(&self) -> CallPhase {
        self.phase
    }

    /// Done with everything, including absorbing retransmissions.
    pub fn is_finished(&self) -> bool {
        use crate::transaction::InviteClientState::*;
        // An INVITE transaction still in Proceeding after the call ended
        // (remote BYE, CANCEL given up) would otherwise wait forever.
        self.phase == CallPhase::Terminated
            && matches!(self.invite_tx.state(), Terminated | Proceeding)
            && self.client_txs.is_empty()
            && self.retired_invites.iter().all(|r| matches!(r.tx.state(), Terminated | Proceeding))
            && self.dialog.as_ref().is_none_or(Dialog::is_settled)
    }

    /// The confirmed dialog as a snapshot, once there is one and while it is not ending.
    pub fn dialog_snapshot(&self) -> Option<crate::in_dialog::DialogSnapshot> {
        self.dialog.as_ref().filter(|d| !d.is_ending()).map(Dialog::snapshot)
    }

    /// Whether an in-dialog request with these tags belongs to this call.
    pub fn matches_dialog(&self, local_tag: &str, remote_tag: &str) -> bool {
        local_tag == self.setup.local_tag
            && (self.confirmed_tag.as_deref() == Some(remote_tag) || self.early_tags.contains(remote_tag))
    }

    /// The Reason header of the BYE that ends this call, if it ends with one of ours.
    pub fn set_bye_reason(&mut self, reason: String) {
        if let Some(dialog) = &mut self.dialog {
            dialog.set_bye_reason(reason);
        }
    }

    pub fn hangup(&mut self, now: Instant) -> Result<HangupKind, HangupError> {
        let kind = match self.phase {
            CallPhase::Terminated => return Err(HangupError::Finished),
            CallPhase::Confirmed => {
                if self.hangup != Some(HangupKind::Bye) {
                    self.hangup = Some(HangupKind::Bye);
                    if let Some(dialog) = &mut self.dialog {
                        dialog.bye(now);
                    }
                }
                HangupKind::Bye
            }
            CallPhase::Calling | CallPhase::Proceeding => {
                if self.hangup.is_none() {
                    self.hangup = Some(HangupKind::Cancel);
                    // RFC 3261 s.9.1: no CANCEL before a provisional response;
                    // `on_provisional` sends it once one arrives.
                    if self.phase == CallPhase::Proceeding {
                        self.send_cancel(now);
                    }
                }
                HangupKind::Cancel
            }
        };
        self.pump(now);
        Ok(kind)
    }

    /// Whether a re-INVITE or UPDATE of ours has no final response yet.
    pub fn reinvite_pending(&self) -> bool {
        self.dialog.as_ref().is_some_and(Dialog::offer_pending)
    }

    /// Sends `sdp` as an offer in the confirmed dialog, in a re-INVITE (RFC 3261 s.14.1) or an
    /// UPDATE (RFC 3311). Its final response is reported as [`CallEvent::ReinviteResponse`].
    pub fn offer(&mut self, method: OfferMethod, sdp: String, now: Instant) -> Result<(), SipError> {
        let call_id = self.setup.call_id.clone();
        let dialog = self
            .dialog
            .as_mut()
            .filter(|_| self.phase == CallPhase::Confirmed && self.hangup.is_none())
            .ok_or(SipError::WrongState { call_id, reason: "the call is not answered, or is ending" })?;
        dialog.offer(method, sdp, now)?;
        self.pump(now);
        Ok(())
    }

    /// A re-INVITE or UPDATE from the peer, answered 2xx (with `our_sdp`, an answer or, to an
    /// offerless re-INVITE, an offer): a target and session refresh.
    pub fn handle_peer_refresh(&mut self, request: &Request, our_sdp: Option<&str>, now: Instant) {
        if self.phase == CallPhase::Confirmed
            && self.hangup.is_none()
            && let Some(dialog) = &mut self.dialog
        {
            dialog.handle_peer_request(request, our_sdp, now);
        }
        self.pump(now);
    }

    /// A response whose Call-ID is this call's.
    pub fn handle_response(&mut self, response: Response, now: Instant) {
        let Some((cseq, method)) = response.cseq() else {
            tracing::debug!(call_id = %self.setup.call_id, "response without a usable CSeq dropped");
            return;
        };
        let branch = response.top_via().and_then(|v| v.branch);
        let branch = branch.as_deref();
        if method == Method::Invite && cseq == self.invite_cseq {
            if branch == Some(self.setup.branch.as_str()) && !self.invite_tx.is_terminated() {
                self.invite_tx.handle_response(response, now);
            } else if (200..300).contains(&response.status) {
                // A 2xx retransmission after the transaction ended still needs its ACK.
                self.on_invite_2xx(response, now);
            }
        } else if let Some(retired) = self
            .retired_invites
            .iter_mut()
            .find(|r| method == Method::Invite && r.cseq == cseq && Some(r.branch.as_str()) == branch)
        {
            retired.tx.handle_response(response, now);
        } else if let Some(ctx) =
            self.client_txs.iter_mut().find(|c| c.method == method && Some(c.branch.as_str()) == branch)
        {
            ctx.tx.handle_response(response, now);
        } else if !self.dialog.as_mut().is_some_and(|d| d.handle_response(response, now)) {
            tracing::debug!(call_id = %self.setup.call_id, %method, cseq, "response matches no transaction");
        }
        self.pump(now);
    }

    /// A BYE from the remote party, already answered by the endpoint.
    pub fn handle_remote_bye(&mut self, request: &Request, now: Instant) {
        if self.phase != CallPhase::Terminated {
            self.emit(CallEvent::Request {
                method: request.method.to_string(),
                reason: request.headers.get("Reason").map(str::to_string),
                sdp: request.sdp(),
                headers: request.headers.to_vec(),
            });
            self.terminate(EndCause::Remote);
        }
        self.pump(now);
    }

    /// The transport could not reach `dest`.
    pub fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        if dest == self.next_hop && !self.invite_tx.is_terminated() {
            self.invite_tx.transport_error();
            if matches!(self.phase, CallPhase::Calling | CallPhase::Proceeding) {
                self.emit(CallEvent::Timeout);
                self.terminate(EndCause::TransportFailed);
            }
        }
        if dest == self.next_hop {
            for retired in &mut self.retired_invites {
                retired.tx.transport_error();
            }
        }
        for ctx in self.client_txs.iter_mut().filter(|c| c.dest == dest) {
            ctx.tx.transport_error();
        }
        if let Some(dialog) = &mut self.dialog {
            dialog.transport_failed(dest, now);
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.invite_tx.handle_timeout(now);
        for retired in &mut self.retired_invites {
            retired.tx.handle_timeout(now);
        }
        for ctx in &mut self.client_txs {
            ctx.tx.handle_timeout(now);
        }
        if self.cancel_deadline.is_some_and(|t| t <= now) {
            self.cancel_deadline = None;
            if self.phase != CallPhase::Terminated {
                tracing::warn!(call_id = %self.setup.call_id, "no final response after CANCEL; giving up");
                self.invite_tx.transport_error();
                self.emit(CallEvent::Timeout);
                self.terminate(EndCause::NoResponse);
            }
        }
        if let Some(dialog) = &mut self.dialog {
            dialog.handle_timeout(now);
        }
        self.pump(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client_txs
            .iter()
            .filter_map(|c| c.tx.poll_timeout())
            .chain(self.invite_tx.poll_timeout())
            .chain(self.retired_invites.iter().filter_map(|r| r.tx.poll_timeout()))
            .chain(self.cancel_deadline)
            .chain(self.dialog.as_ref().and_then(Dialog::poll_timeout))
            .min()
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    fn emit(&mut self, event: CallEvent) {
        self.outputs.push_back(CallOutput::Event(event));
    }

    /// Ends the call for `cause`, or as asked when a hangup was asked for and the call ends
    /// without a word from the peer's side (a final response, a timeout).
    fn terminate(&mut self, cause: EndCause) {
        if self.phase != CallPhase::Terminated {
            self.phase = CallPhase::Terminated;
            self.cancel_deadline = None;
            if let Some(dialog) = &mut self.dialog {
                dialog.close();
            }
            let cause = match cause {
                EndCause::Rejected { .. } | EndCause::NoResponse if self.hangup.is_some() => EndCause::Local,
                cause => cause,
            };
            self.emit(CallEvent::Terminated { cause });
        }
    }

    fn transmit(&mut self, dest: SocketAddr, request: Request) {
        self.outputs.push_back(CallOutput::Transmit(Transmit {
            transport: self.transport,
            dest,
            message: Message::Request(request),
        }));
    }

    /// Moves transaction outputs into call outputs until nothing is left.
    fn pump(&mut self, now: Instant) {
        while let Some(out) = self.invite_tx.poll_output() {
            match out {
                ClientOutput::Transmit(request) => self.transmit(self.next_hop, request),
                ClientOutput::Response(response) => self.on_invite_response(response, now),
                ClientOutput::Timeout => {
                    if self.phase != CallPhase::Terminated {
                        self.emit(CallEvent::Timeout);
                        self.terminate(EndCause::NoResponse);
                    }
                }
            }
        }
        let mut absorbed = Vec::new();
        for retired in &mut self.retired_invites {
            while let Some(out) = retired.tx.poll_output() {
                // Only the ACKs of a re-sent final response; it was handled the first time.
                if let ClientOutput::Transmit(request) = out {
                    absorbed.push(request);
                }
            }
        }
        for request in absorbed {
            self.transmit(self.next_hop, request);
        }
        self.retired_invites.retain(|r| !r.tx.is_terminated());
        let mut i = 0;
        while i < self.client_txs.len() {
            while let Some(out) = self.client_txs[i].tx.poll_output() {
                let (purpose, dest) = (self.client_txs[i].purpose, self.client_txs[i].dest);
                match out {
                    ClientOutput::Transmit(request) => self.transmit(dest, request),
                    ClientOutput::Response(response) if response.status >= 300 => tracing::info!(
                        call_id = %self.setup.call_id,
                        ?purpose,
                        status = response.status,
                        "request rejected"
                    ),
                    ClientOutput::Response(_) => {}
                    ClientOutput::Timeout => {
                        tracing::warn!(call_id = %self.setup.call_id, ?purpose, "request timed out");
                    }
                }
            }
            i += 1;
        }
        self.client_txs.retain(|c| !c.tx.is_terminated());
        if let Some(dialog) = &mut self.dialog {
            while let Some(out) = dialog.poll_output() {
                self.outputs.push_back(out);
            }
            if dialog.is_over() {
                if self.hangup != Some(HangupKind::Bye) && dialog.is_ending() {
                    self.hangup = Some(HangupKind::Bye);
                }
                let cause = dialog.end_cause().unwrap_or(EndCause::Local);
                self.terminate(cause);
            }
        }
    }

    /// RFC 4028 s.7.2: a 422 to the INVITE is retried once with the peer's Min-SE.
    fn retry_after_422(&mut self, response: &Response, now: Instant) -> bool {
        if self.retried_422
            || self.session_interval == 0
            || self.hangup.is_some()
            || self.phase == CallPhase::Terminated
        {
            return false;
        }
        let Some(min) = min_se(&response.headers) else {
            return false;
        };
        self.retried_422 = true;
        self.session_interval = self.session_interval.max(min);
        let interval = self.session_interval;
        tracing::info!(call_id = %self.setup.call_id, interval, "422: retrying the INVITE");
        self.retry_invite(now, |headers| {
            headers.set_first("Session-Expires", interval.to_string());
            headers.set_first("Min-SE", min.to_string());
        });
        true
    }

    /// RFC 3261 s.22.2: a 401/407 to the INVITE is answered with the call's credentials, once
    /// per realm (again only when the server says the nonce was stale).
    fn retry_with_credentials(&mut self, response: &Response, now: Instant) -> bool {
        if self.hangup.is_some() || self.phase == CallPhase::Terminated {
            return false;
        }
        let Some(credentials) = self.credentials.clone() else {
            return false;
        };
        let proxy = response.status == 407;
        let challenge_header = if proxy { "Proxy-Authenticate" } else { "WWW-Authenticate" };
        let challenge = match Challenge::best(response.headers.get_all(challenge_header)) {
            Ok(challenge) => challenge,
            Err(error) => {
                tracing::warn!(call_id = %self.setup.call_id, status = response.status, "cannot answer the challenge: {error}");
                return false;
            }
        };
        let seen = self.auth_answers.iter().any(|a| a.proxy == proxy && a.realm == challenge.realm);
        if (seen && !challenge.stale) || self.auth_answers.len() >= MAX_INVITE_CHALLENGES {
            tracing::info!(call_id = %self.setup.call_id, realm = %challenge.realm, "INVITE credentials refused");
            return false;
        }
        let uri = self.invite_tx.request().uri.clone();
        let cnonce = random_token();
        let value = authorization(
            &challenge,
            &DigestInput {
                username: &credentials.username,
                password: &credentials.password,
                method: "INVITE",
                uri: &uri,
                nc: 1,
                cnonce: &cnonce,
            },
        );
        tracing::debug!(call_id = %self.setup.call_id, realm = %challenge.realm, "answering a digest challenge");
        // A proxy and the far end may both ask: the answers to other realms stay.
        self.auth_answers.retain(|a| !(a.proxy == proxy && a.realm == challenge.realm));
        self.auth_answers.push(AuthAnswer { proxy, realm: challenge.realm, value });
        let answers = self.auth_answers.clone();
        self.retry_invite(now, |headers| {
            headers.remove("Authorization");
            headers.remove("Proxy-Authorization");
            for answer in answers {
                let name = if answer.proxy { "Proxy-Authorization" } else { "Authorization" };
                headers.push(name, answer.value);
            }
        });
        true
    }

    /// Sends the INVITE again as a new transaction (CSeq + 1, new branch, same Call-ID and tags),
    /// edited by `edit`, after a failure response the call can recover from.
    fn retry_invite(&mut self, now: Instant, edit: impl FnOnce(&mut Headers)) {
        let mut request = self.invite_tx.request().clone();
        self.last_cseq += 1;
        let old_cseq = std::mem::replace(&mut self.invite_cseq, self.last_cseq);
        let branch = new_branch();
        request.headers.set_first("Via", self.transport.via(&self.setup.local_host, self.setup.local_port, &branch));
        request.headers.set_first("CSeq", format!("{} INVITE", self.invite_cseq));
        edit(&mut request.headers);
        let old_branch = std::mem::replace(&mut self.setup.branch, branch);
        let tx = InviteClient::new(request, self.transport.is_reliable(), self.timers, now);
        let old = std::mem::replace(&mut self.invite_tx, tx);
        self.retired_invites.push(RetiredInvite { cseq: old_cseq, branch: old_branch, tx: old });
        self.phase = CallPhase::Calling;
        // Early dialogs of the refused INVITE are gone with it.
        self.early_tags.clear();
        self.rseqs.clear();
    }

    fn on_invite_response(&mut self, response: Response, now: Instant) {
        match response.status {
            100..=199 if self.phase != CallPhase::Terminated => self.on_provisional(response, now),
            200..=299 => self.on_invite_2xx(response, now),
            422 if self.retry_after_422(&response, now) => {}
            401 | 407 if self.retry_with_credentials(&response, now) => {}
            300..=699 if self.phase != CallPhase::Terminated => {
                self.emit(response_event(&response, false));
                self.terminate(EndCause::Rejected { status: response.status });
            }
            _ => {
                tracing::debug!(call_id = %self.setup.call_id, status = response.status, "late INVITE response ignored")
            }
        }
    }

    fn on_provisional(&mut self, response: Response, now: Instant) {
        if self.phase == CallPhase::Calling {
            self.phase = CallPhase::Proceeding;
        }
        let tag = response.tag_of_to().map(str::to_string);
        if let Some(tag) = &tag {
            self.early_tags.insert(tag.clone());
        }
        let rseq = response.headers.get("RSeq").and_then(|v| v.trim().parse::<u32>().ok());
        let reliable = response.headers.has_option_tag("Require", "100rel");
        match (reliable, rseq, &tag) {
            (true, Some(rseq), Some(tag)) => {
                // RFC 3262 s.4: only the next RSeq in sequence is new;
                // anything else is a retransmission or out of order.
                if let Some(last) = self.rseqs.get(tag)
                    && rseq != last.wrapping_add(1)
                {
                    tracing::debug!(call_id = %self.setup.call_id, rseq, last, "reliable provisional discarded");
                    return;
                }
                self.rseqs.insert(tag.clone(), rseq);
                self.emit(response_event(&response, true));
                let peer = Peer::from_response(&response, tag, &self.setup_request_uri());
                self.send_prack(&peer, rseq, now);
            }
            (true, _, _) => {
                tracing::warn!(call_id = %self.setup.call_id, "Require: 100rel without RSeq or To tag; treated as unreliable");
                self.report_unreliable(&response, tag);
            }
            _ => self.report_unreliable(&response, tag),
        }
        if self.hangup == Some(HangupKind::Cancel) && !self.cancel_sent {
            self.send_cancel(now);
        }
    }

    fn report_unreliable(&mut self, response: &Response, tag: Option<String>) {
        if self.seen_provisionals.insert((response.status, tag, response.body.clone())) {
            self.emit(response_event(response, false));
        }
    }

    fn on_invite_2xx(&mut self, response: Response, now: Instant) {
        let Some(tag) = response.tag_of_to().map(str::to_string) else {
            tracing::warn!(call_id = %self.setup.call_id, "2xx without To tag dropped");
            return;
        };
        if let Some(confirmed_tag) = &self.confirmed_tag {
            if *confirmed_tag == tag {
                if let Some((ack, dest)) = self.ack.clone() {
                    self.transmit(dest, ack);
                }
            } else {
                self.reject_stray_2xx(&response, &tag, now);
            }
            return;
        }
        if self.phase == CallPhase::Terminated {
            self.reject_stray_2xx(&response, &tag, now);
            return;
        }
        let peer = Peer::from_response(&response, &tag, &self.setup_request_uri());
        let parts = self.parts_for(&peer);
        let dest = parts.destination();
        let ack = parts.request(Method::Ack, self.invite_cseq, &new_branch());
        self.transmit(dest, ack.clone());
        self.ack = Some((ack, dest));
        self.confirmed_tag = Some(tag);
        self.phase = CallPhase::Confirmed;
        self.cancel_deadline = None;
        // RFC 4028 s.7.2: the 2xx's Session-Expires (none: no session timer); a missing
        // refresher is ours to choose (s.7.4): we refresh.
        let session = session_expires(&response.headers)
            .filter(|_| self.session_interval > 0)
            .map(|(interval, refresher)| SessionTimer::new(interval, refresher.as_deref() != Some("uas"), now));
        let timers = TimerConfig { session_expires: self.session_interval, ..self.timers };
        let allows_update = response.headers.has_option_tag("Allow", "UPDATE");
        self.dialog = Some(Dialog::new(parts, timers, self.last_cseq, allows_update, self.offer.clone(), session));
        self.emit(response_event(&response, false));
        // The answer crossed our CANCEL: the call must still be torn down.
        if self.hangup == Some(HangupKind::Cancel) {
            self.hangup = Some(HangupKind::Bye);
            if let Some(dialog) = &mut self.dialog {
                dialog.bye(now);
            }
        }
    }

    /// RFC 3261 s.13.2.2.4: every 2xx must be ACKed; one we do not want is then ended with BYE.
    fn reject_stray_2xx(&mut self, response: &Response, tag: &str, now: Instant) {
        tracing::info!(call_id = %self.setup.call_id, tag, "ACK and BYE for an unwanted 2xx");
        let peer = Peer::from_response(response, tag, &self.setup_request_uri());
        let parts = self.parts_for(&peer);
        let ack = parts.request(Method::Ack, self.invite_cseq, &new_branch());
        self.transmit(parts.destination(), ack);
        self.start_client_tx(Purpose::StrayBye, Method::Bye, &peer, now);
    }

    fn send_prack(&mut self, peer: &Peer, rseq: u32, now: Instant) {
        self.start_client_tx_with(Purpose::Prack, Method::PRack, peer, now, |headers, invite_cseq| {
            headers.push("RAck", format!("{rseq} {invite_cseq} INVITE"));
        });
    }

    /// CANCEL mirrors the INVITE (s.9.1): same Via branch, Request-URI,
    /// From, To, Call-ID and CSeq number.
    fn send_cancel(&mut self, now: Instant) {
        self.cancel_sent = true;
        let invite = self.invite_tx.request();
        let mut headers = Headers::default();
        if let Some(via) = invite.headers.get("Via") {
            headers.push("Via", via);
        }
        headers.push("Max-Forwards", "70");
        for route in invite.headers.get_all("Route") {
            headers.push("Route", route);
        }
        for name in ["From", "To", "Call-ID"] {
            if let Some(value) = invite.headers.get(name) {
                headers.push(name, value);
            }
        }
        headers.push("CSeq", format!("{} CANCEL", self.invite_cseq));
        let cancel = Request { method: Method::Cancel, uri: invite.uri.clone(), headers, body: Vec::new() };
        let tx = NonInviteClient::new(cancel, self.transport.is_reliable(), self.timers, now);
        self.client_txs.push(ClientTx {
            purpose: Purpose::Cancel,
            method: Method::Cancel,
            branch: self.setup.branch.clone(),
            dest: self.next_hop,
            tx,
        });
        self.cancel_deadline = Some(now + self.timers.transaction_timeout());
    }

    fn start_client_tx(&mut self, purpose: Purpose, method: Method, peer: &Peer, now: Instant) {
        self.start_client_tx_with(purpose, method, peer, now, |_, _| {});
    }

    fn start_client_tx_with(
        &mut self,
        purpose: Purpose,
        method: Method,
        peer: &Peer,
        now: Instant,
        extra: impl FnOnce(&mut Headers, u32),
    ) {
        self.last_cseq += 1;
        let branch = new_branch();
        let parts = self.parts_for(peer);
        let mut request = parts.request(method, self.last_cseq, &branch);
        extra(&mut request.headers, self.invite_cseq);
        let dest = parts.destination();
        let tx = NonInviteClient::new(request, self.transport.is_reliable(), self.timers, now);
        self.client_txs.push(ClientTx { purpose, method, branch, dest, tx });
    }

    fn setup_request_uri(&self) -> String {
        self.invite_tx.request().uri.clone()
    }

    /// How requests reach `peer`'s (early or confirmed) dialog (RFC 3261 s.12.2.1.1).
    fn parts_for(&self, peer: &Peer) -> DialogParts {
        let invite = self.invite_tx.request();
        let to = invite.headers.get("To").unwrap_or_default();
        DialogParts {
            call_id: self.setup.call_id.clone(),
            transport: self.transport,
            local_host: self.setup.local_host.clone(),
            local_port: self.setup.local_port,
            user_agent: self.setup.user_agent.clone(),
            local: invite.headers.get("From").unwrap_or_default().to_string(),
            remote: format!("{to};tag={}", peer.remote_tag),
            contact: invite.headers.get("Contact").unwrap_or_default().to_string(),
            remote_target: peer.remote_target.clone(),
            route_set: peer.route_set.clone(),
            fallback_dest: self.next_hop,
        }
    }
}

impl Peer {
    /// RFC 3261 s.12.1.2: route set is the Record-Route reversed; the remote
    /// target is the Contact (the request-URI if the UAS sent none).
    fn from_response(response: &Response, tag: &str, fallback_target: &str) -> Peer {
        let mut route_set: Vec<String> = response.headers.get_all("Record-Route").map(str::to_string).collect();
        route_set.reverse();
        let remote_target = contact_target(&response.headers).unwrap_or(fallback_target).to_string();
        Peer { remote_tag: tag.to_string(), remote_target, route_set }
    }
}

fn response_event(response: &Response, reliable: bool) -> CallEvent {
    CallEvent::Response {
        status: response.status,
        reason: response.reason.clone(),
        sdp: response.sdp(),
        reliable,
        headers: response.headers.to_vec(),
    }
}

fn invalid_uri(uri: &str, reason: impl Into<String>) -> SipError {
    SipError::InvalidUri { uri: uri.to_string(), reason: reason.into() }
}

/// Any URI that will be written between angle brackets or on the request line.
pub(crate) fn check_uri(uri: &str) -> Result<(), SipError> {
    if uri.is_empty() || uri.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c)) {
        return Err(invalid_uri(uri, "empty, or contains whitespace, control characters, quotes or angle brackets"));
    }
    let Some((scheme, _)) = uri.split_once(':') else {
        return Err(invalid_uri(uri, "missing scheme"));
    };
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        crate::message::parse_sip_uri(uri).map_err(|e| invalid_uri(uri, e))?;
    } else if !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return Err(invalid_uri(uri, "invalid scheme"));
    }
    Ok(())
}

fn check_name_addr(value: &NameAddr) -> Result<(), SipError> {
    check_uri(&value.uri)?;
    if value.display_name.as_deref().is_some_and(|n| n.chars().any(char::is_control)) {
        return Err(SipError::InvalidHeader { name: "display name".into(), reason: "control characters".into() });
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), SipError> {
    let invalid = |reason: &str| SipError::InvalidHeader { name: name.to_string(), reason: reason.to_string() };
    let is_token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(is_token) {
        return Err(invalid("name is not a token"));
    }
    if value.contains(['\r', '\n']) {
        return Err(invalid("value contains a line break"));
    }
    if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
        return Err(invalid("computed by the stack"));
    }
    Ok(())
}

/// The INVITE in the header order of the call-flow examples.
fn build_invite(invite: &OutgoingInvite, setup: &CallSetup, timers: &TimerConfig) -> Result<Request, SipError> {
    let request_uri = &invite.request_uri;
    check_uri(request_uri)?;
    // A SIP URI, or a service URN (RFC 5031) for an emergency call (`urn:service:sos`).
    let lower = request_uri.to_ascii_lowercase();
    if !lower.starts_with("sip") && !lower.starts_with("urn:service:") {
        return Err(invalid_uri(request_uri, "the request-URI must be a SIP URI or a service URN"));
    }
    check_name_addr(&invite.from)?;
    check_name_addr(&invite.to)?;
    if let Some(pai) = &invite.p_asserted_identity {
        check_name_addr(pai)?;
    }
    if let Some(privacy) = &invite.privacy {
        check_header("Privacy", privacy)?;
    }
    for (name, value) in &invite.extra_headers {
        check_header(name, value)?;
    }

    let (host, port, transport) = (&setup.local_host, setup.local_port, invite.transport);
    let mut headers = Headers::default();
    headers.push("Via", transport.via(host, port, &setup.branch));
    headers.push("Max-Forwards", "70");
    headers.push("From", format!("{};tag={}", invite.from.to_header_value(), setup.local_tag));
    headers.push("To", invite.to.to_header_value());
    headers.push("Call-ID", setup.call_id.as_str());
    headers.push("CSeq", "1 INVITE");
    headers.push("Contact", format!("<sip:{host}:{port};transport={}>", transport.uri_param()));
    if let Some(pai) = &invite.p_asserted_identity {
        headers.push("P-Asserted-Identity", pai.to_header_value());
    }
    if let Some(privacy) = &invite.privacy {
        headers.push("Privacy", privacy.as_str());
    }
    let session_timer = timers.session_expires > 0;
    headers.push("Supported", if session_timer { "100rel, timer" } else { "100rel" });
    headers.push("Allow", ALLOW);
    if !setup.user_agent.is_empty() {
        headers.push("User-Agent", setup.user_agent.as_str());
    }
    if session_timer {
        // RFC 4028 s.7.1: the refresher is left to the UAS.
        headers.push("Session-Expires", timers.session_expires.max(timers.min_se).to_string());
        headers.push("Min-SE", timers.min_se.to_string());
    }
    for (name, value) in &invite.extra_headers {
        headers.push(name.as_str(), value.as_str());
    }
    let body = match (&invite.sdp, invite.extra_body_parts.is_empty()) {
        (Some(sdp), true) => {
            headers.push("Content-Type", "application/sdp");
            sdp.clone().into_bytes()
        }
        (None, true) => Vec::new(),
        (sdp, false) => {
            let boundary = format!("camara-{}", random_token());
            headers.push("Content-Type", format!("multipart/mixed;boundary={boundary}"));
            multipart_body(&boundary, sdp.as_deref(), &invite.extra_body_parts)?
        }
    };
    Ok(Request { method: Method::Invite, uri: request_uri.clone(), headers, body })
}

/// A `multipart/mixed` body (RFC 2046 5.1, RFC 5621): the SDP first, then the other parts.
fn multipart_body(boundary: &str, sdp: Option<&str>, parts: &[crate::BodyPart]) -> Result<Vec<u8>, SipError> {
    let mut body = String::new();
    let sdp_part = sdp.map(|sdp| crate::BodyPart {
        content_type: "application/sdp".into(),
        content_id: None,
        body: sdp.to_string(),
    });
    for part in sdp_part.iter().chain(parts) {
        if part.body.contains(&format!("--{boundary}"))
            || part.content_type.contains(['\r', '\n'])
            || part.content_id.as_deref().is_some_and(|id| id.contains(['\r', '\n', '<', '>']))
        {
            return Err(SipError::InvalidHeader { name: "body part".into(), reason: "unsafe content".into() });
        }
        body.push_str(&format!("--{boundary}\r\nContent-Type: {}\r\n", part.content_type));
        if let Some(id) = &part.content_id {
            body.push_str(&format!("Content-ID: <{id}>\r\n"));
        }
        body.push_str("\r\n");
        body.push_str(&part.body);
        if !part.body.ends_with("\r\n") {
            body.push_str("\r\n");
        }
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    Ok(body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::response_to;
    use std::time::Duration;

    const NEXT_HOP: &str = "198.51.100.1:5060";
    const UAS: &str = "198.51.100.10:5060";

    fn outgoing(transport: Transport) -> OutgoingInvite {
        OutgoingInvite {
            call_id: None,
            request_uri: "sip:+818000000002@tn.operator.com;user=phone".into(),
            from: NameAddr {
                display_name: Some("Alice".into()),
                uri: "sip:+818000000001@operator.com;user=phone".into(),
            },
            to: NameAddr { display_name: None, uri: "sip:+818000000002@tn.operator.com;user=phone".into() },
            p_asserted_identity: Some(NameAddr { display_name: None, uri: "tel:+818000000001".into() }),
            privacy: None,
            extra_headers: vec![("X-Correlator".into(), "abc".into())],
            sdp: Some("v=0\r\n".into()),
            extra_body_parts: vec![],
            next_hop: NEXT_HOP.parse().unwrap(),
            transport,
            credentials: None,
        }
    }

    fn setup() -> CallSetup {
        CallSetup {
            call_id: "a84b4c76e66710@webrtc-gw.operator.com".into(),
            local_tag: "1928301774".into(),
            branch: "z9hG4bK776asdhds".into(),
            local_host: "webrtc-gw.operator.com".into(),
            local_port: 5060,
            user_agent: "camara-gw".into(),
        }
    }

    #[test]
    fn extra_body_parts_make_a_multipart_body_with_the_sdp_first() {
        let mut invite = outgoing(Transport::Udp);
        invite.sdp = Some("v=0\r\n".into());
        invite.extra_body_parts = vec![crate::BodyPart {
            content_type: "application/pidf+xml".into(),
            content_id: Some("loc1@gw".into()),
            body: "<presence/>".into(),
        }];
        let request = build_invite(&invite, &setup(), &TimerConfig::default()).unwrap();
        let content_type = request.headers.get("Content-Type").unwrap().to_string();
        let boundary = content_type.strip_prefix("multipart/mixed;boundary=").expect("multipart");
        let body = String::from_utf8(request.body.clone()).unwrap();
        assert_eq!(
            body,
            format!(
                "--{boundary}\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--{boundary}\r\n\
                 Content-Type: application/pidf+xml\r\nContent-ID: <loc1@gw>\r\n\r\n<presence/>\r\n--{boundary}--\r\n"
            )
        );
        // A part cannot smuggle headers or end the body early.
        invite.extra_body_parts[0].content_type = "text/plain\r\nX-Evil: 1".into();
        assert!(build_invite(&invite, &setup(), &TimerConfig::default()).is_err());
    }

    struct Harness {
        call: UacCall,
        now: Instant,
    }

    impl Harness {
        fn new(transport: Transport) -> (Self, Request) {
            let now = Instant::now();
            let mut call = UacCall::new(&outgoing(transport), setup(), TimerConfig::default(), now).unwrap();
            let sent = drain(&mut call);
            let [CallOutput::Transmit(t)] = sent.as_slice() else { panic!("{sent:?}") };
            assert_eq!(t.dest, NEXT_HOP.parse().unwrap());
            let Message::Request(invite) = t.message.clone() else { panic!() };
            (Self { call, now }, invite)
        }

        fn respond(&mut self, response: Response) -> Vec<CallOutput> {
            self.call.handle_response(response, self.now);
            drain(&mut self.call)
        }
    }

    fn drain(call: &mut UacCall) -> Vec<CallOutput> {
        std::iter::from_fn(|| call.poll_output()).collect()
    }

    fn requests(outputs: &[CallOutput]) -> Vec<(SocketAddr, Request)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                CallOutput::Transmit(Transmit { dest, message: Message::Request(r), .. }) => Some((*dest, r.clone())),
                _ => None,
            })
            .collect()
    }

    fn events(outputs: &[CallOutput]) -> Vec<CallEvent> {
        outputs
            .iter()
            .filter_map(|o| match o {
                CallOutput::Event(e) => Some(e.clone().without_headers()),
                _ => None,
            })
            .collect()
    }

    /// A response from the UAS at `UAS`, optionally reliable and with a To tag.
    fn uas_response(req: &Request, status: u16, reason: &str, rseq: Option<u32>) -> Response {
        let tag = (status > 100).then_some("a6c85cf");
        let mut r = response_to(req, status, reason, tag);
        if status > 100 {
            r.headers.push("Contact", format!("<sip:+818000000002@{UAS};transport=tcp>"));
            r.headers.push("Record-Route", "<sip:198.51.100.20;lr>, <sip:198.51.100.21;lr>".to_string());
            r.headers = crate::message::parse(&r.to_bytes()).map(|m| m.headers().clone()).unwrap();
        }
        if let Some(rseq) = rseq {
            r.headers.push("Require", "100rel");
            r.headers.push("RSeq", rseq.to_string());
        }
        r
    }

    fn header_names(req: &Request) -> Vec<&str> {
        req.headers.iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn invite_matches_the_call_flow_example() {
        let (_, invite) = Harness::new(Transport::Tcp);
        let text = String::from_utf8(invite.to_bytes()).unwrap();
        let expected_head = "INVITE sip:+818000000002@tn.operator.com;user=phone SIP/2.0\r\n\
            Via: SIP/2.0/TCP webrtc-gw.operator.com:5060;branch=z9hG4bK776asdhds\r\n\
            Max-Forwards: 70\r\n\
            From: \"Alice\" <sip:+818000000001@operator.com;user=phone>;tag=1928301774\r\n\
            To: <sip:+818000000002@tn.operator.com;user=phone>\r\n\
            Call-ID: a84b4c76e66710@webrtc-gw.operator.com\r\n\
            CSeq: 1 INVITE\r\n\
            Contact: <sip:webrtc-gw.operator.com:5060;transport=tcp>\r\n\
            P-Asserted-Identity: <tel:+818000000001>\r\n\
            Supported: 100rel, timer\r\n\
            Allow: INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, OPTIONS\r\n\
            User-Agent: camara-gw\r\n\
            Session-Expires: 1800\r\n\
            Min-SE: 90\r\n\
            X-Correlator: abc\r\n\
            Content-Type: application/sdp\r\n\
            Content-Length: 5\r\n\r\nv=0\r\n";
        assert_eq!(text, expected_head);
    }

    #[test]
    fn invalid_caller_input_is_rejected() {
        let now = Instant::now();
        let mut bad = outgoing(Transport::Udp);
        bad.request_uri = "sip:bob@ex ample.com".into();
        assert!(matches!(UacCall::new(&bad, setup(), TimerConfig::default(), now), Err(SipError::InvalidUri { .. })));
        let mut bad = outgoing(Transport::Udp);
        bad.to.uri = "<sip:x>".into();
        assert!(matches!(UacCall::new(&bad, setup(), TimerConfig::default(), now), Err(SipError::InvalidUri { .. })));
        let mut bad = outgoing(Transport::Udp);
        bad.extra_headers.push(("X-Bad".into(), "a\r\nVia: evil".into()));
        assert!(matches!(
            UacCall::new(&bad, setup(), TimerConfig::default(), now),
            Err(SipError::InvalidHeader { .. })
        ));
    }

    #[test]
    fn reliable_provisional_gets_a_prack_and_retransmissions_are_filtered() {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        let out = h.respond(uas_response(&invite, 100, "Trying", None));
        assert_eq!(
            events(&out),
            [CallEvent::Response { status: 100, reason: "Trying".into(), sdp: None, reliable: false, headers: vec![] }]
        );

        let out = h.respond(uas_response(&invite, 183, "Session Progress", Some(1)));
        assert_eq!(
            events(&out),
            [CallEvent::Response {
                status: 183,
                reason: "Session Progress".into(),
                sdp: None,
                reliable: true,
                headers: vec![]
            }]
        );
        let sent = requests(&out);
        let [(dest, prack)] = sent.as_slice() else { panic!("{out:?}") };
        // First Route (the reversed Record-Route) is the next hop.
        assert_eq!(*dest, "198.51.100.21:5060".parse().unwrap());
        assert_eq!(prack.method, Method::PRack);
        assert_eq!(prack.uri, format!("sip:+818000000002@{UAS};transport=tcp"));
        assert_eq!(prack.headers.get("CSeq"), Some("2 PRACK"));
        assert_eq!(prack.headers.get("RAck"), Some("1 1 INVITE"));
        assert_eq!(prack.tag_of_to(), Some("a6c85cf"));
        assert_eq!(prack.tag_of_from(), Some("1928301774"));
        assert_eq!(
            prack.headers.get_all("Route").collect::<Vec<_>>(),
            ["<sip:198.51.100.21;lr>", "<sip:198.51.100.20;lr>"]
        );
        assert_eq!(
            header_names(prack),
            ["Via", "Max-Forwards", "Route", "Route", "From", "To", "Call-ID", "CSeq", "RAck"]
        );
        let prack_branch = prack.top_via().and_then(|v| v.branch).unwrap();
        assert!(prack_branch.starts_with("z9hG4bK") && prack_branch != "z9hG4bK776asdhds");

        // The UAS retransmits the 183 until PRACKed: no new event, no new PRACK.
        let out = h.respond(uas_response(&invite, 183, "Session Progress", Some(1)));
        assert!(out.is_empty(), "{out:?}");

        let mut ok = response_to(prack, 200, "OK", None);
        ok.headers.push("X", "y");
        assert!(h.respond(ok).is_empty());

        let out = h.respond(uas_response(&invite, 180, "Ringing", Some(2)));
        let sent = requests(&out);
        assert_eq!(sent[0].1.headers.get("CSeq"), Some("3 PRACK"));
        assert_eq!(sent[0].1.headers.get("RAck"), Some("2 1 INVITE"));
    }

    #[test]
    fn answer_is_acked_and_ack_repeated_on_2xx_retransmission() {
        let (mut h, invite) = Harness::new(Transport::Udp);
        let mut ok = uas_response(&invite, 200, "OK", None);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = b"v=0\r\n".to_vec();
        let out = h.respond(ok.clone());
        assert_eq!(
            events(&out),
            [CallEvent::Response {
                status: 200,
                reason: "OK".into(),
                sdp: Some("v=0\r\n".into()),
                reliable: false,
                headers: vec![]
            }]
        );
        let sent = requests(&out);
        let [(dest, ack)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(*dest, "198.51.100.21:5060".parse().unwrap());
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, format!("sip:+818000000002@{UAS};transport=tcp"));
        assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
        assert_ne!(ack.top_via().and_then(|v| v.branch).as_deref(), Some("z9hG4bK776asdhds"));
        assert_eq!(h.call.phase(), CallPhase::Confirmed);

        // Retransmitted 2xx: same ACK again, no new event.
        let out = h.respond(ok.clone());
        assert_eq!(requests(&out), [(*dest, ack.clone())]);
        assert!(events(&out).is_empty());

        // After Timer M the transaction is gone, the dialog still ACKs.
        h.now += Duration::from_secs(33);
        h.call.handle_timeout(h.now);
        let out = h.respond(ok);
        assert_eq!(requests(&out), [(*dest, ack.clone())]);
    }

    #[test]
    fn second_2xx_from_another_fork_is_acked_and_byed() {
        let (mut h, invite) = Harness::new(Transport::Udp);
        h.respond(uas_response(&invite, 200, "OK", None));
        let mut other = uas_response(&invite, 200, "OK", None);
        other.headers.set_first("To", "<sip:+818000000002@tn.operator.com;user=phone>;tag=fork2".into());
        let out = h.respond(other);
        assert!(events(&out).is_empty());
        let methods: Vec<_> =
            requests(&out).iter().map(|(_, r)| (r.method, r.tag_of_to().map(str::to_string))).collect();
        assert_eq!(methods, [(Method::Ack, Some("fork2".into())), (Method::Bye, Some("fork2".into()))]);
        assert_eq!(h.call.phase(), CallPhase::Confirmed);
    }

    #[test]
    fn bye_after_answer_then_terminated_on_200() {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        h.respond(uas_response(&invite, 200, "OK", None));
        assert_eq!(h.call.hangup(h.now), Ok(HangupKind::Bye));
        let out = drain(&mut h.call);
        let sent = requests(&out);
        let [(_, bye)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.headers.get("CSeq"), Some("2 BYE"));
        assert_eq!(bye.tag_of_to(), Some("a6c85cf"));
        assert_eq!(bye.uri, format!("sip:+818000000002@{UAS};transport=tcp"));
        // Hanging up twice does not send a second BYE.
        assert_eq!(h.call.hangup(h.now), Ok(HangupKind::Bye));
        assert!(drain(&mut h.call).is_empty());

        let out = h.respond(response_to(bye, 200, "OK", None));
        assert_eq!(events(&out), [CallEvent::Terminated { cause: crate::EndCause::Local }]);
        assert_eq!(h.call.hangup(h.now), Err(HangupError::Finished));
        // Over TCP the INVITE transaction still waits for Timer M before the call can go.
        assert!(!h.call.is_finished());
        h.now += Duration::from_secs(32);
        h.call.handle_timeout(h.now);
        assert!(h.call.is_finished());
    }

    #[test]
    fn a_bye_carries_the_reason_it_was_given() {
        let (mut h, invite) = Harness::new(Transport::Udp);
        h.respond(uas_response(&invite, 200, "OK", None));
        let _ = drain(&mut h.call);
        let reason = r#"Q.850;cause=41;text="WebRTC leg failed""#;
        h.call.set_bye_reason(reason.into());
        assert_eq!(h.call.hangup(h.now), Ok(HangupKind::Bye));
        let out = drain(&mut h.call);
        let sent = requests(&out);
        let [(_, bye)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!((bye.method, bye.headers.get("Reason")), (Method::Bye, Some(reason)));
    }

    #[test]
    fn cancel_waits_for_a_provisional_then_487_is_acked_by_the_transaction() {
        let (mut h, invite) = Harness::new(Transport::Udp);
        assert_eq!(h.call.hangup(h.now), Ok(HangupKind::Cancel));
        assert!(drain(&mut h.call).is_empty(), "no CANCEL before a provisional response");

        let out = h.respond(uas_response(&invite, 180, "Ringing", None));
        assert_eq!(events(&out).len(), 1);
        let sent = requests(&out);
        let [(dest, cancel)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(*dest, NEXT_HOP.parse().unwrap());
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri, invite.uri);
        assert_eq!(cancel.headers.get("Via"), invite.headers.get("Via"));
        assert_eq!(cancel.headers.get("CSeq"), Some("1 CANCEL"));
        assert_eq!(cancel.headers.get("To"), invite.headers.get("To"));

        assert!(h.respond(response_to(cancel, 200, "OK", None)).is_empty());
        let out = h.respond(uas_response(&invite, 487, "Request Terminated", None));
        assert_eq!(
            events(&out),
            [
                CallEvent::Response {
                    status: 487,
                    reason: "Request Terminated".into(),
                    sdp: None,
                    reliable: false,
                    headers: vec![]
                },
                CallEvent::Terminated { cause: crate::EndCause::Local }
            ]
        );
        let sent = requests(&out);
        let [(_, ack)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.get("Via"), invite.headers.get("Via"));
        assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
        assert_eq!(h.call.hangup(h.now), Err(HangupError::Finished));
    }

    #[test]
    fn answer_crossing_cancel_is_acked_then_byed() {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        h.respond(uas_response(&invite, 180, "Ringing", None));
        assert_eq!(h.call.hangup(h.now), Ok(HangupKind::Cancel));
        drain(&mut h.call);
        let out = h.respond(uas_response(&invite, 200, "OK", None));
        let methods: Vec<_> = requests(&out).iter().map(|(_, r)| r.method).collect();
        assert_eq!(methods, [Method::Ack, Method::Bye]);
        assert_eq!(h.call.hangup(h.now), Ok(HangupKind::Bye));
    }

    #[test]
    fn timer_b_reports_timeout_then_terminated() {
        let (mut h, _) = Harness::new(Transport::Tcp);
        h.now += Duration::from_secs(32);
        h.call.handle_timeout(h.now);
        assert_eq!(
            events(&drain(&mut h.call)),
            [CallEvent::Timeout, CallEvent::Terminated { cause: crate::EndCause::NoResponse }]
        );
        assert!(h.call.is_finished());
    }

    #[test]
    fn cancel_without_final_response_gives_up_after_64_t1() {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        h.respond(uas_response(&invite, 100, "Trying", None));
        h.call.hangup(h.now).unwrap();
        drain(&mut h.call);
        h.now += Duration::from_secs(32);
        h.call.handle_timeout(h.now);
        assert_eq!(
            events(&drain(&mut h.call)),
            [CallEvent::Timeout, CallEvent::Terminated { cause: crate::EndCause::Local }]
        );
        assert!(h.call.is_finished());
    }

    #[test]
    fn remote_bye_reports_request_then_terminated() {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        h.respond(uas_response(&invite, 200, "OK", None));
        assert!(h.call.matches_dialog("1928301774", "a6c85cf"));
        assert!(!h.call.matches_dialog("1928301774", "other"));
        let mut bye = invite.clone();
        bye.method = Method::Bye;
        bye.body.clear();
        bye.headers.push("Reason", "Q.850;cause=16");
        h.call.handle_remote_bye(&bye, h.now);
        assert_eq!(
            events(&drain(&mut h.call)),
            [
                CallEvent::Request {
                    method: "BYE".into(),
                    reason: Some("Q.850;cause=16".into()),
                    sdp: None,
                    headers: vec![]
                },
                CallEvent::Terminated { cause: crate::EndCause::Remote }
            ]
        );
    }

    #[test]
    fn failure_response_and_transport_error() {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        let out = h.respond(uas_response(&invite, 486, "Busy Here", None));
        assert_eq!(
            events(&out).last(),
            Some(&CallEvent::Terminated { cause: crate::EndCause::Rejected { status: 486 } })
        );

        let (mut h, _) = Harness::new(Transport::Tcp);
        h.call.transport_failed(NEXT_HOP.parse().unwrap(), h.now);
        assert_eq!(
            events(&drain(&mut h.call)),
            [CallEvent::Timeout, CallEvent::Terminated { cause: crate::EndCause::TransportFailed }]
        );
        assert!(h.call.is_finished());
    }

    /// An answered call over `transport` and the re-INVITE it sent with `a=sendonly`.
    fn answered_then_reinvite(transport: Transport) -> (Harness, Request, Request) {
        let (mut h, invite) = Harness::new(transport);
        h.respond(uas_response(&invite, 200, "OK", None));
        assert!(!h.call.reinvite_pending());
        h.call.offer(OfferMethod::Reinvite, "v=0\r\na=sendonly\r\n".into(), h.now).unwrap();
        assert!(h.call.reinvite_pending());
        let out = drain(&mut h.call);
        let sent = requests(&out);
        let [(dest, reinvite)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(*dest, "198.51.100.21:5060".parse().unwrap());
        (h, invite, reinvite.clone())
    }

    fn reinvite_response(reinvite: &Request, status: u16, reason: &str, sdp: Option<&str>) -> Response {
        let mut r = response_to(reinvite, status, reason, None);
        if let Some(sdp) = sdp {
            r.headers.push("Content-Type", "application/sdp");
            r.body = sdp.as_bytes().to_vec();
        }
        r
    }

    #[test]
    fn reinvite_is_built_in_the_dialog() {
        let (_, invite, reinvite) = answered_then_reinvite(Transport::Tcp);
        assert_eq!(reinvite.method, Method::Invite);
        assert_eq!(reinvite.uri, format!("sip:+818000000002@{UAS};transport=tcp"));
        assert_eq!(reinvite.headers.get("CSeq"), Some("2 INVITE"));
        assert_eq!(reinvite.headers.get("Call-ID"), invite.headers.get("Call-ID"));
        assert_eq!(reinvite.tag_of_from(), Some("1928301774"));
        assert_eq!(reinvite.tag_of_to(), Some("a6c85cf"));
        assert_eq!(
            reinvite.headers.get_all("Route").collect::<Vec<_>>(),
            ["<sip:198.51.100.21;lr>", "<sip:198.51.100.20;lr>"]
        );
        assert_eq!(reinvite.headers.get("Contact"), Some("<sip:webrtc-gw.operator.com:5060;transport=tcp>"));
        assert_eq!(reinvite.headers.get("Content-Type"), Some("application/sdp"));
        assert_eq!(reinvite.body, b"v=0\r\na=sendonly\r\n");
        let branch = reinvite.top_via().and_then(|v| v.branch).unwrap();
        assert!(branch.starts_with("z9hG4bK") && branch != "z9hG4bK776asdhds");
        assert_eq!(
            header_names(&reinvite),
            [
                "Via",
                "Max-Forwards",
                "Route",
                "Route",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "Contact",
                "Allow",
                "User-Agent",
                "Content-Type"
            ]
        );
        // The wire form carries the body length.
        let text = String::from_utf8(reinvite.to_bytes()).unwrap();
        assert!(text.contains("Content-Length: 17\r\n"), "{text}");
    }

    #[test]
    fn reinvite_2xx_is_acked_and_reacked_on_retransmission() {
        let (mut h, _, reinvite) = answered_then_reinvite(Transport::Udp);
        // Retransmitted over UDP until answered.
        h.now += Duration::from_millis(500);
        h.call.handle_timeout(h.now);
        let resent: Vec<_> = requests(&drain(&mut h.call)).into_iter().map(|(_, r)| r).collect();
        assert_eq!(resent, std::slice::from_ref(&reinvite));
        // A provisional is not reported.
        assert!(events(&h.respond(reinvite_response(&reinvite, 100, "Trying", None))).is_empty());

        let mut ok = reinvite_response(&reinvite, 200, "OK", Some("v=0\r\na=recvonly\r\n"));
        ok.headers.push("Contact", "<sip:198.51.100.11:5060>");
        let out = h.respond(ok.clone());
        assert_eq!(
            events(&out),
            [CallEvent::ReinviteResponse {
                status: 200,
                reason: "OK".into(),
                sdp: Some("v=0\r\na=recvonly\r\n".into())
            }]
        );
        let sent = requests(&out);
        let [(dest, ack)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(*dest, "198.51.100.21:5060".parse().unwrap());
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.get("CSeq"), Some("2 ACK"));
        assert_eq!(ack.tag_of_to(), Some("a6c85cf"));
        // Target refresh: the new Contact is the remote target.
        assert_eq!(ack.uri, "sip:198.51.100.11:5060");
        assert_ne!(ack.top_via().and_then(|v| v.branch), reinvite.top_via().and_then(|v| v.branch));
        assert!(!h.call.reinvite_pending());
        assert_eq!(h.call.phase(), CallPhase::Confirmed);

        // Retransmitted 2xx: same ACK, no event.
        let out = h.respond(ok.clone());
        assert_eq!(requests(&out), [(*dest, ack.clone())]);
        assert!(events(&out).is_empty());
        // Still after the transaction is gone (Timer M).
        h.now += Duration::from_secs(33);
        h.call.handle_timeout(h.now);
        let out = h.respond(ok);
        assert_eq!(requests(&out), [(*dest, ack.clone())]);
        assert!(events(&out).is_empty());

        // A second re-INVITE takes the next CSeq; BYE after it the one after.
        h.call.offer(OfferMethod::Reinvite, "v=0\r\n".into(), h.now).unwrap();
        let sent = requests(&drain(&mut h.call));
        assert_eq!(sent[0].1.headers.get("CSeq"), Some("3 INVITE"));
        assert_eq!(sent[0].1.uri, "sip:198.51.100.11:5060");
    }

    #[test]
    fn reinvite_488_is_reported_and_the_dialog_lives_on() {
        let (mut h, _, reinvite) = answered_then_reinvite(Transport::Udp);
        let out = h.respond(reinvite_response(&reinvite, 488, "Not Acceptable Here", None));
        assert_eq!(
            events(&out),
            [CallEvent::ReinviteResponse { status: 488, reason: "Not Acceptable Here".into(), sdp: None }]
        );
        let sent = requests(&out);
        let [(_, ack)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.get("CSeq"), Some("2 ACK"));
        assert_eq!(ack.headers.get("Via"), reinvite.headers.get("Via"));
        assert_eq!(h.call.phase(), CallPhase::Confirmed);
        // A retransmitted 488 is re-ACKed by the transaction, not reported again.
        let out = h.respond(reinvite_response(&reinvite, 488, "Not Acceptable Here", None));
        assert_eq!(requests(&out).len(), 1);
        assert!(events(&out).is_empty());

        // 491: reported too, a later re-INVITE is allowed.
        h.call.offer(OfferMethod::Reinvite, "v=0\r\n".into(), h.now).unwrap();
        let sent = requests(&drain(&mut h.call));
        let second = sent[0].1.clone();
        assert_eq!(second.headers.get("CSeq"), Some("3 INVITE"));
        let out = h.respond(reinvite_response(&second, 491, "Request Pending", None));
        assert_eq!(
            events(&out),
            [CallEvent::ReinviteResponse { status: 491, reason: "Request Pending".into(), sdp: None }]
        );

        // The call still hangs up normally.
        assert_eq!(h.call.hangup(h.now), Ok(HangupKind::Bye));
        let sent = requests(&drain(&mut h.call));
        let [(_, bye)] = sent.as_slice() else { panic!("{sent:?}") };
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.headers.get("CSeq"), Some("4 BYE"));
        let out = h.respond(response_to(bye, 200, "OK", None));
        assert_eq!(events(&out), [CallEvent::Terminated { cause: crate::EndCause::Local }]);
    }

    #[test]
    fn reinvite_481_ends_the_dialog_with_bye() {
        let (mut h, _, reinvite) = answered_then_reinvite(Transport::Tcp);
        let out = h.respond(reinvite_response(&reinvite, 481, "Call/Transaction Does Not Exist", None));
        assert_eq!(
            events(&out),
            [
                CallEvent::ReinviteResponse {
                    status: 481,
                    reason: "Call/Transaction Does Not Exist".into(),
                    sdp: None
                },
                CallEvent::Terminated { cause: crate::EndCause::DialogFailed { status: 481 } }
            ]
        );
        let methods: Vec<_> =
            requests(&out).iter().map(|(_, r)| (r.method, r.headers.get("CSeq").unwrap().to_string())).collect();
        assert_eq!(methods, [(Method::Ack, "2 ACK".into()), (Method::Bye, "3 BYE".into())]);
        assert_eq!(h.call.phase(), CallPhase::Terminated);
        assert_eq!(h.call.hangup(h.now), Err(HangupError::Finished));
    }

    #[test]
    fn reinvite_timeout_is_reported_as_408_then_bye() {
        let (mut h, _, _) = answered_then_reinvite(Transport::Tcp);
        h.now += Duration::from_secs(32);
        h.call.handle_timeout(h.now);
        let out = drain(&mut h.call);
        assert_eq!(
            events(&out),
            [
                CallEvent::ReinviteResponse { status: 408, reason: "Request Timeout".into(), sdp: None },
                CallEvent::Terminated { cause: crate::EndCause::DialogFailed { status: 408 } }
            ]
        );
        assert_eq!(requests(&out).iter().map(|(_, r)| r.method).collect::<Vec<_>>(), [Method::Bye]);
    }

    #[test]
    fn reinvite_is_refused_outside_a_confirmed_dialog() {
        let wrong_state = |r: Result<(), SipError>| matches!(r, Err(SipError::WrongState { .. }));
        let (mut h, invite) = Harness::new(Transport::Udp);
        assert!(wrong_state(h.call.offer(OfferMethod::Reinvite, "v=0\r\n".into(), h.now)));
        h.respond(uas_response(&invite, 180, "Ringing", None));
        assert!(wrong_state(h.call.offer(OfferMethod::Reinvite, "v=0\r\n".into(), h.now)));
        assert!(drain(&mut h.call).is_empty());

        // Pending re-INVITE.
        let (mut h, _, _) = answered_then_reinvite(Transport::Udp);
        assert!(wrong_state(h.call.offer(OfferMethod::Reinvite, "v=0\r\n".into(), h.now)));
        assert!(drain(&mut h.call).is_empty());

        // Hanging up.
        let (mut h, invite) = Harness::new(Transport::Udp);
        h.respond(uas_response(&invite, 200, "OK", None));
        h.call.hangup(h.now).unwrap();
        assert!(wrong_state(h.call.offer(OfferMethod::Reinvite, "v=0\r\n".into(), h.now)));

        // Rejected call.
        let (mut h, invite) = Harness::new(Transport::Udp);
        h.respond(uas_response(&invite, 486, "Busy Here", None));
        assert!(wrong_state(h.call.offer(OfferMethod::Reinvite, "v=0\r\n".into(), h.now)));
    }

    /// A call answered over TCP with `Session-Expires: {se}` in the 2xx (none if `None`).
    fn answered_with_session(se: Option<&str>) -> (Harness, Request) {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        let mut ok = uas_response(&invite, 200, "OK", None);
        if let Some(se) = se {
            ok.headers.push("Require", "timer");
            ok.headers.push("Session-Expires", se);
        }
        let out = h.respond(ok);
        assert_eq!(requests(&out).len(), 1, "{out:?}");
        (h, invite)
    }

    fn advance(h: &mut Harness, secs: u64) -> Vec<CallOutput> {
        h.now += Duration::from_secs(secs);
        h.call.handle_timeout(h.now);
        drain(&mut h.call)
    }

    #[test]
    fn session_timer_off_leaves_timer_out_of_the_invite() {
        let timers = TimerConfig { session_expires: 0, ..TimerConfig::default() };
        let mut call = UacCall::new(&outgoing(Transport::Tcp), setup(), timers, Instant::now()).unwrap();
        let sent = requests(&drain(&mut call));
        let invite = &sent[0].1;
        assert_eq!(invite.headers.get("Supported"), Some("100rel"));
        assert_eq!(invite.headers.get("Session-Expires"), None);
        assert_eq!(invite.headers.get("Min-SE"), None);
    }

    #[test]
    fn refresher_uac_refreshes_with_update_when_the_peer_allows_it() {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        let mut ok = uas_response(&invite, 200, "OK", None);
        ok.headers.push("Allow", "INVITE, ACK, BYE, UPDATE");
        ok.headers.push("Session-Expires", "90;refresher=uac");
        h.respond(ok);
        assert!(requests(&advance(&mut h, 44)).is_empty());
        let out = advance(&mut h, 1);
        let sent = requests(&out);
        let [(dest, refresh)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(*dest, "198.51.100.21:5060".parse().unwrap(), "along the route set (Record-Route reversed)");
        assert_eq!((refresh.method, refresh.headers.get("CSeq")), (Method::Update, Some("2 UPDATE")));
        assert_eq!(refresh.headers.get("Session-Expires"), Some("90;refresher=uac"));
        assert!(refresh.body.is_empty() && refresh.headers.get("Content-Type").is_none());
        let mut answer = response_to(refresh, 200, "OK", None);
        answer.headers.push("Session-Expires", "90;refresher=uac");
        let out = h.respond(answer);
        assert!(events(&out).is_empty() && requests(&out).is_empty(), "no ACK, no event: {out:?}");
        // The next refresh is due 45 s after this one.
        assert!(requests(&advance(&mut h, 44)).is_empty());
        assert_eq!(requests(&advance(&mut h, 1))[0].1.headers.get("CSeq"), Some("3 UPDATE"));
    }

    #[test]
    fn refresher_uac_refreshes_at_half_interval_with_the_same_sdp() {
        let (mut h, _) = answered_with_session(Some("1800;refresher=uac"));
        let start = h.now;
        // Timer M of the INVITE transaction goes; nothing is sent before N/2.
        assert!(requests(&advance(&mut h, 899)).is_empty());
        let out = advance(&mut h, 1);
        assert!(events(&out).is_empty());
        let sent = requests(&out);
        let [(_, refresh)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(refresh.method, Method::Invite);
        assert_eq!(refresh.headers.get("CSeq"), Some("2 INVITE"));
        assert_eq!(refresh.body, b"v=0\r\n");
        assert_eq!(refresh.headers.get("Session-Expires"), Some("1800;refresher=uac"));
        assert_eq!(refresh.headers.get("Supported"), Some("timer"));
        assert!(h.call.reinvite_pending());

        // Its 2xx is ACKed, not reported, and restarts the timer.
        let mut ok = reinvite_response(refresh, 200, "OK", Some("v=0\r\n"));
        ok.headers.push("Session-Expires", "1800;refresher=uac");
        let out = h.respond(ok);
        assert!(events(&out).is_empty(), "{out:?}");
        assert_eq!(requests(&out).iter().map(|(_, r)| r.method).collect::<Vec<_>>(), [Method::Ack]);
        assert_eq!(h.now, start + Duration::from_secs(900));
        assert!(requests(&advance(&mut h, 899)).is_empty());
        let sent = requests(&advance(&mut h, 1));
        let [(_, second)] = sent.as_slice() else { panic!("{sent:?}") };
        assert_eq!(second.headers.get("CSeq"), Some("3 INVITE"));
        assert_eq!(second.body, b"v=0\r\n");
        assert_eq!(h.call.phase(), CallPhase::Confirmed);

        // A refresh answered 481 ends the call, with no ReinviteResponse.
        let out = h.respond(reinvite_response(second, 481, "Call/Transaction Does Not Exist", None));
        assert_eq!(events(&out), [CallEvent::Terminated { cause: crate::EndCause::DialogFailed { status: 481 } }]);
        assert_eq!(requests(&out).iter().map(|(_, r)| r.method).collect::<Vec<_>>(), [Method::Ack, Method::Bye]);
    }

    #[test]
    fn refresh_uses_the_last_accepted_local_sdp() {
        let (mut h, _) = answered_with_session(Some("1800"));
        h.call.offer(OfferMethod::Reinvite, "v=0\r\na=sendonly\r\n".into(), h.now).unwrap();
        let sent = requests(&drain(&mut h.call));
        let reinvite = &sent[0].1;
        assert_eq!(reinvite.headers.get("Session-Expires"), Some("1800;refresher=uac"));
        let mut ok = reinvite_response(reinvite, 200, "OK", None);
        ok.headers.push("Session-Expires", "1800;refresher=uac");
        assert_eq!(events(&h.respond(ok)).len(), 1);
        let sent = requests(&advance(&mut h, 900));
        let [(_, refresh)] = sent.as_slice() else { panic!("{sent:?}") };
        assert_eq!(refresh.body, b"v=0\r\na=sendonly\r\n");
    }

    #[test]
    fn refresher_uas_without_refresh_ends_with_bye() {
        let (mut h, _) = answered_with_session(Some("1800;refresher=uas"));
        // 1800 - min(32, 600) = 1768 s.
        let out = advance(&mut h, 1767);
        assert!(out.is_empty(), "{out:?}");
        let out = advance(&mut h, 1);
        assert_eq!(events(&out), [CallEvent::Terminated { cause: crate::EndCause::SessionExpired }]);
        assert_eq!(requests(&out).iter().map(|(_, r)| r.method).collect::<Vec<_>>(), [Method::Bye]);
        assert_eq!(h.call.phase(), CallPhase::Terminated);
        assert_eq!(h.call.hangup(h.now), Err(HangupError::Finished));
    }

    #[test]
    fn refresher_uas_update_resets_the_timer() {
        let (mut h, invite) = answered_with_session(Some("90;refresher=uas"));
        // 90 - min(32, 30) = 60 s.
        assert!(advance(&mut h, 50).is_empty());
        let mut update = invite.clone();
        update.method = Method::Update;
        update.body.clear();
        update.headers.set_first("Session-Expires", "90;refresher=uac".into());
        h.call.handle_peer_refresh(&update, None, h.now);
        assert!(drain(&mut h.call).is_empty());
        assert!(advance(&mut h, 59).is_empty());
        let out = advance(&mut h, 1);
        assert_eq!(events(&out), [CallEvent::Terminated { cause: crate::EndCause::SessionExpired }]);
        assert_eq!(requests(&out)[0].1.method, Method::Bye);
    }

    #[test]
    fn no_session_expires_in_the_2xx_means_no_timer() {
        let (mut h, _) = answered_with_session(None);
        assert!(advance(&mut h, 33).is_empty());
        assert_eq!(h.call.poll_timeout(), None);
        assert!(advance(&mut h, 100_000).is_empty());
        assert_eq!(h.call.phase(), CallPhase::Confirmed);
    }

    #[test]
    fn interval_too_small_is_retried_once_with_min_se() {
        let (mut h, invite) = Harness::new(Transport::Udp);
        let mut too_small = uas_response(&invite, 422, "Session Interval Too Small", None);
        too_small.headers.push("Min-SE", "3600");
        let out = h.respond(too_small.clone());
        assert!(events(&out).is_empty(), "{out:?}");
        let sent = requests(&out);
        let [(_, ack), (dest, retry)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
        assert_eq!(*dest, NEXT_HOP.parse().unwrap());
        assert_eq!(retry.method, Method::Invite);
        assert_eq!(retry.headers.get("CSeq"), Some("2 INVITE"));
        assert_eq!(retry.headers.get("Session-Expires"), Some("3600"));
        assert_eq!(retry.headers.get("Min-SE"), Some("3600"));
        assert_ne!(retry.headers.get("Via"), invite.headers.get("Via"));
        assert_eq!(retry.body, invite.body);
        // A retransmitted 422 is re-ACKed, not reported.
        let out = h.respond(too_small);
        assert!(events(&out).is_empty());
        assert_eq!(requests(&out), [(*dest, ack.clone())]);

        // A second 422 is not retried again.
        let mut again = uas_response(retry, 422, "Session Interval Too Small", None);
        again.headers.push("Min-SE", "7200");
        let out = h.respond(again);
        assert_eq!(
            events(&out).last(),
            Some(&CallEvent::Terminated { cause: crate::EndCause::Rejected { status: 422 } })
        );
        assert!(requests(&out).iter().all(|(_, r)| r.method == Method::Ack));
    }

    fn challenge(invite: &Request, status: u16, realm: &str, nonce: &str, stale: bool) -> Response {
        let (reason, header) = match status {
            401 => ("Unauthorized", "WWW-Authenticate"),
            _ => ("Proxy Authentication Required", "Proxy-Authenticate"),
        };
        let mut r = response_to(invite, status, reason, Some("proxy1"));
        let stale = if stale { ", stale=true" } else { "" };
        r.headers
            .push(header, format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5{stale}"));
        r
    }

    #[test]
    fn digest_challenges_to_the_invite_are_answered_once_per_realm() {
        let now = Instant::now();
        let mut invite = outgoing(Transport::Udp);
        invite.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
        let mut h = Harness { call: UacCall::new(&invite, setup(), TimerConfig::default(), now).unwrap(), now };
        let first = requests(&drain(&mut h.call)).remove(0).1;
        assert_eq!(first.headers.get("Proxy-Authorization"), None);

        // The proxy asks: ACK (by the transaction), then the INVITE again with the answer.
        let out = h.respond(challenge(&first, 407, "proxy.operator.com", "n1", false));
        assert!(events(&out).is_empty(), "{out:?}");
        let sent = requests(&out);
        let [(_, ack), (_, second)] = sent.as_slice() else { panic!("{out:?}") };
        assert_eq!((ack.method, ack.headers.get("CSeq")), (Method::Ack, Some("1 ACK")));
        assert_eq!(second.headers.get("CSeq"), Some("2 INVITE"));
        assert_eq!(second.headers.get("From"), first.headers.get("From"));
        assert_eq!(second.headers.get("Call-ID"), first.headers.get("Call-ID"));
        assert_ne!(second.headers.get("Via"), first.headers.get("Via"));
        assert_eq!(second.body, first.body);
        let answer = second.headers.get("Proxy-Authorization").expect("answered");
        let parsed = |name: &str| {
            let start = answer.find(&format!("{name}=")).unwrap() + name.len() + 1;
            answer[start..].split(',').next().unwrap().trim_matches('"').to_string()
        };
        let expected = crate::digest::response(
            &Challenge::parse(r#"Digest realm="proxy.operator.com", nonce="n1", qop="auth""#).unwrap(),
            &DigestInput {
                username: "alice",
                password: "secret",
                method: "INVITE",
                uri: &first.uri,
                nc: 1,
                cnonce: &parsed("cnonce"),
            },
        );
        assert_eq!(parsed("response"), expected);
        assert_eq!(parsed("uri"), first.uri);

        // Then the far end asks too (another realm): both answers go in the third INVITE.
        let out = h.respond(challenge(second, 401, "operator.com", "n2", false));
        let third = requests(&out).pop().unwrap().1;
        assert_eq!(third.headers.get("CSeq"), Some("3 INVITE"));
        assert!(third.headers.get("Proxy-Authorization").is_some_and(|v| v.contains("nonce=\"n1\"")));
        assert!(third.headers.get("Authorization").is_some_and(|v| v.contains("nonce=\"n2\"")));

        // A stale nonce is answered again, replacing the old answer of that realm.
        let out = h.respond(challenge(&third, 407, "proxy.operator.com", "n3", true));
        let fourth = requests(&out).pop().unwrap().1;
        assert_eq!(fourth.headers.get_all("Proxy-Authorization").count(), 1);
        assert!(fourth.headers.get("Proxy-Authorization").is_some_and(|v| v.contains("nonce=\"n3\"")));

        // The same realm again without stale: the credentials are wrong; the call fails with it.
        let out = h.respond(challenge(&fourth, 407, "proxy.operator.com", "n4", false));
        let events = events(&out);
        assert!(matches!(events.first(), Some(CallEvent::Response { status: 407, .. })), "{events:?}");
        assert_eq!(events.last(), Some(&CallEvent::Terminated { cause: crate::EndCause::Rejected { status: 407 } }));
        assert!(requests(&out).iter().all(|(_, r)| r.method == Method::Ack));
    }

    #[test]
    fn a_challenge_without_credentials_ends_the_call() {
        let (mut h, invite) = Harness::new(Transport::Udp);
        let out = h.respond(challenge(&invite, 401, "operator.com", "n1", false));
        assert!(matches!(events(&out).first(), Some(CallEvent::Response { status: 401, .. })));
        assert_eq!(
            events(&out).last(),
            Some(&CallEvent::Terminated { cause: crate::EndCause::Rejected { status: 401 } })
        );
    }

    #[test]
    fn cancel_after_a_challenge_mirrors_the_retried_invite() {
        let now = Instant::now();
        let mut invite = outgoing(Transport::Udp);
        invite.credentials = Some(Credentials { username: "alice".into(), password: "secret".into() });
        let mut h = Harness { call: UacCall::new(&invite, setup(), TimerConfig::default(), now).unwrap(), now };
        let first = requests(&drain(&mut h.call)).remove(0).1;
        let retry = requests(&h.respond(challenge(&first, 407, "proxy.operator.com", "n1", false))).pop().unwrap().1;
        h.respond(uas_response(&retry, 180, "Ringing", None));
        h.call.hangup(now).unwrap();
        let cancel = requests(&drain(&mut h.call)).pop().unwrap().1;
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.headers.get("Via"), retry.headers.get("Via"));
        assert_eq!(cancel.headers.get("CSeq"), Some("2 CANCEL"));
    }

    #[test]
    fn retried_invite_is_answered_normally() {
        let (mut h, invite) = Harness::new(Transport::Tcp);
        let mut too_small = uas_response(&invite, 422, "Session Interval Too Small", None);
        too_small.headers.push("Min-SE", "3600");
        let sent = requests(&h.respond(too_small));
        let retry = sent.last().unwrap().1.clone();
        let mut ok = uas_response(&retry, 200, "OK", None);
        ok.headers.push("Session-Expires", "3600;refresher=uac");
        let out = h.respond(ok);
        assert_eq!(
            events(&out),
            [CallEvent::Response { status: 200, reason: "OK".into(), sdp: None, reliable: false, headers: vec![] }]
        );
        let sent = requests(&out);
        assert_eq!(sent[0].1.headers.get("CSeq"), Some("2 ACK"));
        let sent = requests(&advance(&mut h, 1800));
        assert_eq!(sent[0].1.headers.get("CSeq"), Some("3 INVITE"));
    }
}
