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
    let before = await violationCount();
    let run = await runSoftphone(['outgoing', base, '+818000000002', '--no-media']);
    let v = await violationsSince(before);
    check('outgoing, signalling only', run.code === 0 && last(run).ok === true
      && JSON.stringify(last(run).statuses) === '["InProgress","Connected","Terminated"]' && v.length === 0,
    `${summary(run)}\nviolations: ${v}`);

    // 2. A wrong password: the run fails, saying why.
    run = await runSoftphone(['outgoing', base, '+818000000002', '--password', 'wrong', '--timeout-ms', '4000']);
    check('a failed sign-in fails the run with the provider\'s message', run.code === 1 && last(run).step === 'failed'
      && /wrong/i.test(last(run).error || ''), summary(run));

    // 3. With the far end: real audio both ways, DTMF, hold and resume.
    far = await farEnd(base);
    before = await violationCount();
    run = await runSoftphone(['outgoing', base, '+818000000002', '--dtmf', '1#', '--hold']);
    v = await violationsSince(before);
    const media = run.steps.find((s) => s.step === 'media');
    check('outgoing with audio both ways, DTMF, hold and resume', run.code === 0
      && JSON.stringify(last(run).statuses) === '["InProgress","Connected","Hold","Resume","Terminated"]'
      && media && media.stats.packetsSent > 50 && media.stats.packetsReceived > 50 && v.length === 0,
    `${summary(run)}\nviolations: ${v}`);

    // 4. Incoming: "ready" -> the network calls; once audio flows, the network hangs up.
    before = await violationCount();
    let invited = null;
    run = await runSoftphone(['incoming', base], async (step) => {
      if (step === 'ready') invited = await post(base, '/mock/invite', { to: '+818000000001', from: 'tel:+818000000002' });
      if (step === 'media') setTimeout(() => post(base, '/mock/hangup', { mediaSessionId: invited.mediaSessionId }), 500);
    });
    v = await violationsSince(before);
    const incomingMedia = run.steps.find((s) => s.step === 'media');
    check('incoming answered, audio both ways, ended by the caller', run.code === 0
      && JSON.stringify(last(run).statuses) === '["Initial","Connected","Terminated"]'
      && invited && invited.farEnd === true && incomingMedia && incomingMedia.stats.packetsReceived > 50 && v.length === 0,
    `${summary(run)}\nviolations: ${v}`);

    // 5. Declining an incoming call.
    before = await violationCount();
    run = await runSoftphone(['incoming', base, '--decline'], async (step) => {
      if (step === 'ready') await post(base, '/mock/invite', { to: '+818000000001' });
    });
    v = await violationsSince(before);
    check('incoming declined', run.code === 0 && JSON.stringify(last(run).statuses) === '["Initial","Declined"]' && v.length === 0,
      `${summary(run)}\nviolations: ${v}`);

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
