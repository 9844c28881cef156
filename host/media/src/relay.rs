//! The forwarding core of one session, sans-IO: RTP packets and the time go in, the packets to
//! send come out. It maps payload types, keeps each outgoing stream's SSRC, sequence numbers and
//! timestamps continuous when the source changes (a re-offer, a new device track), transcodes
//! Opus <-> G.711 when the bridge says so, gates media by the negotiated direction, latches the
//! network's address (symmetric RTP) and notices when the network stops sending.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use camara_codec::{G711ToOpus, Law, OpusToG711};
use webrtc::rtp::packet::Packet;

use crate::negotiate::Bridge;
use crate::rtp_stats::{Reception, ReceptionStats};
use crate::sdp::{Direction, Encoding, Format};

/// Counters of one session, for logs, tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub from_device: u64,
    pub to_network: u64,
    pub from_network: u64,
    pub to_device: u64,
    /// Held by the negotiated direction, of an unknown payload type, or not decodable.
    pub dropped: u64,
    pub events_to_network: u64,
    pub events_to_device: u64,
    /// Payload octets sent towards the network (for RTCP sender reports).
    pub octets_to_network: u64,
    /// What arrived from the network and from the device, by RFC 3550's reckoning (loss from
    /// the sequence numbers, interarrival jitter), whether relayed or dropped.
    pub from_network_reception: Reception,
    pub from_device_reception: Reception,
}

/// The SSRC, sequence numbers and timestamps of one outgoing stream.
#[derive(Debug)]
struct Outbound {
    ssrc: u32,
    clock_rate: u32,
    source: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// The last packet sent: its sequence number, timestamp and when.
    last: Option<(u16, u32, Instant)>,
}

impl Outbound {
    fn new(clock_rate: u32) -> Self {
        Outbound { ssrc: rand::random(), clock_rate, source: None, seq_offset: 0, ts_offset: 0, last: None }
    }

    /// The sequence number and timestamp for an input packet of stream `source`. When the
    /// source changes, the output carries on from the last packet sent as if time had passed.
    fn map(&mut self, source: u32, seq: u16, ts: u32, now: Instant) -> (u16, u32) {
        if self.source != Some(source) {
            let (next_seq, next_ts) = match self.last {
                Some((last_seq, last_ts, at)) => {
                    let elapsed = now.saturating_duration_since(at).as_secs_f64() * f64::from(self.clock_rate);
                    (last_seq.wrapping_add(1), last_ts.wrapping_add((elapsed as u32).max(1)))
                }
                None => (rand::random(), rand::random()),
            };
            self.seq_offset = next_seq.wrapping_sub(seq);
            self.ts_offset = next_ts.wrapping_sub(ts);
            self.source = Some(source);
        }
        let out = (seq.wrapping_add(self.seq_offset), ts.wrapping_add(self.ts_offset));
        let newer = self.last.is_none_or(|(last_seq, _, _)| (out.0.wrapping_sub(last_seq) as i16) > 0);
        if newer {
            self.last = Some((out.0, out.1, now));
        }
        out
    }

    /// Held packets are not lost packets: after a pause the stream carries on from the last
    /// packet sent, with no gap in sequence numbers and the timestamp advanced by the pause.
    fn pause(&mut self) {
        self.source = None;
    }

    /// The next sequence number and the timestamp `ts` for a packet the relay made itself.
    fn next(&mut self, ts: u32, now: Instant) -> (u16, u32) {
        let seq = self.last.map_or_else(rand::random, |(seq, _, _)| seq.wrapping_add(1));
        self.last = Some((seq, ts, now));
        (seq, ts)
    }
}

/// The network's address: the one its SDP names until a packet arrives, then the packet's
/// source (symmetric RTP, RFC 4961), so NATs and SBCs in the path work.
#[derive(Debug, Default)]
struct Latch {
    signalled: Option<SocketAddr>,
    learned: Option<SocketAddr>,
}

struct Transcoders {
    to_network: OpusToG711,
    to_device: G711ToOpus,
    /// Timestamp of the next Opus frame towards the device, in the device's clock.
    next_device_ts: Option<u32>,
    frames: Vec<Vec<u8>>,
    pcm: Vec<u8>,
}

