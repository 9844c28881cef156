#!/usr/bin/env node
// Drives the gateway's browser softphone (/softphone/) in headless Debian Chromium, as a person
// would: signs in on the provider's page, registers, subscribes, then places or takes a call and
// checks that audio flows both ways.
//
//   node softphone.mjs outgoing <gateway base URL> <number> [options]
//   node softphone.mjs incoming <gateway base URL> [options]
//
// Prints one JSON object per line on stdout, one per step ({"step": ...}); the last line is
// {"step":"done","ok":true,...} on success, or {"step":"failed","ok":false,"error":...} with the
// page's state, timeline and console on failure (exit code 1; 2 for a usage error).
//
// Options:
//   --user NAME / --password PW  provider credentials (default alice / alice)
//   --timeout-ms N               per-step wait (default 20000)
//   --invite-timeout-ms N        incoming: wait for the invitation (default 60000)
//   --end-timeout-ms N           incoming: wait for the caller to hang up (default 60000)
//   --media-seconds N            outgoing: call time before the audio check (default 3)
//   --min-packets N              audio packets required each way (default 50)
//   --no-media                   skip the audio check (signalling only)
//   --hold                       outgoing: hold then resume before hanging up
//   --decline                    incoming: decline the call instead of answering it
//   --answer-delay-ms N          incoming: wait N ms after the invitation before answering
//   --ring-only                  incoming: neither answer nor decline; done once the session ends
//                                (answered on another device, or cancelled by the caller), with
//                                its statuses and the last `reason` of its session-status events
//   --expect-status STATUS       with --ring-only: fail unless the session's last status is STATUS
//   --use-echo-button            outgoing: dial with the Echo test button instead of typing
//                                <number> (which must then be the number that button calls)
//   --local-hangup               incoming: hang up from the page after the audio check
//                                (for a caller that never hangs up, like the demo endpoint)
//   --dtmf DIGITS                send these DTMF tones during the call
//   --keep                       do not unsubscribe and unregister at the end
//   --screenshot FILE            save a PNG of the page at the end (and on failure)
//   --screenshots DIR            at the signed-in idle state and once the call is connected, save
//                                DIR/softphone-<idle|connected>-<320|1280>.png at 320x640 and
//                                1280x800 and fail on horizontal overflow (step "screenshot")
//   --chromium PATH              the browser (default $CHROMIUM or /usr/bin/chromium)
//   --deadline-ms N              kill switch for the whole run (default 240000)
//
// Besides `statuses` and `stats`, "done" reports what the page showed: `reason` (the last reason
// of the session's status events), `timer` ({seconds, text} once connected, else null), `quality`
// (the last quality line: sendKbps, receiveKbps, rttMs, lossPercent, jitterMs, text, updates),
// `levels` (the meters' maxima, 0..1), `tones` (ringback/ringtone played: kind, startedAt,
// stoppedAt, nodes) and `timelineGroups` (the timeline as shown: per call, title and entries).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const USAGE = 'usage: node softphone.mjs outgoing <base URL> <number> [options] | incoming <base URL> [options]';

