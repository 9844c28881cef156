//! The behaviour every [`Store`] backend must have, written once.
//!
//! Each check takes a fresh, empty store and panics on the first deviation. The crate runs them
//! for each of its backends; another backend crate can run them too with the `conformance`
//! feature. [`persists`] and [`fill`]/[`check_filled`] are for backends that outlive a process.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;

use crate::{
    Direction, MediaSession, NewEvent, NewNotification, Registration, SessionStatus, SinkCredential, Store, StoreError,
    Subscription, SubscriptionEnd, Undelivered,
};

/// A check of the suite: panics unless the fresh store it is given behaves.
pub type Check = for<'a> fn(&'a dyn Store) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Every check, by name, for backends that run them in a loop.
macro_rules! all_checks {
    ($($check:ident),* $(,)?) => {
        pub const ALL: &[(&str, Check)] = &[$((stringify!($check), {
            fn boxed(store: &dyn Store) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
                Box::pin($check(store))
            }
            boxed
        })),*];
    };
}

all_checks!(
    registrations,
    registration_uniqueness,
    registration_expiry,
    registration_move,
    subscriptions,
    subscription_update,
    subscription_expiry,
    sessions,
    session_update,
    session_compare_and_set,
    session_update_is_atomic,
    events_commit_with_the_write,
    outbox,
    event_outbox,
    dead_letters,
);

/// A fixed instant with nanoseconds, `seconds` after 2030-01-01, so that a backend that rounds
/// times is caught.
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
        + TimeDelta::nanoseconds(123_456_789)
        + TimeDelta::seconds(seconds)
}

pub fn registration(id: &str, phone_number: &str, device_id: &str, expires_in: i64) -> Registration {
    Registration {
        id: id.into(),
        device_id: device_id.into(),
        phone_number: phone_number.into(),
        expires_at: at(expires_in),
        created_at: at(0),
        node: None,
    }
}

pub fn subscription(id: &str, owner: &str, starts: i64, expires: Option<i64>, credential: Option<i64>) -> Subscription {
    Subscription {
        id: id.into(),
        owner_phone_number: owner.into(),
        device_id: "device-1".into(),
        sink: format!("https://sink.example.com/{id}"),
        sink_credential: credential.map(|c| SinkCredential { access_token: format!("token-{id}"), expires_at: at(c) }),
        types: vec!["org.camaraproject.webrtc-events.v0.session-invitation".into()],
        config_json: json!({"subscriptionDetail": {"deviceId": "device-1"}, "initialEvent": false}),
        starts_at: at(starts),
        expires_at: expires.map(at),
    }
}

pub fn session(id: &str, call_id: Option<&str>, created: i64) -> MediaSession {
    MediaSession {
        id: id.into(),
        owner_phone_number: "+4915112345678".into(),
        registration_id: "reg-1".into(),
        device_id: "device-1".into(),
        direction: Direction::Outgoing,
        sip_call_id: call_id.map(Into::into),
        originator_address: "tel:+4915112345678".into(),
        originator_name: Some("Alice".into()),
        receiver_address: "tel:+4915187654321".into(),
        receiver_name: None,
        offer_sdp: "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n".into(),
        answer_sdp: None,
        sip_local_sdp: None,
        status: SessionStatus::Initial,
        sequence: 0,
        sip_dialog: None,
        local_hangup: None,
        node: None,
        created_at: at(created),
        // As stored: the store sets the revision.
        revision: 1,
    }
}

pub fn notification(subscription_id: &str, payload: &str, not_before: i64) -> NewNotification {
    NewNotification {
        subscription_id: subscription_id.into(),
        sink: format!("https://sink.example.com/{subscription_id}"),
        headers: vec![
            ("Authorization".into(), "Bearer t".into()),
            ("Content-Type".into(), "application/cloudevents+json".into()),
        ],
        payload: payload.into(),
        not_before: at(not_before),
    }
}

