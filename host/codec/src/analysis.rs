//! Small signal tools that tests across the project use to check that audio
//! came through as the right tone at a sensible level, rather than only that
//! some bytes came out.

use std::f64::consts::PI;

use realfft::RealFftPlanner;

/// The frequency in Hz of the strongest spectral peak of `samples`, or 0.0
/// for silence or fewer than 4 samples.
///
/// Used by tests across the project to check tones: 1 s of signal resolves
/// to a small fraction of a Hz, 20 ms (a 50 Hz bin) still to within a few Hz.
/// The DC offset is removed first, a Hann window limits leakage between
/// bins, and the peak is interpolated between bins on the log-magnitude
/// (exact for the Gaussian-like main lobe of a windowed sine).
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> f32 {
    let len = samples.len();
    if len < 4 {
        return 0.0;
    }
    let mean = samples.iter().map(|&sample| f64::from(sample)).sum::<f64>() / len as f64;
    let mut windowed: Vec<f64> = samples
        .iter()
        .enumerate()
        .map(|(index, &sample)| {
            let hann = 0.5 - 0.5 * (2.0 * PI * index as f64 / len as f64).cos();
            (f64::from(sample) - mean) * hann
        })
        .collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(len);
    let mut spectrum = fft.make_output_vec();
    if fft.process(&mut windowed, &mut spectrum).is_err() {
        return 0.0;
    }
    let power: Vec<f64> = spectrum.iter().map(|bin| bin.norm_sqr()).collect();
    // Bin 0 is DC, which the mean removal emptied.
    let Some((peak, &peak_power)) = power.iter().enumerate().skip(1).max_by(|a, b| a.1.total_cmp(b.1)) else {
        return 0.0;
    };
    if peak_power <= f64::EPSILON {
        return 0.0;
    }
    let mut offset = 0.0;
    if peak + 1 < power.len() {
        let [left, centre, right] = [power[peak - 1], peak_power, power[peak + 1]].map(|p| p.max(1e-300).ln());
        let curvature = left - 2.0 * centre + right;
        if curvature < 0.0 {
            offset = (0.5 * (left - right) / curvature).clamp(-0.5, 0.5);
        }
    }
    ((peak as f64 + offset) * f64::from(sample_rate) / len as f64) as f32
}

/// The RMS level of `samples` in dBFS (a full-scale square wave is 0 dBFS, a
/// full-scale sine -3 dBFS); negative infinity for silence or no samples.
pub fn rms_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let mean_square = samples.iter().map(|&sample| f64::from(sample).powi(2)).sum::<f64>() / samples.len() as f64;
    (10.0 * (mean_square / 32768.0_f64.powi(2)).log10()) as f32
}

/// `len` samples of a sine of `frequency_hz` and peak `amplitude`, starting
/// at phase zero: the test tone that goes with [`dominant_frequency`].
pub fn sine_wave(frequency_hz: f32, sample_rate: u32, amplitude: i16, len: usize) -> Vec<i16> {
    let step = 2.0 * PI * f64::from(frequency_hz) / f64::from(sample_rate);
    (0..len).map(|index| (f64::from(amplitude) * (step * index as f64).sin()).round() as i16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tones_between_bins_at_both_rates() {
        for (frequency, rate) in [(1000.0, 8000), (440.0, 8000), (3210.7, 8000), (1000.0, 48000), (12345.6, 48000)] {
            let tone = sine_wave(frequency, rate, 10_000, rate as usize / 4);
            let found = dominant_frequency(&tone, rate);
            assert!((found - frequency).abs() < 0.5, "{frequency} Hz at {rate} Hz: found {found}");
        }
    }

    #[test]
    fn a_20_ms_window_is_still_within_a_few_hz() {
        let tone = sine_wave(1017.0, 8000, 10_000, 160);
        let found = dominant_frequency(&tone, 8000);
        assert!((found - 1017.0).abs() < 5.0, "found {found}");
    }

    #[test]
    fn the_stronger_of_two_tones_wins_despite_dc_offset() {
        let loud = sine_wave(700.0, 8000, 8000, 8000);
        let quiet = sine_wave(2500.0, 8000, 2000, 8000);
        let mixed: Vec<i16> = loud.iter().zip(&quiet).map(|(a, b)| a + b + 3000).collect();
        assert!((dominant_frequency(&mixed, 8000) - 700.0).abs() < 0.5);
    }

    #[test]
    fn silence_and_tiny_inputs_have_no_frequency() {
        assert_eq!(dominant_frequency(&[0; 800], 8000), 0.0);
        assert_eq!(dominant_frequency(&[123; 800], 8000), 0.0);
        assert_eq!(dominant_frequency(&[1, 2], 8000), 0.0);
    }

    #[test]
    fn levels() {
        let full_scale_sine = sine_wave(1000.0, 8000, i16::MAX, 8000);
        assert!((rms_dbfs(&full_scale_sine) + 3.01).abs() < 0.05);
        let quarter_scale_sine = sine_wave(1000.0, 8000, 8192, 8000);
        assert!((rms_dbfs(&quarter_scale_sine) + 15.05).abs() < 0.05);
        assert_eq!(rms_dbfs(&[0; 10]), f32::NEG_INFINITY);
        assert_eq!(rms_dbfs(&[]), f32::NEG_INFINITY);
    }
}
