//! The Notification Service: builds CloudEvents, asks the routing plugin where they go, and
//! hands the deliveries to [`crate::delivery`].
//!
//! An event is written to the store's outbox before the routing plugin sees it, and replaced by
//! its deliveries in one step once routed; a delivery stays there until it is delivered or moves
//! to the dead letters. So a routing failure is retried like a delivery failure, on the same
//! schedule, and a restarted gateway routes and delivers what was pending. An event whose
//! routing failed and is retried may reach a subscription after later events.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use camara_plugin_host::routing;
use camara_store::{NewEvent, NewNotification, PendingEvent, StoreError, Undelivered};
use cloudevents::{EventBuilder, EventBuilderV10};
use serde::{Deserialize, Serialize};

use crate::delivery::{Deliveries, Entry, sleep_until};
use crate::plugins::LivePlugins;
use crate::schedule::{Failure, RetrySchedule};
use crate::sink_policy::SinkPolicy;
use crate::store::Store;
use crate::store::{Registration, Subscription};

pub const SESSION_STATUS: &str = "org.camaraproject.webrtc-events.v0.session-status";
pub const SESSION_INVITATION: &str = "org.camaraproject.webrtc-events.v0.session-invitation";
pub const REGISTRATION_ENDS: &str = "org.camaraproject.webrtc-events.v0.registration-ends";
pub const SUBSCRIPTION_ENDED: &str = "org.camaraproject.webrtc-events.v0.subscription-ended";
/// The types a subscription may ask for (`subscription-ended` comes unasked).
pub const SUBSCRIBABLE_TYPES: [&str; 3] = [SESSION_STATUS, SESSION_INVITATION, REGISTRATION_ENDS];

/// Something that happened, before it is shaped for any subscription.
#[derive(Debug, Clone)]
pub struct GatewayEvent {
    pub event_type: &'static str,
    pub data: serde_json::Value,
    pub media_session_id: Option<String>,
    pub registration_id: Option<String>,
    pub device_id: Option<String>,
    pub phone_number: Option<String>,
}

impl GatewayEvent {
    /// `registration-ends` for `registration`, with a CAMARA `terminationReason`.
    pub fn registration_ended(registration: &Registration, reason: &str, description: &str) -> Self {
        GatewayEvent {
            event_type: REGISTRATION_ENDS,
            data: serde_json::json!({
                "registrationId": registration.id,
                "terminationReason": reason,
                "terminationDescription": description,
            }),
            media_session_id: None,
            registration_id: Some(registration.id.clone()),
            device_id: Some(registration.device_id.clone()),
            phone_number: Some(registration.phone_number.clone()),
        }
    }

    /// `subscription-ended` for `subscription`, with a CAMARA `TerminationReason`.
    pub fn subscription_ended(subscription: &Subscription, reason: &str, description: &str) -> Self {
        GatewayEvent {
            event_type: SUBSCRIPTION_ENDED,
            data: serde_json::json!({
                "subscriptionId": subscription.id,
                "terminationReason": reason,
                "terminationDescription": description,
            }),
            media_session_id: None,
            registration_id: None,
            device_id: Some(subscription.device_id.clone()),
            phone_number: Some(subscription.owner_phone_number.clone()),
        }
    }
}

/// An event as it waits in the outbox for routing: what the routing plugin is given.
#[derive(Serialize, Deserialize)]
struct Unrouted {
    event: routing::Event,
    /// The subscriptions it may go to, as they were when it happened (a `subscription-ended`
    /// outlives its subscription).
    subscriptions: Vec<Subscription>,
}

struct Inner {
    plugins: Arc<LivePlugins>,
    source: String,
    deliveries: Arc<Deliveries>,
    unreachable: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
}