pub fn event(payload: &str, not_before: i64) -> NewEvent {
    NewEvent { payload: payload.into(), not_before: at(not_before) }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<&str> {
    items.iter().map(id).collect()
}

fn assert_already_exists<T: std::fmt::Debug>(result: crate::Result<T>) {
    assert!(matches!(result, Err(StoreError::AlreadyExists(_))), "expected AlreadyExists, got {result:?}");
}

fn assert_not_found<T: std::fmt::Debug>(result: crate::Result<T>) {
    assert!(matches!(result, Err(StoreError::NotFound(_))), "expected NotFound, got {result:?}");
}

pub async fn registrations(store: &dyn Store) {
    let a = registration("reg-a", "+491", "device-b", 100);
    let b = registration("reg-b", "+491", "device-a", 200);
    let other = registration("reg-c", "+492", "device-a", 300);
    for r in [&a, &b, &other] {
        store.insert_registration(r.clone()).await.unwrap();
    }

    assert_eq!(store.registration("reg-a").await.unwrap(), Some(a.clone()));
    assert_eq!(store.registration("nope").await.unwrap(), None);

    // All of a phone number's, by device id; not another number's (even a prefix of it).
    assert_eq!(store.registrations_of("+491", None).await.unwrap(), vec![b.clone(), a.clone()]);
    assert_eq!(store.registrations_of("+491", Some("device-b")).await.unwrap(), vec![a.clone()]);
    assert_eq!(store.registrations_of("+491", Some("device-c")).await.unwrap(), vec![]);
    assert_eq!(store.registrations_of("+49", None).await.unwrap(), vec![]);
    assert_eq!(store.registrations_of("+492", None).await.unwrap(), vec![other.clone()]);

    let updated = store.update_registration_expiry("reg-a", at(150)).await.unwrap();
    assert_eq!(updated, Registration { expires_at: at(150), ..a.clone() });
    assert_eq!(store.registration("reg-a").await.unwrap(), Some(updated.clone()));
    assert_not_found(store.update_registration_expiry("nope", at(1)).await);

    assert_eq!(store.remove_registration("reg-a", vec![]).await.unwrap().map(|c| c.record), Some(updated));
    assert_eq!(store.remove_registration("reg-a", vec![]).await.unwrap(), None);
    assert_eq!(store.registration("reg-a").await.unwrap(), None);
    assert_eq!(store.registrations_of("+491", None).await.unwrap(), vec![b]);
}

pub async fn registration_uniqueness(store: &dyn Store) {
    store.insert_registration(registration("reg-1", "+491", "device-1", 100)).await.unwrap();
    // Same phone number and device, another id.
    assert_already_exists(store.insert_registration(registration("reg-2", "+491", "device-1", 100)).await);
    // Same id.
    assert_already_exists(store.insert_registration(registration("reg-1", "+491", "device-9", 100)).await);
    // The refused inserts left nothing behind.
    assert_eq!(store.registration("reg-2").await.unwrap(), None);
    assert_eq!(store.registrations_of("+491", None).await.unwrap().len(), 1);
    // The same device under another phone number, or another device, is fine.
    store.insert_registration(registration("reg-3", "+492", "device-1", 100)).await.unwrap();
    store.insert_registration(registration("reg-4", "+491", "device-2", 100)).await.unwrap();
    // Once removed, the device may register again.
    store.remove_registration("reg-1", vec![]).await.unwrap();
    store.insert_registration(registration("reg-5", "+491", "device-1", 100)).await.unwrap();
    assert_eq!(ids(&store.registrations_of("+491", None).await.unwrap(), |r| &r.id), ["reg-5", "reg-4"]);
}

pub async fn registration_expiry(store: &dyn Store) {
    store.insert_registration(registration("late", "+491", "d1", 300)).await.unwrap();
    store.insert_registration(registration("early", "+491", "d2", 100)).await.unwrap();
    store.insert_registration(registration("same-b", "+491", "d3", 200)).await.unwrap();
    store.insert_registration(registration("same-a", "+491", "d4", 200)).await.unwrap();
    let expiring = async |t| ids(&store.registrations_expiring_before(t).await.unwrap(), |r| &r.id).join(",");

    assert_eq!(expiring(at(0)).await, "");
    // Strictly before: exactly at the expiry is not yet expired, a nanosecond later is.
    assert_eq!(expiring(at(100)).await, "");
    assert_eq!(expiring(at(100) + TimeDelta::nanoseconds(1)).await, "early");
    // Earliest first, ties by id.
    assert_eq!(expiring(at(250)).await, "early,same-a,same-b");
    assert_eq!(expiring(at(1000)).await, "early,same-a,same-b,late");

    // A renewal moves the registration in the expiry order; a removal takes it out.
    store.update_registration_expiry("early", at(400)).await.unwrap();
    assert_eq!(expiring(at(350)).await, "same-a,same-b,late");
    store.remove_registration("late", vec![]).await.unwrap();
    assert_eq!(expiring(at(1000)).await, "same-a,same-b,early");
    // Expiries far outside the usual range are still ordered and compared exactly.
    let far = Utc.with_ymd_and_hms(2500, 1, 1, 0, 0, 0).unwrap();
    let mut r = registration("far", "+491", "d5", 0);
    r.expires_at = far;
    store.insert_registration(r).await.unwrap();
    assert_eq!(expiring(far).await, "same-a,same-b,early");
    assert_eq!(expiring(far + TimeDelta::seconds(1)).await, "same-a,same-b,early,far");
}

pub async fn registration_move(store: &dyn Store) {
    let original = registration("reg-1", "+491", "d1", 100);
    store.insert_registration(original.clone()).await.unwrap();

    let moved = store.move_registration("reg-1", None, "node-a").await.unwrap();
    assert_eq!(moved, Registration { node: Some("node-a".into()), ..original.clone() });
    assert_eq!(store.registration("reg-1").await.unwrap(), Some(moved.clone()));

    // A node that read a stale owner loses: the binding has one keeper.
    let stale = store.move_registration("reg-1", None, "node-b").await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "expected Conflict, got {stale:?}");
    let stale = store.move_registration("reg-1", Some("node-b"), "node-c").await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "expected Conflict, got {stale:?}");
    assert_eq!(store.registration("reg-1").await.unwrap(), Some(moved.clone()));

    let moved = store.move_registration("reg-1", Some("node-a"), "node-b").await.unwrap();
    assert_eq!(moved, Registration { node: Some("node-b".into()), ..original.clone() });
    assert_eq!(store.registration("reg-1").await.unwrap(), Some(moved.clone()));
    // Still indexed as before: by device and by expiry.
    assert_eq!(store.registrations_of("+491", Some("d1")).await.unwrap(), vec![moved.clone()]);
    assert_eq!(store.registrations_expiring_before(at(101)).await.unwrap(), vec![moved.clone()]);
    // And it keeps its node across a renewal.
    let renewed = store.update_registration_expiry("reg-1", at(200)).await.unwrap();
    assert_eq!(renewed.node.as_deref(), Some("node-b"));

    assert_not_found(store.move_registration("gone", None, "node-a").await);
}

