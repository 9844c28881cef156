//! Media through the gateway with real peers and real audio: a WebRTC peer that is not ours
//! (aiortc, `tests/peers/webrtc_peer.py`) sends a tone; sipp answers the call on the SIP side and
//! echoes every RTP packet back (`-rtp_echo`); the peer decodes what returns. G.711 passthrough,
//! Opus <-> G.711 transcoding, RFC 4733 DTMF, hold and resume, and the media timeout.

use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn peers_installed() -> bool {
    peer_installed("sipp", sipp_available()) && peer_installed("the aiortc peer", WebRtcPeer::available())
}

/// A call from the WebRTC peer to a sipp UAS that echoes RTP, up to `Connected`.
struct EchoCall {
    gateway: camara_gateway::app::RunningGateway,
    api: Api,
    sink: Sink,
    token: String,
    session_id: String,
    sipp: Sipp,
    peer: WebRtcPeer,
    statuses: Vec<String>,
}

async fn call_the_echo(scenario: &str, peer_args: &[&str], echo: bool) -> EchoCall {
    call_the_echo_with(scenario, peer_args, echo, |_| {}).await
}

async fn call_the_echo_with(
    scenario: &str,
    peer_args: &[&str],
    echo: bool,
    configure: impl FnOnce(&mut camara_gateway::config::GatewayConfig),
) -> EchoCall {
    init_logs();
    let media_port = free_port().to_string();
    let mut sipp_args = vec!["-mp", media_port.as_str()];
    if echo {
        sipp_args.push("-rtp_echo");
    }
    let sipp = Sipp::uas_with(scenario, SipTransportName::Udp, free_port(), &sipp_args).await;
    let mut config = gateway_config(Some(sipp.addr), SipTransportName::Udp);
    config.media.media_timeout_seconds = if echo { 30 } else { 2 };
    configure(&mut config);
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let mut sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);
    let registration = api.register(&token).await;
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    assert_eq!(api.subscribe(&token, &sink.url, "sink-secret").await.status, 201);

    let mut peer = WebRtcPeer::start(peer_args);
    let offer = peer.expect("offer", WAIT).await;
    let body = json!({
        "originatorAddress": format!("tel:{ALICE}"),
        "receiverAddress": format!("tel:{BOB}"),
        "offer": {"sdp": offer["sdp"]}
    });
    let created = api
        .call(
            "POST",
            "/webrtc-call-handling/v0.3/sessions",
            Some(&token),
            &[("registrationId", &registration_id)],
            Some(body),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let session_id = created.body["mediaSessionId"].as_str().unwrap().to_string();

    let mut statuses = Vec::new();
    let answer = loop {
        let data = sink.next(WAIT).await.body["data"].clone();
        statuses.push(data["status"].as_str().unwrap_or_default().to_string());
        if data["status"] == "Connected" {
            break data["answer"]["sdp"].as_str().expect("Connected carries the device's answer").to_string();
        }
    };
    let read =
        api.call("GET", &format!("/webrtc-call-handling/v0.3/sessions/{session_id}"), Some(&token), &[], None).await;
    assert_eq!(read.body["answer"]["sdp"], answer.as_str(), "GET shows the same answer");
    peer.send(json!({"cmd": "answer", "sdp": answer})).await;
    peer.expect("connected", WAIT).await;
    EchoCall { gateway, api, sink, token, session_id, sipp, peer, statuses }
}

impl EchoCall {
    /// The tone and loss over `seconds` of steady media.
    async fn measure(&mut self, seconds: u64) -> Value {
        self.peer.measure(Duration::from_secs(1), Duration::from_secs(seconds)).await
    }

    async fn set_status(&self, status: &str) -> Reply {
        let path = format!("/webrtc-call-handling/v0.3/sessions/{}/status", self.session_id);
        self.api.call("PUT", &path, Some(&self.token), &[], Some(json!({"status": status}))).await
    }

    async fn hang_up(self) {
        self.hang_up_with(async |_| {}).await;
    }

    /// Hangs up, and runs `ended` with the API once the call is `Terminated` (before the gateway
    /// stops).
    async fn hang_up_with(mut self, ended: impl AsyncFnOnce(&Api)) {
        let path = format!("/webrtc-call-handling/v0.3/sessions/{}", self.session_id);
        assert_eq!(self.api.call("DELETE", &path, Some(&self.token), &[], None).await.status, 204);
        loop {
            if self.sink.next(WAIT).await.body["data"]["status"] == "Terminated" {
                break;
            }
        }
        ended(&self.api).await;
        self.peer.close().await;
        let (code, messages, errors) = self.sipp.finish(WAIT).await;
        assert_eq!(code, 0, "sipp: {errors}\n{messages}");
        self.gateway.stop().await;
    }
}

