//! Arbitrary bytes through everything `Endpoint::handle_input` and the TCP transport do to a
//! message before the state machines see it: stream framing, `message::parse`, the header
//! accessors and helpers, Via stamping and the response built for a request. What parses must
//! serialise to the crate's canonical form (`to_bytes`), which must parse back to the same
//! message: the gateway relies on being able to read what it writes.
#![no_main]

use std::net::SocketAddr;

use camara_sip::digest::Challenge;
use camara_sip::message::{
    Message, ParseError, SipHeaders, StreamFramer, Via, header_param, name_addr_uri, parse, response_destination,
    response_to, response_to_headers, split_host_port, split_list, stamp_top_via, stamp_via, uri_socket_addr,
};
use camara_sip::uas::parse_name_addr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_message(data);

    // The TCP path: the same bytes arriving in two pieces, framed by Content-Length.
    let mut framer = StreamFramer::default();
    let split = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    framer.push(&data[..split]);
    let mut framed = 0;
    while let Ok(Some(message)) = framer.next_message() {
        check_message(&message);
        framed += 1;
        assert!(framed <= data.len(), "the framer made messages out of nothing");
    }
    framer.push(&data[split..]);
    while let Ok(Some(message)) = framer.next_message() {
        check_message(&message);
        framed += 1;
        assert!(framed <= data.len() + 1, "the framer made messages out of nothing");
    }
});

fn check_message(data: &[u8]) {
    let message = match parse(data) {
        Ok(message) => message,
        // What the endpoint answers a request it cannot take in (400, 501, 505) must be readable.
        Err(ParseError::Refused(mut refusal)) => {
            stamp_via(&mut refusal.headers, "192.0.2.7:40000".parse().unwrap());
            let bytes = response_to_headers(&refusal.headers, refusal.status, refusal.reason, Some("t")).to_bytes();
            if let Err(e) = parse(&bytes) {
                panic!("{} to a refused request does not parse: {e}\n{}", refusal.status, String::from_utf8_lossy(&bytes));
            }
            return;
        }
        Err(_) => return,
    };
    exercise_headers(&message);
    let canonical = message.to_bytes();
    let reparsed = match parse(&canonical) {
        Ok(m) => m,
        Err(e) => panic!("canonical form does not parse back: {e}\n{}", String::from_utf8_lossy(&canonical)),
    };
    assert_eq!(
        String::from_utf8_lossy(&reparsed.to_bytes()),
        String::from_utf8_lossy(&canonical),
        "canonical form is not stable"
    );

    if let Message::Request(mut request) = message {
        let _ = uri_socket_addr(&request.uri);
        let source: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        stamp_top_via(&mut request, source);
        if let Some(via) = request.top_via() {
            let _ = response_destination(&via);
        }
        // What the endpoint answers a bad request with must itself be a readable message.
        let response = response_to(&request, 400, "Bad Request", Some("tag1"));
        let bytes = response.to_bytes();
        if let Err(e) = parse(&bytes) {
            panic!("400 to a parsed request does not parse: {e}\n{}", String::from_utf8_lossy(&bytes));
        }
    }
}

fn exercise_headers(message: &Message) {
    match message {
        Message::Request(r) => accessors(r),
        Message::Response(r) => accessors(r),
    }
    for (name, value) in message.headers().iter() {
        let _ = split_list(value);
        let _ = header_param(value, "tag");
        let _ = header_param(value, name);
        let _ = name_addr_uri(value);
        let _ = parse_name_addr(value);
        let _ = split_host_port(value);
        if let Some(via) = Via::parse(value) {
            let _ = via.sent_by();
            let _ = response_destination(&via);
        }
        if name.eq_ignore_ascii_case("WWW-Authenticate") || name.eq_ignore_ascii_case("Proxy-Authenticate") {
            let _ = Challenge::parse(value);
        }
        let _ = uri_socket_addr(name_addr_uri(value));
    }
}

fn accessors(m: &impl SipHeaders) {
    let _ = (m.call_id(), m.cseq(), m.top_via(), m.tag_of_from(), m.tag_of_to(), m.sdp());
    let _ = m.headers().has_option_tag("Require", "100rel");
}