pub async fn subscriptions(store: &dyn Store) {
    let late = subscription("sub-a", "+491", 20, None, None);
    let early = subscription("sub-b", "+491", 10, Some(100), Some(50));
    let tie = subscription("sub-c", "+491", 20, None, None);
    let other = subscription("sub-d", "+492", 5, None, None);
    for s in [&late, &early, &tie, &other] {
        store.insert_subscription(s.clone()).await.unwrap();
    }
    assert_already_exists(store.insert_subscription(subscription("sub-a", "+493", 0, None, None)).await);

    // Everything comes back as stored, the config object included.
    assert_eq!(store.subscription("sub-b").await.unwrap(), Some(early.clone()));
    assert_eq!(store.subscription("nope").await.unwrap(), None);
    // By start, then id; only the owner's.
    assert_eq!(store.subscriptions_of("+491").await.unwrap(), vec![early.clone(), late.clone(), tie.clone()]);
    assert_eq!(store.subscriptions_of("+492").await.unwrap(), vec![other.clone()]);
    assert_eq!(store.subscriptions_of("+49").await.unwrap(), vec![]);

    assert_eq!(store.remove_subscription("sub-a", vec![]).await.unwrap().map(|c| c.record), Some(late));
    assert_eq!(store.remove_subscription("sub-a", vec![]).await.unwrap(), None);
    assert_eq!(store.subscriptions_of("+491").await.unwrap(), vec![early, tie]);
}

pub async fn subscription_update(store: &dyn Store) {
    let original = subscription("sub-1", "+491", 0, Some(100), None);
    store.insert_subscription(original.clone()).await.unwrap();

    // A PUT: new credential and expiry, and the echoed config.
    let updated = store
        .update_subscription("sub-1", &mut |s| {
            s.sink_credential = Some(SinkCredential { access_token: "new".into(), expires_at: at(500) });
            s.expires_at = Some(at(1000));
            s.config_json["subscriptionExpireTime"] = json!("2030-01-01T00:16:40Z");
        })
        .await
        .unwrap();
    let expected = Subscription {
        sink_credential: Some(SinkCredential { access_token: "new".into(), expires_at: at(500) }),
        expires_at: Some(at(1000)),
        config_json: json!({
            "subscriptionDetail": {"deviceId": "device-1"},
            "initialEvent": false,
            "subscriptionExpireTime": "2030-01-01T00:16:40Z",
        }),
        ..original.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(store.subscription("sub-1").await.unwrap(), Some(expected.clone()));

    // The id is not the closure's to change.
    let same = store.update_subscription("sub-1", &mut |s| s.id = "other".into()).await.unwrap();
    assert_eq!(same, expected);
    assert_eq!(store.subscription("other").await.unwrap(), None);

    // Indexes follow an owner change.
    store.update_subscription("sub-1", &mut |s| s.owner_phone_number = "+492".into()).await.unwrap();
    assert_eq!(store.subscriptions_of("+491").await.unwrap(), vec![]);
    assert_eq!(ids(&store.subscriptions_of("+492").await.unwrap(), |s| &s.id), ["sub-1"]);

    assert_not_found(store.update_subscription("nope", &mut |_| {}).await);
}

pub async fn subscription_expiry(store: &dyn Store) {
    // Own expiry only; credential only; credential first; expiry first; a tie; never ends.
    store.insert_subscription(subscription("own", "+491", 0, Some(300), None)).await.unwrap();
    store.insert_subscription(subscription("cred", "+491", 0, None, Some(200))).await.unwrap();
    store.insert_subscription(subscription("cred-first", "+491", 0, Some(900), Some(100))).await.unwrap();
    store.insert_subscription(subscription("own-first", "+492", 0, Some(400), Some(800))).await.unwrap();
    store.insert_subscription(subscription("tie", "+492", 0, Some(500), Some(500))).await.unwrap();
    store.insert_subscription(subscription("never", "+492", 0, None, None)).await.unwrap();

    let expiring = async |t| {
        store
            .subscriptions_expiring_before(t)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                assert_eq!(Some((e.at, e.reason)), e.subscription.ends_at());
                (e.subscription.id, e.at, e.reason)
            })
            .collect::<Vec<_>>()
    };
    use SubscriptionEnd::{AccessTokenExpired as Token, Expired};
    assert_eq!(expiring(at(100)).await, vec![]);
    assert_eq!(
        expiring(at(100_000)).await,
        vec![
            ("cred-first".into(), at(100), Token),
            ("cred".into(), at(200), Token),
            ("own".into(), at(300), Expired),
            ("own-first".into(), at(400), Expired),
            ("tie".into(), at(500), Expired),
        ]
    );
    assert_eq!(expiring(at(250)).await.len(), 2);

    // A new credential moves the subscription's end to its own expiry; dropping the expiry and
    // the credential takes it out; a removal too.
    store
        .update_subscription("cred-first", &mut |s| {
            s.sink_credential = Some(SinkCredential { access_token: "renewed".into(), expires_at: at(2000) })
        })
        .await
        .unwrap();
    store
        .update_subscription("own", &mut |s| {
            s.expires_at = None;
        })
        .await
        .unwrap();
    store.remove_subscription("cred", vec![]).await.unwrap();
    assert_eq!(
        expiring(at(100_000)).await,
        vec![
            ("own-first".into(), at(400), Expired),
            ("tie".into(), at(500), Expired),
            ("cred-first".into(), at(900), Expired),
        ]
    );
}

