//! SIP side of the CAMARA WebRTC gateway.
//!
//! This crate owns the SIP machinery: UDP, TCP and TLS (rustls) transport, RFC 3261
//! transactions, the UAC and UAS sides of a call (RFC 3262 PRACK, CANCEL, digest
//! challenges to the INVITE), the confirmed dialog both hand over to (re-INVITE and
//! UPDATE offers, BYE, RFC 4028 session timers) and the [`UserAgent`] that places,
//! receives and tears down calls and keeps registrations ([`registration`], with
//! HTTP Digest from [`digest`]).
//!
//! It does not decide anything CAMARA-specific (which addresses map to which
//! URIs, how call states become API notifications) and never touches media:
//! SDP is carried as an opaque string.
//!
//! The protocol logic is sans-IO ([`parser`], [`transaction`], [`dialog`], [`uas`], [`in_dialog`],
//! [`endpoint`]):
//! state machines fed with messages and `Instant`s that return what to send. Every way a call
//! ends is reported once, with its [`EndCause`], in [`CallEvent::Terminated`].
//! [`UserAgent`] is the thin tokio layer that drives them.

use std::net::SocketAddr;

pub mod dialog;
pub mod digest;
pub mod endpoint;
pub mod in_dialog;
pub mod message;
pub mod parser;
pub mod recovered;
pub mod registration;
mod tls;
pub mod transaction;
mod transport;
mod ua;
pub mod uas;

pub use endpoint::OfferAnswerer;
pub use in_dialog::{DialogParts, DialogSnapshot, OfferMethod};
pub use tls::{TlsConfig, TlsConfigError};
pub use transaction::TimerConfig;
pub use ua::UserAgent;

/// Transport protocol of a SIP hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 s.26.2), framed like TCP. URIs stay `sip:` with `transport=tls`,
    /// as most SBCs expect, rather than `sips:`: `sips:` promises TLS on every hop to the end,
    /// which this hop cannot vouch for.
    Tls,
}

impl Transport {
    /// Reliable transports carry their own retransmissions (RFC 3261 s.17).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// Upper-case form used in Via.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The value of a Via header this side sends: `SIP/2.0/UDP host:port;branch=...`.
    pub fn via(self, host: &str, port: u16, branch: &str) -> String {
        format!("SIP/2.0/{} {host}:{port};branch={branch}", self.via_name())
    }

    /// Lower-case form used in the URI `transport` parameter.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SipConfig {
    /// `None`: no UDP listener.
    pub udp_listen: Option<SocketAddr>,
    /// `None`: no TCP listener.
    pub tcp_listen: Option<SocketAddr>,
    /// `None`: no TLS listener, and no [`Transport::Tls`] at all (its port is the one written in
    /// Via and Contact). Needs `tls`.
    pub tls_listen: Option<SocketAddr>,
    /// Certificate, key and trust anchors for [`Transport::Tls`].
    pub tls: Option<TlsConfig>,
    /// Host written in Via, Contact and Call-ID; `None` uses the listen IP.
    pub advertised_host: Option<String>,
    /// User-Agent header value.
    pub user_agent: String,
    pub timers: TimerConfig,
}

/// A display name and URI, as in From / To / P-Asserted-Identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display_name: Option<String>,
    pub uri: String,
}

impl NameAddr {
    /// `"Alice" <sip:...>` or `<sip:...>`, quoting the display name so any
    /// character in it is safe on the wire.
    pub fn to_header_value(&self) -> String {
        match &self.display_name {
            Some(name) => {
                let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{escaped}\" <{}>", self.uri)
            }
            None => format!("<{}>", self.uri),
        }
    }
}

/// Everything needed to place one call.
#[derive(Debug, Clone)]
pub struct OutgoingInvite {
    /// The Call-ID to use; `None` lets the stack pick one. Choosing it lets the caller file the
    /// call before any response can arrive.
    pub call_id: Option<String>,
    pub request_uri: String,
    pub from: NameAddr,
    pub to: NameAddr,
    pub p_asserted_identity: Option<NameAddr>,
    pub privacy: Option<String>,
    /// Written after the standard headers, in order.
    pub extra_headers: Vec<(String, String)>,
    pub sdp: Option<String>,
    /// Sent with the SDP in a `multipart/mixed` body (RFC 5621), e.g. a PIDF-LO location for an
    /// emergency call (RFC 6442); none gives a plain `application/sdp` body.
    pub extra_body_parts: Vec<BodyPart>,
    /// Where the INVITE is sent (outbound proxy / NNI peer); no DNS is done.
    pub next_hop: SocketAddr,
    pub transport: Transport,
    /// Answers a 401/407 digest challenge to the INVITE (RFC 3261 s.22.2); none: a challenge
    /// ends the call like any other failure response.
    pub credentials: Option<Credentials>,
}

