//! The transcoders carry the audio through, not only bytes: tones keep their
//! pitch and level in both directions, every Opus frame size gives the right
//! amount of G.711, and losses and bad packets leave the stream usable.

use camara_codec::analysis::{dominant_frequency, rms_dbfs, sine_wave};
use camara_codec::g711::{self, Law};
use camara_codec::{CodecError, G711ToOpus, OpusToG711};
use ropus::{Application, Bitrate, Channels, DecodeMode, Decoder, Encoder};

/// The peak of the test tones: a comfortable speech level, about -15 dBFS RMS.
const AMPLITUDE: i16 = 6000;

/// What a browser sends: 48 kHz mono VoIP at 32 kbps, which libopus codes
/// as hybrid (SILK + CELT) fullband for 20 ms frames.
fn device_encoder() -> Encoder {
    Encoder::builder(48_000, Channels::Mono, Application::Voip).bitrate(Bitrate::Bits(32_000)).build().unwrap()
}

fn encode_opus(encoder: &mut Encoder, pcm_48k: &[i16], frame_samples: usize) -> Vec<Vec<u8>> {
    let mut payload = [0u8; 1500];
    pcm_48k
        .chunks_exact(frame_samples)
        .map(|frame| {
            let len = encoder.encode(frame, &mut payload).unwrap();
            payload[..len].to_vec()
        })
        .collect()
}

fn decode_opus(payloads: &[Vec<u8>]) -> Vec<i16> {
    let mut decoder = Decoder::new(48_000, Channels::Mono).unwrap();
    let mut frame = vec![0i16; 5760];
    let mut pcm = Vec::new();
    for payload in payloads {
        let samples = decoder.decode(payload, &mut frame, DecodeMode::Normal).unwrap();
        pcm.extend_from_slice(&frame[..samples]);
    }
    pcm
}

fn expand(law: Law, bytes: &[u8]) -> Vec<i16> {
    let mut pcm = Vec::new();
    g711::decode(law, bytes, &mut pcm);
    pcm
}

fn compand(law: Law, pcm: &[i16]) -> Vec<u8> {
    let mut bytes = Vec::new();
    g711::encode(law, pcm, &mut bytes);
    bytes
}

/// Asserts that `pcm`, past its first 100 ms (codec start-up), is `frequency`
/// within 2 Hz and within 1.5 dB of a sine of peak [`AMPLITUDE`].
fn assert_tone(pcm: &[i16], sample_rate: u32, frequency: f32, what: &str) {
    let steady = &pcm[sample_rate as usize / 10..];
    let found = dominant_frequency(steady, sample_rate);
    assert!((found - frequency).abs() < 2.0, "{what}: expected {frequency} Hz, found {found} Hz");
    let expected_level = rms_dbfs(&sine_wave(frequency, sample_rate, AMPLITUDE, sample_rate as usize));
    let level = rms_dbfs(steady);
    assert!((level - expected_level).abs() < 1.5, "{what}: level {level} dBFS, expected {expected_level} dBFS");
}

#[test]
fn opus_tones_reach_g711_at_the_same_pitch_and_level() {
    for (frequency, law) in [(1000.0, Law::Mu), (440.0, Law::A), (1000.0, Law::A), (440.0, Law::Mu)] {
        let payloads = encode_opus(&mut device_encoder(), &sine_wave(frequency, 48_000, AMPLITUDE, 48_000), 960);
        let mut transcoder = OpusToG711::new(law).unwrap();
        let mut g711_bytes = Vec::new();
        for payload in &payloads {
            let before = g711_bytes.len();
            transcoder.transcode(payload, &mut g711_bytes).unwrap();
            assert_eq!(g711_bytes.len() - before, 160, "20 ms of Opus must give 160 G.711 bytes");
        }
        assert_tone(&expand(law, &g711_bytes), 8000, frequency, &format!("{frequency} Hz Opus -> {law:?}"));
    }
}