fn assert_tone_came_back(report: &Value, tone: f64, codec: &str) {
    let frequency = report["frequency"].as_f64().unwrap_or_else(|| panic!("nothing came back: {report}"));
    assert!((frequency - tone).abs() < 10.0, "sent {tone} Hz, got {frequency} Hz back: {report}");
    assert!(report["rms"].as_f64().unwrap() > 0.05, "the tone came back too quiet: {report}");
    assert_eq!(report["codec"], codec, "{report}");
    let received = report["packets_received"].as_u64().unwrap();
    let lost = report["packets_lost"].as_u64().unwrap();
    assert!(received > 100, "{report}");
    assert!((lost as f64) < 0.01 * (received + lost) as f64, "{lost} of {} packets lost: {report}", received + lost);
}

#[tokio::test]
async fn g711_passes_through_and_the_tone_comes_back() {
    if !peers_installed() {
        return;
    }
    let mut call =
        call_the_echo("uas_media.xml", &["--role", "offer", "--codec", "pcmu", "--tone", "1000"], true).await;
    assert_eq!(call.statuses, ["Ringing", "Connected"]);
    let report = call.measure(3).await;
    assert_tone_came_back(&report, 1000.0, "audio/PCMU");
    // The call's RTP is counted per leg when its media closes (other tests of this binary add
    // theirs: at least this call's).
    call.hang_up_with(async |api: &Api| {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = api.get_text("/metrics").await.body;
            let count = |metric: &str, leg: &str| -> f64 {
                let series = format!("{metric}{{leg=\"{leg}\"}} ");
                text.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
            };
            let counted = ["network", "device"].map(|leg| {
                (count("camara_rtp_packets_received_total", leg), count("camara_rtp_packets_sent_total", leg))
            });
            if counted.iter().all(|&(received, sent)| received > 100.0 && sent > 100.0) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "RTP not counted per leg: {counted:?}\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_opus_only_device_is_transcoded_to_g711_and_back() {
    if !peers_installed() {
        return;
    }
    let mut call = call_the_echo("uas_media.xml", &["--role", "offer", "--codec", "opus", "--tone", "440"], true).await;
    let report = call.measure(3).await;
    assert_tone_came_back(&report, 440.0, "audio/opus");
    call.hang_up().await;
}

/// The peer's RFC 4733 digits cross to the SIP side as telephone-event 101 and the echo
/// brings them back across to the peer's own telephone-event payload type.
async fn dtmf_round_trip(codec: &str) {
    let mut call = call_the_echo("uas_media.xml", &["--role", "offer", "--codec", codec], true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.peer.send(json!({"cmd": "dtmf", "digits": "19#*"})).await;
    call.peer.expect("dtmf_sent", WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = call.peer.report().await;
    assert_eq!(report["dtmf_received"], "19#*", "{report}");
    call.hang_up().await;
}

#[tokio::test]
async fn dtmf_crosses_both_ways_with_g711() {
    if peers_installed() {
        dtmf_round_trip("pcmu").await;
    }
}

#[tokio::test]
async fn dtmf_crosses_both_ways_with_opus() {
    if peers_installed() {
        dtmf_round_trip("opus").await;
    }
}

/// Received frames in the last `slots` 100 ms windows of the peer's timeline.
fn recent_frames(report: &Value, slots: usize) -> u64 {
    let timeline: Vec<u64> = report["timeline"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    timeline.iter().rev().take(slots).sum()
}

#[tokio::test]
async fn hold_stops_the_media_and_resume_restores_it() {
    if !peers_installed() {
        return;
    }
    let mut call = call_the_echo("uas_media_hold.xml", &["--role", "offer", "--codec", "pcmu"], true).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(recent_frames(&call.peer.report().await, 5) >= 15, "media flows before the hold");

    let held = call.set_status("Hold").await;
    assert_eq!((held.status, held.body["status"].as_str()), (200, Some("Hold")), "{:?}", held.body);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = call.peer.report().await;
    assert_eq!(recent_frames(&report, 5), 0, "nothing from the held network reaches the device: {report}");

    let resumed = call.set_status("Resume").await;
    assert_eq!(resumed.status, 200, "{:?}", resumed.body);
    let report = call.measure(2).await;
    assert!(recent_frames(&report, 10) >= 30, "media flows again after resume: {report}");
    assert_tone_came_back(&report, 1000.0, "audio/PCMU");
    call.hang_up().await;
}

#[tokio::test]
async fn a_silent_network_ends_the_call_with_a_status_event() {
    if !peers_installed() {
        return;
    }
    // No -rtp_echo: sipp answers and then sends nothing; the media timeout is 2 s.
    let mut call = call_the_echo("uas_media.xml", &["--role", "offer", "--codec", "pcmu"], false).await;
    let terminated = loop {
        let data = call.sink.next(WAIT).await.body["data"].clone();
        if data["status"] == "Terminated" {
            break data;
        }
    };
    assert!(terminated["reason"].as_str().unwrap().contains("No media"), "{terminated}");
    // The network got a BYE: sipp's scenario ends with it.
    let (code, messages, errors) = call.sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    call.peer.close().await;
    call.gateway.stop().await;
}

/// The network holds and resumes with re-INVITEs, then refreshes the session with a re-INVITE
/// without SDP (our unchanged offer in the 200, its answer in the ACK): media flows again after
/// the resume and still after the refresh.
#[tokio::test]
async fn the_network_holds_and_resumes_and_the_device_hears_of_it() {
    if !peers_installed() {
        return;
    }
    let mut call = call_the_echo("uas_media_network_hold.xml", &["--role", "offer", "--codec", "pcmu"], true).await;
    let mut statuses = Vec::new();
    let mut report_on_hold = None;
    loop {
        let Ok(event) = tokio::time::timeout(WAIT, call.sink.next(Duration::from_secs(100))).await else {
            let (_, messages, errors) = call.sipp.finish(Duration::from_secs(70)).await;
            panic!("no session event in time; sipp: {errors}\n{messages}");
        };
        let data = event.body["data"].clone();
        let status = data["status"].as_str().unwrap_or_default().to_string();
        if status == "Hold" {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            report_on_hold = Some(call.peer.report().await);
        }
        statuses.push(status.clone());
        if status == "Terminated" {
            break;
        }
    }
    assert_eq!(statuses, ["Hold", "Resume", "Terminated"]);
    // Held by the network, the gateway stops sending to it, so the echo falls silent.
    let report = report_on_hold.unwrap();
    assert!(recent_frames(&report, 5) <= 2, "media stopped during the network's hold: {report}");
    let report = call.peer.report().await;
    assert!(
        report["timeline"].as_array().unwrap().iter().rev().skip(3).take(5).any(|n| n.as_u64() > Some(0)),
        "media came back after resume and went on after the offerless refresh: {report}"
    );
    let (code, messages, errors) = call.sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    call.peer.close().await;
    call.gateway.stop().await;
}

/// A device that vanishes in a call (its process killed: no DTLS close, no more answers to ICE
/// consent checks) while the network keeps sending RTP: once the grace is over the gateway
/// ends the call with BYE carrying a Reason header, and the subscriber hears `Terminated` with
/// the reason.
#[tokio::test]
async fn a_device_that_vanishes_ends_the_call_with_bye_and_a_reason() {
    if !peers_installed() {
        return;
    }
    let peer = ["--role", "offer", "--codec", "pcmu", "--tone", "440"];
    let configure = |c: &mut camara_gateway::config::GatewayConfig| c.media.device_failure_grace_seconds = 2;
    let mut call = call_the_echo_with("uas_answer_until_bye.xml", &peer, true, configure).await;
    call.peer.kill().await;
    let vanished = std::time::Instant::now();
    let ended = loop {
        let data = call.sink.next(Duration::from_secs(40)).await.body["data"].clone();
        if data["status"] == "Terminated" {
            break data;
        }
    };
    let reason = ended["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("The device's media connection failed"), "{ended}");
    assert!(reason.contains("2 s"), "the reason names the grace: {ended}");
    let (code, messages, errors) = call.sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    let bye = received_message(&messages, "BYE").expect("sipp received the BYE");
    assert!(bye.contains("Reason: Q.850;cause=41;text=\"The device's media connection failed"), "{bye}");
    // ICE consent is lost ~5 s after the last answer; the grace adds 2 s.
    let took = vanished.elapsed();
    assert!(took >= Duration::from_secs(2), "ended before the grace was over: {took:?}");
    call.gateway.stop().await;
}
