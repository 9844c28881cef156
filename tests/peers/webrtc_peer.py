#!/usr/bin/env python3
"""A real WebRTC audio peer (aiortc) for the gateway's integration tests.

One process = one RTCPeerConnection with one audio transceiver that sends a
sine tone and analyses what it receives. It is driven over stdin/stdout with
one JSON object per line; stdout carries only those JSON lines, logs go to
stderr. See README.md beside this file for the protocol.
"""

import argparse
import asyncio
import collections
import fractions
import json
import logging
import os
import struct
import sys
import threading
import time

import numpy as np
from av import AudioFrame

import aioice.ice
import aiortc.codecs
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import is_rtcp

log = logging.getLogger("webrtc_peer")

SAMPLE_RATE = 48000
PTIME = 0.020
SAMPLES_PER_FRAME = int(SAMPLE_RATE * PTIME)  # 960
SILENCE_RMS = 0.01  # frames below 1 % of full scale are ignored for `frequency`
DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11,
               "A": 12, "B": 13, "C": 14, "D": 15}
DTMF_DIGITS = {v: k for k, v in DTMF_EVENTS.items()}


class PeerError(Exception):
    pass


def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class ToneTrack(MediaStreamTrack):
    """Continuous sine tone: 20 ms frames, 48 kHz, s16 mono, paced in real time."""

    kind = "audio"

    def __init__(self, frequency, amplitude):
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._pts = 0
        self._start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += SAMPLES_PER_FRAME
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        n = np.arange(self._pts, self._pts + SAMPLES_PER_FRAME)
        samples = self.amplitude * 32767 * np.sin(2 * np.pi * self.frequency * n / SAMPLE_RATE)
        frame = AudioFrame.from_ndarray(
            samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


class State:
    """Everything this process knows about its one connection."""

    def __init__(self, window):
        self.window = window
        self.connected_at = None
        self.timeline = []  # frames received per 100 ms since connection
        self.frames_received = 0
        self.audio = collections.deque()  # (rate, mono float samples, rms) per frame
        self.audio_seconds = 0.0
        self.payload_types = collections.Counter()
        # RFC 4733 state
        self.te_pts = set()  # negotiated telephone-event payload types
        self.dtmf_received = ""
        self.dtmf_seen = set()  # (ssrc, timestamp) of events already recorded
        self.send_ssrc = None
        self.next_seq = None
        self.last_ts = None
        self.suppress_audio = False
        self.dtmf_packets_sent = 0

    def add_frame(self, frame):
        now = time.monotonic()
        self.frames_received += 1
        if self.connected_at is not None:
            slot = int((now - self.connected_at) / 0.1)
            if slot >= len(self.timeline):
                self.timeline.extend([0] * (slot + 1 - len(self.timeline)))
            self.timeline[slot] += 1
        data = frame.to_ndarray().astype(np.float64) / 32768.0
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            mono = data.mean(axis=0)
        else:
            mono = data.reshape(-1, channels).mean(axis=1)
        rms = float(np.sqrt(np.mean(mono ** 2))) if mono.size else 0.0
        self.audio.append((frame.sample_rate, mono, rms))
        self.audio_seconds += mono.size / frame.sample_rate
        while self.audio and self.audio_seconds - self.audio[0][1].size / self.audio[0][0] >= self.window:
            rate, old, _ = self.audio.popleft()
            self.audio_seconds -= old.size / rate

    def reset(self):
        self.audio.clear()
        self.audio_seconds = 0.0

    def analyse(self):
        """(dominant frequency or None, rms, seconds analysed) over the buffer."""
        if not self.audio:
            return None, 0.0, 0.0
        rate = self.audio[-1][0]
        frames = [a for r, a, _ in self.audio if r == rate]
        everything = np.concatenate(frames)
        rms = float(np.sqrt(np.mean(everything ** 2)))
        loud = [a for r, a, level in self.audio if r == rate and level >= SILENCE_RMS]
        if not loud:
            return None, rms, 0.0
        x = np.concatenate(loud)
        if x.size < 64:
            return None, rms, x.size / rate
        spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size)))
        spectrum[0] = 0.0
        k = int(np.argmax(spectrum))
        offset = 0.0
        if 0 < k < spectrum.size - 1:  # parabolic interpolation between bins
            a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
            if a - 2 * b + c != 0:
                offset = 0.5 * (a - c) / (a - 2 * b + c)
        return round((k + offset) * rate / x.size, 1), rms, x.size / rate


