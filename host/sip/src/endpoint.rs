//! The sans-IO SIP endpoint: parses what arrives, routes it to the right call
//! or server transaction, answers what it can on its own, and collects what
//! must be transmitted and reported.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::dialog::{ALLOW, CallOutput, CallSetup, UacCall, check_uri};
use crate::in_dialog::{DialogSnapshot, OfferMethod};
use crate::message::{
    Headers, Message, Method, ParseError, Refusal, Request, Response, SipHeaders, Transmit, Via, new_branch, parse,
    random_token, response_destination, response_to, response_to_headers, stamp_top_via, stamp_via,
};
use crate::recovered::RecoveredCall;
use crate::registration::{Registration, RegistrationOutput, RegistrationSetup};
use crate::transaction::{InviteServer, NonInviteServer, ServerOutput, TimerConfig};
use crate::uas::{InviteRefusal, UasCall, UasSetup};
use crate::{CallEvent, HangupKind, OutgoingInvite, RegisterRequest, SipError, Transport, UaEvent};

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Host for Via, Contact and Call-ID (IPv6 in brackets).
    pub advertised_host: String,
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    pub tls_port: Option<u16>,
    pub user_agent: String,
    pub timers: TimerConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Transmit(Transmit),
    Event(UaEvent),
}

/// RFC 3261 s.17.2.3 server transaction key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ServerKey {
    branch: String,
    sent_by: String,
    method: String,
}

/// What the endpoint keeps a deadline for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timed {
    Call(String),
    Server(ServerKey),
    Registration(String),
}

/// The next deadline of every call, server transaction and registration, in time order. Ended
/// calls linger for tens of seconds to absorb retransmissions (Timers J and L), so at a few
/// hundred calls per second thousands are held: scanning them all on every event and timer was
/// the user agent's main cost (see BENCHMARKS.md); with this index both are logarithmic.
#[derive(Debug, Default)]
struct Deadlines {
    queue: BTreeSet<(Instant, Timed)>,
    of: HashMap<Timed, Instant>,
}

impl Deadlines {
    fn set(&mut self, key: Timed, at: Option<Instant>) {
        if self.of.get(&key) == at.as_ref() {
            return;
        }
        if let Some(old) = self.of.remove(&key) {
            self.queue.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            self.queue.insert((at, key.clone()));
            self.of.insert(key, at);
        }
    }

    fn first(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Takes out everything due by `now`.
    fn take_due(&mut self, now: Instant) -> Vec<Timed> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first()
            && *at <= now
        {
            let (_, key) = self.queue.pop_first().expect("just seen");
            self.of.remove(&key);
            due.push(key);
        }
        due
    }
}

/// A server transaction the endpoint answers on its own (no call behind it).
#[derive(Debug)]
enum ServerMachine {
    NonInvite(NonInviteServer),
    /// An INVITE refused outright: its final response is retransmitted
    /// over UDP until the ACK (Timer G).
    Invite(InviteServer),
}

impl ServerMachine {
    fn is_terminated(&self) -> bool {
        match self {
            ServerMachine::NonInvite(tx) => tx.is_terminated(),
            ServerMachine::Invite(tx) => tx.is_terminated(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ServerMachine::NonInvite(tx) => tx.poll_timeout(),
            ServerMachine::Invite(tx) => tx.poll_timeout(),
        }
    }
}

#[derive(Debug)]
struct ServerTx {
    tx: ServerMachine,
    transport: Transport,
    dest: SocketAddr,
}

/// A call we placed or one we received. Both are large; boxing only the
/// bigger one to please the size lint would buy nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Call {
    Uac(UacCall),
    Uas(UasCall),
    /// A call of a previous run, being ended.
    Recovered(RecoveredCall),
}

impl Call {
    fn transport(&self) -> Transport {
        match self {
            Call::Uac(c) => c.transport(),
            Call::Uas(c) => c.transport(),
            Call::Recovered(c) => c.transport(),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Call::Uac(c) => c.is_finished(),
            Call::Uas(c) => c.is_finished(),
            Call::Recovered(c) => c.is_finished(),
        }
    }

    fn poll_output(&mut self) -> Option<CallOutput> {
        match self {
            Call::Uac(c) => c.poll_output(),
            Call::Uas(c) => c.poll_output(),
            Call::Recovered(c) => c.poll_output(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Call::Uac(c) => c.poll_timeout(),
            Call::Uas(c) => c.poll_timeout(),
            Call::Recovered(c) => c.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Call::Uac(c) => c.handle_timeout(now),
            Call::Uas(c) => c.handle_timeout(now),
            Call::Recovered(c) => c.handle_timeout(now),
        }
    }

    fn handle_response(&mut self, response: Response, now: Instant) {
        match self {
            Call::Uac(c) => c.handle_response(response, now),
            Call::Uas(c) => c.handle_response(response, now),
            Call::Recovered(c) => c.handle_response(response, now),
        }
    }

    fn transport_failed(&mut self, dest: SocketAddr, now: Instant) {
        match self {
            Call::Uac(c) => c.transport_failed(dest, now),
            Call::Uas(c) => c.transport_failed(dest, now),
            Call::Recovered(c) => c.transport_failed(dest, now),
        }
    }

    fn matches_dialog(&self, local_tag: &str, remote_tag: &str) -> bool {
        match self {
            Call::Uac(c) => c.matches_dialog(local_tag, remote_tag),
            Call::Uas(c) => c.matches_dialog(local_tag, remote_tag),
            Call::Recovered(c) => c.matches_dialog(local_tag, remote_tag),
        }
    }

    fn handle_remote_bye(&mut self, request: &Request, now: Instant) {
        match self {
            Call::Uac(c) => c.handle_remote_bye(request, now),
            Call::Uas(c) => c.handle_remote_bye(request, now),
            Call::Recovered(c) => c.handle_remote_bye(request, now),
        }
    }

    fn handle_peer_refresh(&mut self, request: &Request, our_sdp: Option<&str>, now: Instant) {
        match self {
            Call::Uac(c) => c.handle_peer_refresh(request, our_sdp, now),
            Call::Uas(c) => c.handle_peer_refresh(request, our_sdp, now),
            // Ending: a refresh changes nothing.
            Call::Recovered(_) => {}
        }
    }

    fn offer_pending(&self) -> bool {
        match self {
            Call::Uac(c) => c.reinvite_pending(),
            Call::Uas(c) => c.offer_pending(),
            Call::Recovered(_) => false,
        }
    }
}

/// What the call must learn about a request once its response is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Bye,
    Prack,
    Cancel,
    /// An UPDATE without offer: an RFC 4028 session refresh.
    SessionRefresh,
    /// A re-INVITE or UPDATE whose offer was answered: reported to the application.
    Offer {
        method: String,
        offer: String,
    },
    /// A re-INVITE without offer, answered with ours: the answer comes in the ACK of `cseq`.
    OfferlessReinvite {
        cseq: u32,
    },
}

/// The application's side of offers and answers inside a call, called synchronously while the
/// request is handled, so it must be quick.
pub trait OfferAnswerer: Send + Sync {
    /// Answers an offer of the remote party (a re-INVITE or an UPDATE with SDP, e.g. its hold or
    /// resume); `None` refuses it with 488 and the session stays as it was.
    fn answer_offer(&self, call_id: &str, offer: &str) -> Option<String>;

    /// Our offer for a re-INVITE that carries none (RFC 3261 s.14.2, RFC 3264 s.8: typically a
    /// session refresh; an unchanged session keeps its `o=` version). It goes in the 2xx and the
    /// answer comes in the ACK, to [`Self::take_answer`]. `None` refuses the re-INVITE with 488.
    fn make_offer(&self, _call_id: &str) -> Option<String> {
        None
    }

    /// The remote party's answer (from its ACK) to an offer made by [`Self::make_offer`].
    fn take_answer(&self, _call_id: &str, _answer: &str) {}
}

pub struct Endpoint {
    config: EndpointConfig,
    offer_answerer: Option<std::sync::Arc<dyn OfferAnswerer>>,
    calls: HashMap<String, Call>,
    /// Registration bindings by id (their Call-ID).
    registrations: HashMap<String, Registration>,
    servers: HashMap<ServerKey, ServerTx>,
    /// Calls whose offerless re-INVITE (CSeq number) we answered with an offer: its ACK carries
    /// the answer.
    answers_in_ack: HashMap<String, u32>,
    deadlines: Deadlines,
    outputs: VecDeque<Output>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("config", &self.config)
            .field("calls", &self.calls.len())
            .field("registrations", &self.registrations.len())
            .field("offer_answerer", &self.offer_answerer.is_some())
            .finish()
    }
}

/// What to do with a new incoming request.
struct Answer {
    status: u16,
    reason: &'static str,
    /// Add Allow / Accept / Supported (OPTIONS, 405).
    capabilities: bool,
    /// Tell this call about the request once the response is queued.
    deliver: Option<(String, Delivery)>,
    /// An SDP answer for the response body (with a Contact: a target refresh).
    sdp: Option<String>,
}

impl Answer {
    fn plain(status: u16, reason: &'static str) -> Self {
        Self { status, reason, capabilities: false, deliver: None, sdp: None }
    }

    fn with_capabilities(status: u16, reason: &'static str) -> Self {
        Self { capabilities: true, ..Self::plain(status, reason) }
    }
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Self {
        Self {
            config,
            offer_answerer: None,
            calls: HashMap::new(),
            registrations: HashMap::new(),
            servers: HashMap::new(),
            answers_in_ack: HashMap::new(),
            deadlines: Deadlines::default(),
            outputs: VecDeque::new(),
        }
    }

    /// Who answers offers made inside calls; without one they are refused with 488.
    pub fn set_offer_answerer(&mut self, answerer: std::sync::Arc<dyn OfferAnswerer>) {
        self.offer_answerer = Some(answerer);
    }

