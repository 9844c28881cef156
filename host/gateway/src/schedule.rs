//! When a notification (or an event the routing plugin failed on) is tried again: exponential
//! back-off with jitter, capped per attempt, `Retry-After` honoured on 429 and 503, up to a
//! horizon after which the entry goes to the dead letters. Routing decides where and how; this
//! decides when, from the attempt count and the times it is given, so that it can be run on
//! simulated time.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("sink answered {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    #[error("sink timed out")]
    Timeout,
    #[error("sink unreachable: {0}")]
    Connection(String),
    /// Refused by the sink policy, or not a valid request: no retry changes that.
    #[error("not sent: {0}")]
    Refused(String),
    /// The routing plugin failed (the message names the plugin and the kind of failure).
    #[error("routing failed: {0}")]
    Routing(String),
}

impl Failure {
    /// Whether a later attempt may succeed: a client error other than 408 and 429 will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::Status { status, .. } => !(400..500).contains(status) || matches!(status, 408 | 429),
            Failure::Timeout | Failure::Connection(_) | Failure::Routing(_) => true,
            Failure::Refused(_) => false,
        }
    }

    /// The wait the sink asked for, where it may ask for one.
    fn asked_wait(&self) -> Option<Duration> {
        match self {
            Failure::Status { status: 429 | 503, retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(DateTime<Utc>),
    /// The schedule is exhausted or the failure is final.
    DeadLetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The wait after the first failed attempt; doubled after each further one.
    pub first_delay: Duration,
    /// The longest wait between two attempts (before jitter; a sink's Retry-After may ask more).
    pub max_delay: Duration,
    /// How long after it first became due an entry is tried at all.
    pub horizon: Duration,
}

impl RetrySchedule {
    /// After `attempts` failed attempts (the latest failing with `failure`) of an entry first due
    /// at `first_due`, at `now`. `jitter` in [0, 1) spreads the retries of many entries that
    /// failed together over the upper half of each back-off step.
    pub fn next(
        &self,
        attempts: u32,
        first_due: DateTime<Utc>,
        now: DateTime<Utc>,
        failure: &Failure,
        jitter: f64,
    ) -> Next {
        let end = first_due + self.horizon;
        if !failure.is_retryable() || now >= end {
            return Next::DeadLetter;
        }
        let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(31));
        let backoff = self.first_delay.saturating_mul(doubling).min(self.max_delay);
        let mut wait = backoff.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0);
        if let Some(asked) = failure.asked_wait() {
            wait = wait.max(asked);
        }
        let at = now + wait;
        match failure.asked_wait() {
            // A sink that asks to be left alone past the horizon is not tried sooner.
            Some(asked) if now + asked > end => Next::DeadLetter,
            // The last attempt falls on the horizon rather than short of it.
            _ => Next::RetryAt(at.min(end)),
        }
    }
}

