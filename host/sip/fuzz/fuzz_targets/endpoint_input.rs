//! Structured fuzzing of the sans-IO `Endpoint`: sequences of raw datagrams, SIP messages built
//! from a small grammar (so transactions and dialogs really match), time advancing to fire
//! timers, transport failures and the API calls the gateway makes. Values the endpoint picks at
//! random (its tags, Call-IDs, branches) are learnt from what it transmits and reused, so a
//! response can answer the endpoint's own INVITE, PRACK, BYE or REGISTER, and an in-dialog request
//! can carry its local tag.
//!
//! Beyond "no panic", it checks two properties the driver in `ua.rs` relies on:
//! - every message the endpoint transmits has no control characters in its head and parses back
//!   (`message::parse`), except for a request-URI taken unchecked from a peer's Contact;
//! - timers converge: `handle_timeout(now)` repeated leaves no deadline at or before `now`
//!   after a bounded number of rounds (else the tokio driver would spin).
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use camara_sip::endpoint::{Endpoint, EndpointConfig, Output};
use camara_sip::message::{Message, Request, SipHeaders, parse};
use camara_sip::{
    Credentials, NameAddr, OfferAnswerer, OfferMethod, OutgoingInvite, RegisterRequest, TimerConfig, Transport,
};
use libfuzzer_sys::fuzz_target;

const MAX_STEPS: usize = 48;
const LEARNT: usize = 16;

