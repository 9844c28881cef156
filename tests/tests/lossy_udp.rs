//! "Calls still complete over a lossy UDP path, through retransmission": the walking skeleton's
//! call (registration, subscription, call, 100, reliable 183 and 180 with PRACK, 200, ACK, the
//! events, DELETE -> BYE) over UDP through a relay that loses datagrams.
//!
//! The path: gateway <-> [relay: gateway-facing socket | sipp-facing socket] <-> sipp.
//! - The gateway's `next_hop` is the relay's gateway-facing socket; the relay forwards what it
//!   gets there to sipp from its sipp-facing socket.
//! - sipp runs with `-rsa <sipp-facing socket>`: everything sipp sends (here only responses) goes
//!   to the relay, which forwards it to the gateway from its gateway-facing socket.
//! - The gateway's in-dialog requests (PRACK, ACK, BYE) go to the first Route, else the Contact:
//!   `uas_call_flow_lossy.xml` record-routes the relay (`-key relay`), so they cross it too.
//! - sipp sends no requests in this flow, so the gateway sends no responses: nothing bypasses the
//!   relay and both directions are lossy, gateway->sipp (INVITE, PRACK, PRACK, ACK, BYE) and
//!   sipp->gateway (100, 183, 200/PRACK, 180, 200/PRACK, 200/INVITE, 200/BYE).
//!
//! Loss: a seeded RNG drops the first copy of about one message in four per direction (the
//! decision depends only on the seed, the direction and the message's rank of first appearance,
//! not on timing). A retransmission is never dropped, so no message is lost twice in a row and
//! every exchange recovers after one retransmission (T1 = 500 ms); nor is a datagram following
//! a dropped one in the same direction (sipp 3.6 does not recover when both its 100 and its
//! reliable 183 are lost: it neither answers the retransmitted INVITE nor re-sends the 183). The 200 to a PRACK is never
//! dropped: sipp only remembers the last request it answered, and a PRACK retransmitted after
//! the next PRACK would abort its scenario (a limit of sipp, not of the gateway).
//! `LOSSY_UDP_SEED=<n>` tries another loss pattern.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use tokio::net::UdpSocket;

/// Drops the first copy of ~1 message in 4.
const DROP_PERCENT: u64 = 25;
/// A seed whose pattern drops in both directions (checked by the test).
const DEFAULT_SEED: u64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToSipp,
    ToGateway,
}

/// What one direction of the relay saw.
#[derive(Default)]
struct Path {
    /// Copies seen per message (start line, CSeq, top Via branch), with the rank of its first copy.
    messages: HashMap<String, (u64, u32)>,
    dropped: Vec<String>,
    forwarded: Vec<String>,
    last_dropped: bool,
}

#[derive(Default)]
struct Log {
    to_sipp: Path,
    to_gateway: Path,
    /// Every datagram in order, for failure messages.
    trace: Vec<String>,
}

/// A UDP relay on loopback between the gateway and sipp that loses datagrams.
struct LossyRelay {
    /// Where the gateway sends (its next hop; the Record-Route of the scenario).
    gateway_side: SocketAddr,
    /// Where sipp sends (`-rsa`).
    sipp_side: SocketAddr,
    log: Arc<Mutex<Log>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn header<'a>(text: &'a str, names: &[&str]) -> Option<&'a str> {
    text.split("\r\n\r\n").next()?.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        names.iter().any(|n| name.trim().eq_ignore_ascii_case(n)).then(|| value.trim())
    })
}

/// (label, identity) of a SIP datagram: retransmissions share the identity.
fn identify(data: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(data);
    let start = text.lines().next().unwrap_or_default().trim().to_string();
    let cseq = header(&text, &["CSeq"]).unwrap_or_default().to_string();
    let branch = header(&text, &["Via", "v"])
        .and_then(|via| via.split(';').find_map(|p| p.trim().strip_prefix("branch=")))
        .unwrap_or_default()
        .to_string();
    let label = match start.strip_prefix("SIP/2.0 ") {
        Some(status) => format!("{} ({})", status.split(' ').next().unwrap_or_default(), cseq),
        None => start.split(' ').next().unwrap_or_default().to_string(),
    };
    (label, format!("{start}|{cseq}|{branch}"))
}

