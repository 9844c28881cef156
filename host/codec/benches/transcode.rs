//! One 20 ms frame through each transcoder, and the Opus codec alone for
//! comparison. At the end it prints how many transcoded bidirectional
//! streams one core can carry: 20 ms / (Opus -> G.711 + G.711 -> Opus).
//!
//! Run with `CARGO_TARGET_DIR=/work/target-codec cargo bench -p camara-codec`.

use std::f64::consts::PI;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use camara_codec::g711::{self, Law};
use camara_codec::{G711_FRAME_SAMPLES, G711ToOpus, OPUS_BITRATE_BPS, OPUS_FRAME_SAMPLES, OpusToG711};
use criterion::Criterion;
use ropus::{Application, Bitrate, Channels, DecodeMode, Decoder, Encoder};

const GROUP: &str = "transcode_20ms";
const OPUS_TO_G711: &str = "opus_to_g711";
const G711_TO_OPUS: &str = "g711_to_opus";

/// Five seconds of voice-like sound, so the codecs work as hard as on speech
/// (a pure tone or silence would flatter them): a gliding pitch with its
/// harmonics shaped by three formants, three syllables a second, and a
/// little noise.
fn voice_like(sample_rate: u32) -> Vec<i16> {
    let rate = f64::from(sample_rate);
    let mut pitch_phase = 0.0;
    let mut noise_state: u32 = 0x2545_F491;
    (0..sample_rate as usize * 5)
        .map(|index| {
            let t = index as f64 / rate;
            let pitch = 120.0 + 40.0 * (2.0 * PI * 0.7 * t).sin();
            pitch_phase += 2.0 * PI * pitch / rate;
            let formant = |frequency: f64, centre: f64, width: f64| (-((frequency - centre) / width).powi(2)).exp();
            let voiced: f64 = (1..=40)
                .map(f64::from)
                .take_while(|harmonic| harmonic * pitch < 0.45 * rate)
                .map(|harmonic| {
                    let frequency = harmonic * pitch;
                    let weight = formant(frequency, 500.0, 300.0)
                        + 0.6 * formant(frequency, 1500.0, 400.0)
                        + 0.3 * formant(frequency, 2500.0, 500.0);
                    weight * (harmonic * pitch_phase).sin()
                })
                .sum();
            noise_state ^= noise_state << 13;
            noise_state ^= noise_state >> 17;
            noise_state ^= noise_state << 5;
            let noise = f64::from(noise_state) / f64::from(u32::MAX) - 0.5;
            let syllables = 0.5 - 0.5 * (2.0 * PI * 3.0 * t).cos();
            (4000.0 * syllables * voiced + 300.0 * noise).round() as i16
        })
        .collect()
}

/// Opus payloads as a browser sends them: 48 kHz mono VoIP at 32 kbps.
fn device_payloads() -> Vec<Vec<u8>> {
    let mut encoder = Encoder::builder(48_000, Channels::Mono, Application::Voip)
        .bitrate(Bitrate::Bits(OPUS_BITRATE_BPS))
        .build()
        .expect("Opus encoder");
    let mut payload = [0u8; 1500];
    voice_like(48_000)
        .chunks_exact(OPUS_FRAME_SAMPLES)
        .map(|frame| {
            let len = encoder.encode(frame, &mut payload).expect("Opus encode");
            payload[..len].to_vec()
        })
        .collect()
}

fn network_g711() -> Vec<u8> {
    let mut bytes = Vec::new();
    g711::encode(Law::A, &voice_like(8000), &mut bytes);
    bytes
}