    /// Starts a call; returns its Call-ID.
    pub fn invite(&mut self, invite: OutgoingInvite, now: Instant) -> Result<String, SipError> {
        let port = match invite.transport {
            Transport::Udp => self.config.udp_port,
            Transport::Tcp => self.config.tcp_port,
            Transport::Tls => self.config.tls_port,
        }
        .ok_or(SipError::TransportUnavailable(invite.transport))?;
        let call_id = match &invite.call_id {
            Some(id) if self.calls.contains_key(id) => {
                return Err(SipError::Config(format!("Call-ID {id} is in use")));
            }
            Some(id) if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c.is_control()) => {
                return Err(SipError::InvalidHeader {
                    name: "Call-ID".into(),
                    reason: "empty or with whitespace".into(),
                });
            }
            Some(id) => id.clone(),
            None => format!("{}@{}", random_token(), self.config.advertised_host),
        };
        let setup = CallSetup {
            call_id: call_id.clone(),
            local_tag: random_token(),
            branch: new_branch(),
            local_host: self.config.advertised_host.clone(),
            local_port: port,
            user_agent: self.config.user_agent.clone(),
        };
        let call = UacCall::new(&invite, setup, self.config.timers, now)?;
        tracing::info!(%call_id, request_uri = %invite.request_uri, next_hop = %invite.next_hop, "placing call");
        self.calls.insert(call_id.clone(), Call::Uac(call));
        self.drain_call(&call_id);
        Ok(call_id)
    }

    /// BYE if answered; CANCEL for an unanswered outgoing call, 480
    /// ([`HangupKind::Reject`]) for an unanswered incoming one.
    pub fn hangup(&mut self, call_id: &str, now: Instant) -> Result<HangupKind, SipError> {
        self.hangup_with_reason(call_id, None, now)
    }

    /// [`Self::hangup`], with `reason` as the Reason header (RFC 3326) of the BYE, if one is sent.
    pub fn hangup_with_reason(
        &mut self,
        call_id: &str,
        reason: Option<String>,
        now: Instant,
    ) -> Result<HangupKind, SipError> {
        let call = self.calls.get_mut(call_id).ok_or_else(|| SipError::UnknownCall(call_id.to_string()))?;
        if let Some(reason) = reason {
            match call {
                Call::Uac(c) => c.set_bye_reason(reason),
                Call::Uas(c) => c.set_bye_reason(reason),
                Call::Recovered(_) => {}
            }
        }
        let kind = match call {
            Call::Uac(c) => c.hangup(now),
            Call::Uas(c) => c.hangup(now),
            Call::Recovered(_) => Ok(HangupKind::Bye),
        }
        .map_err(|_| SipError::UnknownCall(call_id.to_string()))?;
        self.drain_call(call_id);
        Ok(kind)
    }

    /// The confirmed dialog of a call, for the application to persist; `None` before the 2xx,
    /// after the end, or for an unknown call.
    pub fn dialog_snapshot(&self, call_id: &str) -> Option<DialogSnapshot> {
        match self.calls.get(call_id)? {
            Call::Uac(c) => c.dialog_snapshot(),
            Call::Uas(c) => c.dialog_snapshot(),
            Call::Recovered(_) => None,
        }
    }

    /// Ends with BYE a call of a previous run of the process, known by the snapshot of its
    /// dialog; `Terminated` follows once the BYE is answered or fails. Its events carry the
    /// snapshot's Call-ID.
    pub fn end_recovered(&mut self, snapshot: DialogSnapshot, now: Instant) -> Result<(), SipError> {
        let call_id = snapshot.parts.call_id.clone();
        if self.calls.contains_key(&call_id) {
            return Err(SipError::Config(format!("Call-ID {call_id} is in use")));
        }
        tracing::info!(%call_id, "ending a call of the previous run with BYE");
        self.calls.insert(call_id.clone(), Call::Recovered(RecoveredCall::new(snapshot, self.config.timers, now)));
        self.drain_call(&call_id);
        Ok(())
    }

    /// A re-INVITE with `sdp` as the offer in an answered call (see [`Self::offer`]).
    pub fn reinvite(&mut self, call_id: &str, sdp: String, now: Instant) -> Result<(), SipError> {
        self.offer(call_id, OfferMethod::Reinvite, sdp, now)
    }

    /// `sdp` as an offer in a re-INVITE or an UPDATE, in an answered call of either direction;
    /// its final response arrives as [`CallEvent::ReinviteResponse`].
    pub fn offer(&mut self, call_id: &str, method: OfferMethod, sdp: String, now: Instant) -> Result<(), SipError> {
        let call = self.calls.get_mut(call_id).ok_or_else(|| SipError::UnknownCall(call_id.to_string()))?;
        let result = match call {
            Call::Uac(c) => c.offer(method, sdp, now),
            Call::Uas(c) => c.offer(method, sdp, now),
            Call::Recovered(_) => Err(SipError::UnknownCall(call_id.to_string())),
        };
        self.drain_call(call_id);
        result
    }

    /// A provisional response (101-199) to an incoming call.
    pub fn provisional(
        &mut self,
        call_id: &str,
        status: u16,
        sdp: Option<String>,
        reliable: bool,
        now: Instant,
    ) -> Result<(), SipError> {
        let result = self.incoming_call(call_id)?.provisional(status, sdp, reliable, now);
        self.drain_call(call_id);
        result
    }

    /// 200 OK to an incoming call.
    pub fn accept(&mut self, call_id: &str, sdp: Option<String>, now: Instant) -> Result<(), SipError> {
        let result = self.incoming_call(call_id)?.accept(sdp, now);
        self.drain_call(call_id);
        result
    }

    /// A final 3xx-6xx to an incoming call.
    pub fn reject(&mut self, call_id: &str, status: u16, reason: &str, now: Instant) -> Result<(), SipError> {
        let result = self.incoming_call(call_id)?.reject(status, reason, now);
        self.drain_call(call_id);
        result
    }

    /// Starts keeping a contact registered; returns the binding id (the
    /// Call-ID of its REGISTERs) that tags its events.
    pub fn register(&mut self, request: RegisterRequest, now: Instant) -> Result<String, SipError> {
        let port = match request.transport {
            Transport::Udp => self.config.udp_port,
            Transport::Tcp => self.config.tcp_port,
            Transport::Tls => self.config.tls_port,
        }
        .ok_or(SipError::TransportUnavailable(request.transport))?;
        check_register_request(&request)?;
        let call_id = format!("{}@{}", random_token(), self.config.advertised_host);
        let setup = RegistrationSetup {
            call_id: call_id.clone(),
            from_tag: random_token(),
            local_host: self.config.advertised_host.clone(),
            local_port: port,
            user_agent: self.config.user_agent.clone(),
        };
        tracing::info!(binding = %call_id, aor = %request.aor, registrar = %request.registrar, "registering");
        let registration = Registration::new(request, setup, self.config.timers, now);
        self.registrations.insert(call_id.clone(), registration);
        self.drain_registration(&call_id);
        Ok(call_id)
    }

    /// Removes a binding (REGISTER with Expires: 0); `Unregistered` follows.
    pub fn unregister(&mut self, binding_id: &str, now: Instant) -> Result<(), SipError> {
        let registration =
            self.registrations.get_mut(binding_id).ok_or_else(|| SipError::UnknownCall(binding_id.to_string()))?;
        let result = registration.unregister(now);
        self.drain_registration(binding_id);
        result
    }

    /// Number of registration bindings still held.
    pub fn registration_count(&self) -> usize {
        self.registrations.len()
    }

    fn drain_registration(&mut self, binding_id: &str) {
        let Some(registration) = self.registrations.get_mut(binding_id) else {
            return;
        };
        while let Some(out) = registration.poll_output() {
            self.outputs.push_back(match out {
                RegistrationOutput::Transmit(t) => Output::Transmit(t),
                RegistrationOutput::Event(event) => {
                    Output::Event(UaEvent { call_id: binding_id.to_string(), event: CallEvent::Registration(event) })
                }
            });
        }
        let at = if registration.is_finished() {
            self.registrations.remove(binding_id);
            None
        } else {
            registration.poll_timeout()
        };
        self.deadlines.set(Timed::Registration(binding_id.to_string()), at);
    }

    fn incoming_call(&mut self, call_id: &str) -> Result<&mut UasCall, SipError> {
        match self.calls.get_mut(call_id) {
            Some(Call::Uas(call)) => Ok(call),
            _ => Err(SipError::UnknownCall(call_id.to_string())),
        }
    }

    /// One datagram, or one framed message from a stream.
    pub fn handle_input(&mut self, transport: Transport, source: SocketAddr, data: &[u8], now: Instant) {
        match parse(data) {
            Ok(Message::Response(response)) => self.handle_response(response, now),
            Ok(Message::Request(mut request)) => {
                stamp_top_via(&mut request, source);
                self.handle_request(request, transport, source, now);
            }
            Err(ParseError::Refused(refusal)) => self.refuse_unparsed(*refusal, transport, source),
            Err(error) => {
                tracing::warn!(%source, ?transport, %error, "malformed SIP message dropped")
            }
        }
    }

    /// A request the parser could not take in whole but can answer (RFC 3261 s.8.2: 400, 501,
    /// 505), statelessly: a retransmission gets the same answer again.
    fn refuse_unparsed(&mut self, mut refusal: Refusal, transport: Transport, source: SocketAddr) {
        tracing::warn!(%source, ?transport, status = refusal.status, why = refusal.why, "SIP request refused");
        if refusal.method == Some(Method::Ack) {
            return;
        }
        stamp_via(&mut refusal.headers, source);
        let Some((_, dest)) = self.response_dest(&refusal.headers, transport, source) else { return };
        let mut response = response_to_headers(&refusal.headers, refusal.status, refusal.reason, Some(&random_token()));
        if refusal.status == 501 {
            response.headers.push("Allow", ALLOW);
        }
        self.send(transport, dest, response);
    }

    /// The request's top Via and where its response goes: back on its connection over TCP and
    /// TLS, to that Via over UDP (`None` when there is no usable Via or it cannot be resolved).
    fn response_dest(&self, headers: &Headers, transport: Transport, source: SocketAddr) -> Option<(Via, SocketAddr)> {
        let Some(via) = headers.get("Via").and_then(Via::parse) else {
            tracing::warn!(%source, "request without a usable Via dropped");
            return None;
        };
        let dest = match transport {
            Transport::Tcp | Transport::Tls => Some(source),
            Transport::Udp => {
                let dest = response_destination(&via);
                if dest.is_none() {
                    tracing::warn!(%source, "cannot route a response to the request's Via; dropped");
                }
                dest
            }
        };
        dest.map(|dest| (via, dest))
    }

    /// The transport could not deliver to `dest` (e.g. TCP connect failed).
    pub fn transport_failed(&mut self, transport: Transport, dest: SocketAddr, now: Instant) {
        let ids: Vec<String> =
            self.calls.iter().filter(|(_, c)| c.transport() == transport).map(|(id, _)| id.clone()).collect();
        for id in ids {
            if let Some(call) = self.calls.get_mut(&id) {
                call.transport_failed(dest, now);
            }
            self.drain_call(&id);
        }
        let ids: Vec<String> =
            self.registrations.iter().filter(|(_, r)| r.transport() == transport).map(|(id, _)| id.clone()).collect();
        for id in ids {
            if let Some(registration) = self.registrations.get_mut(&id) {
                registration.transport_failed(dest, now);
            }
            self.drain_registration(&id);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for key in self.deadlines.take_due(now) {
            match key {
                Timed::Call(id) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.handle_timeout(now);
                    }
                    self.drain_call(&id);
                }
                Timed::Registration(id) => {
                    if let Some(registration) = self.registrations.get_mut(&id) {
                        registration.handle_timeout(now);
                    }
                    self.drain_registration(&id);
                }
                Timed::Server(key) => {
                    let mut retransmit = Vec::new();
                    if let Some(server) = self.servers.get_mut(&key) {
                        match &mut server.tx {
                            ServerMachine::NonInvite(tx) => tx.handle_timeout(now),
                            ServerMachine::Invite(tx) => {
                                tx.handle_timeout(now);
                                while let Some(out) = tx.poll_output() {
                                    if let ServerOutput::Transmit(response) = out {
                                        retransmit.push((server.transport, server.dest, response));
                                    }
                                }
                            }
                        }
                    }
                    for (transport, dest, response) in retransmit {
                        self.send(transport, dest, response);
                    }
                    self.settle_server(&key);
                }
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Number of calls still held, including ones lingering to absorb retransmissions.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    fn drain_call(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        while let Some(out) = call.poll_output() {
            self.outputs.push_back(match out {
                CallOutput::Transmit(t) => Output::Transmit(t),
                CallOutput::Event(event) => Output::Event(UaEvent { call_id: call_id.to_string(), event }),
            });
        }
        let at = if call.is_finished() {
            self.calls.remove(call_id);
            self.answers_in_ack.remove(call_id);
            None
        } else {
            call.poll_timeout()
        };
        self.deadlines.set(Timed::Call(call_id.to_string()), at);
    }

    /// Re-files a server transaction's deadline, or forgets it once terminated.
    fn settle_server(&mut self, key: &ServerKey) {
        let at = match self.servers.get(key) {
            Some(server) if server.tx.is_terminated() => {
                self.servers.remove(key);
                None
            }
            Some(server) => server.tx.poll_timeout(),
            None => None,
        };
        self.deadlines.set(Timed::Server(key.clone()), at);
    }

    fn handle_response(&mut self, response: Response, now: Instant) {
        let Some(call_id) = response.call_id().map(str::to_string) else {
            tracing::warn!("response without Call-ID dropped");
            return;
        };
        if let Some(registration) = self.registrations.get_mut(&call_id) {
            registration.handle_response(response, now);
            self.drain_registration(&call_id);
            return;
        }
        match self.calls.get_mut(&call_id) {
            Some(call) => call.handle_response(response, now),
            None => {
                tracing::debug!(%call_id, status = response.status, "response for no known call dropped")
            }
        }
        self.drain_call(&call_id);
    }

    fn handle_request(&mut self, request: Request, transport: Transport, source: SocketAddr, now: Instant) {
        let Some((via, dest)) = self.response_dest(&request.headers, transport, source) else { return };
        let is_ack = request.method == Method::Ack;

        let well_formed = request.call_id().is_some()
            && request.headers.get("From").is_some()
            && request.headers.get("To").is_some()
            && request.cseq().is_some_and(|(_, m)| m == request.method);
        if !well_formed {
            tracing::warn!(%source, method = %request.method, "request with missing or malformed mandatory headers");
            if !is_ack {
                let response = response_to(&request, 400, "Bad Request", Some(&random_token()));
                self.send(transport, dest, response);
            }
            return;
        }
        if !is_ack && let Err((status, reason, accept)) = acceptable(&request) {
            tracing::info!(%source, method = %request.method, status, "SIP request refused");
            let mut response = response_to(&request, status, reason, Some(&random_token()));
            if accept {
                response.headers.push("Accept", ACCEPT);
            }
            self.send(transport, dest, response);
            return;
        }

        // An ACK for a non-2xx carries the INVITE's branch (s.17.2.3).
        let call_id = request.call_id().unwrap_or_default().to_string();
        let key = ServerKey {
            branch: via.branch.clone().unwrap_or_default(),
            sent_by: via.sent_by(),
            method: if is_ack { Method::Invite.to_string() } else { request.method.to_string() },
        };
        if let Some(server) = self.servers.get_mut(&key) {
            let (transport, dest) = (server.transport, server.dest);
            let mut responses = Vec::new();
            match &mut server.tx {
                ServerMachine::NonInvite(tx) => {
                    if !is_ack && let Some(response) = tx.handle_retransmission() {
                        responses.push(response);
                    }
                }
                ServerMachine::Invite(tx) => {
                    if is_ack {
                        tx.handle_ack(now);
                    } else {
                        tx.handle_retransmission();
                    }
                    while let Some(out) = tx.poll_output() {
                        if let ServerOutput::Transmit(response) = out {
                            responses.push(response);
                        }
                    }
                }
            }
            self.settle_server(&key);
            for response in responses {
                self.send(transport, dest, response);
            }
            return;
        }

        if is_ack
            && self.answers_in_ack.get(&call_id).is_some_and(|&cseq| request.cseq().is_some_and(|(n, _)| n == cseq))
        {
            self.answers_in_ack.remove(&call_id);
            match (&self.offer_answerer, request.sdp()) {
                (Some(answerer), Some(answer)) => answerer.take_answer(&call_id, &answer),
                _ => tracing::warn!(%call_id, "ACK without the answer to our offer; the session stays as it was"),
            }
            return;
        }

        // The INVITE of an incoming call, retransmitted, or the ACK of any of its final responses.
        if let Some(Call::Uas(call)) = self.calls.get_mut(&call_id) {
            let same_invite = call.matches_invite(&key.branch, &key.sent_by);
            match request.method {
                Method::Ack => {
                    call.handle_ack(&request, now);
                    self.drain_call(&call_id);
                    return;
                }
                Method::Invite if same_invite => {
                    call.handle_invite_retransmission(now);
                    self.drain_call(&call_id);
                    return;
                }
                _ => {}
            }
        }
        if is_ack {
            tracing::debug!(%source, "ACK outside any transaction dropped");
            return;
        }
        if request.method == Method::Invite && request.tag_of_to().is_none() {
            self.incoming_invite(request, transport, dest, key, now);
            return;
        }

        let answer = self.answer(&request);
        let mut response = response_to(&request, answer.status, answer.reason, Some(&random_token()));
        if answer.capabilities {
            response.headers.push("Allow", ALLOW);
            response.headers.push("Accept", ACCEPT);
            response.headers.push("Supported", "100rel");
        }
        if answer.deliver.as_ref().is_some_and(|(_, d)| {
            matches!(d, Delivery::SessionRefresh | Delivery::Offer { .. } | Delivery::OfferlessReinvite { .. })
        }) && let Some(session_expires) = request.headers.get("Session-Expires")
        {
            // RFC 4028 s.9: the 2xx to a refresh carries the session interval back.
            let interval = session_expires.split(';').next().unwrap_or_default().trim().to_string();
            let refresher = crate::message::header_param(session_expires, "refresher").flatten().unwrap_or("uac");
            response.headers.push("Require", "timer");
            response.headers.push("Session-Expires", format!("{interval};refresher={refresher}"));
        }
        if let Some(sdp) = &answer.sdp {
            let port = match transport {
                Transport::Udp => self.config.udp_port,
                Transport::Tcp => self.config.tcp_port,
                Transport::Tls => self.config.tls_port,
            }
            .unwrap_or(5060);
            let contact = format!("<sip:{}:{port};transport={}>", self.config.advertised_host, transport.uri_param());
            response.headers.push("Contact", contact);
            response.headers.push("Content-Type", "application/sdp");
            response.body = sdp.as_bytes().to_vec();
        }
        if !self.config.user_agent.is_empty() {
            response.headers.push("Server", self.config.user_agent.as_str());
        }
        let mut tx = NonInviteServer::new(transport.is_reliable(), self.config.timers);
        if let Some(response) = tx.respond(response, now) {
            self.send(transport, dest, response);
        }
        if !tx.is_terminated() {
            self.servers.insert(key.clone(), ServerTx { tx: ServerMachine::NonInvite(tx), transport, dest });
            self.settle_server(&key);
        }
        if let Some((call_id, delivery)) = answer.deliver {
            match (self.calls.get_mut(&call_id), delivery) {
                (Some(call), Delivery::Bye) => call.handle_remote_bye(&request, now),
                (Some(Call::Uas(call)), Delivery::Prack) => call.handle_prack(&request, now),
                (Some(Call::Uas(call)), Delivery::Cancel) => call.handle_cancel(&request, now),
                (Some(call), Delivery::SessionRefresh) => call.handle_peer_refresh(&request, None, now),
                (Some(call), Delivery::OfferlessReinvite { cseq }) => {
                    call.handle_peer_refresh(&request, answer.sdp.as_deref(), now);
                    self.answers_in_ack.insert(call_id.clone(), cseq);
                }
                (Some(call), Delivery::Offer { method, offer }) => {
                    call.handle_peer_refresh(&request, answer.sdp.as_deref(), now);
                    let headers = request.headers.to_vec();
                    let event = CallEvent::Request { method, reason: None, sdp: Some(offer), headers };
                    self.outputs.push_back(Output::Event(UaEvent { call_id: call_id.clone(), event }));
                }
                _ => {}
            }
            self.drain_call(&call_id);
        }
    }

    /// An out-of-dialog INVITE: a new incoming call, unless it must be refused.
    fn incoming_invite(
        &mut self,
        request: Request,
        transport: Transport,
        dest: SocketAddr,
        key: ServerKey,
        now: Instant,
    ) {
        let call_id = key_call_id(&request);
        if self.calls.contains_key(&call_id) {
            // s.8.2.2.2: same Call-ID, other branch: a merged request (or our own call looped back).
            let refusal = InviteRefusal { status: 482, reason: "Loop Detected", headers: vec![] };
            self.refuse_invite(&request, refusal, transport, dest, key, now);
            return;
        }
        let port = match transport {
            Transport::Udp => self.config.udp_port,
            Transport::Tcp => self.config.tcp_port,
            Transport::Tls => self.config.tls_port,
        }
        .unwrap_or_default();
        let setup = UasSetup {
            local_tag: random_token(),
            local_host: self.config.advertised_host.clone(),
            local_port: port,
            user_agent: self.config.user_agent.clone(),
        };
        match UasCall::new(request.clone(), setup, transport, dest, self.config.timers, now) {
            Ok(call) => {
                tracing::info!(%call_id, uri = %request.uri, "incoming call");
                self.calls.insert(call_id.clone(), Call::Uas(call));
                self.drain_call(&call_id);
            }
            Err(refusal) => {
                tracing::info!(%call_id, status = refusal.status, "incoming call refused");
                self.refuse_invite(&request, refusal, transport, dest, key, now);
            }
        }
    }

    /// A final response to an INVITE through an INVITE server transaction,
    /// so it is retransmitted over UDP until the ACK.
    fn refuse_invite(
        &mut self,
        request: &Request,
        refusal: InviteRefusal,
        transport: Transport,
        dest: SocketAddr,
        key: ServerKey,
        now: Instant,
    ) {
        let mut response = response_to(request, refusal.status, refusal.reason, Some(&random_token()));
        for (name, value) in refusal.headers {
            response.headers.push(name, value);
        }
        if !self.config.user_agent.is_empty() {
            response.headers.push("Server", self.config.user_agent.as_str());
        }
        let mut tx = InviteServer::new(transport.is_reliable(), self.config.timers);
        tx.respond(response, now);
        while let Some(out) = tx.poll_output() {
            if let ServerOutput::Transmit(response) = out {
                self.send(transport, dest, response);
            }
        }
        self.servers.insert(key.clone(), ServerTx { tx: ServerMachine::Invite(tx), transport, dest });
        self.settle_server(&key);
    }

    fn answer(&self, request: &Request) -> Answer {
        let method = request.method;
        let Some(local_tag) = request.tag_of_to() else {
            return match method {
                Method::Options => Answer::with_capabilities(200, "OK"),
                // s.9.2: a CANCEL matches the INVITE server transaction by its branch.
                Method::Cancel => match request.call_id().and_then(|id| self.calls.get(id)) {
                    Some(Call::Uas(call))
                        if request.top_via().is_some_and(|v| {
                            call.matches_invite(v.branch.as_deref().unwrap_or_default(), &v.sent_by())
                        }) =>
                    {
                        Answer {
                            deliver: Some((call.call_id().to_string(), Delivery::Cancel)),
                            ..Answer::plain(200, "OK")
                        }
                    }
                    _ => Answer::plain(481, "Call/Transaction Does Not Exist"),
                },
                // These only make sense inside a dialog or transaction we would know.
                Method::Bye | Method::PRack | Method::Update => Answer::plain(481, "Call/Transaction Does Not Exist"),
                _ => Answer::with_capabilities(405, "Method Not Allowed"),
            };
        };

        let call = request
            .call_id()
            .and_then(|id| self.calls.get(id))
            .filter(|call| request.tag_of_from().is_some_and(|remote_tag| call.matches_dialog(local_tag, remote_tag)));
        let Some(call) = call else {
            // s.12.2.2: a request for a dialog we do not have.
            return Answer::plain(481, "Call/Transaction Does Not Exist");
        };
        let call_id = request.call_id().unwrap_or_default().to_string();
        match method {
            Method::Bye => Answer { deliver: Some((call_id, Delivery::Bye)), ..Answer::plain(200, "OK") },
            // RFC 3262 s.3: 200 only for the PRACK of the reliable provisional in flight.
            Method::PRack => match call {
                Call::Uas(uas) if uas.prack_status(request) == 200 => {
                    Answer { deliver: Some((call_id, Delivery::Prack)), ..Answer::plain(200, "OK") }
                }
                _ => Answer::plain(481, "Call/Transaction Does Not Exist"),
            },
            Method::Options => Answer::with_capabilities(200, "OK"),
            // A session refresh without an offer needs nothing from us.
            Method::Update if request.body.is_empty() => {
                Answer { deliver: Some((call_id, Delivery::SessionRefresh)), ..Answer::plain(200, "OK") }
            }
            // RFC 3261 s.14.2, RFC 3311 s.5.2: offers crossing ours wait.
            Method::Update | Method::Invite if call.offer_pending() => Answer::plain(491, "Request Pending"),
            Method::Invite if request.body.is_empty() => {
                match self.offer_answerer.as_ref().and_then(|a| a.make_offer(&call_id)) {
                    Some(sdp) => Answer {
                        sdp: Some(sdp),
                        deliver: request.cseq().map(|(cseq, _)| (call_id, Delivery::OfferlessReinvite { cseq })),
                        ..Answer::plain(200, "OK")
                    },
                    None => {
                        tracing::info!(%call_id, "no offer for an offerless re-INVITE; answering 488");
                        Answer::plain(488, "Not Acceptable Here")
                    }
                }
            }
            Method::Update | Method::Invite => {
                let offer = String::from_utf8_lossy(&request.body).into_owned();
                let answer = match (&self.offer_answerer, offer.is_empty()) {
                    (Some(answerer), false) => answerer.answer_offer(&call_id, &offer),
                    _ => None,
                };
                match answer {
                    Some(sdp) => Answer {
                        sdp: Some(sdp),
                        deliver: Some((call_id, Delivery::Offer { method: method.to_string(), offer })),
                        ..Answer::plain(200, "OK")
                    },
                    None => {
                        tracing::info!(%call_id, %method, "mid-call offer not answerable; answering 488");
                        Answer::plain(488, "Not Acceptable Here")
                    }
                }
            }
            // A CANCEL inside a dialog would target a re-INVITE, which we never leave pending.
            Method::Cancel => Answer::plain(481, "Call/Transaction Does Not Exist"),
            _ => Answer::with_capabilities(405, "Method Not Allowed"),
        }
    }

    fn send(&mut self, transport: Transport, dest: SocketAddr, response: Response) {
        self.outputs.push_back(Output::Transmit(Transmit { transport, dest, message: Message::Response(response) }));
    }
}

/// The bodies this user agent reads: SDP, alone or in a multipart body (RFC 5621).
const ACCEPT: &str = "application/sdp, multipart/mixed";

/// The URI schemes a request may be addressed with: SIP URIs, telephone numbers (RFC 3966) and
/// service URNs (RFC 5031, `urn:service:sos`).
const URI_SCHEMES: [&str; 4] = ["sip", "sips", "tel", "urn"];

/// RFC 3261 s.8.2.2.1 and s.8.2.3: what a request that reached us must be refused with before
/// it is looked at (status, reason, and whether `Accept` goes with it), if anything.
fn acceptable(request: &Request) -> Result<(), (u16, &'static str, bool)> {
    if check_uri(&request.uri).is_err() {
        return Err((400, "Bad Request", false));
    }
    let scheme = request.uri.split_once(':').map(|(s, _)| s).unwrap_or_default();
    if !URI_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Err((416, "Unsupported URI Scheme", false));
    }
    // Bodies are read only where they carry an offer or an answer.
    if !matches!(request.method, Method::Invite | Method::Update | Method::PRack) || request.body.is_empty() {
        return Ok(());
    }
    let encoded = request.headers.get("Content-Encoding").is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    let content_type = request.headers.get("Content-Type").unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    let known = ACCEPT.split(',').any(|t| t.trim().eq_ignore_ascii_case(media_type));
    if encoded || !known {
        return Err((415, "Unsupported Media Type", true));
    }
    Ok(())
}

