use thiserror::Error;

/// Everything that can go wrong while transcoding one call leg's audio.
///
/// `InvalidOpusPayload` is the one a relay meets in normal operation (a peer
/// sent a malformed packet): drop that packet and go on, as for a lost one.
/// The others point at a bug or a misuse of this crate.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The Opus library refused to create an encoder or a decoder.
    #[error("cannot create the Opus {role}: {reason}")]
    OpusSetup { role: &'static str, reason: String },

    /// The payload is not a valid Opus packet (RFC 6716 section 3).
    #[error("invalid Opus payload of {len} bytes: {reason}")]
    InvalidOpusPayload { len: usize, reason: String },

    /// The Opus decoder failed on a packet it accepted as valid.
    #[error("Opus decoding failed: {0}")]
    OpusDecode(String),

    /// The Opus encoder failed on a complete 20 ms frame.
    #[error("Opus encoding failed: {0}")]
    OpusEncode(String),

    /// Opus conceals whole 2.5 ms steps, so a lost stretch must be a multiple
    /// of 5 ms when counted in whole milliseconds, and at most one maximal
    /// Opus packet long.
    #[error("cannot conceal {duration_ms} ms: give a multiple of 5 ms, at most {max_ms} ms")]
    UnsupportedConcealDuration { duration_ms: u32, max_ms: u32 },

    /// The resampler between 48 kHz and 8 kHz failed.
    #[error("resampling failed: {0}")]
    Resample(String),
}
