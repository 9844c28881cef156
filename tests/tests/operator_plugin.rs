//! An operator's own plugin, loaded from a file, changes what reaches the network: the example
//! `national-number-mapping` sends a nationally dialled number to sipp in E.164. The example is
//! built for WIT 0.1.0 and runs beside the default plugins of 0.2.0 in the same gateway.

use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_mapping_sends_national_numbers_in_international_form() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let wasm = plugin_component("examples/national-number-mapping");
    let sipp = Sipp::uas("uas_call_flow.xml", SipTransportName::Udp).await;
    let mut config = gateway_config(Some(sipp.addr), SipTransportName::Udp);
    config.plugins.api_mapping.wasm = Some(wasm);
    config.plugins.api_mapping.config.insert("country-code".into(), "81".into());
    config.plugins.api_mapping.config.insert("network-domain".into(), "tn.operator.test".into());
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    let plugins = gateway.gateway.plugins.get();
    use camara_plugin_harness::WitVersion;
    assert_eq!(plugins.mapping.wit_version(), WitVersion::V0_1, "the example is a 0.1.0 component");
    assert_eq!(plugins.authorization.wit_version(), WitVersion::V0_2);
    assert_eq!(plugins.routing.wit_version(), WitVersion::V0_2);
    let api = Api::new(gateway.http_addr);
    let token = tokens::for_subscriber(ALICE);
    let registration = api.register(&token).await;
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    let mut sink = Sink::start(vec![]).await;
    let subscribed = api.subscribe(&token, &sink.url, "sink-token").await;
    assert_eq!(subscribed.status, 201, "{:?}", subscribed.body);
    let subscription_id = subscribed.body["id"].as_str().unwrap().to_string();

    let session = api.call_number(&token, &registration_id, ALICE, "tel:0312345678;phone-context=+81").await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    assert_eq!(session.body["receiverAddress"], "tel:0312345678;phone-context=+81", "the API keeps what the app sent");
    let session_id = session.body["mediaSessionId"].as_str().unwrap().to_string();
    // Wait for the answer before hanging up.
    for _ in 0..50 {
        let read = api
            .call("GET", &format!("/webrtc-call-handling/v0.3/sessions/{session_id}"), Some(&token), &[], None)
            .await;
        if read.body["status"] == "Connected" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted =
        api.call("DELETE", &format!("/webrtc-call-handling/v0.3/sessions/{session_id}"), Some(&token), &[], None).await;
    assert_eq!(deleted.status, 204);

    // The call's statuses, mapped by the 0.1.0 plugin, routed by the 0.2.0 one.
    let event = sink.next(Duration::from_secs(10)).await;
    assert_eq!(event.body["data"]["mediaSessionId"], session_id.as_str(), "{:?}", event.body);
    assert_eq!(event.body["data"]["subscriptionId"], subscription_id.as_str(), "the host built the body");
    assert_eq!(event.headers["authorization"], "Bearer sink-token");

    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp failed: {errors}\n{messages}");
    let invite = received_message(&messages, "INVITE").expect("INVITE logged");
    assert!(invite.starts_with("INVITE sip:+81312345678@tn.operator.test;user=phone SIP/2.0"), "{invite}");
    gateway.stop().await;
}

#[tokio::test]
async fn an_operator_plugin_with_a_bad_configuration_stops_the_start() {
    init_logs();
    let wasm = plugin_component("examples/national-number-mapping");
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.plugins.api_mapping.wasm = Some(wasm);
    let error = camara_gateway::start(config).await.err().expect("refused").to_string();
    assert!(error.contains("country-code is required"), "{error}");
}
