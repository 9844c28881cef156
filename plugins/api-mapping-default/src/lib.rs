//! Default API mapping of the CAMARA WebRTC gateway.
//!
//! Owns the translation between CAMARA objects and SIP: addresses to SIP URIs (E.164 numbers as
//! `sip:+N@domain;user=phone`, home local numbers with their `phone-context`, emergency URNs,
//! anonymous callers with `Privacy: id`), the registration mode, the target of incoming INVITEs,
//! and SIP outcomes as CAMARA session statuses. Does not own the SIP stack: the host builds,
//! sends and matches the messages.
//!
//! Configuration keys:
//! - `home-domain`: domain of the subscribers' own URIs (From, P-Asserted-Identity, AOR);
//!   default: the gateway's host.
//! - `network-domain`: domain of request URIs towards the network; default: the next hop's host,
//!   else the gateway's host.
//! - `registration-mode`: `number-range` (default, no REGISTER) or `sip-account` (REGISTER).
//! - `forking`: which registered devices an incoming call rings, `all` (default), `most-recent`
//!   or `sequential`; read by the host, which does the ringing, and checked here.

wit_bindgen::generate!({
    world: "api-mapping",
    path: "../../wit/v0.2.0",
});

use camara::gateway::types::{CallContext, CallDirection, CallType, CamaraError, SessionStatus};
use camara::gateway::{config, sip_message};
use camara_plugin_sdk::{address, pidf, status};
use exports::camara::gateway::mapping::{
    BodyPart, ConfidencePdf, Guest as MappingGuest, IncomingCall, IncomingInvite, InvitePlan, Location, LocationShape,
    NameAddr, NetworkContext, OutgoingCall, RegistrationPlan, RegistrationRequest, SipEvent, SipMethod, SipRejection,
    StatusUpdate,
};

struct DefaultMapping;

camara_plugin_sdk::session_status_conversion!(to_wit -> SessionStatus);

fn home_domain(net: &NetworkContext) -> String {
    config::get("home-domain").unwrap_or_else(|| address::host_of(&net.local_host).to_string())
}

fn network_domain(net: &NetworkContext) -> String {
    config::get("network-domain")
        .or_else(|| net.next_hop.as_deref().map(|h| address::host_of(h).to_string()))
        .unwrap_or_else(|| address::host_of(&net.local_host).to_string())
}

fn invalid(message: String) -> CamaraError {
    CamaraError { status: 400, code: "INVALID_ARGUMENT".into(), message }
}

fn name_addr(display_name: Option<&String>, uri: String) -> NameAddr {
    NameAddr { display_name: display_name.filter(|n| !n.is_empty()).cloned(), uri }
}

fn update((status, reason): (status::Status, String)) -> StatusUpdate {
    StatusUpdate { status: to_wit(status), reason }
}

fn method_name(method: &SipMethod) -> &str {
    match method {
        SipMethod::Invite => "INVITE",
        SipMethod::Ack => "ACK",
        SipMethod::Bye => "BYE",
        SipMethod::Cancel => "CANCEL",
        SipMethod::Update => "UPDATE",
        SipMethod::Prack => "PRACK",
        SipMethod::Info => "INFO",
        SipMethod::Options => "OPTIONS",
        SipMethod::Refer => "REFER",
        SipMethod::Notify => "NOTIFY",
        SipMethod::Message => "MESSAGE",
        SipMethod::Other(name) => name,
    }
}

fn location(l: Location) -> pidf::Location {
    let c = l.coordinates;
    pidf::Location {
        shape: match l.shape {
            LocationShape::Circle => pidf::Shape::Circle,
            LocationShape::Ellipsoid => pidf::Shape::Ellipsoid,
        },
        latitude: c.latitude,
        longitude: c.longitude,
        radius: c.radius,
        z_axis: c.z_axis,
        semi_major_axis: c.semi_major_axis,
        semi_minor_axis: c.semi_minor_axis,
        vertical_axis: c.vertical_axis,
        orientation: c.orientation,
        confidence: l
            .confidence
            .map(|c| (c.value, if c.pdf == ConfidencePdf::Uniform { pidf::Pdf::Uniform } else { pidf::Pdf::Normal })),
        method: l.method,
        timestamp: l.timestamp,
    }
}

