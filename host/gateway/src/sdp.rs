//! The SIP-side SDP offer for an outgoing call.
//!
//! The network side speaks plain RTP/AVP with G.711 and telephone-event (see the call flows). The
//! media anchor that owns these ports and relays to the WebRTC leg is not part of this module.

use std::sync::atomic::{AtomicU32, Ordering};

/// Hands out even RTP ports from the configured range, round-robin.
pub struct RtpPorts {
    min: u16,
    max: u16,
    taken: AtomicU32,
}

impl RtpPorts {
    pub fn new(min: u16, max: u16) -> Self {
        let min = min + (min % 2);
        RtpPorts { min, max: max.max(min), taken: AtomicU32::new(0) }
    }

    pub fn next(&self) -> u16 {
        let span = u32::from((self.max - self.min) / 2 + 1);
        let n = self.taken.fetch_add(1, Ordering::Relaxed);
        self.min + (n % span) as u16 * 2
    }
}

/// G.711 payload types the device offers, PCMU first, both when it offers neither (the
/// network always gets G.711; Opus never crosses to the SIP side).
fn g711_payloads(device_sdp: &str) -> Vec<(u8, &'static str)> {
    let offered = |name: &str| device_sdp.lines().any(|l| l.starts_with("a=rtpmap:") && l.contains(name));
    let mut payloads: Vec<(u8, &'static str)> =
        [(0, "PCMU"), (8, "PCMA")].into_iter().filter(|(_, name)| offered(&format!(" {name}/8000"))).collect();
    if payloads.is_empty() {
        payloads = vec![(0, "PCMU"), (8, "PCMA")];
    }
    payloads
}

/// An RTP/AVP offer on `address:port` carrying the device's G.711 codecs and telephone-event.
pub fn sip_offer(device_sdp: &str, address: &str, port: u16, session_id: u64) -> String {
    let payloads = g711_payloads(device_sdp);
    let ip_version = if address.contains(':') { "IP6" } else { "IP4" };
    let formats: Vec<String> = payloads.iter().map(|(pt, _)| pt.to_string()).chain(["101".to_string()]).collect();
    let mut sdp = format!(
        "v=0\r\no=- {session_id} 1 IN {ip_version} {address}\r\ns=-\r\nc=IN {ip_version} {address}\r\nt=0 0\r\nm=audio {port} RTP/AVP {}\r\n",
        formats.join(" ")
    );
    for (pt, name) in &payloads {
        sdp.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
    }
    sdp.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\na=ptime:20\r\n");
    sdp
}

/// `sdp` re-offered with its media direction set to `direction` (`sendrecv`, `sendonly`,
/// `recvonly`, `inactive`) and its `o=` version incremented, as a re-offer must (RFC 3264 8).
pub fn with_direction(sdp: &str, direction: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        let line = match line {
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive" => format!("a={direction}"),
            l if l.starts_with("o=") => {
                let mut fields: Vec<String> = l.split(' ').map(str::to_string).collect();
                if let Some(version) = fields.get_mut(2) {
                    *version = version.parse::<u64>().map(|v| (v + 1).to_string()).unwrap_or_else(|_| version.clone());
                }
                fields.join(" ")
            }
            l => l.to_string(),
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_re_offer_changes_the_direction_and_the_version() {
        let offer = super::sip_offer("v=0\r\n", "203.0.113.100", 30000, 7);
        let held = super::with_direction(&offer, "sendonly");
        assert!(held.contains("o=- 7 2 IN IP4 203.0.113.100\r\n"), "{held}");
        assert!(held.contains("a=sendonly\r\n") && !held.contains("a=sendrecv"), "{held}");
        let resumed = super::with_direction(&held, "sendrecv");
        assert!(resumed.contains("o=- 7 3 IN IP4") && resumed.contains("a=sendrecv\r\n"), "{resumed}");
    }

    use super::*;

    #[test]
    fn the_offer_keeps_the_devices_g711_and_adds_telephone_event() {
        let device =
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n";
        let offer = sip_offer(device, "203.0.113.100", 30000, 7);
        assert!(offer.contains("m=audio 30000 RTP/AVP 0 101\r\n"), "{offer}");
        assert!(offer.contains("c=IN IP4 203.0.113.100\r\n"));
        assert!(!offer.contains("opus"));
        let v6 = sip_offer("v=0\r\n", "::1", 30002, 7);
        assert!(v6.contains("c=IN IP6 ::1\r\n") && v6.contains("m=audio 30002 RTP/AVP 0 8 101\r\n"), "{v6}");
    }

    #[test]
    fn ports_are_even_and_stay_in_range() {
        let ports = RtpPorts::new(30001, 30005);
        let taken: Vec<u16> = (0..4).map(|_| ports.next()).collect();
        assert_eq!(taken, vec![30002, 30004, 30002, 30004]);
    }
}