/// Digest credentials of a SIP account.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The password stays out of logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// One part of a `multipart/mixed` message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    pub content_type: String,
    /// Without the angle brackets; a `cid:` URI in a header (`Geolocation`) points at it.
    pub content_id: Option<String>,
    pub body: String,
}

/// How a call was asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupKind {
    /// The call was answered: a BYE was sent.
    Bye,
    /// The call was not answered yet: a CANCEL was (or will be, once a
    /// provisional response arrives) sent.
    Cancel,
    /// An incoming call that was not answered yet was refused with
    /// 480 Temporarily Unavailable.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// First event of an incoming call: an out-of-dialog INVITE, already
    /// answered with 100 Trying. Answer it with [`UserAgent::provisional`],
    /// [`UserAgent::accept`] or [`UserAgent::reject`].
    Incoming {
        request_uri: String,
        from: NameAddr,
        to: NameAddr,
        p_asserted_identity: Option<NameAddr>,
        privacy: Option<String>,
        /// Every header of the INVITE, in order, as received (compact names expanded).
        headers: Vec<(String, String)>,
        sdp: Option<String>,
        /// The INVITE had `100rel` in Supported or Require: reliable
        /// provisional responses (RFC 3262) may be sent.
        supports_100rel: bool,
    },
    /// Every distinct provisional or final response to the INVITE
    /// (retransmissions filtered out).
    Response {
        status: u16,
        reason: String,
        sdp: Option<String>,
        reliable: bool,
        /// Every header of the response, in order (compact names expanded).
        headers: Vec<(String, String)>,
    },
    /// A request from the remote party inside the call (BYE, PRACK, ACK,
    /// CANCEL...), already answered where it takes an answer.
    Request {
        method: String,
        /// The Reason header (RFC 3326), if any.
        reason: Option<String>,
        sdp: Option<String>,
        /// Every header of the request, in order (compact names expanded); empty for a request
        /// the endpoint synthesised.
        headers: Vec<(String, String)>,
    },
    /// The final response to a re-INVITE sent with [`UserAgent::reinvite`]
    /// (retransmissions filtered out). A 2xx was ACKed; any other response
    /// leaves the session as it was, except 481 and 408 (also reported when
    /// the re-INVITE timed out or could not be sent), after which the dialog
    /// is ended with BYE and `Terminated` follows (RFC 3261 s.14.1).
    /// 491 Request Pending means a re-INVITE crossed one from the peer: it
    /// may be retried later.
    ReinviteResponse { status: u16, reason: String, sdp: Option<String> },
    /// No final response (Timer B) or the transport failed.
    Timeout,
    /// The call is over on the SIP side, for `cause`; the last event of a call.
    Terminated { cause: EndCause },
    /// A registration binding changed state (the `call_id` of the
    /// [`UaEvent`] is the binding id returned by [`UserAgent::register`]).
    Registration(RegistrationEvent),
}

impl CallEvent {
    /// The event with the headers of its message left out: what it means, for comparing.
    pub fn without_headers(mut self) -> Self {
        if let CallEvent::Response { headers, .. } | CallEvent::Request { headers, .. } = &mut self {
            headers.clear();
        }
        self
    }
}

/// Why a call ended on the SIP side: every way a call can end, so that the application can say
/// which in the one place it learns of the end ([`CallEvent::Terminated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// The remote party ended it: BYE, or CANCEL before the answer.
    Remote,
    /// This side ended it as asked ([`UserAgent::hangup`], [`UserAgent::reject`]).
    Local,
    /// Our INVITE got this final non-2xx response.
    Rejected { status: u16 },
    /// Our INVITE got no final response (Timer B).
    NoResponse,
    /// The transport to the peer failed.
    TransportFailed,
    /// RFC 4028: the session expired without a refresh; BYE was sent.
    SessionExpired,
    /// A request of ours inside the dialog failed with this status (481, or 408 also for no
    /// answer: RFC 3261 s.12.2.1.2, s.14.1); BYE was sent.
    DialogFailed { status: u16 },
    /// Our 2xx to the INVITE was never ACKed (s.13.3.1.4); BYE was sent.
    NoAck,
    /// A reliable provisional of ours was never PRACKed (RFC 3262 s.3); 504 was sent.
    NoPrack,
}

