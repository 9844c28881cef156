//! An incoming call rings every device registered for the called number (forking): each gets
//! a `session-invitation` of its own; a device that declines stops ringing alone; the first that
//! answers takes the call and the others' sessions end `SessionCancelled` ("answered on another
//! device"). The network is sipp; the answering device is a real WebRTC peer (aiortc) whose
//! tone comes back through sipp's echo. The policy (`all`, `most-recent`, `sequential`) is the
//! API-mapping plugin's `forking` configuration.

use std::time::Duration;

use camara_gateway::config::{GatewayConfig, SipTransportName};
use camara_gateway_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const ANSWERED_ELSEWHERE: &str = "The call was answered on another device";

/// One device of alice's: its registration and the sink of its subscription.
struct Phone {
    sink: Sink,
}

struct Line {
    gateway: camara_gateway::app::RunningGateway,
    api: Api,
    token: String,
    phones: Vec<Phone>,
}

/// Alice's number with `devices` registered, one after the other (the last is the most recent).
async fn line(devices: usize, configure: impl FnOnce(&mut GatewayConfig)) -> Line {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    configure(&mut config);
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let token = tokens::for_subscriber(ALICE);
    let mut phones = Vec::new();
    for n in 0..devices {
        let device = format!("7d444840-9dc0-11d1-b245-5ffdce74f{n:03}");
        let registered = api
            .call("POST", "/webrtc-registration/v0.3/sessions", Some(&token), &[], Some(json!({"deviceId": device})))
            .await;
        assert_eq!(registered.status, 201, "{:?}", registered.body);
        let sink = Sink::start(vec![]).await;
        let body = json!({
            "protocol": "HTTP",
            "sink": sink.url,
            "sinkCredential": {
                "credentialType": "ACCESSTOKEN",
                "accessToken": "sink-secret",
                "accessTokenExpiresUtc": "2099-12-31T23:59:59.999Z",
                "accessTokenType": "bearer"
            },
            "types": [SESSION_STATUS, SESSION_INVITATION],
            "config": {"subscriptionDetail": {"deviceId": device}}
        });
        let subscribed = api.call("POST", "/webrtc-events/v0.2/subscriptions", Some(&token), &[], Some(body)).await;
        assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);
        phones.push(Phone { sink });
        // Registered one after the other, so "most recent" is well defined.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Line { gateway, api, token, phones }
}

impl Line {
    /// sipp calls alice with `scenario`, echoing the media it gets.
    async fn called_by(&self, scenario: &str) -> Sipp {
        let media_port = free_port().to_string();
        let target = self.gateway.sip_udp_addr.unwrap();
        Sipp::uac_with(scenario, target, SipTransportName::Udp, &["-rtp_echo", "-mp", &media_port]).await
    }

    /// Phone `n`'s invitation: its own session of the call.
    async fn invitation(&mut self, n: usize) -> Value {
        let event = self.phones[n].sink.next(WAIT).await;
        assert_eq!(event.body["type"], SESSION_INVITATION, "phone {n}: {}", event.body);
        event.body["data"].clone()
    }

    async fn next_status(&mut self, n: usize) -> Value {
        let event = self.phones[n].sink.next(WAIT).await;
        assert_eq!(event.body["type"], SESSION_STATUS, "phone {n}: {}", event.body);
        event.body["data"].clone()
    }

    async fn put_status(&self, session: &Value, body: Value) -> Reply {
        let id = session["mediaSessionId"].as_str().unwrap();
        let path = format!("/webrtc-call-handling/v0.3/sessions/{id}/status");
        self.api.call("PUT", &path, Some(&self.token), &[], Some(body)).await
    }

    async fn read(&self, session: &Value) -> Value {
        let id = session["mediaSessionId"].as_str().unwrap();
        let path = format!("/webrtc-call-handling/v0.3/sessions/{id}");
        self.api.call("GET", &path, Some(&self.token), &[], None).await.body
    }
}