STATE = None


# --- RFC 4733 telephone-event: aiortc has no DTMF support at all (no
# RTCDTMFSender, no telephone-event codec, and RTCRtpReceiver drops payload
# types it has no decoder for), so this peer adds the minimum itself:
#  * telephone-event/8000 and /48000 are appended to aiortc's codec table so
#    they are offered/accepted in SDP (never chosen as the sending codec: they
#    come after the audio codecs);
#  * outgoing RTP of our SSRC is renumbered on its way to SRTP so injected
#    event packets share the audio stream's SSRC and sequence space, and audio
#    is suppressed while an event is being sent (as browsers do);
#  * incoming packets of a negotiated telephone-event payload type are taken
#    out before the decoder (which would fail on them) and recorded as digits.
_orig_send_rtp = RTCDtlsTransport._send_rtp
_orig_handle_rtp = RTCRtpReceiver._handle_rtp_packet


def _renumber(data):
    if STATE.next_seq is None:
        STATE.next_seq = struct.unpack_from("!H", data, 2)[0]
    data = data[:2] + struct.pack("!H", STATE.next_seq) + data[4:]
    STATE.next_seq = (STATE.next_seq + 1) & 0xFFFF
    return data


async def _send_rtp(self, data):
    if (STATE is not None and STATE.send_ssrc is not None and len(data) >= 12
            and not is_rtcp(data) and struct.unpack_from("!I", data, 8)[0] == STATE.send_ssrc):
        if STATE.suppress_audio:
            return
        STATE.last_ts = struct.unpack_from("!I", data, 4)[0]
        data = _renumber(data)
    await _orig_send_rtp(self, data)


async def _handle_rtp_packet(self, packet, arrival_time_ms):
    if STATE is not None:
        STATE.payload_types[packet.payload_type] += 1
        if packet.payload_type in STATE.te_pts:
            if len(packet.payload) >= 4 and packet.payload[0] in DTMF_DIGITS:
                key = (packet.ssrc, packet.timestamp)
                if key not in STATE.dtmf_seen:
                    STATE.dtmf_seen.add(key)
                    STATE.dtmf_received += DTMF_DIGITS[packet.payload[0]]
            streams = self._RTCRtpReceiver__remote_streams  # keep loss stats right
            if packet.ssrc in streams:
                streams[packet.ssrc].add(packet)
            return
    await _orig_handle_rtp(self, packet, arrival_time_ms)


RTCDtlsTransport._send_rtp = _send_rtp
RTCRtpReceiver._handle_rtp_packet = _handle_rtp_packet


