//! The first call, end to end with real parts: signed tokens, the default plugin bundle, a real
//! SIP peer (sipp) and a real HTTP sink. Registration, subscription, call, the call-flow's SIP
//! exchange (100, reliable 183 and 180 with PRACK, 200, ACK), the events, DELETE -> BYE.

use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;

async fn originate_and_hang_up(transport: SipTransportName) {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let sipp = Sipp::uas("uas_call_flow.xml", transport).await;
    let gateway = camara_gateway::start(gateway_config(Some(sipp.addr), transport)).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let mut sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);

    let registration = api.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}", registration.body);
    assert_eq!(registration.body["regInfo"]["phoneNumber"], ALICE);
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();

    let subscription = api.subscribe(&token, &sink.url, "sink-secret-1").await;
    assert_eq!(subscription.status, 201, "{:?}", subscription.body);
    let subscription_id = subscription.body["id"].as_str().unwrap().to_string();
    assert_eq!(subscription.body["status"], "ACTIVE");

    let session = api.call_number(&token, &registration_id, ALICE, &format!("tel:{BOB}")).await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    assert_eq!(session.body["status"], "Initial");
    assert_eq!(session.headers["x-correlator"], "a1b2c3d4-e5f6-7890-abcd-000000000007");
    let session_id = session.body["mediaSessionId"].as_str().unwrap().to_string();

    let wait = Duration::from_secs(10);
    let mut statuses = Vec::new();
    for expected_sequence in 1..=3 {
        let event = sink.next(wait).await;
        assert_eq!(event.headers["authorization"], "Bearer sink-secret-1");
        assert_eq!(event.headers["content-type"], "application/cloudevents+json");
        assert!(!event.headers["x-correlator"].is_empty());
        let body = &event.body;
        assert_eq!(body["type"], SESSION_STATUS);
        assert_eq!(body["specversion"], "1.0");
        assert!(body["source"].as_str().unwrap().ends_with("/webrtc-events/v0.2"), "{body}");
        assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(body["time"].as_str().is_some());
        let data = &body["data"];
        assert_eq!(data["subscriptionId"], subscription_id.as_str());
        assert_eq!(data["mediaSessionId"], session_id.as_str());
        assert_eq!(data["originatorAddress"], format!("tel:{ALICE}"));
        assert_eq!(data["receiverAddress"], format!("tel:{BOB}"));
        assert_eq!(data["sequenceNumber"], expected_sequence);
        statuses.push(data["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, ["InProgress", "Ringing", "Connected"]);

    let read =
        api.call("GET", &format!("/webrtc-call-handling/v0.3/sessions/{session_id}"), Some(&token), &[], None).await;
    assert_eq!((read.status, read.body["status"].as_str()), (200, Some("Connected")));

    let deleted = api
        .call(
            "DELETE",
            &format!("/webrtc-call-handling/v0.3/sessions/{session_id}"),
            Some(&token),
            &[("x-correlator", "del-1")],
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.headers["x-correlator"], "del-1");
    let terminated = sink.next(wait).await;
    assert_eq!(terminated.body["data"]["status"], "Terminated");
    assert_eq!(terminated.body["data"]["reason"], "Call terminated by originator");
    assert_eq!(terminated.body["data"]["sequenceNumber"], 4);

    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp failed: {errors}\n{messages}");
    let seen = received_start_lines(&messages);
    let methods: Vec<&str> = seen.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["INVITE", "PRACK", "PRACK", "ACK", "BYE"], "{seen:?}");
    let invite = received_message(&messages, "INVITE").expect("INVITE logged");
    assert!(seen[0].starts_with(&format!("INVITE sip:{BOB}@127.0.0.1;user=phone SIP/2.0")), "{}", seen[0]);
    assert!(invite.contains(&format!("From: \"Alice\" <sip:{ALICE}@127.0.0.1;user=phone>;tag=")), "{invite}");
    assert!(invite.contains(&format!("To: \"Bob\" <sip:{BOB}@127.0.0.1;user=phone>")), "{invite}");
    assert!(invite.contains(&format!("P-Asserted-Identity: \"Alice\" <sip:{ALICE}@127.0.0.1;user=phone>")), "{invite}");
    assert!(invite.contains("Content-Type: application/sdp"), "{invite}");
    assert!(invite.contains("m=audio ") && invite.contains(" RTP/AVP 0 8 101"), "{invite}");
    assert!(!invite.contains("SAVPF"), "the WebRTC offer must not reach the network: {invite}");

    let ended = api
        .call("DELETE", &format!("/webrtc-events/v0.2/subscriptions/{subscription_id}"), Some(&token), &[], None)
        .await;
    assert_eq!(ended.status, 202);
    let last = sink.next(wait).await;
    assert_eq!(last.body["type"], SUBSCRIPTION_ENDED);
    assert_eq!(last.body["data"]["terminationReason"], "SUBSCRIPTION_DELETED");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_udp_from_the_api_to_sipp_and_back() {
    originate_and_hang_up(SipTransportName::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tcp_from_the_api_to_sipp_and_back() {
    originate_and_hang_up(SipTransportName::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_the_network_to_an_unregistered_number_is_refused_with_404() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.expect("gateway starts");
    let sipp = Sipp::uac("uac_unregistered.xml", gateway.sip_udp_addr.unwrap(), SipTransportName::Udp).await;
    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp failed: {errors}\n{messages}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_is_a_re_invite_offering_sendonly() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let sipp = Sipp::uas("uas_call_hold.xml", SipTransportName::Udp).await;
    let gateway =
        camara_gateway::start(gateway_config(Some(sipp.addr), SipTransportName::Udp)).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let mut sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);
    let registration_id = api.register(&token).await.body["registrationId"].as_str().unwrap().to_string();
    assert_eq!(api.subscribe(&token, &sink.url, "t").await.status, 201);
    let session = api.call_number(&token, &registration_id, ALICE, &format!("tel:{BOB}")).await;
    let path = format!("/webrtc-call-handling/v0.3/sessions/{}", session.body["mediaSessionId"].as_str().unwrap());
    let wait = Duration::from_secs(10);
    for expected in ["InProgress", "Ringing", "Connected"] {
        assert_eq!(sink.next(wait).await.body["data"]["status"], expected);
    }
    let refused = api
        .call("PUT", &format!("{path}/status"), Some(&token), &[], Some(serde_json::json!({"status": "Declined"})))
        .await;
    // The network answers an outgoing call; the device cannot decline it.
    assert_eq!((refused.status, refused.body["code"].as_str()), (409, Some("INCOMPATIBLE_STATE")));

    let held = api
        .call(
            "PUT",
            &format!("{path}/status"),
            Some(&token),
            &[("x-correlator", "hold-1")],
            Some(serde_json::json!({"status": "Hold"})),
        )
        .await;
    assert_eq!(held.status, 200, "{:?}", held.body);
    assert_eq!(held.body["status"], "Hold");
    assert_eq!(held.headers["x-correlator"], "hold-1");
    let event = sink.next(wait).await;
    assert_eq!(
        (event.body["data"]["status"].as_str(), event.body["data"]["sequenceNumber"].as_u64()),
        (Some("Hold"), Some(4))
    );

    assert_eq!(api.call("DELETE", &path, Some(&token), &[], None).await.status, 204);
    let ended = sink.next(wait).await;
    assert_eq!(ended.body["data"]["status"], "Terminated");
    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp failed: {errors}\n{messages}");
    gateway.stop().await;
}

/// An emergency call (`callType: EMERGENCY` to `urn:service:sos`) carries the caller's
/// `locationDetails` as a PIDF-LO document in a multipart/mixed INVITE body, with `Priority:
/// emergency` and a `Geolocation` header pointing at it (RFC 6442); sipp checks each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_call_carries_the_callers_location_as_pidf_lo() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let sipp = Sipp::uas("uas_emergency.xml", SipTransportName::Udp).await;
    let gateway =
        camara_gateway::start(gateway_config(Some(sipp.addr), SipTransportName::Udp)).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);
    let mut sink = Sink::start(vec![]).await;
    let token = tokens::for_subscriber(ALICE);
    let registration_id = api.register(&token).await.body["registrationId"].as_str().unwrap().to_string();
    assert_eq!(api.subscribe(&token, &sink.url, "t").await.status, 201);
    let body = serde_json::json!({
        "originatorAddress": format!("tel:{ALICE}"),
        "receiverAddress": "urn:service:sos",
        "callType": "EMERGENCY",
        "locationDetails": {
            "shape": "Circle",
            "coordinates": {"latitude": 40.7128, "longitude": -74.006, "radius": 50},
            "method": "GPS",
            "confidence": {"pdf": "normal", "value": 88},
            "timestamp": "2025-10-06T19:32:10Z"
        },
        "offer": {"sdp": WEBRTC_OFFER}
    });
    let headers = [("registrationId", registration_id.as_str())];
    let created = api.call("POST", "/webrtc-call-handling/v0.3/sessions", Some(&token), &headers, Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let wait = Duration::from_secs(10);
    loop {
        if sink.next(wait).await.body["data"]["status"] == "Connected" {
            break;
        }
    }
    let path = format!("/webrtc-call-handling/v0.3/sessions/{}", created.body["mediaSessionId"].as_str().unwrap());
    assert_eq!(api.call("DELETE", &path, Some(&token), &[], None).await.status, 204);
    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp failed: {errors}\n{messages}");
    let invite = received_message(&messages, "INVITE").expect("sipp logged the INVITE");
    assert!(invite.contains("<gml:pos>40.7128 -74.006</gml:pos>"), "{invite}");
    assert!(invite.contains("<con:confidence pdf=\"normal\">88</con:confidence>"), "{invite}");
    gateway.stop().await;
}