/// The forwarding state of one session.
pub struct Relay {
    bridge: Option<Bridge>,
    /// Our direction towards the network, as last negotiated.
    network_direction: Direction,
    latch: Latch,
    to_network: Outbound,
    to_device: Outbound,
    transcoders: Option<Transcoders>,
    last_from_network: Option<Instant>,
    listening_since: Option<Instant>,
    stats: RelayStats,
    network_reception: ReceptionStats,
    device_reception: ReceptionStats,
}

impl Default for Relay {
    fn default() -> Self {
        Relay::new()
    }
}

fn law(encoding: Encoding) -> Law {
    if encoding == Encoding::Pcma { Law::A } else { Law::Mu }
}

/// An RFC 4733 event's duration field rescaled from one clock rate to another.
fn rescale_event(payload: &Bytes, from: u32, to: u32) -> Bytes {
    if from == to || payload.len() < 4 {
        return payload.clone();
    }
    let duration = u64::from(u16::from_be_bytes([payload[2], payload[3]]));
    let scaled = (duration * u64::from(to) / u64::from(from)).min(u64::from(u16::MAX)) as u16;
    let mut out = payload.to_vec();
    out[2..4].copy_from_slice(&scaled.to_be_bytes());
    out.into()
}

fn rescale_ts(ts: u32, from: u32, to: u32) -> u32 {
    (u64::from(ts) * u64::from(to) / u64::from(from)) as u32
}

impl Relay {
    pub fn new() -> Self {
        Relay {
            bridge: None,
            network_direction: Direction::SendRecv,
            latch: Latch::default(),
            to_network: Outbound::new(8000),
            to_device: Outbound::new(8000),
            transcoders: None,
            last_from_network: None,
            listening_since: None,
            stats: RelayStats::default(),
            network_reception: ReceptionStats::default(),
            device_reception: ReceptionStats::default(),
        }
    }

    pub fn stats(&self) -> RelayStats {
        RelayStats {
            from_network_reception: self.network_reception.summary(),
            from_device_reception: self.device_reception.summary(),
            ..self.stats
        }
    }

    pub fn bridge(&self) -> Option<&Bridge> {
        self.bridge.as_ref()
    }

    /// Starts relaying with `bridge`. Keeps the outgoing streams, so a re-negotiation does not
    /// restart their sequence numbers.
    pub fn set_bridge(&mut self, bridge: Bridge, now: Instant) -> Result<(), camara_codec::CodecError> {
        self.transcoders = if bridge.transcodes() {
            let law = law(bridge.network.encoding);
            Some(Transcoders {
                to_network: OpusToG711::new(law)?,
                to_device: G711ToOpus::new(law)?,
                next_device_ts: None,
                frames: Vec::new(),
                pcm: Vec::new(),
            })
        } else {
            None
        };
        self.to_network.clock_rate = bridge.network.clock_rate;
        self.to_device.clock_rate = bridge.device.clock_rate;
        self.bridge = Some(bridge);
        self.listening_since.get_or_insert(now);
        Ok(())
    }

    /// The network's address from its SDP; a new one is latched again.
    pub fn set_network_address(&mut self, address: Option<SocketAddr>) {
        if self.latch.signalled != address {
            self.latch = Latch { signalled: address, learned: None };
        }
    }

    pub fn set_network_direction(&mut self, direction: Direction, now: Instant) {
        if direction == Direction::SendRecv && self.network_direction != Direction::SendRecv {
            self.listening_since = Some(now);
            self.last_from_network = None;
        }
        self.network_direction = direction;
    }

    pub fn network_destination(&self) -> Option<SocketAddr> {
        self.latch.learned.or(self.latch.signalled)
    }

    pub fn network_ssrc(&self) -> u32 {
        self.to_network.ssrc
    }

    /// The RTP timestamp towards the network that corresponds to `now` (RFC 3550 6.4.1: the
    /// sender report's RTP time), from the last packet sent; `None` before any was sent.
    pub fn network_rtp_time(&self, now: Instant) -> Option<u32> {
        let (_, ts, at) = self.to_network.last?;
        let elapsed = now.saturating_duration_since(at).as_secs_f64() * f64::from(self.to_network.clock_rate);
        Some(ts.wrapping_add(elapsed as u32))
    }

    /// Whether the network has sent nothing for `timeout` while it was expected to: only in
    /// two-way media, since a holding network may well send nothing (RFC 3264 does not make
    /// it play music).
    pub fn network_silent_for(&self, timeout: Duration, now: Instant) -> bool {
        if self.bridge.is_none() || self.network_direction != Direction::SendRecv {
            return false;
        }
        match self.last_from_network.or(self.listening_since) {
            Some(since) => now.saturating_duration_since(since) >= timeout,
            None => false,
        }
    }