async def send_dtmf(transceiver, digits, duration_ms=160, gap_ms=100):
    codecs = transceiver._codecs
    if not codecs:
        raise PeerError("dtmf: not negotiated yet")
    te = [c for c in codecs if c.mimeType.lower() == "audio/telephone-event"]
    te = [c for c in te if c.clockRate == codecs[0].clockRate] or te
    if not te:
        raise PeerError("dtmf: telephone-event was not negotiated")
    pt, clock = te[0].payloadType, te[0].clockRate
    step = int(clock * PTIME)
    transport = transceiver.sender.transport
    for digit in digits.upper():
        if digit not in DTMF_EVENTS:
            raise PeerError(f"dtmf: bad digit {digit!r}")
        if STATE.last_ts is None:
            raise PeerError("dtmf: no audio sent yet")
        STATE.suppress_audio = True
        ts = (STATE.last_ts + step) & 0xFFFFFFFF
        n = max(1, duration_ms // 20)
        for k in range(1, n + 4):
            end = k >= n
            duration = min(k, n) * step
            payload = struct.pack("!BBH", DTMF_EVENTS[digit], (0x80 if end else 0) | 10, duration)
            header = struct.pack("!BBHII", 0x80, (0x80 if k == 1 else 0) | pt, 0, ts, STATE.send_ssrc)
            await _orig_send_rtp(transport, _renumber(header + payload))
            STATE.dtmf_packets_sent += 1
            if k < n:
                await asyncio.sleep(PTIME)
        STATE.suppress_audio = False
        await asyncio.sleep(gap_ms / 1000)


def add_telephone_event_codecs():
    audio = aiortc.codecs.CODECS["audio"]
    for pt, clock in ((126, 8000), (110, 48000)):
        if not any(c.mimeType == "audio/telephone-event" and c.clockRate == clock for c in audio):
            audio.append(RTCRtpCodecParameters(
                mimeType="audio/telephone-event", clockRate=clock, channels=1,
                payloadType=pt, parameters={"0-15": None}))


def patch_loopback_only():
    # aioice gathers host candidates from aioice.ice.get_host_addresses(), which
    # deliberately skips 127.0.0.1 (and ::1). The tests run on loopback only,
    # so replace it to offer exactly one host candidate, 127.0.0.1.
    # (aioice 0.13.0: Connection.gather_candidates() calls the module-level
    # get_host_addresses(use_ipv4=..., use_ipv6=...), so patching the module
    # attribute is enough.)
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]


def codec_preferences(choice, dtmf):
    caps = RTCRtpSender.getCapabilities("audio").codecs
    wanted = {"pcmu": ["audio/pcmu"], "pcma": ["audio/pcma"], "opus": ["audio/opus"],
              "any": ["audio/opus", "audio/pcmu", "audio/pcma", "audio/g722"]}[choice]
    prefs = [c for w in wanted for c in caps if c.mimeType.lower() == w]
    if not prefs:
        raise PeerError(f"codec {choice} not supported by this aiortc")
    if dtmf:
        clocks = {c.clockRate for c in prefs}
        prefs += [c for c in caps if c.mimeType.lower() == "audio/telephone-event"
                  and (choice == "any" or c.clockRate in clocks)]
    return prefs


def stdin_lines(loop):
    """Read stdin in a daemon thread (never blocks exit); None means EOF."""
    queue = asyncio.Queue()

    def reader():
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    return queue


