//! How a gateway process ends with a call up, against a sipp network: SIGTERM drains (new calls
//! refused, the live call ended with BYE and `Terminated`, exit within `[shutdown]
//! drain_seconds`); after a SIGKILL the next start ends the call the killed run left behind.

use std::time::{Duration, Instant};

use camara_gateway_tests::*;

const DRAIN_SECONDS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_calls_ends_the_live_one_and_exits_within_the_drain_period() {
    let shutdown = format!("[shutdown]\ndrain_seconds = {DRAIN_SECONDS}");
    let Some(mut call) = ProcessCall::start("drain", &shutdown).await else { return };
    let signalled = Instant::now();
    signal(&call.gateway, "TERM");
    // Draining: the gateway still answers, but takes no new session.
    let mut refused = None;
    for _ in 0..20 {
        let reply = call.api.call_number(&call.token, &call.registration_id, ALICE, &format!("tel:{BOB}")).await;
        if reply.status != 201 {
            refused = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = refused.expect("a session created after SIGTERM is refused");
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "UNAVAILABLE");
    assert_eq!(refused.headers["retry-after"], DRAIN_SECONDS.to_string());
    // A session accepted in the moment before the refusal would be ended by the drain too;
    // the live call's end is the one under test.
    let ended = loop {
        let event = next_status(&mut call.sink, "Terminated").await;
        if event["data"]["mediaSessionId"] == call.session.as_str() {
            break event;
        }
    };
    assert_eq!(ended["data"]["reason"], "The gateway is shutting down");
    let status = tokio::time::timeout(Duration::from_secs(DRAIN_SECONDS + 2), call.gateway.wait())
        .await
        .expect("the gateway exits")
        .unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "a drained gateway exits cleanly: {status:?}");
    // The drain's deadline, plus what a process needs to be gone.
    assert!(took < Duration::from_millis(DRAIN_SECONDS * 1000 + 800), "exited after {took:?}");
    let (code, messages, errors) = call.sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    assert!(received_message(&messages, "BYE").is_some(), "the network got a BYE:\n{messages}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_left_by_a_killed_gateway_is_ended_with_bye_at_the_next_start() {
    let Some(mut call) = ProcessCall::start("recover", "").await else { return };
    call.gateway.kill().await.unwrap();
    assert!(call.sink.quiet_for(Duration::from_millis(300)).await, "a killed gateway sends nothing");

    let _restarted = start_gateway_process(&call.config);
    wait_for_http(&call.api).await;
    let ended = next_status(&mut call.sink, "Terminated").await;
    assert_eq!(ended["data"]["mediaSessionId"], call.session.as_str());
    assert_eq!(ended["data"]["reason"], "The gateway restarted and could not resume the call");
    let read = call.api.call("GET", &call.session_path(), Some(&call.token), &[], None).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["status"], "Terminated");
    let (code, messages, errors) = call.sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    let bye = received_message(&messages, "BYE").expect("the network got a BYE");
    // The BYE is in the dialog of the killed run: its Call-ID, tags and a higher CSeq.
    let invite = received_message(&messages, "INVITE").unwrap();
    let header = |message: &str, name: &str| {
        message
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())))
            .map(|l| l.split_once(':').unwrap().1.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(header(&bye, "Call-ID"), header(&invite, "Call-ID"));
    assert_eq!(header(&bye, "From"), header(&invite, "From"), "our URI and tag");
    assert!(header(&bye, "To").contains("tag="), "the network's tag: {bye}");
    let cseq: u32 = header(&bye, "CSeq").split_whitespace().next().unwrap().parse().unwrap();
    assert!(cseq > 1, "CSeq {cseq} after the INVITE's");
}
