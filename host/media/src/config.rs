//! What an operator configures about media.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::negotiate::CodecPolicy;

#[derive(Clone, Debug)]
pub struct MediaConfig {
    /// The address of the RTP leg: bound, and written in `c=` towards the network.
    pub network_address: IpAddr,
    /// The even RTP ports (RTCP on the odd port above) of the network leg.
    pub rtp_ports: (u16, u16),
    /// The address ICE gathers its host candidate on, towards devices.
    pub webrtc_address: IpAddr,
    /// The public address to announce instead, when `webrtc_address` sits behind a 1:1 NAT.
    pub webrtc_announced_address: Option<IpAddr>,
    /// The UDP ports of the WebRTC leg; any free port when `None`.
    pub webrtc_ports: Option<(u16, u16)>,
    /// ICE lite (RFC 8445 2.5): for a gateway on a public address. Off by default: full ICE
    /// also works behind NAT and with offerers that expect a controlling peer.
    pub ice_lite: bool,
    /// No RTP from the network for this long ends the call.
    pub media_timeout: Duration,
    /// How long the device leg may be without ICE connectivity before it is reported failed.
    pub device_failure_grace: Duration,
    pub codecs: CodecPolicy,
}

impl Default for MediaConfig {
    fn default() -> Self {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        MediaConfig {
            network_address: loopback,
            rtp_ports: (30000, 39999),
            webrtc_address: loopback,
            webrtc_announced_address: None,
            webrtc_ports: None,
            ice_lite: false,
            media_timeout: Duration::from_secs(30),
            device_failure_grace: Duration::from_secs(10),
            codecs: CodecPolicy::default(),
        }
    }
}
