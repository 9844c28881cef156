//! The sans-IO SIP endpoint: parses what arrives, routes it to the right call
//! or server transaction, answers what it can on its own, and collects what
//! must be transmitted and reported.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::dialog::{ALLOW, CallOutput, CallSetup, UacCall};
use crate::message::{
    Message, Method, Request, Response, SipHeaders, Transmit, new_branch, parse, random_token,
    response_destination, response_to, stamp_top_via,
};
use crate::transaction::{NonInviteServer, TimerConfig};
use crate::{HangupKind, OutgoingInvite, SipError, Transport, UaEvent};

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Host for Via, Contact and Call-ID (IPv6 in brackets).
    pub advertised_host: String,
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    pub user_agent: String,
    pub timers: TimerConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Transmit(Transmit),
    Event(UaEvent),
}

/// RFC 3261 s.17.2.3 server transaction key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServerKey {
    branch: String,
    sent_by: String,
    method: String,
}

#[derive(Debug)]
struct ServerTx {
    tx: NonInviteServer,
    transport: Transport,
    dest: SocketAddr,
}

#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    calls: HashMap<String, UacCall>,
    servers: HashMap<ServerKey, ServerTx>,
    outputs: VecDeque<Output>,
}

/// What to do with a new incoming request.
struct Answer {
    status: u16,
    reason: &'static str,
    /// Add Allow / Accept / Supported (OPTIONS, 405).
    capabilities: bool,
    /// Tell this call about the BYE once the 200 is queued.
    remote_bye_for: Option<String>,
}

