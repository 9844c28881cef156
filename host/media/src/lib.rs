//! The media anchor: for each call, a WebRTC leg towards the device (ICE, DTLS-SRTP, BUNDLE,
//! rtcp-mux, through the `webrtc` crate) and a plain RTP leg towards the SIP network, and the
//! relay between them (payload-type mapping, SSRC/sequence/timestamp continuity, RFC 4733
//! events, Opus <-> G.711 transcoding, hold, symmetric RTP, media timeout).
//!
//! It owns SDP interworking between the legs (`sdp`, `negotiate`) and the sockets of both legs.
//! It does not own SIP or the API: the gateway hands it offers and answers and gets back the
//! descriptions to send on, and hears of a silent network or a vanished device through
//! [`MediaEvent`].

pub mod config;
mod device_watch;
pub mod negotiate;
pub mod relay;
mod rtp_stats;
pub mod sdp;
mod session;
mod webrtc_leg;

pub use config::MediaConfig;
pub use negotiate::{Bridge, CodecPolicy};
pub use relay::{Relay, RelayStats};
pub use rtp_stats::Reception;
pub use sdp::{Direction, Encoding};
pub use session::{MediaAnchor, MediaEvent, MediaSession};

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("SDP: {0}")]
    Sdp(String),
    #[error("no codec in common between the device and the network")]
    NoCommonCodec,
    #[error("no free RTP port in the configured range")]
    NoPorts,
    #[error("the session is not in a state for this: {0}")]
    State(&'static str),
    #[error("WebRTC: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("codec: {0}")]
    Codec(#[from] camara_codec::CodecError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