#[derive(Debug, Arbitrary)]
struct Input {
    config: Config,
    answerer: Option<bool>,
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
enum Config {
    /// As the unit tests build it: UDP only, default timers.
    UdpOnly,
    /// UDP and TCP listeners.
    Both,
    /// Session timers off.
    NoSessionTimer,
    /// Short session timers (Min-SE 1).
    ShortSessionTimer,
}

#[derive(Debug, Arbitrary)]
enum Step {
    Raw {
        transport: Tp,
        source: Src,
        bytes: Vec<u8>,
    },
    /// Well-formed moves of the peer, to reach deep states quickly.
    Peer(PeerMove),
    Request(Box<ReqSpec>),
    Response(Box<RespSpec>),
    /// Advance the clock by 0..=64 s; `stepwise` fires every deadline on the way in order
    /// (as the driver would), otherwise one `handle_timeout` at the end.
    Advance {
        millis: u16,
        stepwise: bool,
    },
    /// Jump to the next deadline, if any.
    NextTimer,
    TransportFailed {
        transport: Tp,
        dest: Src,
    },
    Api(Api),
}

#[derive(Debug, Arbitrary)]
enum PeerMove {
    /// An out-of-dialog INVITE for call `c1`..`c4`, with Contact, Record-Route and Supported: 100rel.
    Invite { call: u8, transport: Tp, require_100rel: bool, session_timer: bool, sdp: bool },
    /// Its CANCEL (same branch and Via).
    Cancel { call: u8 },
    /// The ACK of a non-2xx final response to it (same branch).
    AckRejected { call: u8 },
    /// An answer to the endpoint's `nth` newest request, with a To tag, a Contact, RSeq and
    /// Require: 100rel when `reliable`, a challenge for 401/407, Min-Expires for 423.
    Answer { nth: u8, status: u8, tag: u8, reliable: bool, sdp: bool, session_timer: Option<bool> },
    /// A request in the `nth` newest dialog the endpoint has shown, on a fresh branch: ACK with the
    /// INVITE's CSeq, PRACK with the right RAck, BYE, UPDATE, re-INVITE, OPTIONS, INFO, CANCEL.
    InDialog { nth: u8, method: u8, sdp: bool },
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Tp {
    Udp,
    Tcp,
}

impl Tp {
    fn get(self) -> Transport {
        match self {
            Tp::Udp => Transport::Udp,
            Tp::Tcp => Transport::Tcp,
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Src {
    Peer,
    Proxy,
    V6,
}

impl Src {
    fn addr(self) -> SocketAddr {
        match self {
            Src::Peer => "192.0.2.10:5070",
            Src::Proxy => "192.0.2.20:5060",
            Src::V6 => "[2001:db8::1]:5060",
        }
        .parse()
        .unwrap()
    }
}

/// A value from a small fixed set, or one the endpoint chose (learnt from its output).
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Pick {
    Fixed(u8),
    Learnt(u8),
}

#[derive(Debug, Arbitrary)]
enum Api {
    Invite {
        call_id: Option<u8>,
        sdp: bool,
        transport: Tp,
        next_hop: Src,
        uri: u8,
        extras: bool,
    },
    Hangup(Pick),
    Provisional {
        call: Pick,
        status: u8,
        sdp: bool,
        reliable: bool,
    },
    Accept {
        call: Pick,
        sdp: bool,
    },
    Reject {
        call: Pick,
        status: u16,
    },
    /// A re-INVITE or, `update`, an UPDATE offer.
    Reoffer {
        call: Pick,
        hold: bool,
        update: bool,
    },
    Register {
        transport: Tp,
        registrar: Src,
        expires: u8,
    },
    Unregister(Pick),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Length {
    Right,
    Missing,
    Zero,
    More(u8),
    Less(u8),
    Garbage,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Body {
    None,
    Sdp,
    SdpHold,
    SdpNoType,
    Text,
}

/// Headers shared by the requests and responses of the grammar.
#[derive(Debug, Arbitrary)]
struct Extras {
    contact: Option<u8>,
    record_routes: u8,
    session_expires: Option<(u8, Option<bool>)>,
    min_se: Option<u8>,
    supported: Option<u8>,
    require: Option<u8>,
    other: Option<(u8, String)>,
    body: Body,
    length: Length,
    compact: bool,
    /// Overwrite one byte of the rendered message.
    mangle: Option<(u16, u8)>,
}

#[derive(Debug, Arbitrary)]
struct ReqSpec {
    /// Inside a dialog the endpoint has shown (newest first): its Call-ID, tags, CSeq (plus
    /// `cseq % 3`) and RSeq replace the picks below.
    dialog: Option<u8>,
    transport: Tp,
    source: Src,
    method: u8,
    uri: u8,
    via: u8,
    branch: u8,
    rport: bool,
    call_id: Pick,
    from_tag: Option<Pick>,
    to_tag: Option<Pick>,
    cseq: u8,
    /// The CSeq method differs from the request line's.
    cseq_method: Option<u8>,
    rack: Option<(u8, u8, u8)>,
    reason: bool,
    /// Leave out one mandatory header (Via, From, To, Call-ID, CSeq, Max-Forwards).
    omit: Option<u8>,
    extras: Extras,
}

#[derive(Debug, Arbitrary)]
struct RespSpec {
    /// Which request the endpoint sent to answer (newest first); none sent: made up.
    answer: u8,
    transport: Tp,
    source: Src,
    status: u16,
    reason: u8,
    to_tag: Option<Pick>,
    /// Replace the copied Call-ID / CSeq number / branch.
    call_id: Option<Pick>,
    cseq: Option<u8>,
    branch: Option<u8>,
    rseq: Option<u8>,
    challenge: Option<u8>,
    expires: Option<(bool, u8)>,
    min_expires: Option<u8>,
    extras: Extras,
}

const CALL_IDS: &[&str] = &["c1", "c2", "c3@gw.example.com", "c4"];
const TAGS: &[&str] = &["a6c85cf", "t1", "t2", ""];
const METHODS: &[&str] = &[
    "INVITE", "ACK", "BYE", "CANCEL", "PRACK", "UPDATE", "OPTIONS", "REGISTER", "INFO", "MESSAGE", "NOTIFY", "REFER",
    "FOO",
];
const URIS: &[&str] = &[
    "sip:+818000000001@gw.example.com;user=phone",
    "sip:gw.example.com:5060",
    "sip:192.0.2.1",
    "tel:+818000000001",
    "sips:a@[2001:db8::2]:5061;transport=tcp",
    "*",
];
const VIAS: &[&str] = &[
    "SIP/2.0/UDP 192.0.2.10:5070",
    "SIP/2.0/UDP peer.example.com",
    "SIP/2.0/TCP [2001:db8::1]:5060",
    "SIP/2.0/UDP 192.0.2.10",
    "SIP/2.0/UDP 192.0.2.10:0",
    "SIP/2.0/SCTP host:99999",
];
const BRANCHES: &[&str] = &["z9hG4bK1", "z9hG4bK2", "z9hG4bK3", "abc", ""];
const CONTACTS: &[&str] = &[
    "<sip:+818000000002@192.0.2.10:5070>",
    "<sip:peer.example.com;transport=tcp>",
    "<sip:[2001:db8::1]:5062>",
    "*",
    "<>",
    "\"Bob, B\" <sip:b@192.0.2.11>;expires=30, <sip:+818000000001@gw.example.com:5060;transport=udp>;expires=5",
    "sip:x@192.0.2.12:0",
];
const OPTION_TAGS: &[&str] = &["100rel", "timer", "100rel, timer", "foo", "", "100rel,precondition"];
const OTHER_HEADERS: &[&str] =
    &["Reason", "P-Asserted-Identity", "Privacy", "Allow", "Event", "Session-Expires", "Min-SE", "RSeq", "RAck"];
const CHALLENGES: &[&str] = &[
    "Digest realm=\"operator.com\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"",
    "Digest realm=\"operator.com\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth,auth-int\", opaque=\"o\", stale=true",
    "Digest realm=\"operator.com\", nonce=\"n3\", algorithm=MD5-sess",
    "Digest realm=x",
    "Basic realm=\"x\"",
    "Digest realm=\"r\", nonce=\"n\", algorithm=AKAv1-MD5",
    "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
];
const REASONS: &[&str] = &["OK", "", "Session Progress", "Ringing", "Weird \u{e9}", "Unauthorized"];
const SDP: &str =
    "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const SDP_HOLD: &str = "v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";

fn fixed<'a>(set: &[&'a str], i: u8) -> &'a str {
    set[usize::from(i) % set.len()]
}

/// Answers offers that put the call on hold, refuses the others (or answers all / none).
struct Answerer(bool);

impl OfferAnswerer for Answerer {
    fn answer_offer(&self, _call_id: &str, offer: &str) -> Option<String> {
        (self.0 || offer.contains("a=sendonly")).then(|| SDP.replace("RTP/AVP 0", "RTP/AVP 0\r\na=recvonly"))
    }
}

/// What the endpoint has shown of its random choices.
#[derive(Default)]
struct Learnt {
    call_ids: Vec<String>,
    tags: Vec<String>,
    /// Requests it sent, newest last.
    requests: Vec<Request>,
    /// Dialogs its messages reveal, newest last.
    dialogs: Vec<DialogRef>,
}

/// What the peer's in-dialog requests must carry, from a message the endpoint sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DialogRef {
    call_id: String,
    /// The peer's From and To (with the endpoint's tag).
    from: String,
    to: String,
    cseq: u32,
    rseq: Option<u32>,
}

fn keep<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if !list.contains(&value) {
        if list.len() == LEARNT {
            list.remove(0);
        }
        list.push(value);
    }
}

fn remember(list: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !list.iter().any(|v| v == value) {
        if list.len() == LEARNT {
            list.remove(0);
        }
        list.push(value.to_string());
    }
}

impl Learnt {
    fn call_id(&self, pick: Pick) -> String {
        match pick {
            Pick::Learnt(i) if !self.call_ids.is_empty() => self.call_ids[usize::from(i) % self.call_ids.len()].clone(),
            Pick::Fixed(i) | Pick::Learnt(i) => fixed(CALL_IDS, i).to_string(),
        }
    }