fn bench_transcoders(criterion: &mut Criterion) {
    let payloads = device_payloads();
    let g711_bytes = network_g711();
    let mut group = criterion.benchmark_group(GROUP);

    let mut to_g711 = OpusToG711::new(Law::A).expect("transcoder");
    let mut g711_out = Vec::with_capacity(G711_FRAME_SAMPLES);
    let mut next = payloads.iter().cycle();
    group.bench_function(OPUS_TO_G711, |bencher| {
        bencher.iter(|| {
            g711_out.clear();
            to_g711.transcode(black_box(next.next().expect("cycle")), &mut g711_out).expect("transcode");
        })
    });

    let mut to_opus = G711ToOpus::new(Law::A).expect("transcoder");
    let mut opus_out = Vec::with_capacity(1);
    let mut next = g711_bytes.chunks_exact(G711_FRAME_SAMPLES).cycle();
    group.bench_function(G711_TO_OPUS, |bencher| {
        bencher.iter(|| {
            opus_out.clear();
            to_opus.transcode(black_box(next.next().expect("cycle")), &mut opus_out).expect("transcode");
        })
    });

    // The Opus codec alone, to show what the resampling and G.711 add.
    let mut decoder = Decoder::new(48_000, Channels::Mono).expect("Opus decoder");
    let mut pcm = vec![0i16; OPUS_FRAME_SAMPLES];
    let mut next = payloads.iter().cycle();
    group.bench_function("opus_decode_only", |bencher| {
        bencher.iter(|| decoder.decode(black_box(next.next().expect("cycle")), &mut pcm, DecodeMode::Normal))
    });

    // Same settings as G711ToOpus (the encoder there is private).
    let mut encoder = Encoder::builder(48_000, Channels::Mono, Application::Voip)
        .bitrate(Bitrate::Bits(OPUS_BITRATE_BPS))
        .complexity(5)
        .max_bandwidth(ropus::Bandwidth::Wideband)
        .build()
        .expect("Opus encoder");
    let upsampled_voice = voice_like(48_000);
    let mut next = upsampled_voice.chunks_exact(OPUS_FRAME_SAMPLES).cycle();
    let mut payload = [0u8; 1500];
    group.bench_function("opus_encode_only", |bencher| {
        bencher.iter(|| encoder.encode(black_box(next.next().expect("cycle")), &mut payload))
    });
    group.finish();

    // What a call pays once, when its leg needs transcoding.
    criterion.bench_function("call_setup/new_transcoder_pair", |bencher| {
        bencher.iter(|| {
            (OpusToG711::new(black_box(Law::A)).expect("transcoder"), G711ToOpus::new(Law::A).expect("transcoder"))
        })
    });
}

/// Where criterion writes its results, pinned so the summary can read them:
/// the same places criterion itself looks, minus `cargo metadata`.
fn criterion_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(target) => Path::new(&target).join("criterion"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion"),
    }
}

/// The typical time per iteration in ns (the slope, else the mean), as
/// criterion prints it; `None` unless this run measured `function` (a
/// filtered run leaves older results on disk).
fn typical_ns(directory: &Path, function: &str, run_started: SystemTime) -> Option<f64> {
    let path = directory.join(GROUP).join(function).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < run_started {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let typical = if estimates["slope"].is_null() { &estimates["mean"] } else { &estimates["slope"] };
    typical["point_estimate"].as_f64()
}

fn main() {
    let run_started = SystemTime::now();
    let directory = criterion_directory();
    let mut criterion = Criterion::default().output_directory(&directory).configure_from_args();
    bench_transcoders(&mut criterion);
    criterion.final_summary();

    match (typical_ns(&directory, OPUS_TO_G711, run_started), typical_ns(&directory, G711_TO_OPUS, run_started)) {
        (Some(down), Some(up)) => {
            let frame_ns = 20.0e6;
            println!(
                "per 20 ms frame: Opus -> G.711 {:.1} us, G.711 -> Opus {:.1} us; \
                 transcoded bidirectional streams per core: {:.0}",
                down / 1e3,
                up / 1e3,
                frame_ns / (down + up)
            );
        }
        _ => println!("streams per core: needs both {GROUP}/{OPUS_TO_G711} and {GROUP}/{G711_TO_OPUS} in this run"),
    }
}
