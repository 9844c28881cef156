//! Reception statistics of one incoming RTP stream, as RFC 3550 defines them for receiver
//! reports: packets expected from the extended highest sequence number (A.1, A.3), packets lost
//! (expected minus received, so duplicates can make it negative, clamped here), and the
//! interarrival jitter (6.4.1, A.8), in timestamp units and then seconds.
//!
//! Sans-IO like the relay that feeds it: each packet comes with its arrival time. A new SSRC
//! (another source, a re-offer) starts the counts again for the stream; the totals so far are
//! kept.

use std::time::Instant;

/// Where a stream's counts stand; what the metrics report when a call ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reception {
    pub received: u64,
    pub lost: u64,
    /// The interarrival jitter, in microseconds.
    pub jitter_us: u64,
}

/// RFC 3550 A.1: a source is valid after this many packets in sequence; before that, a jump is
/// a new start, not loss.
const MAX_DROPOUT: u16 = 3000;

#[derive(Debug)]
struct Stream {
    ssrc: u32,
    clock_rate: u32,
    base_seq: u32,
    /// The extended highest sequence number seen (cycles in the high bits).
    max_seq: u32,
    received: u64,
    /// The previous packet's relative transit time, in timestamp units.
    transit: Option<i64>,
    /// RFC 3550's `jitter`, in timestamp units, scaled by 16 as A.8 keeps it.
    jitter_x16: u64,
    first_arrival: Instant,
}

impl Stream {
    fn new(ssrc: u32, seq: u16, clock_rate: u32, now: Instant) -> Self {
        Stream {
            ssrc,
            clock_rate: clock_rate.max(1),
            base_seq: u32::from(seq),
            max_seq: u32::from(seq),
            received: 0,
            transit: None,
            jitter_x16: 0,
            first_arrival: now,
        }
    }

    fn expected(&self) -> u64 {
        u64::from(self.max_seq.wrapping_sub(self.base_seq)) + 1
    }

    fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    fn jitter_us(&self) -> u64 {
        (self.jitter_x16 >> 4) * 1_000_000 / u64::from(self.clock_rate)
    }
}

/// The reception of one leg's incoming stream.
#[derive(Debug, Default)]
pub struct ReceptionStats {
    stream: Option<Stream>,
    /// What streams before the current one (other SSRCs) added up to.
    earlier: Reception,
}

impl ReceptionStats {
    /// Counts a packet of `ssrc` with sequence number `seq` and RTP timestamp `ts` (at
    /// `clock_rate`), arrived at `now`.
    pub fn on_packet(&mut self, ssrc: u32, seq: u16, ts: u32, clock_rate: u32, now: Instant) {
        if self.stream.as_ref().is_none_or(|s| s.ssrc != ssrc || s.clock_rate != clock_rate.max(1)) {
            if let Some(old) = self.stream.take() {
                self.earlier.received += old.received;
                self.earlier.lost += old.lost();
                self.earlier.jitter_us = old.jitter_us();
            }
            self.stream = Some(Stream::new(ssrc, seq, clock_rate, now));
        }
        let Some(stream) = self.stream.as_mut() else { return };
        stream.received += 1;
        let highest = stream.max_seq as u16;
        let delta = seq.wrapping_sub(highest);
        if delta != 0 && delta < MAX_DROPOUT {
            // In order, maybe after a gap; a wrap of the 16 bits adds a cycle.
            let cycles = stream.max_seq & 0xffff_0000;
            let cycles = if seq < highest { cycles.wrapping_add(0x1_0000) } else { cycles };
            stream.max_seq = cycles | u32::from(seq);
        } else if (MAX_DROPOUT..=u16::MAX - 100).contains(&delta) {
            // A jump too big to be loss (a restarted sender): count again from here.
            self.earlier.received += stream.received - 1;
            self.earlier.lost += stream.lost();
            *stream = Stream { received: 1, ..Stream::new(ssrc, seq, clock_rate, now) };
        }
        // Transit in timestamp units: arrival (on the stream's clock) minus the RTP timestamp.
        let arrival = now.saturating_duration_since(stream.first_arrival).as_secs_f64() * f64::from(stream.clock_rate);
        let transit = arrival as i64 - i64::from(ts);
        if let Some(previous) = stream.transit {
            let d = (transit - previous).unsigned_abs();
            // A.8: J += (|D| - J) / 16, with J kept times 16.
            stream.jitter_x16 = stream.jitter_x16 + d - ((stream.jitter_x16 + 8) >> 4);
        }
        stream.transit = Some(transit);
    }

    /// The counts so far, of every stream; the jitter is the current stream's.
    pub fn summary(&self) -> Reception {
        match &self.stream {
            None => self.earlier,
            Some(s) => Reception {
                received: self.earlier.received + s.received,
                lost: self.earlier.lost + s.lost(),
                jitter_us: s.jitter_us(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 20 ms packets at 8 kHz (160 timestamp units each), `arrive(i)` giving packet i's arrival.
    fn stream(seqs: impl IntoIterator<Item = u16>, arrive: impl Fn(u16) -> Duration) -> Reception {
        let start = Instant::now();
        let mut stats = ReceptionStats::default();
        for seq in seqs {
            let ts = u32::from(seq.wrapping_sub(65_000)) * 160;
            stats.on_packet(7, seq, ts, 8000, start + arrive(seq.wrapping_sub(65_000)));
        }
        stats.summary()
    }

    #[test]
    fn a_steady_stream_has_no_loss_and_no_jitter() {
        let r = stream((65_000..=65_535).chain(0..500), |i| Duration::from_millis(20 * u64::from(i)));
        assert_eq!(r, Reception { received: 1036, lost: 0, jitter_us: 0 });
    }

    #[test]
    fn gaps_are_lost_packets_across_the_sequence_wrap() {
        // 65_530 ..= 5 without 65_533, 65_534 and 2: three of 12 lost.
        let seqs = [65_530, 65_531, 65_532, 65_535, 0, 1, 3, 4, 5];
        let r = stream(seqs, |i| Duration::from_millis(20 * u64::from(i)));
        assert_eq!((r.received, r.lost), (9, 3));
    }

    #[test]
    fn alternating_delay_shows_as_jitter() {
        // Every other packet 10 ms late: |D| is 80 units (10 ms at 8 kHz) for each pair, and the
        // A.8 estimate converges to that.
        let r = stream(65_000..65_500, |i| Duration::from_millis(20 * u64::from(i) + 10 * u64::from(i % 2)));
        assert!((9_000..=10_000).contains(&r.jitter_us), "{r:?}");
        assert_eq!(r.lost, 0);
    }

    #[test]
    fn a_new_source_starts_its_own_count_and_keeps_the_totals() {
        let start = Instant::now();
        let mut stats = ReceptionStats::default();
        for (i, seq) in [10u16, 11, 13].into_iter().enumerate() {
            stats.on_packet(1, seq, u32::from(seq) * 160, 8000, start + Duration::from_millis(20 * i as u64));
        }
        for (i, seq) in [40_000u16, 40_001].into_iter().enumerate() {
            stats.on_packet(2, seq, 0, 8000, start + Duration::from_millis(100 + 20 * i as u64));
        }
        let r = stats.summary();
        assert_eq!((r.received, r.lost), (5, 1), "the first source's gap, nothing for the switch");
    }
}
