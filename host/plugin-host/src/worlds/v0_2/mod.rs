//! WIT package `camara:gateway@0.2.0`, the current one: its bindings and their conversions
//! from and to the facade types ([`crate::hooks`]).

pub mod authorization;
pub mod mapping;
pub mod routing;

use authorization::camara::gateway::types;

fn pairs(pairs: &[crate::hooks::Pair]) -> Vec<types::Pair> {
    pairs.iter().map(|p| types::Pair { name: p.name.clone(), value: p.value.clone() }).collect()
}

fn from_pairs(pairs: Vec<types::Pair>) -> Vec<crate::hooks::Pair> {
    pairs.into_iter().map(|p| crate::hooks::Pair { name: p.name, value: p.value }).collect()
}

fn camara_error(e: types::CamaraError) -> crate::hooks::CamaraError {
    crate::hooks::CamaraError { status: e.status, code: e.code, message: e.message }
}

fn direction(d: crate::hooks::CallDirection) -> types::CallDirection {
    match d {
        crate::hooks::CallDirection::Outgoing => types::CallDirection::Outgoing,
        crate::hooks::CallDirection::Incoming => types::CallDirection::Incoming,
    }
}

fn call_context(call: &crate::hooks::mapping::CallContext) -> types::CallContext {
    types::CallContext {
        session_id: call.session_id.clone(),
        direction: direction(call.direction),
        call_id: call.call_id.clone(),
    }
}

super::status_from_wit!(from_status, types::SessionStatus);
camara_plugin_sdk::session_status_conversion!(to_status -> types::SessionStatus);
