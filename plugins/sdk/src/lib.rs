//! Building blocks for gateway plugins, free of any WIT binding.
//!
//! Owns the pieces of the default behaviour that an operator's plugin is likely to keep while it
//! changes one thing: CAMARA address forms and their SIP URIs, the scopes of each CAMARA operation,
//! and the CAMARA reading of SIP outcomes. Plugins turn these plain values into their world's
//! generated types. Does not own any plugin world: it compiles for the host as well as for wasm.

pub mod address;
pub mod pidf;
pub mod scopes;
pub mod status;