#[test]
fn g711_tones_reach_opus_at_the_same_pitch_and_level() {
    for (frequency, law) in [(1000.0, Law::Mu), (440.0, Law::A), (1000.0, Law::A), (440.0, Law::Mu)] {
        let g711_bytes = compand(law, &sine_wave(frequency, 8000, AMPLITUDE, 8000));
        let mut transcoder = G711ToOpus::new(law).unwrap();
        let mut payloads = Vec::new();
        for packet in g711_bytes.chunks(160) {
            let before = payloads.len();
            transcoder.transcode(packet, &mut payloads).unwrap();
            assert_eq!(payloads.len() - before, 1, "160 G.711 bytes must give one Opus payload");
        }
        assert_tone(&decode_opus(&payloads), 48_000, frequency, &format!("{frequency} Hz {law:?} -> Opus"));
    }
}

#[test]
fn every_opus_frame_duration_gives_8_g711_bytes_per_ms() {
    // 2.5 and 5 ms frames are CELT-only, 10 and 20 ms hybrid here, 40 and
    // 60 ms carry several SILK frames, 120 ms is a multi-frame packet.
    for frame_samples in [120, 240, 480, 960, 1920, 2880, 5760] {
        let tone = sine_wave(1000.0, 48_000, AMPLITUDE, 48_000 / 5760 * 5760);
        let payloads = encode_opus(&mut device_encoder(), &tone, frame_samples);
        let mut transcoder = OpusToG711::new(Law::Mu).unwrap();
        let mut g711_bytes = Vec::new();
        for payload in &payloads {
            let before = g711_bytes.len();
            transcoder.transcode(payload, &mut g711_bytes).unwrap();
            assert_eq!(g711_bytes.len() - before, frame_samples / 6, "frame of {frame_samples} samples at 48 kHz");
        }
        assert_eq!(g711_bytes.len(), tone.len() / 6);
        assert_tone(&expand(Law::Mu, &g711_bytes), 8000, 1000.0, &format!("{frame_samples}-sample Opus frames"));
    }
}

#[test]
fn stereo_payloads_are_mixed_down() {
    // SDP always declares Opus as 2 channels; a device may really send stereo.
    let mut stereo_encoder =
        Encoder::builder(48_000, Channels::Stereo, Application::Voip).bitrate(Bitrate::Bits(64_000)).build().unwrap();
    let tone = sine_wave(1000.0, 48_000, AMPLITUDE, 48_000);
    let interleaved: Vec<i16> = tone.iter().flat_map(|&sample| [sample, sample]).collect();
    let payloads = encode_opus(&mut stereo_encoder, &interleaved, 2 * 960);
    assert!(payloads.iter().all(|payload| payload[0] & 0x04 != 0), "the encoder should have sent stereo");
    let mut transcoder = OpusToG711::new(Law::Mu).unwrap();
    let mut g711_bytes = Vec::new();
    for payload in &payloads {
        transcoder.transcode(payload, &mut g711_bytes).unwrap();
    }
    assert_eq!(g711_bytes.len(), 8000);
    assert_tone(&expand(Law::Mu, &g711_bytes), 8000, 1000.0, "stereo Opus -> mono G.711");
}

#[test]
fn short_frames_delay_the_stream_once_and_then_keep_it_whole() {
    // 2.5 ms frames cannot fill a 10 ms resampler block: the first three come
    // out as silence (the one-time 7.5 ms), then the tone plays without gaps.
    let tone = sine_wave(1000.0, 48_000, AMPLITUDE, 48_000);
    let payloads = encode_opus(&mut device_encoder(), &tone, 120);
    let mut transcoder = OpusToG711::new(Law::A).unwrap();
    let mut g711_bytes = Vec::new();
    for payload in &payloads {
        transcoder.transcode(payload, &mut g711_bytes).unwrap();
    }
    let pcm = expand(Law::A, &g711_bytes);
    assert!(pcm[..60].iter().all(|&sample| sample.abs() <= 8), "the inserted start should be silent");
    // No dropout anywhere later: every 5 ms window keeps the tone's level.
    for window in pcm[800..].chunks_exact(40) {
        assert!(rms_dbfs(window) > rms_dbfs(&tone) - 4.0, "a gap in the tone: {} dBFS", rms_dbfs(window));
    }
}

