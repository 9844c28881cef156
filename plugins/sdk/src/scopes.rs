//! The OAuth scopes of each CAMARA WebRTC operation (the `security` sections of the OpenAPI files).

/// What an operation requires of the token's scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// One fixed scope.
    Scope(&'static str),
    /// `webrtc-events:<type>:create` for each requested event type.
    CreateScopePerEventType,
}

/// The requirement of `operation_id` in `api`; `None` for an operation this API does not have.
pub fn requirement(api: &str, operation_id: &str) -> Option<Requirement> {
    use Requirement::Scope;
    Some(match (api, operation_id) {
        ("webrtc-registration", "createRegistration") => Scope("webrtc-registration:sessions:create"),
        ("webrtc-registration", "getRegistrationsByDeviceId" | "getRegistrationById") => {
            Scope("webrtc-registration:sessions:read")
        }
        ("webrtc-registration", "updateRegistrationById") => Scope("webrtc-registration:sessions:write"),
        ("webrtc-registration", "deleteRegistrationById") => Scope("webrtc-registration:sessions:delete"),
        ("webrtc-call-handling", "createSession") => Scope("webrtc-call-handling:sessions:create"),
        ("webrtc-call-handling", "getSessionDetailsById") => Scope("webrtc-call-handling:sessions:read"),
        ("webrtc-call-handling", "updateSessionStatus") => Scope("webrtc-call-handling:sessions:write"),
        ("webrtc-call-handling", "deleteSessionById") => Scope("webrtc-call-handling:sessions:delete"),
        ("webrtc-events", "createNotificationChannelSubscription") => Requirement::CreateScopePerEventType,
        (
            "webrtc-events",
            "retrieveNotificationChannelSubscriptionList" | "retrieveNotificationChannelSubscription",
        ) => Scope("webrtc-events:read"),
        ("webrtc-events", "updateNotificationChannelSubscription") => Scope("webrtc-events:update"),
        ("webrtc-events", "deleteNotificationChannelSubscription") => Scope("webrtc-events:delete"),
        _ => return None,
    })
}

/// The scopes of `requirement` that `granted` lacks.
pub fn missing(requirement: &Requirement, granted: &[String], event_types: &[String]) -> Vec<String> {
    let needed: Vec<String> = match requirement {
        Requirement::Scope(s) => vec![s.to_string()],
        Requirement::CreateScopePerEventType => {
            event_types.iter().map(|t| format!("webrtc-events:{t}:create")).collect()
        }
    };
    needed.into_iter().filter(|n| !granted.iter().any(|g| g == n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subscriptions_need_a_create_scope_per_type() {
        let req = requirement("webrtc-events", "createNotificationChannelSubscription").unwrap();
        let types = vec!["org.camaraproject.webrtc-events.v0.session-status".to_string()];
        assert_eq!(
            missing(&req, &[], &types),
            vec!["webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create"]
        );
        let granted = vec!["webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create".to_string()];
        assert!(missing(&req, &granted, &types).is_empty());
        assert_eq!(requirement("webrtc-events", "nope"), None);
    }
}