fn peers_installed() -> bool {
    peer_installed("sipp", sipp_available()) && peer_installed("the aiortc peer", WebRtcPeer::available())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_rings_a_decline_leaves_the_others_ringing_and_the_first_answer_takes_the_call() {
    if !peers_installed() {
        return;
    }
    let mut line = line(3, |_| {}).await;
    let sipp = line.called_by("uac_media.xml").await;
    let mut invitations = Vec::new();
    for n in 0..3 {
        invitations.push(line.invitation(n).await);
    }
    let ids: std::collections::HashSet<_> = invitations.iter().map(|i| i["mediaSessionId"].clone()).collect();
    assert_eq!(ids.len(), 3, "a session per device: {invitations:?}");
    for invitation in &invitations {
        assert_eq!(invitation["originatorAddress"], format!("tel:{BOB}"), "{invitation}");
        assert!(invitation["offer"]["sdp"].as_str().unwrap().contains("UDP/TLS/RTP/SAVPF"), "{invitation}");
    }

    // Phone 1 declines: it alone stops ringing.
    let declined = line.put_status(&invitations[1], json!({"status": "Declined"})).await;
    assert_eq!((declined.status, declined.body["status"].as_str()), (200, Some("Declined")), "{:?}", declined.body);
    assert_eq!(line.next_status(1).await["status"], "Declined");
    for n in [0, 2] {
        assert_eq!(line.read(&invitations[n]).await["status"], "Initial", "phone {n} still rings");
    }

    // Phone 0 answers with real media and takes the call.
    let mut peer = WebRtcPeer::start(&["--role", "answer", "--codec", "any", "--tone", "700"]);
    peer.send(json!({"cmd": "offer", "sdp": invitations[0]["offer"]["sdp"]})).await;
    let answer = peer.expect("answer", WAIT).await["sdp"].as_str().unwrap().to_string();
    let progress = line.put_status(&invitations[0], json!({"status": "InProgress", "answer": {"sdp": answer}})).await;
    assert_eq!(progress.status, 200, "{:?}", progress.body);
    assert_eq!(line.next_status(0).await["status"], "InProgress");

    // Phone 2 hears the call was taken on another device, and can no longer answer it.
    let cancelled = line.next_status(2).await;
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["reason"].as_str()),
        (Some("SessionCancelled"), Some(ANSWERED_ELSEWHERE))
    );
    let late = line.put_status(&invitations[2], json!({"status": "Connected", "answer": {"sdp": WEBRTC_OFFER}})).await;
    assert_eq!((late.status, late.body["code"].as_str()), (409, Some("INCOMPATIBLE_STATE")), "{:?}", late.body);
    assert_eq!(line.read(&invitations[2]).await["status"], "SessionCancelled");

    peer.expect("connected", WAIT).await;
    let connected = line.put_status(&invitations[0], json!({"status": "Connected"})).await;
    assert_eq!(connected.status, 200, "{:?}", connected.body);
    assert_eq!(line.next_status(0).await["status"], "Connected");
    peer.assert_tone_back(700.0).await;

    // sipp hangs up after four seconds of media: the answering phone's session ends; the
    // others hear nothing more.
    assert_eq!(line.next_status(0).await["status"], "Terminated");
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    for n in [1, 2] {
        assert!(line.phones[n].sink.quiet_for(Duration::from_millis(500)).await, "phone {n} heard more");
    }
    peer.close().await;
    line.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_hears_603_once_every_device_declined() {
    if !peer_installed("sipp", sipp_available()) {
        return;
    }
    let mut line = line(2, |_| {}).await;
    let sipp = line.called_by("uac_declined.xml").await;
    let first = line.invitation(0).await;
    let second = line.invitation(1).await;
    assert_eq!(line.put_status(&first, json!({"status": "Declined"})).await.status, 200);
    assert_eq!(line.next_status(0).await["status"], "Declined");
    assert_eq!(line.read(&second).await["status"], "Initial", "the other device still rings");
    assert_eq!(line.put_status(&second, json!({"status": "Declined"})).await.status, 200);
    assert_eq!(line.next_status(1).await["status"], "Declined");
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp got its 603: {errors}\n{messages}");
    line.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_recent_rings_only_the_device_registered_last() {
    if !peer_installed("sipp", sipp_available()) {
        return;
    }
    let most_recent = |c: &mut GatewayConfig| {
        c.plugins.api_mapping.config.insert("forking".into(), "most-recent".into());
    };
    let mut line = line(2, most_recent).await;
    let sipp = line.called_by("uac_declined.xml").await;
    let invitation = line.invitation(1).await;
    assert!(line.phones[0].sink.quiet_for(Duration::from_secs(1)).await, "the older device rang");
    assert_eq!(line.put_status(&invitation, json!({"status": "Declined"})).await.status, 200);
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    line.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_rings_one_device_after_the_other() {
    if !peer_installed("sipp", sipp_available()) {
        return;
    }
    let sequential = |c: &mut GatewayConfig| {
        c.plugins.api_mapping.config.insert("forking".into(), "sequential".into());
        // Each of the two devices rings for half of it (at least 5 s).
        c.sip.no_answer_seconds = 10;
    };
    let mut line = line(2, sequential).await;
    let sipp = line.called_by("uac_declined.xml").await;
    // The most recent first; the other one only once it has rung out.
    let first = line.invitation(1).await;
    assert!(line.phones[0].sink.quiet_for(Duration::from_secs(2)).await, "both rang at once");
    assert_eq!(line.next_status(1).await["status"], "NoAnswer");
    let second = line.invitation(0).await;
    assert_ne!(first["mediaSessionId"], second["mediaSessionId"]);
    assert_eq!(line.put_status(&second, json!({"status": "Declined"})).await.status, 200);
    let (code, messages, errors) = sipp.finish(WAIT).await;
    assert_eq!(code, 0, "sipp got 603 from the last device: {errors}\n{messages}");
    line.gateway.stop().await;
}

#[tokio::test]
async fn an_unknown_forking_policy_stops_the_start() {
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.plugins.api_mapping.config.insert("forking".into(), "random".into());
    let error = camara_gateway::start(config).await.err().expect("the start fails");
    assert!(format!("{error:#}").contains("forking must be all, most-recent or sequential"), "{error:#}");
}