pub async fn sessions(store: &dyn Store) {
    let a = session("ses-a", Some("call-a"), 20);
    let b = session("ses-b", None, 10);
    let c = MediaSession { direction: Direction::Incoming, ..session("ses-c", Some("call-c"), 10) };
    for s in [&a, &b, &c] {
        store.insert_session(s.clone(), vec![]).await.unwrap();
    }
    assert_already_exists(store.insert_session(session("ses-a", None, 0), vec![]).await);
    assert_eq!(store.session("ses-a").await.unwrap(), Some(a.clone()));

    assert_eq!(store.session("ses-c").await.unwrap(), Some(c.clone()));
    assert_eq!(store.session("nope").await.unwrap(), None);
    assert_eq!(store.sessions_of_call("call-a").await.unwrap(), vec![a.clone()]);
    assert_eq!(store.sessions_of_call("nope").await.unwrap(), vec![]);
    // Only those with a call, by creation time.
    assert_eq!(store.sessions_with_call().await.unwrap(), vec![c.clone(), a.clone()]);

    // An incoming call ringing two devices: two sessions of one call, by creation time.
    let fork = store.insert_session(session("ses-d", Some("call-a"), 5), vec![]).await.unwrap().record;
    assert_eq!(store.sessions_of_call("call-a").await.unwrap(), vec![fork.clone(), a.clone()]);
    assert_eq!(store.remove_session("ses-a").await.unwrap(), Some(a));
    assert_eq!(store.remove_session("ses-a").await.unwrap(), None);
    assert_eq!(store.sessions_of_call("call-a").await.unwrap(), vec![fork.clone()]);
    assert_eq!(store.sessions_with_call().await.unwrap(), vec![fork, c.clone()]);
    assert_eq!(store.remove_session("ses-d").await.unwrap().map(|s| s.id), Some("ses-d".into()));
    assert_eq!(store.sessions_of_call("call-a").await.unwrap(), vec![]);
    assert_eq!(store.sessions_with_call().await.unwrap(), vec![c]);
}

/// A change of a session that emits no event, as [`Store::update_session`] takes it.
fn quietly(mut change: impl FnMut(&mut MediaSession) + Send) -> impl FnMut(&mut MediaSession) -> Vec<NewEvent> + Send {
    move |s| {
        change(s);
        Vec::new()
    }
}