impl MappingGuest for DefaultMapping {
    fn map_outgoing_call(call: OutgoingCall, _: CallContext, net: NetworkContext) -> Result<InvitePlan, CamaraError> {
        let home = home_domain(&net);
        let request_uri = address::sip_uri(&call.receiver_address, &network_domain(&net)).map_err(invalid)?;
        let to = name_addr(call.receiver_name.as_ref(), request_uri.clone());
        let (from, privacy) = if call.originator_address == address::ANONYMOUS {
            (NameAddr { display_name: Some("Anonymous".into()), uri: address::ANONYMOUS.into() }, Some("id".into()))
        } else {
            let uri = address::sip_uri(&call.originator_address, &home).map_err(invalid)?;
            (name_addr(call.originator_name.as_ref(), uri), None)
        };
        // The network trusts the gateway to assert who calls, also when the caller hides it.
        let p_asserted_identity = call
            .subscriber_phone_number
            .as_ref()
            .map(|n| name_addr(call.originator_name.as_ref(), format!("sip:{n}@{home};user=phone")));
        let emergency = call.call_type == CallType::Emergency || call.receiver_address.starts_with("urn:service:sos");
        let mut extra_headers =
            if emergency { vec![Pair { name: "Priority".into(), value: "emergency".into() }] } else { Vec::new() };
        // RFC 6442: an emergency call carries the caller's location by value, as PIDF-LO.
        let mut body_parts = Vec::new();
        if let (true, Some(caller_location)) = (emergency, call.location) {
            let entity = p_asserted_identity.as_ref().map_or_else(|| from.uri.clone(), |p| p.uri.clone());
            let document = pidf::pidf_lo(&location(caller_location), &entity).map_err(invalid)?;
            let content_id = format!("caller-location@{home}");
            extra_headers.push(Pair { name: "Geolocation".into(), value: format!("<cid:{content_id}>") });
            extra_headers.push(Pair { name: "Geolocation-Routing".into(), value: "yes".into() });
            body_parts.push(BodyPart {
                content_type: "application/pidf+xml".into(),
                content_id: Some(content_id),
                body: document,
            });
        }
        Ok(InvitePlan { request_uri, from, to, p_asserted_identity, privacy, extra_headers, body_parts })
    }

    fn map_registration(req: RegistrationRequest, net: NetworkContext) -> Result<RegistrationPlan, CamaraError> {
        let send_register = config::get("registration-mode").as_deref() == Some("sip-account");
        Ok(RegistrationPlan {
            send_register,
            aor: format!("sip:{}@{}", req.phone_number, home_domain(&net)),
            contact_user: req.phone_number,
        })
    }

    fn map_incoming_call(invite: IncomingInvite, _call_id: String) -> Result<IncomingCall, SipRejection> {
        let Some(target) = address::phone_number(&invite.request_uri).or_else(|| address::phone_number(&invite.to.uri))
        else {
            return Err(SipRejection { status_code: 404, reason_phrase: "Not Found".into() });
        };
        let hidden = invite.privacy.as_deref().is_some_and(address::privacy_hides_identity);
        let (originator_address, originator_name) = if hidden {
            (address::ANONYMOUS.to_string(), None)
        } else {
            let identity = invite.p_asserted_identity.as_ref().unwrap_or(&invite.from);
            let name = identity.display_name.clone().or_else(|| invite.from.display_name.clone());
            (address::camara_address(&identity.uri), name)
        };
        Ok(IncomingCall {
            target_phone_number: target.to_string(),
            originator_address,
            originator_name,
            receiver_address: format!("tel:{target}"),
        })
    }

    fn map_sip_event(event: SipEvent, call: CallContext) -> Option<StatusUpdate> {
        let direction = match call.direction {
            CallDirection::Outgoing => status::Direction::Outgoing,
            CallDirection::Incoming => status::Direction::Incoming,
        };
        match event {
            SipEvent::InviteResponse(r) => {
                let (status, mut reason) = status::for_invite_response(r.status_code, &r.reason_phrase)?;
                // A refusal's RFC 3326 Reason (a Q.850 cause, say) tells an operator why.
                if r.status_code >= 300
                    && let Some(cause) = sip_message::header("Reason")
                {
                    reason = format!("{reason} (Reason: {cause})");
                }
                Some(update((status, reason)))
            }
            SipEvent::Request(r) => status::for_request(method_name(&r.method), direction).map(update),
            SipEvent::LocalHangup(method) => Some(update(status::for_local_hangup(method_name(&method), direction))),
            SipEvent::Timeout => Some(update(status::for_timeout())),
        }
    }
}

impl Guest for DefaultMapping {
    fn validate_config(config: Vec<Pair>) -> Result<(), String> {
        for Pair { name, value } in &config {
            match name.as_str() {
                "home-domain" | "network-domain" if value.is_empty() || value.contains([' ', '@', ';']) => {
                    return Err(format!("{name} must be a host name, not {value:?}"));
                }
                "home-domain" | "network-domain" => {}
                "registration-mode" if value == "number-range" || value == "sip-account" => {}
                "registration-mode" => {
                    return Err(format!("registration-mode must be number-range or sip-account, not {value:?}"));
                }
                // Read by the host: which registered devices an incoming call rings.
                "forking" if ["all", "most-recent", "sequential"].contains(&value.as_str()) => {}
                "forking" => return Err(format!("forking must be all, most-recent or sequential, not {value:?}")),
                other => return Err(format!("unknown configuration key {other:?}")),
            }
        }
        Ok(())
    }
}

export!(DefaultMapping);
