//! The Notification Service: builds CloudEvents, asks the routing plugin where they go, and
//! POSTs them, one queue per subscription so that a subscription sees its events in order.
//! Every delivery is written to the store's outbox before it is attempted and removed once it is
//! delivered or given up, so a restarted gateway delivers what was pending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camara_plugin_host::routing::{self, DeliveryFailure, FailureKind, RetryDecision};
use cloudevents::{EventBuilder, EventBuilderV10};
use tokio::sync::mpsc;

use crate::http_client::{HttpClient, RequestError};
use crate::plugins::Plugins;
use crate::sink_policy::SinkPolicy;
use crate::store::Store;
use crate::store::Subscription;
use camara_store::NewNotification;

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

/// One outbox entry on its way.
struct Job {
    id: u64,
    subscription_id: String,
    sink: String,
    /// Every header, `authorization` included when the delivery goes to the subscription's own
    /// sink.
    headers: Vec<(String, String)>,
    payload: String,
    attempt: u32,
    not_before: chrono::DateTime<chrono::Utc>,
}

/// Longer than the relay's wait for a device to reconnect plus its wait for the acknowledgement.
const OWN_RELAY_TIMEOUT: Duration = Duration::from_secs(20);

struct Inner {
    plugins: Arc<Plugins>,
    store: Store,
    client: HttpClient,
    source: String,
    timeout: Duration,
    /// The in-process Notification Relay's sinks: our own server, reached without the sink
    /// policy, with time for the relay to wait for a device to reconnect and acknowledge.
    own_relay: Option<(String, HttpClient)>,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>,
}

#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// `source` is the CloudEvents `source` of every event (the events API root).
    pub fn new(plugins: Arc<Plugins>, store: Store, source: String, timeout: Duration, policy: SinkPolicy) -> Self {
        Notifier {
            inner: Arc::new(Inner {
                plugins,
                store,
                client: HttpClient::new(policy),
                source,
                timeout,
                own_relay: None,
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Trusts sinks under `prefix` (the in-process relay's `.../sink/`), before any event is sent.
    pub fn with_own_relay(mut self, prefix: String) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.own_relay = Some((prefix, HttpClient::new(SinkPolicy::ANY)));
        }
        self
    }

    /// Whether `sink` is a channel of the in-process relay: its prefix and a channel id only.
    pub fn is_own_relay_sink(&self, sink: &str) -> bool {
        Notifier::own_relay_channel(&self.inner.own_relay, sink)
    }

    fn own_relay_channel(own_relay: &Option<(String, HttpClient)>, sink: &str) -> bool {
        own_relay.as_ref().is_some_and(|(prefix, _)| {
            sink.strip_prefix(prefix.as_str())
                .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        })
    }

    /// Routes `event` over `subscriptions` and queues what the routing plugin decides.
    pub async fn publish(&self, event: GatewayEvent, subscriptions: &[Subscription]) {
        let cloudevent = match EventBuilderV10::new()
            .id(uuid::Uuid::new_v4().to_string())
            .source(self.inner.source.as_str())
            .ty(event.event_type)
            .time(chrono::Utc::now())
            .data("application/json", event.data.clone())
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot build a {} CloudEvent: {e}", event.event_type);
                return;
            }
        };
        let routed = routing::Event {
            event_type: event.event_type.to_string(),
            cloudevent_json: serde_json::to_string(&cloudevent).unwrap_or_default(),
            media_session_id: event.media_session_id,
            registration_id: event.registration_id,
            device_id: event.device_id,
            phone_number: event.phone_number,
        };
        let candidates: Vec<routing::Subscription> = subscriptions
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
        let deliveries = match self.inner.plugins.routing.route(&routed, &candidates).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("event {} not delivered: {e}", routed.event_type);
                return;
            }
        };
        for delivery in deliveries {
            let Some(subscription) = subscriptions.iter().find(|s| s.id == delivery.subscription_id) else {
                tracing::warn!(
                    subscription = delivery.subscription_id,
                    "routing named an unknown subscription; dropped"
                );
                continue;
            };
            if let Err(e) = serde_json::from_str::<cloudevents::Event>(&delivery.payload)
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
            let entry = NewNotification {
                subscription_id: subscription.id.clone(),
                sink: delivery.sink,
                headers,
                payload: delivery.payload,
                not_before: chrono::Utc::now(),
            };
            match self.inner.store.backend().enqueue_notification(entry.clone()) {
                Ok(id) => self.enqueue(Job {
                    id,
                    subscription_id: entry.subscription_id,
                    sink: entry.sink,
                    headers: entry.headers,
                    payload: entry.payload,
                    attempt: 0,
                    not_before: entry.not_before,
                }),
                Err(e) => tracing::error!(subscription = subscription.id, "event not queued: {e}"),
            }
        }
    }

    /// Queues what a previous run left undelivered, in its original order.
    pub fn resume_pending(&self) {
        match self.inner.store.backend().pending_notifications(usize::MAX) {
            Ok(pending) => {
                if !pending.is_empty() {
                    tracing::info!(count = pending.len(), "delivering events left pending by the previous run");
                }
                for p in pending {
                    self.enqueue(Job {
                        id: p.id,
                        subscription_id: p.subscription_id,
                        sink: p.sink,
                        headers: p.headers,
                        payload: p.payload,
                        attempt: p.attempt,
                        not_before: p.not_before,
                    });
                }
            }
            Err(e) => tracing::error!("pending events not read: {e}"),
        }
    }

    fn enqueue(&self, job: Job) {
        let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        let sender = queues.entry(job.subscription_id.clone()).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let inner = self.inner.clone();
            tokio::spawn(async move {
                while let Some(job) = rx.recv().await {
                    inner.deliver(job).await;
                }
            });
            tx
        });
        let _ = sender.send(job);
    }

    /// Ends the queue of a subscription once what it holds is delivered.
    pub fn close(&self, subscription_id: &str) {
        self.inner.queues.lock().unwrap_or_else(|e| e.into_inner()).remove(subscription_id);
    }
}