pub async fn session_update(store: &dyn Store) {
    let original = session("ses-1", Some("call-1"), 0);
    store.insert_session(original.clone(), vec![]).await.unwrap();
    store.insert_session(session("ses-2", Some("call-2"), 0), vec![]).await.unwrap();

    let updated = store
        .update_session(
            "ses-1",
            &mut quietly(|s| {
                s.status = SessionStatus::Connected;
                s.answer_sdp = Some("v=0\r\n".into());
                s.sequence += 1;
            }),
        )
        .await
        .unwrap()
        .record;
    let expected = MediaSession {
        status: SessionStatus::Connected,
        answer_sdp: Some("v=0\r\n".into()),
        sequence: 1,
        revision: 2,
        ..original.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(store.session("ses-1").await.unwrap(), Some(expected.clone()));
    assert_eq!(store.sessions_of_call("call-1").await.unwrap(), vec![expected.clone()]);
    // A change that changes nothing writes nothing.
    assert_eq!(store.update_session("ses-1", &mut quietly(|_| {})).await.unwrap().record.revision, 2);

    // A new Call-ID re-indexes; clearing it forgets the call but keeps the session.
    store.update_session("ses-1", &mut quietly(|s| s.sip_call_id = Some("call-3".into()))).await.unwrap();
    assert_eq!(store.sessions_of_call("call-1").await.unwrap(), vec![]);
    assert_eq!(ids(&store.sessions_of_call("call-3").await.unwrap(), |s| &s.id), ["ses-1"]);
    assert_eq!(ids(&store.sessions_of_call("call-2").await.unwrap(), |s| &s.id), ["ses-2"]);
    let ended = store
        .update_session(
            "ses-1",
            &mut quietly(|s| {
                s.sip_call_id = None;
                s.status = SessionStatus::Terminated;
                s.local_hangup = Some("BYE".into());
            }),
        )
        .await
        .unwrap()
        .record;
    assert_eq!(store.sessions_of_call("call-3").await.unwrap(), vec![]);
    assert_eq!(store.session("ses-1").await.unwrap(), Some(ended));
    assert_eq!(ids(&store.sessions_with_call().await.unwrap(), |s| &s.id), ["ses-2"]);

    // The id and the revision are the store's; an unknown session is NotFound and the closure
    // is not called.
    store.update_session("ses-1", &mut quietly(|s| (s.id, s.revision) = ("ses-9".into(), 99))).await.unwrap();
    assert_eq!(store.session("ses-9").await.unwrap(), None);
    assert_eq!(store.session("ses-1").await.unwrap().unwrap().revision, 4, "nothing changed, nothing written");
    let mut called = false;
    assert_not_found(store.update_session("nope", &mut quietly(|_| called = true)).await);
    assert!(!called);
}

/// Compare-and-set: a write over a revision that is not the stored one changes nothing.
pub async fn session_compare_and_set(store: &dyn Store) {
    let stored = store.insert_session(session("ses-1", Some("call-1"), 0), vec![]).await.unwrap().record;
    assert_eq!(stored.revision, 1);
    let first =
        store.replace_session(MediaSession { status: SessionStatus::Ringing, ..stored.clone() }, vec![]).await.unwrap();
    assert_eq!(first.record.revision, 2);
    let stale = store
        .replace_session(MediaSession { status: SessionStatus::Declined, ..stored.clone() }, vec![event("x", 0)])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "expected Conflict, got {stale:?}");
    assert_eq!(store.session("ses-1").await.unwrap(), Some(first.record));
    assert_eq!(store.pending_events(10).await.unwrap(), vec![], "a refused write queues no event");
    assert_not_found(store.replace_session(session("nope", None, 0), vec![]).await);
}

/// Concurrent read-modify-writes lose no update. The writers interleave at every wait, as the
/// gateway's tasks do (a backend that does not wait on anything serialises them).
pub async fn session_update_is_atomic(store: &dyn Store) {
    const WRITERS: u32 = 4;
    const UPDATES: u32 = 25;
    store.insert_session(session("ses-1", Some("call-1"), 0), vec![]).await.unwrap();
    let writer = || async {
        for _ in 0..UPDATES {
            store.update_session("ses-1", &mut quietly(|s| s.sequence += 1)).await.unwrap();
        }
    };
    futures_util::future::join_all((0..WRITERS).map(|_| writer())).await;
    assert_eq!(store.session("ses-1").await.unwrap().unwrap().sequence, WRITERS * UPDATES);
}

/// Events given with a write are queued with it, in order, and only if the write is made.
pub async fn events_commit_with_the_write(store: &dyn Store) {
    store.insert_registration(registration("reg-1", "+491", "device-1", 100)).await.unwrap();
    store.insert_subscription(subscription("sub-1", "+491", 0, None, None)).await.unwrap();
    let created = store.insert_session(session("ses-1", Some("call-1"), 0), vec![event("invited", 0)]).await.unwrap();
    let removed = store.remove_registration("reg-1", vec![event("reg-ends", 0)]).await.unwrap().unwrap();
    let updated = store
        .update_session("ses-1", &mut |s| {
            s.status = SessionStatus::Connected;
            vec![event("status-1", 1), event("status-2", 2)]
        })
        .await
        .unwrap();
    let ended = store.remove_subscription("sub-1", vec![event("sub-ends", 0)]).await.unwrap().unwrap();
    assert_eq!(updated.record.status, SessionStatus::Connected);
    let queued: Vec<_> = [created.events, removed.events, updated.events, ended.events].concat();
    assert_eq!(ids(&queued, |e| &e.payload), ["invited", "reg-ends", "status-1", "status-2", "sub-ends"]);
    assert_eq!(store.pending_events(10).await.unwrap(), queued, "queued as returned, in id order");

    // Writes that are not made queue nothing.
    assert_eq!(store.remove_registration("reg-1", vec![event("twice", 0)]).await.unwrap(), None);
    assert_eq!(store.remove_subscription("sub-1", vec![event("twice", 0)]).await.unwrap(), None);
    assert_already_exists(store.insert_session(session("ses-1", None, 0), vec![event("twice", 0)]).await);
    assert_not_found(store.update_session("nope", &mut |_| vec![event("twice", 0)]).await);
    assert_eq!(store.pending_events(10).await.unwrap(), queued);
}

