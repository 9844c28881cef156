//! SDP interworking between the two legs: what each side offered or answered, which codecs
//! cross, and the plain RTP/AVP descriptions the gateway sends towards the SIP network.
//!
//! Parsing uses the `sdp` crate (the one the WebRTC stack uses); rendering the network side is
//! a short template because the network expects exactly this small, stable shape.

use std::io::Cursor;
use std::net::IpAddr;

use webrtc::sdp::SessionDescription;

use crate::MediaError;

/// A stream direction as an SDP attribute says it, from the point of view of the side that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(attribute: &str) -> Option<Self> {
        Some(match attribute {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// The direction the other side answers with (RFC 3264 6.1): sendonly <-> recvonly.
    pub fn answer(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// The audio encodings the anchor knows how to relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Pcmu,
    Pcma,
    Opus,
    TelephoneEvent,
    Other,
}

impl Encoding {
    fn from_name(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "pcmu" => Encoding::Pcmu,
            "pcma" => Encoding::Pcma,
            "opus" => Encoding::Opus,
            "telephone-event" => Encoding::TelephoneEvent,
            _ => Encoding::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Pcmu => "PCMU",
            Encoding::Pcma => "PCMA",
            Encoding::Opus => "opus",
            Encoding::TelephoneEvent => "telephone-event",
            Encoding::Other => "unknown",
        }
    }

    pub fn is_g711(self) -> bool {
        matches!(self, Encoding::Pcmu | Encoding::Pcma)
    }
}

/// One payload format of an m-line: `a=rtpmap` (or a static payload type) and its `a=fmtp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub payload_type: u8,
    pub encoding: Encoding,
    pub clock_rate: u32,
    pub channels: u16,
    pub fmtp: Option<String>,
}

impl Format {
    pub fn pcmu() -> Self {
        Format { payload_type: 0, encoding: Encoding::Pcmu, clock_rate: 8000, channels: 1, fmtp: None }
    }

    pub fn pcma() -> Self {
        Format { payload_type: 8, encoding: Encoding::Pcma, clock_rate: 8000, channels: 1, fmtp: None }
    }

    pub fn opus(payload_type: u8) -> Self {
        Format {
            payload_type,
            encoding: Encoding::Opus,
            clock_rate: 48000,
            channels: 2,
            fmtp: Some("minptime=10;useinbandfec=1".into()),
        }
    }

    pub fn telephone_event(payload_type: u8, clock_rate: u32) -> Self {
        Format { payload_type, encoding: Encoding::TelephoneEvent, clock_rate, channels: 1, fmtp: Some("0-16".into()) }
    }

    /// The static format a payload type stands for without an `a=rtpmap` (RFC 3551).
    fn from_static(payload_type: u8) -> Option<Self> {
        match payload_type {
            0 => Some(Format::pcmu()),
            8 => Some(Format::pcma()),
            _ => None,
        }
    }

    pub fn mime_type(&self) -> String {
        format!("audio/{}", self.encoding.name())
    }
}

/// The audio m-line of a session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioMedia {
    /// The `c=` address (media level first, then session level); `None` when it is unspecified.
    pub address: Option<IpAddr>,
    pub port: u16,
    pub proto: String,
    /// In the order of preference the writer gave.
    pub formats: Vec<Format>,
    pub direction: Direction,
}

impl AudioMedia {
    pub fn first(&self, encoding: Encoding) -> Option<&Format> {
        self.formats.iter().find(|f| f.encoding == encoding)
    }

    /// The telephone-event format at `clock_rate`, or at any rate when there is none at it.
    pub fn telephone_event(&self, clock_rate: u32) -> Option<&Format> {
        let events = || self.formats.iter().filter(|f| f.encoding == Encoding::TelephoneEvent);
        events().find(|f| f.clock_rate == clock_rate).or_else(|| events().next())
    }

    /// The first voice format (the answerer's choice, in an answer).
    pub fn voice(&self) -> Option<&Format> {
        self.formats.iter().find(|f| !matches!(f.encoding, Encoding::TelephoneEvent | Encoding::Other))
    }
}

/// Reads the first audio m-line of `sdp`.
pub fn parse_audio(sdp: &str) -> Result<AudioMedia, MediaError> {
    let description = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|e| MediaError::Sdp(format!("unreadable SDP: {e}")))?;
    let media = description
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio")
        .ok_or_else(|| MediaError::Sdp("no audio m-line".into()))?;
    let address = media
        .connection_information
        .as_ref()
        .or(description.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .and_then(|a| a.address.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()))
        .filter(|a| !a.is_unspecified());
    let attribute = |key: &str, pt: &str| {
        media.attributes.iter().filter(|a| a.key == key).filter_map(|a| a.value.as_deref()).find_map(|v| {
            let (format, rest) = v.split_once(' ')?;
            (format == pt).then(|| rest.trim().to_string())
        })
    };
    let mut formats = Vec::new();
    for pt in &media.media_name.formats {
        let Ok(payload_type) = pt.parse::<u8>() else { continue };
        let format = match attribute("rtpmap", pt) {
            Some(map) => {
                let mut parts = map.split('/');
                let encoding = Encoding::from_name(parts.next().unwrap_or_default());
                let clock_rate = parts.next().and_then(|c| c.parse().ok()).unwrap_or(8000);
                let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
                Format { payload_type, encoding, clock_rate, channels, fmtp: attribute("fmtp", pt) }
            }
            None => match Format::from_static(payload_type) {
                Some(format) => format,
                None => continue,
            },
        };
        formats.push(format);
    }
    let direction = media
        .attributes
        .iter()
        .chain(description.attributes.iter())
        .find_map(|a| Direction::parse(&a.key))
        .unwrap_or_default();
    let port = u16::try_from(media.media_name.port.value).map_err(|_| MediaError::Sdp("bad port".into()))?;
    Ok(AudioMedia { address, port, proto: media.media_name.protos.join("/"), formats, direction })
}