    fn tag(&self, pick: Pick) -> String {
        match pick {
            Pick::Learnt(i) if !self.tags.is_empty() => self.tags[usize::from(i) % self.tags.len()].clone(),
            Pick::Fixed(i) | Pick::Learnt(i) => fixed(TAGS, i).to_string(),
        }
    }

    fn observe(&mut self, output: &Output) {
        match output {
            Output::Transmit(t) => {
                check_transmitted(&t.message);
                match &t.message {
                    Message::Request(r) => {
                        if let Some(id) = r.call_id() {
                            remember(&mut self.call_ids, id);
                        }
                        if let Some(tag) = r.tag_of_from() {
                            remember(&mut self.tags, tag);
                        }
                        if self.requests.len() == LEARNT {
                            self.requests.remove(0);
                        }
                        self.requests.push(r.clone());
                        // An in-dialog request of ours: the peer's requests swap From and To.
                        if let (Some(call_id), Some(from), Some(to), Some(_), Some((cseq, _))) =
                            (r.call_id(), r.headers.get("To"), r.headers.get("From"), r.tag_of_to(), r.cseq())
                        {
                            let (call_id, from, to) = (call_id.into(), from.into(), to.into());
                            keep(&mut self.dialogs, DialogRef { call_id, from, to, cseq, rseq: None });
                        }
                    }
                    Message::Response(r) => {
                        if let Some(id) = r.call_id() {
                            remember(&mut self.call_ids, id);
                        }
                        if let Some(tag) = r.tag_of_to() {
                            remember(&mut self.tags, tag);
                        }
                        // A response of ours with a To tag: the peer's requests keep From and To.
                        if let (Some(call_id), Some(from), Some(to), Some(_), Some((cseq, _))) =
                            (r.call_id(), r.headers.get("From"), r.headers.get("To"), r.tag_of_to(), r.cseq())
                        {
                            let rseq = r.headers.get("RSeq").and_then(|v| v.trim().parse().ok());
                            let (call_id, from, to) = (call_id.into(), from.into(), to.into());
                            keep(&mut self.dialogs, DialogRef { call_id, from, to, cseq, rseq });
                        }
                    }
                }
            }
            Output::Event(e) => remember(&mut self.call_ids, &e.call_id),
        }
    }
}

struct Harness {
    ep: Endpoint,
    start: Instant,
    now: Instant,
    learnt: Learnt,
    /// For fresh branches and increasing RSeqs of the peer's moves.
    counter: u32,
}

/// `FUZZ_TRACE=1` prints every input and output, to follow a crashing case.
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

impl Harness {
    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn drain(&mut self) {
        while let Some(output) = self.ep.poll_output() {
            if trace() {
                eprintln!("<<< {output:?}");
            }
            self.learnt.observe(&output);
        }
    }