pub async fn outbox(store: &dyn Store) {
    assert_eq!(store.pending_notifications(10).await.unwrap(), vec![]);
    let first = store.enqueue_notification(notification("sub-1", "one", 0)).await.unwrap();
    let second = store.enqueue_notification(notification("sub-2", "two", 0)).await.unwrap();
    let third = store.enqueue_notification(notification("sub-1", "three", 5)).await.unwrap();
    assert!(first < second && second < third, "ids increase: {first} {second} {third}");

    // Enqueue order, whatever not_before, as enqueued with attempt 0.
    let pending = store.pending_notifications(10).await.unwrap();
    assert_eq!(ids(&pending, |n| &n.payload), ["one", "two", "three"]);
    let n = &pending[0];
    let new = notification("sub-1", "one", 0);
    assert_eq!(
        (n.id, &n.subscription_id, &n.sink, &n.headers, n.attempt, n.not_before, n.first_due),
        (first, &new.subscription_id, &new.sink, &new.headers, 0, new.not_before, new.not_before)
    );
    assert_eq!(ids(&store.pending_notifications(2).await.unwrap(), |n| &n.payload), ["one", "two"]);
    assert_eq!(store.pending_notifications(0).await.unwrap(), vec![]);

    // A failed attempt is rescheduled in place: the order does not change.
    store.reschedule_notification(first, 1, at(60)).await.unwrap();
    let pending = store.pending_notifications(10).await.unwrap();
    assert_eq!(ids(&pending, |n| &n.payload), ["one", "two", "three"]);
    assert_eq!((pending[0].attempt, pending[0].not_before, pending[0].first_due), (1, at(60), at(0)));
    assert_eq!((pending[1].attempt, pending[1].not_before), (0, at(0)));
    assert_not_found(store.reschedule_notification(third + 100, 1, at(1)).await);

    let removed = store.remove_notification(first).await.unwrap().unwrap();
    assert_eq!((removed.id, removed.attempt, removed.payload.as_str()), (first, 1, "one"));
    assert_eq!(store.remove_notification(first).await.unwrap(), None);
    assert_eq!(ids(&store.pending_notifications(10).await.unwrap(), |n| &n.payload), ["two", "three"]);

    // Ids are never reused, not even the newest one once it is gone.
    store.remove_notification(third).await.unwrap().unwrap();
    let fourth = store.enqueue_notification(notification("sub-3", "four", 0)).await.unwrap();
    assert!(fourth > third, "id {fourth} after {third}");
    assert_eq!(ids(&store.pending_notifications(10).await.unwrap(), |n| &n.payload), ["two", "four"]);
}

/// Events wait for routing apart from notifications, and routing swaps one for the other at once.
pub async fn event_outbox(store: &dyn Store) {
    assert_eq!(store.pending_events(10).await.unwrap(), vec![]);
    let notification = store.enqueue_notification(notification("sub-1", "n", 0)).await.unwrap();
    let first = store.enqueue_event(event("e1", 0)).await.unwrap();
    let second = store.enqueue_event(event("e2", 5)).await.unwrap();
    assert!(notification < first && first < second, "one id sequence: {notification} {first} {second}");
    // Events are not notifications, and the other way round.
    assert_eq!(ids(&store.pending_notifications(10).await.unwrap(), |n| &n.payload), ["n"]);
    let pending = store.pending_events(10).await.unwrap();
    assert_eq!(ids(&pending, |e| &e.payload), ["e1", "e2"]);
    assert_eq!(
        (pending[0].id, pending[0].attempt, pending[0].not_before, pending[0].first_due),
        (first, 0, at(0), at(0))
    );
    assert_eq!(store.pending_events(1).await.unwrap().len(), 1);

    store.reschedule_event(first, 2, at(30)).await.unwrap();
    let e = &store.pending_events(10).await.unwrap()[0];
    assert_eq!((e.id, e.attempt, e.not_before, e.first_due), (first, 2, at(30), at(0)));
    assert_not_found(store.reschedule_event(notification, 1, at(1)).await);

    // Routing replaces the event by its notifications, in the order given.
    let routed =
        store.route_event(first, vec![notification_to("sub-2", "r1"), notification_to("sub-3", "r2")]).await.unwrap();
    assert_eq!(routed.len(), 2);
    assert!(routed[0] > second && routed[1] > routed[0], "{routed:?}");
    assert_eq!(ids(&store.pending_events(10).await.unwrap(), |e| &e.payload), ["e2"]);
    assert_eq!(ids(&store.pending_notifications(10).await.unwrap(), |n| &n.payload), ["n", "r1", "r2"]);
    // An event routed already is not routed twice.
    assert_not_found(store.route_event(first, vec![notification_to("sub-2", "again")]).await);
    assert_eq!(store.pending_notifications(10).await.unwrap().len(), 3);
    // An event that goes nowhere is simply gone.
    assert_eq!(store.route_event(second, vec![]).await.unwrap(), Vec::<u64>::new());
    assert_eq!(store.pending_events(10).await.unwrap(), vec![]);
}

