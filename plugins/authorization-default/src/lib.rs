//! Default authorization policy of the CAMARA WebRTC gateway.
//!
//! Owns the policy half of CAMARA ICM: the scopes each operation needs (the `security` sections of
//! the CAMARA OpenAPI documents), which claim carries the subscriber's phone number, that a token
//! without a subscriber (two-legged) cannot act for one, and that the originator of a call is the
//! subscriber. Does not verify tokens: the host has checked signature, expiry, issuer and audience
//! before this runs.
//!
//! Configuration keys:
//! - `phone-number-claim` (default `phone_number`): the claim holding the E.164 number;
//!   when absent, a `sub` that is an E.164 number is used.
//! - `require-scopes` (default `true`): `false` only for development.

wit_bindgen::generate!({
    world: "authorization-policy",
    path: "../../wit/v0.2.0",
});

use camara::gateway::config;
use camara::gateway::types::CamaraError;
use camara_plugin_sdk::{address, scopes};
use exports::camara::gateway::policy::{
    Api, AuthorizationRequest, ClaimValue, Decision, Guest as PolicyGuest, Subscriber,
};

struct DefaultPolicy;

fn deny(status: u16, code: &str, message: impl Into<String>) -> Decision {
    Decision::Deny(CamaraError { status, code: code.into(), message: message.into() })
}

fn phone_number(req: &AuthorizationRequest) -> Option<String> {
    let claim = config::get("phone-number-claim").unwrap_or_else(|| "phone_number".into());
    let value = req.claims.other_claims.iter().find(|c| c.name == claim).map(|c| &c.value);
    if let Some(ClaimValue::Text(n)) = value {
        // OIDC's phone_number is often written without the plus sign.
        let n = if n.starts_with('+') { n.to_string() } else { format!("+{n}") };
        return address::is_e164(&n).then_some(n);
    }
    req.claims.subject.clone().filter(|s| address::is_e164(s))
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::WebrtcRegistration => "webrtc-registration",
        Api::WebrtcCallHandling => "webrtc-call-handling",
        Api::WebrtcEvents => "webrtc-events",
    }
}

impl PolicyGuest for DefaultPolicy {
    fn authorize(req: AuthorizationRequest) -> Decision {
        let op = &req.operation;
        let api = api_name(op.api);
        let Some(requirement) = scopes::requirement(api, &op.operation_id) else {
            return deny(403, "PERMISSION_DENIED", format!("Unknown operation {api}.{}", op.operation_id));
        };
        if config::get("require-scopes").as_deref() != Some("false") {
            let missing = scopes::missing(&requirement, &req.claims.scopes, &req.request.event_types);
            if !missing.is_empty() {
                return deny(
                    403,
                    "PERMISSION_DENIED",
                    format!(
                        "Client does not have sufficient permissions to perform this action: missing scope {}.",
                        missing.join(", ")
                    ),
                );
            }
        }
        let Some(number) = phone_number(&req) else {
            // Each API names this case its own way: webrtc-events with 422 MISSING_IDENTIFIER where
            // it lists a 422 (creating and updating subscriptions), else with its only 403 code;
            // the other APIs with 403 INVALID_TOKEN_CONTEXT.
            const CANNOT_IDENTIFY: &str =
                "The device cannot be identified: the access token names no subscriber phone number.";
            match (op.api, op.operation_id.as_str()) {
                (
                    Api::WebrtcEvents,
                    "createNotificationChannelSubscription" | "updateNotificationChannelSubscription",
                ) => {
                    return deny(422, "MISSING_IDENTIFIER", CANNOT_IDENTIFY);
                }
                (Api::WebrtcEvents, _) => return deny(403, "PERMISSION_DENIED", CANNOT_IDENTIFY),
                _ => {}
            }
            return deny(
                403,
                "INVALID_TOKEN_CONTEXT",
                "The access token does not identify a subscriber phone number; a three-legged token is required.",
            );
        };
        if op.operation_id == "createSession"
            && let Some(originator) = req.request.addresses.first()
        {
            let anonymous = originator == address::ANONYMOUS;
            if !anonymous && address::phone_number(originator) != Some(number.as_str()) {
                return deny(403, "INVALID_TOKEN_CONTEXT", "originatorAddress is not consistent with access token.");
            }
        }
        Decision::Allow(Subscriber { phone_number: Some(number), subject: req.claims.subject.clone() })
    }
}

impl Guest for DefaultPolicy {
    fn validate_config(config: Vec<Pair>) -> Result<(), String> {
        for Pair { name, value } in &config {
            match name.as_str() {
                "phone-number-claim" if value.is_empty() => return Err("phone-number-claim must not be empty".into()),
                "phone-number-claim" => {}
                "require-scopes" if value == "true" || value == "false" => {}
                "require-scopes" => return Err(format!("require-scopes must be true or false, not {value:?}")),
                other => return Err(format!("unknown configuration key {other:?}")),
            }
        }
        Ok(())
    }
}

export!(DefaultPolicy);