#[test]
fn a_lost_packet_is_concealed_for_its_duration() {
    let payloads = encode_opus(&mut device_encoder(), &sine_wave(440.0, 48_000, AMPLITUDE, 48_000), 960);
    let mut transcoder = OpusToG711::new(Law::Mu).unwrap();
    let mut g711_bytes = Vec::new();
    for (index, payload) in payloads.iter().enumerate() {
        let before = g711_bytes.len();
        if index == 25 {
            transcoder.conceal(20, &mut g711_bytes).unwrap();
        } else {
            transcoder.transcode(payload, &mut g711_bytes).unwrap();
        }
        assert_eq!(g711_bytes.len() - before, 160);
    }
    // Concealment continues the tone rather than leaving a hole.
    let concealed = expand(Law::Mu, &g711_bytes[25 * 160..26 * 160]);
    assert!(rms_dbfs(&concealed) > -30.0, "concealed packet at {} dBFS", rms_dbfs(&concealed));
    assert_tone(&expand(Law::Mu, &g711_bytes), 8000, 440.0, "440 Hz with one packet concealed");
}

#[test]
fn concealment_takes_whole_5_ms_steps_up_to_one_packet() {
    let mut transcoder = OpusToG711::new(Law::Mu).unwrap();
    let mut g711_bytes = Vec::new();
    for (duration_ms, bytes) in [(0, 0), (5, 40), (10, 80), (60, 480), (120, 960)] {
        g711_bytes.clear();
        transcoder.conceal(duration_ms, &mut g711_bytes).unwrap();
        assert_eq!(g711_bytes.len(), bytes, "{duration_ms} ms");
    }
    for duration_ms in [3, 22, 125, 1000] {
        let error = transcoder.conceal(duration_ms, &mut g711_bytes).unwrap_err();
        assert!(matches!(error, CodecError::UnsupportedConcealDuration { .. }), "{duration_ms} ms: {error}");
    }
}

#[test]
fn malformed_payloads_are_rejected_and_the_stream_goes_on() {
    let payloads = encode_opus(&mut device_encoder(), &sine_wave(1000.0, 48_000, AMPLITUDE, 9600), 960);
    let mut transcoder = OpusToG711::new(Law::A).unwrap();
    let mut g711_bytes = Vec::new();
    transcoder.transcode(&payloads[0], &mut g711_bytes).unwrap();
    // Empty; code 3 (several frames) announcing zero frames; code 1 (two
    // equal frames) with an odd body; a 20 ms frame count that exceeds 120 ms.
    for malformed in [&[][..], &[0x03, 0x00], &[0x01, 0xAA, 0xBB, 0xCC], &[0x0B, 0x07]] {
        let error = transcoder.transcode(malformed, &mut g711_bytes).unwrap_err();
        assert!(matches!(error, CodecError::InvalidOpusPayload { .. }), "{malformed:02x?}: {error}");
        assert_eq!(g711_bytes.len(), 160, "a rejected payload must not produce audio");
    }
    for payload in &payloads[1..] {
        transcoder.transcode(payload, &mut g711_bytes).unwrap();
    }
    assert_eq!(g711_bytes.len(), 9600 / 6);
}

#[test]
fn g711_is_buffered_into_whole_20_ms_opus_frames() {
    let g711_bytes = compand(Law::Mu, &sine_wave(1000.0, 8000, AMPLITUDE, 8000));
    let mut transcoder = G711ToOpus::new(Law::Mu).unwrap();
    let mut payloads = Vec::new();
    let mut consumed = 0;
    // (bytes fed, payloads expected after it): 30 ms packets, odd sizes, a big burst.
    for (fed, expected) in [(100, 0), (60, 1), (1, 1), (240, 2), (79, 3), (480, 6), (80, 6), (240, 8)] {
        transcoder.transcode(&g711_bytes[consumed..consumed + fed], &mut payloads).unwrap();
        consumed += fed;
        assert_eq!(payloads.len(), expected, "after {consumed} bytes");
    }
    let mut decoder = Decoder::new(48_000, Channels::Mono).unwrap();
    let mut frame = vec![0i16; 5760];
    for payload in &payloads {
        assert_eq!(decoder.decode(payload, &mut frame, DecodeMode::Normal).unwrap(), 960);
        // Wideband cap: SILK-only configurations 0..=11 (RFC 6716 section 3.1).
        assert!(payload[0] >> 3 <= 11, "TOC {:#04x} is not narrow- to wideband SILK", payload[0]);
    }
}

