//! The CAMARA WebRTC gateway host.
//!
//! Owns what the gateway does natively: the HTTP API (the CAMARA webrtc-registration,
//! webrtc-call-handling and webrtc-events APIs), access-token verification, the API-visible state,
//! call control over the SIP user agent, and the Notification Service that POSTs CloudEvents.
//! Does not own decisions an operator may change: authorization policy, API mapping and
//! notification routing are WebAssembly plugins (`camara-plugin-host`), nor the SIP protocol
//! machinery (`camara-sip`).

pub mod admin;
pub mod api;
pub mod app;
pub mod bindings;
pub mod call_actors;
pub mod calls;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod device_pages;
pub mod error;
pub mod health;
pub mod http_client;
pub mod incoming;
pub mod lifecycle;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod plugins;
pub mod recovery;
pub mod schedule;
pub mod shutdown;
pub mod sink_policy;
pub mod store;
pub mod validate;

pub use app::{Gateway, RunningGateway, start};
pub use config::GatewayConfig;
