//! The SIP message model the state machines work on: an ordered header list (exact control over
//! header order and form on the way out; the call-flow examples are the reference) and the bytes
//! of the body. [`crate::parser`] builds it from the wire; rsip parses the URIs in it.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

pub use rsip::Method;

use crate::parser::{MAX_BODY_BYTES, MAX_HEADER_BYTES};
pub use crate::parser::{ParseError, Refusal, parse};

/// A message to put on the wire, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub transport: crate::Transport,
    pub dest: SocketAddr,
    pub message: Message,
}

/// Random hex token for tags, branches and Call-IDs (RFC 3261 s.19.3 wants
/// at least 32 bits of randomness; 64 are used).
pub fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A branch carrying the RFC 3261 magic cookie, so peers can rely on it as
/// the transaction id.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_token())
}

/// Ordered header list; names keep the case they were written with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Replaces the value of the first header with that name.
    pub fn set_first(&mut self, name: &str, value: String) {
        if let Some((_, v)) = self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            *v = value;
        }
    }

    /// Removes every header with that name.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Every header, in order, as owned pairs (for events that outlive the message).
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.0.clone()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// True when a comma-separated option-tag header (Require, Supported) lists `tag`.
    pub fn has_option_tag(&self, name: &str, tag: &str) -> bool {
        self.get_all(name).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(tag))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Request {
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize(&format!("{} {} SIP/2.0", self.method, self.uri), &self.headers, &self.body)
    }
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize(&format!("SIP/2.0 {} {}", self.status, self.reason), &self.headers, &self.body)
    }
}

impl Message {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

/// Content-Length is always computed here so it can never disagree with the body.
fn serialize(start_line: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut head = String::with_capacity(512);
    head.push_str(start_line);
    head.push_str("\r\n");
    for (name, value) in headers.iter() {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Accessors shared by requests and responses.
pub trait SipHeaders {
    fn headers(&self) -> &Headers;

    fn call_id(&self) -> Option<&str> {
        self.headers().get("Call-ID")
    }

    fn cseq(&self) -> Option<(u32, Method)> {
        let (num, method) = self.headers().get("CSeq")?.trim().split_once(char::is_whitespace)?;
        Some((num.trim().parse().ok()?, method.trim().parse().ok()?))
    }

    fn top_via(&self) -> Option<Via> {
        Via::parse(self.headers().get("Via")?)
    }

    fn tag_of_from(&self) -> Option<&str> {
        header_param(self.headers().get("From")?, "tag").flatten()
    }

    fn tag_of_to(&self) -> Option<&str> {
        header_param(self.headers().get("To")?, "tag").flatten()
    }

    fn sdp(&self) -> Option<String>;
}

impl SipHeaders for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
    fn sdp(&self) -> Option<String> {
        sdp_body(&self.headers, &self.body)
    }
}

impl SipHeaders for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
    fn sdp(&self) -> Option<String> {
        sdp_body(&self.headers, &self.body)
    }
}

fn sdp_body(headers: &Headers, body: &[u8]) -> Option<String> {
    let is_sdp =
        headers.get("Content-Type").is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("application/sdp"));
    (is_sdp && !body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

/// Placeholder host given to rsip for an IPv6 reference (RFC 5954), which rsip 0.4 cannot parse.
const IPV6_PLACEHOLDER: &str = "ipv6-reference.invalid";

/// A SIP or SIPS URI parsed by rsip, and the IPv6 address of its host when that is an IPv6
/// reference (`sip:alice@[2001:db8::1]:5060`): rsip then sees a placeholder host, so the rest
/// of the URI (user, port, parameters) is still checked by it.
pub fn parse_sip_uri(uri: &str) -> Result<(rsip::Uri, Option<std::net::Ipv6Addr>), String> {
    let Some(open) = uri.find('[') else {
        return rsip::Uri::try_from(uri).map(|u| (u, None)).map_err(|e| e.to_string());
    };
    let close = uri[open..].find(']').map(|i| open + i).ok_or("unclosed IPv6 reference")?;
    let ip: std::net::Ipv6Addr = uri[open + 1..close].parse().map_err(|_| "invalid IPv6 reference".to_string())?;
    // The reference must be the host: right after the scheme or the userinfo.
    let before = &uri[..open];
    if !(before.ends_with('@') || before.eq_ignore_ascii_case("sip:") || before.eq_ignore_ascii_case("sips:")) {
        return Err("an IPv6 reference outside the host".into());
    }
    let after = &uri[close + 1..];
    if !(after.is_empty() || after.starts_with([':', ';', '?'])) {
        return Err("junk after an IPv6 reference".into());
    }
    let placeholder = format!("{before}{IPV6_PLACEHOLDER}{after}");
    if placeholder.contains('[') {
        return Err("more than one IPv6 reference".into());
    }
    rsip::Uri::try_from(placeholder.as_str()).map(|u| (u, Some(ip))).map_err(|e| e.to_string())
}

/// Splits a header value on commas that are outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quotes, mut in_angle, mut start) = (false, false, 0);
    let mut chars = value.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if in_quotes => {
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// Byte offset where header parameters start: after the `>` of a name-addr,
/// or at the first `;` of an addr-spec / Via.
fn params_start(value: &str) -> usize {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => {
                return value[i..].find('>').map_or(value.len(), |end| i + end + 1);
            }
            ';' if !in_quotes => return i,
            _ => {}
        }
    }
    value.len()
}

/// Header parameter lookup: `Some(Some(v))` for `name=v`, `Some(None)` for a bare `name`.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<Option<&'a str>> {
    value[params_start(value)..].split(';').map(str::trim).filter(|p| !p.is_empty()).find_map(|p| {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The URI inside a name-addr (`"Bob" <sip:b@x>;tag=1`) or addr-spec.
pub fn name_addr_uri(value: &str) -> &str {
    let start = params_start(value);
    let head = &value[..start];
    match (head.rfind('<'), head.rfind('>')) {
        (Some(open), Some(close)) if open < close => head[open + 1..close].trim(),
        _ => head.trim(),
    }
}

/// The parts of a Via header value the transport and transaction layers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub received: Option<String>,
    /// `None`: no rport; `Some(None)`: rport requested; `Some(Some(p))`: filled in.
    pub rport: Option<Option<u16>>,
}

impl Via {
    pub fn parse(value: &str) -> Option<Via> {
        let start = params_start(value);
        let (protocol, sent_by) = value[..start].trim().rsplit_once(|c: char| c.is_whitespace())?;
        let transport = protocol.trim().rsplit('/').next()?.trim().to_ascii_uppercase();
        let (host, port) = split_host_port(sent_by.trim())?;
        let rport = header_param(value, "rport").map(|v| v.and_then(|p| p.parse().ok()));
        Some(Via {
            transport,
            host: host.to_string(),
            port,
            branch: header_param(value, "branch").flatten().map(str::to_string),
            received: header_param(value, "received").flatten().map(str::to_string),
            rport,
        })
    }

    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host, p),
            None => self.host.clone(),
        }
    }
}