/// splitmix64: a small seeded mixer; enough for a reproducible loss pattern.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Log {
    /// Whether to forward this datagram; records the decision.
    fn forward(&mut self, direction: Direction, seed: u64, data: &[u8], started: Instant) -> bool {
        let (label, key) = identify(data);
        let path = match direction {
            Direction::ToSipp => &mut self.to_sipp,
            Direction::ToGateway => &mut self.to_gateway,
        };
        let next_rank = path.messages.len() as u64;
        let (rank, copies) = path.messages.entry(key).or_insert((next_rank, 0));
        *copies += 1;
        let answers_prack = label.starts_with('2') && label.ends_with(" PRACK)");
        let drop = *copies == 1
            && !answers_prack
            && !path.last_dropped
            && mix(seed ^ mix(*rank * 2 + (direction == Direction::ToGateway) as u64)) % 100 < DROP_PERCENT;
        let copy = if *copies == 1 { String::new() } else { format!(" (copy {copies})") };
        let arrow = if direction == Direction::ToSipp { "gateway -> sipp" } else { "sipp -> gateway" };
        let verdict = if drop { "DROPPED" } else { "forwarded" };
        self.trace.push(format!("{:>6} ms {arrow}: {label}{copy} {verdict}", started.elapsed().as_millis()));
        path.last_dropped = drop;
        if drop {
            path.dropped.push(label);
        } else {
            path.forwarded.push(label);
        }
        !drop
    }
}

