//! The demo endpoint: a SIP user agent standing in for the telco network when none is
//! configured, so a newcomer can make real calls with nothing else installed.
//!
//! - A call to a number registered on the gateway rings that number's devices, through SIP as
//!   a network would: the endpoint places a second call to the gateway and bridges the two
//!   (a back-to-back user agent; the media flows between the gateway's two RTP legs), so alice
//!   and bob in two browsers call each other.
//! - [`ECHO_NUMBER`] answers and sends the caller's audio back; [`TONE_NUMBER`] answers with a
//!   steady 440 Hz tone. Emergency calls (`urn:service:sos`) reach the echo.
//! - Any other number is not reachable (480), as on a network.
//! - Holds and resumes (re-INVITE or UPDATE) are answered, and passed on across a bridge.
//! - `POST /demo/calls` makes the echo number call a device.
//!
//! It is this project's own SIP stack on another port: tests use sipp, never this, as the peer.

mod bridge;
mod media;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use camara_sip::{CallEvent, NameAddr, OutgoingInvite, SipConfig, Transport, UaEvent, UserAgent};
use tokio::task::JoinHandle;

use crate::store::Store;
use bridge::{Bridges, Leg};

/// The number that answers and echoes the caller's audio; it is also the number the demo
/// endpoint calls devices from (`POST /demo/calls`).
pub const ECHO_NUMBER: &str = "+818000000900";
/// The number that answers with a 440 Hz tone.
pub const TONE_NUMBER: &str = "+818000000901";

pub struct DemoEndpoint {
    ua: UserAgent,
    pub sip_addr: SocketAddr,
    gateway_sip: Option<SocketAddr>,
    media_ip: IpAddr,
    /// Whose numbers are registered on the gateway: those calls are bridged to it.
    store: Store,
    calls: Arc<Calls>,
}

/// What the endpoint does with each of its calls, by Call-ID.
#[derive(Default)]
struct Calls {
    own: Mutex<HashMap<String, OwnCall>>,
    bridges: Bridges,
}

/// A call the endpoint answers itself: its media task and the SDP it answered with.
struct OwnCall {
    media: JoinHandle<()>,
    sdp: String,
}

