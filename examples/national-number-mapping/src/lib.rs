//! Example operator plugin: an API mapping that writes national numbers in international form.
//!
//! Some operators' networks route only E.164 numbers, while their customers dial nationally:
//! `tel:0312345678;phone-context=+81` or `tel:0312345678`. This plugin strips the trunk prefix and
//! adds the country code before the call reaches SIP, so the network sees
//! `sip:+81312345678@...;user=phone`. Everything else is the default behaviour, composed from
//! `camara-plugin-sdk`.
//!
//! Configuration keys: `country-code` (digits, required), `trunk-prefix` (default `0`),
//! `home-domain`, `network-domain` (as in the default mapping).

wit_bindgen::generate!({
    world: "api-mapping",
    path: "../../wit/v0.1.0",
});

use camara::gateway::config;
use camara::gateway::types::{CamaraError, SessionStatus};
use camara_plugin_sdk::{address, status};
use exports::camara::gateway::mapping::{
    CallDirection, Guest as MappingGuest, IncomingCall, IncomingInvite, InvitePlan, NameAddr, NetworkContext,
    OutgoingCall, RegistrationPlan, RegistrationRequest, SipEvent, SipRejection, StatusUpdate,
};

struct NationalNumberMapping;

camara_plugin_sdk::session_status_conversion!(to_wit -> SessionStatus);

/// `tel:0312345678` or `tel:0312345678;phone-context=+81` -> `tel:+81312345678`.
fn international(address: &str) -> String {
    let Some(rest) = address.strip_prefix("tel:") else { return address.to_string() };
    let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
    let country = config::get("country-code").unwrap_or_default();
    let context_ok = params.is_empty() || params == format!("phone-context=+{country}");
    let trunk = config::get("trunk-prefix").unwrap_or_else(|| "0".into());
    match number.strip_prefix(trunk.as_str()) {
        Some(national) if context_ok && !number.starts_with('+') => format!("tel:+{country}{national}"),
        _ => address.to_string(),
    }
}

fn domain(key: &str, fallback: &str) -> String {
    config::get(key).unwrap_or_else(|| address::host_of(fallback).to_string())
}

fn invalid(message: String) -> CamaraError {
    CamaraError { status: 400, code: "INVALID_ARGUMENT".into(), message }
}

fn update((status, reason): (status::Status, String)) -> StatusUpdate {
    StatusUpdate { status: to_wit(status), reason }
}

impl MappingGuest for NationalNumberMapping {
    fn map_outgoing_call(call: OutgoingCall, net: NetworkContext) -> Result<InvitePlan, CamaraError> {
        let home = domain("home-domain", &net.local_host);
        let network = domain("network-domain", net.next_hop.as_deref().unwrap_or(&net.local_host));
        let receiver = international(&call.receiver_address);
        let request_uri = address::sip_uri(&receiver, &network).map_err(invalid)?;
        let from_uri = address::sip_uri(&international(&call.originator_address), &home).map_err(invalid)?;
        Ok(InvitePlan {
            to: NameAddr { display_name: call.receiver_name, uri: request_uri.clone() },
            request_uri,
            from: NameAddr { display_name: call.originator_name.clone(), uri: from_uri },
            p_asserted_identity: call
                .subscriber_phone_number
                .map(|n| NameAddr { display_name: call.originator_name, uri: format!("sip:{n}@{home};user=phone") }),
            privacy: (call.originator_address == address::ANONYMOUS).then(|| "id".to_string()),
            extra_headers: Vec::new(),
            body_parts: Vec::new(),
        })
    }

    fn map_registration(req: RegistrationRequest, net: NetworkContext) -> Result<RegistrationPlan, CamaraError> {
        Ok(RegistrationPlan {
            send_register: false,
            aor: format!("sip:{}@{}", req.phone_number, domain("home-domain", &net.local_host)),
            contact_user: req.phone_number,
        })
    }

    fn map_incoming_call(invite: IncomingInvite) -> Result<IncomingCall, SipRejection> {
        let target = address::phone_number(&invite.request_uri)
            .ok_or(SipRejection { status_code: 404, reason_phrase: "Not Found".into() })?;
        let identity = invite.p_asserted_identity.as_ref().unwrap_or(&invite.from);
        Ok(IncomingCall {
            target_phone_number: target.to_string(),
            originator_address: address::camara_address(&identity.uri),
            originator_name: identity.display_name.clone(),
            receiver_address: format!("tel:{target}"),
        })
    }

    fn map_sip_event(event: SipEvent, direction: CallDirection) -> Option<StatusUpdate> {
        let direction = match direction {
            CallDirection::Outgoing => status::Direction::Outgoing,
            CallDirection::Incoming => status::Direction::Incoming,
        };
        match event {
            SipEvent::InviteResponse(r) => status::for_invite_response(r.status_code, &r.reason_phrase).map(update),
            SipEvent::Request(r) => status::for_request(&r.method, direction).map(update),
            SipEvent::LocalHangup(method) => Some(update(status::for_local_hangup(&method, direction))),
            SipEvent::Timeout => Some(update(status::for_timeout())),
        }
    }
}

impl Guest for NationalNumberMapping {
    fn validate_config(config: Vec<Pair>) -> Result<(), String> {
        let country = config.iter().find(|p| p.name == "country-code").map(|p| p.value.as_str());
        match country {
            Some(c) if !c.is_empty() && c.len() <= 3 && c.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            Some(c) => Err(format!("country-code must be 1 to 3 digits, not {c:?}")),
            None => Err("country-code is required (e.g. 81)".into()),
        }
    }
}

export!(NationalNumberMapping);
