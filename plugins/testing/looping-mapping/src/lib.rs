//! An api-mapping plugin that never returns from `map-outgoing-call` when the receiver is
//! [`LOOPING_RECEIVER`], waits on the host's clock when it is [`STALLING_RECEIVER`], and maps
//! everything else plainly: a plugin with a bug that one input triggers, for the test that
//! floods it while other traffic goes on and the benchmark of a stalled call. Built for WIT 0.2.0.
//!
//! Config: `stall-ms`, how long a call to [`STALLING_RECEIVER`] sleeps (default 30 000).

wit_bindgen::generate!({
    world: "api-mapping",
    path: "../../../wit/v0.2.0",
});

use camara::gateway::types::{CallContext, CamaraError, SessionStatus};
use camara_plugin_sdk::{address, status};
use exports::camara::gateway::mapping::{
    Guest as MappingGuest, IncomingCall, IncomingInvite, InvitePlan, NameAddr, NetworkContext, OutgoingCall,
    RegistrationPlan, RegistrationRequest, SipEvent, SipRejection, StatusUpdate,
};

/// Calls to this number spin until the host's deadline stops them.
pub const LOOPING_RECEIVER: &str = "tel:+19995550100";
/// Calls to this number sleep (a WASI clock wait, outside the guest's code) for `stall-ms`.
pub const STALLING_RECEIVER: &str = "tel:+19995550101";

struct LoopingMapping;

camara_plugin_sdk::session_status_conversion!(to_wit -> SessionStatus);

fn invalid(message: String) -> CamaraError {
    CamaraError { status: 400, code: "INVALID_ARGUMENT".into(), message }
}

impl MappingGuest for LoopingMapping {
    fn map_outgoing_call(call: OutgoingCall, _: CallContext, net: NetworkContext) -> Result<InvitePlan, CamaraError> {
        if call.receiver_address == LOOPING_RECEIVER {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if call.receiver_address == STALLING_RECEIVER {
            let ms = camara::gateway::config::get("stall-ms").and_then(|v| v.parse().ok()).unwrap_or(30_000);
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let domain = address::host_of(&net.local_host).to_string();
        let request_uri = address::sip_uri(&call.receiver_address, &domain).map_err(invalid)?;
        let from = address::sip_uri(&call.originator_address, &domain).map_err(invalid)?;
        Ok(InvitePlan {
            to: NameAddr { display_name: None, uri: request_uri.clone() },
            request_uri,
            from: NameAddr { display_name: None, uri: from },
            p_asserted_identity: None,
            privacy: None,
            extra_headers: Vec::new(),
            body_parts: Vec::new(),
        })
    }

    fn map_registration(req: RegistrationRequest, net: NetworkContext) -> Result<RegistrationPlan, CamaraError> {
        Ok(RegistrationPlan {
            send_register: false,
            aor: format!("sip:{}@{}", req.phone_number, address::host_of(&net.local_host)),
            contact_user: req.phone_number,
        })
    }

    fn map_incoming_call(_: IncomingInvite, _: String) -> Result<IncomingCall, SipRejection> {
        Err(SipRejection { status_code: 404, reason_phrase: "Not Found".into() })
    }

    fn map_sip_event(event: SipEvent, call: CallContext) -> Option<StatusUpdate> {
        let direction = match call.direction {
            camara::gateway::types::CallDirection::Outgoing => status::Direction::Outgoing,
            camara::gateway::types::CallDirection::Incoming => status::Direction::Incoming,
        };
        let (s, reason) = match event {
            SipEvent::InviteResponse(r) => status::for_invite_response(r.status_code, &r.reason_phrase)?,
            SipEvent::Request(_) => status::for_request("BYE", direction)?,
            SipEvent::LocalHangup(_) => status::for_local_hangup("BYE", direction),
            SipEvent::Timeout => status::for_timeout(),
        };
        Some(StatusUpdate { status: to_wit(s), reason })
    }
}

impl Guest for LoopingMapping {
    fn validate_config(_config: Vec<Pair>) -> Result<(), String> {
        Ok(())
    }
}

export!(LoopingMapping);
