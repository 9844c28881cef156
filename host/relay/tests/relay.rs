//! The relay over real HTTP and real WebSockets: channels, the device socket, and the delivery
//! handshake as the gateway's sink POSTs see it.

mod common;

use std::time::{Duration, Instant};

use axum::http::Method;
use camara_relay::RelayConfig;
use camara_relay::protocol::{CLOSE_DELETED, CLOSE_REPLACED};
use common::*;
use serde_json::json;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn creating_a_channel_needs_a_device_token() {
    let relay = TestRelay::start(fast_config()).await;
    let reply = relay.request(Method::POST, "/channels", &[], "").await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["code"], "UNAUTHENTICATED");
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    let reply = relay.request(Method::POST, "/channels", &[("authorization", "Bearer nobody")], "").await;
    assert_eq!(reply.status, 401);

    let reply = relay.request(Method::POST, "/channels", &[("authorization", &bearer(ALICE_TOKEN))], "").await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let channel = Channel::from(reply.body.clone());
    assert_eq!(reply.headers["location"], format!("/relay/channels/{}", channel.id));
    assert_eq!(channel.sink_url, format!("http://{}/relay/sink/{}", relay.addr, channel.id));
    assert_eq!(channel.websocket_url, format!("ws://{}/relay/channels/{}/ws", relay.addr, channel.id));
    // Exactly the CAMARA AccessTokenCredential, ready to paste into a subscription.
    let credential = reply.body["sinkCredential"].as_object().unwrap();
    let mut keys: Vec<&str> = credential.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["accessToken", "accessTokenExpiresUtc", "accessTokenType", "credentialType"]);
    assert_eq!(credential["credentialType"], "ACCESSTOKEN");
    assert_eq!(credential["accessTokenType"], "bearer");
    assert_eq!(channel.sink_token.len(), 43, "256 random bits, base64url");
    assert_ne!(channel.sink_token, channel.websocket_token);
    let expires = chrono::DateTime::parse_from_rfc3339(reply.body["expiresAt"].as_str().unwrap()).unwrap();
    let credential_expires =
        chrono::DateTime::parse_from_rfc3339(credential["accessTokenExpiresUtc"].as_str().unwrap()).unwrap();
    assert_eq!(expires, credential_expires);
    let ttl = expires.signed_duration_since(chrono::Utc::now());
    assert!(ttl > chrono::Duration::hours(23) && ttl <= chrono::Duration::hours(24), "{ttl}");

    let other = relay.create_channel(ALICE_TOKEN).await;
    assert_ne!(other.id, channel.id);
    assert_ne!(other.sink_token, channel.sink_token);
}