/// Splits `host[:port]`, with IPv6 references in brackets.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((s, None)),
    }
}

/// RFC 3261 s.18.2.1 and RFC 3581 s.4: record where a request really came from
/// in its top Via, so responses find their way back through NAT.
pub fn stamp_top_via(request: &mut Request, source: SocketAddr) {
    stamp_via(&mut request.headers, source);
}

/// [`stamp_top_via`] on the headers of a request that is answered without being parsed whole.
pub fn stamp_via(headers: &mut Headers, source: SocketAddr) {
    let Some(value) = headers.get("Via").map(str::to_string) else {
        return;
    };
    let Some(via) = Via::parse(&value) else {
        return;
    };
    let host_is_source = via.host.parse::<IpAddr>().is_ok_and(|ip| ip == source.ip());
    let wants_rport = via.rport.is_some();
    if host_is_source && !wants_rport {
        return;
    }
    let start = params_start(&value);
    let mut out = value[..start].to_string();
    for param in value[start..].split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let key = param.split('=').next().unwrap_or("").trim();
        if key.eq_ignore_ascii_case("received") || key.eq_ignore_ascii_case("rport") {
            continue;
        }
        out.push(';');
        out.push_str(param);
    }
    // RFC 3581: with rport the received parameter is added even when it matches.
    let _ = write!(out, ";received={}", source.ip());
    if wants_rport {
        let _ = write!(out, ";rport={}", source.port());
    }
    headers.set_first("Via", out);
}

/// Where a response to a request carrying this top Via goes over an unreliable
/// transport (RFC 3261 s.18.2.2, RFC 3581 s.4). `None` if it cannot be resolved
/// without DNS.
pub fn response_destination(via: &Via) -> Option<SocketAddr> {
    let ip: IpAddr = via.received.as_deref().unwrap_or(&via.host).parse().ok()?;
    let port = via.rport.flatten().or(via.port).unwrap_or(5060);
    Some(SocketAddr::new(ip, port))
}