    /// `handle_timeout(now)` until no deadline is due; a deadline that stays due is a bug.
    fn settle(&mut self) {
        for _ in 0..1000 {
            match self.ep.poll_timeout() {
                Some(at) if at <= self.now => {
                    self.ep.handle_timeout(self.now);
                    self.drain();
                }
                _ => return,
            }
        }
        panic!("timers do not converge: {:?} still due at {:?}", self.ep.poll_timeout(), self.now);
    }

    fn advance(&mut self, by: Duration, stepwise: bool) {
        let target = self.now + by;
        if stepwise {
            for _ in 0..10_000 {
                match self.ep.poll_timeout() {
                    Some(at) if at <= target => {
                        self.now = self.now.max(at);
                        self.ep.handle_timeout(self.now);
                        self.drain();
                    }
                    _ => break,
                }
            }
        }
        self.now = target;
        self.ep.handle_timeout(self.now);
        self.drain();
        self.settle();
    }

    fn input(&mut self, transport: Transport, source: SocketAddr, bytes: &[u8]) {
        if trace() {
            eprintln!(">>> {transport:?} from {source} at {:?}\n{}", self.elapsed(), String::from_utf8_lossy(bytes));
        }
        self.ep.handle_input(transport, source, bytes, self.now);
        self.drain();
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Raw { transport, source, bytes } => self.input(transport.get(), source.addr(), &bytes),
            Step::Peer(peer) => self.peer(peer),
            Step::Request(spec) => {
                let bytes = self.request(&spec, None);
                self.input(spec.transport.get(), spec.source.addr(), &bytes);
            }
            Step::Response(spec) => {
                let bytes = self.response(&spec);
                self.input(spec.transport.get(), spec.source.addr(), &bytes);
            }
            Step::Advance { millis, stepwise } => {
                self.advance(Duration::from_millis(u64::from(millis % 64_001)), stepwise)
            }
            Step::NextTimer => {
                if let Some(at) = self.ep.poll_timeout() {
                    let by = at.saturating_duration_since(self.now);
                    self.advance(by, false);
                }
            }
            Step::TransportFailed { transport, dest } => {
                self.ep.transport_failed(transport.get(), dest.addr(), self.now);
                self.drain();
            }
            Step::Api(api) => {
                self.api(api);
                self.drain();
            }
        }
    }

