//! Audio codecs for the media anchor: G.711 (PCMU/PCMA) and streaming
//! transcoding between Opus (the WebRTC device's leg) and G.711 (the SIP
//! network's leg).
//!
//! This crate owns the audio samples and bytes only. It does not do RTP
//! (headers, sequence numbers, timestamps, payload types), timing, jitter
//! buffering, SDP negotiation or networking: the media crate does, and hands
//! payloads in and out here.
//!
//! ```
//! use camara_codec::{G711ToOpus, Law, OpusToG711};
//!
//! // One of each per call whose device has only Opus, owned by its call leg.
//! let mut towards_device = G711ToOpus::new(Law::A)?;
//! let mut towards_network = OpusToG711::new(Law::A)?;
//!
//! let mut opus_payloads = Vec::new();
//! towards_device.transcode(&[0xD5; 160], &mut opus_payloads)?; // 20 ms of A-law silence
//! assert_eq!(opus_payloads.len(), 1);
//!
//! let mut g711 = Vec::new();
//! towards_network.transcode(&opus_payloads[0], &mut g711)?;
//! assert_eq!(g711.len(), 160);
//! # Ok::<(), camara_codec::CodecError>(())
//! ```
//!
//! # RTP timestamps are the caller's job
//!
//! The Opus RTP clock is always 48 kHz (RFC 7587), G.711's is 8 kHz, so a
//! 20 ms packet advances the timestamp by 960 ticks on the Opus leg
//! ([`OPUS_FRAME_SAMPLES`]) and by 160 on the G.711 leg
//! ([`G711_FRAME_SAMPLES`], also its byte count). Scale by 6 between legs.
//! [`OpusToG711`] returns exactly one G.711 byte per 6 Opus ticks the payload
//! covers; [`G711ToOpus`] returns one payload per 960 ticks.
//!
//! # Delay
//!
//! Resampling adds 5 ms in each direction (see the `resample` module); the
//! Opus codec adds its own look-ahead on top. Frames of 2.5 or 5 ms add up to
//! 7.5 ms more, once (see [`OpusToG711`]).
//!
//! # Which Opus implementation, and why
//!
//! Opus comes from [`ropus`], a Rust port of the reference libopus
//! (fixed-point build) that its authors test bit-exact against the C code.
//! It needs no C library, no cmake and no pkg-config, so the gateway builds
//! on a machine with only a Rust toolchain (its build script compiles C only
//! in a development checkout that carries libopus's neural-network weight
//! sources, which the published crate does not). Checked before choosing
//! it: its decoder matches libopus 1.3.1 (the c2rust translation
//! `unsafe-libopus`) to within 6 LSB on SILK, hybrid and CELT packets of 2.5
//! to 60 ms, and packets from its encoder decode with libopus.
//!
//! Rejected:
//! - `opus`, `magnum-opus`, `audiopus`, `opus2`, `opus-codec` and their
//!   `-sys` crates (`opusic-sys`, `audiopus_sys`, `libopus_sys`,
//!   `opus-static-sys`, `opus-head-sys`): they bind the real libopus but
//!   build it with cmake, or link a system libopus found with pkg-config;
//!   `opus-sys` only links a system libopus.
//! - `unsafe-libopus`: libopus 1.3.1 machine-translated to Rust, so no C
//!   build either, but its only API is libopus's, raw pointers and all.
//! - `opus-rs`: pure Rust, but its decoder strays from libopus on hybrid
//!   packets (27 dB SNR against libopus's output where `ropus` reaches
//!   77 dB), and hybrid is what libopus sends for 48 kHz voice at 32 kbps.
//! - `mousiki`: pure Rust, but its packets and libopus's did not decode
//!   correctly across the two.

mod error;
mod resample;
mod transcode;

pub mod analysis;
pub mod g711;

pub use error::CodecError;
pub use g711::Law;
pub use transcode::{G711ToOpus, MAX_CONCEAL_MS, OpusToG711};

/// Opus's sample rate here, and the Opus RTP clock rate (RFC 7587).
pub const OPUS_SAMPLE_RATE: u32 = 48_000;

/// G.711's sample rate, and its RTP clock rate.
pub const G711_SAMPLE_RATE: u32 = 8_000;

/// The packet duration both legs use, in ms.
pub const FRAME_MS: u32 = 20;

/// Samples, and RTP timestamp ticks, in one 20 ms Opus frame.
pub const OPUS_FRAME_SAMPLES: usize = 960;

/// Samples, bytes and RTP timestamp ticks in 20 ms of G.711.
pub const G711_FRAME_SAMPLES: usize = 160;

/// The Opus encoder's target bitrate: what browsers use for mono voice.
pub const OPUS_BITRATE_BPS: u32 = 32_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcoders_can_move_to_the_task_of_their_call_leg() {
        fn assert_send<T: Send>() {}
        assert_send::<OpusToG711>();
        assert_send::<G711ToOpus>();
        assert_send::<CodecError>();
    }

    #[test]
    fn frame_constants_agree() {
        assert_eq!(OPUS_FRAME_SAMPLES, (OPUS_SAMPLE_RATE * FRAME_MS / 1000) as usize);
        assert_eq!(G711_FRAME_SAMPLES, (G711_SAMPLE_RATE * FRAME_MS / 1000) as usize);
    }
}
