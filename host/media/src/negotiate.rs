//! Which codecs cross between the legs: what to offer each side, and the bridge that results
//! once the other side has answered.

use crate::MediaError;
use crate::sdp::{AudioMedia, Encoding, Format, NETWORK_TELEPHONE_EVENT_PT};

/// The Opus payload type in the offers the gateway makes to devices.
pub const DEVICE_OPUS_PT: u8 = 111;
/// The telephone-event payload type in the offers the gateway makes to devices.
pub const DEVICE_TELEPHONE_EVENT_PT: u8 = 101;

/// The operator's codec policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecPolicy {
    /// The G.711 laws the network accepts, preferred first.
    pub network: Vec<Encoding>,
    /// Opus towards the device and G.711 towards the network, transcoded, when the device has no
    /// G.711 in common with the network.
    pub transcoding: bool,
    /// Opus towards the device whenever it offers Opus, even when G.711 could pass through.
    pub prefer_opus_to_device: bool,
}

impl Default for CodecPolicy {
    fn default() -> Self {
        CodecPolicy { network: vec![Encoding::Pcmu, Encoding::Pcma], transcoding: true, prefer_opus_to_device: false }
    }
}

/// How audio crosses once both sides have agreed: the voice and telephone-event formats with
/// each leg's own payload types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    pub device: Format,
    pub network: Format,
    pub device_events: Option<Format>,
    pub network_events: Option<Format>,
}

impl Bridge {
    pub fn transcodes(&self) -> bool {
        self.device.encoding != self.network.encoding
    }
}

fn network_format(encoding: Encoding) -> Format {
    if encoding == Encoding::Pcma { Format::pcma() } else { Format::pcmu() }
}

fn network_events() -> Format {
    Format::telephone_event(NETWORK_TELEPHONE_EVENT_PT, 8000)
}