function parseArgs(argv) {
  const positional = [];
  const options = {
    user: 'alice', password: 'alice', timeoutMs: 20_000, inviteTimeoutMs: 60_000, endTimeoutMs: 60_000,
    mediaSeconds: 3, minPackets: 50, media: true, hold: false, decline: false, localHangup: false, dtmf: '', keep: false, screenshot: null,
    chromium: process.env.CHROMIUM || '/usr/bin/chromium', deadlineMs: 240_000,
    screenshots: null, ringOnly: false, expectStatus: null, answerDelayMs: 0, echoButton: false,
  };
  const numbers = {
    '--timeout-ms': 'timeoutMs', '--invite-timeout-ms': 'inviteTimeoutMs', '--end-timeout-ms': 'endTimeoutMs',
    '--media-seconds': 'mediaSeconds', '--min-packets': 'minPackets', '--deadline-ms': 'deadlineMs',
    '--answer-delay-ms': 'answerDelayMs',
  };
  const strings = {
    '--user': 'user', '--password': 'password', '--dtmf': 'dtmf', '--screenshot': 'screenshot', '--chromium': 'chromium',
    '--screenshots': 'screenshots', '--expect-status': 'expectStatus',
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (numbers[arg]) {
      const value = Number(argv[++i]);
      if (!Number.isFinite(value) || value < 0) throw new Error(`${arg} needs a number`);
      options[numbers[arg]] = value;
    } else if (strings[arg]) {
      if (argv[i + 1] === undefined) throw new Error(`${arg} needs a value`);
      options[strings[arg]] = argv[++i];
    } else if (arg === '--no-media') options.media = false;
    else if (arg === '--hold') options.hold = true;
    else if (arg === '--decline') options.decline = true;
    else if (arg === '--local-hangup') options.localHangup = true;
    else if (arg === '--keep') options.keep = true;
    else if (arg === '--ring-only') options.ringOnly = true;
    else if (arg === '--use-echo-button') options.echoButton = true;
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`);
    else positional.push(arg);
  }
  const [scenario, base, number] = positional;
  if (!['outgoing', 'incoming'].includes(scenario) || !base) throw new Error(USAGE);
  if (scenario === 'outgoing' && !number) throw new Error(`outgoing needs a number\n${USAGE}`);
  if (!/^[0-9*#]*$/.test(options.dtmf)) throw new Error('--dtmf takes digits, * and #');
  if ((options.ringOnly || options.answerDelayMs) && scenario !== 'incoming') throw new Error('--ring-only and --answer-delay-ms are for incoming');
  if (options.ringOnly && options.decline) throw new Error('--ring-only and --decline exclude each other');
  if (options.expectStatus && !options.ringOnly) throw new Error('--expect-status goes with --ring-only');
  if (options.echoButton && scenario !== 'outgoing') throw new Error('--use-echo-button is for outgoing');
  return { scenario, base: base.replace(/\/+$/, ''), number, ...options };
}

const started = Date.now();
function emit(step, fields = {}) {
  process.stdout.write(`${JSON.stringify({ step, t: Date.now() - started, ...fields })}\n`);
}

class StepError extends Error {
  constructor(step, message) {
    super(message);
    this.step = step;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const FINAL = ['Terminated', 'SessionCancelled', 'Declined', 'Failed', 'NoAnswer', 'NotReachable', 'Busy'];

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  const deadline = setTimeout(() => {
    emit('failed', { ok: false, error: `the whole run took longer than ${args.deadlineMs} ms` });
    process.exit(1);
  }, args.deadlineMs);
  deadline.unref();

  const consoleLines = [];
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'softphone-chromium-'));
  let context;
  let page;
  let current = 'launch';
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: args.chromium,
      headless: true,
      args: [
        '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
        // Media between processes of this machine: loopback candidates, real IPs (no mDNS names).
        '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
        '--autoplay-policy=no-user-gesture-required',
      ],
      permissions: ['microphone'],
      viewport: { width: 1100, height: 1000 },
      timeout: args.timeoutMs,
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(args.timeoutMs);
    page.on('console', (m) => consoleLines.push(`${new Date().toISOString()} ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`${new Date().toISOString()} pageerror: ${e.message}`));
    page.on('requestfailed', (r) => consoleLines.push(`${new Date().toISOString()} requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => {
      if (r.status() >= 400) consoleLines.push(`${new Date().toISOString()} http ${r.status()}: ${r.request().method()} ${r.url()}`);
    });
    emit('launched', { browser: context.browser()?.version() ?? null });

    const run = new Run(page, args);
    current = 'sign-in';
    await run.signIn();
    current = 'register';
    await run.register();
    current = 'subscribe';
    await run.subscribe();
    current = 'screenshot';
    await run.screenshots('idle');
    const result = args.scenario === 'outgoing' ? await run.outgoing() : await run.incoming();
    if (!args.keep) {
      current = 'cleanup';
      await run.cleanup();
    }
    if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
    emit('done', { ok: true, scenario: args.scenario, ...result });
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    process.exit(0);
  } catch (e) {
    const failure = { ok: false, during: e.step || current, error: e.message };
    if (page) {
      failure.url = page.url();
      failure.state = await page.evaluate(() => window.softphone && window.softphone.state).catch(() => null);
      failure.statusText = await page.locator('#status').textContent({ timeout: 1000 }).catch(() => null);
      failure.timeline = await page.evaluate(() => window.softphone && window.softphone.events.map((x) => ({
        receivedAt: x.receivedAt, type: x.type, status: x.status, reason: x.reason,
        sequenceNumber: x.sequenceNumber, mediaSessionId: x.mediaSessionId,
      }))).catch(() => null);
      if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true }).catch(() => {});
      if (!args.keep && failure.state && failure.state.signedIn) {
        // Leave the gateway as found: no registration or subscription of this run stays behind.
        await new Run(page, { ...args, timeoutMs: 5000 }).cleanup().catch(() => {});
      }
    }
    failure.console = consoleLines.slice(-80);
    emit('failed', failure);
    process.stderr.write(`softphone ${args.scenario} failed during ${failure.during}: ${e.message}\n`);
    for (const line of failure.console) process.stderr.write(`  ${line}\n`);
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    process.exit(1);
  }
}

/** The steps, against one page. */
class Run {
  constructor(page, args) {
    this.page = page;
    this.args = args;
  }

  state() {
    return this.page.evaluate(() => window.softphone.state);
  }

  /**
   * Clicks `#id` (once enabled) and waits until `predicate(state, events)` (evaluated in the page)
   * holds; an error shown in the status region after the click fails the step at once.
   */
  async clickAndWait(step, id, predicate, arg, timeoutMs = this.args.timeoutMs) {
    const before = await this.page.locator('#status').textContent();
    await this.page.locator(`#${id}`).click({ timeout: timeoutMs });
    return this.waitInPage(step, predicate, arg, timeoutMs, before);
  }

  /**
   * Waits for `predicate(state, events, arg)` in the page (polled from here: no eval in the page,
   * so a strict Content-Security-Policy does not get in the way); fails at once on an error that
   * the status region shows and that differs from `statusBefore` (null: errors are not watched).
   */
  async waitInPage(step, predicate, arg, timeoutMs, statusBefore = null) {
    const expression = `(() => {
      const sp = window.softphone;
      if (!sp) return false;
      if ((${predicate.toString()})(sp.state, sp.events, ${JSON.stringify(arg ?? null)})) return { ok: true };
      const status = document.getElementById('status');
      const before = ${JSON.stringify(statusBefore)};
      if (before !== null && status.dataset.kind === 'error' && status.textContent !== before) {
        return { ok: false, error: status.textContent };
      }
      return false;
    })()`;
    const until = Date.now() + timeoutMs;
    for (;;) {
      let outcome = false;
      try {
        outcome = await this.page.evaluate(expression);
      } catch (e) {
        // A navigation replaces the page's context: try again in the new one.
        if (!/context was destroyed|navigat|Target closed/i.test(e.message)) {
          throw new StepError(step, `${step}: ${e.message.split('\n')[0]}`);
        }
      }
      if (outcome && outcome.ok) return;
      if (outcome && !outcome.ok) throw new StepError(step, `${step}: the page says: ${outcome.error}`);
      if (Date.now() > until) throw new StepError(step, `${step}: not done within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  async signIn() {
    const { page, args } = this;
    const response = await page.goto(`${args.base}/softphone/`, { waitUntil: 'load' });
    if (!response || !response.ok()) throw new StepError('open', `GET /softphone/ answered ${response && response.status()}`);
    await this.waitInPage('open', () => true, null, args.timeoutMs);
    emit('opened', { url: page.url() });
    await page.locator('#sign-in').click();
    // The provider's own sign-in and consent page.
    await page.waitForURL((url) => !url.pathname.startsWith('/softphone'), { timeout: args.timeoutMs })
      .catch(async () => {
        const status = await page.locator('#status').textContent().catch(() => '');
        throw new StepError('sign-in', `the sign-in page did not open: ${status}`);
      });
    await page.locator('input[name="username"]').fill(args.user);
    await page.locator('input[name="password"]').fill(args.password);
    emit('provider-page', { url: page.url().split('?')[0] });
    await page.locator('button[name="decision"][value="approve"], button:has-text("Approve")').first().click();
    await page.waitForURL((url) => url.pathname === '/softphone/', { timeout: args.timeoutMs }).catch(async () => {
      const error = await page.locator('#error, [role="alert"]').first().textContent({ timeout: 1000 }).catch(() => null);
      throw new StepError('sign-in', `the provider did not redirect back${error ? `: ${error}` : ''} (at ${page.url().split('?')[0]})`);
    });
    await this.waitInPage('sign-in', (s) => s.signedIn && !s.busy.includes('Sign in'), null, args.timeoutMs, '');
    const state = await this.state();
    if (!state.phoneNumber) throw new StepError('sign-in', 'the access token carries no phone_number');
    if (page.url().includes('code=')) throw new StepError('sign-in', 'the authorization code stayed in the address bar');
    emit('signed-in', { user: state.subject, phoneNumber: state.phoneNumber, tokenExpiresAt: state.tokenExpiresAt });
  }

  async register() {
    await this.clickAndWait('register', 'register', (s) => Boolean(s.registration));
    const { registration, deviceId } = await this.state();
    emit('registered', { registrationId: registration.registrationId, deviceId, expiresAt: registration.expiresAt, phoneNumber: registration.phoneNumber });
  }

  async subscribe() {
    await this.clickAndWait('subscribe', 'subscribe', (s) => Boolean(s.subscription) && s.relay && s.relay.ready);
    const { subscription, relay } = await this.state();
    emit('subscribed', { subscriptionId: subscription.id, channelId: relay.channelId });
  }

  /** The statuses the relay delivered for one call (its invitation's Initial included), in
   * arrival order. */
  statuses(mediaSessionId) {
    return this.page.evaluate((id) => window.softphone.events
      .filter((e) => e.mediaSessionId === id && /\.session-(status|invitation)$/.test(e.type))
      .map((e) => e.status), mediaSessionId);
  }

  async waitForStatus(step, mediaSessionId, wanted, timeoutMs = this.args.timeoutMs) {
    await this.waitInPage(step, (state, events, a) => events.some((e) => e.mediaSessionId === a.id
      && e.type.endsWith('.session-status') && a.wanted.includes(e.status)), { id: mediaSessionId, wanted }, timeoutMs)
      .catch(async (e) => {
        const seen = await this.statuses(mediaSessionId).catch(() => []);
        throw new StepError(step, `${e.message}; statuses seen: ${JSON.stringify(seen)}`);
      });
    const seen = await this.statuses(mediaSessionId);
    return seen.find((s) => wanted.includes(s));
  }

  /** Waits until the page's audio counters pass the threshold both ways. */
  async checkMedia(step) {
    const { page, args } = this;
    if (!args.media) {
      emit('media-skipped', {});
      return null;
    }
    const until = Date.now() + args.timeoutMs;
    let stats;
    for (;;) {
      stats = await page.evaluate(() => window.softphone.stats());
      if (stats.packetsSent > args.minPackets && stats.packetsReceived > args.minPackets) break;
      if (Date.now() > until) {
        const peer = await this.state().then((s) => s.call).catch(() => null);
        throw new StepError(step, `audio does not flow both ways: ${JSON.stringify(stats)} (need > ${args.minPackets} each way; peer ${peer && peer.connectionState}/${peer && peer.iceConnectionState})`);
      }
      await sleep(250);
    }
    emit('media', { stats });
    return stats;
  }

  /** What the page shows of a call (live or ended) and of the page as a whole, for "done". */
  async report(mediaSessionId) {
    const state = await this.state();
    const call = [state.call, state.lastCall].find((c) => c && c.mediaSessionId === mediaSessionId) || null;
    const timelineGroups = await this.page.evaluate(() => [...document.querySelectorAll('#timeline > li')].map((li) => ({
      mediaSessionId: li.dataset.mediaSessionId || null,
      direction: li.dataset.direction || null,
      title: li.querySelector('.call-title').textContent,
      summary: li.querySelector('.call-summary').textContent,
      entries: [...li.querySelectorAll('.call-events > li .what')].map((x) => x.textContent),
    })));
    const reasons = await this.page.evaluate((id) => window.softphone.events
      .filter((e) => e.mediaSessionId === id && e.type.endsWith('.session-status') && e.data.reason)
      .map((e) => e.data.reason), mediaSessionId);
    return {
      reason: reasons.length ? reasons[reasons.length - 1] : null,
      timer: call && call.connectedAt ? { seconds: call.durationSeconds, text: call.timerText } : null,
      quality: call ? call.quality : null,
      levels: call ? { inputMax: call.levels.inputMax, outputMax: call.levels.outputMax } : null,
      tones: state.audio.tones,
      timelineGroups,
    };
  }

  /**
   * With --screenshots: the page at 320x640 and 1280x800, saved and checked for horizontal
   * overflow; the viewport is restored afterwards, and any overflow then fails the step.
   */
  async screenshots(name) {
    const { page, args } = this;
    if (!args.screenshots) return;
    fs.mkdirSync(args.screenshots, { recursive: true });
    const original = page.viewportSize();
    const problems = [];
    try {
      for (const [width, height] of [[320, 640], [1280, 800]]) {
        await page.setViewportSize({ width, height });
        await sleep(250); // a relayout, and a tick of the page's meters and timer
        const file = path.resolve(args.screenshots, `softphone-${name}-${width}.png`);
        await page.screenshot({ path: file, fullPage: true });
        const measured = await page.evaluate(measureOverflow);
        const overflow = measured.scrolls || measured.offenders.length > 0;
        emit('screenshot', { width, state: name, path: file, overflow, ...(overflow ? measured : {}) });
        if (overflow) {
          const who = measured.offenders.map((o) => `${o.selector} (right edge ${o.right} px)`).join(', ') || 'no single element';
          problems.push(`at ${width} px (${name}) the page is ${measured.scrollWidth} px wide for ${measured.clientWidth}: ${who}`);
        }
      }
    } finally {
      await page.setViewportSize(original);
    }
    if (problems.length) throw new StepError('screenshot', `horizontal overflow ${problems.join('; ')}`);
  }

  async sendTones(step) {
    for (const tone of this.args.dtmf) {
      const id = tone === '*' ? 'dtmf-star' : tone === '#' ? 'dtmf-hash' : `dtmf-${tone}`;
      await this.clickAndWait(step, id, (s, e, a) => document.getElementById('status').textContent === `Tone ${a} sent`, tone);
      await sleep(250);
    }
    if (this.args.dtmf) emit('dtmf', { tones: this.args.dtmf });
  }

  async outgoing() {
    const { page, args } = this;
    const dialled = (s) => Boolean(s.call && s.call.mediaSessionId) || Boolean(s.lastCall);
    if (args.echoButton) await this.clickAndWait('call', 'echo-test', dialled);
    else {
      await page.locator('#dial-number').fill(args.number);
      await this.clickAndWait('call', 'call', dialled);
    }
    const state = await this.state();
    if (!state.call) throw new StepError('call', `the call ended at once: ${JSON.stringify(state.lastCall)}`);
    const { mediaSessionId } = state.call;
    emit('calling', { mediaSessionId, receiverAddress: state.call.remoteAddress });
    if (args.echoButton && state.call.remoteAddress !== `tel:${args.number}`) {
      throw new StepError('call', `the Echo test button called ${state.call.remoteAddress}, not tel:${args.number}`);
    }
    let reached = await this.waitForStatus('connected', mediaSessionId, ['Ringing', 'Connected', ...FINAL]);
    if (reached === 'Ringing') {
      // The ringback starts once the page has handled the status (best effort: ringing can be short).
      await this.waitInPage('ringing', (s) => !s.call || s.call.status !== 'Ringing' || Boolean(s.audio.tone), null, 2000).catch(() => {});
      const now = await this.state();
      if (now.call && now.call.status === 'Ringing') emit('ringing', { mediaSessionId, tone: now.audio.tone });
      reached = await this.waitForStatus('connected', mediaSessionId, ['Connected', ...FINAL]);
    }
    if (reached !== 'Connected') throw new StepError('connected', `the call ended with ${reached} before it connected`);
    await this.waitInPage('connected', (s) => Boolean(s.call && s.call.answerApplied), null, args.timeoutMs);
    emit('connected', { mediaSessionId, tone: (await this.state()).audio.tone });
    await sleep(args.mediaSeconds * 1000);
    await this.screenshots('connected');
    const stats = await this.checkMedia('media');
    await this.sendTones('dtmf');
    if (args.hold) {
      await this.clickAndWait('hold', 'hold', (s) => s.call && s.call.status === 'Hold');
      await this.waitForStatus('hold', mediaSessionId, ['Hold']);
      emit('held', { mediaSessionId });
      await this.clickAndWait('resume', 'resume', (s) => s.call && s.call.status !== 'Hold');
      await this.waitForStatus('resume', mediaSessionId, ['Resume', 'Connected']);
      emit('resumed', { mediaSessionId });
    }
    await this.clickAndWait('hangup', 'hangup', (s) => !s.call || s.call.ending);
    emit('hung-up', { mediaSessionId });
    const end = await this.waitForStatus('terminated', mediaSessionId, FINAL);
    if (end !== 'Terminated') throw new StepError('terminated', `the call ended with ${end}, not Terminated`);
    await this.waitInPage('terminated', (s, e, a) => !s.call || s.call.mediaSessionId !== a, mediaSessionId, args.timeoutMs);
    const statuses = await this.statuses(mediaSessionId);
    emit('statuses', { mediaSessionId, statuses });
    return { mediaSessionId, statuses, stats, ...(await this.report(mediaSessionId)) };
  }

  async incoming() {
    const { args } = this;
    emit('ready', {});
    await this.waitInPage('invitation', (s) => Boolean(s.incoming), null, args.inviteTimeoutMs);
    const { incoming } = await this.state();
    const { mediaSessionId } = incoming;
    await this.waitInPage('invitation', (s) => !s.incoming || Boolean(s.audio.tone), null, 2000).catch(() => {});
    const { audio } = await this.state();
    emit('invited', { mediaSessionId, originatorAddress: incoming.originatorAddress, receiverAddress: incoming.receiverAddress, tone: audio.tone });
    if (args.ringOnly) {
      const end = await this.waitForStatus('session-end', mediaSessionId, FINAL, args.endTimeoutMs);
      await this.waitInPage('session-end', (s, e, a) => !s.incoming || s.incoming.mediaSessionId !== a, mediaSessionId, args.timeoutMs);
      const statuses = await this.statuses(mediaSessionId);
      const report = await this.report(mediaSessionId);
      const lastStatus = statuses[statuses.length - 1];
      emit('session-ended', { mediaSessionId, status: end, reason: report.reason, tone: (await this.state()).audio.tone });
      if (args.expectStatus && lastStatus !== args.expectStatus) {
        throw new StepError('session-end', `the session ended with ${lastStatus}${report.reason ? ` (${report.reason})` : ''}, not ${args.expectStatus}; statuses ${JSON.stringify(statuses)}`);
      }
      emit('statuses', { mediaSessionId, statuses });
      return { mediaSessionId, statuses, stats: null, ...report };
    }
    if (args.decline) {
      await this.clickAndWait('decline', 'decline', (s) => !s.incoming);
      const end = await this.waitForStatus('declined', mediaSessionId, FINAL);
      if (end !== 'Declined') throw new StepError('declined', `the call ended with ${end}, not Declined`);
      const statuses = await this.statuses(mediaSessionId);
      emit('declined', { mediaSessionId });
      emit('statuses', { mediaSessionId, statuses });
      return { mediaSessionId, statuses, stats: null, ...(await this.report(mediaSessionId)) };
    }
    if (args.answerDelayMs) {
      await sleep(args.answerDelayMs);
      const still = await this.state();
      if (!still.incoming || still.incoming.mediaSessionId !== mediaSessionId) {
        throw new StepError('answer', `the call ended before it was answered: ${JSON.stringify(await this.statuses(mediaSessionId))}`);
      }
    }
    await this.clickAndWait('answer', 'answer', (s, e, a) => Boolean(s.call && s.call.mediaSessionId === a && s.call.status !== 'Initial')
      || Boolean(s.lastCall && s.lastCall.mediaSessionId === a), mediaSessionId);
    const reached = await this.waitForStatus('connected', mediaSessionId, ['Connected', ...FINAL]);
    if (reached !== 'Connected') throw new StepError('connected', `the call ended with ${reached} before it connected`);
    emit('connected', { mediaSessionId, tone: (await this.state()).audio.tone });
    await this.screenshots('connected');
    const stats = await this.checkMedia('media');
    await this.sendTones('dtmf');
    if (args.localHangup) {
      await this.clickAndWait('hangup', 'hangup', (s) => !s.call || s.call.ending);
      emit('hung-up', { mediaSessionId });
    }
    const end = await this.waitForStatus('terminated', mediaSessionId, FINAL, args.endTimeoutMs);
    if (end !== 'Terminated') throw new StepError('terminated', `the call ended with ${end}, not Terminated`);
    await this.waitInPage('terminated', (s, e, a) => !s.call || s.call.mediaSessionId !== a, mediaSessionId, args.timeoutMs);
    const statuses = await this.statuses(mediaSessionId);
    emit('terminated', { mediaSessionId });
    emit('statuses', { mediaSessionId, statuses });
    return { mediaSessionId, statuses, stats, ...(await this.report(mediaSessionId)) };
  }

  /** Hangs up a call still in progress, unsubscribes (deleting the relay channel), unregisters. */
  async cleanup() {
    const state = await this.state();
    if (state.call && state.call.mediaSessionId && !state.call.ending) {
      await this.clickAndWait('cleanup', 'hangup', (s) => !s.call || s.call.ending).catch(() => {});
    }
    if (state.subscription) await this.clickAndWait('cleanup', 'unsubscribe', (s) => !s.subscription && !s.relay);
    if (state.registration) await this.clickAndWait('cleanup', 'unregister', (s) => !s.registration);
    emit('cleaned-up', {});
  }
}

/**
 * Runs in the page: whether it scrolls sideways, and the innermost elements that stick out past
 * the right edge (ignoring what a scrolling or clipping ancestor keeps inside it).
 */
function measureOverflow() {
  const root = document.documentElement;
  const width = root.clientWidth;
  const name = (el) => {
    let text = el.tagName.toLowerCase();
    if (el.id) return `${text}#${el.id}`;
    if (el.classList.length) text += `.${[...el.classList].join('.')}`;
    return text;
  };
  const selector = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 4; e = e.parentElement) {
      parts.unshift(name(e));
      if (e.id) break;
    }
    return parts.join(' > ');
  };
  const clipped = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible' && a.getBoundingClientRect().right <= width + 0.5) return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if ((r.width === 0 && r.height === 0) || r.right <= width + 0.5 || clipped(el)) continue;
    out.push({ el, right: Math.round(r.right) });
  }
  const innermost = out.filter((o) => !out.some((p) => p !== o && o.el.contains(p.el)));
  return {
    scrolls: root.scrollWidth > root.clientWidth,
    scrollWidth: root.scrollWidth,
    clientWidth: root.clientWidth,
    offenders: innermost.slice(0, 5).map((o) => ({ selector: selector(o.el), right: o.right })),
  };
}

main();
