//! The `api-mapping` world of 0.1.0.

wasmtime::component::bindgen!({
    world: "api-mapping",
    path: "../../wit/v0.1.0",
    exports: { default: async },
    with: {
        "camara:gateway/types": super::authorization::camara::gateway::types,
        "camara:gateway/log": super::authorization::camara::gateway::log,
        "camara:gateway/config": super::authorization::camara::gateway::config,
    },
});

use super::authorization::camara::gateway::types::{CallType, SessionStatus};
use exports::camara::gateway::mapping as wit;

use crate::hooks::mapping as hook;
use crate::hooks::{CallDirection, CamaraError};

super::super::plugin_world!(
    MappingWorld,
    crate::PluginKind::ApiMapping,
    "camara:gateway/mapping@0.1.0",
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

super::super::status_from_wit!(from_status, SessionStatus);

fn error(e: super::authorization::camara::gateway::types::CamaraError) -> CamaraError {
    super::camara_error(e)
}

impl super::super::Map for MappingWorld {
    async fn map_outgoing_call(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        request: &hook::OutgoingCall,
        _call: &hook::CallContext,
        net: &hook::NetworkContext,
    ) -> wasmtime::Result<Result<hook::InvitePlan, CamaraError>> {
        let call = wit::OutgoingCall {
            originator_address: request.originator_address.clone(),
            originator_name: request.originator_name.clone(),
            receiver_address: request.receiver_address.clone(),
            receiver_name: request.receiver_name.clone(),
            call_type: match request.call_type {
                hook::CallType::Regular => CallType::Regular,
                hook::CallType::Emergency => CallType::Emergency,
            },
            subscriber_phone_number: request.subscriber_phone_number.clone(),
            location_json: request.location.as_ref().map(|l| l.to_string()),
        };
        let plan = instance.camara_gateway_mapping().call_map_outgoing_call(store, &call, &network(net)).await?;
        Ok(plan.map_err(error).map(|p| hook::InvitePlan {
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
        Ok(plan.map_err(error).map(|p| hook::RegistrationPlan {
            send_register: p.send_register,
            aor: p.aor,
            contact_user: p.contact_user,
        }))
    }

    async fn map_incoming_call(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        invite: &hook::IncomingInvite,
        _call_id: &str,
    ) -> wasmtime::Result<Result<hook::IncomingCall, hook::SipRejection>> {
        let invite = wit::IncomingInvite {
            request_uri: invite.request_uri.clone(),
            from: name_addr(&invite.from),
            to: name_addr(&invite.to),
            p_asserted_identity: invite.p_asserted_identity.as_ref().map(name_addr),
            privacy: invite.privacy.clone(),
            headers: super::pairs(&invite.headers),
        };
        let call = instance.camara_gateway_mapping().call_map_incoming_call(store, &invite).await?;
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
        let event = match event {
            hook::SipEvent::InviteResponse(r) => wit::SipEvent::InviteResponse(wit::SipResponse {
                status_code: r.status_code,
                reason_phrase: r.reason_phrase.clone(),
                has_sdp: r.has_sdp,
                reliable: r.reliable,
            }),
            hook::SipEvent::Request(r) => wit::SipEvent::Request(wit::SipRequest {
                method: r.method.clone(),
                reason: r.reason.clone(),
                has_sdp: r.has_sdp,
            }),
            hook::SipEvent::LocalHangup(method) => wit::SipEvent::LocalHangup(method.clone()),
            hook::SipEvent::Timeout => wit::SipEvent::Timeout,
        };
        let direction = match call.direction {
            CallDirection::Outgoing => wit::CallDirection::Outgoing,
            CallDirection::Incoming => wit::CallDirection::Incoming,
        };
        let update = instance.camara_gateway_mapping().call_map_sip_event(store, &event, direction).await?;
        Ok(update.map(|u| hook::StatusUpdate { status: from_status(u.status), reason: u.reason }))
    }
}