    /// A packet from the device: what to send to `network_destination`.
    pub fn from_device(&mut self, packet: &Packet, now: Instant, out: &mut Vec<Packet>) {
        self.stats.from_device += 1;
        let Some(bridge) = &self.bridge else {
            self.stats.dropped += 1;
            return;
        };
        let h = &packet.header;
        self.device_reception.on_packet(h.ssrc, h.sequence_number, h.timestamp, bridge.device.clock_rate, now);
        if !self.network_direction.sends() {
            self.stats.dropped += 1;
            self.to_network.pause();
            return;
        }
        let pt = packet.header.payload_type;
        let device_clock = bridge.device.clock_rate;
        let (payload_type, payload) = if pt == bridge.device.payload_type {
            match &mut self.transcoders {
                Some(t) => {
                    t.pcm.clear();
                    if t.to_network.transcode(&packet.payload, &mut t.pcm).is_err() {
                        self.stats.dropped += 1;
                        return;
                    }
                    (bridge.network.payload_type, Bytes::copy_from_slice(&t.pcm))
                }
                None => (bridge.network.payload_type, packet.payload.clone()),
            }
        } else if let (Some(device_events), Some(network_events)) = (&bridge.device_events, &bridge.network_events)
            && pt == device_events.payload_type
        {
            self.stats.events_to_network += 1;
            (network_events.payload_type, rescale_event(&packet.payload, device_events.clock_rate, 8000))
        } else {
            self.stats.dropped += 1;
            return;
        };
        let ts = rescale_ts(packet.header.timestamp, device_clock, bridge.network.clock_rate);
        let (seq, ts) = self.to_network.map(packet.header.ssrc, packet.header.sequence_number, ts, now);
        let mut header = webrtc::rtp::header::Header {
            version: 2,
            marker: packet.header.marker,
            payload_type,
            sequence_number: seq,
            timestamp: ts,
            ssrc: self.to_network.ssrc,
            ..Default::default()
        };
        header.padding = false;
        self.stats.to_network += 1;
        self.stats.octets_to_network += payload.len() as u64;
        out.push(Packet { header, payload });
    }

    /// A packet from the network, received from `source`: what to send to the device (the
    /// WebRTC leg sets the SSRC it negotiated).
    pub fn from_network(&mut self, packet: &Packet, source: SocketAddr, now: Instant, out: &mut Vec<Packet>) {
        self.stats.from_network += 1;
        if self.latch.learned.is_none() {
            self.latch.learned = Some(source);
        }
        self.last_from_network = Some(now);
        let Some(bridge) = &self.bridge else {
            self.stats.dropped += 1;
            return;
        };
        let h = &packet.header;
        self.network_reception.on_packet(h.ssrc, h.sequence_number, h.timestamp, bridge.network.clock_rate, now);
        if !self.network_direction.receives() {
            self.stats.dropped += 1;
            self.to_device.pause();
            return;
        }
        let pt = packet.header.payload_type;
        let header = |payload_type: u8, (sequence_number, timestamp): (u16, u32)| webrtc::rtp::header::Header {
            version: 2,
            marker: packet.header.marker,
            payload_type,
            sequence_number,
            timestamp,
            ..Default::default()
        };
        let device_clock = bridge.device.clock_rate;
        if pt == bridge.network.payload_type {
            match &mut self.transcoders {
                None => {
                    let mapped = self.to_device.map(
                        packet.header.ssrc,
                        packet.header.sequence_number,
                        packet.header.timestamp,
                        now,
                    );
                    out.push(Packet {
                        header: header(bridge.device.payload_type, mapped),
                        payload: packet.payload.clone(),
                    });
                    self.stats.to_device += 1;
                }
                Some(t) => {
                    t.frames.clear();
                    if t.to_device.transcode(&packet.payload, &mut t.frames).is_err() {
                        self.stats.dropped += 1;
                        return;
                    }
                    let input_ts = rescale_ts(packet.header.timestamp, bridge.network.clock_rate, device_clock);
                    // The first frame takes its timestamp from the input; the next ones follow on.
                    let mut ts = t.next_device_ts.unwrap_or(input_ts);
                    for frame in t.frames.drain(..) {
                        let mapped = self.to_device.next(ts, now);
                        out.push(Packet { header: header(bridge.device.payload_type, mapped), payload: frame.into() });
                        self.stats.to_device += 1;
                        ts = ts.wrapping_add(device_clock / 50);
                    }
                    t.next_device_ts = Some(ts);
                }
            }
        } else if let (Some(device_events), Some(network_events)) = (&bridge.device_events, &bridge.network_events)
            && pt == network_events.payload_type
        {
            let ts = rescale_ts(packet.header.timestamp, 8000, device_events.clock_rate);
            let mapped = match &self.transcoders {
                // The transcoded stream numbers its own packets; events join that numbering.
                Some(_) => self.to_device.next(ts, now),
                None => self.to_device.map(packet.header.ssrc, packet.header.sequence_number, ts, now),
            };
            let payload = rescale_event(&packet.payload, 8000, device_events.clock_rate);
            out.push(Packet { header: header(device_events.payload_type, mapped), payload });
            self.stats.events_to_device += 1;
            self.stats.to_device += 1;
        } else {
            self.stats.dropped += 1;
        }
    }
}

