//! The device leg: one `RTCPeerConnection` (webrtc crate 0.17) per session, with exactly the
//! formats the bridge allows, and a track that sends what the relay hands it with the payload
//! types the relay chose (the crate's own static tracks rewrite every packet to one payload
//! type, which would turn telephone-event into voice).

use std::any::Any;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::RTCPFeedback;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType};
use webrtc::track::track_local::{TrackLocal, TrackLocalContext, TrackLocalWriter};

use crate::MediaError;
use crate::config::MediaConfig;
use crate::sdp::Format;

fn codec_parameters(format: &Format) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        capability: RTCRtpCodecCapability {
            mime_type: format.mime_type(),
            clock_rate: format.clock_rate,
            channels: format.channels,
            sdp_fmtp_line: format.fmtp.clone().unwrap_or_default(),
            rtcp_feedback: Vec::<RTCPFeedback>::new(),
        },
        payload_type: format.payload_type,
        ..Default::default()
    }
}

/// A peer connection that can negotiate only `formats`.
pub async fn peer_connection(config: &MediaConfig, formats: &[Format]) -> Result<Arc<RTCPeerConnection>, MediaError> {
    let mut media = MediaEngine::default();
    for format in formats {
        media.register_codec(codec_parameters(format), RTPCodecType::Audio)?;
    }
    // Sender and receiver reports (RTCP on the device leg) come with the default interceptors.
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut settings = SettingEngine::default();
    settings.set_lite(config.ice_lite);
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    let address = config.webrtc_address;
    settings.set_ip_filter(Box::new(move |ip| ip == address));
    settings.set_include_loopback_candidate(address.is_loopback());
    if let Some(announced) = config.webrtc_announced_address {
        settings.set_nat_1to1_ips(vec![announced.to_string()], RTCIceCandidateType::Host);
    }
    if let Some((min, max)) = config.webrtc_ports {
        settings.set_udp_network(UDPNetwork::Ephemeral(EphemeralUDP::new(min, max).map_err(webrtc::Error::Ice)?));
    }
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    Ok(Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?))
}

/// Waits until ICE has gathered every candidate, so the description needs no trickle.
pub async fn gathered_description(pc: &RTCPeerConnection) -> Result<String, MediaError> {
    let mut gathered = pc.gathering_complete_promise().await;
    let _ = gathered.recv().await;
    pc.local_description().await.map(|d| d.sdp).ok_or_else(|| MediaError::Sdp("no local description".into()))
}

struct Binding {
    ssrc: u32,
    writer: Arc<dyn TrackLocalWriter + Send + Sync>,
}

/// The track carrying the network's audio to the device.
pub struct RelayTrack {
    codec: RTCRtpCodecParameters,
    binding: Mutex<Option<Binding>>,
}

impl RelayTrack {
    pub fn new(voice: &Format) -> Arc<Self> {
        Arc::new(RelayTrack { codec: codec_parameters(voice), binding: Mutex::new(None) })
    }

    /// Sends `packet` (payload type, sequence number and timestamp set by the relay) with the
    /// SSRC negotiated for this track. Before the connection is up there is nowhere to send.
    pub async fn send(&self, mut packet: Packet) -> bool {
        let (ssrc, writer) = {
            let binding = self.binding.lock().unwrap_or_else(|e| e.into_inner());
            match binding.as_ref() {
                Some(b) => (b.ssrc, b.writer.clone()),
                None => return false,
            }
        };
        packet.header.ssrc = ssrc;
        writer.write_rtp(&packet).await.is_ok()
    }
}

#[async_trait]
impl TrackLocal for RelayTrack {
    async fn bind(&self, t: &TrackLocalContext) -> webrtc::error::Result<RTCRtpCodecParameters> {
        // Our own voice format when the device kept it, else the device's choice: the relay
        // sets every packet's payload type itself.
        let mime = self.codec.capability.mime_type.to_ascii_lowercase();
        let negotiated = t.codec_parameters();
        let codec = negotiated
            .iter()
            .find(|c| c.capability.mime_type.to_ascii_lowercase() == mime)
            .or_else(|| negotiated.first())
            .cloned()
            .ok_or(webrtc::Error::ErrUnsupportedCodec)?;
        *self.binding.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Binding { ssrc: t.ssrc(), writer: t.write_stream() });
        Ok(codec)
    }

    async fn unbind(&self, _t: &TrackLocalContext) -> webrtc::error::Result<()> {
        *self.binding.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    fn id(&self) -> &str {
        "audio"
    }

    fn rid(&self) -> Option<&str> {
        None
    }

    fn stream_id(&self) -> &str {
        "camara-gateway"
    }

    fn kind(&self) -> RTPCodecType {
        RTPCodecType::Audio
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
