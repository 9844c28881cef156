//! G.711 (ITU-T G.711) companding between 16-bit linear PCM and 8-bit codes.
//!
//! Written by hand rather than taken from a crate: the whole codec is two
//! tiny formulas, this version follows the ITU-T G.191 reference code
//! (`g711.c`) bit for bit, and the 256-entry decode tables are built at
//! compile time. The tests check the result against the reference values.
//!
//! Linear samples are 16-bit and left-justified, as in G.191: mu-law keeps
//! the 14 most significant bits, A-law the 13 most significant bits.

/// The companding law of a G.711 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// Mu-law: RTP payload type 0, `PCMU` (North America, Japan).
    Mu,
    /// A-law: RTP payload type 8, `PCMA` (Europe and most other networks).
    A,
}

/// Appends the G.711 code of each linear sample to `out`.
pub fn encode(law: Law, pcm: &[i16], out: &mut Vec<u8>) {
    out.reserve(pcm.len());
    match law {
        Law::Mu => out.extend(pcm.iter().map(|&sample| linear_to_mu_law(sample))),
        Law::A => out.extend(pcm.iter().map(|&sample| linear_to_a_law(sample))),
    }
}

/// Appends the linear sample of each G.711 code to `out`.
pub fn decode(law: Law, bytes: &[u8], out: &mut Vec<i16>) {
    let table = match law {
        Law::Mu => &MU_LAW_TO_LINEAR,
        Law::A => &A_LAW_TO_LINEAR,
    };
    out.reserve(bytes.len());
    out.extend(bytes.iter().map(|&code| table[usize::from(code)]));
}

/// G.191 `ulaw_compress` for one sample.
pub fn linear_to_mu_law(sample: i16) -> u8 {
    // One's complement for negative samples keeps the law symmetric: -1
    // becomes the "negative zero" code 0x7F instead of a step below zero.
    let magnitude = if sample < 0 { !sample } else { sample };
    let biased = ((i32::from(magnitude) >> 2) + 33).min(0x1FFF);
    // Segment 1..=8: one more than the number of significant bits above bit 5.
    let segment = (32 - (biased >> 6).leading_zeros()) as i32 + 1;
    let high_nibble = 8 - segment;
    let low_nibble = 0xF - ((biased >> segment) & 0xF);
    let code = (high_nibble << 4) | low_nibble;
    let sign = if sample >= 0 { 0x80 } else { 0 };
    (code | sign) as u8
}

/// G.191 `alaw_compress` for one sample.
pub fn linear_to_a_law(sample: i16) -> u8 {
    let magnitude = i32::from(if sample < 0 { !sample } else { sample }) >> 4;
    let code = if magnitude > 15 {
        // Segment 1..=7: shift the magnitude down until it fits 5 bits.
        let significant_bits = 32 - magnitude.leading_zeros() as i32;
        let exponent = significant_bits - 4;
        let mantissa = (magnitude >> (exponent - 1)) - 16;
        mantissa + (exponent << 4)
    } else {
        magnitude
    };
    let sign = if sample >= 0 { 0x80 } else { 0 };
    ((code | sign) ^ 0x55) as u8
}

/// G.191 `ulaw_expand` for one code.
const fn mu_law_to_linear(code: u8) -> i16 {
    let complemented = !code;
    let exponent = ((complemented >> 4) & 0x7) as i32;
    let mantissa = (complemented & 0xF) as i32;
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    (if code < 0x80 { -magnitude } else { magnitude }) as i16
}

/// G.191 `alaw_expand` for one code.
const fn a_law_to_linear(code: u8) -> i16 {
    let unmasked = ((code ^ 0x55) & 0x7F) as i32;
    let exponent = unmasked >> 4;
    let mut mantissa = unmasked & 0xF;
    if exponent > 0 {
        mantissa += 16;
    }
    mantissa = (mantissa << 4) + 0x8;
    if exponent > 1 {
        mantissa <<= exponent - 1;
    }
    (if code > 0x7F { mantissa } else { -mantissa }) as i16
}

const fn decode_table(law: Law) -> [i16; 256] {
    let mut table = [0; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = match law {
            Law::Mu => mu_law_to_linear(code as u8),
            Law::A => a_law_to_linear(code as u8),
        };
        code += 1;
    }
    table
}