impl EndCause {
    /// A short name for machines (metric labels), without the status.
    pub fn name(self) -> &'static str {
        match self {
            EndCause::Remote => "remote",
            EndCause::Local => "local",
            EndCause::Rejected { .. } => "rejected",
            EndCause::NoResponse => "no_response",
            EndCause::TransportFailed => "transport_failed",
            EndCause::SessionExpired => "session_expired",
            EndCause::DialogFailed { .. } => "dialog_failed",
            EndCause::NoAck => "no_ack",
            EndCause::NoPrack => "no_prack",
        }
    }

    /// A sentence for people (logs, API reasons).
    pub fn describe(self) -> String {
        match self {
            EndCause::Remote => "Ended by the remote party".into(),
            EndCause::Local => "Ended by this side".into(),
            EndCause::Rejected { status } => format!("Refused by the network ({status})"),
            EndCause::NoResponse => "No answer from the network to the INVITE".into(),
            EndCause::TransportFailed => "The connection to the network failed".into(),
            EndCause::SessionExpired => {
                "The session timer expired without a refresh from the network (RFC 4028)".into()
            }
            EndCause::DialogFailed { status } => {
                format!("The network no longer knows the call ({status} to an in-call request)")
            }
            EndCause::NoAck => "The network never acknowledged the answer (no ACK)".into(),
            EndCause::NoPrack => "The network never acknowledged a provisional response (no PRACK)".into(),
        }
    }
}

/// What happened to a registration binding (see [`UserAgent::register`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// The first 2xx: the binding holds for `expires` seconds (as granted by
    /// the registrar) and will be refreshed before then.
    Registered { expires: u32 },
    /// A later 2xx (refresh, or recovery after a failure).
    Refreshed { expires: u32 },
    /// A REGISTER failed: a final response that could not be recovered
    /// (`status`), or no response at all (`None`: timeout / transport error).
    /// Registration is retried with backoff, unless this was the
    /// un-REGISTER, which `Unregistered` follows.
    Failed { status: Option<u16>, reason: String },
    /// The binding is gone (un-REGISTER answered, refused or timed out);
    /// the last event of a binding.
    Unregistered,
}

/// Everything needed to keep one contact registered (RFC 3261 s.10).
#[derive(Clone)]
pub struct RegisterRequest {
    /// Where REGISTER is sent; no DNS is done.
    pub registrar: SocketAddr,
    pub transport: Transport,
    /// The registrar domain: the request-URI is `sip:{domain}`.
    pub domain: String,
    /// Address of record, written in To and From (e.g. `sip:+81...@operator.com`).
    pub aor: String,
    /// User part of the Contact `<sip:{contact_user}@{advertised_host}:{port}>`.
    pub contact_user: String,
    /// Digest credentials.
    pub username: String,
    pub password: String,
    /// Requested binding lifetime in seconds (the registrar may shorten it).
    pub expires: u32,
}

/// The password stays out of logs.
impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("registrar", &self.registrar)
            .field("transport", &self.transport)
            .field("domain", &self.domain)
            .field("aor", &self.aor)
            .field("contact_user", &self.contact_user)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaEvent {
    pub call_id: String,
    pub event: CallEvent,
}

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A listener could not be bound (the address is in use, not local, or needs privileges):
    /// an operator needs to know which of the three it was.
    #[error("cannot listen for SIP over {} on {addr}", transport.via_name())]
    Listen {
        transport: Transport,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("no {0:?} listener configured")]
    TransportUnavailable(Transport),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] TlsConfigError),
    #[error("unknown or finished call {0:?}")]
    UnknownCall(String),
    #[error("the user agent has shut down")]
    Shutdown,
    #[error("status {0} is not allowed here")]
    InvalidStatus(u16),
    #[error("call {call_id:?}: {reason}")]
    WrongState { call_id: String, reason: &'static str },
}