fn key_call_id(request: &Request) -> String {
    request.call_id().unwrap_or_default().to_string()
}

/// Everything of a [`RegisterRequest`] that ends up in a header or URI.
fn check_register_request(request: &RegisterRequest) -> Result<(), SipError> {
    let invalid =
        |name: &str, reason: &str| SipError::InvalidHeader { name: name.to_string(), reason: reason.to_string() };
    check_uri(&request.aor)?;
    let scheme = request.aor.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("sip" | "sips")) {
        return Err(SipError::InvalidUri {
            uri: request.aor.clone(),
            reason: "the address of record must be a SIP URI".into(),
        });
    }
    if request.domain.is_empty() || request.domain.contains(['@', ';', '?']) {
        return Err(SipError::InvalidUri {
            uri: request.domain.clone(),
            reason: "the registrar domain must be a bare host".into(),
        });
    }
    check_uri(&format!("sip:{}", request.domain))?;
    if request.contact_user.contains(['@', ';', '?', ':'])
        || (!request.contact_user.is_empty() && check_uri(&format!("sip:{}@h", request.contact_user)).is_err())
    {
        return Err(invalid("Contact", "invalid user part"));
    }
    for (name, value) in [("username", &request.username), ("password", &request.password)] {
        if value.chars().any(char::is_control) {
            return Err(invalid(name, "control characters"));
        }
    }
    if request.expires == 0 {
        return Err(SipError::Config("expires must be above 0".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallEvent, NameAddr};
    use std::time::Duration;

    const PEER: &str = "192.0.2.10:5070";

    fn endpoint() -> Endpoint {
        Endpoint::new(EndpointConfig {
            advertised_host: "gw.example.com".into(),
            udp_port: Some(5060),
            tcp_port: None,
            tls_port: None,
            user_agent: "test-ua".into(),
            timers: TimerConfig::default(),
        })
    }

    fn drain(ep: &mut Endpoint) -> Vec<Output> {
        std::iter::from_fn(|| ep.poll_output()).collect()
    }

    fn sent_responses(outputs: &[Output]) -> Vec<(SocketAddr, Response)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(Transmit { dest, message: Message::Response(r), .. }) => Some((*dest, r.clone())),
                _ => None,
            })
            .collect()
    }

    fn sent_requests(outputs: &[Output]) -> Vec<Request> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(Transmit { message: Message::Request(r), .. }) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn request_text(method: &str, to_tag: Option<&str>, call_id: &str, from_tag: &str) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "{method} sip:gw.example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP peer.example.com:5070;branch=z9hG4bKin1;rport\r\n\
             From: <sip:peer@example.com>;tag={from_tag}\r\n\
             To: <sip:gw.example.com>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 7 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    fn input(ep: &mut Endpoint, text: &str, now: Instant) -> Vec<Output> {
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), text.as_bytes(), now);
        drain(ep)
    }

    fn register_request() -> RegisterRequest {
        RegisterRequest {
            registrar: PEER.parse().unwrap(),
            transport: Transport::Udp,
            domain: "operator.com".into(),
            aor: "sip:+818000000001@operator.com".into(),
            contact_user: "+818000000001".into(),
            username: "user1".into(),
            password: "secret".into(),
            expires: 3600,
        }
    }

    /// A registrar response as it comes off the wire, so the header values
    /// go through the parser.
    fn registrar_response(req: &Request, status: &str, extra: &[&str]) -> String {
        let mut text = format!("SIP/2.0 {status}\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            let mut value = req.headers.get(name).unwrap().to_string();
            if name == "To" {
                value.push_str(";tag=reg");
            }
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        for header in extra {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        text
    }

    fn registration_events(outputs: &[Output], binding: &str) -> Vec<crate::RegistrationEvent> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Event(UaEvent { call_id, event: CallEvent::Registration(e) }) if call_id == binding => {
                    Some(e.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn registration_through_the_endpoint() {
        use crate::RegistrationEvent;
        let mut ep = endpoint();
        let now = Instant::now();
        let mut bad = register_request();
        bad.transport = Transport::Tcp;
        assert!(matches!(ep.register(bad, now), Err(SipError::TransportUnavailable(Transport::Tcp))));
        let mut bad = register_request();
        bad.aor = "tel:+818000000001".into();
        assert!(matches!(ep.register(bad, now), Err(SipError::InvalidUri { .. })));
        let mut bad = register_request();
        bad.contact_user = "a b".into();
        assert!(ep.register(bad, now).is_err());
        assert!(matches!(ep.unregister("nope", now), Err(SipError::UnknownCall(_))));

        let binding = ep.register(register_request(), now).unwrap();
        assert!(binding.ends_with("@gw.example.com"));
        let [first] = sent_requests(&drain(&mut ep)).try_into().unwrap();
        assert_eq!(first.call_id(), Some(binding.as_str()));
        let challenge = registrar_response(
            &first,
            "401 Unauthorized",
            &[
                "WWW-Authenticate: Digest realm=\"operator.com\", nonce=\"abc/+=\", algorithm=MD5, qop=\"auth,auth-int\", opaque=\"xyz\"",
            ],
        );
        let out = input(&mut ep, &challenge, now);
        let [second] = sent_requests(&out).try_into().unwrap();
        let auth = second.headers.get("Authorization").unwrap();
        assert!(auth.starts_with("Digest username=\"user1\", realm=\"operator.com\", nonce=\"abc/+=\", uri=\"sip:operator.com\", response=\""), "{auth}");
        assert!(auth.contains("qop=auth, nc=00000001") && auth.contains("opaque=\"xyz\""), "{auth}");
        let ok = registrar_response(
            &second,
            "200 OK",
            &["Contact: <sip:+818000000001@gw.example.com:5060;transport=udp>;expires=1200", "Expires: 3600"],
        );
        let out = input(&mut ep, &ok, now);
        assert_eq!(registration_events(&out, &binding), [RegistrationEvent::Registered { expires: 1200 }]);
        assert_eq!(ep.poll_timeout(), Some(now + Duration::from_secs(600)));

        ep.unregister(&binding, now).unwrap();
        let [un] = sent_requests(&drain(&mut ep)).try_into().unwrap();
        assert_eq!(un.headers.get("Expires"), Some("0"));
        let out = input(&mut ep, &registrar_response(&un, "200 OK", &[]), now);
        assert_eq!(registration_events(&out, &binding), [RegistrationEvent::Unregistered]);
        assert_eq!(ep.registration_count(), 0);
        assert_eq!(ep.poll_timeout(), None);
    }

    #[test]
    fn options_is_answered_with_capabilities_and_retransmissions_replayed() {
        let mut ep = endpoint();
        let now = Instant::now();
        let options = request_text("OPTIONS", None, "o1", "p1");
        let out = sent_responses(&input(&mut ep, &options, now));
        let [(dest, ok)] = out.as_slice() else { panic!("{out:?}") };
        // rport: back to the source port, not the Via port.
        assert_eq!(*dest, PEER.parse().unwrap());
        assert_eq!(ok.status, 200);
        assert_eq!(ok.headers.get("Allow"), Some(ALLOW));
        assert_eq!(ok.headers.get("Accept"), Some(ACCEPT));
        assert_eq!(
            ok.headers.get("Via"),
            Some("SIP/2.0/UDP peer.example.com:5070;branch=z9hG4bKin1;received=192.0.2.10;rport=5070")
        );
        assert!(ok.tag_of_to().is_some());

        let again = sent_responses(&input(&mut ep, &options, now));
        assert_eq!(again, out, "retransmission gets the same response");
        ep.handle_timeout(now + std::time::Duration::from_secs(32));
        assert_eq!(ep.poll_timeout(), None);
    }

    #[test]
    fn refused_invite_is_retransmitted_until_ack() {
        let mut ep = endpoint();
        let now = Instant::now();
        // No Contact: no dialog can be built, the INVITE is refused.
        let invite = request_text("INVITE", None, "i1", "p1");
        let out = sent_responses(&input(&mut ep, &invite, now));
        let [(_, refused)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(refused.status, 400);
        // Timer G over UDP.
        ep.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(sent_responses(&drain(&mut ep)), out);
        // The retransmitted INVITE gets the same response.
        assert_eq!(sent_responses(&input(&mut ep, &invite, now)), out);
        let ack = request_text("ACK", refused.tag_of_to(), "i1", "p1");
        assert!(input(&mut ep, &ack, now).is_empty());
        ep.handle_timeout(now + Duration::from_secs(2));
        assert!(drain(&mut ep).is_empty(), "no retransmission after the ACK");
        // Timer I ends the transaction.
        ep.handle_timeout(now + Duration::from_secs(8));
        assert_eq!(ep.poll_timeout(), None);
        assert_eq!(ep.call_count(), 0);
    }

    #[test]
    fn invite_requiring_an_unknown_extension_gets_420() {
        let mut ep = endpoint();
        let now = Instant::now();
        let invite = incoming_invite("u1", &["Require: 100rel, precondition"], None);
        let out = sent_responses(&input(&mut ep, &invite, now));
        assert_eq!(out[0].1.status, 420);
        assert_eq!(out[0].1.headers.get("Unsupported"), Some("precondition"));
        assert_eq!(ep.call_count(), 0);
    }

    #[test]
    fn unknown_dialog_gets_481_and_bad_requests_400() {
        let mut ep = endpoint();
        let now = Instant::now();
        let out = sent_responses(&input(&mut ep, &request_text("BYE", Some("x"), "nope", "p1"), now));
        assert_eq!(out[0].1.status, 481);
        let bad = request_text("BYE", Some("x"), "c", "p1").replace("CSeq: 7 BYE", "CSeq: seven BYE");
        let out = sent_responses(&input(&mut ep, &bad, now));
        assert_eq!(out[0].1.status, 400);
        assert!(input(&mut ep, "garbage\r\n\r\n", now).is_empty());
        let out = sent_responses(&input(&mut ep, &request_text("MESSAGE", None, "m", "p1"), now));
        assert_eq!(out[0].1.status, 405);
    }

    #[test]
    fn remote_bye_is_answered_then_reported() {
        let mut ep = endpoint();
        let now = Instant::now();
        let call_id = ep
            .invite(
                OutgoingInvite {
                    call_id: None,
                    request_uri: "sip:bob@192.0.2.10:5070".into(),
                    from: NameAddr { display_name: None, uri: "sip:alice@example.com".into() },
                    to: NameAddr { display_name: None, uri: "sip:bob@example.com".into() },
                    p_asserted_identity: None,
                    privacy: None,
                    extra_headers: vec![],
                    sdp: None,
                    extra_body_parts: vec![],
                    next_hop: PEER.parse().unwrap(),
                    transport: Transport::Udp,
                    credentials: None,
                },
                now,
            )
            .unwrap();
        assert!(call_id.ends_with("@gw.example.com"));
        let invite = sent_requests(&drain(&mut ep)).remove(0);
        assert!(matches!(
            ep.invite(OutgoingInvite { call_id: None, transport: Transport::Tcp, ..sample_invite() }, now),
            Err(SipError::TransportUnavailable(Transport::Tcp))
        ));

        let mut ok = response_to(&invite, 200, "OK", Some("r1"));
        ok.headers.push("Contact", "<sip:bob@192.0.2.10:5070>");
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &ok.to_bytes(), now);
        let out = drain(&mut ep);
        assert_eq!(sent_requests(&out)[0].method, Method::Ack);

        let local_tag = invite.tag_of_from().unwrap().to_string();
        let bye = request_text("BYE", Some(&local_tag), &call_id, "r1");
        let out = input(&mut ep, &bye, now);
        assert_eq!(sent_responses(&out)[0].1.status, 200);
        let events: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.event.clone().without_headers()),
                _ => None,
            })
            .collect();
        assert_eq!(
            events,
            [
                CallEvent::Request { method: "BYE".into(), reason: None, sdp: None, headers: vec![] },
                CallEvent::Terminated { cause: crate::EndCause::Remote }
            ]
        );
        assert!(matches!(ep.hangup(&call_id, now), Err(SipError::UnknownCall(_))));
        assert!(matches!(ep.hangup("other", now), Err(SipError::UnknownCall(_))));
    }

    #[test]
    fn update_refreshes_the_session_of_an_outgoing_call() {
        let mut ep = endpoint();
        let mut now = Instant::now();
        let call_id = ep.invite(sample_invite(), now).unwrap();
        let invite = sent_requests(&drain(&mut ep)).remove(0);
        assert_eq!(invite.headers.get("Session-Expires"), Some("1800"));
        let mut ok = response_to(&invite, 200, "OK", Some("r1"));
        ok.headers.push("Contact", "<sip:bob@192.0.2.10:5070>");
        ok.headers.push("Session-Expires", "90;refresher=uas");
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &ok.to_bytes(), now);
        drain(&mut ep);

        now += Duration::from_secs(50);
        ep.handle_timeout(now);
        assert!(sent_requests(&drain(&mut ep)).is_empty());
        let local_tag = invite.tag_of_from().unwrap().to_string();
        let update = request_text("UPDATE", Some(&local_tag), &call_id, "r1")
            .replace("Content-Length: 0", "Session-Expires: 90;refresher=uac\r\nContent-Length: 0");
        let out = input(&mut ep, &update, now);
        let responses = sent_responses(&out);
        let [(_, response)] = responses.as_slice() else { panic!("{out:?}") };
        assert_eq!(response.status, 200);
        assert_eq!(response.headers.get("Require"), Some("timer"));
        assert_eq!(response.headers.get("Session-Expires"), Some("90;refresher=uac"));

        // The deadline (60 s) now counts from the UPDATE.
        now += Duration::from_secs(59);
        ep.handle_timeout(now);
        assert!(sent_requests(&drain(&mut ep)).is_empty());
        now += Duration::from_secs(1);
        ep.handle_timeout(now);
        let out = drain(&mut ep);
        assert_eq!(sent_requests(&out)[0].method, Method::Bye);
        assert!(out.iter().any(|o| matches!(o, Output::Event(e) if e.event == CallEvent::Terminated { cause: crate::EndCause::SessionExpired })));
    }

    #[test]
    fn a_reinvite_with_an_offer_is_answered_by_the_offer_answerer_or_refused() {
        struct Hold;
        impl OfferAnswerer for Hold {
            fn answer_offer(&self, _call_id: &str, offer: &str) -> Option<String> {
                offer.contains("a=sendonly").then(|| "v=0\r\na=recvonly\r\n".to_string())
            }
        }
        let mut ep = endpoint();
        let now = Instant::now();
        let call_id = ep.invite(sample_invite(), now).unwrap();
        let invite = sent_requests(&drain(&mut ep)).remove(0);
        let mut ok = response_to(&invite, 200, "OK", Some("r1"));
        ok.headers.push("Contact", "<sip:bob@192.0.2.10:5070>");
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &ok.to_bytes(), now);
        drain(&mut ep);
        let local_tag = invite.tag_of_from().unwrap().to_string();
        let with_body = |branch: &str, body: &str| {
            request_text("INVITE", Some(&local_tag), &call_id, "r1").replace("z9hG4bKin1", branch).replace(
                "Content-Length: 0\r\n",
                &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n", body.len()),
            ) + body
        };

        // No answerer yet: refused, nothing reported.
        let out = input(&mut ep, &with_body("z9hG4bKh1", "v=0\r\na=sendonly\r\n"), now);
        assert_eq!(sent_responses(&out)[0].1.status, 488);
        assert!(!out.iter().any(|o| matches!(o, Output::Event(_))));

        ep.set_offer_answerer(std::sync::Arc::new(Hold));
        let out = input(&mut ep, &with_body("z9hG4bKh2", "v=0\r\na=sendonly\r\n"), now);
        let responses = sent_responses(&out);
        let response = &responses[0].1;
        assert_eq!(response.status, 200);
        assert_eq!(response.headers.get("Content-Type"), Some("application/sdp"));
        assert_eq!(response.headers.get("Contact"), Some("<sip:gw.example.com:5060;transport=udp>"));
        assert_eq!(response.body, b"v=0\r\na=recvonly\r\n");
        assert!(out.iter().any(|o| matches!(o, Output::Event(e)
            if e.event.clone().without_headers() == CallEvent::Request { method: "INVITE".into(), reason: None, sdp: Some("v=0\r\na=sendonly\r\n".into()), headers: vec![] })));

        // The answerer can refuse an offer too.
        let out = input(&mut ep, &with_body("z9hG4bKh3", "v=0\r\na=sendrecv\r\n"), now);
        assert_eq!(sent_responses(&out)[0].1.status, 488);
    }

    fn sample_invite() -> OutgoingInvite {
        OutgoingInvite {
            call_id: None,
            request_uri: "sip:bob@example.com".into(),
            from: NameAddr { display_name: None, uri: "sip:alice@example.com".into() },
            to: NameAddr { display_name: None, uri: "sip:bob@example.com".into() },
            p_asserted_identity: None,
            privacy: None,
            extra_headers: vec![],
            sdp: None,
            extra_body_parts: vec![],
            next_hop: PEER.parse().unwrap(),
            transport: Transport::Udp,
            credentials: None,
        }
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\n";

    /// An out-of-dialog INVITE from the network, as in the call-flow example.
    fn incoming_invite(call_id: &str, extra: &[&str], sdp: Option<&str>) -> String {
        let mut text = format!(
            "INVITE sip:+818000000001@gw.example.com;user=phone SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKinv{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: \"Bob\" <sip:+818000000002@tn.operator.com;user=phone>;tag=a6c85cf\r\n\
             To: <sip:+818000000001@operator.com;user=phone>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:+818000000002@192.0.2.10:5070>\r\n\
             Record-Route: <sip:192.0.2.20;lr>, <sip:192.0.2.21;lr>\r\n"
        );
        for header in extra {
            text.push_str(header);
            text.push_str("\r\n");
        }
        match sdp {
            Some(sdp) => {
                text.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()))
            }
            None => text.push_str("Content-Length: 0\r\n\r\n"),
        }
        text
    }

    /// A request from the caller inside the dialog of an incoming call.
    fn caller_request(method: &str, cseq: u32, call_id: &str, local_tag: &str, extra: &[&str]) -> String {
        let branch = format!("z9hG4bK{method}{cseq}");
        let mut text = format!(
            "{method} sip:gw.example.com:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5070;branch={branch}\r\n\
             From: \"Bob\" <sip:+818000000002@tn.operator.com;user=phone>;tag=a6c85cf\r\n\
             To: <sip:+818000000001@operator.com;user=phone>;tag={local_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n"
        );
        for header in extra {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        text
    }

    fn events_of(outputs: &[Output]) -> Vec<CallEvent> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.event.clone().without_headers()),
                _ => None,
            })
            .collect()
    }

    fn request_event(method: &str) -> CallEvent {
        CallEvent::Request { method: method.into(), reason: None, sdp: None, headers: vec![] }
    }

    #[test]
    fn incoming_call_with_reliable_provisionals_answer_and_remote_bye() {
        let mut ep = endpoint();
        let now = Instant::now();
        let invite =
            incoming_invite("c1", &["Supported: 100rel, timer", "P-Asserted-Identity: <tel:+818000000002>"], Some(SDP));
        let out = input(&mut ep, &invite, now);
        let responses = sent_responses(&out);
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].1.status, 100);
        assert_eq!(responses[0].1.tag_of_to(), None);
        let events = events_of(&out);
        let [
            CallEvent::Incoming { request_uri, from, to, p_asserted_identity, sdp, supports_100rel, headers, privacy },
        ] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!(request_uri, "sip:+818000000001@gw.example.com;user=phone");
        assert_eq!(
            from,
            &NameAddr { display_name: Some("Bob".into()), uri: "sip:+818000000002@tn.operator.com;user=phone".into() }
        );
        assert_eq!(to.uri, "sip:+818000000001@operator.com;user=phone");
        assert_eq!(p_asserted_identity.as_ref().map(|p| p.uri.as_str()), Some("tel:+818000000002"));
        assert_eq!(sdp.as_deref(), Some(SDP));
        assert!(*supports_100rel);
        assert_eq!(*privacy, None);
        assert!(headers.iter().any(|(n, v)| n == "Supported" && v == "100rel, timer"));

        // A retransmitted INVITE gets the 100 again and no new event.
        let again = input(&mut ep, &invite, now);
        assert_eq!(sent_responses(&again)[0].1.status, 100);
        assert!(events_of(&again).is_empty());

        // Reliable 183 with SDP, then a reliable 180 held until the PRACK.
        ep.provisional("c1", 183, Some("v=0\r\n".into()), true, now).unwrap();
        ep.provisional("c1", 180, None, true, now).unwrap();
        let out = drain(&mut ep);
        let responses = sent_responses(&out);
        let [(dest, p183)] = responses.as_slice() else { panic!("{out:?}") };
        assert_eq!(*dest, "192.0.2.10:5070".parse().unwrap());
        assert_eq!(p183.status, 183);
        assert_eq!(p183.headers.get("Require"), Some("100rel"));
        assert_eq!(p183.headers.get("RSeq"), Some("1"));
        assert_eq!(p183.headers.get("Contact"), Some("<sip:gw.example.com:5060;transport=udp>"));
        assert_eq!(p183.headers.get_all("Record-Route").count(), 2);
        assert_eq!(p183.body, b"v=0\r\n");
        let local_tag = p183.tag_of_to().unwrap().to_string();

        // Retransmitted with T1 doubling until PRACKed.
        ep.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(sent_responses(&drain(&mut ep)), responses);

        // A PRACK for another RSeq does not match: 481.
        let wrong = caller_request("PRACK", 2, "c1", &local_tag, &["RAck: 7 1 INVITE"]);
        assert_eq!(sent_responses(&input(&mut ep, &wrong, now))[0].1.status, 481);
        let prack = caller_request("PRACK", 3, "c1", &local_tag, &["RAck: 1 1 INVITE"]);
        let out = input(&mut ep, &prack, now);
        assert_eq!(events_of(&out), [request_event("PRACK")]);
        let responses = sent_responses(&out);
        let statuses: Vec<u16> = responses.iter().map(|(_, r)| r.status).collect();
        // 200 for the PRACK, then the held 180 goes out with the next RSeq.
        assert_eq!(statuses, [200, 180]);
        assert_eq!(responses[1].1.headers.get("RSeq"), Some("2"));
        assert_eq!(responses[1].1.tag_of_to(), Some(local_tag.as_str()));
        // A retransmitted PRACK gets its 200 again and is not reported twice.
        let out = input(&mut ep, &prack, now);
        assert_eq!(sent_responses(&out)[0].1.status, 200);
        assert!(events_of(&out).is_empty());

        // The 2xx waits for the 180's PRACK.
        ep.accept("c1", Some(SDP.into()), now).unwrap();
        assert!(sent_responses(&drain(&mut ep)).is_empty());
        assert!(matches!(ep.accept("c1", None, now), Err(SipError::WrongState { .. })));
        let prack = caller_request("PRACK", 4, "c1", &local_tag, &["RAck: 2 1 INVITE"]);
        let out = input(&mut ep, &prack, now);
        let responses = sent_responses(&out);
        assert_eq!(responses.iter().map(|(_, r)| r.status).collect::<Vec<_>>(), [200, 200]);
        let ok = &responses[1].1;
        assert_eq!(ok.headers.get("CSeq"), Some("1 INVITE"));
        assert_eq!(ok.tag_of_to(), Some(local_tag.as_str()));
        assert_eq!(ok.sdp().as_deref(), Some(SDP));

        // The 2xx is retransmitted until the ACK.
        let t = now + Duration::from_secs(1);
        ep.handle_timeout(t);
        let retransmitted = sent_responses(&drain(&mut ep));
        assert!(retransmitted.iter().any(|(_, r)| r.status == 200 && r.headers.get("CSeq") == Some("1 INVITE")));
        let ack = caller_request("ACK", 1, "c1", &local_tag, &[]);
        assert_eq!(events_of(&input(&mut ep, &ack, t)), [request_event("ACK")]);
        // A repeated ACK is absorbed.
        assert!(input(&mut ep, &ack, t).is_empty());
        ep.handle_timeout(t + Duration::from_secs(4));
        assert!(sent_responses(&drain(&mut ep)).iter().all(|(_, r)| r.headers.get("CSeq") != Some("1 INVITE")));

        let bye = caller_request("BYE", 5, "c1", &local_tag, &[]);
        let out = input(&mut ep, &bye, t);
        assert_eq!(sent_responses(&out)[0].1.status, 200);
        assert_eq!(events_of(&out), [request_event("BYE"), CallEvent::Terminated { cause: crate::EndCause::Remote }]);
        assert!(matches!(ep.hangup("c1", t), Err(SipError::UnknownCall(_))));
        // Timer L lets the call go.
        ep.handle_timeout(t + Duration::from_secs(64));
        assert_eq!(ep.call_count(), 0);
    }

    /// RFC 3262 s.3: a reliable provisional that is never PRACKed ends the INVITE with a 5xx
    /// after 64*T1, even when the device answered meanwhile (the held 2xx never goes out).
    #[test]
    fn no_prack_for_a_reliable_provisional_rejects_the_invite_with_504() {
        let mut ep = endpoint();
        let now = Instant::now();
        input(&mut ep, &incoming_invite("np", &["Supported: 100rel"], Some(SDP)), now);
        ep.provisional("np", 183, Some(SDP.into()), true, now).unwrap();
        drain(&mut ep);
        ep.accept("np", Some(SDP.into()), now + Duration::from_secs(1)).unwrap();
        let mut finals = Vec::new();
        let mut events = Vec::new();
        let mut t = now;
        while t < now + Duration::from_secs(40) {
            t += Duration::from_millis(250);
            ep.handle_timeout(t);
            let out = drain(&mut ep);
            finals.extend(sent_responses(&out).into_iter().map(|(_, r)| r.status).filter(|s| *s >= 200));
            events.extend(events_of(&out));
        }
        assert_eq!(finals.first(), Some(&504), "{finals:?}");
        assert!(!finals.contains(&200), "the held 2xx must not go out: {finals:?}");
        let ack = caller_request("ACK", 1, "np", "x", &[]);
        let ack = ack.replace("branch=z9hG4bKACK1", "branch=z9hG4bKinvnp");
        events.extend(events_of(&input(&mut ep, &ack, t)));
        assert_eq!(events, [CallEvent::Timeout, CallEvent::Terminated { cause: crate::EndCause::NoPrack }]);
    }

    /// An incoming call answered with `SDP` and ACKed; returns our To tag.
    fn answered_incoming(ep: &mut Endpoint, call_id: &str, extra: &[&str], now: Instant) -> (String, Response) {
        input(ep, &incoming_invite(call_id, extra, Some(SDP)), now);
        ep.accept(call_id, Some(SDP.into()), now).unwrap();
        let out = drain(ep);
        let ok = sent_responses(&out).into_iter().map(|(_, r)| r).find(|r| r.status == 200).unwrap();
        let local_tag = ok.tag_of_to().unwrap().to_string();
        input(ep, &caller_request("ACK", 1, call_id, &local_tag, &[]), now);
        (local_tag, ok)
    }

    /// Runs the clock to `until`, returning everything produced on the way.
    fn run_until(ep: &mut Endpoint, until: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(at) = ep.poll_timeout().filter(|t| *t <= until) {
            ep.handle_timeout(at);
            out.extend(drain(ep));
        }
        out
    }

    #[test]
    fn incoming_call_keeps_the_callers_session_timer_and_ends_without_its_refresh() {
        let mut ep = endpoint();
        let start = Instant::now();
        let (local_tag, ok) =
            answered_incoming(&mut ep, "st1", &["Supported: 100rel, timer", "Session-Expires: 120"], start);
        // RFC 4028 s.9: the caller supports timers and left the refresher open: it refreshes.
        assert_eq!(ok.headers.get("Session-Expires"), Some("120;refresher=uac"));
        assert_eq!(ok.headers.get("Require"), Some("timer"));
        assert_eq!(ok.headers.get("Supported"), Some("100rel, timer"));

        // Its UPDATE at 60 s refreshes; the next would be due by 120 s after it.
        assert!(run_until(&mut ep, start + Duration::from_secs(60)).is_empty());
        let update = caller_request("UPDATE", 2, "st1", &local_tag, &["Session-Expires: 120;refresher=uac"]);
        let out = input(&mut ep, &update, start + Duration::from_secs(60));
        let response = &sent_responses(&out)[0].1;
        assert_eq!((response.status, response.headers.get("Session-Expires")), (200, Some("120;refresher=uac")));
        assert!(events_of(&out).is_empty(), "a refresh is not reported: {out:?}");

        // s.10: without the next refresh, BYE 32 s before the session would expire.
        assert!(sent_requests(&run_until(&mut ep, start + Duration::from_secs(60 + 87))).is_empty());
        let out = run_until(&mut ep, start + Duration::from_secs(60 + 88));
        let bye = &sent_requests(&out)[0];
        assert_eq!(
            (bye.method, bye.tag_of_from(), bye.tag_of_to()),
            (Method::Bye, Some(local_tag.as_str()), Some("a6c85cf"))
        );
        assert_eq!(events_of(&out), [CallEvent::Terminated { cause: crate::EndCause::SessionExpired }]);
    }

    #[test]
    fn incoming_call_without_timer_support_is_refreshed_by_us_with_update_then_reinvite() {
        let mut ep = endpoint();
        let start = Instant::now();
        let allow = "Allow: INVITE, ACK, BYE, CANCEL, UPDATE";
        let (local_tag, ok) = answered_incoming(&mut ep, "st2", &[allow], start);
        // Our own 1800 s session, refreshed by us: the caller cannot.
        assert_eq!(ok.headers.get("Session-Expires"), Some("1800;refresher=uas"));
        assert_eq!(ok.headers.get("Require"), None);

        let out = run_until(&mut ep, start + Duration::from_secs(900));
        let [update] = sent_requests(&out).try_into().unwrap();
        assert_eq!(update.method, Method::Update);
        assert_eq!(update.uri, "sip:+818000000002@192.0.2.10:5070");
        assert_eq!(update.headers.get("CSeq"), Some("1 UPDATE"));
        assert_eq!(update.tag_of_from(), Some(local_tag.as_str()));
        assert_eq!(update.tag_of_to(), Some("a6c85cf"));
        assert_eq!(update.headers.get_all("Route").count(), 2);
        assert_eq!(update.headers.get("Session-Expires"), Some("1800;refresher=uac"));
        assert!(update.body.is_empty());
        assert!(events_of(&out).is_empty());
        let mut refreshed = response_to(&update, 200, "OK", None);
        refreshed.headers.push("Session-Expires", "1800;refresher=uac");
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &refreshed.to_bytes(), start + Duration::from_secs(900));
        assert!(events_of(&drain(&mut ep)).is_empty());

        // The next one is refused as not allowed after all: a re-INVITE with our SDP takes over.
        let out = run_until(&mut ep, start + Duration::from_secs(1800));
        let update = sent_requests(&out).into_iter().find(|r| r.method == Method::Update).unwrap();
        assert_eq!(update.headers.get("CSeq"), Some("2 UPDATE"));
        let refused = response_to(&update, 405, "Method Not Allowed", None);
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &refused.to_bytes(), start + Duration::from_secs(1800));
        let out = run_until(&mut ep, start + Duration::from_secs(1800));
        let [reinvite] = sent_requests(&out).try_into().unwrap();
        assert_eq!((reinvite.method, reinvite.headers.get("CSeq")), (Method::Invite, Some("3 INVITE")));
        assert_eq!(reinvite.body, SDP.as_bytes());
        assert!(events_of(&out).is_empty());
    }

    #[test]
    fn our_refresh_reinvite_offers_the_sdp_of_our_last_answer() {
        struct Hold;
        impl OfferAnswerer for Hold {
            fn answer_offer(&self, _call_id: &str, _offer: &str) -> Option<String> {
                Some("v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\na=recvonly\r\n".into())
            }
        }
        let mut ep = endpoint();
        ep.set_offer_answerer(std::sync::Arc::new(Hold));
        let start = Instant::now();
        // The caller allows no UPDATE: our refreshes are re-INVITEs with our SDP.
        let (local_tag, _) = answered_incoming(&mut ep, "st4", &[], start);
        let hold = "v=0\r\na=sendonly\r\n";
        let reinvite = caller_request("INVITE", 2, "st4", &local_tag, &["Content-Type: application/sdp"])
            .replace("Content-Length: 0\r\n\r\n", &format!("Content-Length: {}\r\n\r\n{hold}", hold.len()));
        let out = input(&mut ep, &reinvite, start + Duration::from_secs(10));
        assert_eq!(sent_responses(&out)[0].1.status, 200);
        let out = run_until(&mut ep, start + Duration::from_secs(10 + 900));
        let [refresh] = sent_requests(&out).try_into().unwrap();
        assert_eq!(refresh.method, Method::Invite);
        assert_eq!(refresh.body, b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\na=recvonly\r\n", "not the first answer");
    }

    #[test]
    fn incoming_session_interval_below_min_se_is_refused_with_422() {
        let mut ep = endpoint();
        let out = input(&mut ep, &incoming_invite("st3", &["Session-Expires: 30"], Some(SDP)), Instant::now());
        let responses = sent_responses(&out);
        let refusal = &responses.last().unwrap().1;
        assert_eq!((refusal.status, refusal.headers.get("Min-SE")), (422, Some("90")));
        assert!(events_of(&out).is_empty());
    }

    #[test]
    fn an_answered_incoming_call_is_re_offered_with_reinvite_or_update() {
        let mut ep = endpoint();
        let now = Instant::now();
        input(&mut ep, &incoming_invite("ho1", &[], Some(SDP)), now);
        ep.accept("ho1", Some(SDP.into()), now).unwrap();
        let local_tag = sent_responses(&drain(&mut ep)).last().unwrap().1.tag_of_to().unwrap().to_string();
        // Not before the ACK.
        assert!(matches!(
            ep.offer(
                "ho1",
                OfferMethod::Reinvite,
                "v=0
"
                .into(),
                now
            ),
            Err(SipError::WrongState { .. })
        ));
        input(&mut ep, &caller_request("ACK", 1, "ho1", &local_tag, &[]), now);

        let hold = "v=0
a=sendonly
";
        ep.offer("ho1", OfferMethod::Reinvite, hold.into(), now).unwrap();
        let [reinvite] = sent_requests(&drain(&mut ep)).try_into().unwrap();
        assert_eq!((reinvite.method, reinvite.headers.get("CSeq")), (Method::Invite, Some("1 INVITE")));
        assert_eq!(reinvite.headers.get("Contact"), Some("<sip:gw.example.com:5060;transport=udp>"));
        assert_eq!(reinvite.body, hold.as_bytes());

        // The caller's own offer crossing ours waits (glare).
        let crossing = caller_request("INVITE", 2, "ho1", &local_tag, &[]);
        assert_eq!(sent_responses(&input(&mut ep, &crossing, now))[0].1.status, 491);

        let mut ok = response_to(&reinvite, 200, "OK", None);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = b"v=0
a=recvonly
"
        .to_vec();
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &ok.to_bytes(), now);
        let out = drain(&mut ep);
        let [ack] = sent_requests(&out).try_into().unwrap();
        assert_eq!((ack.method, ack.headers.get("CSeq")), (Method::Ack, Some("1 ACK")));
        assert_eq!(
            events_of(&out),
            [CallEvent::ReinviteResponse {
                status: 200,
                reason: "OK".into(),
                sdp: Some(
                    "v=0
a=recvonly
"
                    .into()
                )
            }]
        );

        let resume = "v=0
a=sendrecv
";
        ep.offer("ho1", OfferMethod::Update, resume.into(), now).unwrap();
        let [update] = sent_requests(&drain(&mut ep)).try_into().unwrap();
        assert_eq!((update.method, update.headers.get("CSeq")), (Method::Update, Some("2 UPDATE")));
        assert_eq!(update.body, resume.as_bytes());
        let mut ok = response_to(&update, 200, "OK", None);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = resume.as_bytes().to_vec();
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &ok.to_bytes(), now);
        let out = drain(&mut ep);
        assert!(sent_requests(&out).is_empty(), "no ACK for an UPDATE: {out:?}");
        assert_eq!(
            events_of(&out),
            [CallEvent::ReinviteResponse { status: 200, reason: "OK".into(), sdp: Some(resume.into()) }]
        );
    }

    #[test]
    fn an_invite_to_an_ipv6_reference_starts_a_call_and_is_answered_over_ipv6() {
        let mut ep = endpoint();
        let now = Instant::now();
        let invite = incoming_invite("v6", &[], Some(SDP))
            .replace(
                "sip:+818000000001@gw.example.com;user=phone SIP/2.0",
                "sip:+818000000001@[2001:db8::1]:5060 SIP/2.0",
            )
            .replace("Via: SIP/2.0/UDP 192.0.2.10:5070", "Via: SIP/2.0/UDP [2001:db8::2]:5070")
            .replace("<sip:+818000000002@192.0.2.10:5070>", "<sip:+818000000002@[2001:db8::2]:5070>")
            .replace("<sip:192.0.2.20;lr>, <sip:192.0.2.21;lr>", "<sip:[2001:db8::20];lr>");
        let source: SocketAddr = "[2001:db8::2]:5070".parse().unwrap();
        ep.handle_input(Transport::Udp, source, invite.as_bytes(), now);
        let out = drain(&mut ep);
        let events = events_of(&out);
        assert!(
            matches!(&events[..], [CallEvent::Incoming { request_uri, .. }] if request_uri == "sip:+818000000001@[2001:db8::1]:5060"),
            "{out:?}"
        );
        assert!(sent_responses(&out).iter().all(|(dest, _)| *dest == source), "answered to the Via: {out:?}");
        ep.accept("v6", Some(SDP.into()), now).unwrap();
        let local_tag = sent_responses(&drain(&mut ep)).last().unwrap().1.tag_of_to().unwrap().to_string();
        let ack = caller_request("ACK", 1, "v6", &local_tag, &[]);
        ep.handle_input(Transport::Udp, source, ack.as_bytes(), now);
        drain(&mut ep);
        // The caller's IPv6 Contact is the dialog's target, the IPv6 Record-Route its route.
        ep.hangup("v6", now).unwrap();
        let out = drain(&mut ep);
        assert_eq!(sent_requests(&out)[0].uri, "sip:+818000000002@[2001:db8::2]:5070");
        let to_route =
            |o: &Output| matches!(o, Output::Transmit(t) if t.dest == "[2001:db8::20]:5060".parse().unwrap());
        assert!(out.iter().any(to_route), "{out:?}");
    }

    #[test]
    fn an_unusable_contact_is_refused_or_ignored() {
        let now = Instant::now();
        // An INVITE whose Contact cannot carry our BYE: refused before it becomes a call.
        for contact in ["*", "<tel:+818000000002>", "<sip:bob@[::zz]>"] {
            let mut ep = endpoint();
            let invite = incoming_invite("c1", &[], None)
                .replace("Contact: <sip:+818000000002@192.0.2.10:5070>", &format!("Contact: {contact}"));
            let out = input(&mut ep, &invite, now);
            let responses = sent_responses(&out);
            assert_eq!(responses.last().map(|(_, r)| r.status), Some(400), "{contact}: {out:?}");
            assert!(events_of(&out).is_empty(), "{contact}");
        }
        // A 2xx with one: the dialog falls back to the request-URI.
        let mut ep = endpoint();
        let call_id = ep.invite(sample_invite(), now).unwrap();
        let invite = sent_requests(&drain(&mut ep)).remove(0);
        let mut ok = response_to(&invite, 200, "OK", Some("r1"));
        ok.headers.push("Contact", "<tel:+818000000002>");
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &ok.to_bytes(), now);
        let ack = sent_requests(&drain(&mut ep)).remove(0);
        assert_eq!((ack.method, ack.uri.as_str()), (Method::Ack, "sip:bob@example.com"));
        ep.hangup(&call_id, now).unwrap();
        assert_eq!(sent_requests(&drain(&mut ep))[0].uri, "sip:bob@example.com");
    }

    #[test]
    fn an_offerless_reinvite_gets_our_offer_and_its_ack_the_answer() {
        #[derive(Default)]
        struct Offers(std::sync::Mutex<Vec<String>>);
        impl OfferAnswerer for Offers {
            fn answer_offer(&self, _call_id: &str, _offer: &str) -> Option<String> {
                None
            }
            fn make_offer(&self, call_id: &str) -> Option<String> {
                Some(format!("v=0\r\ns=offer for {call_id}\r\n"))
            }
            fn take_answer(&self, call_id: &str, answer: &str) {
                self.0.lock().unwrap().push(format!("{call_id}: {answer}"));
            }
        }
        let mut ep = endpoint();
        let now = Instant::now();
        let (local_tag, _) = answered_incoming(&mut ep, "ol1", &[], now);
        // Without an answerer that makes offers: refused.
        let reinvite = caller_request("INVITE", 2, "ol1", &local_tag, &[]);
        assert_eq!(sent_responses(&input(&mut ep, &reinvite, now))[0].1.status, 488);

        let offers = std::sync::Arc::new(Offers::default());
        ep.set_offer_answerer(offers.clone());
        let reinvite = caller_request("INVITE", 3, "ol1", &local_tag, &["Session-Expires: 1800;refresher=uac"]);
        let out = input(&mut ep, &reinvite, now);
        let ok = &sent_responses(&out)[0].1;
        assert_eq!((ok.status, ok.body.as_slice()), (200, b"v=0\r\ns=offer for ol1\r\n".as_slice()));
        assert_eq!(ok.headers.get("Session-Expires"), Some("1800;refresher=uac"));
        assert!(events_of(&out).is_empty(), "a refresh, not reported: {out:?}");

        // An ACK of another CSeq does not count; the one of the re-INVITE carries the answer.
        input(&mut ep, &caller_request("ACK", 2, "ol1", &local_tag, &[]), now);
        assert!(offers.0.lock().unwrap().is_empty());
        let answer = "v=0\r\na=sendrecv\r\n";
        let ack = caller_request("ACK", 3, "ol1", &local_tag, &["Content-Type: application/sdp"])
            .replace("Content-Length: 0\r\n\r\n", &format!("Content-Length: {}\r\n\r\n{answer}", answer.len()));
        input(&mut ep, &ack, now);
        assert_eq!(*offers.0.lock().unwrap(), [format!("ol1: {answer}")]);
    }

    #[test]
    fn an_offer_needs_an_answered_call() {
        let mut ep = endpoint();
        let now = Instant::now();
        assert!(matches!(ep.reinvite("nope", "v=0\r\n".into(), now), Err(SipError::UnknownCall(_))));
        input(&mut ep, &incoming_invite("r1", &[], None), now);
        drain(&mut ep);
        assert!(matches!(ep.reinvite("r1", "v=0\r\n".into(), now), Err(SipError::WrongState { .. })));
        assert!(matches!(ep.offer("r1", OfferMethod::Update, "v=0\r\n".into(), now), Err(SipError::WrongState { .. })));
        assert!(drain(&mut ep).is_empty());
    }

    #[test]
    fn incoming_call_cancelled_by_the_caller() {
        let mut ep = endpoint();
        let now = Instant::now();
        input(&mut ep, &incoming_invite("c2", &[], None), now);
        ep.provisional("c2", 180, None, true, now).unwrap();
        let out = drain(&mut ep);
        let ringing = &sent_responses(&out)[0].1;
        // No 100rel in the INVITE: the 180 goes unreliably.
        assert_eq!(ringing.headers.get("RSeq"), None);
        let local_tag = ringing.tag_of_to().unwrap().to_string();

        let cancel = incoming_invite("c2", &[], None)
            .replace("INVITE sip:", "CANCEL sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
        let out = input(&mut ep, &cancel, now);
        let responses = sent_responses(&out);
        let statuses: Vec<_> = responses.iter().map(|(_, r)| (r.status, r.cseq().unwrap().1)).collect();
        assert_eq!(statuses, [(200, Method::Cancel), (487, Method::Invite)]);
        assert_eq!(responses[1].1.tag_of_to(), Some(local_tag.as_str()));
        assert_eq!(events_of(&out), [request_event("CANCEL")]);
        assert!(matches!(ep.accept("c2", None, now), Err(SipError::WrongState { .. })));

        // The ACK of the 487 (same branch as the INVITE) ends the call.
        let ack = incoming_invite("c2", &[], None)
            .replace("INVITE sip:", "ACK sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
            .replace("user=phone>\r\nCall-ID", &format!("user=phone>;tag={local_tag}\r\nCall-ID"));
        assert_eq!(events_of(&input(&mut ep, &ack, now)), [CallEvent::Terminated { cause: crate::EndCause::Remote }]);
        ep.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(ep.call_count(), 0);
    }

    #[test]
    fn incoming_call_rejected_is_retransmitted_until_ack_and_hangup_rejects() {
        let mut ep = endpoint();
        let now = Instant::now();
        input(&mut ep, &incoming_invite("c3", &[], None), now);
        assert!(matches!(ep.reject("c3", 200, "OK", now), Err(SipError::InvalidStatus(200))));
        assert!(matches!(ep.provisional("c3", 200, None, false, now), Err(SipError::InvalidStatus(200))));
        ep.reject("c3", 486, "Busy Here", now).unwrap();
        let busy = sent_responses(&drain(&mut ep));
        assert_eq!(busy[0].1.status, 486);
        ep.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(sent_responses(&drain(&mut ep)), busy);
        // Timer H without ACK: the call ends anyway.
        ep.handle_timeout(now + Duration::from_secs(32));
        let out = drain(&mut ep);
        assert_eq!(events_of(&out), [CallEvent::Terminated { cause: crate::EndCause::Local }]);
        assert_eq!(ep.call_count(), 0);

        input(&mut ep, &incoming_invite("c4", &[], None), now);
        assert_eq!(ep.hangup("c4", now).unwrap(), HangupKind::Reject);
        assert_eq!(sent_responses(&drain(&mut ep))[0].1.status, 480);
        assert!(matches!(ep.accept("other", None, now), Err(SipError::UnknownCall(_))));
    }

    #[test]
    fn local_hangup_of_an_answered_incoming_call_sends_bye_along_the_route_set() {
        let mut ep = endpoint();
        let now = Instant::now();
        input(&mut ep, &incoming_invite("c5", &[], None), now);
        ep.accept("c5", None, now).unwrap();
        let out = drain(&mut ep);
        let local_tag = sent_responses(&out)[0].1.tag_of_to().unwrap().to_string();
        // s.15: no BYE before the ACK.
        assert_eq!(ep.hangup("c5", now).unwrap(), HangupKind::Bye);
        assert!(sent_requests(&drain(&mut ep)).is_empty());
        let ack = caller_request("ACK", 1, "c5", &local_tag, &[]);
        let out = input(&mut ep, &ack, now);
        assert_eq!(events_of(&out), [request_event("ACK")]);
        let [bye] = sent_requests(&out).try_into().unwrap();
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.uri, "sip:+818000000002@192.0.2.10:5070");
        assert_eq!(bye.headers.get_all("Route").collect::<Vec<_>>(), ["<sip:192.0.2.20;lr>", "<sip:192.0.2.21;lr>"]);
        assert_eq!(bye.tag_of_from(), Some(local_tag.as_str()));
        assert_eq!(bye.tag_of_to(), Some("a6c85cf"));
        assert!(out.iter().any(|o| matches!(o, Output::Transmit(t) if t.dest == "192.0.2.20:5060".parse().unwrap())));
        let ok = response_to(&bye, 200, "OK", None);
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &ok.to_bytes(), now);
        assert_eq!(events_of(&drain(&mut ep)), [CallEvent::Terminated { cause: crate::EndCause::Local }]);
    }

    #[test]
    fn unacknowledged_2xx_ends_with_bye() {
        let mut ep = endpoint();
        let now = Instant::now();
        input(&mut ep, &incoming_invite("c6", &[], None), now);
        ep.accept("c6", None, now).unwrap();
        drain(&mut ep);
        let mut events = Vec::new();
        let mut byes = 0;
        while let Some(at) = ep.poll_timeout().filter(|t| *t <= now + Duration::from_secs(32)) {
            ep.handle_timeout(at);
            let out = drain(&mut ep);
            events.extend(events_of(&out));
            byes += sent_requests(&out).iter().filter(|r| r.method == Method::Bye).count();
        }
        assert_eq!(events, [CallEvent::Timeout]);
        assert_eq!(byes, 1);
    }

    #[test]
    fn a_fresh_endpoint_ends_a_call_of_the_previous_run_from_its_snapshot() {
        let mut ep = endpoint();
        let now = Instant::now();
        let call_id = ep.invite(sample_invite(), now).unwrap();
        let invite = sent_requests(&drain(&mut ep)).remove(0);
        assert_eq!(ep.dialog_snapshot(&call_id), None, "no dialog before the 2xx");
        let mut ok = response_to(&invite, 200, "OK", Some("r1"));
        ok.headers.push("Contact", "<sip:bob@192.0.2.10:5070>");
        ep.handle_input(Transport::Udp, PEER.parse().unwrap(), &ok.to_bytes(), now);
        drain(&mut ep);
        let snapshot = ep.dialog_snapshot(&call_id).expect("a confirmed dialog");
        // Persisted as the gateway does, and read back by the next run.
        let json = serde_json::to_string(&snapshot).unwrap();
        let snapshot: DialogSnapshot = serde_json::from_str(&json).unwrap();

        let mut next_run = endpoint();
        next_run.end_recovered(snapshot.clone(), now).unwrap();
        assert!(next_run.end_recovered(snapshot.clone(), now).is_err(), "one BYE per call");
        let out = drain(&mut next_run);
        let [bye] = sent_requests(&out).try_into().unwrap();
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.uri, "sip:bob@192.0.2.10:5070", "to the remote target");
        assert_eq!(bye.headers.get("Call-ID"), Some(call_id.as_str()));
        assert_eq!(bye.tag_of_from(), invite.tag_of_from());
        assert!(bye.headers.get("To").unwrap().contains("tag=r1"));
        let (cseq, _) = bye.cseq().unwrap();
        assert!(cseq > snapshot.local_cseq, "CSeq {cseq} past the snapshot's {}", snapshot.local_cseq);
        assert!(out.iter().all(|o| !matches!(o, Output::Event(_))), "no end before the BYE is answered");

        let answered = response_to(&bye, 200, "OK", None);
        next_run.handle_input(Transport::Udp, PEER.parse().unwrap(), &answered.to_bytes(), now);
        let out = drain(&mut next_run);
        let ended =
            UaEvent { call_id: call_id.clone(), event: CallEvent::Terminated { cause: crate::EndCause::Local } };
        assert!(out.contains(&Output::Event(ended)), "{out:?}");
    }
}
