//! The two streaming transcoders of a call whose device has only Opus: one
//! per direction, each owned by the call leg that feeds it (no locking).

use ropus::{Application, Bandwidth, Bitrate, Channels, DecodeError, DecodeMode, Decoder, Encoder};

use crate::g711::{self, Law};
use crate::resample::{BlockResampler, RATE_RATIO, to_i16};
use crate::{CodecError, OPUS_BITRATE_BPS, OPUS_FRAME_SAMPLES, OPUS_SAMPLE_RATE};

/// The longest Opus packet (RFC 6716: 120 ms), in 48 kHz samples.
const MAX_OPUS_PACKET_SAMPLES: usize = 5760;

/// The longest stretch [`OpusToG711::conceal`] fills in one call: one
/// maximal Opus packet. A longer gap is not a lost packet but a stream that
/// stopped, and Opus's concealment would have faded to silence long before.
pub const MAX_CONCEAL_MS: u32 = 120;

/// Room for one encoded 20 ms frame: RFC 6716 caps a frame at 1275 bytes
/// plus the table-of-contents byte.
const MAX_OPUS_PAYLOAD_BYTES: usize = 1276;

/// Encoder effort, 0..=10: a density choice. 5 takes about 40 % less CPU
/// than libopus's default of 9 (154 against 258 us per frame, see
/// BENCHMARKS.md), and the encoder is most of a transcoded call's cost. The
/// audio has already been through an 8 kHz telephone network; raise this if
/// listening says otherwise.
const OPUS_ENCODER_COMPLEXITY: u8 = 5;

/// Opus RTP payload -> G.711 bytes, for audio from the device to the network.
///
/// Decodes at 48 kHz mono, resamples to 8 kHz and compands. Each call
/// returns G.711 bytes for exactly the duration the payload carries (8 bytes
/// per ms), whatever the Opus frame size (2.5 to 60 ms, or several frames up
/// to 120 ms in one packet).
///
/// The resampler works on 10 ms blocks, so frames of 10 ms or more cost no
/// extra delay. A stream of 2.5 or 5 ms frames cannot fill a block with its
/// first packet: the first time output would run short, the shortfall (at
/// most 7.5 ms) is inserted as silence in front, and from then on that much
/// extra delay keeps every later packet's output whole.
pub struct OpusToG711 {
    law: Law,
    decoder: Decoder,
    /// Decoder output for one packet, 48 kHz.
    decoded: Vec<i16>,
    /// 48 kHz samples short of a whole resampler block.
    awaiting_resampling: Vec<f32>,
    /// 8 kHz samples resampled but not yet handed out.
    awaiting_output: Vec<f32>,
    downsampler: BlockResampler,
    /// Output of one call at 8 kHz, before companding.
    pcm_8k: Vec<i16>,
}

impl OpusToG711 {
    /// A transcoder that writes G.711 with the companding `law`.
    pub fn new(law: Law) -> Result<Self, CodecError> {
        let decoder = Decoder::new(OPUS_SAMPLE_RATE, Channels::Mono)
            .map_err(|error| CodecError::OpusSetup { role: "decoder", reason: error.to_string() })?;
        Ok(Self {
            law,
            decoder,
            decoded: vec![0; MAX_OPUS_PACKET_SAMPLES],
            awaiting_resampling: Vec::new(),
            awaiting_output: Vec::new(),
            downsampler: BlockResampler::down_48k_to_8k()?,
            pcm_8k: Vec::new(),
        })
    }

    /// Decodes one Opus RTP payload and appends its G.711 bytes to `out`:
    /// one byte per 6 samples (RTP ticks) the payload carries.
    ///
    /// On [`CodecError::InvalidOpusPayload`] nothing is appended and the
    /// stream goes on: treat the packet as lost.
    pub fn transcode(&mut self, opus_payload: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if opus_payload.is_empty() {
            // The decoder would take an empty payload as a lost packet; a
            // loss should be said so explicitly, with its duration.
            return Err(CodecError::InvalidOpusPayload {
                len: 0,
                reason: "empty payload (use conceal() for a lost packet)".to_owned(),
            });
        }
        let decoded =
            self.decoder.decode(opus_payload, &mut self.decoded, DecodeMode::Normal).map_err(|error| match error {
                DecodeError::InvalidPacket => {
                    CodecError::InvalidOpusPayload { len: opus_payload.len(), reason: error.to_string() }
                }
                other => CodecError::OpusDecode(other.to_string()),
            })?;
        self.resample_and_compand(decoded, out)
    }