fn notification_to(subscription_id: &str, payload: &str) -> NewNotification {
    notification(subscription_id, payload, 0)
}

/// Entries that gave up wait in the dead letters, with their last error, until replayed or purged.
pub async fn dead_letters(store: &dyn Store) {
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![]);
    let kept = store.enqueue_notification(notification("sub-1", "kept", 0)).await.unwrap();
    let failed = store.enqueue_notification(notification("sub-1", "failed", 0)).await.unwrap();
    let unrouted = store.enqueue_event(event("unrouted", 0)).await.unwrap();
    store.reschedule_notification(failed, 7, at(500)).await.unwrap();

    let dead = store.dead_letter(failed, "sink answered 503", at(900)).await.unwrap();
    assert_eq!((dead.id(), dead.last_error.as_str(), dead.dead_at), (failed, "sink answered 503", at(900)));
    let Undelivered::Notification(n) = &dead.entry else { panic!("{dead:?}") };
    assert_eq!(
        (n.payload.as_str(), n.attempt, n.not_before, &n.headers),
        ("failed", 7, at(500), &notification("s", "", 0).headers)
    );
    store.dead_letter(unrouted, "routing plugin trapped", at(901)).await.unwrap();
    // Out of the outbox, into the dead letters, in id order.
    assert_eq!(ids(&store.pending_notifications(10).await.unwrap(), |n| &n.payload), ["kept"]);
    assert_eq!(store.pending_events(10).await.unwrap(), vec![]);
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.iter().map(|d| d.id()).collect::<Vec<_>>(), [failed, unrouted]);
    assert_eq!(letters[0], dead);
    assert!(matches!(&letters[1].entry, Undelivered::Event(e) if e.payload == "unrouted"), "{letters:?}");
    assert_eq!(store.dead_letters(1).await.unwrap().len(), 1);
    assert_not_found(store.dead_letter(failed, "twice", at(902)).await);
    assert_not_found(store.dead_letter(kept + 1000, "nothing", at(902)).await);

    // A replay puts the entry back as new: a new id, no attempts, due when asked.
    let replayed = store.replay_dead_letter(failed, at(1000)).await.unwrap().unwrap();
    let Undelivered::Notification(again) = &replayed else { panic!("{replayed:?}") };
    assert!(again.id > unrouted, "new id {} after {unrouted}", again.id);
    assert_eq!(
        (again.attempt, again.not_before, again.first_due, again.payload.as_str()),
        (0, at(1000), at(1000), "failed")
    );
    assert_eq!((&again.subscription_id, &again.sink, &again.headers), (&n.subscription_id, &n.sink, &n.headers));
    let pending = store.pending_notifications(10).await.unwrap();
    assert_eq!((ids(&pending, |n| &n.payload), pending.last()), (vec!["kept", "failed"], Some(again)));
    assert_eq!(store.replay_dead_letter(failed, at(1000)).await.unwrap(), None);
    let Some(Undelivered::Event(event_again)) = store.replay_dead_letter(unrouted, at(1001)).await.unwrap() else {
        panic!("the event comes back as an event")
    };
    assert_eq!(ids(&store.pending_events(10).await.unwrap(), |e| &e.payload), ["unrouted"]);
    assert_eq!((event_again.attempt, event_again.first_due), (0, at(1001)));
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![]);

    // Purged for good.
    store.dead_letter(kept, "sink answered 404", at(1100)).await.unwrap();
    assert_eq!(store.remove_dead_letter(kept).await.unwrap().map(|d| d.last_error), Some("sink answered 404".into()));
    assert_eq!(store.remove_dead_letter(kept).await.unwrap(), None);
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![]);
    assert_eq!(store.replay_dead_letter(kept, at(0)).await.unwrap(), None);
}

/// The ids handed out by [`fill`], for [`check_filled`].
#[derive(Debug, Clone, PartialEq)]
pub struct Filled {
    pub notification_ids: Vec<u64>,
}