    fn api(&mut self, api: Api) {
        let now = self.now;
        let sdp = |with: bool| with.then(|| SDP.to_string());
        // Errors are fine: only panics and broken output count.
        match api {
            Api::Invite { call_id, sdp: with_sdp, transport, next_hop, uri, extras } => {
                let invite = OutgoingInvite {
                    call_id: call_id.map(|i| fixed(CALL_IDS, i).to_string()),
                    request_uri: fixed(
                        &[
                            "sip:+818000000002@192.0.2.10:5070",
                            "sip:+818000000002@tn.operator.com;user=phone",
                            "tel:+1",
                        ],
                        uri,
                    )
                    .to_string(),
                    from: NameAddr {
                        display_name: Some("Alice \"A\"".into()),
                        uri: "sip:+818000000001@operator.com".into(),
                    },
                    to: NameAddr { display_name: None, uri: "sip:+818000000002@operator.com".into() },
                    p_asserted_identity: extras
                        .then(|| NameAddr { display_name: None, uri: "tel:+818000000001".into() }),
                    privacy: extras.then(|| "id".to_string()),
                    extra_headers: if extras { vec![("X-Trace".into(), "1".into())] } else { vec![] },
                    sdp: sdp(with_sdp),
                    extra_body_parts: vec![],
                    next_hop: next_hop.addr(),
                    transport: transport.get(),
                    credentials: extras.then(|| Credentials { username: "alice".into(), password: "secret".into() }),
                };
                let _ = self.ep.invite(invite, now);
            }
            Api::Hangup(call) => {
                let _ = self.ep.hangup(&self.learnt.call_id(call), now);
            }
            Api::Provisional { call, status, sdp: with_sdp, reliable } => {
                let status = 100 + u16::from(status % 101);
                let _ = self.ep.provisional(&self.learnt.call_id(call), status, sdp(with_sdp), reliable, now);
            }
            Api::Accept { call, sdp: with_sdp } => {
                let _ = self.ep.accept(&self.learnt.call_id(call), sdp(with_sdp), now);
            }
            Api::Reject { call, status } => {
                let _ = self.ep.reject(&self.learnt.call_id(call), status % 800, "Busy Here", now);
            }
            Api::Reoffer { call, hold, update } => {
                let offer = if hold { SDP_HOLD } else { SDP };
                let method = if update { OfferMethod::Update } else { OfferMethod::Reinvite };
                let _ = self.ep.offer(&self.learnt.call_id(call), method, offer.to_string(), now);
            }
            Api::Register { transport, registrar, expires } => {
                let request = RegisterRequest {
                    registrar: registrar.addr(),
                    transport: transport.get(),
                    domain: "operator.com".into(),
                    aor: "sip:+818000000001@operator.com".into(),
                    contact_user: "+818000000001".into(),
                    username: "user1".into(),
                    password: "secret".into(),
                    expires: [3600, 60, 8, 1, 0][usize::from(expires) % 5],
                };
                let _ = self.ep.register(request, now);
            }
            Api::Unregister(binding) => {
                let _ = self.ep.unregister(&self.learnt.call_id(binding), now);
            }
        }
    }

    fn peer(&mut self, peer: PeerMove) {
        self.counter = self.counter.wrapping_add(1);
        let clean = |body: Body| Extras {
            contact: Some(0),
            record_routes: 2,
            session_expires: None,
            min_se: None,
            supported: None,
            require: None,
            other: None,
            body,
            length: Length::Right,
            compact: false,
            mangle: None,
        };
        let invite = |method: u8, call: u8, transport: Tp, extras: Extras| ReqSpec {
            dialog: None,
            transport,
            source: Src::Peer,
            method,
            uri: 0,
            via: 0,
            branch: call % 3,
            rport: true,
            call_id: Pick::Fixed(call),
            from_tag: Some(Pick::Fixed(0)),
            to_tag: None,
            cseq: 1,
            cseq_method: None,
            rack: None,
            reason: false,
            omit: None,
            extras,
        };
        let body = |sdp: bool| if sdp { Body::Sdp } else { Body::None };
        let (transport, bytes) = match peer {
            PeerMove::Invite { call, transport, require_100rel, session_timer, sdp } => {
                let mut extras = clean(body(sdp));
                extras.supported = Some(2);
                extras.require = require_100rel.then_some(0);
                extras.session_expires = session_timer.then_some((3, Some(true)));
                (transport, self.request(&invite(0, call, transport, extras), None))
            }
            PeerMove::Cancel { call } => (Tp::Udp, self.request(&invite(3, call, Tp::Udp, clean(Body::None)), None)),
            PeerMove::AckRejected { call } => {
                (Tp::Udp, self.request(&invite(1, call, Tp::Udp, clean(Body::None)), None))
            }
            PeerMove::Answer { nth, status, tag, reliable, sdp, session_timer } => {
                let status = u16::from(status % 16);
                let mut extras = clean(body(sdp));
                extras.record_routes = 1;
                extras.require = reliable.then_some(0);
                extras.session_expires = session_timer.map(|uac| (2, Some(uac)));
                let spec = RespSpec {
                    answer: nth,
                    transport: Tp::Udp,
                    source: Src::Peer,
                    status,
                    reason: 0,
                    to_tag: (status != 0).then_some(Pick::Fixed(tag % 3)),
                    call_id: None,
                    cseq: None,
                    branch: None,
                    rseq: reliable.then_some((self.counter % 7 + 1) as u8),
                    challenge: Some(0),
                    expires: Some((false, 3)),
                    min_expires: (status == 9).then_some(3),
                    extras,
                };
                (Tp::Udp, self.response(&spec))
            }
            PeerMove::InDialog { nth, method, sdp } => {
                let (method, cseq) =
                    [(1, 0), (4, 1), (2, 2), (5, 2), (0, 2), (6, 2), (8, 2), (3, 0)][usize::from(method % 8)];
                let mut spec = invite(method, 0, Tp::Udp, clean(if sdp { Body::SdpHold } else { Body::None }));
                spec.dialog = Some(nth);
                spec.cseq = cseq;
                spec.rack = Some((1, 0, 1));
                let branch = format!("z9hG4bKpeer{}", self.counter);
                (Tp::Udp, self.request(&spec, Some(&branch)))
            }
        };
        self.input(transport.get(), Src::Peer.addr(), &bytes);
    }