#[tokio::test]
async fn the_websocket_needs_the_channel_token_or_the_owner() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let bobs = relay.create_channel(BOB_TOKEN).await;
    let url = &channel.websocket_url;

    assert_eq!(refused_status(Device::try_connect(&format!("{url}?token=wrong"), None).await), 401);
    assert_eq!(refused_status(Device::try_connect(url, None).await), 401);
    // Another channel's token does not open this one.
    assert_eq!(refused_status(Device::try_connect(&format!("{url}?token={}", bobs.websocket_token), None).await), 401);
    // An unknown channel.
    let unknown = url.replace(&channel.id, "00000000-0000-4000-8000-000000000000");
    assert_eq!(refused_status(Device::try_connect(&format!("{unknown}?token=x"), None).await), 404);
    // The owner's access token works; anyone else's does not.
    assert_eq!(refused_status(Device::try_connect(url, Some(BOB_TOKEN)).await), 404);
    assert_eq!(refused_status(Device::try_connect(url, Some(ALICE_OTHER_APP_TOKEN)).await), 404);
    assert_eq!(refused_status(Device::try_connect(url, Some("nobody")).await), 401);
    let mut device = Device::try_connect(url, Some(ALICE_TOKEN)).await.expect("owner's bearer token");
    device.expect_ready(&channel.id).await;
    drop(device);

    let mut device = Device::connect(&channel).await;
    device.send(json!({"type": "ping"})).await;
    assert_eq!(device.next_frame().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn an_event_is_pushed_acknowledged_and_answered_204() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let mut device = Device::connect(&channel).await;

    let event = cloud_event("e1");
    let post = tokio::spawn({
        let (sink, token, event) = (channel.sink_url.clone(), channel.sink_token.clone(), event.clone());
        let relay = relay.clone();
        async move { relay.post_event_with(&sink, &token, &event).await }
    });
    let (delivery_id, received) = device.next_event().await;
    assert_eq!(received, event, "the CloudEvent as the gateway sent it");
    assert!(!post.is_finished(), "no answer before the ack");
    device.ack(&delivery_id).await;
    let reply = post.await.unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(reply.headers["x-correlator"], "corr-1");
    device.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_wrong_sink_credential_is_refused_and_nothing_is_delivered() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let bobs = relay.create_channel(BOB_TOKEN).await;
    let mut device = Device::connect(&channel).await;
    let event = cloud_event("e1");

    let reply = relay.post_event_with(&channel.sink_url, "wrong", &event).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["status"], 401);
    assert_eq!(reply.body["code"], "UNAUTHENTICATED");
    // Bob's credential does not open alice's sink.
    assert_eq!(relay.post_event_with(&channel.sink_url, &bobs.sink_token, &event).await.status, 401);
    // The device's own access token is not the sink credential either.
    assert_eq!(relay.post_event_with(&channel.sink_url, ALICE_TOKEN, &event).await.status, 401);
    let reply = relay
        .request(
            Method::POST,
            &channel.sink_url,
            &[("content-type", "application/cloudevents+json")],
            event.to_string(),
        )
        .await;
    assert_eq!(reply.status, 401, "no credential");
    let unknown = channel.sink_url.replace(&channel.id, "00000000-0000-4000-8000-000000000000");
    assert_eq!(relay.post_event_with(&unknown, &channel.sink_token, &event).await.status, 404);

    // Right credential, not a CloudEvent.
    let auth = bearer(&channel.sink_token);
    for (content_type, body) in [
        ("text/plain", event.to_string()),
        ("application/cloudevents+json", "not json".to_string()),
        ("application/cloudevents+json", json!({"specversion": "1.0", "type": "t"}).to_string()),
        ("application/json", json!([1, 2]).to_string()),
    ] {
        let headers = [("authorization", auth.as_str()), ("content-type", content_type)];
        let reply = relay.request(Method::POST, &channel.sink_url, &headers, body).await;
        assert_eq!(reply.status, 400, "{content_type}: {reply:?}");
        assert_eq!(reply.body["code"], "INVALID_ARGUMENT");
    }
    device.expect_nothing(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_event_waits_for_the_device_to_connect() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let started = Instant::now();
    let post = tokio::spawn({
        let (relay, channel) = (relay.clone(), channel.clone());
        async move { relay.post_event(&channel, &cloud_event("e1")).await }
    });
    wait_pending(&relay, &channel, ALICE_TOKEN, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut device = Device::connect(&channel).await;
    let (delivery_id, event) = device.next_event().await;
    assert_eq!(event["id"], "e1");
    device.ack(&delivery_id).await;
    assert_eq!(post.await.unwrap().status, 204);
    assert!(started.elapsed() < Duration::from_millis(1900), "answered on the ack, not after the wait");
}

#[tokio::test]
async fn no_device_means_503_with_retry_after_once_the_wait_is_over() {
    let relay = TestRelay::start(RelayConfig { reconnect_wait_ms: 300, ..fast_config() }).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let started = Instant::now();
    let reply = relay.post_event(&channel, &cloud_event("e1")).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.body["code"], "UNAVAILABLE");
    assert_eq!(reply.headers["retry-after"], "7");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The gateway's retry, with the device back, goes through.
    let mut device = Device::connect(&channel).await;
    let post = tokio::spawn({
        let (relay, channel) = (relay.clone(), channel.clone());
        async move { relay.post_event(&channel, &cloud_event("e1")).await }
    });
    let (delivery_id, event) = device.next_event().await;
    assert_eq!(event["id"], "e1");
    device.ack(&delivery_id).await;
    assert_eq!(post.await.unwrap().status, 204);
}

