//! Wire bytes to [`Message`]: the start line, the header fields and the body framing of RFC 3261
//! s.7 and s.18.3, with the answers s.8.2 and s.21 require for what cannot be taken in.
//!
//! Hand-written rather than left to rsip, because rsip's parser only says "unparsable" where a
//! server must answer: a method it does not know (501, s.8.2.1), another SIP version (505), bad
//! framing (400 for a request whose Content-Length runs past its datagram or disagrees with
//! another, s.18.3 and s.20.14), a header with a NUL or a non-UTF-8 byte (400). rsip also cannot
//! unfold continuation lines (s.7.3.1) and rewrites the request-URI (`urn:service:sos` of an
//! emergency INVITE, RFC 5031, did not parse at all). rsip still parses URIs where a URI is used
//! ([`crate::message::parse_sip_uri`]) and names the methods.
//!
//! What may be copied into a message we send (Via, From, To, Call-ID, CSeq: the response headers
//! of s.8.2.6) is never taken with a control character in it: such a request is dropped rather
//! than answered, so nothing it carries can be echoed onto the wire.

use crate::message::{Headers, Message, Method, Request, Response};

/// Upper bounds on what a framed or received message may declare.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The headers a response copies from its request (RFC 3261 s.8.2.6).
const ECHOED: [&str; 5] = ["Via", "From", "To", "Call-ID", "CSeq"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing to answer: dropped (and logged by the caller).
    #[error("unparsable SIP message: {0}")]
    Syntax(String),
    /// A response (or a message over a stream) shorter than its Content-Length.
    #[error("Content-Length {declared} exceeds the {available} bytes received")]
    Truncated { declared: usize, available: usize },
    #[error("invalid Content-Length")]
    ContentLength,
    /// A request that must be answered with an error: `headers` are its own, to build the
    /// response from.
    #[error("request refused with {}: {}", .0.status, .0.why)]
    Refused(Box<Refusal>),
}

/// The error response a request gets instead of being processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    /// For the log.
    pub why: String,
    /// The request's method when rsip knows it (an ACK is never answered).
    pub method: Option<Method>,
    pub headers: Headers,
}

/// Parses one complete SIP message: a datagram, or one message framed from a stream.
pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
    // s.7.5: CRLFs before the start line are ignored (keep-alives, RFC 5626 s.3.5.1).
    let data = &data[data.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count()..];
    let head_end =
        find(data, b"\r\n\r\n").ok_or_else(|| ParseError::Syntax("no empty line after the headers".into()))?;
    if head_end > MAX_HEADER_BYTES {
        return Err(ParseError::Syntax(format!("message head larger than {MAX_HEADER_BYTES} bytes")));
    }
    let (head, body) = (&data[..head_end], &data[head_end + 4..]);
    let mut lines = head.split_lines();
    let start_line = lines.next().unwrap_or_default();
    let start = std::str::from_utf8(start_line)
        .ok()
        .filter(|s| !s.bytes().any(is_forbidden))
        .ok_or_else(|| ParseError::Syntax("control character or non-UTF-8 byte in the start line".into()))?;
    let start = StartLine::parse(start)?;
    let fields = HeaderFields::parse(lines)?;

    let refuse = |status: u16, reason: &'static str, why: String| -> ParseError {
        match &start {
            StartLine::Request { method, .. } => ParseError::Refused(Box::new(Refusal {
                status,
                reason,
                why,
                method: method.parse().ok(),
                headers: fields.headers.clone(),
            })),
            StartLine::Response { .. } => ParseError::Syntax(why),
        }
    };
    if let StartLine::Request { version, .. } = &start
        && version != "SIP/2.0"
    {
        return Err(refuse(505, "Version Not Supported", format!("version {version}")));
    }
    if let Some(why) = &fields.bad {
        return Err(refuse(400, "Bad Request", why.clone()));
    }
    let declared = match fields.content_length() {
        Ok(declared) => declared,
        Err(e) if matches!(start, StartLine::Request { .. }) => return Err(refuse(400, "Bad Request", e.to_string())),
        Err(e) => return Err(e),
    };
    let body = match declared {
        Some(declared) if declared > body.len() => {
            let why = format!("Content-Length {declared} exceeds the {} bytes received", body.len());
            return Err(match start {
                // s.18.3: a request arriving short is answered 400, a response is discarded.
                StartLine::Request { .. } => refuse(400, "Bad Request", why),
                StartLine::Response { .. } => ParseError::Truncated { declared, available: body.len() },
            });
        }
        Some(declared) => &body[..declared],
        None => body,
    };
    let (headers, body) = (fields.headers, body.to_vec());
    match start {
        StartLine::Request { method, uri, .. } => match method.parse::<Method>() {
            Ok(method) => Ok(Message::Request(Request { method, uri, headers, body })),
            Err(_) => Err(ParseError::Refused(Box::new(Refusal {
                status: 501,
                reason: "Not Implemented",
                why: format!("method {method}"),
                method: None,
                headers,
            }))),
        },
        StartLine::Response { status, reason } => Ok(Message::Response(Response { status, reason, headers, body })),
    }
}