async def run(args):
    global STATE
    STATE = State(args.window)
    if args.loopback:
        patch_loopback_only()
    if args.dtmf:
        add_telephone_event_codecs()

    # No iceServers: with None aiortc would default to a public STUN server.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(ToneTrack(args.tone, args.amplitude), direction="sendrecv")
    transceiver.setCodecPreferences(codec_preferences(args.codec, args.dtmf))
    STATE.send_ssrc = transceiver.sender._ssrc
    tasks = []

    async def consume(track):
        try:
            while True:
                STATE.add_frame(await track.recv())
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            tasks.append(asyncio.ensure_future(consume(track)))

    @pc.on("connectionstatechange")
    def on_state():
        state = pc.connectionState
        log.info("connection state %s", state)
        if state == "connected" and STATE.connected_at is None:
            STATE.connected_at = time.monotonic()
            emit("connected")
        elif state in ("failed", "closed") and STATE.connected_at is not None:
            emit("disconnected", state=state)

    def negotiated():
        STATE.te_pts = {c.payloadType for c in transceiver._codecs
                        if c.mimeType.lower() == "audio/telephone-event"}

    async def make_offer():
        # aiortc gathers all candidates inside setLocalDescription: no trickle.
        await pc.setLocalDescription(await pc.createOffer())
        emit("offer", sdp=pc.localDescription.sdp)

    async def report():
        frequency, rms, seconds = STATE.analyse()
        sent = received = lost = remote_lost = None
        for s in (await pc.getStats()).values():
            if s.type == "outbound-rtp":
                sent = (sent or 0) + s.packetsSent
            elif s.type == "inbound-rtp":
                received = (received or 0) + s.packetsReceived
                lost = (lost or 0) + s.packetsLost
            elif s.type == "remote-inbound-rtp":
                remote_lost = (remote_lost or 0) + s.packetsLost
        if STATE.connected_at is not None:  # close the timeline at "now"
            slots = int((time.monotonic() - STATE.connected_at) / 0.1) + 1
            STATE.timeline.extend([0] * (slots - len(STATE.timeline)))
        emit("report", frequency=frequency, rms=round(rms, 5), analysed_seconds=round(seconds, 3),
             frames_received=STATE.frames_received, packets_sent=sent or 0,
             packets_received=received or 0, packets_lost=lost or 0,
             remote_packets_lost=remote_lost,
             codec=transceiver._codecs[0].mimeType if transceiver._codecs else None,
             direction=transceiver.currentDirection,
             timeline=list(STATE.timeline), dtmf_received=STATE.dtmf_received,
             dtmf_packets_sent=STATE.dtmf_packets_sent,
             payload_types={str(k): v for k, v in sorted(STATE.payload_types.items())})

    lines = stdin_lines(asyncio.get_running_loop())
    if args.role == "offer":
        await make_offer()

    try:
        while True:
            line = await lines.get()
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                cmd = msg["cmd"]
            except (ValueError, KeyError, TypeError):
                raise PeerError(f"bad command line: {line[:200]}")
            if cmd == "offer":  # first offer (answer role) or a re-offer from the remote
                await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                negotiated()
                emit("answer", sdp=pc.localDescription.sdp)
            elif cmd == "answer":
                if pc.signalingState != "have-local-offer":
                    raise PeerError(f"answer received in signaling state {pc.signalingState}")
                await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
                negotiated()
            elif cmd == "reoffer":  # renegotiate, e.g. {"direction":"sendonly"} to hold
                transceiver.direction = msg.get("direction", transceiver.direction)
                await make_offer()
            elif cmd == "report":
                await report()
            elif cmd == "reset":
                STATE.reset()
                emit("reset")
            elif cmd == "dtmf":
                digits = str(msg.get("digits", ""))
                await send_dtmf(transceiver, digits, int(msg.get("duration_ms", 160)),
                                int(msg.get("gap_ms", 100)))
                emit("dtmf_sent", digits=digits)
            elif cmd == "close":
                break
            else:
                raise PeerError(f"unknown command {cmd!r}")
    finally:
        await pc.close()
        for t in tasks:
            t.cancel()
    emit("closed")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", choices=["offer", "answer"], required=True)
    p.add_argument("--codec", choices=["pcmu", "pcma", "opus", "any"], default="any")
    p.add_argument("--tone", type=float, default=1000.0, help="Hz of the sent sine")
    p.add_argument("--amplitude", type=float, default=0.3, help="0..1 of full scale")
    p.add_argument("--window", type=float, default=2.0,
                   help="seconds of received audio kept for frequency/rms")
    p.add_argument("--loopback", action="store_true", help="only 127.0.0.1 ICE candidates")
    p.add_argument("--no-dtmf", dest="dtmf", action="store_false",
                   help="do not offer/accept telephone-event")
    p.add_argument("--verbose", action="store_true", help="aiortc debug logs on stderr")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    code = 0
    try:
        asyncio.run(run(args))
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        log.exception("peer failed")
        emit("error", message=f"{type(exc).__name__}: {exc}")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # aiortc may leave non-daemon decoder threads behind on errors; do not hang.
    os._exit(code)


if __name__ == "__main__":
    main()