#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// `source` is the CloudEvents `source` of every event (the events API root).
    pub fn new(
        plugins: Arc<LivePlugins>,
        store: Store,
        source: String,
        timeout: Duration,
        policy: SinkPolicy,
        schedule: RetrySchedule,
    ) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let deliveries = Arc::new(Deliveries::new(store, plugins.clone(), timeout, policy, schedule, tx));
        let unreachable = std::sync::Mutex::new(Some(rx));
        Notifier { inner: Arc::new(Inner { plugins, source, deliveries, unreachable }) }
    }

    /// Trusts sinks under `prefix` (the in-process relay's `.../sink/`), before any event is sent.
    pub fn with_own_relay(mut self, prefix: String) -> Self {
        if let Some(deliveries) = Arc::get_mut(&mut self.inner).and_then(|i| Arc::get_mut(&mut i.deliveries)) {
            deliveries.set_own_relay(prefix);
        }
        self
    }

    /// The ids of subscriptions whose sink failed a notification for the whole retry horizon;
    /// `None` after the first call (one consumer: the gateway ends them).
    pub fn unreachable_subscriptions(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.inner.unreachable.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether `sink` is a channel of the in-process relay: its prefix and a channel id only.
    pub fn is_own_relay_sink(&self, sink: &str) -> bool {
        self.inner.deliveries.is_own_relay_sink(sink)
    }

    /// `event` for `subscriptions` as the outbox keeps it until it is routed: to be committed
    /// with the state change that caused it (the store's `events` arguments), then handed to
    /// [`Notifier::dispatch`]. `None` (logged) if it cannot be encoded.
    pub fn event(&self, event: GatewayEvent, subscriptions: &[Subscription]) -> Option<NewEvent> {
        let id = uuid::Uuid::new_v4().to_string();
        let time = chrono::Utc::now();
        let cloudevent = match EventBuilderV10::new()
            .id(id.clone())
            .source(self.inner.source.as_str())
            .ty(event.event_type)
            .time(time)
            .data("application/json", event.data.clone())
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot build a {} CloudEvent: {e}", event.event_type);
                return None;
            }
        };
        let unrouted = Unrouted {
            event: routing::Event {
                event_type: event.event_type.to_string(),
                cloudevent_json: serde_json::to_string(&cloudevent).unwrap_or_default(),
                id,
                time: time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                status: event.data.get("status").and_then(|s| serde::Deserialize::deserialize(s).ok()),
                media_session_id: event.media_session_id,
                registration_id: event.registration_id,
                device_id: event.device_id,
                phone_number: event.phone_number,
            },
            subscriptions: subscriptions.to_vec(),
        };
        match serde_json::to_string(&unrouted) {
            Ok(payload) => Some(NewEvent { payload, not_before: chrono::Utc::now() }),
            Err(e) => {
                tracing::error!("cannot encode a {} event: {e}", event.event_type);
                None
            }
        }
    }

    /// Queues and routes an event that goes with no state change of its own.
    pub async fn publish(&self, event: GatewayEvent, subscriptions: &[Subscription]) {
        let Some(new) = self.event(event, subscriptions) else { return };
        match self.inner.deliveries.store.backend().enqueue_event(new.clone()).await {
            Ok(id) => self.dispatch(vec![new.pending(id)]).await,
            Err(e) => tracing::error!("event not queued: {e}"),
        }
    }

    /// Routes events the store has committed, in order (those of one session keep theirs).
    pub async fn dispatch(&self, events: Vec<PendingEvent>) {
        for pending in events {
            self.inner.clone().route(pending).await;
        }
    }

    /// Routes and delivers what a previous run left in the outbox, in its original order.
    pub async fn resume_pending(&self) {
        let backend = self.inner.deliveries.store.backend();
        match backend.pending_notifications(usize::MAX).await {
            Ok(pending) => {
                if !pending.is_empty() {
                    tracing::info!(count = pending.len(), "delivering events left pending by the previous run");
                }
                for n in pending {
                    self.inner.deliveries.enqueue(n);
                }
            }
            Err(e) => tracing::error!("pending events not read: {e}"),
        }
        match backend.pending_events(usize::MAX).await {
            Ok(pending) => {
                if !pending.is_empty() {
                    tracing::info!(count = pending.len(), "routing events left unrouted by the previous run");
                }
                for e in pending {
                    tokio::spawn(self.inner.clone().route(e));
                }
            }
            Err(e) => tracing::error!("unrouted events not read: {e}"),
        }
    }

    /// Puts dead letter `id` back in the outbox, due now; its new outbox id, `None` if there is
    /// no such dead letter.
    pub async fn replay(&self, id: u64) -> Result<Option<u64>, StoreError> {
        let replayed = self.inner.deliveries.store.backend().replay_dead_letter(id, chrono::Utc::now()).await?;
        Ok(replayed.map(|entry| {
            let new_id = entry.id();
            self.take(entry);
            new_id
        }))
    }

    /// Routes or delivers an entry put in this node's outbox from elsewhere (a replayed dead
    /// letter, a dead node's outbox).
    pub fn take(&self, entry: Undelivered) {
        match entry {
            Undelivered::Notification(n) => self.inner.deliveries.enqueue(n),
            Undelivered::Event(e) => {
                tokio::spawn(self.inner.clone().route(e));
            }
        }
    }

    /// Ends the queue of a subscription once what it holds is delivered.
    pub fn close(&self, subscription_id: &str) {
        self.inner.deliveries.close(subscription_id);
    }
}