/// The socket address of a SIP URI whose host is an IP literal; name
/// resolution (RFC 3263) is not this crate's job. Without a port, TLS URIs
/// (`transport=tls` or `sips:`) mean 5061, others 5060 (RFC 3261 s.19.1.2).
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let (uri, ipv6) = parse_sip_uri(uri).ok()?;
    let tls = matches!(uri.scheme, Some(rsip::Scheme::Sips))
        || uri.params.iter().any(|p| matches!(p, rsip::Param::Transport(rsip::Transport::Tls)));
    let port = uri.host_with_port.port.map(|p| *p.value()).unwrap_or(if tls { 5061 } else { 5060 });
    if let Some(ip) = ipv6 {
        return Some(SocketAddr::new(ip.into(), port));
    }
    match uri.host_with_port.host {
        rsip::Host::IpAddr(ip) => Some(SocketAddr::new(ip, port)),
        rsip::Host::Domain(d) => {
            let d = d.to_string();
            let d = d.trim_start_matches('[').trim_end_matches(']');
            d.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port))
        }
    }
}

/// Frames SIP messages out of a byte stream using Content-Length (RFC 3261 s.18.3).
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("message head larger than {MAX_HEADER_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid or oversized Content-Length")]
    BadContentLength,
}

impl StreamFramer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, or `None` until more bytes arrive. An error
    /// means the stream cannot be resynchronised and should be closed.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        // Leading CRLFs are keep-alives (RFC 5626 s.3.5.1) or message separators.
        let skip = self.buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
        self.buf.drain(..skip);

        let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return if self.buf.len() > MAX_HEADER_BYTES { Err(FramingError::HeadTooLarge) } else { Ok(None) };
        };
        let body_start = head_end + 4;
        let head = String::from_utf8_lossy(&self.buf[..head_end]);
        let mut body_len = 0;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim();
                if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
                    body_len = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n <= MAX_BODY_BYTES)
                        .ok_or(FramingError::BadContentLength)?;
                }
            }
        }
        let total = body_start + body_len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let message = self.buf[..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(message))
    }
}

/// Builds a response to `request` (RFC 3261 s.8.2.6): Via, From, To, Call-ID
/// and CSeq copied, a To tag added when the request had none.
pub fn response_to(request: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
    response_to_headers(&request.headers, status, reason, to_tag)
}

