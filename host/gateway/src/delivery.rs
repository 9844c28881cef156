//! Delivery of routed notifications: one queue per subscription, so that a subscription sees its
//! notifications in order. Every failed attempt goes through the [`RetrySchedule`]; what
//! exhausts it moves to the dead letters, with its last error, in the same store. A routing
//! plugin of WIT 0.2.0 is told of each failure the schedule would retry and may put the retry
//! off or give up (dead letter now); it cannot retry sooner than the schedule or past its
//! horizon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use camara_store::PendingNotification;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use camara_plugin_host::routing::{DeliveryFailure, FailureKind, RetryDecision};

use crate::http_client::{HttpClient, RequestError};
use crate::plugins::LivePlugins;
use crate::schedule::{Failure, Next, RetrySchedule, parse_retry_after};
use crate::sink_policy::SinkPolicy;
use crate::store::Store;

/// Longer than the relay's wait for a device to reconnect plus its wait for the acknowledgement.
const OWN_RELAY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which table of the outbox an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    Notification,
    Event,
}

pub(crate) struct Deliveries {
    pub(crate) store: Store,
    plugins: Arc<LivePlugins>,
    client: HttpClient,
    timeout: Duration,
    /// The in-process Notification Relay's sinks: our own server, reached without the sink
    /// policy, with time for the relay to wait for a device to reconnect and acknowledge.
    own_relay: Option<(String, HttpClient)>,
    schedule: RetrySchedule,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<PendingNotification>>>,
    /// Subscriptions whose sink failed a notification for the whole horizon, for the gateway
    /// to end ([`crate::lifecycle::end_unreachable`]).
    unreachable: mpsc::UnboundedSender<String>,
}