enum StartLine {
    Request { method: String, uri: String, version: String },
    Response { status: u16, reason: String },
}

impl StartLine {
    fn parse(line: &str) -> Result<StartLine, ParseError> {
        let syntax = |why: &str| ParseError::Syntax(format!("{why}: {line:?}"));
        if let Some(rest) = line.strip_prefix("SIP/") {
            let (version, rest) = rest.split_once(' ').ok_or_else(|| syntax("bad status line"))?;
            if version != "2.0" {
                return Err(syntax("a response of another SIP version"));
            }
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            // s.7.2: three digits, 1xx to 6xx.
            let status = Some(code)
                .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|s| (100..=699).contains(s))
                .ok_or_else(|| syntax("bad status code"))?;
            return Ok(StartLine::Response { status, reason: reason.trim().to_string() });
        }
        // s.7.1: Method SP Request-URI SP SIP-Version, single spaces.
        let mut parts = line.split(' ');
        let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(syntax("bad request line"));
        };
        let is_version = version
            .strip_prefix("SIP/")
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(major, minor)| is_digits(major) && is_digits(minor));
        if !is_token(method) || !is_version || uri.is_empty() || !uri.contains(':') {
            return Err(syntax("bad request line"));
        }
        Ok(StartLine::Request { method: method.to_string(), uri: uri.to_string(), version: version.to_string() })
    }
}

/// The header section, unfolded, with compact names expanded and list headers split.
struct HeaderFields {
    headers: Headers,
    content_lengths: Vec<String>,
    /// Why the request must get a 400, when a field other than those a response echoes is bad.
    bad: Option<String>,
}

impl HeaderFields {
    fn parse<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<HeaderFields, ParseError> {
        // s.7.3.1: a line starting with whitespace continues the previous field.
        let mut fields: Vec<Vec<u8>> = Vec::new();
        for line in lines {
            match (line.first(), fields.last_mut()) {
                (Some(b' ' | b'\t'), Some(field)) => {
                    field.push(b' ');
                    field.extend_from_slice(line.trim_ascii_start());
                }
                (Some(b' ' | b'\t'), None) => return Err(ParseError::Syntax("continuation line first".into())),
                _ => fields.push(line.to_vec()),
            }
        }
        let mut parsed = HeaderFields { headers: Headers::default(), content_lengths: Vec::new(), bad: None };
        for field in &fields {
            let Some(colon) = field.iter().position(|&b| b == b':') else {
                parsed.bad.get_or_insert_with(|| "a header line without a colon".into());
                continue;
            };
            let name = std::str::from_utf8(field[..colon].trim_ascii()).ok().filter(|n| is_token(n));
            let Some(name) = name.map(expand_compact) else {
                parsed.bad.get_or_insert_with(|| "a malformed header name".into());
                continue;
            };
            let raw = field[colon + 1..].trim_ascii();
            let value = std::str::from_utf8(raw).ok().filter(|v| !v.bytes().any(is_forbidden));
            let Some(value) = value else {
                if ECHOED.iter().any(|e| e.eq_ignore_ascii_case(name)) {
                    return Err(ParseError::Syntax(format!("control character or non-UTF-8 byte in {name}")));
                }
                parsed.bad.get_or_insert_with(|| format!("control character or non-UTF-8 byte in {name}"));
                continue;
            };
            if name.eq_ignore_ascii_case("Content-Length") {
                parsed.content_lengths.push(value.to_string());
            } else if is_list_header(name) {
                for item in crate::message::split_list(value) {
                    parsed.headers.push(name, item);
                }
            } else {
                parsed.headers.push(name, value);
            }
        }
        Ok(parsed)
    }

    /// The one Content-Length of the message; several that disagree make its framing
    /// ambiguous, which is refused (RFC 7230 s.3.3.2 reasons the same way for HTTP).
    fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let mut declared = None;
        for value in &self.content_lengths {
            let n = Some(value.as_str())
                .filter(|v| is_digits(v))
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n <= MAX_BODY_BYTES)
                .ok_or(ParseError::ContentLength)?;
            if declared.is_some_and(|d| d != n) {
                return Err(ParseError::ContentLength);
            }
            declared = Some(n);
        }
        Ok(declared)
    }
}

/// Compact forms (RFC 3261 s.7.3.3) mapped to the full names the code looks up.
fn expand_compact(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "v" => "Via",
        "f" => "From",
        "t" => "To",
        "i" => "Call-ID",
        "m" => "Contact",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "k" => "Supported",
        "s" => "Subject",
        "e" => "Content-Encoding",
        "x" => "Session-Expires",
        "o" => "Event",
        "u" => "Allow-Events",
        "r" => "Refer-To",
        "b" => "Referred-By",
        _ => name,
    }
}

