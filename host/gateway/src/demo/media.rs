//! The demo endpoint's own media: an echo, a tone, and the SDP that describes them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use camara_media::sdp::{AudioMedia, Direction};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A socket on `ip` for one call's media, and its port.
pub async fn socket(ip: IpAddr) -> std::io::Result<(UdpSocket, u16)> {
    let socket = UdpSocket::bind((ip, 0)).await?;
    let port = socket.local_addr()?.port();
    Ok((socket, port))
}

/// Sends every packet back to where it came from, until aborted.
pub fn echo(socket: UdpSocket) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    })
}

/// The frequency of the tone number's tone: A4, easy to recognise.
pub const TONE_HZ: f64 = 440.0;

/// Sends a steady G.711 tone to `to` (and, symmetric RTP, to wherever the caller's packets come
/// from) in 20 ms packets, until aborted.
pub fn tone(socket: UdpSocket, to: Option<SocketAddr>, payload_type: u8) -> JoinHandle<()> {
    let law = if payload_type == 8 { camara_codec::Law::A } else { camara_codec::Law::Mu };
    tokio::spawn(async move {
        let mut target = to;
        let ssrc: u32 = rand::random();
        let (mut sequence, mut timestamp) = (rand::random::<u16>(), rand::random::<u32>());
        let mut phase = 0f64;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut buf = vec![0u8; 1500];
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                received = socket.recv_from(&mut buf) => {
                    if let Ok((_, from)) = received {
                        target = Some(from);
                    }
                    continue;
                }
            }
            let Some(target) = target else { continue };
            let pcm: Vec<i16> = (0..160)
                .map(|_| {
                    phase += 2.0 * std::f64::consts::PI * TONE_HZ / 8000.0;
                    (phase.sin() * 8000.0) as i16
                })
                .collect();
            phase %= 2.0 * std::f64::consts::PI;
            let mut packet = Vec::with_capacity(172);
            packet.extend_from_slice(&[0x80, payload_type & 0x7f]);
            packet.extend_from_slice(&sequence.to_be_bytes());
            packet.extend_from_slice(&timestamp.to_be_bytes());
            packet.extend_from_slice(&ssrc.to_be_bytes());
            camara_codec::g711::encode(law, &pcm, &mut packet);
            let _ = socket.send_to(&packet, target).await;
            sequence = sequence.wrapping_add(1);
            timestamp = timestamp.wrapping_add(160);
        }
    })
}

/// Our SDP for a call: one G.711 law, RFC 4733 events if the caller offered them.
pub fn description(ip: IpAddr, port: u16, payload_type: u8, with_events: bool) -> String {
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

/// The caller's first G.711 law and whether it offered events; `None` when it offered no G.711.
pub fn g711_choice(offer: &AudioMedia) -> Option<(u8, bool)> {
    let law = offer.formats.iter().find(|f| f.encoding.is_g711())?;
    Some((law.payload_type, offer.telephone_event(8000).is_some()))
}

/// The direction that answers `offered` (RFC 3264 s.6.1): a peer that only sends is answered by
/// one that only receives, and so on.
pub fn answering(offered: Direction) -> Direction {
    match offered {
        Direction::SendOnly => Direction::RecvOnly,
        Direction::RecvOnly => Direction::SendOnly,
        other => other,
    }
}

/// `sdp` as an answer in `direction`, with its `o=` version raised by one (RFC 3264 s.8): a
/// description sent before, answering a re-offer (hold, resume).
pub fn again(sdp: &str, direction: Direction) -> String {
    let mut out = String::with_capacity(sdp.len() + 16);
    let mut direction_written = false;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(origin) = line.strip_prefix("o=") {
            let mut fields: Vec<&str> = origin.split(' ').collect();
            let next = fields.get(2).and_then(|v| v.parse::<u64>().ok()).map(|v| (v + 1).to_string());
            if let Some(next) = &next {
                fields[2] = next;
            }
            out.push_str(&format!("o={}\r\n", fields.join(" ")));
            continue;
        }
        if matches!(line, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive") {
            if !direction_written {
                out.push_str(&format!("a={}\r\n", direction.attribute()));
                direction_written = true;
            }
            continue;
        }
        if !line.is_empty() {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if !direction_written {
        out.push_str(&format!("a={}\r\n", direction.attribute()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_is_answered_with_the_mirrored_direction_and_a_new_version() {
        let ours = description("127.0.0.1".parse().unwrap(), 4000, 0, true);
        let answer = again(&ours, answering(Direction::SendOnly));
        assert!(answer.contains("o=demo 1 2 IN IP4 127.0.0.1\r\n"), "{answer}");
        assert!(answer.contains("a=recvonly\r\n") && !answer.contains("a=sendrecv"), "{answer}");
        let resumed = again(&answer, answering(Direction::SendRecv));
        assert!(resumed.contains("o=demo 1 3 "), "{resumed}");
        assert!(resumed.contains("a=sendrecv\r\n") && !resumed.contains("a=recvonly"), "{resumed}");
        assert_eq!(camara_media::sdp::parse_audio(&resumed).unwrap().port, 4000);
        assert_eq!(answering(Direction::Inactive), Direction::Inactive);
    }
}