/// The device-side format of a bridge as the WebRTC stack names it.
pub fn device_formats(bridge: &Bridge) -> Vec<Format> {
    let mut formats = vec![bridge.device.clone()];
    formats.extend(bridge.device_events.clone());
    formats
}

#[cfg(test)]
mod tests {
    use super::*;
    use webrtc::rtp::header::Header;

    fn packet(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Packet {
        Packet {
            header: Header {
                version: 2,
                payload_type: pt,
                ssrc,
                sequence_number: seq,
                timestamp: ts,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn passthrough() -> Bridge {
        Bridge {
            device: Format { payload_type: 0, ..Format::pcmu() },
            network: Format::pcmu(),
            device_events: Some(Format::telephone_event(126, 8000)),
            network_events: Some(Format::telephone_event(101, 8000)),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn g711_passes_through_with_our_ssrc_and_mapped_event_payload_types() {
        let now = Instant::now();
        let mut relay = Relay::new();
        relay.set_bridge(passthrough(), now).unwrap();
        let mut out = Vec::new();
        relay.from_device(&packet(0, 7, 100, 1000, &[0xff; 160]), now, &mut out);
        relay.from_device(&packet(126, 7, 101, 1160, &[1, 0x8a, 0, 160]), now, &mut out);
        relay.from_device(&packet(99, 7, 102, 1320, &[0]), now, &mut out);
        assert_eq!(out.len(), 2, "an unknown payload type is dropped");
        assert_eq!((out[0].header.payload_type, out[1].header.payload_type), (0, 101));
        assert_eq!(out[0].header.ssrc, relay.network_ssrc());
        assert_eq!(out[1].header.sequence_number, out[0].header.sequence_number.wrapping_add(1));
        assert_eq!(out[1].header.timestamp, out[0].header.timestamp.wrapping_add(160));
        assert_eq!(&out[0].payload[..], &[0xff; 160][..], "G.711 is not touched");
        assert_eq!(&out[1].payload[..], &[1, 0x8a, 0, 160][..]);
        assert_eq!(relay.stats().dropped, 1);
        assert_eq!(relay.stats().events_to_network, 1);
    }

    #[test]
    fn a_new_source_continues_the_outgoing_sequence_and_clock() {
        let start = Instant::now();
        let mut relay = Relay::new();
        relay.set_bridge(passthrough(), start).unwrap();
        let mut out = Vec::new();
        relay.from_network(&packet(0, 1, 5000, 80_000, &[0; 160]), addr(4000), start, &mut out);
        relay.from_network(&packet(0, 1, 5001, 80_160, &[0; 160]), addr(4000), start, &mut out);
        // A re-INVITE later, the network restarts its stream with a new SSRC.
        let later = start + Duration::from_millis(40);
        relay.from_network(&packet(0, 2, 9, 7, &[0; 160]), addr(4000), later, &mut out);
        relay.from_network(&packet(0, 2, 10, 167, &[0; 160]), addr(4000), later, &mut out);
        let seqs: Vec<u16> = out.iter().map(|p| p.header.sequence_number).collect();
        let first = seqs[0];
        assert_eq!(seqs, vec![first, first.wrapping_add(1), first.wrapping_add(2), first.wrapping_add(3)]);
        let ts: Vec<u32> = out.iter().map(|p| p.header.timestamp.wrapping_sub(out[0].header.timestamp)).collect();
        assert_eq!(ts, vec![0, 160, 160 + 320, 160 + 320 + 160]);
    }

    #[test]
    fn the_network_address_is_latched_from_the_first_packet() {
        let now = Instant::now();
        let mut relay = Relay::new();
        relay.set_network_address(Some(addr(4000)));
        assert_eq!(relay.network_destination(), Some(addr(4000)));
        relay.from_network(&packet(0, 1, 1, 1, &[0]), addr(5000), now, &mut Vec::new());
        assert_eq!(relay.network_destination(), Some(addr(5000)), "symmetric RTP");
        relay.from_network(&packet(0, 1, 2, 2, &[0]), addr(6000), now, &mut Vec::new());
        assert_eq!(relay.network_destination(), Some(addr(5000)), "latched once per description");
        relay.set_network_address(Some(addr(4002)));
        assert_eq!(relay.network_destination(), Some(addr(4002)));
    }

    #[test]
    fn hold_gates_each_direction_and_pauses_the_media_timeout() {
        let start = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut relay = Relay::new();
        relay.set_bridge(passthrough(), start).unwrap();
        assert!(!relay.network_silent_for(timeout, start + Duration::from_secs(4)));
        assert!(relay.network_silent_for(timeout, start + Duration::from_secs(5)));
        let mut out = Vec::new();
        relay.set_network_direction(Direction::SendOnly, start);
        relay.from_network(&packet(0, 1, 1, 1, &[0]), addr(4000), start, &mut out);
        assert!(out.is_empty(), "we hold: nothing from the network reaches the device");
        relay.from_device(&packet(0, 1, 1, 1, &[0]), start, &mut out);
        assert_eq!(out.len(), 1, "we hold but still send");
        assert!(!relay.network_silent_for(timeout, start + Duration::from_secs(60)), "silence is expected on hold");
        relay.set_network_direction(Direction::RecvOnly, start);
        out.clear();
        relay.from_device(&packet(0, 1, 2, 161, &[0]), start, &mut out);
        assert!(out.is_empty(), "the network holds: nothing reaches it");
        let resumed = start + Duration::from_secs(10);
        relay.set_network_direction(Direction::SendRecv, resumed);
        assert!(!relay.network_silent_for(timeout, resumed + Duration::from_secs(1)));
        relay.from_network(&packet(0, 1, 2, 161, &[0]), addr(4000), resumed, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn held_packets_leave_no_gap_in_the_sequence() {
        let start = Instant::now();
        let mut relay = Relay::new();
        relay.set_bridge(passthrough(), start).unwrap();
        let mut out = Vec::new();
        relay.from_network(&packet(0, 1, 10, 1600, &[0]), addr(4000), start, &mut out);
        relay.set_network_direction(Direction::SendOnly, start);
        for seq in 11..60 {
            relay.from_network(&packet(0, 1, seq, u32::from(seq) * 160, &[0]), addr(4000), start, &mut out);
        }
        let resumed = start + Duration::from_secs(1);
        relay.set_network_direction(Direction::SendRecv, resumed);
        relay.from_network(&packet(0, 1, 60, 9600, &[0]), addr(4000), resumed, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].header.sequence_number, out[0].header.sequence_number.wrapping_add(1));
        assert_eq!(out[1].header.timestamp.wrapping_sub(out[0].header.timestamp), 8000, "one second later");
    }

    #[test]
    fn event_durations_follow_the_clock_rate() {
        let event = Bytes::from_static(&[5, 0x0a, 0x03, 0xc0]);
        assert_eq!(&rescale_event(&event, 48000, 8000)[..], &[5, 0x0a, 0x00, 0xa0][..]);
        assert_eq!(
            &rescale_event(&Bytes::from_static(&[5, 0x0a, 0x00, 0xa0]), 8000, 48000)[..],
            &[5, 0x0a, 0x03, 0xc0]
        );
    }

    #[test]
    fn nothing_is_relayed_before_the_bridge_is_known() {
        let now = Instant::now();
        let mut relay = Relay::new();
        let mut out = Vec::new();
        relay.from_device(&packet(0, 1, 1, 1, &[0]), now, &mut out);
        relay.from_network(&packet(0, 1, 1, 1, &[0]), addr(4000), now, &mut out);
        assert!(out.is_empty());
        assert!(!relay.network_silent_for(Duration::ZERO, now));
        assert_eq!(relay.stats().dropped, 2);
    }
}