/// A plain RTP/AVP audio description for the network side: an offer, a re-offer or an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpDescription {
    pub address: IpAddr,
    pub port: u16,
    pub session_id: u64,
    /// The `o=` version: a re-offer increments it (RFC 3264 8).
    pub version: u64,
    pub formats: Vec<Format>,
    pub direction: Direction,
}

impl RtpDescription {
    /// Applies `change`; the `o=` version moves only when the description did change (RFC 3264
    /// s.8: an unchanged description, as in a session refresh, keeps its version; RFC 6337 s.5.3).
    pub fn revise(&mut self, change: impl FnOnce(&mut RtpDescription)) {
        let before = self.clone();
        change(self);
        if *self != before {
            self.version = before.version + 1;
        }
    }

    pub fn render(&self) -> String {
        let ip = if self.address.is_ipv6() { "IP6" } else { "IP4" };
        let address = self.address;
        let payload_types: Vec<String> = self.formats.iter().map(|f| f.payload_type.to_string()).collect();
        let mut sdp = format!(
            "v=0\r\no=- {} {} IN {ip} {address}\r\ns=-\r\nc=IN {ip} {address}\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
            self.session_id,
            self.version,
            self.port,
            payload_types.join(" ")
        );
        for format in &self.formats {
            sdp.push_str(&format!(
                "a=rtpmap:{} {}/{}\r\n",
                format.payload_type,
                format.encoding.name(),
                format.clock_rate
            ));
            if let Some(fmtp) = &format.fmtp {
                sdp.push_str(&format!("a=fmtp:{} {fmtp}\r\n", format.payload_type));
            }
        }
        sdp.push_str(&format!("a=ptime:20\r\na={}\r\n", self.direction.attribute()));
        sdp
    }
}

/// The payload type the network side uses for telephone-event in our offers.
pub const NETWORK_TELEPHONE_EVENT_PT: u8 = 101;

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_OFFER: &str = "v=0\r\no=- 46117317 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=mid:0\r\na=sendrecv\r\n\
        a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn a_webrtc_offer_is_read_with_static_and_dynamic_formats() {
        let audio = parse_audio(CHROME_OFFER).unwrap();
        assert_eq!(audio.address, None, "0.0.0.0 is no address");
        assert_eq!(audio.proto, "UDP/TLS/RTP/SAVPF");
        let encodings: Vec<_> = audio.formats.iter().map(|f| (f.payload_type, f.encoding, f.clock_rate)).collect();
        assert_eq!(
            encodings,
            vec![
                (111, Encoding::Opus, 48000),
                (0, Encoding::Pcmu, 8000),
                (8, Encoding::Pcma, 8000),
                (126, Encoding::TelephoneEvent, 8000)
            ]
        );
        assert_eq!(audio.first(Encoding::Opus).unwrap().fmtp.as_deref(), Some("minptime=10;useinbandfec=1"));
        assert_eq!(audio.voice().unwrap().encoding, Encoding::Opus);
        assert_eq!(audio.telephone_event(48000).unwrap().payload_type, 126);
    }

    #[test]
    fn a_network_description_renders_and_reads_back() {
        let description = RtpDescription {
            address: "192.0.2.10".parse().unwrap(),
            port: 30000,
            session_id: 7,
            version: 1,
            formats: vec![Format::pcma(), Format::telephone_event(101, 8000)],
            direction: Direction::SendOnly,
        };
        let sdp = description.render();
        assert!(sdp.contains("m=audio 30000 RTP/AVP 8 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=fmtp:101 0-16\r\n") && sdp.contains("a=sendonly\r\n"), "{sdp}");
        let read = parse_audio(&sdp).unwrap();
        assert_eq!(read.address, Some("192.0.2.10".parse().unwrap()));
        assert_eq!((read.port, read.direction), (30000, Direction::SendOnly));
        assert_eq!(read.formats, description.formats);
        let v6 = RtpDescription { address: "::1".parse().unwrap(), ..description };
        assert!(v6.render().contains("c=IN IP6 ::1\r\n"));
    }

    #[test]
    fn the_version_moves_only_when_the_description_changes() {
        let mut description = RtpDescription {
            address: "192.0.2.10".parse().unwrap(),
            port: 30000,
            session_id: 7,
            version: 3,
            formats: vec![Format::pcmu()],
            direction: Direction::SendRecv,
        };
        description.revise(|d| d.direction = Direction::SendRecv);
        assert_eq!(description.version, 3, "a refresh with the same media keeps o= (RFC 3264 s.8)");
        description.revise(|d| d.direction = Direction::SendOnly);
        assert_eq!(description.version, 4);
        description.revise(|d| d.formats = vec![Format::pcmu(), Format::telephone_event(101, 8000)]);
        assert_eq!(description.version, 5);
        description.revise(|d| d.formats = vec![Format::pcmu(), Format::telephone_event(101, 8000)]);
        assert_eq!(description.version, 5);
    }

    #[test]
    fn directions_answer_and_gate() {
        assert_eq!(Direction::SendOnly.answer(), Direction::RecvOnly);
        assert_eq!(Direction::Inactive.answer(), Direction::Inactive);
        assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
        assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_audio("not sdp").is_err());
        assert!(parse_audio("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=video 9 RTP/AVP 96\r\n").is_err());
    }
}