    /// Appends `duration_ms` of G.711 that Opus's packet loss concealment
    /// makes up from the audio before, for a packet that never came.
    ///
    /// `duration_ms` is usually the lost packet's duration (from the RTP
    /// timestamp gap, in 48 kHz ticks / 48); it must be a multiple of 5 ms
    /// and at most [`MAX_CONCEAL_MS`]. 0 appends nothing.
    pub fn conceal(&mut self, duration_ms: u32, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if !duration_ms.is_multiple_of(5) || duration_ms > MAX_CONCEAL_MS {
            return Err(CodecError::UnsupportedConcealDuration { duration_ms, max_ms: MAX_CONCEAL_MS });
        }
        if duration_ms == 0 {
            return Ok(());
        }
        let samples = duration_ms as usize * (OPUS_SAMPLE_RATE / 1000) as usize;
        let concealed = self
            .decoder
            .decode(&[], &mut self.decoded[..samples], DecodeMode::Normal)
            .map_err(|error| CodecError::OpusDecode(error.to_string()))?;
        self.resample_and_compand(concealed, out)
    }

    fn resample_and_compand(&mut self, decoded: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.awaiting_resampling.extend(self.decoded[..decoded].iter().map(|&sample| f32::from(sample)));
        self.downsampler.process_whole_blocks(&mut self.awaiting_resampling, &mut self.awaiting_output)?;
        // Opus durations are whole 2.5 ms steps, so this division is exact.
        let owed = decoded / RATE_RATIO;
        if self.awaiting_output.len() < owed {
            let shortfall = owed - self.awaiting_output.len();
            self.awaiting_output.splice(0..0, std::iter::repeat_n(0.0, shortfall));
        }
        self.pcm_8k.clear();
        self.pcm_8k.extend(self.awaiting_output.drain(..owed).map(to_i16));
        g711::encode(self.law, &self.pcm_8k, out);
        Ok(())
    }
}

/// G.711 bytes -> Opus RTP payloads, for audio from the network to the device.
///
/// Expands the G.711, resamples to 48 kHz and encodes 20 ms Opus frames
/// (VoIP application, mono, 32 kbps VBR, no in-band FEC, no DTX). The
/// encoder's bandwidth is capped at wideband: the G.711 source has nothing
/// above 4 kHz, so the super-wideband and fullband layers would only spend
/// bits and CPU on silence. Wideband rather than narrowband keeps the coder's
/// band edge well above 4 kHz; narrowband would save another ~40 % of CPU.
pub struct G711ToOpus {
    law: Law,
    encoder: Encoder,
    /// The current input, expanded to linear 8 kHz.
    expanded: Vec<i16>,
    /// 8 kHz samples short of a whole resampler block.
    awaiting_resampling: Vec<f32>,
    /// 48 kHz samples short of a whole 20 ms Opus frame.
    awaiting_encoding: Vec<f32>,
    upsampler: BlockResampler,
    frame: Vec<i16>,
    payload: Vec<u8>,
}

impl G711ToOpus {
    /// A transcoder that reads G.711 with the companding `law`.
    pub fn new(law: Law) -> Result<Self, CodecError> {
        let encoder = Encoder::builder(OPUS_SAMPLE_RATE, Channels::Mono, Application::Voip)
            .bitrate(Bitrate::Bits(OPUS_BITRATE_BPS))
            .complexity(OPUS_ENCODER_COMPLEXITY)
            .max_bandwidth(Bandwidth::Wideband)
            .build()
            .map_err(|error| CodecError::OpusSetup { role: "encoder", reason: error.to_string() })?;
        Ok(Self {
            law,
            encoder,
            expanded: Vec::new(),
            awaiting_resampling: Vec::new(),
            awaiting_encoding: Vec::new(),
            upsampler: BlockResampler::up_8k_to_48k()?,
            frame: Vec::with_capacity(OPUS_FRAME_SAMPLES),
            payload: vec![0; MAX_OPUS_PAYLOAD_BYTES],
        })
    }

    /// Takes any number of G.711 bytes (usually 160, one 20 ms packet) and
    /// appends one Opus payload to `out` for each whole 20 ms frame now
    /// buffered; a remainder waits for the next call.
    pub fn transcode(&mut self, g711: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), CodecError> {
        self.expanded.clear();
        g711::decode(self.law, g711, &mut self.expanded);
        self.awaiting_resampling.extend(self.expanded.iter().map(|&sample| f32::from(sample)));
        self.upsampler.process_whole_blocks(&mut self.awaiting_resampling, &mut self.awaiting_encoding)?;
        while self.awaiting_encoding.len() >= OPUS_FRAME_SAMPLES {
            self.frame.clear();
            self.frame.extend(self.awaiting_encoding.drain(..OPUS_FRAME_SAMPLES).map(to_i16));
            let len = self
                .encoder
                .encode(&self.frame, &mut self.payload)
                .map_err(|error| CodecError::OpusEncode(error.to_string()))?;
            out.push(self.payload[..len].to_vec());
        }
        Ok(())
    }
}
