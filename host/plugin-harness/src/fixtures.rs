//! Ready-made inputs for plugin tests, to be adjusted field by field.

use camara_plugin_host::{authorization, mapping, routing};

/// An authorization request for `operation_id` of `api` with the given claims (a JSON object).
/// `iss`, `sub`, `aud`, `exp`, `iat`, `client_id` and `scope` (space-separated) fill the typed
/// fields; the whole object is the token's claims (JSON text for a 0.1.0 plugin, the other
/// claims typed for a 0.2.0 one).
pub fn authorization_request(
    api: &str,
    operation_id: &str,
    claims: serde_json::Value,
) -> authorization::AuthorizationRequest {
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let audience = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    authorization::AuthorizationRequest {
        operation: authorization::Operation {
            api: serde_json::from_value(api.into()).unwrap_or_else(|_| panic!("{api} is not a CAMARA WebRTC API")),
            operation_id: operation_id.into(),
            method: authorization::HttpMethod::Post,
            path_ids: Vec::new(),
        },
        claims: authorization::TokenClaims {
            issuer: text("iss").unwrap_or_else(|| "https://issuer.example".into()),
            subject: text("sub"),
            audience,
            scopes: text("scope").map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default(),
            expires_at: claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(i64::MAX),
            issued_at: claims.get("iat").and_then(|v| v.as_i64()),
            client_id: text("client_id"),
            all_claims: claims.as_object().cloned().unwrap_or_default(),
        },
        request: authorization::RequestFields {
            device_id: None,
            registration_id: None,
            addresses: Vec::new(),
            event_types: Vec::new(),
        },
    }
}

/// A gateway at `gateway.example` with no next hop.
pub fn network_context() -> mapping::NetworkContext {
    mapping::NetworkContext { local_host: "gateway.example".into(), next_hop: None }
}

/// A regular call from `originator` to `receiver` by the subscriber `originator` names.
pub fn outgoing_call(originator: &str, receiver: &str) -> mapping::OutgoingCall {
    mapping::OutgoingCall {
        originator_address: originator.into(),
        originator_name: None,
        receiver_address: receiver.into(),
        receiver_name: None,
        call_type: mapping::CallType::Regular,
        subscriber_phone_number: originator.strip_prefix("tel:").map(str::to_string),
        location: None,
    }
}

/// A response to the session's INVITE.
pub fn invite_response(status_code: u16, reason_phrase: &str) -> mapping::SipEvent {
    mapping::SipEvent::InviteResponse(mapping::SipResponse {
        status_code,
        reason_phrase: reason_phrase.into(),
        has_sdp: false,
        reliable: false,
        headers: Vec::new(),
    })
}

/// The context of an outgoing call's hooks.
pub fn outgoing_call_context() -> mapping::CallContext {
    mapping::CallContext {
        session_id: "7d444840-9dc0-11d1-b245-5ffdce74fad2".into(),
        direction: mapping::CallDirection::Outgoing,
        call_id: Some("a84b4c76e66710@gateway.example".into()),
    }
}

/// A session-status event about `media_session_id` of `phone_number` on `device_id`.
pub fn session_status_event(media_session_id: &str, device_id: &str, phone_number: &str) -> routing::Event {
    let cloudevent = serde_json::json!({
        "id": "evt-1",
        "source": "https://gateway.example/webrtc-call-handling/v0.3",
        "type": "org.camaraproject.webrtc-events.v0.session-status",
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "time": "2026-01-01T00:00:00Z",
        "data": { "mediaSessionId": media_session_id, "status": "Ringing", "sequenceNumber": 1 }
    });
    routing::Event {
        event_type: "org.camaraproject.webrtc-events.v0.session-status".into(),
        cloudevent_json: cloudevent.to_string(),
        id: "evt-1".into(),
        time: "2026-01-01T00:00:00Z".into(),
        status: Some(mapping::SessionStatus::Ringing),
        media_session_id: Some(media_session_id.into()),
        registration_id: None,
        device_id: Some(device_id.into()),
        phone_number: Some(phone_number.into()),
    }
}

/// A subscription of `owner` on `device_id` to `types`, delivered to `sink`.
pub fn subscription(id: &str, sink: &str, types: &[&str], device_id: &str, owner: &str) -> routing::Subscription {
    routing::Subscription {
        id: id.into(),
        sink: sink.into(),
        types: types.iter().map(|t| t.to_string()).collect(),
        device_id: Some(device_id.into()),
        owner_phone_number: Some(owner.into()),
        has_sink_credential: true,
    }
}
