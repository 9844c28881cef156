//! Several gateway nodes on one shared store (`[storage] backend = "redis"`).
//!
//! Every node serves every API request: registrations, subscriptions and sessions are read from
//! the shared store. What a node holds alone is named in the store by its `node_id`: its calls
//! (the SIP dialog and the media live in its process), the SIP bindings of the `sip-account`
//! registrations it keeps, and the outbox entries it queued. So:
//!
//! - a `PUT` or `DELETE` on a session held by another node is forwarded to that node
//!   ([`forward`]), or answered `503` with `Retry-After` when that node is dead;
//! - each node says it is alive every third of `[storage] node_lease_ms`; a node whose lease runs
//!   out (killed, cut off) is dead to the others, and one survivor, the one that claims it, takes
//!   over ([`takeover`]): it delivers the dead node's queued events (the same CloudEvents ids: at
//!   least once), ends its calls (BYE from the dialog snapshots, `Terminated`: the media died
//!   with the node), REGISTERs its `sip-account` registrations again and keeps them.
//!
//! A node that comes back under the same id starts as after a crash, with what was not taken
//! over. With a store one process holds (memory, redb) there is one node: nothing here runs (no
//! heartbeat task, no owner lookup before a request).

pub mod forward;
mod takeover;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::app::Gateway;

/// How long a node's claim on a dead node's takeover holds: longer than a takeover takes but
/// for its SIP re-registrations, which go on in their own tasks.
const TAKEOVER_CLAIM: Duration = Duration::from_secs(60);

/// Says this node is alive, and takes over the nodes found dead, until the process ends.
pub async fn run(gw: Arc<Gateway>, address: String) {
    let lease = gw.config.storage.node_lease();
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Takeovers in progress here, so that a slow one is not started twice.
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Since when this node's heartbeats have been stored without a miss. A store that was
    // unreachable for everyone (or this node's start) lets every lease run out at once: the
    // others are only judged once they have had a whole lease to say they are alive again.
    let mut stored_since: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let backend = gw.store.backend();
        if let Err(e) = backend.heartbeat(&address, lease).await {
            tracing::warn!("heartbeat not stored: {e}");
            stored_since = None;
            continue;
        }
        let since = *stored_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < lease {
            continue;
        }
        let nodes = match backend.nodes().await {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!("nodes not read: {e}");
                continue;
            }
        };
        for dead in nodes.into_iter().filter(|n| n.address.is_none() && n.id != gw.store.node()) {
            if !busy.lock().unwrap_or_else(|e| e.into_inner()).insert(dead.id.clone()) {
                continue;
            }
            let claimed = backend.claim_takeover(&dead.id, TAKEOVER_CLAIM).await.unwrap_or_else(|e| {
                tracing::warn!(node = dead.id, "takeover not claimed: {e}");
                false
            });
            let busy = busy.clone();
            let done = move |id: &str| busy.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            if !claimed {
                done(&dead.id);
                continue;
            }
            let gw = gw.clone();
            tokio::spawn(async move {
                takeover::take_over(&gw, &dead.id).await;
                done(&dead.id);
            });
        }
    }
}

/// Whether `node` (a record's node, `None` for records older than node names) is this one.
pub fn is_here(gw: &Gateway, node: Option<&str>) -> bool {
    crate::store::held_by(node, gw.store.node())
}