static MU_LAW_TO_LINEAR: [i16; 256] = decode_table(Law::Mu);
static A_LAW_TO_LINEAR: [i16; 256] = decode_table(Law::A);

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_one(law: Law, sample: i16) -> u8 {
        let mut out = Vec::new();
        encode(law, &[sample], &mut out);
        out[0]
    }

    fn decode_one(law: Law, code: u8) -> i16 {
        let mut out = Vec::new();
        decode(law, &[code], &mut out);
        out[0]
    }

    #[test]
    fn mu_law_reference_values() {
        // Zero, the two zero codes, the extremes, and one mid-range sample
        // worked out by hand from G.191 (1000 -> segment 4, step 64 -> 988).
        assert_eq!(encode_one(Law::Mu, 0), 0xFF);
        assert_eq!(encode_one(Law::Mu, -1), 0x7F);
        assert_eq!(decode_one(Law::Mu, 0xFF), 0);
        assert_eq!(decode_one(Law::Mu, 0x7F), 0);
        assert_eq!(encode_one(Law::Mu, i16::MAX), 0x80);
        assert_eq!(encode_one(Law::Mu, i16::MIN), 0x00);
        assert_eq!(decode_one(Law::Mu, 0x80), 32124);
        assert_eq!(decode_one(Law::Mu, 0x00), -32124);
        assert_eq!(encode_one(Law::Mu, 1000), 0xCE);
        assert_eq!(decode_one(Law::Mu, 0xCE), 988);
        assert_eq!(encode_one(Law::Mu, -1000), 0x4E);
        assert_eq!(decode_one(Law::Mu, 0x4E), -988);
    }

    #[test]
    fn a_law_reference_values() {
        // A-law has no exact zero: the smallest steps are +8 and -8.
        assert_eq!(encode_one(Law::A, 0), 0xD5);
        assert_eq!(encode_one(Law::A, -1), 0x55);
        assert_eq!(decode_one(Law::A, 0xD5), 8);
        assert_eq!(decode_one(Law::A, 0x55), -8);
        assert_eq!(encode_one(Law::A, i16::MAX), 0xAA);
        assert_eq!(encode_one(Law::A, i16::MIN), 0x2A);
        assert_eq!(decode_one(Law::A, 0xAA), 32256);
        assert_eq!(decode_one(Law::A, 0x2A), -32256);
        // 1000 >> 4 = 62 -> exponent 2, mantissa 15 -> (31 << 4 | 8) << 1 = 1008.
        assert_eq!(encode_one(Law::A, 1000), 0xFA);
        assert_eq!(decode_one(Law::A, 0xFA), 1008);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            // Mu-law's negative zero decodes to 0, which encodes as positive zero.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(encode_one(Law::Mu, decode_one(Law::Mu, code)), expected, "mu-law code {code:#04x}");
            assert_eq!(encode_one(Law::A, decode_one(Law::A, code)), code, "A-law code {code:#04x}");
        }
    }

    #[test]
    fn decoding_is_odd_symmetric_and_monotonic() {
        for law in [Law::Mu, Law::A] {
            // Codes with the sign bit set, from the smallest magnitude up.
            let positive: Vec<i16> = (0..128u8).map(|step| decode_one(law, positive_code(law, step))).collect();
            assert!(positive.windows(2).all(|pair| pair[0] < pair[1]), "{law:?} not monotonic: {positive:?}");
            for step in 0..128u8 {
                let negative = decode_one(law, positive_code(law, step) & 0x7F);
                assert_eq!(negative, -positive[usize::from(step)], "{law:?} step {step}");
            }
        }
    }

    /// The positive code with the `step`-th smallest magnitude.
    fn positive_code(law: Law, step: u8) -> u8 {
        match law {
            // Mu-law stores the inverted magnitude.
            Law::Mu => 0xFF - step,
            // A-law stores the magnitude with its even bits inverted.
            Law::A => (0x80 | step) ^ 0x55,
        }
    }

    #[test]
    fn round_trip_error_stays_within_half_a_quantisation_step() {
        // Below the clipping point the error is at most half the step of the
        // segment: 1/32 of the magnitude plus the finest step (mu: 8, A: 16).
        for sample in i16::MIN..=i16::MAX {
            let magnitude = i32::from(sample).abs();
            for (law, finest_step, clip) in [(Law::Mu, 8, 32124 + 512), (Law::A, 16, 32256 + 512)] {
                let decoded = decode_one(law, encode_one(law, sample));
                let error = (i32::from(decoded) - i32::from(sample)).abs();
                if magnitude < clip {
                    assert!(error <= magnitude / 32 + finest_step / 2 + 1, "{law:?}: {sample} -> {decoded}");
                }
            }
        }
    }

    #[test]
    fn buffers_are_appended_to() {
        let mut bytes = vec![0xAB];
        encode(Law::Mu, &[0, 0], &mut bytes);
        assert_eq!(bytes, [0xAB, 0xFF, 0xFF]);
        let mut pcm = vec![7];
        decode(Law::A, &[0xD5, 0x55], &mut pcm);
        assert_eq!(pcm, [7, 8, -8]);
    }
}
