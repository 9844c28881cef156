//! The gateway's own listeners, and bind errors that say which one failed and where: "Address
//! already in use" alone does not tell an operator which of five ports to change.
//!
//! The SIP listeners are bound by `camara-sip`, whose [`SipError::Listen`] names the transport;
//! [`sip_error`] says which of the gateway's SIP stacks it was (its own, or the demo endpoint's).
//! RTP and WebRTC media ports are bound per call, not at start: a call that finds none free fails
//! on its own.

use std::fmt;
use std::net::SocketAddr;

use camara_sip::{SipError, Transport};
use tokio::net::TcpListener;

/// What a listener is for, and the configuration key that moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The CAMARA APIs, the OAuth server, the relay, the softphone, `/metrics`, `/admin`.
    HttpApi,
    /// The gateway's SIP side towards the network.
    Sip(Transport),
    /// The demo SIP endpoint standing in for the network.
    DemoEndpoint,
    /// `camara-gateway relay`: the Notification Relay as its own process.
    Relay,
}

impl Listener {
    /// The setting that chooses the address.
    pub fn key(self) -> &'static str {
        match self {
            Listener::HttpApi => "[http] listen",
            Listener::Sip(Transport::Udp) => "[sip] udp_listen",
            Listener::Sip(Transport::Tcp) => "[sip] tcp_listen",
            Listener::Sip(Transport::Tls) => "[sip] tls_listen",
            Listener::DemoEndpoint => "[device_side] demo_endpoint_listen",
            Listener::Relay => "relay --listen",
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::HttpApi => f.write_str("the HTTP API"),
            Listener::Sip(transport) => write!(f, "SIP over {}", transport.via_name()),
            Listener::DemoEndpoint => f.write_str("the demo endpoint (SIP over UDP)"),
            Listener::Relay => f.write_str("the Notification Relay"),
        }
    }
}

/// A listener that could not be bound. The cause (in use, not a local address, privileged port)
/// is the source, so that `{:#}` prints it on the same line.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {listener} on {addr} (set by {})", listener.key())]
pub struct ListenError {
    pub listener: Listener,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds a TCP listener for `listener`.
pub async fn bind_tcp(listener: Listener, addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError { listener, addr, source })
}

/// An error of a SIP stack's start; a bind failure becomes the [`ListenError`] of `listener`.
pub fn sip_error(error: SipError, listener: impl FnOnce(Transport) -> Listener) -> anyhow::Error {
    match error {
        SipError::Listen { transport, addr, source } => {
            ListenError { listener: listener(transport), addr, source }.into()
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_named_with_its_listener_and_key() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind_tcp(Listener::HttpApi, addr).await.unwrap_err();
        assert_eq!(error.source.kind(), std::io::ErrorKind::AddrInUse);
        let text = format!("{:#}", anyhow::Error::from(error));
        assert!(
            text.starts_with(&format!("cannot listen for the HTTP API on {addr} (set by [http] listen): ")),
            "{text}"
        );
    }
}
