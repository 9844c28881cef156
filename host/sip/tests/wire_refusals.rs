//! What RFC 3261 says a user agent answers to requests it cannot take in (s.7.3.1, s.8.2, s.18.3,
//! s.21), sent as raw bytes over UDP and TCP to a running user agent; then sipp places a normal
//! call to the same user agent, which must still work.

use std::net::SocketAddr;
use std::time::Duration;

use camara_sip::message::{Message, Response, parse};
use camara_sip::{CallEvent, Transport, UaEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::*;

struct Case {
    name: &'static str,
    /// The request; `{id}` becomes a Call-ID and branch unique to the case and transport.
    raw: &'static [u8],
    status: u16,
    /// A header the response must carry (`Allow` with 501, `Accept` with 415).
    header: Option<&'static str>,
    /// Only over UDP: over a stream the framer waits for the missing bytes instead.
    udp_only: bool,
}

const CASES: &[Case] = &[
    Case { name: "unknown method", raw: b"FOOBAR sip:gw@h SIP/2.0\r\n{head}CSeq: 1 FOOBAR\r\nContent-Length: 0\r\n\r\n", status: 501, header: Some("Allow"), udp_only: false },
    Case { name: "folded header", raw: b"OPTIONS sip:gw@h SIP/2.0\r\n{head}CSeq: 1 OPTIONS\r\nSubject: first\r\n  second line\r\nContent-Length: 0\r\n\r\n", status: 200, header: None, udp_only: false },
    Case { name: "NUL in a header", raw: b"OPTIONS sip:gw@h SIP/2.0\r\n{head}CSeq: 1 OPTIONS\r\nSubject: a\x00b\r\nContent-Length: 0\r\n\r\n", status: 400, header: None, udp_only: false },
    Case { name: "non-UTF-8 in a header", raw: b"OPTIONS sip:gw@h SIP/2.0\r\n{head}CSeq: 1 OPTIONS\r\nSubject: caf\xe9\r\nContent-Length: 0\r\n\r\n", status: 400, header: None, udp_only: false },
    Case { name: "INVITE with a text/plain body", raw: b"INVITE sip:+818000000001@h SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContact: <sip:peer@127.0.0.1:9>\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", status: 415, header: Some("Accept"), udp_only: false },
    Case { name: "mailto: request-URI", raw: b"INVITE mailto:alice@example.com SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContact: <sip:peer@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n", status: 416, header: None, udp_only: false },
    Case { name: "conflicting Content-Length", raw: b"OPTIONS sip:gw@h SIP/2.0\r\n{head}CSeq: 1 OPTIONS\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", status: 400, header: None, udp_only: false },
    Case { name: "SIP/3.0", raw: b"OPTIONS sip:gw@h SIP/3.0\r\n{head}CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", status: 505, header: None, udp_only: false },
    Case { name: "Content-Length past the datagram", raw: b"OPTIONS sip:gw@h SIP/2.0\r\n{head}CSeq: 1 OPTIONS\r\nContent-Length: 100\r\n\r\nabc", status: 400, header: None, udp_only: true },
    Case { name: "leading CRLFs", raw: b"\r\n\r\nOPTIONS sip:gw@h SIP/2.0\r\n{head}CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", status: 200, header: None, udp_only: false },
];

/// The mandatory headers of every case, addressed back to `local` (the test's socket).
fn fill(case: &Case, index: usize, transport: Transport, local: SocketAddr) -> Vec<u8> {
    let id = format!("wire{index}{}", transport.uri_param());
    let head = format!(
        "Via: SIP/2.0/{} {local};branch=z9hG4bK{id}\r\nMax-Forwards: 70\r\nFrom: <sip:peer@example.com>;tag=p{id}\r\n\
         To: <sip:gw@example.com>\r\nCall-ID: {id}@example.com\r\n",
        transport.via_name()
    );
    let raw = case.raw;
    let at = raw.windows(6).position(|w| w == b"{head}").expect("template");
    [&raw[..at], head.as_bytes(), &raw[at + 6..]].concat()
}

fn check(case: &Case, transport: Transport, bytes: &[u8]) {
    let Ok(Message::Response(response)) = parse(bytes) else {
        panic!("{} over {transport:?}: no response but {:?}", case.name, String::from_utf8_lossy(bytes));
    };
    check_response(case, transport, &response);
}

fn check_response(case: &Case, transport: Transport, response: &Response) {
    assert_eq!(response.status, case.status, "{} over {transport:?}: {response:?}", case.name);
    if let Some(header) = case.header {
        assert!(response.headers.get(header).is_some(), "{} over {transport:?}: no {header}", case.name);
    }
    assert!(response.headers.get("Call-ID").is_some_and(|c| c.starts_with("wire")), "{}: {response:?}", case.name);
}

async fn over_udp(target: SocketAddr) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    for (i, case) in CASES.iter().enumerate() {
        socket.send_to(&fill(case, i, Transport::Udp, local), target).await.unwrap();
        let mut buf = vec![0u8; 65535];
        // Provisional responses (100 Trying to an INVITE) come first where there are any.
        loop {
            let (n, _) = tokio::time::timeout(STEP, socket.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{} over UDP: no response", case.name))
                .unwrap();
            if !matches!(parse(&buf[..n]), Ok(Message::Response(r)) if r.status < 200) {
                check(case, Transport::Udp, &buf[..n]);
                break;
            }
        }
    }
}

async fn over_tcp(target: SocketAddr) {
    for (i, case) in CASES.iter().enumerate().filter(|(_, c)| !c.udp_only) {
        // A connection per case: a refused framing error may leave the stream unusable.
        let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
        let local = stream.local_addr().unwrap();
        stream.write_all(&fill(case, i, Transport::Tcp, local)).await.unwrap();
        let mut framer = camara_sip::message::StreamFramer::default();
        let mut buf = vec![0u8; 65535];
        'read: loop {
            let n = tokio::time::timeout(STEP, stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{} over TCP: no response", case.name))
                .unwrap();
            assert!(n > 0, "{} over TCP: connection closed without a response", case.name);
            framer.push(&buf[..n]);
            while let Some(message) = framer.next_message().unwrap() {
                if !matches!(parse(&message), Ok(Message::Response(r)) if r.status < 200) {
                    check(case, Transport::Tcp, &message);
                    break 'read;
                }
            }
        }
    }
}

#[tokio::test]
async fn malformed_and_unsupported_requests_get_the_answer_rfc_3261_requires_then_a_call_works() {
    let (ua, mut events) = start_ua().await;
    over_udp(ua.local_addr(Transport::Udp).unwrap()).await;
    over_tcp(ua.local_addr(Transport::Tcp).unwrap()).await;
    // None of them became a call.
    let quiet = tokio::time::timeout(Duration::from_millis(300), events.recv()).await;
    assert!(quiet.is_err(), "a refused request was reported: {quiet:?}");

    if !sipp_available() {
        ua.shutdown().await;
        return;
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let sipp = Sipp::call("uac_100rel.xml", transport, ua.local_addr(transport).unwrap());
        let UaEvent { call_id, event } = next_event(&mut events).await;
        assert!(matches!(event, CallEvent::Incoming { .. }), "{event:?}");
        answer_with_prack_until_bye(&ua, &mut events, &call_id, SDP).await;
        sipp.assert_success().await;
    }
    ua.shutdown().await;
}

const SDP: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
