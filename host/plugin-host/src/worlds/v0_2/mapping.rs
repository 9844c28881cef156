//! The `api-mapping` world of 0.2.0.

wasmtime::component::bindgen!({
    world: "api-mapping",
    path: "../../wit/v0.2.0",
    exports: { default: async },
    with: {
        "camara:gateway/types": super::authorization::camara::gateway::types,
        "camara:gateway/log": super::authorization::camara::gateway::log,
        "camara:gateway/config": super::authorization::camara::gateway::config,
    },
});

use exports::camara::gateway::mapping as wit;
use serde_json::Value;

use super::authorization::camara::gateway::types::CallType;
use crate::hooks::CamaraError;
use crate::hooks::mapping::{self as hook, invalid_location};

super::super::plugin_world!(
    MappingWorld,
    crate::PluginKind::ApiMapping,
    "camara:gateway/mapping@0.2.0",
    ApiMapping,
    ApiMappingPre,
    super::authorization::camara::gateway::types::Pair
);

fn network(n: &hook::NetworkContext) -> wit::NetworkContext {
    wit::NetworkContext { local_host: n.local_host.clone(), next_hop: n.next_hop.clone() }
}

fn name_addr(n: &hook::NameAddr) -> wit::NameAddr {
    wit::NameAddr { display_name: n.display_name.clone(), uri: n.uri.clone() }
}

fn from_name_addr(n: wit::NameAddr) -> hook::NameAddr {
    hook::NameAddr { display_name: n.display_name, uri: n.uri }
}

fn method(name: &str) -> wit::SipMethod {
    use wit::SipMethod as M;
    match name.to_ascii_uppercase().as_str() {
        "INVITE" => M::Invite,
        "ACK" => M::Ack,
        "BYE" => M::Bye,
        "CANCEL" => M::Cancel,
        "UPDATE" => M::Update,
        "PRACK" => M::Prack,
        "INFO" => M::Info,
        "OPTIONS" => M::Options,
        "REFER" => M::Refer,
        "NOTIFY" => M::Notify,
        "MESSAGE" => M::Message,
        _ => M::Other(name.to_string()),
    }
}

/// CAMARA `locationDetails` as the typed record; which members a shape needs is the plugin's
/// to check (it answers the error the operator wants).
fn location(value: &Value) -> Result<wit::Location, String> {
    let coordinates = value.get("coordinates").ok_or("coordinates are required")?;
    let number = |field: &str| coordinates.get(field).and_then(Value::as_f64).filter(|n| n.is_finite());
    let required = |field: &str| number(field).ok_or_else(|| format!("coordinates.{field} must be a number"));
    let shape = match value.get("shape").and_then(Value::as_str).unwrap_or("Circle") {
        "Circle" => wit::LocationShape::Circle,
        "Ellipsoid" => wit::LocationShape::Ellipsoid,
        other => return Err(format!("shape {other:?} is not Circle or Ellipsoid")),
    };
    let confidence = match value.get("confidence") {
        None => None,
        Some(c) => Some(wit::Confidence {
            value: c.get("value").and_then(Value::as_f64).ok_or("confidence.value must be a number")?,
            pdf: match c.get("pdf").and_then(Value::as_str).unwrap_or("normal") {
                "normal" => wit::ConfidencePdf::Normal,
                "uniform" => wit::ConfidencePdf::Uniform,
                other => return Err(format!("confidence.pdf {other:?} is not normal or uniform")),
            },
        }),
    };
    let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_string);
    Ok(wit::Location {
        shape,
        coordinates: wit::Coordinates {
            latitude: required("latitude")?,
            longitude: required("longitude")?,
            radius: number("radius"),
            z_axis: number("zAxis"),
            semi_major_axis: number("semiMajorAxis"),
            semi_minor_axis: number("semiMinorAxis"),
            vertical_axis: number("verticalAxis"),
            orientation: number("orientation"),
        },
        confidence,
        method: text("method"),
        timestamp: text("timestamp"),
    })
}