#[tokio::test]
async fn a_device_that_never_acknowledges_gets_504_and_a_late_ack_still_counts() {
    let relay = TestRelay::start(RelayConfig { ack_timeout_ms: 300, ..fast_config() }).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let mut device = Device::connect(&channel).await;
    let post = tokio::spawn({
        let (relay, channel) = (relay.clone(), channel.clone());
        async move { relay.post_event(&channel, &cloud_event("e1")).await }
    });
    let (delivery_id, _) = device.next_event().await;
    let reply = post.await.unwrap();
    assert_eq!(reply.status, 504, "{reply:?}");
    assert_eq!(reply.body["code"], "TIMEOUT");

    // The ack comes late; the gateway's retry of the same event is then not pushed again.
    device.ack(&delivery_id).await;
    // The socket handles frames in order: the pong means the ack has been taken.
    device.send(json!({"type": "ping"})).await;
    assert_eq!(device.next_frame().await, json!({"type": "pong"}));
    assert_eq!(relay.post_event(&channel, &cloud_event("e1")).await.status, 204);
    device.expect_nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn order_is_kept_with_one_delivery_in_flight() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let mut device = Device::connect(&channel).await;
    let mut posts = Vec::new();
    for (n, id) in ["e1", "e2", "e3"].into_iter().enumerate() {
        posts.push(tokio::spawn({
            let (relay, channel) = (relay.clone(), channel.clone());
            async move { relay.post_event(&channel, &cloud_event(id)).await }
        }));
        // Each POST is queued before the next is sent, as the gateway's one queue per
        // subscription would do it.
        wait_pending(&relay, &channel, ALICE_TOKEN, n as u64 + 1).await;
    }
    for id in ["e1", "e2", "e3"] {
        let (delivery_id, event) = device.next_event().await;
        assert_eq!(event["id"], id);
        // The next one waits for this ack.
        device.expect_nothing(Duration::from_millis(100)).await;
        device.ack(&delivery_id).await;
    }
    for post in posts {
        assert_eq!(post.await.unwrap().status, 204);
    }
}

#[tokio::test]
async fn a_full_queue_is_429() {
    let relay = TestRelay::start(RelayConfig { max_queued_per_channel: 1, ..fast_config() }).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let mut device = Device::connect(&channel).await;
    let mut posts = Vec::new();
    for id in ["e1", "e2"] {
        posts.push(tokio::spawn({
            let (relay, channel) = (relay.clone(), channel.clone());
            async move { relay.post_event(&channel, &cloud_event(id)).await }
        }));
    }
    wait_pending(&relay, &channel, ALICE_TOKEN, 2).await;
    let reply = relay.post_event(&channel, &cloud_event("e3")).await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(reply.headers["retry-after"], "7");
    for _ in 0..2 {
        let (delivery_id, _) = device.next_event().await;
        device.ack(&delivery_id).await;
    }
    for post in posts {
        assert_eq!(post.await.unwrap().status, 204);
    }
}

#[tokio::test]
async fn a_duplicate_of_an_acknowledged_event_is_not_pushed_again() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let mut device = Device::connect(&channel).await;
    let post = tokio::spawn({
        let (relay, channel) = (relay.clone(), channel.clone());
        async move { relay.post_event(&channel, &cloud_event("e1")).await }
    });
    let (delivery_id, _) = device.next_event().await;
    device.ack(&delivery_id).await;
    assert_eq!(post.await.unwrap().status, 204);

    // The gateway retries (it did not see the 204): answered at once, not pushed.
    assert_eq!(relay.post_event(&channel, &cloud_event("e1")).await.status, 204);
    device.expect_nothing(Duration::from_millis(200)).await;
    // Another event still is.
    let post = tokio::spawn({
        let (relay, channel) = (relay.clone(), channel.clone());
        async move { relay.post_event(&channel, &cloud_event("e2")).await }
    });
    let (delivery_id, event) = device.next_event().await;
    assert_eq!(event["id"], "e2");
    device.ack(&delivery_id).await;
    assert_eq!(post.await.unwrap().status, 204);
}

#[tokio::test]
async fn subscribers_never_see_each_others_events() {
    let relay = TestRelay::start(fast_config()).await;
    let alices = relay.create_channel(ALICE_TOKEN).await;
    let bobs = relay.create_channel(BOB_TOKEN).await;
    let mut alice = Device::connect(&alices).await;
    let mut bob = Device::connect(&bobs).await;

    only_one_device_sees(&relay, &alices, &mut alice, &mut bob, "for-alice").await;
    only_one_device_sees(&relay, &bobs, &mut bob, &mut alice, "for-bob").await;

    // A device cannot read the other's channel through its own websocket token either.
    let crossed = format!("{}?token={}", bobs.websocket_url, alices.websocket_token);
    assert_eq!(refused_status(Device::try_connect(&crossed, None).await), 401);
    alice.expect_nothing(Duration::from_millis(100)).await;
    bob.expect_nothing(Duration::from_millis(100)).await;
}

/// An event for `channel` reaches `receiver` only; `other` cannot even complete it with an ack.
async fn only_one_device_sees(
    relay: &TestRelay,
    channel: &Channel,
    receiver: &mut Device,
    other: &mut Device,
    id: &str,
) {
    let post = tokio::spawn({
        let (relay, channel, id) = (relay.clone(), channel.clone(), id.to_string());
        async move { relay.post_event(&channel, &cloud_event(&id)).await }
    });
    let (delivery_id, event) = receiver.next_event().await;
    assert_eq!(event["id"], id);
    other.ack(&delivery_id).await;
    other.expect_nothing(Duration::from_millis(200)).await;
    assert!(!post.is_finished(), "another device's ack does not count");
    receiver.ack(&delivery_id).await;
    assert_eq!(post.await.unwrap().status, 204);
}

