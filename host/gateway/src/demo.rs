//! The demo endpoint: a SIP user agent standing in for the telco network when none is
//! configured, so a newcomer can make a real call with nothing else installed. It answers every
//! call with G.711 and echoes the caller's audio back, and it calls a device on request.
//!
//! It is this project's own SIP stack on another port: tests use sipp, never this, as the peer.

use std::net::SocketAddr;
use std::sync::Arc;

use camara_sip::{CallEvent, NameAddr, OutgoingInvite, SipConfig, Transport, UaEvent, UserAgent};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The number the demo endpoint calls from, and answers as.
pub const DEMO_NUMBER: &str = "+818000000002";

pub struct DemoEndpoint {
    ua: UserAgent,
    pub sip_addr: SocketAddr,
    gateway_sip: Option<SocketAddr>,
    media_ip: std::net::IpAddr,
    echoes: Arc<std::sync::Mutex<std::collections::HashMap<String, JoinHandle<()>>>>,
}

/// Sends every packet back to where it came from, until aborted.
async fn echo_socket(ip: std::net::IpAddr) -> std::io::Result<(UdpSocket, u16)> {
    let socket = UdpSocket::bind((ip, 0)).await?;
    let port = socket.local_addr()?.port();
    Ok((socket, port))
}

fn echo(socket: UdpSocket) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    })
}

fn description(ip: std::net::IpAddr, port: u16, payload_type: u8, with_events: bool) -> String {
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let name = if payload_type == 8 { "PCMA" } else { "PCMU" };
    let (formats, events) = if with_events {
        (format!("{payload_type} 101"), "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")
    } else {
        (payload_type.to_string(), "")
    };
    format!(
        "v=0\r\no=demo 1 1 IN {family} {ip}\r\ns=demo\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n\
         a=rtpmap:{payload_type} {name}/8000\r\n{events}a=ptime:20\r\na=sendrecv\r\n"
    )
}

impl DemoEndpoint {
    /// Starts the endpoint on `listen`; `gateway_sip` is where it sends the calls it places.
    pub async fn start(listen: SocketAddr, gateway_sip: Option<SocketAddr>) -> anyhow::Result<Arc<DemoEndpoint>> {
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
        let endpoint =
            Arc::new(DemoEndpoint { ua, sip_addr, gateway_sip, media_ip: listen.ip(), echoes: Default::default() });
        tokio::spawn(endpoint.clone().run(events));
        tracing::info!(%sip_addr, "demo endpoint: answers calls and echoes their audio");
        Ok(endpoint)
    }

    async fn run(self: Arc<Self>, mut events: tokio::sync::mpsc::UnboundedReceiver<UaEvent>) {
        while let Some(UaEvent { call_id, event }) = events.recv().await {
            match event {
                CallEvent::Incoming { sdp, .. } => self.answer(&call_id, sdp.as_deref()).await,
                CallEvent::Terminated { .. } => {
                    if let Some(task) = self.echoes.lock().unwrap_or_else(|e| e.into_inner()).remove(&call_id) {
                        task.abort();
                    }
                }
                _ => {}
            }
        }
    }

    /// Rings briefly, then answers with the caller's first G.711 law and echoes the audio.
    async fn answer(&self, call_id: &str, offer: Option<&str>) {
        let Some(offer) = offer.and_then(|o| camara_media::sdp::parse_audio(o).ok()) else {
            let _ = self.ua.reject(call_id, 488, "Not Acceptable Here").await;
            return;
        };
        let Some(law) = offer.formats.iter().find(|f| f.encoding.is_g711()) else {
            let _ = self.ua.reject(call_id, 488, "Not Acceptable Here").await;
            return;
        };
        let Ok((socket, port)) = echo_socket(self.media_ip).await else {
            let _ = self.ua.reject(call_id, 503, "Service Unavailable").await;
            return;
        };
        let with_events = offer.telephone_event(8000).is_some();
        let answer = description(self.media_ip, port, law.payload_type, with_events);
        let _ = self.ua.provisional(call_id, 180, None, false).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if self.ua.accept(call_id, Some(answer)).await.is_ok() {
            self.echoes.lock().unwrap_or_else(|e| e.into_inner()).insert(call_id.to_string(), echo(socket));
        }
    }

    /// Calls `number` through the gateway; the audio the device sends comes back to it.
    pub async fn call(&self, number: &str) -> anyhow::Result<String> {
        let gateway = self.gateway_sip.ok_or_else(|| anyhow::anyhow!("the gateway has no UDP SIP listener"))?;
        let (socket, port) = echo_socket(self.media_ip).await?;
        let call_id = format!("{}@demo", uuid::Uuid::new_v4().simple());
        let host = self.sip_addr;
        self.ua
            .invite(OutgoingInvite {
                call_id: Some(call_id.clone()),
                request_uri: format!("sip:{number}@{gateway};user=phone"),
                from: NameAddr {
                    display_name: Some("Demo".into()),
                    uri: format!("sip:{DEMO_NUMBER}@{host};user=phone"),
                },
                to: NameAddr { display_name: None, uri: format!("sip:{number}@{gateway};user=phone") },
                p_asserted_identity: None,
                privacy: None,
                extra_headers: vec![],
                sdp: Some(description(self.media_ip, port, 0, true)),
                extra_body_parts: vec![],
                next_hop: gateway,
                transport: Transport::Udp,
                credentials: None,
            })
            .await?;
        self.echoes.lock().unwrap_or_else(|e| e.into_inner()).insert(call_id.clone(), echo(socket));
        Ok(call_id)
    }
}
