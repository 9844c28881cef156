//! A media session through its public API, with real sockets and a real peer connection (no
//! remote peer: these are the SDP answers and re-offers, not the media).

use std::time::Duration;

use camara_media::{MediaAnchor, MediaConfig};

const DEVICE_OFFER: &str = "v=0\r\no=- 8066321617929821805 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 126\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:4eKp\r\na=ice-pwd:D4sF5Pv9vx9ggaqxBlHbAFMx\r\na=fingerprint:sha-256 CF:56:D8:57:9B:68:B2:1C:F6:ED:6C:C0:02:7C:96:C2:88:A3:C2:38:AD:A2:CA:F5:0D:47:BB:81:74:7B:75:17\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n";

fn network(port: u16, formats: &str, maps: &str, direction: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n{maps}a={direction}\r\n"
    )
}

fn anchor() -> MediaAnchor {
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    MediaAnchor::new(
        MediaConfig { rtp_ports: (41000, 41999), media_timeout: Duration::from_secs(60), ..Default::default() },
        events,
    )
}

#[tokio::test]
async fn an_outgoing_call_offers_g711_answers_the_device_and_takes_the_networks_re_offers() {
    let anchor = anchor();
    let (session, sip_offer) = anchor.outgoing("s1", DEVICE_OFFER).await.unwrap();
    assert!(sip_offer.contains(&format!("m=audio {} RTP/AVP 0 101\r\n", session.network_port())), "{sip_offer}");
    assert!(sip_offer.contains("c=IN IP4 127.0.0.1\r\n") && sip_offer.contains("a=sendrecv"), "{sip_offer}");

    let answer = network(4000, "0 101", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n", "sendrecv");
    let device_answer = session.network_answered(&answer).await.unwrap().expect("the first answer answers the device");
    assert!(
        device_answer.contains("UDP/TLS/RTP/SAVPF 0 126"),
        "PCMU passes through, with the device's events: {device_answer}"
    );
    assert!(device_answer.contains("a=candidate:") && device_answer.contains("a=fingerprint:"), "{device_answer}");
    assert_eq!(session.network_answered(&answer).await.unwrap(), None, "a repeated answer changes nothing");
    assert!(!session.bridge().unwrap().transcodes());

    // The network holds: we answer recvonly with the same codec.
    let hold = network(4000, "0 101", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n", "sendonly");
    let (held, direction) = session.network_reoffered(&hold).unwrap();
    assert_eq!(direction, camara_media::Direction::SendOnly);
    assert!(held.contains("a=recvonly") && held.contains("RTP/AVP 0 101") && held.contains(" 2 IN IP4"), "{held}");
    // A re-offer without the codec the device leg uses is refused; the call stays as it was.
    let other_codec = network(4000, "8", "a=rtpmap:8 PCMA/8000\r\n", "sendrecv");
    assert!(session.network_reoffered(&other_codec).is_err());
    // New payload type numbers for the same codec are followed.
    let renumbered = network(4002, "0 96", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\n", "sendrecv");
    let (resumed, _) = session.network_reoffered(&renumbered).unwrap();
    assert!(resumed.contains("RTP/AVP 0 96") && resumed.contains("a=sendrecv"), "{resumed}");
    assert_eq!(session.bridge().unwrap().network_events.unwrap().payload_type, 96);
    session.close().await;
}

#[tokio::test]
async fn an_offer_the_network_cannot_take_is_refused_before_any_port_is_used() {
    let anchor = anchor();
    let video_only = DEVICE_OFFER.replace("m=audio", "m=video");
    assert!(anchor.outgoing("s2", &video_only).await.is_err());
    let opus_only = DEVICE_OFFER.replace("111 0 126", "111").replace("a=rtpmap:0 PCMU/8000\r\n", "");
    let (session, sip_offer) = anchor.outgoing("s3", &opus_only).await.unwrap();
    assert!(sip_offer.contains("RTP/AVP 0 8 101"), "transcoded: every G.711 law is offered: {sip_offer}");
    let answer = network(4000, "8", "a=rtpmap:8 PCMA/8000\r\n", "sendrecv");
    let device_answer = session.network_answered(&answer).await.unwrap().unwrap();
    assert!(device_answer.contains("opus/48000"), "{device_answer}");
    assert!(session.bridge().unwrap().transcodes());
    session.close().await;
}

#[tokio::test]
async fn a_closed_session_gives_its_rtp_and_rtcp_ports_back() {
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    // Room for exactly one session: ports 42000 (RTP) and 42001 (RTCP).
    let config = MediaConfig { rtp_ports: (42000, 42000), ..Default::default() };
    let anchor = MediaAnchor::new(config, events);
    let (first, _) = anchor.outgoing("a", DEVICE_OFFER).await.unwrap();
    assert_eq!(first.network_port(), 42000);
    assert!(anchor.outgoing("b", DEVICE_OFFER).await.is_err(), "the only pair is taken");
    first.close().await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (second, _) = anchor.outgoing("c", DEVICE_OFFER).await.expect("the ports came back");
    assert_eq!(second.network_port(), 42000);
    second.close().await;
}