/// A `Retry-After` value (RFC 9110: delay-seconds or an HTTP date) as a wait from `now`; a date
/// in the past is no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default schedule (`[notifications]` defaults).
    const DEFAULT: RetrySchedule = RetrySchedule {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(600),
        horizon: Duration::from_secs(24 * 3600),
    };

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap().into()
    }

    fn unavailable() -> Failure {
        Failure::Status { status: 503, retry_after: None }
    }

    /// Runs the schedule on simulated time against a sink that fails until `back` (or for ever)
    /// and returns the times of the attempts, and whether the entry was dead-lettered.
    fn simulate(schedule: &RetrySchedule, back: Option<Duration>, jitter: f64) -> (Vec<DateTime<Utc>>, bool) {
        let mut attempts = vec![t0()];
        loop {
            let now = *attempts.last().unwrap();
            if back.is_some_and(|back| now >= t0() + back) {
                return (attempts, false);
            }
            match schedule.next(attempts.len() as u32, t0(), now, &unavailable(), jitter) {
                Next::RetryAt(at) => {
                    assert!(at > now, "no retry goes back in time: {at} after {now}");
                    attempts.push(at);
                }
                Next::DeadLetter => return (attempts, true),
            }
        }
    }

    #[test]
    fn a_sink_down_for_ten_minutes_gets_the_event_once_back() {
        let outage = Duration::from_secs(600);
        for jitter in [0.0, 0.5, 0.999] {
            let (attempts, dead) = simulate(&DEFAULT, Some(outage), jitter);
            assert!(!dead, "jitter {jitter}: dead-lettered after {attempts:?}");
            let delivered = *attempts.last().unwrap();
            // The attempt that succeeds comes within one capped back-off of the sink's return.
            assert!(delivered - (t0() + outage) <= chrono::Duration::seconds(600), "jitter {jitter}: at {delivered}");
            assert!(attempts.len() < 20, "jitter {jitter}: {} attempts", attempts.len());
        }
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let wait = |attempts, jitter| match DEFAULT.next(attempts, t0(), t0(), &unavailable(), jitter) {
            Next::RetryAt(at) => (at - t0()).to_std().unwrap(),
            Next::DeadLetter => panic!("dead-lettered"),
        };
        assert_eq!(wait(1, 0.0), Duration::from_millis(500));
        assert_eq!(wait(1, 1.0), Duration::from_secs(1));
        assert_eq!(wait(4, 0.0), Duration::from_secs(4));
        assert_eq!(wait(20, 0.0), Duration::from_secs(300));
        assert_eq!(wait(1000, 1.0), Duration::from_secs(600), "never more than the cap");
    }

    #[test]
    fn a_sink_that_never_returns_is_tried_up_to_the_horizon_then_dead_lettered() {
        let (attempts, dead) = simulate(&DEFAULT, None, 0.3);
        assert!(dead);
        assert_eq!(*attempts.last().unwrap(), t0() + DEFAULT.horizon, "the last attempt is on the horizon");
        // A day at 5 to 10 minutes a step, after the first doublings.
        assert!((140..320).contains(&attempts.len()), "{} attempts", attempts.len());
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let asked = Some(Duration::from_secs(5));
        for status in [429, 503] {
            let failure = Failure::Status { status, retry_after: asked };
            assert_eq!(DEFAULT.next(1, t0(), t0(), &failure, 0.0), Next::RetryAt(t0() + Duration::from_secs(5)));
        }
        let failure = Failure::Status { status: 500, retry_after: asked };
        assert_eq!(DEFAULT.next(1, t0(), t0(), &failure, 0.0), Next::RetryAt(t0() + Duration::from_millis(500)));
        // A longer back-off is not shortened by a short Retry-After.
        let failure = Failure::Status { status: 429, retry_after: Some(Duration::from_secs(1)) };
        assert_eq!(DEFAULT.next(6, t0(), t0(), &failure, 0.0), Next::RetryAt(t0() + Duration::from_secs(16)));
        // A Retry-After past the horizon ends the schedule.
        let late = t0() + DEFAULT.horizon - Duration::from_secs(3);
        let failure = Failure::Status { status: 503, retry_after: asked };
        assert_eq!(DEFAULT.next(200, t0(), late, &failure, 0.0), Next::DeadLetter);
    }

    #[test]
    fn client_errors_other_than_408_and_429_are_not_retried() {
        for status in [400, 401, 403, 404, 410, 413, 422] {
            let failure = Failure::Status { status, retry_after: None };
            assert_eq!(DEFAULT.next(1, t0(), t0(), &failure, 0.0), Next::DeadLetter, "{status}");
        }
        for failure in [
            Failure::Status { status: 408, retry_after: None },
            Failure::Status { status: 429, retry_after: None },
            Failure::Status { status: 500, retry_after: None },
            Failure::Status { status: 502, retry_after: None },
            Failure::Timeout,
            Failure::Connection("refused".into()),
            Failure::Routing("plugin notification_routing_default: trapped".into()),
        ] {
            assert!(matches!(DEFAULT.next(1, t0(), t0(), &failure, 0.0), Next::RetryAt(_)), "{failure}");
        }
        assert_eq!(DEFAULT.next(1, t0(), t0(), &Failure::Refused("10.0.0.1".into()), 0.0), Next::DeadLetter);
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        // RFC 9110's example date is 784111777 s after the epoch.
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:48:37 GMT", now), Some(Duration::ZERO), "past");
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
