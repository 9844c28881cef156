//! The embedded backends' side of [`Store`]: a synchronous twin of the trait, and the blanket
//! implementation that makes each of them a [`Store`].
//!
//! A backend whose every call is one short transaction on local data implements
//! [`BlockingStore`]. If a call may wait on the disk (redb's `fsync`), it sets
//! [`BlockingStore::OFFLOAD`] and runs on tokio's blocking threads, so a runtime thread never
//! waits for the disk; otherwise (memory) it runs inline. The methods are [`Store`]'s, with the
//! same contracts, less the read-modify-writes that [`Store`] provides over the compare-and-sets.

use chrono::{DateTime, Utc};

use crate::{
    Committed, DeadLetter, ExpiringSubscription, MediaSession, NewEvent, NewNotification, PendingEvent,
    PendingNotification, Registration, Result, Store, StoreError, Subscription, Undelivered,
};

/// [`Store`], synchronously: each method as documented there.
pub trait BlockingStore: Clone + Send + Sync + 'static {
    /// Whether calls run on tokio's blocking threads (they may wait on I/O) or inline.
    const OFFLOAD: bool;

    fn insert_registration(&self, registration: Registration) -> Result<()>;
    fn registration(&self, id: &str) -> Result<Option<Registration>>;
    fn registrations_of(&self, phone_number: &str, device_id: Option<&str>) -> Result<Vec<Registration>>;
    fn update_registration_expiry(&self, id: &str, expires_at: DateTime<Utc>) -> Result<Registration>;
    fn move_registration(&self, id: &str, expected: Option<&str>, node: &str) -> Result<Registration>;
    fn remove_registration(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Registration>>>;
    fn registrations_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<Registration>>;
    fn insert_subscription(&self, subscription: Subscription) -> Result<()>;
    fn subscription(&self, id: &str) -> Result<Option<Subscription>>;
    fn subscriptions_of(&self, owner_phone_number: &str) -> Result<Vec<Subscription>>;
    fn replace_subscription(&self, expected: &Subscription, new: Subscription) -> Result<Subscription>;
    fn remove_subscription(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Subscription>>>;
    fn subscriptions_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<ExpiringSubscription>>;
    fn insert_session(&self, session: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>>;
    fn session(&self, id: &str) -> Result<Option<MediaSession>>;
    fn sessions_of_call(&self, call_id: &str) -> Result<Vec<MediaSession>>;
    fn sessions_with_call(&self) -> Result<Vec<MediaSession>>;
    fn replace_session(&self, session: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>>;
    fn remove_session(&self, id: &str) -> Result<Option<MediaSession>>;
    fn enqueue_notification(&self, notification: NewNotification) -> Result<u64>;
    fn pending_notifications(&self, limit: usize) -> Result<Vec<PendingNotification>>;
    fn reschedule_notification(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()>;
    fn remove_notification(&self, id: u64) -> Result<Option<PendingNotification>>;
    fn enqueue_event(&self, event: NewEvent) -> Result<u64>;
    fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>>;
    fn reschedule_event(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()>;
    fn route_event(&self, id: u64, notifications: Vec<NewNotification>) -> Result<Vec<u64>>;
    fn dead_letter(&self, id: u64, last_error: &str, at: DateTime<Utc>) -> Result<DeadLetter>;
    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;
    fn replay_dead_letter(&self, id: u64, not_before: DateTime<Utc>) -> Result<Option<Undelivered>>;
    fn remove_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>>;
}

/// Runs one call of a [`BlockingStore`], on a blocking thread if it asks for it.
async fn run<S: BlockingStore, T: Send + 'static>(
    store: &S,
    call: impl FnOnce(&S) -> Result<T> + Send + 'static,
) -> Result<T> {
    if !S::OFFLOAD {
        return call(store);
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
}

#[async_trait::async_trait]
impl<S: BlockingStore> Store for S {
    async fn insert_registration(&self, registration: Registration) -> Result<()> {
        run(self, move |s| BlockingStore::insert_registration(s, registration)).await
    }

    async fn registration(&self, id: &str) -> Result<Option<Registration>> {
        let id = id.to_owned();
        run(self, move |s| BlockingStore::registration(s, &id)).await
    }

    async fn registrations_of(&self, phone_number: &str, device_id: Option<&str>) -> Result<Vec<Registration>> {
        let phone_number = phone_number.to_owned();
        let device_id = device_id.map(str::to_owned);
        run(self, move |s| BlockingStore::registrations_of(s, &phone_number, device_id.as_deref())).await
    }

    async fn update_registration_expiry(&self, id: &str, expires_at: DateTime<Utc>) -> Result<Registration> {
        let id = id.to_owned();
        run(self, move |s| BlockingStore::update_registration_expiry(s, &id, expires_at)).await
    }

    async fn move_registration(&self, id: &str, expected: Option<&str>, node: &str) -> Result<Registration> {
        let id = id.to_owned();
        let expected = expected.map(str::to_owned);
        let node = node.to_owned();
        run(self, move |s| BlockingStore::move_registration(s, &id, expected.as_deref(), &node)).await
    }

    async fn remove_registration(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Registration>>> {
        let id = id.to_owned();
        run(self, move |s| BlockingStore::remove_registration(s, &id, events)).await
    }

    async fn registrations_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<Registration>> {
        run(self, move |s| BlockingStore::registrations_expiring_before(s, t)).await
    }

    async fn insert_subscription(&self, subscription: Subscription) -> Result<()> {
        run(self, move |s| BlockingStore::insert_subscription(s, subscription)).await
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        let id = id.to_owned();
        run(self, move |s| BlockingStore::subscription(s, &id)).await
    }

    async fn subscriptions_of(&self, owner_phone_number: &str) -> Result<Vec<Subscription>> {
        let owner_phone_number = owner_phone_number.to_owned();
        run(self, move |s| BlockingStore::subscriptions_of(s, &owner_phone_number)).await
    }

    async fn replace_subscription(&self, expected: &Subscription, new: Subscription) -> Result<Subscription> {
        let expected = expected.clone();
        run(self, move |s| BlockingStore::replace_subscription(s, &expected, new)).await
    }

    async fn remove_subscription(&self, id: &str, events: Vec<NewEvent>) -> Result<Option<Committed<Subscription>>> {
        let id = id.to_owned();
        run(self, move |s| BlockingStore::remove_subscription(s, &id, events)).await
    }

    async fn subscriptions_expiring_before(&self, t: DateTime<Utc>) -> Result<Vec<ExpiringSubscription>> {
        run(self, move |s| BlockingStore::subscriptions_expiring_before(s, t)).await
    }

    async fn insert_session(&self, session: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>> {
        run(self, move |s| BlockingStore::insert_session(s, session, events)).await
    }

    async fn session(&self, id: &str) -> Result<Option<MediaSession>> {
        let id = id.to_owned();
        run(self, move |s| BlockingStore::session(s, &id)).await
    }

    async fn sessions_of_call(&self, call_id: &str) -> Result<Vec<MediaSession>> {
        let call_id = call_id.to_owned();
        run(self, move |s| BlockingStore::sessions_of_call(s, &call_id)).await
    }

    async fn sessions_with_call(&self) -> Result<Vec<MediaSession>> {
        run(self, move |s| BlockingStore::sessions_with_call(s)).await
    }

    async fn replace_session(&self, session: MediaSession, events: Vec<NewEvent>) -> Result<Committed<MediaSession>> {
        run(self, move |s| BlockingStore::replace_session(s, session, events)).await
    }

    async fn remove_session(&self, id: &str) -> Result<Option<MediaSession>> {
        let id = id.to_owned();
        run(self, move |s| BlockingStore::remove_session(s, &id)).await
    }

    async fn enqueue_notification(&self, notification: NewNotification) -> Result<u64> {
        run(self, move |s| BlockingStore::enqueue_notification(s, notification)).await
    }

    async fn pending_notifications(&self, limit: usize) -> Result<Vec<PendingNotification>> {
        run(self, move |s| BlockingStore::pending_notifications(s, limit)).await
    }

    async fn reschedule_notification(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()> {
        run(self, move |s| BlockingStore::reschedule_notification(s, id, attempt, not_before)).await
    }

    async fn remove_notification(&self, id: u64) -> Result<Option<PendingNotification>> {
        run(self, move |s| BlockingStore::remove_notification(s, id)).await
    }

    async fn enqueue_event(&self, event: NewEvent) -> Result<u64> {
        run(self, move |s| BlockingStore::enqueue_event(s, event)).await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>> {
        run(self, move |s| BlockingStore::pending_events(s, limit)).await
    }

    async fn reschedule_event(&self, id: u64, attempt: u32, not_before: DateTime<Utc>) -> Result<()> {
        run(self, move |s| BlockingStore::reschedule_event(s, id, attempt, not_before)).await
    }

    async fn route_event(&self, id: u64, notifications: Vec<NewNotification>) -> Result<Vec<u64>> {
        run(self, move |s| BlockingStore::route_event(s, id, notifications)).await
    }

    async fn dead_letter(&self, id: u64, last_error: &str, at: DateTime<Utc>) -> Result<DeadLetter> {
        let last_error = last_error.to_owned();
        run(self, move |s| BlockingStore::dead_letter(s, id, &last_error, at)).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        run(self, move |s| BlockingStore::dead_letters(s, limit)).await
    }

    async fn replay_dead_letter(&self, id: u64, not_before: DateTime<Utc>) -> Result<Option<Undelivered>> {
        run(self, move |s| BlockingStore::replay_dead_letter(s, id, not_before)).await
    }

    async fn remove_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        run(self, move |s| BlockingStore::remove_dead_letter(s, id)).await
    }
}
