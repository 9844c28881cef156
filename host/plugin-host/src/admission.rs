//! Admission in front of the instance pool. Each plugin runs at most its quota of calls at once;
//! a few more calls may wait, each for at most one deadline (a running call ends by then); the
//! rest are refused at once. So a plugin that loops or is flooded holds its own quota, not the
//! instances the other plugins need, and its callers learn fast that it is overloaded.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

pub(crate) struct Admission {
    quota: u32,
    running: Semaphore,
    waiting: AtomicU32,
    max_waiting: u32,
    max_wait: Duration,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("{running} calls running and {waiting} waiting, the most allowed")]
    QueueFull { running: u32, waiting: u32 },
    #[error("no call ended within {0:?}")]
    WaitedTooLong(Duration),
}

/// Leaves the wait queue when dropped, admitted or not.
struct InQueue<'a>(&'a AtomicU32);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// `quota` calls at once (at least one), `max_waiting` more waiting up to `max_wait`.
    pub(crate) fn new(quota: u32, max_waiting: u32, max_wait: Duration) -> Self {
        let quota = quota.max(1);
        Admission { quota, running: Semaphore::new(quota as usize), waiting: AtomicU32::new(0), max_waiting, max_wait }
    }

    /// A place to run a call, held until the permit is dropped.
    pub(crate) async fn admit(&self) -> Result<SemaphorePermit<'_>, Refusal> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _in_queue = InQueue(&self.waiting);
        if ahead >= self.max_waiting {
            return Err(Refusal::QueueFull { running: self.quota, waiting: self.max_waiting });
        }
        match tokio::time::timeout(self.max_wait, self.running.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one admits nobody either.
            _ => Err(Refusal::WaitedTooLong(self.max_wait)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_quota_calls_wait_in_a_bounded_queue() {
        let admission = Admission::new(2, 1, Duration::from_secs(30));
        let first = admission.admit().await.unwrap();
        let _second = admission.admit().await.unwrap();
        // The third waits; a fourth finds the queue full and is refused at once.
        let third = admission.admit();
        tokio::pin!(third);
        assert!(futures_poll_once(third.as_mut()).await.is_none(), "the third waits");
        assert_eq!(admission.admit().await.err(), Some(Refusal::QueueFull { running: 2, waiting: 1 }));
        // A call ends: the waiting one runs, and the queue has room again.
        drop(first);
        assert!(third.await.is_ok());
        assert_eq!(admission.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_waiting_call_gives_up_after_its_wait() {
        let admission = Admission::new(1, 4, Duration::from_millis(50));
        let _running = admission.admit().await.unwrap();
        assert_eq!(admission.admit().await.err(), Some(Refusal::WaitedTooLong(Duration::from_millis(50))));
        assert_eq!(admission.waiting.load(Ordering::Acquire), 0, "it left the queue");
    }

    /// Polls `f` once: its output if it is ready.
    async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
