//! How many concurrent bidirectional G.711 calls the media anchor relays: N WebRTC clients
//! (the `webrtc` crate, PCMU, 50 packets/s each) call through N anchor sessions to N RTP echoes
//! on the network side, all in this process on loopback. Each packet carries its send time, so
//! the round trip device -> anchor -> echo -> anchor -> device is measured per packet.
//!
//! The load generator (N WebRTC clients with their own SRTP) runs on the same cores as the
//! anchor, so CPU per stream is the whole process's and is an upper bound for the anchor alone.
//!
//! `cargo bench -p camara-media --bench streams -- 50 100 200` (stream counts; default 50 100).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use camara_media::sdp::{Direction, Format, RtpDescription};
use camara_media::{MediaAnchor, MediaConfig};
use tokio::net::UdpSocket;
use webrtc::api::APIBuilder;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType};
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

const MEASURE: Duration = Duration::from_secs(10);

fn pcmu() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability { mime_type: "audio/PCMU".into(), clock_rate: 8000, channels: 1, ..Default::default() }
}

struct Stream {
    pc: Arc<RTCPeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    session: Arc<camara_media::MediaSession>,
    _echo: tokio::task::JoinHandle<()>,
}

struct Totals {
    received: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u32>>,
    /// The measured window, in microseconds since the epoch: packets sent in it are counted
    /// when they come back, even after it closed.
    window_us: (AtomicU64, AtomicU64),
}

async fn client() -> Arc<RTCPeerConnection> {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters { capability: pcmu(), payload_type: 0, ..Default::default() },
            RTPCodecType::Audio,
        )
        .unwrap();
    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_include_loopback_candidate(true);
    settings.set_ip_filter(Box::new(|ip| ip.is_loopback()));
    let api = APIBuilder::new().with_media_engine(media).with_setting_engine(settings).build();
    Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.unwrap())
}

async fn echo() -> (u16, tokio::task::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (port, task)
}

async fn connect(anchor: &MediaAnchor, index: usize, totals: Arc<Totals>, epoch: Instant) -> Stream {
    let pc = client().await;
    let track = Arc::new(TrackLocalStaticRTP::new(pcmu(), "audio".into(), format!("bench-{index}")));
    pc.add_track(track.clone()).await.unwrap();
    pc.on_track(Box::new(move |remote, _, _| {
        let totals = totals.clone();
        Box::pin(async move {
            tokio::spawn(async move {
                while let Ok((packet, _)) = remote.read_rtp().await {
                    if packet.payload.len() >= 8 {
                        let sent = u64::from_be_bytes(packet.payload[..8].try_into().unwrap());
                        let (from, to) = (&totals.window_us.0, &totals.window_us.1);
                        if sent < from.load(Ordering::Relaxed) || sent > to.load(Ordering::Relaxed) {
                            continue;
                        }
                        let now = epoch.elapsed().as_micros() as u64;
                        totals.received.fetch_add(1, Ordering::Relaxed);
                        totals.latencies_us.lock().unwrap().push(now.saturating_sub(sent) as u32);
                    }
                }
            });
        })
    }));
    let offer = pc.create_offer(None).await.unwrap();
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.unwrap();
    let _ = gathered.recv().await;
    let offer_sdp = pc.local_description().await.unwrap().sdp;
    let (session, _sip_offer) = anchor.outgoing(&format!("bench-{index}"), &offer_sdp).await.unwrap();
    let (port, echo_task) = echo().await;
    let network_answer = RtpDescription {
        address: "127.0.0.1".parse().unwrap(),
        port,
        session_id: index as u64,
        version: 1,
        formats: vec![Format::pcmu(), Format::telephone_event(101, 8000)],
        direction: Direction::SendRecv,
    }
    .render();
    let answer = session.network_answered(&network_answer).await.unwrap().unwrap();
    pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap()).await.unwrap();
    Stream { pc, track, session, _echo: echo_task }
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

async fn run(count: usize) {
    let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
    let config =
        MediaConfig { rtp_ports: (20000, 29999), media_timeout: Duration::from_secs(3600), ..MediaConfig::default() };
    let anchor = MediaAnchor::new(config, events);
    let epoch = Instant::now();
    let totals = Arc::new(Totals {
        received: AtomicU64::new(0),
        latencies_us: Default::default(),
        window_us: (AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)),
    });
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        streams.push(connect(&anchor, index, totals.clone(), epoch).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while streams.iter().any(|s| s.pc.connection_state() != RTCPeerConnectionState::Connected) {
        assert!(Instant::now() < deadline, "not all {count} clients connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tracks: Vec<Arc<TrackLocalStaticRTP>> = streams.iter().map(|s| s.track.clone()).collect();
    let sent = Arc::new(AtomicU64::new(0));
    // One sender per stream, as each device has its own clock.
    let senders: Vec<_> = tracks
        .into_iter()
        .map(|track| {
            let sent = sent.clone();
            let totals = totals.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut seq: u16 = rand::random();
                loop {
                    tick.tick().await;
                    seq = seq.wrapping_add(1);
                    let mut payload = vec![0xffu8; 160];
                    let stamp = epoch.elapsed().as_micros() as u64;
                    payload[..8].copy_from_slice(&stamp.to_be_bytes());
                    let (from, to) = (&totals.window_us.0, &totals.window_us.1);
                    let measuring = from.load(Ordering::Relaxed) <= stamp && stamp <= to.load(Ordering::Relaxed);
                    let header = Header {
                        version: 2,
                        payload_type: 0,
                        sequence_number: seq,
                        timestamp: u32::from(seq) * 160,
                        ..Default::default()
                    };
                    if track.write_rtp(&Packet { header, payload: Bytes::from(payload) }).await.is_ok() && measuring {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = cpu_seconds();
    totals.window_us.0.store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    tokio::time::sleep(MEASURE).await;
    totals.window_us.1.store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    let cpu = cpu_seconds() - cpu_before;
    // Packets of the window still in flight come back.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for sender in senders {
        sender.abort();
    }
    let sent = sent.load(Ordering::Relaxed);
    let expected = (count as f64 * MEASURE.as_secs_f64() * 50.0) as u64;
    let received = totals.received.load(Ordering::Relaxed);
    let mut latencies = std::mem::take(&mut *totals.latencies_us.lock().unwrap());
    latencies.sort_unstable();
    let loss = 100.0 * (1.0 - received as f64 / sent.max(1) as f64);
    let relayed: u64 = streams.iter().map(|s| s.session.stats().to_network + s.session.stats().to_device).sum();
    println!(
        "streams {count:>4}: sent {sent:>7} of {expected:>7} due, back {received:>7} loss {loss:>5.2}% | round trip p50 {:>6.2} ms p99 {:>6.2} ms | \
         process CPU {:>5.1}% of one core = {:.2}% per stream | anchor relayed {relayed} packets",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        100.0 * cpu / MEASURE.as_secs_f64(),
        100.0 * cpu / MEASURE.as_secs_f64() / count as f64,
    );
    for stream in streams {
        stream.session.close().await;
        let _ = stream.pc.close().await;
    }
}

fn main() {
    let counts: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let counts = if counts.is_empty() { vec![50, 100] } else { counts };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for count in counts {
        runtime.block_on(run(count));
    }
}