impl LossyRelay {
    async fn start(sipp: SocketAddr, seed: u64) -> LossyRelay {
        let gateway_socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let sipp_socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let log = Arc::new(Mutex::new(Log::default()));
        // The gateway's address: learnt from its first datagram (the INVITE comes first).
        let gateway = Arc::new(Mutex::new(None::<SocketAddr>));
        let started = Instant::now();
        let to_sipp = {
            let (from, to, log, gateway) = (gateway_socket.clone(), sipp_socket.clone(), log.clone(), gateway.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, source)) = from.recv_from(&mut buf).await {
                    *gateway.lock().unwrap() = Some(source);
                    if log.lock().unwrap().forward(Direction::ToSipp, seed, &buf[..n], started) {
                        let _ = to.send_to(&buf[..n], sipp).await;
                    }
                }
            })
        };
        let to_gateway = {
            let (from, to, log) = (sipp_socket.clone(), gateway_socket.clone(), log.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, _)) = from.recv_from(&mut buf).await {
                    let Some(gateway) = *gateway.lock().unwrap() else { continue };
                    if log.lock().unwrap().forward(Direction::ToGateway, seed, &buf[..n], started) {
                        let _ = to.send_to(&buf[..n], gateway).await;
                    }
                }
            })
        };
        LossyRelay {
            gateway_side: gateway_socket.local_addr().unwrap(),
            sipp_side: sipp_socket.local_addr().unwrap(),
            log,
            tasks: vec![to_sipp, to_gateway],
        }
    }

    fn trace(&self) -> String {
        self.log.lock().unwrap().trace.join("\n")
    }

    /// Waits until the relay has forwarded a `method` request to sipp.
    async fn forwarded_to_sipp(&self, method: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log.lock().unwrap().to_sipp.forwarded.iter().any(|m| m == method) {
            assert!(Instant::now() < deadline, "no {method} reached sipp:\n{}", self.trace());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_a_lossy_udp_path_completes_through_retransmission() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let started = Instant::now();
    let seed = std::env::var("LOSSY_UDP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    // The relay needs sipp's port and sipp the relay's addresses: pick sipp's port first.
    let sipp_port = free_port();
    let relay = LossyRelay::start(SocketAddr::from(([127, 0, 0, 1], sipp_port)), seed).await;
    // `-rsa`: everything sipp sends goes to the relay; `-key relay`: the scenario record-routes it.
    let (send_to, record_route) = (relay.sipp_side.to_string(), relay.gateway_side.to_string());
    let sipp = Sipp::uas_with(
        "uas_call_flow_lossy.xml",
        SipTransportName::Udp,
        sipp_port,
        &["-rsa", &send_to, "-key", "relay", &record_route],
    )
    .await;
    let gateway = camara_gateway::start(gateway_config(Some(relay.gateway_side), SipTransportName::Udp))
        .await
        .expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let mut sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);

    let registration = api.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}", registration.body);
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    let subscription = api.subscribe(&token, &sink.url, "sink-secret-1").await;
    assert_eq!(subscription.status, 201, "{:?}", subscription.body);
    let subscription_id = subscription.body["id"].as_str().unwrap().to_string();

    let session = api.call_number(&token, &registration_id, ALICE, &format!("tel:{BOB}")).await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    let session_id = session.body["mediaSessionId"].as_str().unwrap().to_string();

    // Generous: each lost message costs at least one retransmission interval.
    let wait = Duration::from_secs(30);
    let mut statuses = Vec::new();
    for expected_sequence in 1..=3 {
        let event = tokio::time::timeout(wait, sink.next(2 * wait)).await.unwrap_or_else(|_| {
            let sipp_log = std::fs::read_to_string(&sipp.message_log).unwrap_or_default();
            panic!("no event {expected_sequence}:\n{}\nsipp:\n{sipp_log}", relay.trace())
        });
        let data = &event.body["data"];
        assert_eq!(event.body["type"], SESSION_STATUS);
        assert_eq!(data["subscriptionId"], subscription_id.as_str());
        assert_eq!(data["mediaSessionId"], session_id.as_str());
        assert_eq!(data["sequenceNumber"], expected_sequence, "{data}\n{}", relay.trace());
        statuses.push(data["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, ["InProgress", "Ringing", "Connected"], "{}", relay.trace());

    // sipp aborts on a BYE that overtakes the ACK it waits for: when the first ACK is lost,
    // hang up only once a retransmitted 200 has drawn a new ACK through the relay.
    relay.forwarded_to_sipp("ACK", wait).await;

    let read =
        api.call("GET", &format!("/webrtc-call-handling/v0.3/sessions/{session_id}"), Some(&token), &[], None).await;
    assert_eq!((read.status, read.body["status"].as_str()), (200, Some("Connected")));
    let deleted =
        api.call("DELETE", &format!("/webrtc-call-handling/v0.3/sessions/{session_id}"), Some(&token), &[], None).await;
    assert_eq!(deleted.status, 204);
    let terminated = sink.next(wait).await;
    assert_eq!(terminated.body["data"]["status"], "Terminated", "{}", relay.trace());
    assert_eq!(terminated.body["data"]["reason"], "Call terminated by originator");
    assert_eq!(terminated.body["data"]["sequenceNumber"], 4);

    let (code, messages, errors) = sipp.finish(wait).await;
    let trace = relay.trace();
    assert_eq!(code, 0, "sipp failed: {errors}\n{messages}\nrelay:\n{trace}");
    // What reached sipp, retransmissions (same CSeq) folded.
    let mut cseqs: Vec<String> = Vec::new();
    for block in messages.split("----------------------------------------------- ") {
        let Some((_, rest)) = block.split_once("message received") else { continue };
        let text = rest.split_once('\n').map(|(_, msg)| msg.trim().to_string()).unwrap_or_default();
        let cseq = header(&text.replace("\r\n", "\n").replace('\n', "\r\n"), &["CSeq"]).unwrap_or_default().to_string();
        if !cseqs.contains(&cseq) {
            cseqs.push(cseq);
        }
    }
    let methods: Vec<&str> = cseqs.iter().map(|c| c.split_whitespace().nth(1).unwrap_or_default()).collect();
    assert_eq!(methods, ["INVITE", "PRACK", "PRACK", "ACK", "BYE"], "relay:\n{trace}");
    let prack = received_message(&messages, "PRACK").expect("PRACK logged");
    assert!(
        prack.contains(&format!("Route: <sip:{};lr>", relay.gateway_side)),
        "PRACK not routed via the relay: {prack}"
    );

    let (dropped_to_sipp, dropped_to_gateway) = {
        let log = relay.log.lock().unwrap();
        (log.to_sipp.dropped.clone(), log.to_gateway.dropped.clone())
    };
    eprintln!(
        "seed {seed}: dropped gateway->sipp {dropped_to_sipp:?}, sipp->gateway {dropped_to_gateway:?}; {} ms\n{trace}",
        started.elapsed().as_millis()
    );
    assert!(
        !dropped_to_sipp.is_empty(),
        "nothing lost gateway -> sipp (seed {seed}): the test proves nothing\n{trace}"
    );
    assert!(
        !dropped_to_gateway.is_empty(),
        "nothing lost sipp -> gateway (seed {seed}): the test proves nothing\n{trace}"
    );

    gateway.stop().await;
}