/// [`response_to`] for a request known only by its headers (see [`Refusal`]).
pub fn response_to_headers(request: &Headers, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::default();
    for via in request.get_all("Via") {
        headers.push("Via", via);
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(value) = request.get(name) {
            let value = match (name, to_tag) {
                ("To", Some(tag)) if status != 100 && header_param(value, "tag").is_none() => {
                    format!("{value};tag={tag}")
                }
                _ => value.to_string(),
            };
            headers.push(name, value);
        }
    }
    Response { status, reason: reason.to_string(), headers, body: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE_200: &str = "SIP/2.0 200 OK\r\n\
        v: SIP/2.0/TCP gw.example.com:5060;branch=z9hG4bK1;received=203.0.113.100, SIP/2.0/UDP p.example.com\r\n\
        f: \"Alice, A\" <sip:+1@operator.com;user=phone>;tag=1928301774\r\n\
        t: <sip:+2@tn.operator.com;user=phone>;tag=a6c85cf\r\n\
        i: a84b4c76e66710@gw.example.com\r\n\
        CSeq: 1 INVITE\r\n\
        m: <sip:+2@198.51.100.10:5060;transport=tcp>\r\n\
        Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
        c: application/sdp\r\n\
        l: 4\r\n\r\nv=0\r\nignored";

    #[test]
    fn parses_compact_and_list_headers() {
        let Ok(Message::Response(r)) = parse(INVITE_200.as_bytes()) else {
            panic!("expected a response");
        };
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.headers.get_all("Via").count(), 2);
        assert_eq!(r.top_via().and_then(|v| v.branch), Some("z9hG4bK1".to_string()));
        assert_eq!(r.tag_of_from(), Some("1928301774"));
        assert_eq!(r.tag_of_to(), Some("a6c85cf"));
        assert_eq!(r.call_id(), Some("a84b4c76e66710@gw.example.com"));
        assert_eq!(r.cseq(), Some((1, Method::Invite)));
        assert_eq!(
            r.headers.get_all("Record-Route").collect::<Vec<_>>(),
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(
            name_addr_uri(r.headers.get("Contact").unwrap_or_default()),
            "sip:+2@198.51.100.10:5060;transport=tcp"
        );
        assert_eq!(r.sdp().as_deref(), Some("v=0\r"));
    }

    #[test]
    fn ipv6_references_in_uris_and_request_lines() {
        let invite = "INVITE sip:+818000000001@[2001:db8::1]:5070;transport=udp SIP/2.0\r\n\
            Via: SIP/2.0/UDP [2001:db8::2]:5060;branch=z9hG4bK1\r\n\
            From: <sip:bob@[2001:db8::2]>;tag=1\r\nTo: <sip:+818000000001@[2001:db8::1]>\r\n\
            Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@[2001:db8::2]:5060>\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Request(request)) = parse(invite.as_bytes()) else { panic!("not parsed") };
        assert_eq!(request.uri, "sip:+818000000001@[2001:db8::1]:5070;transport=udp");
        assert_eq!(request.top_via().map(|v| v.host), Some("2001:db8::2".to_string()));

        assert_eq!(uri_socket_addr(&request.uri), Some("[2001:db8::1]:5070".parse().unwrap()));
        assert_eq!(uri_socket_addr("sip:[::1]"), Some("[::1]:5060".parse().unwrap()));
        assert_eq!(uri_socket_addr("sips:alice@[::1]"), Some("[::1]:5061".parse().unwrap()));
        for bad in
            ["sip:[2001:db8::zz]", "sip:[::1", "sip:alice@[::1]junk", "sip:alice@host;x=[::1]", "sip:[::1]@[::2]"]
        {
            assert!(parse_sip_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_panics_on_mangled_input() {
        let valid = INVITE_200.as_bytes();
        for end in 0..valid.len() {
            let _ = parse(&valid[..end]);
        }
        for i in 0..valid.len() {
            for byte in [0u8, b':', b';', b'<', b'>', b'"', b',', b' ', b'\n', 0xff] {
                let mut mangled = valid.to_vec();
                mangled[i] = byte;
                if let Ok(Message::Response(r)) = parse(&mangled) {
                    let _ = (r.top_via(), r.cseq(), r.tag_of_to(), r.sdp());
                    let _ = r.headers.get("Contact").map(name_addr_uri);
                }
            }
        }
    }

    #[test]
    fn keeps_the_peer_reason_phrase() {
        let raw = "SIP/2.0 183 Session Progress\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n";
        let Ok(Message::Response(r)) = parse(raw.as_bytes()) else { panic!() };
        assert_eq!(r.reason, "Session Progress");
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let raw = "SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(parse(raw.as_bytes()), Err(ParseError::Truncated { .. })));
        assert!(matches!(parse(b"\x00\x01garbage"), Err(ParseError::Syntax(_))));
    }

    /// Found by the `parse_message` fuzz target: rsip took "000" as status 0, which serialised
    /// as "SIP/2.0 0 OK" that nothing parses back (and would have reached the INVITE
    /// transaction as a provisional response).
    #[test]
    fn rejects_status_codes_outside_1xx_to_6xx() {
        for status in ["000", "099", "+99", "700", "999"] {
            let raw = format!(
                "SIP/2.0 {status} OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n"
            );
            assert!(matches!(parse(raw.as_bytes()), Err(ParseError::Syntax(_))), "{status}");
        }
        for status in ["100", "699"] {
            let raw = format!("SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n");
            let Ok(message) = parse(raw.as_bytes()) else { panic!("{status}") };
            assert!(parse(&message.to_bytes()).is_ok(), "{status}");
        }
    }

    /// Found by the `endpoint_input` fuzz target: a 2xx whose Contact had a control character
    /// (`<sip:+81...@gw.example.com:50\x110;transport=udp>`) was accepted, and that Contact
    /// became the request-URI of the ACK, which no parser (ours included) reads back. A bare LF
    /// in a value would have gone on the wire the same way.
    #[test]
    fn rejects_control_characters_in_the_head() {
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nTo: <sip:b@h>;\ttag=1\r\n\
                  Contact: <sip:+818000000001@gw.example.com:5060;transport=udp>\r\nl: 3\r\n\r\na\x00\n";
        assert!(parse(ok.as_bytes()).is_ok());
        for bad in ["\x11", "\x00", "\n", "\r", "\nX-Evil: 1", "\x7f", "\x1b"] {
            let raw = ok.replace(":5060;", &format!(":50{bad}60;"));
            assert!(matches!(parse(raw.as_bytes()), Err(ParseError::Syntax(_))), "{bad:?}");
        }
        assert!(parse(b"OPTIONS sip:a\x01b@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n").is_err());
        assert!(parse(b"SIP/2.0 200 O\x00K\r\nVia: SIP/2.0/UDP h\r\n\r\n").is_err());
        assert!(parse(b"OPTIONS sip:a@h SIP/2.0\r\n\r\n").is_ok());
    }

    /// Found by the `parse_message` fuzz target: rsip read `sip:gw.exa\r\n\r\n.c/m` as the
    /// request-URI, then headers with control characters after it (which went back in the Via of
    /// the 400). And without an empty line, rsip takes the first header line as the only header
    /// and the rest as the body.
    #[test]
    fn the_head_ends_at_the_first_empty_line() {
        let raw = b"OPTIONS sip:gw.exa\r\n\r\n.c/m SIP/2.0\r\nVi`:\x1f\x1fl-ID: c1\r\nCSet: <sip:+8\r\n\r\n";
        assert!(matches!(parse(raw), Err(ParseError::Syntax(_))));
        let raw = b"OPTIONS sip:gw.exa\r\n\r\n.c/m SIP/2.0\r\nCall-ID: c1\r\n\r\n";
        assert!(matches!(parse(raw), Err(ParseError::Syntax(_))));
        let raw = b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: c1\r\nContent-Length: 0\r\n";
        assert!(matches!(parse(raw), Err(ParseError::Syntax(_))));
        let raw = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: c1\r\n\r\nv=0\r\n\r\nx";
        assert!(parse(raw).is_ok(), "an empty line in the body is the body's business");
    }

    #[test]
    fn via_received_and_rport() {
        let mut req =
            Request { method: Method::Options, uri: "sip:gw".into(), headers: Headers::default(), body: vec![] };
        req.headers.push("Via", "SIP/2.0/UDP client.example.com:5070;branch=z9hG4bKa;rport");
        req.headers.push("Via", "SIP/2.0/UDP other");
        let source: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        stamp_top_via(&mut req, source);
        assert_eq!(
            req.headers.get("Via"),
            Some("SIP/2.0/UDP client.example.com:5070;branch=z9hG4bKa;received=192.0.2.7;rport=40000")
        );
        let via = req.top_via().unwrap();
        assert_eq!(response_destination(&via), Some(source));

        // Sent-by already equal to the source and no rport: left untouched.
        req.headers.set_first("Via", "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKb".into());
        stamp_top_via(&mut req, source);
        assert_eq!(req.headers.get("Via"), Some("SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKb"));
        assert_eq!(response_destination(&req.top_via().unwrap()), Some("192.0.2.7:5070".parse().unwrap()));

        // Hostname sent-by without rport: received added, sent-by port kept.
        req.headers.set_first("Via", "SIP/2.0/UDP host.example:5071;branch=z9hG4bKc".into());
        stamp_top_via(&mut req, source);
        assert_eq!(response_destination(&req.top_via().unwrap()), Some("192.0.2.7:5071".parse().unwrap()));
    }

    #[test]
    fn stream_framing_waits_for_the_whole_message() {
        let msg = b"OPTIONS sip:a SIP/2.0\r\nl: 5\r\n\r\nhello";
        let mut framer = StreamFramer::default();
        framer.push(b"\r\n\r\n");
        framer.push(&msg[..20]);
        assert_eq!(framer.next_message(), Ok(None));
        framer.push(&msg[20..msg.len() - 2]);
        assert_eq!(framer.next_message(), Ok(None));
        framer.push(&msg[msg.len() - 2..]);
        framer.push(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(framer.next_message(), Ok(Some(msg.to_vec())));
        assert_eq!(framer.next_message(), Ok(Some(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec())));
        assert_eq!(framer.next_message(), Ok(None));
        framer.push(b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n");
        assert_eq!(framer.next_message(), Err(FramingError::BadContentLength));
    }

    #[test]
    fn uri_addresses() {
        assert_eq!(
            uri_socket_addr("sip:+2@198.51.100.10:5070;transport=tcp"),
            Some("198.51.100.10:5070".parse().unwrap())
        );
        assert_eq!(uri_socket_addr("sip:198.51.100.10"), Some("198.51.100.10:5060".parse().unwrap()));
        assert_eq!(uri_socket_addr("sip:tn.operator.com"), None);
        assert_eq!(uri_socket_addr("sip:198.51.100.10;transport=tls;lr"), Some("198.51.100.10:5061".parse().unwrap()));
        assert_eq!(uri_socket_addr("sip:198.51.100.10;transport=TLS"), Some("198.51.100.10:5061".parse().unwrap()));
    }
}
