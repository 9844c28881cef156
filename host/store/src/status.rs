//! `SessionStatus`, the one definition of a media session's status on the host side: stored in
//! the session record, matched by call control, answered by the API. The plugins' WIT type is
//! converted to and from it at the plugin facade only.

use serde::{Deserialize, Serialize};

/// The CAMARA `SessionStatus` values, spelt as the API spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SessionStatus {
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

impl SessionStatus {
    /// Every status, in the order of the CAMARA enum.
    pub const ALL: [SessionStatus; 15] = [
        SessionStatus::Initial,
        SessionStatus::InProgress,
        SessionStatus::Ringing,
        SessionStatus::Proceeding,
        SessionStatus::Connected,
        SessionStatus::Terminated,
        SessionStatus::Hold,
        SessionStatus::Resume,
        SessionStatus::SessionCancelled,
        SessionStatus::Declined,
        SessionStatus::Failed,
        SessionStatus::Waiting,
        SessionStatus::NoAnswer,
        SessionStatus::NotReachable,
        SessionStatus::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Initial => "Initial",
            SessionStatus::InProgress => "InProgress",
            SessionStatus::Ringing => "Ringing",
            SessionStatus::Proceeding => "Proceeding",
            SessionStatus::Connected => "Connected",
            SessionStatus::Terminated => "Terminated",
            SessionStatus::Hold => "Hold",
            SessionStatus::Resume => "Resume",
            SessionStatus::SessionCancelled => "SessionCancelled",
            SessionStatus::Declined => "Declined",
            SessionStatus::Failed => "Failed",
            SessionStatus::Waiting => "Waiting",
            SessionStatus::NoAnswer => "NoAnswer",
            SessionStatus::NotReachable => "NotReachable",
            SessionStatus::Busy => "Busy",
        }
    }

    /// The status by its API name.
    pub fn parse(name: &str) -> Option<SessionStatus> {
        SessionStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// After these the session changes no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SessionStatus::Terminated
                | SessionStatus::SessionCancelled
                | SessionStatus::Declined
                | SessionStatus::Failed
                | SessionStatus::NoAnswer
                | SessionStatus::NotReachable
                | SessionStatus::Busy
        )
    }

    /// The call is answered and up (a BYE ends it; hold and resume apply).
    pub fn is_answered(self) -> bool {
        matches!(self, SessionStatus::Connected | SessionStatus::Hold | SessionStatus::Resume)
    }

    /// An incoming call still waiting for the device's answer.
    pub fn is_unanswered(self) -> bool {
        matches!(self, SessionStatus::Initial | SessionStatus::InProgress | SessionStatus::Ringing)
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SessionStatus;

    #[test]
    fn names_round_trip_as_the_api_and_serde_spell_them() {
        for status in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(SessionStatus::parse("connected"), None);
    }
}
