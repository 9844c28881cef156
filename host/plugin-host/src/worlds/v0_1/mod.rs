//! WIT package `camara:gateway@0.1.0`: its bindings and their conversions from and to the
//! facade types ([`crate::hooks`]). Kept so that components built for 0.1.0 keep loading.
//!
//! What 0.1.0 cannot carry is left out: the call context and SIP headers; claims, the location
//! and the CloudEvent cross as JSON text. Its `on-delivery-failure` is not asked by the gateway
//! (the host's schedule decides when: [`crate::RoutingPlugin::decides_retries`]).

pub mod authorization;
pub mod mapping;
pub mod routing;

/// The facade's pairs as this version's.
fn pairs(pairs: &[crate::hooks::Pair]) -> Vec<authorization::camara::gateway::types::Pair> {
    pairs
        .iter()
        .map(|p| authorization::camara::gateway::types::Pair { name: p.name.clone(), value: p.value.clone() })
        .collect()
}

fn from_pairs(pairs: Vec<authorization::camara::gateway::types::Pair>) -> Vec<crate::hooks::Pair> {
    pairs.into_iter().map(|p| crate::hooks::Pair { name: p.name, value: p.value }).collect()
}

fn camara_error(e: authorization::camara::gateway::types::CamaraError) -> crate::hooks::CamaraError {
    crate::hooks::CamaraError { status: e.status, code: e.code, message: e.message }
}
