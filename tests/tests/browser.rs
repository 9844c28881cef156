//! The device side end to end in a real browser: headless Chromium (Debian's) drives the
//! softphone the gateway serves. It signs in at the built-in OAuth server, registers, subscribes
//! through the in-process Notification Relay, calls sipp (which echoes the audio) and checks that
//! audio flows both ways, then receives a call from sipp and answers it. Every status reaches the
//! page through the relay, in order. The driver is `tests/browser/softphone.mjs` (playwright-core).

use std::process::Stdio;
use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

fn browser_installed() -> bool {
    let chromium = std::path::Path::new("/usr/bin/chromium").exists();
    let driver = repo_root().join("tests/browser/node_modules/playwright-core").exists();
    peer_installed("sipp", sipp_available())
        && peer_installed("Debian's chromium", chromium)
        && peer_installed("playwright-core (npm ci in tests/browser)", driver)
}

/// A gateway with the embedded device side (OAuth server, relay, softphone) and `next_hop`.
async fn gateway(next_hop: Option<std::net::SocketAddr>) -> camara_gateway::RunningGateway {
    gateway_with(next_hop, |_| {}).await
}

async fn gateway_with(
    next_hop: Option<std::net::SocketAddr>,
    configure: impl FnOnce(&mut camara_gateway::config::GatewayConfig),
) -> camara_gateway::RunningGateway {
    init_logs();
    let mut config = gateway_config(next_hop, SipTransportName::Udp);
    config.oauth_server.enabled = true;
    config.auth = Default::default();
    configure(&mut config);
    camara_gateway::start(config).await.expect("gateway starts")
}

struct Driver {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    fn start(args: &[&str]) -> Driver {
        let mut child = tokio::process::Command::new("node")
            .arg(repo_root().join("tests/browser/softphone.mjs"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the browser driver");
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Driver { child, lines }
    }

    /// The next step the driver reports, or a panic when it fails or stalls.
    async fn step(&mut self, timeout: Duration) -> Value {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .expect("the browser driver reported in time")
            .expect("driver output")
            .expect("the browser driver ended early");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("driver printed {line:?}"))
    }

    async fn until(&mut self, step: &str, timeout: Duration) -> Value {
        loop {
            let value = self.step(timeout).await;
            assert_ne!(value["ok"], false, "the browser driver failed: {value}");
            if value["step"] == step {
                return value;
            }
        }
    }

