//! The circuit breaker of one plugin: a plugin that keeps failing (trapping, running past its
//! deadline, running out of memory) is short-circuited for a cool-down, so its callers get a
//! fast `503` instead of each waiting out a deadline, and the machine stops burning a core on
//! it. After the cool-down one call is let through as a probe: its success closes the circuit,
//! its failure opens it for another cool-down.
//!
//! Fed with outcomes and the time (no clock of its own), so it is tested without waiting.
//! Overload (a full quota or queue) is not a fault of the plugin and does not count.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When the circuit opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures within `window` that open the circuit; 0 never opens it.
    pub failures: u32,
    pub window: Duration,
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        // A plugin failing 20 times in 10 s is broken, not unlucky; 5 s lets an operator's
        // reload or a transient cause pass without refusing traffic for long.
        BreakerSettings { failures: 20, window: Duration::from_secs(10), cool_down: Duration::from_secs(5) }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: VecDeque<Instant>,
    },
    Open {
        until: Instant,
    },
    /// The cool-down is over and one probe call runs.
    Probing,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// Whether a call admitted by the breaker is the probe after a cool-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    Normal,
    Probe,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Breaker { settings, state: Mutex::new(State::Closed { failures: VecDeque::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may run now; `Err` is how long until one may.
    pub(crate) fn admit(&self, now: Instant) -> Result<Admitted, Duration> {
        let mut state = self.lock();
        match &*state {
            State::Closed { .. } => Ok(Admitted::Normal),
            State::Open { until } if now < *until => Err(*until - now),
            State::Open { .. } => {
                *state = State::Probing;
                Ok(Admitted::Probe)
            }
            // One probe at a time; the others wait for its verdict.
            State::Probing => Err(self.settings.cool_down),
        }
    }

    /// The outcome of a call `admit` let through: `true` when the plugin did not fail.
    pub(crate) fn record(&self, admitted: Admitted, succeeded: bool, now: Instant) {
        let mut state = self.lock();
        match (&mut *state, admitted, succeeded) {
            (State::Probing, Admitted::Probe, true) => *state = State::Closed { failures: VecDeque::new() },
            (State::Probing, Admitted::Probe, false) => *state = State::Open { until: now + self.settings.cool_down },
            (State::Closed { failures }, Admitted::Normal, false) if self.settings.failures > 0 => {
                failures.push_back(now);
                while failures.front().is_some_and(|&t| now.duration_since(t) > self.settings.window) {
                    failures.pop_front();
                }
                if failures.len() >= self.settings.failures as usize {
                    tracing::warn!(
                        failures = failures.len(),
                        window = ?self.settings.window,
                        cool_down = ?self.settings.cool_down,
                        "plugin keeps failing: circuit open"
                    );
                    *state = State::Open { until: now + self.settings.cool_down };
                }
            }
            _ => {}
        }
    }

    #[cfg(test)]
    fn is_open(&self) -> bool {
        !matches!(&*self.lock(), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            failures: 3,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(5),
        })
    }

    #[test]
    fn failures_within_the_window_open_the_circuit_for_the_cool_down() {
        let (b, t0) = (breaker(), Instant::now());
        for s in [0, 1] {
            b.record(b.admit(t0).unwrap(), false, t0 + Duration::from_secs(s));
        }
        assert_eq!(b.admit(t0 + Duration::from_secs(2)), Ok(Admitted::Normal));
        b.record(Admitted::Normal, false, t0 + Duration::from_secs(2));
        assert_eq!(b.admit(t0 + Duration::from_secs(3)), Err(Duration::from_secs(4)));
        assert!(b.is_open());
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not() {
        let (b, t0) = (breaker(), Instant::now());
        for s in [0, 6, 12, 18] {
            b.record(Admitted::Normal, false, t0 + Duration::from_secs(s));
        }
        assert_eq!(b.admit(t0 + Duration::from_secs(18)), Ok(Admitted::Normal));
        // Successes do not reset a window of failures, they just do not add to it.
        b.record(Admitted::Normal, true, t0 + Duration::from_secs(19));
        b.record(Admitted::Normal, false, t0 + Duration::from_secs(20));
        assert!(b.is_open(), "12, 18 and 20 are within 10 s");
    }

    #[test]
    fn after_the_cool_down_one_probe_decides() {
        let (b, t0) = (breaker(), Instant::now());
        for _ in 0..3 {
            b.record(Admitted::Normal, false, t0);
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(later), Ok(Admitted::Probe));
        assert!(b.admit(later).is_err(), "one probe at a time");
        b.record(Admitted::Probe, false, later);
        assert_eq!(b.admit(later + Duration::from_secs(4)), Err(Duration::from_secs(1)));
        let again = later + Duration::from_secs(5);
        assert_eq!(b.admit(again), Ok(Admitted::Probe));
        b.record(Admitted::Probe, true, again);
        assert_eq!(b.admit(again), Ok(Admitted::Normal));
        assert!(!b.is_open());
    }

    #[test]
    fn zero_failures_never_opens() {
        let b = Breaker::new(BreakerSettings { failures: 0, ..BreakerSettings::default() });
        let t0 = Instant::now();
        for _ in 0..100 {
            b.record(Admitted::Normal, false, t0);
        }
        assert_eq!(b.admit(t0), Ok(Admitted::Normal));
    }
}
