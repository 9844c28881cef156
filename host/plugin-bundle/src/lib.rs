//! The default plugin bundle: the three default plugins of `plugins/`, compiled to WebAssembly
//! components by this crate's build script and embedded here.
//!
//! Owns the bytes and names of the defaults. Does not load or run them: the gateway loads them
//! through the same path as an operator's `.wasm` files.

/// One embedded component.
#[derive(Debug, Clone, Copy)]
pub struct BundledPlugin {
    /// The plugin crate's name, shown in logs.
    pub name: &'static str,
    pub wasm: &'static [u8],
}

pub const AUTHORIZATION: BundledPlugin = BundledPlugin {
    name: "authorization-default",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/authorization-default.wasm")),
};

pub const API_MAPPING: BundledPlugin = BundledPlugin {
    name: "api-mapping-default",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/api-mapping-default.wasm")),
};

pub const NOTIFICATION_ROUTING: BundledPlugin = BundledPlugin {
    name: "notification-routing-default",
    wasm: include_bytes!(concat!(env!("OUT_DIR"), "/notification-routing-default.wasm")),
};