/// Headers whose comma-joined values are separate entries (RFC 3261 s.7.3.1).
fn is_list_header(name: &str) -> bool {
    ["Via", "Route", "Record-Route", "Contact"].iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Control characters but HTAB, and DEL, may not appear in a head (s.25.1); the line structure
/// is CRLF only, so a bare CR or LF inside a line counts too.
fn is_forbidden(b: u8) -> bool {
    matches!(b, 0..=0x08 | 0x0a..=0x1f | 0x7f)
}

/// s.25.1 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

trait SplitLines {
    fn split_lines(&self) -> impl Iterator<Item = &[u8]>;
}

impl SplitLines for [u8] {
    /// Lines ending in CRLF; a bare CR or LF stays inside its line (and makes it invalid).
    fn split_lines(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = Some(self);
        std::iter::from_fn(move || {
            let current = rest?;
            match find(current, b"\r\n") {
                Some(i) => {
                    rest = Some(&current[i + 2..]);
                    Some(&current[..i])
                }
                None => {
                    rest = None;
                    Some(current)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SipHeaders;

    const OPTIONS: &str = "OPTIONS sip:gw.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1\r\n\
        From: <sip:a@example.com>;tag=1\r\nTo: <sip:gw.example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n";

    fn refusal(raw: &[u8]) -> Refusal {
        match parse(raw) {
            Err(ParseError::Refused(refusal)) => *refusal,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn unknown_methods_and_versions_are_refused_with_their_headers() {
        let unknown = refusal(format!("{}\r\n", OPTIONS.replace("OPTIONS", "FOOBAR")).as_bytes());
        assert_eq!((unknown.status, unknown.method), (501, None));
        assert_eq!(unknown.headers.get("Call-ID"), Some("c1"));
        let version = refusal(format!("{}\r\n", OPTIONS.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1)).as_bytes());
        assert_eq!((version.status, version.method), (505, Some(Method::Options)));
        // Methods are case-sensitive on the wire, but rsip names them either way.
        assert!(matches!(parse(format!("{OPTIONS}\r\n").as_bytes()), Ok(Message::Request(_))));
    }

    #[test]
    fn folded_headers_are_unfolded() {
        let raw = format!("{OPTIONS}Subject: first\r\n  second line\r\n\tthird\r\nContent-Length: 0\r\n\r\n");
        let Ok(Message::Request(request)) = parse(raw.as_bytes()) else { panic!() };
        assert_eq!(request.headers.get("Subject"), Some("first second line third"));
        assert!(matches!(parse(b"OPTIONS sip:a@h SIP/2.0\r\n Via: x\r\n\r\n"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn bad_bytes_in_a_header_get_400_unless_the_response_would_echo_them() {
        for bad in [&b"\x00"[..], b"\xff\xfe", b"\x1b"] {
            let mut raw = format!("{OPTIONS}Subject: a").into_bytes();
            raw.extend_from_slice(bad);
            raw.extend_from_slice(b"b\r\n\r\n");
            assert_eq!(refusal(&raw).status, 400);
            let mut echoed = OPTIONS.replace("Call-ID: c1", "Call-ID: c").into_bytes();
            let at = echoed.windows(9).position(|w| w == b"Call-ID: ").unwrap() + 10;
            for (i, b) in bad.iter().enumerate() {
                echoed.insert(at + i, *b);
            }
            echoed.extend_from_slice(b"\r\n");
            assert!(matches!(parse(&echoed), Err(ParseError::Syntax(_))), "{bad:?}");
        }
    }

    #[test]
    fn framing_errors_of_requests_are_400() {
        let two = format!("{OPTIONS}Content-Length: 2\r\nl: 3\r\n\r\nabc");
        assert_eq!(refusal(two.as_bytes()).status, 400);
        let response = "SIP/2.0 200 OK\r\nContent-Length: 2\r\nl: 3\r\n\r\nabc";
        assert!(matches!(parse(response.as_bytes()), Err(ParseError::ContentLength)));
        let same = format!("{OPTIONS}Content-Length: 3\r\nl: 3\r\n\r\nabc");
        assert!(parse(same.as_bytes()).is_ok(), "repeated but equal is not ambiguous");
        let short = refusal(format!("{OPTIONS}Content-Length: 10\r\n\r\nabc").as_bytes());
        assert_eq!(short.status, 400);
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(parse(response.as_bytes()), Err(ParseError::Truncated { .. })));
        let extra = format!("{OPTIONS}Content-Length: 1\r\n\r\nabc");
        let Ok(Message::Request(r)) = parse(extra.as_bytes()) else { panic!() };
        assert_eq!(r.body, b"a", "bytes past Content-Length are discarded (s.18.3)");
    }

    #[test]
    fn leading_crlfs_and_urns() {
        let raw = format!("\r\n\r\n{OPTIONS}\r\n");
        assert!(parse(raw.as_bytes()).is_ok());
        let sos =
            OPTIONS.replace("OPTIONS sip:gw.example.com", "INVITE urn:service:sos").replace("1 OPTIONS", "1 INVITE");
        let Ok(Message::Request(r)) = parse(format!("{sos}\r\n").as_bytes()) else { panic!() };
        assert_eq!((r.method, r.uri.as_str(), r.cseq().map(|c| c.0)), (Method::Invite, "urn:service:sos", Some(1)));
    }
}