/// Writes one of everything (including updates and removals), for a durability check.
pub async fn fill(store: &dyn Store) -> Filled {
    store.insert_registration(registration("reg-1", "+491", "device-1", 100)).await.unwrap();
    store.insert_registration(registration("reg-2", "+491", "device-2", 200)).await.unwrap();
    store.insert_registration(registration("reg-gone", "+491", "device-3", 300)).await.unwrap();
    store.update_registration_expiry("reg-2", at(250)).await.unwrap();
    store.remove_registration("reg-gone", vec![]).await.unwrap();

    store.insert_subscription(subscription("sub-1", "+491", 0, Some(1000), Some(500))).await.unwrap();
    store.insert_subscription(subscription("sub-gone", "+491", 0, None, None)).await.unwrap();
    store.remove_subscription("sub-gone", vec![]).await.unwrap();

    store.insert_session(session("ses-1", Some("call-1"), 0), vec![]).await.unwrap();
    store.insert_session(session("ses-2", Some("call-2"), 1), vec![]).await.unwrap();
    store
        .update_session(
            "ses-2",
            &mut quietly(|s| {
                s.status = SessionStatus::Terminated;
                s.sip_call_id = None;
            }),
        )
        .await
        .unwrap();

    let one = store.enqueue_notification(notification("sub-1", "one", 0)).await.unwrap();
    let two = store.enqueue_notification(notification("sub-1", "two", 0)).await.unwrap();
    let gone = store.enqueue_notification(notification("sub-1", "gone", 0)).await.unwrap();
    store.reschedule_notification(one, 3, at(90)).await.unwrap();
    store.remove_notification(gone).await.unwrap();
    let event = store.enqueue_event(event("unrouted", 0)).await.unwrap();
    store.reschedule_event(event, 2, at(40)).await.unwrap();
    let dead = store.enqueue_notification(notification("sub-1", "dead", 0)).await.unwrap();
    store.dead_letter(dead, "sink answered 410", at(95)).await.unwrap();
    Filled { notification_ids: vec![one, two, gone, event, dead] }
}

/// Checks that `store` holds exactly what [`fill`] wrote, indexes included, and that it still
/// takes writes (ids carrying on after those handed out).
pub async fn check_filled(store: &dyn Store, filled: &Filled) {
    let reg2 = Registration { expires_at: at(250), ..registration("reg-2", "+491", "device-2", 0) };
    assert_eq!(
        store.registrations_of("+491", None).await.unwrap(),
        vec![registration("reg-1", "+491", "device-1", 100), reg2]
    );
    assert_eq!(store.registration("reg-gone").await.unwrap(), None);
    assert_eq!(ids(&store.registrations_expiring_before(at(1000)).await.unwrap(), |r| &r.id), ["reg-1", "reg-2"]);
    assert_already_exists(store.insert_registration(registration("reg-9", "+491", "device-1", 100)).await);

    let sub1 = subscription("sub-1", "+491", 0, Some(1000), Some(500));
    assert_eq!(store.subscriptions_of("+491").await.unwrap(), vec![sub1.clone()]);
    let expiring = store.subscriptions_expiring_before(at(1000)).await.unwrap();
    assert_eq!(expiring.len(), 1);
    assert_eq!((&expiring[0].subscription, expiring[0].reason), (&sub1, SubscriptionEnd::AccessTokenExpired));

    assert_eq!(store.sessions_of_call("call-1").await.unwrap(), vec![session("ses-1", Some("call-1"), 0)]);
    assert_eq!(store.sessions_of_call("call-2").await.unwrap(), vec![]);
    assert_eq!(store.session("ses-2").await.unwrap().unwrap().status, SessionStatus::Terminated);
    assert_eq!(ids(&store.sessions_with_call().await.unwrap(), |s| &s.id), ["ses-1"]);

    let pending = store.pending_notifications(10).await.unwrap();
    assert_eq!(ids(&pending, |n| &n.payload), ["one", "two"]);
    assert_eq!(pending.iter().map(|n| n.id).collect::<Vec<_>>(), filled.notification_ids[..2]);
    assert_eq!((pending[0].attempt, pending[0].not_before, pending[0].first_due), (3, at(90), at(0)));
    let events = store.pending_events(10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| (e.id, e.payload.as_str(), e.attempt, e.not_before)).collect::<Vec<_>>(),
        [(filled.notification_ids[3], "unrouted", 2, at(40))]
    );
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| (d.id(), d.last_error.as_str(), d.dead_at)).collect::<Vec<_>>(),
        [(filled.notification_ids[4], "sink answered 410", at(95))]
    );

    let next = store.enqueue_notification(notification("sub-1", "next", 0)).await.unwrap();
    assert!(filled.notification_ids.iter().all(|&id| next > id), "id {next} reused or out of order");
    store.update_session("ses-1", &mut quietly(|s| s.sequence = 7)).await.unwrap();
    assert_eq!(store.session("ses-1").await.unwrap().unwrap().sequence, 7);
}

/// Durability across a clean reopen: `open` opens the same storage each time.
pub async fn persists(open: &mut dyn FnMut() -> Box<dyn Store>) {
    let filled = {
        let store = open();
        fill(&*store).await
    };
    let store = open();
    check_filled(&*store, &filled).await;
}