    async fn succeeds(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "the browser driver failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calls_a_sip_endpoint_and_audio_flows_both_ways() {
    if !browser_installed() {
        return;
    }
    let media_port = free_port().to_string();
    let sipp =
        Sipp::uas_with("uas_media.xml", SipTransportName::Udp, free_port(), &["-rtp_echo", "-mp", &media_port]).await;
    let gateway = gateway(Some(sipp.addr)).await;
    let base = format!("http://{}", gateway.http_addr);
    let mut driver = Driver::start(&["outgoing", &base, BOB]);
    let done = driver.until("done", Duration::from_secs(90)).await;
    assert_eq!(done["statuses"], serde_json::json!(["Ringing", "Connected", "Terminated"]), "{done}");
    driver.succeeds().await;
    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_answers_a_call_from_a_sip_endpoint() {
    if !browser_installed() {
        return;
    }
    let gateway = gateway(None).await;
    let base = format!("http://{}", gateway.http_addr);
    let mut driver = Driver::start(&["incoming", &base]);
    driver.until("ready", Duration::from_secs(60)).await;
    let media_port = free_port().to_string();
    let target = gateway.sip_udp_addr.unwrap();
    let sipp =
        Sipp::uac_with("uac_media_direct.xml", target, SipTransportName::Udp, &["-rtp_echo", "-mp", &media_port]).await;
    let done = driver.until("done", Duration::from_secs(90)).await;
    let statuses: Vec<String> =
        done["statuses"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    assert_eq!(statuses.first().map(String::as_str), Some("Initial"), "the invitation came first: {done}");
    assert_eq!(statuses.last().map(String::as_str), Some("Terminated"), "{done}");
    assert!(statuses.contains(&"Connected".to_string()), "{done}");
    driver.succeeds().await;
    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    gateway.stop().await;
}

/// The embedded defaults' first thing two people try: alice and bob, each in a browser of their
/// own, call each other through the demo network. Bob answers, audio flows both ways (getStats
/// on both pages), alice holds and resumes, then hangs up and bob's page sees the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_calls_bob_in_two_browsers_on_the_embedded_defaults() {
    if !browser_installed() {
        return;
    }
    let gateway = gateway_with(None, |c| c.device_side.demo_endpoint = true).await;
    let base = format!("http://{}", gateway.http_addr);
    let mut bob = Driver::start(&["incoming", &base, "--user", "bob", "--password", "bob"]);
    bob.until("ready", Duration::from_secs(60)).await;
    let shots = repo_root().join("target/artifacts/softphone");
    let shots_arg = shots.to_string_lossy().into_owned();
    let mut alice = Driver::start(&[
        "outgoing",
        &base,
        BOB,
        "--user",
        "alice",
        "--password",
        "alice",
        "--hold",
        "--screenshots",
        &shots_arg,
    ]);
    let called = alice.until("done", Duration::from_secs(120)).await;
    let answered = bob.until("done", Duration::from_secs(60)).await;
    let statuses = |v: &Value| -> Vec<String> {
        v["statuses"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let (alice_statuses, bob_statuses) = (statuses(&called), statuses(&answered));
    for expected in ["Connected", "Hold", "Resume"] {
        assert!(alice_statuses.contains(&expected.to_string()), "alice: {called}");
    }
    assert_eq!(alice_statuses.last().map(String::as_str), Some("Terminated"), "{called}");
    assert_eq!(bob_statuses.first().map(String::as_str), Some("Initial"), "bob was invited first: {answered}");
    assert!(bob_statuses.contains(&"Connected".to_string()), "{answered}");
    assert_eq!(bob_statuses.last().map(String::as_str), Some("Terminated"), "{answered}");
    // Alice's page was shot at 320 px and 1280 px, idle and in the call, with no sideways
    // overflow (the driver fails the run otherwise).
    for state in ["idle", "connected"] {
        for width in [320, 1280] {
            let shot = shots.join(format!("softphone-{state}-{width}.png"));
            assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000), "{} missing", shot.display());
        }
    }
    assert!(called["timer"]["seconds"].as_u64().unwrap_or(0) >= 1, "the call timer ran: {called}");
    alice.succeeds().await;
    bob.succeeds().await;
    gateway.stop().await;
}

/// Two browsers signed in as bob (two devices of one number): a call from the network rings
/// both; the one that answers takes it, the other page sees its session end as answered on
/// another device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_both_of_bobs_browsers_and_the_first_answer_takes_it() {
    if !browser_installed() {
        return;
    }
    let gateway = gateway(None).await;
    let base = format!("http://{}", gateway.http_addr);
    let bob = ["--user", "bob", "--password", "bob"];
    let mut ringing =
        Driver::start(&[&["incoming", &base, "--ring-only", "--expect-status", "SessionCancelled"][..], &bob].concat());
    ringing.until("ready", Duration::from_secs(60)).await;
    let mut answering = Driver::start(&[&["incoming", &base, "--answer-delay-ms", "1000"][..], &bob].concat());
    answering.until("ready", Duration::from_secs(60)).await;
    let media_port = free_port().to_string();
    let target = gateway.sip_udp_addr.unwrap();
    let sipp =
        Sipp::uac_with("uac_media_direct_bob.xml", target, SipTransportName::Udp, &["-rtp_echo", "-mp", &media_port])
            .await;
    let cancelled = ringing.until("done", Duration::from_secs(60)).await;
    assert_eq!(cancelled["reason"], "The call was answered on another device", "{cancelled}");
    let answered = answering.until("done", Duration::from_secs(90)).await;
    let statuses = answered["statuses"].as_array().unwrap();
    assert!(statuses.iter().any(|s| s == "Connected"), "{answered}");
    ringing.succeeds().await;
    answering.succeeds().await;
    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    gateway.stop().await;
}
