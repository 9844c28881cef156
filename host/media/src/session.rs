//! The I/O around the relay: sockets of the network leg, the peer connection of the device
//! leg, and the tasks that move packets between them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_remote::TrackRemote;
use webrtc::util::{Marshal, Unmarshal};

use crate::config::MediaConfig;
use crate::relay::{Relay, RelayStats, device_formats};
use crate::sdp::{AudioMedia, Direction, Format, RtpDescription, parse_audio};
use crate::webrtc_leg::{RelayTrack, gathered_description, peer_connection};
use crate::{MediaError, negotiate::Bridge};

/// What a session reports on its own, with the key the gateway gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP from the network for the configured media timeout.
    NetworkSilent { key: String, after: Duration },
    /// The device leg lost ICE connectivity (its consent expired, RFC 7675, or ICE failed) and
    /// did not regain it within the configured grace; `why` says which, for a person.
    DeviceLegFailed { key: String, why: String },
}

/// Makes media sessions; one per gateway.
pub struct MediaAnchor {
    config: Arc<MediaConfig>,
    next_port: AtomicU32,
    events: UnboundedSender<MediaEvent>,
}

/// Our direction once the other side answered `remote` to our `local`.
fn negotiated(local: Direction, remote: Direction) -> Direction {
    match (local.sends() && remote.receives(), local.receives() && remote.sends()) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MediaAnchor {
    pub fn new(config: MediaConfig, events: UnboundedSender<MediaEvent>) -> Self {
        MediaAnchor { config: Arc::new(config), next_port: AtomicU32::new(0), events }
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// An even RTP port and the RTCP port above it, from the configured range.
    async fn bind_network_leg(&self) -> Result<(UdpSocket, UdpSocket, u16), MediaError> {
        let (min, max) = self.config.rtp_ports;
        let min = min + (min % 2);
        let span = u32::from(max.saturating_sub(min) / 2 + 1);
        for _ in 0..span {
            let port = min + (self.next_port.fetch_add(1, Ordering::Relaxed) % span) as u16 * 2;
            let Ok(rtp) = UdpSocket::bind((self.config.network_address, port)).await else { continue };
            let Ok(rtcp) = UdpSocket::bind((self.config.network_address, port + 1)).await else { continue };
            return Ok((rtp, rtcp, port));
        }
        Err(MediaError::NoPorts)
    }

    async fn session(&self, key: &str, formats: Vec<Format>) -> Result<Arc<MediaSession>, MediaError> {
        let (rtp, rtcp, port) = self.bind_network_leg().await?;
        let local = RtpDescription {
            address: self.config.network_address,
            port,
            session_id: rand::random::<u32>().into(),
            version: 1,
            formats,
            direction: Direction::SendRecv,
        };
        let session = Arc::new(MediaSession {
            key: key.to_string(),
            config: self.config.clone(),
            relay: Arc::new(Mutex::new(Relay::new())),
            rtp: Arc::new(rtp),
            local: Mutex::new(local),
            remote_offer: Mutex::new(None),
            track: Arc::new(OnceLock::new()),
            pc: tokio::sync::Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            offerless: Default::default(),
            offer_sent_early: Default::default(),
            events: self.events.clone(),
            closing: Default::default(),
        });
        let tasks = vec![
            tokio::spawn(network_to_device(session.rtp.clone(), session.relay.clone(), session.track.clone())),
            tokio::spawn(rtcp_reports(rtcp, session.relay.clone())),
            tokio::spawn(watch_media(session.clone_weak(), self.config.media_timeout, self.events.clone())),
        ];
        lock(&session.tasks).extend(tasks);
        Ok(session)
    }

    /// An outgoing call: the session for the device's offer, and the SIP offer to send.
    pub async fn outgoing(&self, key: &str, device_offer: &str) -> Result<(Arc<MediaSession>, String), MediaError> {
        let device = parse_audio(device_offer)?;
        let formats = self.config.codecs.network_offer(&device)?;
        let session = self.session(key, formats).await?;
        *lock(&session.remote_offer) = Some((device, device_offer.to_string()));
        let offer = lock(&session.local).render();
        Ok((session, offer))
    }

    /// An incoming call: the session for the network's offer, and the WebRTC offer to give the
    /// device.
    pub async fn incoming(&self, key: &str, network_offer: &str) -> Result<(Arc<MediaSession>, String), MediaError> {
        self.invite_device(key, parse_audio(network_offer)?, network_offer.to_string(), false).await
    }

    /// An incoming call whose INVITE carried no offer (RFC 3261 13.2.1): the device is offered
    /// the operator's G.711 laws (and Opus), and its answer makes our offer to the network, which
    /// answers in the ACK or PRACK ([`MediaSession::network_answered_our_offer`]).
    pub async fn incoming_offerless(&self, key: &str) -> Result<(Arc<MediaSession>, String), MediaError> {
        let network = AudioMedia {
            address: None,
            port: 0,
            proto: "RTP/AVP".into(),
            formats: self
                .config
                .codecs
                .network
                .iter()
                .filter(|e| e.is_g711())
                .map(|e| if *e == crate::Encoding::Pcma { Format::pcma() } else { Format::pcmu() })
                .chain([Format::telephone_event(crate::sdp::NETWORK_TELEPHONE_EVENT_PT, 8000)])
                .collect(),
            direction: Direction::SendRecv,
        };
        self.invite_device(key, network, String::new(), true).await
    }

    async fn invite_device(
        &self,
        key: &str,
        network: AudioMedia,
        network_offer: String,
        offerless: bool,
    ) -> Result<(Arc<MediaSession>, String), MediaError> {
        let formats = self.config.codecs.device_offer(&network)?;
        let session = self.session(key, Vec::new()).await?;
        lock(&session.relay).set_network_address(network.address.map(|a| SocketAddr::new(a, network.port)));
        let pc = peer_connection(&self.config, &formats).await?;
        let track = RelayTrack::new(&formats[0]);
        let _ = session.track.set(track.clone());
        session.listen_to_device(&pc);
        pc.add_transceiver_from_track(
            track,
            Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendrecv, send_encodings: vec![] }),
        )
        .await?;
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        let sdp = gathered_description(&pc).await?;
        *session.pc.lock().await = Some(pc);
        *lock(&session.remote_offer) = Some((network, network_offer));
        session.offerless.store(offerless, std::sync::atomic::Ordering::Relaxed);
        Ok((session, sdp))
    }
}