impl CodecPolicy {
    fn network_laws(&self) -> impl Iterator<Item = Encoding> + '_ {
        self.network.iter().copied().filter(|e| e.is_g711())
    }

    fn device_wants_opus(&self, device: &AudioMedia) -> bool {
        self.transcoding && device.first(Encoding::Opus).is_some()
    }

    /// The formats of the SIP offer for a device's offer: the network's G.711 laws the device
    /// also offered (passed through), or all of them when the call will be transcoded, and
    /// telephone-event.
    pub fn network_offer(&self, device: &AudioMedia) -> Result<Vec<Format>, MediaError> {
        let shared: Vec<Format> =
            self.network_laws().filter(|law| device.first(*law).is_some()).map(network_format).collect();
        let mut formats = if shared.is_empty() || (self.prefer_opus_to_device && self.device_wants_opus(device)) {
            if !self.device_wants_opus(device) {
                return Err(MediaError::NoCommonCodec);
            }
            self.network_laws().map(network_format).collect()
        } else {
            shared
        };
        if formats.is_empty() {
            return Err(MediaError::NoCommonCodec);
        }
        formats.push(network_events());
        Ok(formats)
    }

    /// The bridge of an outgoing call once the network has answered the offer of `network_offer`.
    pub fn outgoing_bridge(
        &self,
        device_offer: &AudioMedia,
        network_answer: &AudioMedia,
    ) -> Result<Bridge, MediaError> {
        let network =
            network_answer.formats.iter().find(|f| f.encoding.is_g711()).cloned().ok_or(MediaError::NoCommonCodec)?;
        let passthrough = device_offer
            .first(network.encoding)
            .filter(|_| !(self.prefer_opus_to_device && self.device_wants_opus(device_offer)));
        let device = match passthrough {
            Some(format) => format.clone(),
            None if self.device_wants_opus(device_offer) => {
                device_offer.first(Encoding::Opus).cloned().ok_or(MediaError::NoCommonCodec)?
            }
            None => return Err(MediaError::NoCommonCodec),
        };
        Ok(Bridge {
            device_events: device_offer.telephone_event(device.clock_rate).cloned(),
            network_events: network_answer.telephone_event(8000).cloned(),
            device,
            network,
        })
    }

    /// The formats of the WebRTC offer for a network's offer: its G.711 laws the operator
    /// accepts (passed through), Opus when transcoding is on, and telephone-event.
    pub fn device_offer(&self, network_offer: &AudioMedia) -> Result<Vec<Format>, MediaError> {
        let laws: Vec<Format> = network_offer
            .formats
            .iter()
            .filter(|f| f.encoding.is_g711() && self.network.contains(&f.encoding))
            .cloned()
            .collect();
        if laws.is_empty() {
            return Err(MediaError::NoCommonCodec);
        }
        let mut formats = Vec::new();
        if self.transcoding && self.prefer_opus_to_device {
            formats.push(Format::opus(DEVICE_OPUS_PT));
        }
        formats.extend(laws);
        if self.transcoding && !self.prefer_opus_to_device {
            formats.push(Format::opus(DEVICE_OPUS_PT));
        }
        formats.push(Format::telephone_event(DEVICE_TELEPHONE_EVENT_PT, 8000));
        Ok(formats)
    }

    /// The bridge of an incoming call once the device has answered the offer of `device_offer`.
    pub fn incoming_bridge(
        &self,
        network_offer: &AudioMedia,
        device_answer: &AudioMedia,
    ) -> Result<Bridge, MediaError> {
        let device = device_answer.voice().cloned().ok_or(MediaError::NoCommonCodec)?;
        let network = match network_offer.first(device.encoding) {
            Some(format) if format.encoding.is_g711() => format.clone(),
            _ if device.encoding == Encoding::Opus && self.transcoding => network_offer
                .formats
                .iter()
                .find(|f| f.encoding.is_g711() && self.network.contains(&f.encoding))
                .cloned()
                .ok_or(MediaError::NoCommonCodec)?,
            _ => return Err(MediaError::NoCommonCodec),
        };
        Ok(Bridge {
            device_events: device_answer.telephone_event(device.clock_rate).cloned(),
            network_events: network_offer.telephone_event(8000).cloned(),
            device,
            network,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::{Direction, parse_audio};

    fn audio(formats: Vec<Format>) -> AudioMedia {
        AudioMedia { address: None, port: 9, proto: "RTP/AVP".into(), formats, direction: Direction::SendRecv }
    }

    fn encodings(formats: &[Format]) -> Vec<Encoding> {
        formats.iter().map(|f| f.encoding).collect()
    }

    #[test]
    fn g711_from_the_device_passes_through() {
        let policy = CodecPolicy::default();
        let device = audio(vec![Format::opus(111), Format::pcma(), Format::telephone_event(126, 8000)]);
        let offer = policy.network_offer(&device).unwrap();
        assert_eq!(encodings(&offer), vec![Encoding::Pcma, Encoding::TelephoneEvent]);
        let answer = audio(vec![Format::pcma(), Format::telephone_event(101, 8000)]);
        let bridge = policy.outgoing_bridge(&device, &answer).unwrap();
        assert!(!bridge.transcodes());
        assert_eq!(bridge.device_events.unwrap().payload_type, 126);
        assert_eq!(bridge.network_events.unwrap().payload_type, 101);
    }

    #[test]
    fn an_opus_only_device_is_transcoded_to_the_networks_g711() {
        let policy = CodecPolicy::default();
        let device = audio(vec![Format::opus(109), Format::telephone_event(110, 48000)]);
        let offer = policy.network_offer(&device).unwrap();
        assert_eq!(encodings(&offer), vec![Encoding::Pcmu, Encoding::Pcma, Encoding::TelephoneEvent]);
        let bridge = policy.outgoing_bridge(&device, &audio(vec![Format::pcmu()])).unwrap();
        assert!(bridge.transcodes());
        assert_eq!((bridge.device.payload_type, bridge.network.encoding), (109, Encoding::Pcmu));
        assert_eq!(bridge.device_events.unwrap().clock_rate, 48000);
        assert_eq!(bridge.network_events, None, "the network answered without telephone-event");
        let no_transcoding = CodecPolicy { transcoding: false, ..CodecPolicy::default() };
        assert!(matches!(no_transcoding.network_offer(&device), Err(MediaError::NoCommonCodec)));
    }

    #[test]
    fn an_operator_can_prefer_opus_towards_the_device() {
        let policy = CodecPolicy { prefer_opus_to_device: true, ..CodecPolicy::default() };
        let device = audio(vec![Format::pcmu(), Format::opus(111)]);
        assert_eq!(policy.network_offer(&device).unwrap().len(), 3);
        let bridge = policy.outgoing_bridge(&device, &audio(vec![Format::pcmu()])).unwrap();
        assert_eq!(bridge.device.encoding, Encoding::Opus);
    }

    #[test]
    fn an_incoming_offer_gives_the_device_g711_and_opus_and_follows_its_choice() {
        let policy = CodecPolicy::default();
        let network =
            parse_audio("v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n")
                .unwrap();
        let offer = policy.device_offer(&network).unwrap();
        assert_eq!(encodings(&offer), vec![Encoding::Pcma, Encoding::Pcmu, Encoding::Opus, Encoding::TelephoneEvent]);
        let pcmu = policy.incoming_bridge(&network, &audio(vec![Format::pcmu(), Format::telephone_event(101, 8000)]));
        let pcmu = pcmu.unwrap();
        assert_eq!((pcmu.device.encoding, pcmu.network.encoding), (Encoding::Pcmu, Encoding::Pcmu));
        assert_eq!(pcmu.network_events.unwrap().payload_type, 96);
        let opus = policy.incoming_bridge(&network, &audio(vec![Format::opus(111)])).unwrap();
        assert_eq!((opus.device.encoding, opus.network.encoding), (Encoding::Opus, Encoding::Pcma));
        let video_only = audio(vec![Format { encoding: Encoding::Other, ..Format::pcmu() }]);
        assert!(policy.incoming_bridge(&network, &video_only).is_err());
    }
}