impl super::super::Map for MappingWorld {
    async fn map_outgoing_call(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        request: &hook::OutgoingCall,
        call: &hook::CallContext,
        net: &hook::NetworkContext,
    ) -> wasmtime::Result<Result<hook::InvitePlan, CamaraError>> {
        let location = match request.location.as_ref().map(location).transpose() {
            Ok(l) => l,
            Err(why) => return Ok(Err(invalid_location(why))),
        };
        let outgoing = wit::OutgoingCall {
            originator_address: request.originator_address.clone(),
            originator_name: request.originator_name.clone(),
            receiver_address: request.receiver_address.clone(),
            receiver_name: request.receiver_name.clone(),
            call_type: match request.call_type {
                hook::CallType::Regular => CallType::Regular,
                hook::CallType::Emergency => CallType::Emergency,
            },
            subscriber_phone_number: request.subscriber_phone_number.clone(),
            location,
        };
        let mapping = instance.camara_gateway_mapping();
        let plan = mapping.call_map_outgoing_call(store, &outgoing, &super::call_context(call), &network(net)).await?;
        Ok(plan.map_err(super::camara_error).map(|p| hook::InvitePlan {
            request_uri: p.request_uri,
            from: from_name_addr(p.from),
            to: from_name_addr(p.to),
            p_asserted_identity: p.p_asserted_identity.map(from_name_addr),
            privacy: p.privacy,
            extra_headers: super::from_pairs(p.extra_headers),
            body_parts: p
                .body_parts
                .into_iter()
                .map(|b| hook::BodyPart { content_type: b.content_type, content_id: b.content_id, body: b.body })
                .collect(),
        }))
    }

    async fn map_registration(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        request: &hook::RegistrationRequest,
        net: &hook::NetworkContext,
    ) -> wasmtime::Result<Result<hook::RegistrationPlan, CamaraError>> {
        let request = wit::RegistrationRequest {
            phone_number: request.phone_number.clone(),
            device_id: request.device_id.clone(),
            registration_id: request.registration_id.clone(),
        };
        let plan = instance.camara_gateway_mapping().call_map_registration(store, &request, &network(net)).await?;
        Ok(plan.map_err(super::camara_error).map(|p| hook::RegistrationPlan {
            send_register: p.send_register,
            aor: p.aor,
            contact_user: p.contact_user,
        }))
    }

    async fn map_incoming_call(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        invite: &hook::IncomingInvite,
        call_id: &str,
    ) -> wasmtime::Result<Result<hook::IncomingCall, hook::SipRejection>> {
        store.data_mut().sip_headers = invite.headers.clone();
        let wit_invite = wit::IncomingInvite {
            request_uri: invite.request_uri.clone(),
            from: name_addr(&invite.from),
            to: name_addr(&invite.to),
            p_asserted_identity: invite.p_asserted_identity.as_ref().map(name_addr),
            privacy: invite.privacy.clone(),
        };
        let call = instance.camara_gateway_mapping().call_map_incoming_call(store, &wit_invite, call_id).await?;
        Ok(call
            .map(|c| hook::IncomingCall {
                target_phone_number: c.target_phone_number,
                originator_address: c.originator_address,
                originator_name: c.originator_name,
                receiver_address: c.receiver_address,
            })
            .map_err(|r| hook::SipRejection { status_code: r.status_code, reason_phrase: r.reason_phrase }))
    }

    async fn map_sip_event(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        event: &hook::SipEvent,
        call: &hook::CallContext,
    ) -> wasmtime::Result<Option<hook::StatusUpdate>> {
        store.data_mut().sip_headers = event.headers().to_vec();
        let event = match event {
            hook::SipEvent::InviteResponse(r) => wit::SipEvent::InviteResponse(wit::SipResponse {
                status_code: r.status_code,
                reason_phrase: r.reason_phrase.clone(),
                has_sdp: r.has_sdp,
                reliable: r.reliable,
            }),
            hook::SipEvent::Request(r) => wit::SipEvent::Request(wit::SipRequest {
                method: method(&r.method),
                reason: r.reason.clone(),
                has_sdp: r.has_sdp,
            }),
            hook::SipEvent::LocalHangup(m) => wit::SipEvent::LocalHangup(method(m)),
            hook::SipEvent::Timeout => wit::SipEvent::Timeout,
        };
        let mapping = instance.camara_gateway_mapping();
        let update = mapping.call_map_sip_event(store, &event, &super::call_context(call)).await?;
        Ok(update.map(|u| hook::StatusUpdate { status: super::from_status(u.status), reason: u.reason }))
    }
}