impl Inner {
    /// Asks the routing plugin where `pending` goes, once it is due, and queues its deliveries;
    /// a failed routing is retried on the delivery schedule. Boxed: a retry routes again.
    fn route(self: Arc<Self>, pending: PendingEvent) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            sleep_until(pending.not_before).await;
            let unrouted: Unrouted = match serde_json::from_str(&pending.payload) {
                Ok(u) => u,
                Err(e) => {
                    let failure = Failure::Refused(format!("unreadable outbox event: {e}"));
                    self.deliveries
                        .after_failure(Entry::Event, pending.id, pending.attempt + 1, pending.first_due, &failure)
                        .await;
                    return;
                }
            };
            let candidates: Vec<routing::Subscription> = unrouted
                .subscriptions
                .iter()
                .map(|s| routing::Subscription {
                    id: s.id.clone(),
                    sink: s.sink.clone(),
                    types: s.types.clone(),
                    device_id: Some(s.device_id.clone()),
                    owner_phone_number: Some(s.owner_phone_number.clone()),
                    has_sink_credential: s.sink_credential.is_some(),
                })
                .collect();
            match self.plugins.get().routing.route(&unrouted.event, &candidates).await {
                Ok(deliveries) => {
                    self.queue_routed(pending.id, &unrouted.event, &unrouted.subscriptions, deliveries).await
                }
                Err(e) => {
                    let failure = Failure::Routing(e.public_message());
                    let attempts = pending.attempt + 1;
                    tracing::warn!(event = pending.id, attempts, "{failure}");
                    if let Some(at) = self
                        .deliveries
                        .after_failure(Entry::Event, pending.id, attempts, pending.first_due, &failure)
                        .await
                    {
                        let retry = PendingEvent { attempt: attempts, not_before: at, ..pending };
                        tokio::spawn(self.clone().route(retry));
                    }
                }
            }
        })
    }

    /// Replaces event `id` in the outbox by what routing made of it, and queues that.
    async fn queue_routed(
        &self,
        id: u64,
        event: &routing::Event,
        subscriptions: &[Subscription],
        deliveries: Vec<routing::Delivery>,
    ) {
        let mut notifications = Vec::new();
        for delivery in deliveries {
            let Some(subscription) = subscriptions.iter().find(|s| s.id == delivery.subscription_id) else {
                tracing::warn!(
                    subscription = delivery.subscription_id,
                    "routing named an unknown subscription; dropped"
                );
                continue;
            };
            let payload = delivery.body(event);
            if let Err(e) = serde_json::from_str::<cloudevents::Event>(&payload)
                && delivery.content_type == "application/cloudevents+json"
            {
                tracing::warn!(subscription = subscription.id, "routing produced an invalid CloudEvent ({e}); dropped");
                continue;
            }
            let mut headers = vec![
                ("content-type".to_string(), delivery.content_type.clone()),
                ("x-correlator".to_string(), uuid::Uuid::new_v4().to_string()),
            ];
            // The credential goes only where the subscriber said it may go.
            if let Some(c) = subscription.sink_credential.as_ref().filter(|_| delivery.sink == subscription.sink) {
                headers.push(("authorization".into(), format!("Bearer {}", c.access_token)));
            }
            // The host owns these; a plugin adds headers, it does not replace credentials.
            let host_owned = |name: &str| {
                ["authorization", "content-type", "x-correlator"].contains(&name.to_ascii_lowercase().as_str())
            };
            headers.extend(
                delivery.headers.iter().filter(|p| !host_owned(&p.name)).map(|p| (p.name.clone(), p.value.clone())),
            );
            notifications.push(NewNotification {
                subscription_id: subscription.id.clone(),
                sink: delivery.sink,
                headers,
                payload,
                not_before: chrono::Utc::now(),
            });
        }
        match self.deliveries.store.backend().route_event(id, notifications.clone()).await {
            Ok(ids) => {
                for (id, n) in ids.into_iter().zip(notifications) {
                    self.deliveries.enqueue(n.pending(id));
                }
            }
            Err(StoreError::NotFound(_)) => tracing::debug!(event = id, "routed already"),
            // The event stays in the outbox and is routed again on the next start.
            Err(e) => tracing::error!(event = id, "routed event not queued: {e}"),
        }
    }
}