impl Answer {
    fn plain(status: u16, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            capabilities: false,
            remote_bye_for: None,
        }
    }

    fn with_capabilities(status: u16, reason: &'static str) -> Self {
        Self {
            capabilities: true,
            ..Self::plain(status, reason)
        }
    }
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Self {
        Self {
            config,
            calls: HashMap::new(),
            servers: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// Starts a call; returns its Call-ID.
    pub fn invite(&mut self, invite: OutgoingInvite, now: Instant) -> Result<String, SipError> {
        let port = match invite.transport {
            Transport::Udp => self.config.udp_port,
            Transport::Tcp => self.config.tcp_port,
        }
        .ok_or(SipError::TransportUnavailable(invite.transport))?;
        let call_id = match &invite.call_id {
            Some(id) if self.calls.contains_key(id) => return Err(SipError::Config(format!("Call-ID {id} is in use"))),
            Some(id) if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c.is_control()) => {
                return Err(SipError::InvalidHeader { name: "Call-ID".into(), reason: "empty or with whitespace".into() });
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
        self.calls.insert(call_id.clone(), call);
        self.drain_call(&call_id);
        Ok(call_id)
    }

    pub fn hangup(&mut self, call_id: &str, now: Instant) -> Result<HangupKind, SipError> {
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or_else(|| SipError::UnknownCall(call_id.to_string()))?;
        let kind = call
            .hangup(now)
            .map_err(|_| SipError::UnknownCall(call_id.to_string()))?;
        self.drain_call(call_id);
        Ok(kind)
    }

    /// One datagram, or one framed message from a stream.
    pub fn handle_input(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        match parse(data) {
            Ok(Message::Response(response)) => self.handle_response(response, now),
            Ok(Message::Request(mut request)) => {
                stamp_top_via(&mut request, source);
                self.handle_request(request, transport, source, now);
            }
            Err(error) => {
                tracing::warn!(%source, ?transport, %error, "malformed SIP message dropped")
            }
        }
    }

    /// The transport could not deliver to `dest` (e.g. TCP connect failed).
    pub fn transport_failed(&mut self, transport: Transport, dest: SocketAddr, now: Instant) {
        let ids: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.transport() == transport)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(call) = self.calls.get_mut(&id) {
                call.transport_failed(dest, now);
            }
            self.drain_call(&id);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for server in self.servers.values_mut() {
            server.tx.handle_timeout(now);
        }
        self.servers.retain(|_, s| !s.tx.is_terminated());
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(call) = self.calls.get_mut(&id) {
                call.handle_timeout(now);
            }
            self.drain_call(&id);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(UacCall::poll_timeout)
            .chain(self.servers.values().filter_map(|s| s.tx.poll_timeout()))
            .min()
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
                CallOutput::Event(event) => Output::Event(UaEvent {
                    call_id: call_id.to_string(),
                    event,
                }),
            });
        }
        if call.is_finished() {
            self.calls.remove(call_id);
        }
    }

    fn handle_response(&mut self, response: Response, now: Instant) {
        let Some(call_id) = response.call_id().map(str::to_string) else {
            tracing::warn!("response without Call-ID dropped");
            return;
        };
        match self.calls.get_mut(&call_id) {
            Some(call) => call.handle_response(response, now),
            None => {
                tracing::debug!(%call_id, status = response.status, "response for no known call dropped")
            }
        }
        self.drain_call(&call_id);
    }

    fn handle_request(
        &mut self,
        request: Request,
        transport: Transport,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some(via) = request.top_via() else {
            tracing::warn!(%source, method = %request.method, "request without a usable Via dropped");
            return;
        };
        // Over TCP the response goes back on the connection the request came in on.
        let dest = match transport {
            Transport::Tcp => source,
            Transport::Udp => match response_destination(&via) {
                Some(dest) => dest,
                None => {
                    tracing::warn!(%source, "cannot route a response to the request's Via; dropped");
                    return;
                }
            },
        };
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

        // An ACK for a non-2xx carries the INVITE's branch (s.17.2.3).
        let key = ServerKey {
            branch: via.branch.clone().unwrap_or_default(),
            sent_by: via.sent_by(),
            method: if is_ack {
                Method::Invite.to_string()
            } else {
                request.method.to_string()
            },
        };
        if let Some(server) = self.servers.get(&key) {
            if !is_ack && let Some(response) = server.tx.handle_retransmission() {
                self.send(server.transport, server.dest, response);
            }
            return;
        }
        if is_ack {
            tracing::debug!(%source, "ACK outside any transaction dropped");
            return;
        }

        let answer = self.answer(&request);
        let mut response = response_to(
            &request,
            answer.status,
            answer.reason,
            Some(&random_token()),
        );
        if answer.capabilities {
            response.headers.push("Allow", ALLOW);
            response.headers.push("Accept", "application/sdp");
            response.headers.push("Supported", "100rel");
        }
        if !self.config.user_agent.is_empty() {
            response
                .headers
                .push("Server", self.config.user_agent.as_str());
        }
        let mut tx = NonInviteServer::new(transport.is_reliable(), self.config.timers);
        if let Some(response) = tx.respond(response, now) {
            self.send(transport, dest, response);
        }
        if !tx.is_terminated() {
            self.servers.insert(
                key,
                ServerTx {
                    tx,
                    transport,
                    dest,
                },
            );
        }
        if let Some(call_id) = answer.remote_bye_for {
            if let Some(call) = self.calls.get_mut(&call_id) {
                call.handle_remote_bye(&request, now);
            }
            self.drain_call(&call_id);
        }
    }

    fn answer(&self, request: &Request) -> Answer {
        let method = request.method;
        let Some(local_tag) = request.tag_of_to() else {
            return match method {
                Method::Options => Answer::with_capabilities(200, "OK"),
                Method::Invite => {
                    tracing::info!(call_id = ?request.call_id(), "incoming calls are not supported yet; answering 480");
                    Answer::plain(480, "Temporarily Unavailable")
                }
                // These only make sense inside a dialog or transaction we would know.
                Method::Bye | Method::Cancel | Method::PRack | Method::Update => {
                    Answer::plain(481, "Call/Transaction Does Not Exist")
                }
                _ => Answer::with_capabilities(405, "Method Not Allowed"),
            };
        };

        let call = request
            .call_id()
            .and_then(|id| self.calls.get(id))
            .filter(|call| {
                request
                    .tag_of_from()
                    .is_some_and(|remote_tag| call.matches_dialog(local_tag, remote_tag))
            });
        let Some(call) = call else {
            // s.12.2.2: a request for a dialog we do not have.
            return Answer::plain(481, "Call/Transaction Does Not Exist");
        };
        match method {
            Method::Bye => Answer {
                remote_bye_for: Some(call.call_id().to_string()),
                ..Answer::plain(200, "OK")
            },
            Method::Options => Answer::with_capabilities(200, "OK"),
            // A session refresh without an offer needs nothing from us.
            Method::Update if request.body.is_empty() => Answer::plain(200, "OK"),
            Method::Update | Method::Invite => {
                tracing::info!(call_id = call.call_id(), %method, "mid-call offer not supported; answering 488");
                Answer::plain(488, "Not Acceptable Here")
            }
            // We never send reliable provisionals and have no server INVITE to cancel.
            Method::PRack | Method::Cancel => Answer::plain(481, "Call/Transaction Does Not Exist"),
            _ => Answer::with_capabilities(405, "Method Not Allowed"),
        }
    }

    fn send(&mut self, transport: Transport, dest: SocketAddr, response: Response) {
        self.outputs.push_back(Output::Transmit(Transmit {
            transport,
            dest,
            message: Message::Response(response),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallEvent, NameAddr};

    const PEER: &str = "192.0.2.10:5070";

    fn endpoint() -> Endpoint {
        Endpoint::new(EndpointConfig {
            advertised_host: "gw.example.com".into(),
            udp_port: Some(5060),
            tcp_port: None,
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
                Output::Transmit(Transmit {
                    dest,
                    message: Message::Response(r),
                    ..
                }) => Some((*dest, r.clone())),
                _ => None,
            })
            .collect()
    }

    fn sent_requests(outputs: &[Output]) -> Vec<Request> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(Transmit {
                    message: Message::Request(r),
                    ..
                }) => Some(r.clone()),
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

    #[test]
    fn options_is_answered_with_capabilities_and_retransmissions_replayed() {
        let mut ep = endpoint();
        let now = Instant::now();
        let options = request_text("OPTIONS", None, "o1", "p1");
        let out = sent_responses(&input(&mut ep, &options, now));
        let [(dest, ok)] = out.as_slice() else {
            panic!("{out:?}")
        };
        // rport: back to the source port, not the Via port.
        assert_eq!(*dest, PEER.parse().unwrap());
        assert_eq!(ok.status, 200);
        assert_eq!(ok.headers.get("Allow"), Some(ALLOW));
        assert_eq!(ok.headers.get("Accept"), Some("application/sdp"));
        assert_eq!(
            ok.headers.get("Via"),
            Some(
                "SIP/2.0/UDP peer.example.com:5070;branch=z9hG4bKin1;received=192.0.2.10;rport=5070"
            )
        );
        assert!(ok.tag_of_to().is_some());

        let again = sent_responses(&input(&mut ep, &options, now));
        assert_eq!(again, out, "retransmission gets the same response");
        ep.handle_timeout(now + std::time::Duration::from_secs(32));
        assert_eq!(ep.poll_timeout(), None);
    }

    #[test]
    fn incoming_invite_is_refused_and_its_ack_absorbed() {
        let mut ep = endpoint();
        let now = Instant::now();
        let out = sent_responses(&input(
            &mut ep,
            &request_text("INVITE", None, "i1", "p1"),
            now,
        ));
        assert_eq!(out[0].1.status, 480);
        let ack = request_text("ACK", out[0].1.tag_of_to(), "i1", "p1");
        assert!(input(&mut ep, &ack, now).is_empty());
    }

    #[test]
    fn unknown_dialog_gets_481_and_bad_requests_400() {
        let mut ep = endpoint();
        let now = Instant::now();
        let out = sent_responses(&input(
            &mut ep,
            &request_text("BYE", Some("x"), "nope", "p1"),
            now,
        ));
        assert_eq!(out[0].1.status, 481);
        let bad =
            request_text("BYE", Some("x"), "c", "p1").replace("CSeq: 7 BYE", "CSeq: seven BYE");
        let out = sent_responses(&input(&mut ep, &bad, now));
        assert_eq!(out[0].1.status, 400);
        assert!(input(&mut ep, "garbage\r\n\r\n", now).is_empty());
        let out = sent_responses(&input(
            &mut ep,
            &request_text("MESSAGE", None, "m", "p1"),
            now,
        ));
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
                    from: NameAddr {
                        display_name: None,
                        uri: "sip:alice@example.com".into(),
                    },
                    to: NameAddr {
                        display_name: None,
                        uri: "sip:bob@example.com".into(),
                    },
                    p_asserted_identity: None,
                    privacy: None,
                    extra_headers: vec![],
                    sdp: None,
                    next_hop: PEER.parse().unwrap(),
                    transport: Transport::Udp,
                },
                now,
            )
            .unwrap();
        assert!(call_id.ends_with("@gw.example.com"));
        let invite = sent_requests(&drain(&mut ep)).remove(0);
        assert!(matches!(
            ep.invite(
                OutgoingInvite {
                    call_id: None,
                    transport: Transport::Tcp,
                    ..sample_invite()
                },
                now
            ),
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
                Output::Event(e) => Some(e.event.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            events,
            [
                CallEvent::Request {
                    method: "BYE".into(),
                    reason: None,
                    sdp: None
                },
                CallEvent::Terminated
            ]
        );
        assert!(matches!(
            ep.hangup(&call_id, now),
            Err(SipError::UnknownCall(_))
        ));
        assert!(matches!(
            ep.hangup("other", now),
            Err(SipError::UnknownCall(_))
        ));
    }

    fn sample_invite() -> OutgoingInvite {
        OutgoingInvite {
            call_id: None,
            request_uri: "sip:bob@example.com".into(),
            from: NameAddr {
                display_name: None,
                uri: "sip:alice@example.com".into(),
            },
            to: NameAddr {
                display_name: None,
                uri: "sip:bob@example.com".into(),
            },
            p_asserted_identity: None,
            privacy: None,
            extra_headers: vec![],
            sdp: None,
            next_hop: PEER.parse().unwrap(),
            transport: Transport::Udp,
        }
    }
}
