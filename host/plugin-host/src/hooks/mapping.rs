//! The api-mapping hooks: CAMARA objects to SIP and back.

use serde::{Deserialize, Serialize};

pub use super::{CallDirection, CamaraError, Pair, SessionStatus};

/// A SIP name-addr: `"display" <uri>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameAddr {
    pub display_name: Option<String>,
    pub uri: String,
}

/// What the host knows of the network it talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkContext {
    /// Host name or address the gateway puts in its own URIs.
    pub local_host: String,
    /// The configured next hop, as `host[:port]`.
    pub next_hop: Option<String>,
}

/// CAMARA `callType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallType {
    Regular,
    Emergency,
}

/// The call a hook is about (given to 0.2.0 plugins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallContext {
    /// The CAMARA `mediaSessionId`.
    pub session_id: String,
    pub direction: CallDirection,
    /// The SIP Call-ID of the call's INVITE dialog.
    pub call_id: Option<String>,
}

/// `POST /sessions` as the host parsed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingCall {
    pub originator_address: String,
    pub originator_name: Option<String>,
    pub receiver_address: String,
    pub receiver_name: Option<String>,
    pub call_type: CallType,
    /// The caller's phone number as the authorization plugin established it.
    pub subscriber_phone_number: Option<String>,
    /// The request's `locationDetails`, as received.
    pub location: Option<serde_json::Value>,
}

/// The SIP INVITE the host will send for an outgoing call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitePlan {
    pub request_uri: String,
    pub from: NameAddr,
    pub to: NameAddr,
    pub p_asserted_identity: Option<NameAddr>,
    pub privacy: Option<String>,
    pub extra_headers: Vec<Pair>,
    /// Sent with the SDP in a multipart/mixed body (RFC 5621).
    pub body_parts: Vec<BodyPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    pub content_type: String,
    pub content_id: Option<String>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequest {
    pub phone_number: String,
    pub device_id: String,
    pub registration_id: String,
}

/// How a CAMARA registration shows in the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationPlan {
    /// False in number-range mode: no REGISTER is sent.
    pub send_register: bool,
    pub aor: String,
    pub contact_user: String,
}

/// An INVITE received from the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingInvite {
    pub request_uri: String,
    pub from: NameAddr,
    pub to: NameAddr,
    pub p_asserted_identity: Option<NameAddr>,
    pub privacy: Option<String>,
    /// Every header, in order, as received (compact names expanded).
    pub headers: Vec<Pair>,
}

/// Which subscriber an incoming INVITE is for, and how the caller is presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingCall {
    pub target_phone_number: String,
    pub originator_address: String,
    pub originator_name: Option<String>,
    pub receiver_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipRejection {
    pub status_code: u16,
    pub reason_phrase: String,
}

/// Something that happened on the SIP side of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SipEvent {
    /// A response to the session's INVITE.
    InviteResponse(SipResponse),
    /// A request from the network within the session.
    Request(SipRequest),
    /// The local side ended the session with this method (BYE or CANCEL).
    LocalHangup(String),
    /// No final response within the transaction timeout, or a transport failure.
    Timeout,
}

impl SipEvent {
    /// The headers of the message behind the event (none for a local hangup or a timeout).
    pub fn headers(&self) -> &[Pair] {
        match self {
            SipEvent::InviteResponse(r) => &r.headers,
            SipEvent::Request(r) => &r.headers,
            SipEvent::LocalHangup(_) | SipEvent::Timeout => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipResponse {
    pub status_code: u16,
    pub reason_phrase: String,
    pub has_sdp: bool,
    /// `Require: 100rel` was present.
    pub reliable: bool,
    /// Every header, in order (readable by 0.2.0 plugins through `sip-message`).
    #[serde(default)]
    pub headers: Vec<Pair>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipRequest {
    pub method: String,
    /// The `Reason` header, if any.
    pub reason: Option<String>,
    pub has_sdp: bool,
    #[serde(default)]
    pub headers: Vec<Pair>,
}

/// The CAMARA reading of a SIP event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub status: SessionStatus,
    pub reason: String,
}

/// An outgoing call the host could not hand to a 0.2.0 plugin: its `locationDetails` do not fit
/// the typed location. Answered as the plugin would answer a bad request.
pub(crate) fn invalid_location(why: String) -> CamaraError {
    CamaraError { status: 400, code: "INVALID_ARGUMENT".into(), message: format!("locationDetails: {why}") }
}