#[tokio::test]
async fn another_owners_channel_does_not_exist() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let path = format!("/channels/{}", channel.id);
    for token in [BOB_TOKEN, ALICE_OTHER_APP_TOKEN] {
        let auth = [("authorization", bearer(token))];
        let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = relay.request(Method::GET, &path, &auth, "").await;
        assert_eq!(reply.status, 404, "{reply:?}");
        assert_eq!(reply.body["code"], "NOT_FOUND");
        assert_eq!(relay.request(Method::DELETE, &path, &auth, "").await.status, 404);
    }
    assert_eq!(relay.request(Method::GET, &path, &[], "").await.status, 401);

    let mut device = Device::connect(&channel).await;
    let owner = bearer(ALICE_TOKEN);
    let reply = relay.request(Method::GET, &path, &[("authorization", &owner)], "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["channelId"], channel.id.as_str());
    assert_eq!(reply.body["sinkCredential"], channel.body["sinkCredential"]);
    assert_eq!(reply.body["connected"], true);

    // The owner deletes it: the socket closes, the sink is gone.
    assert_eq!(relay.request(Method::DELETE, &path, &[("authorization", &owner)], "").await.status, 204);
    assert_eq!(device.expect_close().await, CLOSE_DELETED);
    assert_eq!(relay.request(Method::GET, &path, &[("authorization", &owner)], "").await.status, 404);
    assert_eq!(relay.post_event(&channel, &cloud_event("e1")).await.status, 404);
}

#[tokio::test]
async fn a_new_socket_replaces_the_old_one() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let mut old = Device::connect(&channel).await;
    let mut new = Device::connect(&channel).await;
    assert_eq!(old.expect_close().await, CLOSE_REPLACED);

    let post = tokio::spawn({
        let (relay, channel) = (relay.clone(), channel.clone());
        async move { relay.post_event(&channel, &cloud_event("e1")).await }
    });
    let (delivery_id, _) = new.next_event().await;
    new.ack(&delivery_id).await;
    assert_eq!(post.await.unwrap().status, 204);
}

#[tokio::test]
async fn an_event_unacknowledged_when_the_socket_drops_goes_to_the_next_socket() {
    let relay = TestRelay::start(fast_config()).await;
    let channel = relay.create_channel(ALICE_TOKEN).await;
    let mut first = Device::connect(&channel).await;
    let post = tokio::spawn({
        let (relay, channel) = (relay.clone(), channel.clone());
        async move { relay.post_event(&channel, &cloud_event("e1")).await }
    });
    let (first_delivery, _) = first.next_event().await;
    drop(first);
    let mut second = Device::connect(&channel).await;
    let (delivery_id, event) = second.next_event().await;
    assert_eq!((delivery_id.as_str(), event["id"].as_str()), (first_delivery.as_str(), Some("e1")));
    second.ack(&delivery_id).await;
    assert_eq!(post.await.unwrap().status, 204);
}

#[tokio::test]
async fn channels_are_limited_per_subscriber_and_expire() {
    let relay =
        TestRelay::start(RelayConfig { max_channels_per_subscriber: 2, channel_ttl_seconds: 1, ..fast_config() }).await;
    let first = relay.create_channel(ALICE_TOKEN).await;
    relay.create_channel(ALICE_TOKEN).await;
    // The limit is per subscriber (phone number), whatever app asks.
    let reply =
        relay.request(Method::POST, "/channels", &[("authorization", &bearer(ALICE_OTHER_APP_TOKEN))], "").await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(reply.body["code"], "QUOTA_EXCEEDED");
    relay.create_channel(BOB_TOKEN).await;

    let mut device = Device::connect(&first).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = relay.post_event(&first, &cloud_event("e1")).await;
    assert_eq!(reply.status, 401, "an expired sink credential: {reply:?}");
    let path = format!("/channels/{}", first.id);
    assert_eq!(relay.request(Method::GET, &path, &[("authorization", &bearer(ALICE_TOKEN))], "").await.status, 404);
    assert_eq!(device.expect_close().await, camara_relay::protocol::CLOSE_EXPIRED);
    // Expired channels no longer count.
    relay.create_channel(ALICE_TOKEN).await;
}
