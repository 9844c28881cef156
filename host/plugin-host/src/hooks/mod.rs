//! What the gateway hands each hook and gets back, in plain Rust: the plugin facade.
//!
//! These types are the only ones the gateway sees. Each WIT version's module
//! ([`crate::worlds`]) converts them to and from its generated bindings, so a plugin built for
//! any supported version runs behind the same calls. A type holds the union of what the versions
//! carry (the call context and SIP headers are new in 0.2.0 and left out for a 0.1.0 plugin).

pub mod authorization;
pub mod mapping;
pub mod routing;

pub use camara_plugin_sdk::status::{Direction as CallDirection, Status as SessionStatus};

/// A CAMARA error body a plugin decided on: the HTTP status, the CAMARA code and a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CamaraError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// A header or configuration entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    pub name: String,
    pub value: String,
}

impl Pair {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Pair { name: name.into(), value: value.into() }
    }
}