#[test]
fn a_tone_survives_g711_to_opus_and_back() {
    // The path of a call where both legs transcode (a device echo test).
    for law in [Law::Mu, Law::A] {
        let mut to_opus = G711ToOpus::new(law).unwrap();
        let mut to_g711 = OpusToG711::new(law).unwrap();
        let mut payloads = Vec::new();
        let mut g711_out = Vec::new();
        for packet in compand(law, &sine_wave(440.0, 8000, AMPLITUDE, 8000)).chunks(160) {
            payloads.clear();
            to_opus.transcode(packet, &mut payloads).unwrap();
            for payload in &payloads {
                to_g711.transcode(payload, &mut g711_out).unwrap();
            }
        }
        assert_eq!(g711_out.len(), 8000);
        assert_tone(&expand(law, &g711_out), 8000, 440.0, &format!("{law:?} -> Opus -> {law:?}"));
    }
}

/// The delay of a transcoder: where the cross-correlation of input and
/// output peaks, in ms. A chirp makes the peak unambiguous.
fn delay_ms(input: &[i16], output: &[i16], sample_rate: u32) -> f32 {
    let max_lag = sample_rate as usize / 20;
    let correlation =
        |lag: usize| -> f64 { input.iter().zip(&output[lag..]).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum() };
    let best = (0..max_lag).max_by(|&a, &b| correlation(a).total_cmp(&correlation(b))).unwrap();
    best as f32 * 1000.0 / sample_rate as f32
}

fn chirp(sample_rate: u32, len: usize) -> Vec<i16> {
    // 300 Hz to 3 kHz in 0.5 s: inside the telephone band.
    (0..len)
        .map(|index| {
            let t = index as f64 / f64::from(sample_rate);
            let phase = 2.0 * std::f64::consts::PI * (300.0 * t + 2700.0 * t * t);
            (f64::from(AMPLITUDE) * phase.sin()).round() as i16
        })
        .collect()
}

#[test]
fn added_delay_stays_small() {
    // Opus -> G.711: the transcoder alone (Opus decoder + resampler), with
    // the device encoder's own look-ahead taken out by comparing against a
    // plain Opus decode of the same packets.
    let input = chirp(48_000, 24_000);
    let payloads = encode_opus(&mut device_encoder(), &input, 960);
    let reference: Vec<i16> = decode_opus(&payloads).iter().step_by(6).copied().collect();
    let mut transcoder = OpusToG711::new(Law::Mu).unwrap();
    let mut g711_bytes = Vec::new();
    for payload in &payloads {
        transcoder.transcode(payload, &mut g711_bytes).unwrap();
    }
    let down = delay_ms(&reference[..3200], &expand(Law::Mu, &g711_bytes), 8000);
    assert!((4.0..=6.0).contains(&down), "Opus -> G.711 resampling delay {down} ms");

    // G.711 -> Opus: resampler + Opus encoder look-ahead + decoder, as the device hears it.
    let input = chirp(8000, 4000);
    let mut transcoder = G711ToOpus::new(Law::Mu).unwrap();
    let mut payloads = Vec::new();
    transcoder.transcode(&compand(Law::Mu, &input), &mut payloads).unwrap();
    let heard: Vec<i16> = decode_opus(&payloads).iter().step_by(6).copied().collect();
    let up = delay_ms(&input[..3200], &heard, 8000);
    assert!(up <= 15.0, "G.711 -> Opus delay {up} ms");
    eprintln!("measured delay: Opus -> G.711 {down} ms (transcoder only), G.711 -> Opus {up} ms (with Opus itself)");
}
