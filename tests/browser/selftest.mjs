#!/usr/bin/env node
// Tests the softphone page and softphone.mjs against mock-gateway.mjs, without the gateway:
// the mock's "far end" page, in a second headless Chromium, answers and places the calls so that
// real audio flows between two browsers. Each case runs softphone.mjs as the Rust test will and
// checks its exit code, its JSON lines and what the mock saw (GET /mock/log violations).
//
//   node selftest.mjs            (prints "N passed, N failed" last; exit 1 on any failure)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
];

function startMock(args = []) {
  const mock = spawn(process.execPath, [path.join(here, 'mock-gateway.mjs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  mock.stderr.on('data', (d) => process.stderr.write(`[mock] ${d}`));
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: mock.stdout });
    lines.once('line', (line) => resolve({ mock, base: JSON.parse(line).listening }));
    mock.once('exit', (code) => reject(new Error(`the mock exited (${code})`)));
  });
}

async function farEnd(base) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'softphone-far-end-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ARGS, permissions: ['microphone'],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => m.type() === 'error' && process.stderr.write(`[far end] ${m.text()}\n`));
  await page.goto(`${base}/mock/far-end.html`);
  await page.waitForFunction(() => document.getElementById('far-status').textContent === 'connected');
  return { close: async () => { await context.close(); fs.rmSync(profile, { recursive: true, force: true }); } };
}

/** Runs softphone.mjs; `onStep(step, line)` may act on each JSON line. */
function runSoftphone(args, onStep = () => {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(here, 'softphone.mjs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const steps = [];
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    readline.createInterface({ input: child.stdout }).on('line', (text) => {
      let line;
      try {
        line = JSON.parse(text);
      } catch {
        steps.push({ step: 'not-json', text });
        return;
      }
      steps.push(line);
      Promise.resolve(onStep(line.step, line)).catch((e) => process.stderr.write(`onStep: ${e}\n`));
    });
    child.on('exit', (code) => resolve({ code, steps, stderr }));
  });
}

const ANSWERED_ELSEWHERE = 'The call was answered on another device';
const step = (run, name) => run.steps.find((s) => s.step === name);
/** Every tone the page played has stopped (and at least one of `kind` was played). */
const tonesStopped = (done, kind) => Array.isArray(done.tones) && done.tones.some((t) => t.kind === kind && t.nodes > 0)
  && done.tones.every((t) => t.stoppedAt);
/** The quality line showed real numbers: audio flowing both ways, a round trip, a loss figure. */
const qualityMeasured = (q) => Boolean(q) && q.updates >= 2 && q.sendKbps > 5 && q.receiveKbps > 5
  && Number.isFinite(q.rttMs) && Number.isFinite(q.lossPercent) && /kbit\/s/.test(q.text);

/** The 4 screenshots of --screenshots (idle and connected, 320 and 1280 px), none overflowing. */
function screenshotsOk(run, states) {
  const shots = run.steps.filter((s) => s.step === 'screenshot');
  const wanted = states.flatMap((state) => [320, 1280].map((width) => `${state}-${width}`));
  return JSON.stringify(shots.map((s) => `${s.state}-${s.width}`)) === JSON.stringify(wanted)
    && shots.every((s) => s.overflow === false && fs.statSync(s.path).size > 1000
      && fs.readFileSync(s.path).subarray(1, 4).toString() === 'PNG');
}

const post = (base, p, body = {}) => fetch(`${base}${p}`, { method: 'POST', body: JSON.stringify(body) }).then((r) => r.json());