impl Calls {
    fn own(&self) -> std::sync::MutexGuard<'_, HashMap<String, OwnCall>> {
        self.own.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Answers the offers made inside calls (hold, resume) at once: our own calls with their
/// media's description in the direction that answers the offer; a bridged call with what the
/// other leg last offered, likewise (the offer itself is passed on to the other leg).
struct DemoOffers(Arc<Calls>);

impl camara_sip::OfferAnswerer for DemoOffers {
    fn answer_offer(&self, call_id: &str, offer: &str) -> Option<String> {
        let offered = camara_media::sdp::parse_audio(offer).ok()?.direction;
        let direction = media::answering(offered);
        if let Some(call) = self.0.own().get_mut(call_id) {
            call.sdp = media::again(&call.sdp, direction);
            return Some(call.sdp.clone());
        }
        self.0.bridges.answer_for(call_id, direction)
    }
}

/// An INVITE from the demo network to `number` on the gateway.
fn to_gateway(gateway: SocketAddr, call_id: &str, number: &str, from: NameAddr, sdp: String) -> OutgoingInvite {
    OutgoingInvite {
        call_id: Some(call_id.to_string()),
        request_uri: format!("sip:{number}@{gateway};user=phone"),
        from,
        to: NameAddr { display_name: None, uri: format!("sip:{number}@{gateway};user=phone") },
        p_asserted_identity: None,
        privacy: None,
        extra_headers: vec![],
        sdp: Some(sdp),
        extra_body_parts: vec![],
        next_hop: gateway,
        transport: Transport::Udp,
        credentials: None,
    }
}

/// The user part of a `sip:` or `tel:` URI: the number a call is from or to.
fn number_of(uri: &str) -> String {
    let rest = uri.split_once(':').map_or(uri, |(_, rest)| rest);
    rest.split(['@', ';']).next().unwrap_or(rest).to_string()
}

impl DemoEndpoint {
    /// Starts the endpoint on `listen`; `gateway_sip` is where it sends the calls it places.
    pub async fn start(
        listen: SocketAddr,
        gateway_sip: Option<SocketAddr>,
        store: Store,
    ) -> anyhow::Result<Arc<DemoEndpoint>> {
        let (ua, events) = UserAgent::start(SipConfig {
            udp_listen: Some(listen),
            tcp_listen: None,
            tls_listen: None,
            tls: None,
            advertised_host: None,
            user_agent: "camara-demo-endpoint".into(),
            timers: Default::default(),
        })
        .await
        .map_err(|e| crate::listen::sip_error(e, |_| crate::listen::Listener::DemoEndpoint))?;
        let sip_addr = ua.local_addr(Transport::Udp).ok_or_else(|| anyhow::anyhow!("demo endpoint not bound"))?;
        // A gateway listening on every address is reached on loopback.
        let gateway_sip = gateway_sip.map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            a
        });
        let calls = Arc::new(Calls::default());
        ua.set_offer_answerer(Arc::new(DemoOffers(calls.clone())));
        let endpoint = Arc::new(DemoEndpoint { ua, sip_addr, gateway_sip, media_ip: listen.ip(), store, calls });
        tokio::spawn(endpoint.clone().run(events));
        tracing::info!(
            %sip_addr,
            echo = ECHO_NUMBER,
            tone = TONE_NUMBER,
            "demo endpoint: calls to registered numbers ring their devices; the echo and tone numbers answer"
        );
        Ok(endpoint)
    }

    async fn run(self: Arc<Self>, mut events: tokio::sync::mpsc::UnboundedReceiver<UaEvent>) {
        while let Some(UaEvent { call_id, event }) = events.recv().await {
            // A bridged leg's events are the other leg's business.
            if let Some(leg) = self.calls.bridges.leg(&call_id) {
                self.clone().on_bridged(&call_id, leg, event).await;
                continue;
            }
            match event {
                CallEvent::Incoming { request_uri, from, sdp, .. } => {
                    // Answering may ring a device for a while: the next call does not wait.
                    let endpoint = self.clone();
                    tokio::spawn(async move { endpoint.incoming(&call_id, &request_uri, &from, sdp.as_deref()).await });
                }
                CallEvent::Terminated { .. } => {
                    if let Some(call) = self.calls.own().remove(&call_id) {
                        call.media.abort();
                    }
                }
                _ => {}
            }
        }
    }

    /// A call from the gateway: bridged to the called number's devices, or answered here.
    async fn incoming(&self, call_id: &str, request_uri: &str, from: &NameAddr, offer: Option<&str>) {
        let number = number_of(request_uri);
        let emergency = request_uri.starts_with("urn:service:");
        if !emergency && self.is_registered(&number).await {
            return self.bridge(call_id, &number, from, offer).await;
        }
        if number == TONE_NUMBER || number == ECHO_NUMBER || emergency {
            return self.answer(call_id, offer, number == TONE_NUMBER).await;
        }
        tracing::info!(number, "demo endpoint: nobody is registered for this number (try {ECHO_NUMBER}, the echo)");
        let _ = self.ua.reject(call_id, 480, "Temporarily Unavailable").await;
    }

    /// Rings briefly, then answers with the caller's first G.711 law, and echoes the audio or
    /// plays the tone.
    async fn answer(&self, call_id: &str, offer: Option<&str>, tone: bool) {
        let Some(offer) = offer.and_then(|o| camara_media::sdp::parse_audio(o).ok()) else {
            let _ = self.ua.reject(call_id, 488, "Not Acceptable Here").await;
            return;
        };
        let Some((payload_type, with_events)) = media::g711_choice(&offer) else {
            let _ = self.ua.reject(call_id, 488, "Not Acceptable Here").await;
            return;
        };
        let Ok((socket, port)) = media::socket(self.media_ip).await else {
            let _ = self.ua.reject(call_id, 503, "Service Unavailable").await;
            return;
        };
        let sdp = media::description(self.media_ip, port, payload_type, with_events);
        let _ = self.ua.provisional(call_id, 180, None, false).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // Known before the 200 leaves, so that an early re-offer finds it.
        let task = if tone {
            let to = offer.address.map(|a| SocketAddr::new(a, offer.port));
            media::tone(socket, to, payload_type)
        } else {
            media::echo(socket)
        };
        self.calls.own().insert(call_id.to_string(), OwnCall { media: task, sdp: sdp.clone() });
        if self.ua.accept(call_id, Some(sdp)).await.is_err()
            && let Some(call) = self.calls.own().remove(call_id)
        {
            call.media.abort();
        }
    }

    /// Places the second leg towards the gateway, from the caller, with the caller's offer.
    async fn bridge(&self, call_id: &str, number: &str, from: &NameAddr, offer: Option<&str>) {
        let (Some(gateway), Some(offer)) = (self.gateway_sip, offer) else {
            let _ = self.ua.reject(call_id, 488, "Not Acceptable Here").await;
            return;
        };
        let caller = number_of(&from.uri);
        let host = self.sip_addr;
        let callee_id = format!("{}@demo-bridge", uuid::Uuid::new_v4().simple());
        self.calls.bridges.open(call_id, &callee_id, offer);
        let from = NameAddr { display_name: from.display_name.clone(), uri: format!("sip:{caller}@{host};user=phone") };
        let placed = self.ua.invite(to_gateway(gateway, &callee_id, number, from, offer.to_string())).await;
        match placed {
            Ok(_) => tracing::info!(caller, number, "demo endpoint: bridging the call to the gateway's devices"),
            Err(e) => {
                tracing::warn!(number, "demo endpoint: second leg not placed: {e}");
                self.calls.bridges.close(call_id);
                let _ = self.ua.reject(call_id, 503, "Service Unavailable").await;
            }
        }
    }

    /// An event of a bridged leg, passed on to the other leg.
    async fn on_bridged(self: Arc<Self>, call_id: &str, leg: Leg, event: CallEvent) {
        let other = leg.other.clone();
        match event {
            // The callee's side: ringing, answer, refusal.
            CallEvent::Response { status, reason, sdp, .. } if leg.is_callee => {
                if let Some(sdp) = &sdp {
                    self.calls.bridges.callee_described(call_id, sdp);
                }
                match status {
                    180 => {
                        let _ = self.ua.provisional(&other, 180, None, false).await;
                    }
                    200..=299 => {
                        let answer = self.calls.bridges.callee_sdp(call_id);
                        if self.ua.accept(&other, answer).await.is_err() {
                            let _ = self.ua.hangup(call_id).await;
                        }
                    }
                    300..=699 => {
                        let _ = self.ua.reject(&other, status, &reason).await;
                    }
                    _ => {}
                }
            }
            CallEvent::Timeout if leg.is_callee => {
                let _ = self.ua.reject(&other, 408, "Request Timeout").await;
            }
            // A hold or resume, answered already by `DemoOffers`: the other side hears it too.
            CallEvent::Request { method, sdp: Some(offer), .. } if matches!(method.as_str(), "INVITE" | "UPDATE") => {
                self.calls.bridges.offered(call_id, &offer);
                let endpoint = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = endpoint.ua.reinvite(&other, offer).await {
                        tracing::debug!("demo endpoint: re-offer not passed on: {e}");
                    }
                });
            }
            CallEvent::Terminated { .. } => {
                self.calls.bridges.close(call_id);
                let _ = self.ua.hangup(&other).await;
            }
            _ => {}
        }
    }

    /// Calls `number` through the gateway from the echo number; the audio the device sends comes
    /// back to it.
    pub async fn call(&self, number: &str) -> anyhow::Result<String> {
        let gateway = self.gateway_sip.ok_or_else(|| anyhow::anyhow!("the gateway has no UDP SIP listener"))?;
        let (socket, port) = media::socket(self.media_ip).await?;
        let call_id = format!("{}@demo", uuid::Uuid::new_v4().simple());
        let host = self.sip_addr;
        let sdp = media::description(self.media_ip, port, 0, true);
        self.calls.own().insert(call_id.clone(), OwnCall { media: media::echo(socket), sdp: sdp.clone() });
        let from =
            NameAddr { display_name: Some("Demo echo".into()), uri: format!("sip:{ECHO_NUMBER}@{host};user=phone") };
        let placed = self.ua.invite(to_gateway(gateway, &call_id, number, from, sdp)).await;
        if let Err(e) = placed {
            if let Some(call) = self.calls.own().remove(&call_id) {
                call.media.abort();
            }
            return Err(e.into());
        }
        Ok(call_id)
    }

    /// Whether `number` has a registration on the gateway (a device `POST /demo/calls` can ring).
    pub async fn is_registered(&self, number: &str) -> bool {
        self.store.registrations_of(number, None).await.map(|r| !r.is_empty()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::number_of;

    #[test]
    fn the_number_of_a_uri() {
        assert_eq!(number_of("sip:+818000000002@127.0.0.1:5060;user=phone"), "+818000000002");
        assert_eq!(number_of("tel:+818000000900"), "+818000000900");
        assert_eq!(number_of("sip:+818000000001;tag=x"), "+818000000001");
    }
}
