//! Registration and subscription resources through their whole lifecycle, with real tokens.

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::json;

const REGISTRATIONS: &str = "/webrtc-registration/v0.3/sessions";
const SUBSCRIPTIONS: &str = "/webrtc-events/v0.2/subscriptions";

#[tokio::test]
async fn registrations_are_listed_refreshed_and_deleted_by_their_owner() {
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let alice = tokens::for_subscriber(ALICE);
    let bob = tokens::for_subscriber(BOB);

    let soon = (chrono::Utc::now() + chrono::Duration::seconds(10)).to_rfc3339();
    let too_soon = api
        .call(
            "POST",
            REGISTRATIONS,
            Some(&alice),
            &[],
            Some(json!({"deviceId": DEVICE_ID, "registrationExpireTime": soon})),
        )
        .await;
    assert_eq!((too_soon.status, too_soon.body["code"].as_str()), (400, Some("OUT_OF_RANGE")));
    let far = "2999-01-01T00:00:00Z";
    let created = api
        .call(
            "POST",
            REGISTRATIONS,
            Some(&alice),
            &[],
            Some(json!({"deviceId": DEVICE_ID, "registrationExpireTime": far})),
        )
        .await;
    assert_eq!(created.status, 201);
    let expires = chrono::DateTime::parse_from_rfc3339(created.body["expiresAt"].as_str().unwrap()).unwrap();
    let cap = chrono::Utc::now() + chrono::Duration::seconds(86400 + 5);
    assert!(expires < cap, "capped at the operator's maximum: {expires}");
    let id = created.body["registrationId"].as_str().unwrap().to_string();

    let listed = api.call("GET", &format!("{REGISTRATIONS}?deviceId={DEVICE_ID}"), Some(&alice), &[], None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["registrationId"], id.as_str());
    let others = api.call("GET", &format!("{REGISTRATIONS}?deviceId={DEVICE_ID}"), Some(&bob), &[], None).await;
    assert_eq!(others.body, json!([]), "Bob sees none of Alice's registrations");
    let no_device = api.call("GET", REGISTRATIONS, Some(&alice), &[], None).await;
    assert_eq!(no_device.status, 400);

    let target =
        (chrono::Utc::now() + chrono::Duration::seconds(1800)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let refreshed = api
        .call(
            "PUT",
            &format!("{REGISTRATIONS}/{id}"),
            Some(&alice),
            &[],
            Some(json!({"registrationExpireTime": target})),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    assert_eq!(refreshed.body["expiresAt"], target.as_str());
    let stolen = api.call("PUT", &format!("{REGISTRATIONS}/{id}"), Some(&bob), &[], Some(json!({}))).await;
    assert_eq!(stolen.status, 404);

    assert_eq!(api.call("DELETE", &format!("{REGISTRATIONS}/{id}"), Some(&alice), &[], None).await.status, 204);
    assert_eq!(api.call("GET", &format!("{REGISTRATIONS}/{id}"), Some(&alice), &[], None).await.status, 404);
    gateway.stop().await;
}

#[tokio::test]
async fn subscriptions_are_listed_refreshed_and_deleted_with_a_final_event() {
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let alice = tokens::for_subscriber(ALICE);
    let bob = tokens::for_subscriber(BOB);
    let mut sink = Sink::start(vec![]).await;
    // Session events are for a registered device (422 SERVICE_NOT_APPLICABLE otherwise).
    assert_eq!(api.register(&alice).await.status, 201);

    let created = api.subscribe(&alice, &sink.url, "first-token").await;
    assert_eq!(created.status, 201);
    assert!(created.body.get("sinkCredential").is_none(), "the credential is never echoed");
    let id = created.body["id"].as_str().unwrap().to_string();

    let listed = api.call("GET", SUBSCRIPTIONS, Some(&alice), &[], None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(api.call("GET", SUBSCRIPTIONS, Some(&bob), &[], None).await.body, json!([]));

    let refresh = json!({
        "sinkCredential": {"credentialType": "ACCESSTOKEN", "accessToken": "second-token",
                           "accessTokenExpiresUtc": "2099-01-01T00:00:00Z", "accessTokenType": "bearer"},
        "config": {"subscriptionExpireTime": "2098-01-31T23:59:59.999Z"}
    });
    let updated = api.call("PUT", &format!("{SUBSCRIPTIONS}/{id}"), Some(&alice), &[], Some(refresh.clone())).await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    assert_eq!(updated.body["expiresAt"], "2098-01-31T23:59:59.999Z");
    assert_eq!(api.call("PUT", &format!("{SUBSCRIPTIONS}/{id}"), Some(&bob), &[], Some(refresh)).await.status, 404);

    let deleted = api.call("DELETE", &format!("{SUBSCRIPTIONS}/{id}"), Some(&alice), &[], None).await;
    assert_eq!((deleted.status, deleted.body["id"].as_str()), (202, Some(id.as_str())));
    let ended = sink.next(std::time::Duration::from_secs(5)).await;
    assert_eq!(ended.headers["authorization"], "Bearer second-token", "the refreshed credential is used");
    assert_eq!(ended.body["data"]["subscriptionId"], id.as_str());
    assert_eq!(ended.body["data"]["terminationReason"], "SUBSCRIPTION_DELETED");
    assert_eq!(api.call("GET", &format!("{SUBSCRIPTIONS}/{id}"), Some(&alice), &[], None).await.status, 404);
    gateway.stop().await;
}

/// `[api] multi_event_subscriptions` off: a subscription has one type, as the `Subscription`
/// schema of webrtc-events says (`maxItems: 1`), and several are the 422 its file lists; the
/// served document says the same. A deviceId in upper case is the same device, echoed in its
/// canonical (lower-case) form.
#[tokio::test]
async fn one_type_per_subscription_where_multi_event_subscriptions_are_off() {
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.api.multi_event_subscriptions = false;
    let gateway = camara_gateway::start(config).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let alice = tokens::for_subscriber(ALICE);
    let sink = Sink::start(vec![]).await;
    assert_eq!(api.register(&alice).await.status, 201);
    let subscribe = |types: serde_json::Value| {
        let body = json!({"protocol": "HTTP", "sink": sink.url, "types": types,
                          "config": {"subscriptionDetail": {"deviceId": DEVICE_ID.to_uppercase()}}});
        api.call("POST", SUBSCRIPTIONS, Some(&alice), &[], Some(body))
    };
    let two = subscribe(json!([SESSION_STATUS, SESSION_INVITATION])).await;
    assert_eq!((two.status, two.body["code"].as_str()), (422, Some("MULTIEVENT_SUBSCRIPTION_NOT_SUPPORTED")));
    let one = subscribe(json!([SESSION_STATUS])).await;
    assert_eq!(one.status, 201, "{}", one.body);
    assert_eq!(one.body["types"], json!([SESSION_STATUS]));
    assert_eq!(one.body["config"]["subscriptionDetail"]["deviceId"], DEVICE_ID, "the canonical form");
    let doc = api.call("GET", "/openapi.json", None, &[], None).await.body;
    assert_eq!(doc["components"]["schemas"]["Subscription"]["properties"]["types"]["maxItems"], 1);
    gateway.stop().await;
}
