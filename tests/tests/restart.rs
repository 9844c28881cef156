//! Durable state: a gateway killed with SIGKILL and started again on the same store comes back
//! with its registrations and subscriptions and delivers the event that was still pending.

use std::time::Duration;

use camara_gateway_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_comes_back_with_its_state_and_pending_events() {
    init_logs();
    let dir = TempDir::new("restart");
    let http_port = free_port();
    let sip_port = free_port();
    let config = write_process_config(&dir, http_port, sip_port, "", "");
    // The sink fails the first two attempts; the gateway is killed before it succeeds.
    let mut sink = Sink::start(vec![503, 503]).await;
    let api = Api::new(format!("127.0.0.1:{http_port}").parse().unwrap());
    let token = tokens::for_subscriber(ALICE);

    let mut gateway = start_gateway_process(&config);
    wait_for_http(&api).await;
    let registration = api.register(&token).await;
    assert_eq!(registration.status, 201);
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    let kept = api.subscribe(&token, &sink.url, "kept-token").await.body["id"].as_str().unwrap().to_string();
    let ended = api.subscribe(&token, &sink.url, "ended-token").await.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.call("DELETE", &format!("/webrtc-events/v0.2/subscriptions/{ended}"), Some(&token), &[], None).await.status,
        202
    );
    let first = sink.next(Duration::from_secs(10)).await;
    let second = sink.next(Duration::from_secs(10)).await;
    assert_eq!(first.body["id"], second.body["id"], "a retry carries the same event");
    gateway.kill().await.unwrap();

    let _gateway = start_gateway_process(&config);
    wait_for_http(&api).await;
    let redelivered = sink.next(Duration::from_secs(15)).await;
    assert_eq!(redelivered.body["id"], first.body["id"], "the pending event, not a new one");
    assert_eq!(redelivered.body["data"]["subscriptionId"], ended.as_str());
    assert_eq!(redelivered.body["data"]["terminationReason"], "SUBSCRIPTION_DELETED");
    assert_eq!(redelivered.headers["authorization"], "Bearer ended-token");
    assert!(sink.quiet_for(Duration::from_millis(1500)).await, "delivered once, then removed from the outbox");

    let read = api
        .call("GET", &format!("/webrtc-registration/v0.3/sessions/{registration_id}"), Some(&token), &[], None)
        .await;
    assert_eq!(read.status, 200, "the registration survived: {:?}", read.body);
    let listed = api.call("GET", "/webrtc-events/v0.2/subscriptions", Some(&token), &[], None).await;
    let ids: Vec<&str> = listed.body.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [kept.as_str()], "the kept subscription survived, the deleted one did not");
}