async function main() {
  const { mock, base } = await startMock();
  let far = null;
  const results = [];
  const check = (name, ok, detail) => {
    results.push(ok);
    process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : `: ${detail}`}\n`);
  };
  const violationsSince = async (count) => (await fetch(`${base}/mock/log`).then((r) => r.json())).violations.slice(count);
  const violationCount = async () => (await fetch(`${base}/mock/log`).then((r) => r.json())).violations.length;
  const last = (run) => run.steps[run.steps.length - 1] || {};
  const summary = (run) => `exit ${run.code}; last ${JSON.stringify(last(run)).slice(0, 1500)}\n${run.stderr.slice(-3000)}`;

  try {
    // 1. Signalling only: the mock answers with SDP that carries no media.
    const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'softphone-shots-'));
    let before = await violationCount();
    let run = await runSoftphone(['outgoing', base, '+818000000002', '--no-media', '--screenshots', shots]);
    let v = await violationsSince(before);
    let done = last(run);
    check('outgoing, signalling only', run.code === 0 && done.ok === true
      && JSON.stringify(done.statuses) === '["InProgress","Ringing","Connected","Terminated"]' && v.length === 0,
    `${summary(run)}\nviolations: ${v}`);
    check('ringback plays while Ringing (WebAudio nodes) and stops once connected',
      step(run, 'ringing')?.tone?.kind === 'ringback' && step(run, 'ringing').tone.nodes > 0
      && step(run, 'connected')?.tone === null && tonesStopped(done, 'ringback'), summary(run));
    check('the call timer ran (3 s call)', done.timer && done.timer.seconds >= 3 && /^\d\d:\d\d$/.test(done.timer.text), summary(run));
    check('the timeline shows the call as outgoing, to the number, in words', done.timelineGroups?.length === 1
      && done.timelineGroups[0].title === 'Outgoing call to +818000000002' && done.timelineGroups[0].direction === 'outgoing'
      && done.timelineGroups[0].mediaSessionId === done.mediaSessionId
      && JSON.stringify(done.timelineGroups[0].entries) === '["In progress: Trying (100)","Ringing (180)","Connected: Answered (200)","Ended by the device"]',
    summary(run));
    check('screenshots at 320 and 1280 px, idle and connected, without horizontal overflow', screenshotsOk(run, ['idle', 'connected']),
      JSON.stringify(run.steps.filter((s) => s.step === 'screenshot')));
    fs.rmSync(shots, { recursive: true, force: true });

    // 1b. A layout wider than a phone fails --screenshots, naming the element that sticks out.
    const wideShots = fs.mkdtempSync(path.join(os.tmpdir(), 'softphone-shots-'));
    await post(base, '/mock/extra-css', { css: '\n#call-timer { display: inline-block; width: 30rem; }\n' });
    run = await runSoftphone(['outgoing', base, '+818000000002', '--no-media', '--screenshots', wideShots]);
    await post(base, '/mock/extra-css', { css: '' });
    const wide = run.steps.find((s) => s.step === 'screenshot' && s.width === 320);
    check('--screenshots: overflow at 320 px fails the run and names the element', run.code === 1
      && last(run).step === 'failed' && last(run).during === 'screenshot' && /span#call-timer/.test(last(run).error)
      && wide && wide.overflow === true && wide.offenders.some((o) => o.selector.includes('span#call-timer')), summary(run));
    fs.rmSync(wideShots, { recursive: true, force: true });

    // 2. A wrong password: the run fails, saying why.
    run = await runSoftphone(['outgoing', base, '+818000000002', '--password', 'wrong', '--timeout-ms', '4000']);
    check('a failed sign-in fails the run with the provider\'s message', run.code === 1 && last(run).step === 'failed'
      && /wrong/i.test(last(run).error || ''), summary(run));

    // 3. With the far end: real audio both ways, DTMF, hold and resume.
    far = await farEnd(base);
    before = await violationCount();
    run = await runSoftphone(['outgoing', base, '+818000000900', '--use-echo-button', '--dtmf', '1#', '--hold']);
    v = await violationsSince(before);
    const media = run.steps.find((s) => s.step === 'media');
    done = last(run);
    check('outgoing (Echo test button) with audio both ways, DTMF, hold and resume', run.code === 0
      && JSON.stringify(done.statuses) === '["InProgress","Ringing","Connected","Hold","Resume","Terminated"]'
      && step(run, 'calling').receiverAddress === 'tel:+818000000900'
      && media && media.stats.packetsSent > 50 && media.stats.packetsReceived > 50 && v.length === 0,
    `${summary(run)}\nviolations: ${v}`);
    check('the quality line showed bitrates, round trip and loss', qualityMeasured(done.quality), JSON.stringify(done.quality));
    check('both level meters moved', done.levels && done.levels.inputMax > 0.05 && done.levels.outputMax > 0.05, JSON.stringify(done.levels));

    // 4. Incoming: "ready" -> the network calls; once audio flows, the network hangs up.
    before = await violationCount();
    let invited = null;
    const incomingShots = fs.mkdtempSync(path.join(os.tmpdir(), 'softphone-shots-'));
    run = await runSoftphone(['incoming', base, '--screenshots', incomingShots], async (name) => {
      if (name === 'ready') invited = await post(base, '/mock/invite', { to: '+818000000001', from: 'tel:+818000000002' });
      // Long enough for a quality reading or two after the audio check.
      if (name === 'media') setTimeout(() => post(base, '/mock/hangup', { mediaSessionId: invited.mediaSessionId }), 2500);
    });
    v = await violationsSince(before);
    const incomingMedia = run.steps.find((s) => s.step === 'media');
    done = last(run);
    check('incoming answered, audio both ways, ended by the caller', run.code === 0
      && JSON.stringify(done.statuses) === '["Initial","Connected","Terminated"]'
      && invited && invited.farEnd === true && incomingMedia && incomingMedia.stats.packetsReceived > 50 && v.length === 0,
    `${summary(run)}\nviolations: ${v}`);
    check('the ringtone plays while invited and stops once answered', step(run, 'invited')?.tone?.kind === 'ringtone'
      && step(run, 'invited').tone.nodes > 0 && step(run, 'connected')?.tone === null && tonesStopped(done, 'ringtone'), summary(run));
    const group = (done.timelineGroups || [])[0] || {};
    check('the timeline shows "Incoming call from" the caller, not the raw status Initial', done.timelineGroups?.length === 1
      && group.title === 'Incoming call from +818000000002' && group.direction === 'incoming'
      && group.entries[0] === 'Incoming call from +818000000002' && !group.entries.some((e) => /Initial|Created/.test(e))
      && group.entries.length === 3, JSON.stringify(done.timelineGroups));
    check('incoming: timer, quality line and meters updated', done.timer && done.timer.seconds >= 1
      && qualityMeasured(done.quality) && done.levels.outputMax > 0.05, JSON.stringify({ timer: done.timer, quality: done.quality, levels: done.levels }));
    check('incoming: screenshots without overflow', screenshotsOk(run, ['idle', 'connected']),
      JSON.stringify(run.steps.filter((s) => s.step === 'screenshot')));
    fs.rmSync(incomingShots, { recursive: true, force: true });

    // 5. Declining an incoming call.
    before = await violationCount();
    run = await runSoftphone(['incoming', base, '--decline'], async (step) => {
      if (step === 'ready') await post(base, '/mock/invite', { to: '+818000000001' });
    });
    v = await violationsSince(before);
    check('incoming declined', run.code === 0 && JSON.stringify(last(run).statuses) === '["Initial","Declined"]' && v.length === 0
      && tonesStopped(last(run), 'ringtone') && last(run).timer === null, `${summary(run)}\nviolations: ${v}`);

    // 5b. Ringing only: the call is answered elsewhere (the mock says so), the page stops ringing.
    before = await violationCount();
    run = await runSoftphone(['incoming', base, '--ring-only', '--expect-status', 'SessionCancelled'], async (name, line) => {
      if (name === 'ready') await post(base, '/mock/invite', { to: '+818000000001' });
      if (name === 'invited') setTimeout(() => post(base, '/mock/cancel', { mediaSessionId: line.mediaSessionId }), 300);
    });
    v = await violationsSince(before);
    done = last(run);
    check('--ring-only: SessionCancelled with the reason, the ringtone stops', run.code === 0
      && JSON.stringify(done.statuses) === '["Initial","SessionCancelled"]' && done.reason === ANSWERED_ELSEWHERE
      && step(run, 'session-ended')?.tone === null && tonesStopped(done, 'ringtone')
      && (done.timelineGroups[0] || {}).entries?.[1] === `Cancelled: ${ANSWERED_ELSEWHERE}` && v.length === 0,
    `${summary(run)}\nviolations: ${v}`);

    // 5c. --expect-status fails the run on another ending.
    run = await runSoftphone(['incoming', base, '--ring-only', '--expect-status', 'Terminated'], async (name, line) => {
      if (name === 'ready') await post(base, '/mock/invite', { to: '+818000000001' });
      if (name === 'invited') setTimeout(() => post(base, '/mock/cancel', { mediaSessionId: line.mediaSessionId }), 300);
    });
    check('--expect-status: another last status fails the run', run.code === 1 && last(run).step === 'failed'
      && /SessionCancelled/.test(last(run).error) && /not Terminated/.test(last(run).error), summary(run));

    // 5d. Forking: three devices of one number ring; one declines (the others keep ringing), one
    // answers two seconds later, the third sees its session cancelled as answered elsewhere.
    before = await violationCount();
    const ready = [];
    let forkDone = null;
    const allReady = new Promise((resolve) => { forkDone = resolve; });
    const whenReady = (name) => {
      if (name !== 'ready') return;
      ready.push(name);
      if (ready.length === 3) forkDone();
    };
    let answererId = null;
    const forked = allReady.then(() => post(base, '/mock/invite', { to: '+818000000001', fork: true }));
    const [ringer, decliner, answerer] = await Promise.all([
      runSoftphone(['incoming', base, '--ring-only', '--expect-status', 'SessionCancelled'], whenReady),
      runSoftphone(['incoming', base, '--decline'], whenReady),
      runSoftphone(['incoming', base, '--answer-delay-ms', '2000'], async (name, line) => {
        whenReady(name);
        if (name === 'invited') answererId = line.mediaSessionId;
        if (name === 'media') setTimeout(() => post(base, '/mock/hangup', { mediaSessionId: answererId }), 500);
      }),
    ]);
    v = await violationsSince(before);
    const legs = (await forked).mediaSessionIds || [];
    const ids = [ringer, decliner, answerer].map((r) => last(r).mediaSessionId);
    check('fork: three sessions, one per device', legs.length === 3 && new Set(ids).size === 3 && ids.every((x) => legs.includes(x)),
      JSON.stringify({ legs, ids }));
    check('fork: the ringing device ends SessionCancelled, "answered on another device"', ringer.code === 0
      && JSON.stringify(last(ringer).statuses) === '["Initial","SessionCancelled"]' && last(ringer).reason === ANSWERED_ELSEWHERE,
    summary(ringer));
    check('fork: the declining device ends Declined, the others keep ringing', decliner.code === 0
      && JSON.stringify(last(decliner).statuses) === '["Initial","Declined"]', summary(decliner));
    check('fork: the device answering 2 s later gets the call, with audio', answerer.code === 0
      && JSON.stringify(last(answerer).statuses) === '["Initial","Connected","Terminated"]'
      && last(answerer).stats.packetsReceived > 50 && v.length === 0, `${summary(answerer)}\nviolations: ${v}`);

    // 5e. Browser to browser: bob's page takes alice's call (no far end, nothing like sipp).
    before = await violationCount();
    let caller = null;
    const callee = await runSoftphone(['incoming', base, '--user', 'bob', '--password', 'bob', '--answer-delay-ms', '1500'], (name) => {
      if (name === 'ready') caller = runSoftphone(['outgoing', base, '+818000000002']);
    });
    caller = await caller;
    v = await violationsSince(before);
    check('browser to browser: alice calls bob, audio both ways, alice hangs up', caller.code === 0 && callee.code === 0
      && JSON.stringify(last(caller).statuses) === '["InProgress","Ringing","Connected","Terminated"]'
      && JSON.stringify(last(callee).statuses) === '["Initial","Connected","Terminated"]'
      && step(caller, 'ringing')?.tone?.kind === 'ringback'
      && last(caller).stats.packetsReceived > 50 && last(callee).stats.packetsReceived > 50
      && last(callee).timelineGroups[0].title === 'Incoming call from +818000000001' && v.length === 0,
    `caller: ${summary(caller)}\ncallee: ${summary(callee)}\nviolations: ${v}`);

    // 6. Nothing left behind at the "gateway", nothing unacknowledged, no violation at all.
    const settled = Date.now() + 6000;
    let log = await fetch(`${base}/mock/log`).then((r) => r.json());
    while (log.pendingDeliveries > 0 && Date.now() < settled) {
      await new Promise((r) => setTimeout(r, 200));
      log = await fetch(`${base}/mock/log`).then((r) => r.json());
    }
    check('no violation in the whole session', log.violations.length === 0 && log.pendingDeliveries === 0,
      JSON.stringify({ violations: log.violations, pending: log.pendingDeliveries }));
    check('every run unsubscribed, deleted its channel and unregistered',
      log.registrations.length === 0 && log.subscriptions.length === 0 && log.channels.length === 0,
      JSON.stringify({ registrations: log.registrations, subscriptions: log.subscriptions, channels: log.channels }));
    check('the page acknowledged the events it received', log.frames.includes('ack'), JSON.stringify(log.frames));
  } finally {
    if (far) await far.close().catch(() => {});
    mock.kill('SIGTERM');
  }

  // 7. Short-lived tokens, a lost relay connection, a call long enough for keepalive pings.
  const short = await startMock(['--token-ttl', '4']);
  try {
    // The relay socket drops right after subscribing; the call lasts 22 s, past the life of
    // several tokens and one ping interval.
    const run = await runSoftphone(['outgoing', short.base, '+818000000002', '--no-media', '--media-seconds', '22'],
      async (step) => {
        if (step === 'subscribed') await post(short.base, '/mock/drop-sockets');
      });
    const log = await fetch(`${short.base}/mock/log`).then((r) => r.json());
    check('tokens refreshed before expiry, relay reconnected, pings sent', run.code === 0 && log.refreshes >= 3
      && log.connections >= 2 && log.pings >= 1 && log.violations.length === 0,
      `${summary(run)}\n${JSON.stringify({ refreshes: log.refreshes, connections: log.connections, pings: log.pings, violations: log.violations })}`);
  } finally {
    short.mock.kill('SIGTERM');
  }
  const passed = results.filter(Boolean).length;
  process.stdout.write(`${passed} passed, ${results.length - passed} failed\n`);
  process.exit(results.length === passed ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