/// The media of one call.
pub struct MediaSession {
    key: String,
    config: Arc<MediaConfig>,
    relay: Arc<Mutex<Relay>>,
    rtp: Arc<UdpSocket>,
    /// Our latest description towards the network.
    local: Mutex<RtpDescription>,
    /// The offer that started the call (the device's or the network's) and its text.
    remote_offer: Mutex<Option<(AudioMedia, String)>>,
    track: Arc<OnceLock<Arc<RelayTrack>>>,
    pc: tokio::sync::Mutex<Option<Arc<RTCPeerConnection>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// An incoming call without an offer: our SIP description is the offer.
    offerless: std::sync::atomic::AtomicBool,
    /// That offer went out in a reliable provisional: its answer comes in the PRACK, and the
    /// 2xx carries no new offer.
    offer_sent_early: std::sync::atomic::AtomicBool,
    events: UnboundedSender<MediaEvent>,
    /// Set by [`Self::close`]: the device leg's end is ours, not a failure to report.
    closing: Arc<std::sync::atomic::AtomicBool>,
}

impl MediaSession {
    fn clone_weak(self: &Arc<Self>) -> std::sync::Weak<Self> {
        Arc::downgrade(self)
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn stats(&self) -> RelayStats {
        lock(&self.relay).stats()
    }

    pub fn bridge(&self) -> Option<Bridge> {
        lock(&self.relay).bridge().cloned()
    }

    /// The RTP port of the network leg.
    pub fn network_port(&self) -> u16 {
        lock(&self.local).port
    }

    fn listen_to_device(&self, pc: &RTCPeerConnection) {
        let watch = Arc::new(crate::device_watch::DeviceWatch::new(
            self.key.clone(),
            self.config.device_failure_grace,
            self.events.clone(),
            self.closing.clone(),
        ));
        pc.on_peer_connection_state_change(Box::new(move |state| {
            watch.changed(state);
            Box::pin(async {})
        }));
        let relay = self.relay.clone();
        let rtp = self.rtp.clone();
        pc.on_track(Box::new(move |track, _, _| {
            let (relay, rtp) = (relay.clone(), rtp.clone());
            Box::pin(async move {
                tokio::spawn(device_to_network(track, rtp, relay));
            })
        }));
    }

    fn apply_network_description(&self, remote: &AudioMedia, local_direction: Direction) {
        let mut relay = lock(&self.relay);
        relay.set_network_address(remote.address.map(|a| SocketAddr::new(a, remote.port)));
        relay.set_network_direction(negotiated(local_direction, remote.direction), Instant::now());
    }

    /// An outgoing call's answer from the network (in a reliable 183 or the 200). The first one
    /// decides the codecs and returns the answer for the device; later ones only move the
    /// network's address or direction.
    pub async fn network_answered(&self, sdp: &str) -> Result<Option<String>, MediaError> {
        let answer = parse_audio(sdp)?;
        let local_direction = lock(&self.local).direction;
        self.apply_network_description(&answer, local_direction);
        let mut pc_slot = self.pc.lock().await;
        if pc_slot.is_some() {
            return Ok(None);
        }
        let (device_offer, device_sdp) =
            lock(&self.remote_offer).clone().ok_or(MediaError::State("not an outgoing call"))?;
        let bridge = self.config.codecs.outgoing_bridge(&device_offer, &answer)?;
        lock(&self.relay).set_bridge(bridge.clone(), Instant::now())?;
        {
            let mut local = lock(&self.local);
            local.formats = std::iter::once(bridge.network.clone()).chain(bridge.network_events.clone()).collect();
        }
        let pc = peer_connection(&self.config, &device_formats(&bridge)).await?;
        let track = RelayTrack::new(&bridge.device);
        let _ = self.track.set(track.clone());
        self.listen_to_device(&pc);
        // Added before the offer is applied, so the offer's m-line takes this sendrecv
        // transceiver instead of a receive-only one of its own.
        pc.add_track(track).await?;
        pc.set_remote_description(RTCSessionDescription::offer(device_sdp)?).await?;
        let device_answer = pc.create_answer(None).await?;
        pc.set_local_description(device_answer).await?;
        let sdp = gathered_description(&pc).await?;
        *pc_slot = Some(pc);
        Ok(Some(sdp))
    }

    /// An incoming call's answer from the device: returns the SIP answer.
    pub async fn device_answered(&self, sdp: &str) -> Result<String, MediaError> {
        let answer = parse_audio(sdp)?;
        let (network_offer, _) = lock(&self.remote_offer).clone().ok_or(MediaError::State("not an incoming call"))?;
        let bridge = self.config.codecs.incoming_bridge(&network_offer, &answer)?;
        let pc = self.pc.lock().await.clone().ok_or(MediaError::State("not an incoming call"))?;
        pc.set_remote_description(RTCSessionDescription::answer(sdp.to_string())?).await?;
        lock(&self.relay).set_bridge(bridge.clone(), Instant::now())?;
        let mut local = lock(&self.local);
        if self.is_offerless() {
            // Our offer: the device's law when it passes through, every law when transcoded.
            local.formats = if bridge.transcodes() {
                network_offer.formats.clone()
            } else {
                std::iter::once(bridge.network.clone()).chain(bridge.network_events.clone()).collect()
            };
            local.direction = Direction::SendRecv;
            return Ok(local.render());
        }
        local.formats = std::iter::once(bridge.network.clone()).chain(bridge.network_events.clone()).collect();
        local.direction = network_offer.direction.answer();
        self.apply_network_description(&network_offer, local.direction);
        Ok(local.render())
    }

    /// Records that our offer of an offerless call went out in a reliable provisional.
    pub fn offer_sent_early(&self) {
        self.offer_sent_early.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the final response must leave the SDP out: the offer/answer exchange of an
    /// offerless call already completed with the PRACK (RFC 3262 5).
    pub fn exchange_completed_early(&self) -> bool {
        self.is_offerless() && self.offer_sent_early.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the call came without an offer, so that our SIP description is an offer.
    pub fn is_offerless(&self) -> bool {
        self.offerless.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The network's answer (in the ACK or PRACK) to the offer we made for an offerless INVITE.
    pub fn network_answered_our_offer(&self, sdp: &str) -> Result<(), MediaError> {
        let answer = parse_audio(sdp)?;
        let bridge = self.bridge().ok_or(MediaError::State("the device has not answered"))?;
        let chosen = answer.voice().ok_or(MediaError::NoCommonCodec)?;
        let network = if chosen.encoding == bridge.network.encoding || bridge.transcodes() {
            lock(&self.local).formats.iter().find(|f| f.encoding == chosen.encoding).cloned()
        } else {
            None
        }
        .ok_or(MediaError::NoCommonCodec)?;
        let network_events = answer.telephone_event(8000).cloned();
        lock(&self.relay).set_bridge(
            Bridge { network: network.clone(), network_events: network_events.clone(), ..bridge },
            Instant::now(),
        )?;
        let mut local = lock(&self.local);
        local.formats = std::iter::once(network).chain(network_events).collect();
        self.apply_network_description(&answer, local.direction);
        Ok(())
    }

    /// A re-offer towards the network with `direction` (hold: sendonly; resume: sendrecv).
    /// Applied once the network answers, through [`Self::network_reoffer_answered`].
    pub fn network_reoffer(&self, direction: Direction) -> String {
        let mut local = lock(&self.local);
        local.revise(|d| d.direction = direction);
        local.render()
    }

    /// Our description towards the network offered again unchanged (same `o=` version, RFC 3264
    /// s.8), for a re-INVITE of the network that carries no offer; its answer goes to
    /// [`Self::network_reoffer_answered`].
    pub fn network_offer_again(&self) -> String {
        lock(&self.local).render()
    }

    /// The network's answer to [`Self::network_reoffer`] or [`Self::network_offer_again`].
    pub fn network_reoffer_answered(&self, sdp: &str) -> Result<(), MediaError> {
        let answer = parse_audio(sdp)?;
        let direction = lock(&self.local).direction;
        self.apply_network_description(&answer, direction);
        Ok(())
    }

    /// A re-offer from the network (its hold or resume): returns our answer and the direction
    /// the network now has (sendonly: it holds us).
    pub fn network_reoffered(&self, sdp: &str) -> Result<(String, Direction), MediaError> {
        let offer = parse_audio(sdp)?;
        // The device's leg keeps its codec, so the network must keep offering the one it has;
        // anything else is refused (488) and the call goes on as it was.
        let bridge = self.bridge().ok_or(MediaError::State("the call has no media yet"))?;
        let network = offer.first(bridge.network.encoding).ok_or(MediaError::NoCommonCodec)?.clone();
        let events = offer.telephone_event(8000).cloned();
        let mut local = lock(&self.local);
        let formats = std::iter::once(network.clone()).chain(events.clone()).collect();
        local.revise(|d| {
            d.formats = formats;
            d.direction = offer.direction.answer();
        });
        if network != bridge.network || events != bridge.network_events {
            // Same codec, new payload types: the relay follows them.
            let mut relay = lock(&self.relay);
            relay.set_bridge(Bridge { network, network_events: events, ..bridge }, Instant::now())?;
        }
        self.apply_network_description(&offer, local.direction);
        Ok((local.render(), offer.direction))
    }

    /// Stops both legs.
    pub async fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        if let Some(pc) = self.pc.lock().await.take() {
            let _ = pc.close().await;
        }
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

async fn network_to_device(rtp: Arc<UdpSocket>, relay: Arc<Mutex<Relay>>, track: Arc<OnceLock<Arc<RelayTrack>>>) {
    let mut buf = vec![0u8; 1500];
    let mut out = Vec::new();
    loop {
        let Ok((n, source)) = rtp.recv_from(&mut buf).await else { return };
        let Ok(packet) = Packet::unmarshal(&mut &buf[..n]) else {
            tracing::debug!(%source, "not an RTP packet on the network leg: dropped");
            continue;
        };
        lock(&relay).from_network(&packet, source, Instant::now(), &mut out);
        match track.get() {
            Some(track) => {
                for packet in out.drain(..) {
                    track.send(packet).await;
                }
            }
            None => out.clear(),
        }
    }
}

async fn device_to_network(track: Arc<TrackRemote>, rtp: Arc<UdpSocket>, relay: Arc<Mutex<Relay>>) {
    let mut out = Vec::new();
    while let Ok((packet, _)) = track.read_rtp().await {
        let destination = {
            let mut relay = lock(&relay);
            relay.from_device(&packet, Instant::now(), &mut out);
            relay.network_destination()
        };
        let Some(destination) = destination else {
            out.clear();
            continue;
        };
        for packet in out.drain(..) {
            if let Ok(bytes) = packet.marshal() {
                let _ = rtp.send_to(&bytes, destination).await;
            }
        }
    }
}

/// RTCP on the network leg: drains what the network sends and reports our stream every 5 s
/// (RFC 3550 6.4.1 sender reports) to the RTCP port next to the network's RTP port.
async fn rtcp_reports(rtcp: UdpSocket, relay: Arc<Mutex<Relay>>) {
    // One task owns the socket, so aborting it (the session's close) frees the port.
    let mut buf = vec![0u8; 1500];
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    interval.tick().await;
    loop {
        tokio::select! {
            received = rtcp.recv_from(&mut buf) => {
                if received.is_err() {
                    return;
                }
                continue;
            }
            _ = interval.tick() => {}
        }
        let (destination, report) = {
            let relay = lock(&relay);
            let stats = relay.stats();
            let Some(destination) = relay.network_destination() else { continue };
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            let ntp_seconds = now.as_secs() + 2_208_988_800;
            let ntp_fraction = (u64::from(now.subsec_nanos()) << 32) / 1_000_000_000;
            // Nothing sent yet: a sender report would have no RTP time to tie to NTP time.
            let Some(rtp_time) = relay.network_rtp_time(Instant::now()) else { continue };
            let report = SenderReport {
                ssrc: relay.network_ssrc(),
                ntp_time: (ntp_seconds << 32) | ntp_fraction,
                rtp_time,
                packet_count: stats.to_network as u32,
                octet_count: stats.octets_to_network as u32,
                ..Default::default()
            };
            (SocketAddr::new(destination.ip(), destination.port().wrapping_add(1)), report)
        };
        if let Ok(bytes) = report.marshal() {
            let _ = rtcp.send_to(&bytes, destination).await;
        }
    }
}

/// Reports a network that stopped sending, once.
async fn watch_media(session: std::sync::Weak<MediaSession>, timeout: Duration, events: UnboundedSender<MediaEvent>) {
    let mut interval = tokio::time::interval(Duration::from_millis(250).min(timeout));
    loop {
        interval.tick().await;
        let Some(session) = session.upgrade() else { return };
        if lock(&session.relay).network_silent_for(timeout, Instant::now()) {
            let _ = events.send(MediaEvent::NetworkSilent { key: session.key.clone(), after: timeout });
            return;
        }
    }
}
