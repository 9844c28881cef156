//! How many requests of one API client may be in progress at once.
//!
//! The rate limit counts requests per second; this counts requests not yet answered. A client
//! whose requests are slow to answer (they run into a plugin that loops on its input, say)
//! would otherwise fill the plugins' queues with its own requests while staying within its
//! rate, and every other client's requests would be refused as overload. Keyed like the rate
//! limit (issuer and `client_id`, else subject); a slot is held from authentication to the
//! response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct ClientSlots {
    limit: u32,
    in_use: Mutex<HashMap<String, u32>>,
}

/// One request's place in its client's allowance, given back when dropped.
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    key: String,
}

impl ClientSlots {
    /// `limit` requests per client; 0: no limit.
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(ClientSlots { limit, in_use: Mutex::new(HashMap::new()) })
    }

    /// A slot for a request of `key`, `None` when the client has `limit` in progress already.
    pub fn take(self: &Arc<Self>, key: &str) -> Option<ClientSlot> {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_use.entry(key.to_string()).or_default();
        if self.limit != 0 && *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot { slots: self.clone(), key: key.to_string() })
    }

    /// Requests of `key` in progress.
    #[cfg(test)]
    fn in_progress(&self, key: &str) -> u32 {
        self.in_use.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut in_use = self.slots.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_use.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                in_use.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_limit_and_others_are_not_counted_against_it() {
        let slots = ClientSlots::new(2);
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        assert!(slots.take("a").is_none(), "a third request of a waits for an answer");
        assert!(slots.take("b").is_some(), "another client is not affected");
        drop(a1);
        assert!(slots.take("a").is_some(), "an answered request gives its slot back");
        assert_eq!(slots.in_progress("b"), 0, "a client with nothing in progress is forgotten");
        let unlimited = ClientSlots::new(0);
        let held: Vec<_> = (0..1000).map(|_| unlimited.take("a").unwrap()).collect();
        assert_eq!(unlimited.in_progress("a"), 1000);
        drop(held);
        assert_eq!(unlimited.in_progress("a"), 0);
    }
}