/// Sleeps until `t` (not at all if it has passed).
pub(crate) async fn sleep_until(t: DateTime<Utc>) {
    if let Ok(wait) = (t - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

impl Deliveries {
    pub(crate) fn new(
        store: Store,
        plugins: Arc<LivePlugins>,
        timeout: Duration,
        policy: SinkPolicy,
        schedule: RetrySchedule,
        unreachable: mpsc::UnboundedSender<String>,
    ) -> Self {
        Deliveries {
            unreachable,
            store,
            plugins,
            client: HttpClient::new(policy),
            timeout,
            own_relay: None,
            schedule,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Trusts sinks under `prefix` (the in-process relay's `.../sink/`).
    pub(crate) fn set_own_relay(&mut self, prefix: String) {
        self.own_relay = Some((prefix, HttpClient::new(SinkPolicy::ANY)));
    }

    /// Whether `sink` is a channel of the in-process relay: its prefix and a channel id only.
    pub(crate) fn is_own_relay_sink(&self, sink: &str) -> bool {
        self.own_relay.as_ref().is_some_and(|(prefix, _)| {
            sink.strip_prefix(prefix.as_str())
                .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        })
    }

    /// Queues `n` behind the other notifications of its subscription.
    pub(crate) fn enqueue(self: &Arc<Self>, n: PendingNotification) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let sender = queues.entry(n.subscription_id.clone()).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<PendingNotification>();
            let deliveries = self.clone();
            tokio::spawn(async move {
                while let Some(n) = rx.recv().await {
                    deliveries.deliver(n).await;
                }
            });
            tx
        });
        let _ = sender.send(n);
    }

    /// Ends the queue of a subscription once what it holds is delivered.
    pub(crate) fn close(&self, subscription_id: &str) {
        self.queues.lock().unwrap_or_else(|e| e.into_inner()).remove(subscription_id);
    }

    /// Tries `n` until it is delivered or dead-lettered.
    async fn deliver(&self, mut n: PendingNotification) {
        loop {
            sleep_until(n.not_before).await;
            let attempts = n.attempt + 1;
            let failure = match self.attempt(&n).await {
                Ok(status) => {
                    tracing::debug!(subscription = n.subscription_id, status, attempts, "event delivered");
                    metrics::counter!(crate::metrics::DELIVERIES, "outcome" => "delivered").increment(1);
                    if let Err(e) = self.store.backend().remove_notification(n.id).await {
                        tracing::error!(notification = n.id, "delivered event not removed from the outbox: {e}");
                    }
                    return;
                }
                Err(failure) => failure,
            };
            tracing::debug!(subscription = n.subscription_id, attempts, "delivery failed: {failure}");
            let planned = self.plan(attempts, n.first_due, &failure);
            let exhausted = planned == Next::DeadLetter && failure.is_retryable();
            let (next, why) = self.ask_routing(&n, attempts, &failure, planned).await;
            match self.settle(Entry::Notification, n.id, attempts, next, &why).await {
                Some(at) => (n.attempt, n.not_before) = (attempts, at),
                None => {
                    // Retryable, yet dead-lettered by the schedule: the sink failed for the
                    // whole horizon (a routing plugin giving up says nothing of the sink).
                    if exhausted {
                        let _ = self.unreachable.send(n.subscription_id.clone());
                    }
                    return;
                }
            }
        }
    }

    /// One POST; the status when it is a success.
    async fn attempt(&self, n: &PendingNotification) -> Result<u16, Failure> {
        let (client, timeout) = match &self.own_relay {
            Some((_, relay_client)) if self.is_own_relay_sink(&n.sink) => (relay_client, OWN_RELAY_TIMEOUT),
            _ => (&self.client, self.timeout),
        };
        match client.post(&n.sink, &n.headers, n.payload.clone(), timeout).await {
            Ok(answer) if (200..300).contains(&answer.status) => Ok(answer.status),
            Ok(answer) => Err(Failure::Status {
                status: answer.status,
                retry_after: answer.retry_after.as_deref().and_then(|v| parse_retry_after(v, SystemTime::now())),
            }),
            Err(RequestError::Timeout) => Err(Failure::Timeout),
            Err(e @ (RequestError::Refused(_) | RequestError::Invalid(_))) => Err(Failure::Refused(e.to_string())),
            Err(RequestError::Connection(e)) => Err(Failure::Connection(e)),
        }
    }

    /// Records what follows a failed attempt of an outbox entry: its next attempt, returned, or
    /// its move to the dead letters.
    pub(crate) async fn after_failure(
        &self,
        entry: Entry,
        id: u64,
        attempts: u32,
        first_due: DateTime<Utc>,
        failure: &Failure,
    ) -> Option<DateTime<Utc>> {
        let next = self.plan(attempts, first_due, failure);
        self.settle(entry, id, attempts, next, &failure.to_string()).await
    }

    /// What the schedule makes of a failed attempt.
    fn plan(&self, attempts: u32, first_due: DateTime<Utc>, failure: &Failure) -> Next {
        self.schedule.next(attempts, first_due, Utc::now(), failure, rand::random())
    }

    /// The schedule's `planned` retry as a 0.2.0 routing plugin amends it, with the error to
    /// record; a plugin that fails is not obeyed (the schedule stands).
    async fn ask_routing(
        &self,
        n: &PendingNotification,
        attempts: u32,
        failure: &Failure,
        planned: Next,
    ) -> (Next, String) {
        let Next::RetryAt(at) = planned else { return (planned, failure.to_string()) };
        let plugins = self.plugins.get();
        if !plugins.routing.decides_retries() {
            return (planned, failure.to_string());
        }
        let now = Utc::now();
        let (kind, status_code, retry_after) = match failure {
            Failure::Status { status, retry_after } => (FailureKind::HttpStatus, Some(*status), *retry_after),
            Failure::Timeout => (FailureKind::Timeout, None, None),
            Failure::Connection(_) | Failure::Refused(_) | Failure::Routing(_) => (FailureKind::Connection, None, None),
        };
        let asked = DeliveryFailure {
            subscription_id: n.subscription_id.clone(),
            sink: n.sink.clone(),
            attempt: attempts,
            kind,
            status_code,
            retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
            next_attempt_ms: Some((at - now).num_milliseconds().max(0) as u64),
        };
        match plugins.routing.on_delivery_failure(&asked).await {
            Ok(RetryDecision::AsScheduled) => (planned, failure.to_string()),
            Ok(RetryDecision::NotBeforeMs(ms)) => {
                let horizon_end = n.first_due + self.schedule.horizon;
                let later = (now + chrono::Duration::milliseconds(ms.min(i64::MAX as u64) as i64)).max(at);
                (Next::RetryAt(later.min(horizon_end.max(at))), failure.to_string())
            }
            Ok(RetryDecision::GiveUp(reason)) => (Next::DeadLetter, format!("{failure}; routing gave up: {reason}")),
            Err(e) => {
                tracing::warn!(subscription = n.subscription_id, "retry decision of the routing plugin unknown: {e}");
                (planned, failure.to_string())
            }
        }
    }

    /// Records `next` for an entry whose attempt failed with `error`.
    async fn settle(&self, entry: Entry, id: u64, attempts: u32, next: Next, error: &str) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let backend = self.store.backend();
        let outcome = match next {
            Next::RetryAt(_) => "retried",
            Next::DeadLetter => "dead-lettered",
        };
        metrics::counter!(crate::metrics::DELIVERIES, "outcome" => outcome).increment(1);
        // Recorded before a move to the dead letters too, so that they show every attempt.
        let at = match next {
            Next::RetryAt(at) => at,
            Next::DeadLetter => now,
        };
        let recorded = match entry {
            Entry::Notification => backend.reschedule_notification(id, attempts, at).await,
            Entry::Event => backend.reschedule_event(id, attempts, at).await,
        };
        if let Err(e) = recorded {
            tracing::error!(entry = id, "attempt not recorded: {e}");
        }
        match next {
            Next::RetryAt(at) => Some(at),
            Next::DeadLetter => {
                match backend.dead_letter(id, error, now).await {
                    Ok(_) => tracing::warn!(entry = id, ?entry, attempts, "moved to the dead letters: {error}"),
                    Err(e) => tracing::error!(entry = id, "not moved to the dead letters ({error}): {e}"),
                }
                None
            }
        }
    }
}
