// WebAudio for the softphone: call-progress tones generated on the fly (no audio files to serve or
// license), level meters, and the choice of microphone and speaker.

let context = null;

/** The page's one AudioContext, made on first use: browsers cap how many a page may hold. */
function audioContext() {
  if (!context) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    context = new Context();
  }
  return context;
}

/**
 * Lets sound start: a context made before any user gesture stays suspended (autoplay policy),
 * and an incoming call's ringtone has no gesture of its own, so every click of the page calls this.
 */
export function unlock() {
  const ctx = audioContext();
  if (ctx && ctx.state === 'suspended') ctx.resume().catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// Tones

/**
 * Cadences in seconds (on, off, on, off, ...). Ringback is the Japanese one, as the numbers are
 * +81: 400 Hz warbling at 16 Hz, which two oscillators 16 Hz apart make by beating, 1 s on, 2 s
 * off. The ringtone is a brighter double ring, loud enough to notice from across a room.
 */
const TONES = {
  ringback: { frequencies: [400, 416], cadence: [1, 2], level: 0.06 },
  ringtone: { frequencies: [1000, 1250], cadence: [0.4, 0.2, 0.4, 2], level: 0.08 },
};
const RAMP_S = 0.005; // avoids clicks at each edge of a burst

class Tone {
  constructor(kind, ctx) {
    const spec = TONES[kind];
    this.kind = kind;
    this.ctx = ctx;
    this.spec = spec;
    this.gate = ctx.createGain();
    this.gate.gain.value = 0;
    this.gate.connect(ctx.destination);
    this.oscillators = spec.frequencies.map((frequency) => {
      const osc = ctx.createOscillator();
      osc.frequency.value = frequency;
      osc.connect(this.gate);
      osc.start();
      return osc;
    });
    this.period = spec.cadence.reduce((a, b) => a + b, 0);
    this.next = ctx.currentTime + 0.05;
    // Scheduled one cycle ahead, so that a busy main thread does not make the cadence stutter.
    this.schedule();
    this.schedule();
    this.timer = setInterval(() => this.schedule(), this.period * 1000);
    this.startedAt = new Date().toISOString();
  }

  schedule() {
    const { gain } = this.gate;
    let t = this.next;
    this.spec.cadence.forEach((seconds, i) => {
      if (i % 2 === 0) {
        gain.setValueAtTime(0, t);
        gain.linearRampToValueAtTime(this.spec.level, t + RAMP_S);
        gain.setValueAtTime(this.spec.level, t + seconds - RAMP_S);
        gain.linearRampToValueAtTime(0, t + seconds);
      }
      t += seconds;
    });
    this.next = t;
  }

  get nodes() {
    return this.oscillators.length + 1;
  }

  stop() {
    clearInterval(this.timer);
    this.gate.gain.cancelScheduledValues(0);
    this.gate.gain.value = 0;
    for (const osc of this.oscillators) {
      osc.stop();
      osc.disconnect();
    }
    this.gate.disconnect();
    this.oscillators = [];
  }
}

let tone = null;
/** Every tone played: { kind, startedAt, stoppedAt, nodes } (tests read it). */
const toneHistory = [];

/** Plays `kind` ('ringback', 'ringtone') or stops the tone (null); the same kind keeps playing. */
export function setTone(kind) {
  if ((tone ? tone.kind : null) === kind) return;
  if (tone) {
    tone.stop();
    toneHistory[toneHistory.length - 1].stoppedAt = new Date().toISOString();
    tone = null;
  }
  const ctx = kind ? audioContext() : null;
  if (!ctx) return;
  tone = new Tone(kind, ctx);
  toneHistory.push({ kind, startedAt: tone.startedAt, stoppedAt: null, nodes: tone.nodes });
}

export function toneState() {
  return {
    playing: tone ? { kind: tone.kind, nodes: tone.nodes, contextState: tone.ctx.state } : null,
    history: toneHistory.map((t) => ({ ...t })),
  };
}

// ---------------------------------------------------------------------------------------------
// Level meters

/** The loudness of a stream, 0 (silence, -60 dBFS or less) to 1 (full scale). */
export class LevelMeter {
  constructor(stream) {
    const ctx = audioContext();
    this.source = null;
    if (!ctx || !stream || !stream.getAudioTracks().length) return;
    // An AnalyserNode needs no path to the destination: it is pulled on its own, so metering
    // the remote stream does not play it twice.
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.samples = new Float32Array(this.analyser.fftSize);
    this.source = ctx.createMediaStreamSource(stream);
    this.source.connect(this.analyser);
  }

  level() {
    if (!this.source) return 0;
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const x of this.samples) sum += x * x;
    const rms = Math.sqrt(sum / this.samples.length);
    if (rms <= 0) return 0;
    const db = 20 * Math.log10(rms);
    return Math.min(1, Math.max(0, (db + 60) / 60));
  }

  close() {
    if (this.source) this.source.disconnect();
    this.source = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Devices

/** Whether the page may choose where a call plays (HTMLMediaElement.setSinkId, not in every browser). */
export const canChooseSpeaker = typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;

/** Microphones and speakers; labels stay empty until the page was allowed a microphone once. */
export async function listDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return { inputs: [], outputs: [] };
  const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
  const pick = (kind, name) => devices.filter((d) => d.kind === kind && d.deviceId)
    .map((d, i) => ({ deviceId: d.deviceId, label: d.label || `${name} ${i + 1}` }));
  return { inputs: pick('audioinput', 'Microphone'), outputs: pick('audiooutput', 'Speaker') };
}

/** Plays the call, and the tones, on `deviceId` ('' is the system default). */
export async function useSpeaker(element, deviceId) {
  if (!canChooseSpeaker) return;
  await element.setSinkId(deviceId);
  const ctx = audioContext();
  if (ctx && typeof ctx.setSinkId === 'function') await ctx.setSinkId(deviceId).catch(() => {});
}
