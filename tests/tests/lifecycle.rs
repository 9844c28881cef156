//! Expiry: a registration ends with `registration-ends`, a subscription with `subscription-ended`
//! (SUBSCRIPTION_EXPIRED), and a subscription whose sink credential runs out with
//! ACCESS_TOKEN_EXPIRED before the credential stops working.

use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::json;

fn in_seconds(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_and_subscriptions_end_with_their_events() {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.registration.min_ttl_seconds = 1;
    config.notifications.credential_expiry_notice_seconds = 1;
    let gateway = camara_gateway::start(config).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let token = tokens::for_subscriber(ALICE);
    let mut sink = Sink::start(vec![]).await;

    let subscribe = |types: Vec<&str>, expire: Option<String>, credential_expiry: String| {
        let mut config = json!({"subscriptionDetail": {"deviceId": DEVICE_ID}});
        if let Some(t) = expire {
            config["subscriptionExpireTime"] = t.into();
        }
        json!({
            "protocol": "HTTP", "sink": sink.url, "types": types, "config": config,
            "sinkCredential": {"credentialType": "ACCESSTOKEN", "accessToken": "t", "accessTokenExpiresUtc": credential_expiry, "accessTokenType": "bearer"}
        })
    };
    let long = in_seconds(3600);
    let watcher = api
        .call(
            "POST",
            "/webrtc-events/v0.2/subscriptions",
            Some(&token),
            &[],
            Some(subscribe(vec!["org.camaraproject.webrtc-events.v0.registration-ends"], None, long.clone())),
        )
        .await;
    assert_eq!(watcher.status, 201, "{:?}", watcher.body);
    // Session events are for a registered device: the registration comes first.
    let registration = api
        .call(
            "POST",
            "/webrtc-registration/v0.3/sessions",
            Some(&token),
            &[],
            Some(json!({"deviceId": DEVICE_ID, "registrationExpireTime": in_seconds(2)})),
        )
        .await;
    assert_eq!(registration.status, 201, "{:?}", registration.body);
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    let expiring = api
        .call(
            "POST",
            "/webrtc-events/v0.2/subscriptions",
            Some(&token),
            &[],
            Some(subscribe(vec![SESSION_STATUS], Some(in_seconds(2)), long)),
        )
        .await;
    let expiring_id = expiring.body["id"].as_str().unwrap().to_string();
    let token_expiring = api
        .call(
            "POST",
            "/webrtc-events/v0.2/subscriptions",
            Some(&token),
            &[],
            Some(subscribe(vec![SESSION_STATUS], None, in_seconds(3))),
        )
        .await;
    let token_expiring_id = token_expiring.body["id"].as_str().unwrap().to_string();

    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..3 {
        let event = sink.next(Duration::from_secs(10)).await;
        let data = &event.body["data"];
        let key = data["registrationId"].as_str().or(data["subscriptionId"].as_str()).unwrap().to_string();
        seen.insert(
            key,
            (event.body["type"].as_str().unwrap().to_string(), data["terminationReason"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(
        seen[&registration_id],
        ("org.camaraproject.webrtc-events.v0.registration-ends".into(), "REGISTRATION_EXPIRED".into())
    );
    assert_eq!(
        seen[&expiring_id],
        ("org.camaraproject.webrtc-events.v0.subscription-ended".into(), "SUBSCRIPTION_EXPIRED".into())
    );
    assert_eq!(
        seen[&token_expiring_id],
        ("org.camaraproject.webrtc-events.v0.subscription-ended".into(), "ACCESS_TOKEN_EXPIRED".into())
    );
    assert_eq!(
        api.call("GET", &format!("/webrtc-registration/v0.3/sessions/{registration_id}"), Some(&token), &[], None)
            .await
            .status,
        404
    );
    let left = api.call("GET", "/webrtc-events/v0.2/subscriptions", Some(&token), &[], None).await;
    assert_eq!(left.body.as_array().unwrap().len(), 1, "only the long-lived subscription is left: {:?}", left.body);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_expires_ends_its_calls() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let sipp = Sipp::uas("uas_call_flow.xml", SipTransportName::Udp).await;
    let mut config = gateway_config(Some(sipp.addr), SipTransportName::Udp);
    config.registration.min_ttl_seconds = 1;
    let gateway = camara_gateway::start(config).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let token = tokens::for_subscriber(ALICE);
    let mut sink = Sink::start(vec![]).await;
    let registration = api
        .call(
            "POST",
            "/webrtc-registration/v0.3/sessions",
            Some(&token),
            &[],
            Some(json!({"deviceId": DEVICE_ID, "registrationExpireTime": in_seconds(3)})),
        )
        .await;
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    assert_eq!(api.subscribe(&token, &sink.url, "t").await.status, 201);
    let session = api.call_number(&token, &registration_id, ALICE, &format!("tel:{BOB}")).await;
    assert_eq!(session.status, 201);
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("Terminated") {
        let event = sink.next(Duration::from_secs(10)).await;
        statuses.push(event.body["data"]["status"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(statuses, ["InProgress", "Ringing", "Connected", "Terminated"]);
    let (code, messages, errors) = sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp saw no BYE: {errors}\n{messages}");
    gateway.stop().await;
}