impl Inner {
    async fn deliver(&self, job: Job) {
        let d = &job;
        let headers = &job.headers;
        if let Ok(wait) = (job.not_before - chrono::Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        let mut attempt = job.attempt + 1;
        loop {
            let (client, timeout) = match &self.own_relay {
                Some((_, relay_client)) if Notifier::own_relay_channel(&self.own_relay, &d.sink) => {
                    (relay_client, OWN_RELAY_TIMEOUT)
                }
                _ => (&self.client, self.timeout),
            };
            let (kind, status_code) = match client.post(&d.sink, headers, d.payload.clone(), timeout).await {
                Ok(status) if (200..300).contains(&status) => {
                    tracing::debug!(subscription = d.subscription_id, status, attempt, "event delivered");
                    self.forget(job.id);
                    return;
                }
                Ok(status) => (FailureKind::HttpStatus, Some(status)),
                Err(RequestError::Timeout) => (FailureKind::Timeout, None),
                Err(e @ (RequestError::Refused(_) | RequestError::Invalid(_))) => {
                    tracing::warn!(subscription = d.subscription_id, sink = d.sink, "event dropped: {e}");
                    self.forget(job.id);
                    return;
                }
                Err(e) => {
                    tracing::debug!(subscription = d.subscription_id, "delivery failed: {e}");
                    (FailureKind::Connection, None)
                }
            };
            let failure = DeliveryFailure {
                subscription_id: d.subscription_id.clone(),
                sink: d.sink.clone(),
                attempt,
                kind,
                status_code,
            };
            match self.plugins.routing.on_delivery_failure(&failure).await {
                Ok(RetryDecision::RetryAfterMs(ms)) => {
                    let wait = Duration::from_millis(u64::from(ms));
                    let not_before = chrono::Utc::now() + chrono::Duration::milliseconds(i64::from(ms));
                    if let Err(e) = self.store.backend().reschedule_notification(job.id, attempt, not_before) {
                        tracing::error!(subscription = d.subscription_id, "retry not recorded: {e}");
                    }
                    tokio::time::sleep(wait).await;
                }
                Ok(RetryDecision::GiveUp(reason)) => {
                    tracing::warn!(subscription = d.subscription_id, sink = d.sink, attempt, "event dropped: {reason}");
                    self.forget(job.id);
                    return;
                }
                Err(e) => {
                    tracing::error!(subscription = d.subscription_id, "event dropped: {e}");
                    self.forget(job.id);
                    return;
                }
            }
            attempt += 1;
        }
    }

    fn forget(&self, id: u64) {
        if let Err(e) = self.store.backend().remove_notification(id) {
            tracing::error!(notification = id, "delivered event not removed from the outbox: {e}");
        }
    }
}
