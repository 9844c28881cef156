//! What a survivor does for a dead node: its outbox, its calls, its SIP bindings.

use std::sync::Arc;

use crate::app::Gateway;
use crate::store::held_by;

/// The `reason` of the `Terminated` event of a call whose node died.
pub const REASON: &str = "The gateway node holding the call stopped";

/// Takes over everything node `dead` held, then forgets it.
pub async fn take_over(gw: &Arc<Gateway>, dead: &str) {
    tracing::warn!(node = dead, "node dead: taking over its events, calls and registrations");
    let backend = gw.store.backend();
    match backend.adopt_outbox(dead).await {
        Ok(entries) => {
            tracing::info!(node = dead, count = entries.len(), "delivering the dead node's events");
            for entry in entries {
                gw.notifier.take(entry);
            }
        }
        Err(e) => {
            // Left in its outbox: the next claim, once this one lapses, tries again.
            tracing::error!(node = dead, "outbox of a dead node not adopted: {e}");
            return;
        }
    }
    match backend.sessions_with_call().await {
        Ok(sessions) => {
            let theirs: Vec<_> = sessions.into_iter().filter(|s| held_by(s.node.as_deref(), dead)).collect();
            crate::recovery::end_calls(gw, theirs, REASON).await;
        }
        Err(e) => tracing::error!(node = dead, "calls of a dead node not read: {e}"),
    }
    let registrations = match backend.registrations_expiring_before(chrono::DateTime::<chrono::Utc>::MAX_UTC).await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(node = dead, "registrations of a dead node not read: {e}");
            return;
        }
    };
    let mut adopted = Vec::new();
    for registration in registrations {
        if !held_by(registration.node.as_deref(), dead) {
            continue;
        }
        match backend.move_registration(&registration.id, registration.node.as_deref(), gw.store.node()).await {
            Ok(moved) => adopted.push(moved),
            // Another survivor moved it first (a lapsed claim): theirs to keep.
            Err(e) => tracing::info!(registration = registration.id, "registration of a dead node not moved: {e}"),
        }
    }
    tracing::info!(node = dead, count = adopted.len(), "registrations of the dead node kept here");
    if let Err(e) = backend.forget_node(dead).await {
        tracing::warn!(node = dead, "dead node not forgotten: {e}");
    }
    // REGISTERs may wait for the registrar for minutes: the rest of the takeover is done.
    tokio::spawn(crate::bindings::rebind(gw.clone(), adopted));
}
