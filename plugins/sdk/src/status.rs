//! The CAMARA reading of SIP outcomes: `SessionStatus` and a reason text.

/// CAMARA `SessionStatus`, mirrored here so that plugins of any world can share the readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Status {
    Initial,
    InProgress,
    Ringing,
    Proceeding,
    Connected,
    Terminated,
    Hold,
    Resume,
    SessionCancelled,
    Declined,
    Failed,
    Waiting,
    NoAnswer,
    NotReachable,
    Busy,
}

/// Which side of the call the gateway's device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Direction {
    Outgoing,
    Incoming,
}

impl Direction {
    fn parties(self) -> (&'static str, &'static str) {
        match self {
            Direction::Outgoing => ("originator", "receiver"),
            Direction::Incoming => ("receiver", "originator"),
        }
    }
}

/// A response to the session's INVITE; `None` when it changes nothing (100 Trying).
pub fn for_invite_response(code: u16, reason_phrase: &str) -> Option<(Status, String)> {
    let what = format!("{code} {reason_phrase}");
    let (status, reason) = match code {
        100 => return None,
        180 => (Status::Ringing, format!("{what} received from remote endpoint")),
        183 => (Status::InProgress, format!("{what} received from remote endpoint")),
        101..=199 => (Status::Proceeding, format!("{what} received from remote endpoint")),
        200..=299 => (Status::Connected, format!("{what} received - call connected")),
        486 | 600 => (Status::Busy, format!("{what}: remote endpoint busy")),
        487 => (Status::SessionCancelled, format!("{what}: call cancelled")),
        603 => (Status::Declined, format!("{what}: call declined")),
        404 | 410 | 480 | 484 | 604 => (Status::NotReachable, format!("{what}: remote endpoint not reachable")),
        408 => (Status::NoAnswer, format!("{what}: no answer")),
        _ => (Status::Failed, format!("{what}: call failed")),
    };
    Some((status, reason))
}

/// A request from the network within the session.
pub fn for_request(method: &str, direction: Direction) -> Option<(Status, String)> {
    let (_, remote) = direction.parties();
    match method {
        "BYE" => Some((Status::Terminated, format!("Call terminated by {remote}"))),
        "CANCEL" => Some((Status::SessionCancelled, format!("Call cancelled by {remote}"))),
        _ => None,
    }
}

/// The device ended the session (`DELETE`), with a BYE or a CANCEL.
pub fn for_local_hangup(method: &str, direction: Direction) -> (Status, String) {
    let (local, _) = direction.parties();
    if method == "CANCEL" {
        (Status::SessionCancelled, format!("Call cancelled by {local}"))
    } else {
        (Status::Terminated, format!("Call terminated by {local}"))
    }
}

/// No final response came, or the transport failed.
pub fn for_timeout() -> (Status, String) {
    (Status::NotReachable, "No response from the network".to_string())
}

/// Defines `fn $name(Status) -> $target` for a plugin's generated `session-status` enum, whose
/// variants carry the same names as [`Status`].
#[macro_export]
macro_rules! session_status_conversion {
    ($name:ident -> $target:ty) => {
        fn $name(status: $crate::status::Status) -> $target {
            use $crate::status::Status as S;
            match status {
                S::Initial => <$target>::Initial,
                S::InProgress => <$target>::InProgress,
                S::Ringing => <$target>::Ringing,
                S::Proceeding => <$target>::Proceeding,
                S::Connected => <$target>::Connected,
                S::Terminated => <$target>::Terminated,
                S::Hold => <$target>::Hold,
                S::Resume => <$target>::Resume,
                S::SessionCancelled => <$target>::SessionCancelled,
                S::Declined => <$target>::Declined,
                S::Failed => <$target>::Failed,
                S::Waiting => <$target>::Waiting,
                S::NoAnswer => <$target>::NoAnswer,
                S::NotReachable => <$target>::NotReachable,
                S::Busy => <$target>::Busy,
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_flow_readings() {
        assert_eq!(for_invite_response(100, "Trying"), None);
        assert_eq!(for_invite_response(180, "Ringing").unwrap().0, Status::Ringing);
        assert_eq!(for_invite_response(183, "Session Progress").unwrap().0, Status::InProgress);
        assert_eq!(for_invite_response(200, "OK").unwrap().1, "200 OK received - call connected");
        assert_eq!(for_invite_response(486, "Busy Here").unwrap().0, Status::Busy);
        assert_eq!(for_invite_response(487, "Request Terminated").unwrap().0, Status::SessionCancelled);
        assert_eq!(for_invite_response(603, "Decline").unwrap().0, Status::Declined);
        assert_eq!(for_invite_response(480, "Temporarily Unavailable").unwrap().0, Status::NotReachable);
        assert_eq!(for_invite_response(408, "Request Timeout").unwrap().0, Status::NoAnswer);
        assert_eq!(for_invite_response(500, "Server Error").unwrap().0, Status::Failed);
        assert_eq!(for_request("BYE", Direction::Outgoing).unwrap().1, "Call terminated by receiver");
        assert_eq!(for_local_hangup("BYE", Direction::Outgoing).1, "Call terminated by originator");
    }
}