    fn request(&self, spec: &ReqSpec, branch: Option<&str>) -> Vec<u8> {
        let method = fixed(METHODS, spec.method);
        let mut head = format!("{method} {} SIP/2.0\r\n", fixed(URIS, spec.uri));
        let mut headers: Vec<(&str, String)> = Vec::new();
        let branch = branch.unwrap_or_else(|| fixed(BRANCHES, spec.branch));
        let mut via = fixed(VIAS, spec.via).to_string();
        if !branch.is_empty() {
            via.push_str(&format!(";branch={branch}"));
        }
        if spec.rport {
            via.push_str(";rport");
        }
        headers.push(("Via", via));
        headers.push(("Max-Forwards", "70".into()));
        let from_tag = spec.from_tag.map(|t| format!(";tag={}", self.learnt.tag(t))).unwrap_or_default();
        headers.push(("From", format!("\"Bob\" <sip:+818000000002@tn.operator.com;user=phone>{from_tag}")));
        let to_tag = spec.to_tag.map(|t| format!(";tag={}", self.learnt.tag(t))).unwrap_or_default();
        headers.push(("To", format!("<sip:+818000000001@operator.com;user=phone>{to_tag}")));
        headers.push(("Call-ID", self.learnt.call_id(spec.call_id)));
        let cseq_method = spec.cseq_method.map_or(method, |m| fixed(METHODS, m));
        headers.push(("CSeq", format!("{} {cseq_method}", cseq_number(spec.cseq))));
        if let Some((rseq, cseq, m)) = spec.rack {
            headers.push(("RAck", format!("{} {} {}", rseq % 4, cseq % 4, fixed(METHODS, m))));
        }
        let dialogs = &self.learnt.dialogs;
        if let Some(i) = spec.dialog
            && !dialogs.is_empty()
        {
            let d = &dialogs[dialogs.len() - 1 - usize::from(i) % dialogs.len()];
            let cseq = d.cseq.wrapping_add(u32::from(spec.cseq % 3));
            for (name, value) in &mut headers {
                match *name {
                    "From" => value.clone_from(&d.from),
                    "To" => value.clone_from(&d.to),
                    "Call-ID" => value.clone_from(&d.call_id),
                    "CSeq" => *value = format!("{cseq} {cseq_method}"),
                    // The RAck of the last reliable provisional, or one off.
                    "RAck" => {
                        let (rseq, _, m) = spec.rack.unwrap_or_default();
                        let rseq = d.rseq.unwrap_or(1).wrapping_add(u32::from(rseq % 3)).wrapping_sub(1);
                        *value = format!("{rseq} {} {}", d.cseq, if m % 4 == 0 { "UPDATE" } else { "INVITE" });
                    }
                    _ => {}
                }
            }
        }
        if spec.reason {
            headers.push(("Reason", "Q.850;cause=16;text=\"Normal call clearing\"".into()));
        }
        if let Some(omit) = spec.omit {
            let name = fixed(&["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards"], omit);
            headers.retain(|(n, _)| *n != name);
        }
        render(&mut head, headers, &spec.extras)
    }

