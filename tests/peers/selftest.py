#!/usr/bin/env python3
"""Self-test of webrtc_peer.py without the gateway: two peers on loopback.

For each codec: an offerer sending 1000 Hz and an answerer sending 440 Hz are
wired together; after ~3 s each must hear the other's tone (within 10 Hz) with
near-zero loss. Then (pcmu): DTMF both ways, and hold/resume by re-offer
(sendonly, then sendrecv) seen in the timeline. Exits non-zero on failure.
Run with the peers venv: $VENV/bin/python tests/peers/selftest.py
"""

import json
import os
import subprocess
import sys
import threading
import time
import queue

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "webrtc_peer.py")


class Peer:
    def __init__(self, name, *args):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, PEER, "--loopback", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def expect(self, event, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            msg = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"{self.name}: exited while waiting for {event}")
            if msg["event"] == "error":
                raise AssertionError(f"{self.name}: error {msg['message']}")
            if msg["event"] == event:
                return msg

    def close(self):
        self.send(cmd="close")
        self.expect("closed")
        assert self.proc.wait(timeout=10) == 0, f"{self.name}: non-zero exit"


def summary(r):
    return {k: r[k] for k in ("frequency", "rms", "codec", "frames_received", "packets_sent",
                              "packets_received", "packets_lost", "remote_packets_lost",
                              "dtmf_received", "payload_types")}


def connect(codec):
    a = Peer("offerer", "--role", "offer", "--codec", codec, "--tone", "1000")
    b = Peer("answerer", "--role", "answer", "--codec", codec, "--tone", "440")
    b.send(cmd="offer", sdp=a.expect("offer")["sdp"])
    a.send(cmd="answer", sdp=b.expect("answer")["sdp"])
    a.expect("connected")
    b.expect("connected")
    return a, b


def check_tone(name, r, want_hz, mime):
    print(f"  {name}: {json.dumps(summary(r))}")
    assert r["frequency"] is not None and abs(r["frequency"] - want_hz) <= 10, f"{name}: frequency"
    assert r["codec"].lower() == mime, f"{name}: codec"
    assert r["packets_lost"] <= 2, f"{name}: loss"
    assert r["packets_received"] > 100, f"{name}: too few packets"


def tone_test(codec):
    mime = {"pcmu": "audio/pcmu", "pcma": "audio/pcma", "opus": "audio/opus"}[codec]
    a, b = connect(codec)
    time.sleep(3)
    for p in (a, b):
        p.send(cmd="report")
    ra, rb = a.expect("report"), b.expect("report")
    print(f"[{codec}]")
    check_tone("offerer hears", ra, 440, mime)
    check_tone("answerer hears", rb, 1000, mime)
    return a, b


def dtmf_and_hold(a, b):
    print("[pcmu dtmf + hold]")
    a.send(cmd="dtmf", digits="123#")
    b.send(cmd="dtmf", digits="*9A")
    a.expect("dtmf_sent", 5)
    b.expect("dtmf_sent", 5)
    time.sleep(0.3)
    for p in (a, b):
        p.send(cmd="reset")
        p.expect("reset")
    time.sleep(1.5)
    a.send(cmd="report")
    b.send(cmd="report")
    ra, rb = a.expect("report"), b.expect("report")
    print(f"  answerer dtmf_received={rb['dtmf_received']!r} offerer dtmf_received={ra['dtmf_received']!r}")
    assert rb["dtmf_received"] == "123#" and ra["dtmf_received"] == "*9A", "dtmf"
    check_tone("offerer hears after dtmf", ra, 440, "audio/pcmu")
    check_tone("answerer hears after dtmf", rb, 1000, "audio/pcmu")

    a.send(cmd="reoffer", direction="sendonly")  # hold: b stops sending to a
    b.send(cmd="offer", sdp=a.expect("offer")["sdp"])
    a.send(cmd="answer", sdp=b.expect("answer")["sdp"])
    time.sleep(1.5)
    a.send(cmd="reoffer", direction="sendrecv")  # resume
    b.send(cmd="offer", sdp=a.expect("offer")["sdp"])
    a.send(cmd="answer", sdp=b.expect("answer")["sdp"])
    time.sleep(1.5)
    a.send(cmd="report")
    ra = a.expect("report")
    tl = ra["timeline"]
    print(f"  offerer timeline (frames/100ms, last 4.5 s): {tl[-45:]}")
    longest = run = 0
    for n in tl[-45:]:
        run = run + 1 if n == 0 else 0
        longest = max(longest, run)
    assert longest >= 10, "no 1 s of silence during the 1.5 s hold"
    assert sum(tl[-8:]) >= 30, "media did not come back after resume"


def main():
    failures = 0
    for codec in ("pcmu", "pcma", "opus"):
        try:
            a, b = tone_test(codec)
            if codec == "pcmu":
                dtmf_and_hold(a, b)
            a.close()
            b.close()
        except Exception as exc:  # noqa: BLE001
            failures += 1
            print(f"  FAILED: {exc!r}")
    print(f"selftest: {3 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
