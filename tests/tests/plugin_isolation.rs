//! A faulty plugin fails only its own request: a loop is stopped at its deadline, a trap and a
//! memory blow-up end the call, each with a CAMARA error body naming the plugin, while other
//! requests are served.

use std::time::{Duration, Instant};

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::json;

async fn gateway_with_faulty_policy() -> camara_gateway::RunningGateway {
    init_logs();
    let wasm =
        camara_plugin_harness::build_component(repo_root().join("plugins/testing/faulty-policy")).expect("build");
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.plugins.authorization.wasm = Some(wasm);
    config.plugins.authorization.deadline_ms = Some(300);
    config.plugins.authorization.memory_limit_mib = Some(8);
    camara_gateway::start(config).await.expect("gateway starts")
}

fn token_with_fault(fault: Option<&str>) -> String {
    let mut claims = tokens::claims(ALICE, ALL_SCOPES);
    if let Some(fault) = fault {
        claims["test_fault"] = json!(fault);
    }
    tokens::sign(&claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_is_stopped_at_its_deadline_while_others_are_served() {
    let gateway = gateway_with_faulty_policy().await;
    let api = Api::new(gateway.http_addr);
    let looping = token_with_fault(Some("loop"));
    let healthy = token_with_fault(None);

    let started = Instant::now();
    let stuck = {
        let api = Api::new(gateway.http_addr);
        tokio::spawn(async move {
            let reply = api
                .call(
                    "POST",
                    "/webrtc-registration/v0.3/sessions",
                    Some(&looping),
                    &[("x-correlator", "loop-1")],
                    Some(json!({"deviceId": DEVICE_ID})),
                )
                .await;
            (reply, started.elapsed())
        })
    };
    // While the loop spins, another request goes through the same plugin and succeeds.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ok = api.register(&healthy).await;
    let ok_at = started.elapsed();
    assert_eq!(ok.status, 201, "{:?}", ok.body);

    let (reply, stuck_at) = stuck.await.unwrap();
    assert_eq!(reply.status, 504, "{:?}", reply.body);
    assert_eq!(reply.body["status"], 504);
    assert_eq!(reply.body["code"], "TIMEOUT");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("faulty_policy") && message.contains("deadline"), "{message}");
    assert_eq!(reply.headers["x-correlator"], "loop-1");
    assert!(ok_at < stuck_at, "the healthy request ({ok_at:?}) waited for the looping one ({stuck_at:?})");
    assert!(stuck_at >= Duration::from_millis(300) && stuck_at < Duration::from_secs(5), "stopped after {stuck_at:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_plugin_fails_its_request_only() {
    let gateway = gateway_with_faulty_policy().await;
    let api = Api::new(gateway.http_addr);
    let reply = api.register(&token_with_fault(Some("trap"))).await;
    assert_eq!(reply.status, 500, "{:?}", reply.body);
    assert_eq!(reply.body["code"], "INTERNAL");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("faulty_policy") && message.contains("trapped"), "{message}");
    assert!(message.contains("deliberate trap"), "the plugin's panic message is kept: {message}");
    assert_eq!(api.register(&token_with_fault(None)).await.status, 201);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_exceeding_its_memory_fails_its_request_only() {
    let gateway = gateway_with_faulty_policy().await;
    let api = Api::new(gateway.http_addr);
    let reply = api.register(&token_with_fault(Some("memory"))).await;
    assert_eq!(reply.status, 500, "{:?}", reply.body);
    assert_eq!(reply.body["code"], "INTERNAL");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("faulty_policy") && message.contains("memory limit of 8388608 bytes"), "{message}");
    assert_eq!(api.register(&token_with_fault(None)).await.status, 201);
    gateway.stop().await;
}