    fn response(&self, spec: &RespSpec) -> Vec<u8> {
        let status = match spec.status % 20 {
            0 => 100,
            1 => 180,
            2 => 183,
            3 => 200,
            4 => 202,
            5 => 401,
            6 => 407,
            7 => 408,
            8 => 422,
            9 => 423,
            10 => 481,
            11 => 486,
            12 => 487,
            13 => 491,
            14 => 500,
            15 => 603,
            _ => spec.status % 1000,
        };
        let mut head = format!("SIP/2.0 {status} {}\r\n", fixed(REASONS, spec.reason));
        let mut headers: Vec<(&str, String)> = Vec::new();
        let requests = &self.learnt.requests;
        let answered =
            (!requests.is_empty()).then(|| &requests[requests.len() - 1 - usize::from(spec.answer) % requests.len()]);
        match answered {
            Some(request) => {
                for via in request.headers.get_all("Via") {
                    headers.push(("Via", via.to_string()));
                }
                for name in ["From", "To", "Call-ID", "CSeq"] {
                    if let Some(value) = request.headers.get(name) {
                        headers.push((name, value.to_string()));
                    }
                }
            }
            None => {
                headers.push(("Via", "SIP/2.0/UDP gw.example.com:5060;branch=z9hG4bK1".into()));
                headers.push(("From", "<sip:+818000000001@operator.com>;tag=t1".into()));
                headers.push(("To", "<sip:+818000000002@operator.com>".into()));
                headers.push(("Call-ID", CALL_IDS[0].into()));
                headers.push(("CSeq", "1 INVITE".into()));
            }
        }
        for (name, value) in &mut headers {
            match *name {
                "Via" => {
                    if let Some(b) = spec.branch {
                        let sent_by = value.split(';').next().unwrap_or_default().to_string();
                        *value = format!("{sent_by};branch={}", fixed(BRANCHES, b));
                    }
                }
                "To" => {
                    if let Some(tag) = spec.to_tag {
                        let without = value.split(";tag=").next().unwrap_or_default().to_string();
                        *value = format!("{without};tag={}", self.learnt.tag(tag));
                    }
                }
                "Call-ID" => {
                    if let Some(id) = spec.call_id {
                        *value = self.learnt.call_id(id);
                    }
                }
                "CSeq" => {
                    if let Some(n) = spec.cseq {
                        let method = value.split_whitespace().nth(1).unwrap_or("INVITE").to_string();
                        *value = format!("{} {method}", cseq_number(n));
                    }
                }
                _ => {}
            }
        }
        if let Some(rseq) = spec.rseq {
            headers.push(("RSeq", (u32::from(rseq % 8)).to_string()));
        }
        if let Some(c) = spec.challenge {
            let name = if status == 407 { "Proxy-Authenticate" } else { "WWW-Authenticate" };
            headers.push((name, fixed(CHALLENGES, c).to_string()));
        }
        if let Some((contact, expires)) = spec.expires {
            let value = expires_value(expires);
            if contact {
                headers.push((
                    "Contact",
                    format!("<sip:+818000000001@gw.example.com:5060;transport=udp>;expires={value}"),
                ));
            } else {
                headers.push(("Expires", value));
            }
        }
        if let Some(min) = spec.min_expires {
            headers.push(("Min-Expires", expires_value(min)));
        }
        render(&mut head, headers, &spec.extras)
    }
}

/// What the endpoint puts on the wire must be readable: no control characters in the head but the
/// CRLF line ends and HTAB (nothing a peer sent can split or forge a line), and it parses back with
/// `message::parse`. The one exemption: a request-URI that does not parse by itself. The stack
/// takes the remote target from the peer's Contact without checking its syntax (`sip:a@h:50.`),
/// and rsip 0.4 cannot parse IPv6 references (`sip:[2001:db8::1]`) at all.
fn check_transmitted(message: &Message) {
    let bytes = message.to_bytes();
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of head");
    let head = &bytes[..head_end];
    for (i, &byte) in head.iter().enumerate() {
        let line_end =
            (byte == b'\r' && head.get(i + 1) == Some(&b'\n')) || (byte == b'\n' && i > 0 && head[i - 1] == b'\r');
        if (byte < 0x20 && byte != b'\t' && !line_end) || byte == 0x7f {
            panic!("the endpoint sent a control character 0x{byte:02x} at {i}:\n{}", text());
        }
    }
    if let Err(e) = parse(&bytes) {
        let uri_parses = match message {
            Message::Request(r) => parse(format!("OPTIONS {} SIP/2.0\r\n\r\n", r.uri).as_bytes()).is_ok(),
            Message::Response(_) => true,
        };
        if uri_parses {
            panic!("the endpoint sent a message it cannot parse: {e}\n{}", text());
        }
    }
}

fn cseq_number(n: u8) -> String {
    match n {
        0..=7 => n.to_string(),
        8 => "4294967295".into(),
        9 => "4294967296".into(),
        10 => "-1".into(),
        _ => (u32::from(n) * 1000).to_string(),
    }
}

fn expires_value(n: u8) -> String {
    match n % 8 {
        0 => "0".into(),
        1 => "1".into(),
        2 => "5".into(),
        3 => "3600".into(),
        4 => "4294967295".into(),
        5 => "99999999999".into(),
        6 => "x".into(),
        _ => u32::from(n).to_string(),
    }
}

fn se_value(n: u8) -> String {
    match n % 6 {
        0 => "0".into(),
        1 => "1".into(),
        2 => "90".into(),
        3 => "1800".into(),
        4 => "4294967295".into(),
        _ => u32::from(n).to_string(),
    }
}

/// The common optional headers, the body and Content-Length, then the mangling.
fn render(head: &mut String, mut headers: Vec<(&str, String)>, extras: &Extras) -> Vec<u8> {
    if let Some(c) = extras.contact {
        headers.push(("Contact", fixed(CONTACTS, c).to_string()));
    }
    for i in 0..extras.record_routes % 4 {
        headers.push(("Record-Route", format!("<sip:192.0.2.{}:5060;lr>", 20 + i)));
    }
    if let Some((n, refresher)) = extras.session_expires {
        let refresher = match refresher {
            Some(true) => ";refresher=uac",
            Some(false) => ";refresher=uas",
            None => "",
        };
        headers.push(("Session-Expires", format!("{}{refresher}", se_value(n))));
    }
    if let Some(n) = extras.min_se {
        headers.push(("Min-SE", se_value(n)));
    }
    if let Some(t) = extras.supported {
        headers.push(("Supported", fixed(OPTION_TAGS, t).to_string()));
    }
    if let Some(t) = extras.require {
        headers.push(("Require", fixed(OPTION_TAGS, t).to_string()));
    }
    if let Some((name, value)) = &extras.other {
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').take(64).collect();
        headers.push((fixed(OTHER_HEADERS, *name), value));
    }
    let body = match extras.body {
        Body::None => "",
        Body::Sdp | Body::SdpNoType => SDP,
        Body::SdpHold => SDP_HOLD,
        Body::Text => "hello",
    };
    match extras.body {
        Body::None | Body::SdpNoType => {}
        Body::Text => headers.push(("Content-Type", "text/plain".into())),
        Body::Sdp | Body::SdpHold => headers.push(("Content-Type", "application/sdp".into())),
    }
    let length = match extras.length {
        Length::Right => Some(body.len().to_string()),
        Length::Missing => None,
        Length::Zero => Some("0".into()),
        Length::More(n) => Some((body.len() + usize::from(n)).to_string()),
        Length::Less(n) => Some(body.len().saturating_sub(usize::from(n)).to_string()),
        Length::Garbage => Some("12x".into()),
    };
    if let Some(length) = length {
        headers.push(("Content-Length", length));
    }
    for (name, value) in headers {
        let name = if extras.compact { compact(name) } else { name };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    let mut bytes = head.clone().into_bytes();
    if let Some((at, byte)) = extras.mangle
        && !bytes.is_empty()
    {
        let at = usize::from(at) % bytes.len();
        bytes[at] = byte;
    }
    bytes
}

fn compact(name: &str) -> &str {
    match name {
        "Via" => "v",
        "From" => "f",
        "To" => "t",
        "Call-ID" => "i",
        "Contact" => "m",
        "Content-Length" => "l",
        "Content-Type" => "c",
        "Supported" => "k",
        "Session-Expires" => "x",
        other => other,
    }
}

fuzz_target!(|input: Input| {
    let mut timers = TimerConfig::default();
    let (udp_port, tcp_port) = match input.config {
        Config::UdpOnly => (Some(5060), None),
        Config::Both => (Some(5060), Some(5060)),
        Config::NoSessionTimer => {
            timers.session_expires = 0;
            (Some(5060), Some(5061))
        }
        Config::ShortSessionTimer => {
            timers.session_expires = 2;
            timers.min_se = 1;
            (Some(5060), None)
        }
    };
    let mut ep = Endpoint::new(EndpointConfig {
        advertised_host: "gw.example.com".into(),
        udp_port,
        tcp_port,
        tls_port: None,
        user_agent: "test-ua".into(),
        timers,
    });
    if let Some(all) = input.answerer {
        ep.set_offer_answerer(Arc::new(Answerer(all)));
    }
    let start = Instant::now();
    let mut harness = Harness { ep, start, now: start, learnt: Learnt::default(), counter: 0 };
    for step in input.steps.into_iter().take(MAX_STEPS) {
        if trace() {
            eprintln!("--- {:?} {step:?}", harness.elapsed());
        }
        harness.step(step);
    }
    // Let the timers run on for a while (bindings refresh for ever).
    for _ in 0..2 {
        if harness.ep.poll_timeout().is_none() {
            break;
        }
        harness.advance(Duration::from_secs(64), true);
    }
});
