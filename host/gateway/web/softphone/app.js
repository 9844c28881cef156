// The browser softphone: the Device Application of the CAMARA WebRTC flows, served by the gateway
// at /softphone/ (same origin as the APIs). Plain JavaScript, no build step, no third-party code.
//
//  1. Sign in: OAuth 2.0 authorization code + PKCE (S256) against the gateway's provider.
//  2. Register the device (webrtc-registration), renewed before it expires.
//  3. A Notification Relay channel (WebSocket) and a webrtc-events subscription whose sink is it.
//  4./5. Outgoing and incoming calls (webrtc-call-handling); the SDP answer of an outgoing call
//     and the offer of an incoming one arrive as CloudEvents through the relay.
//  6. Hold, resume, DTMF, hang up; a call timer, level meters, the quality line, ringback and
//     ringtone, the choice of microphone and speaker (audio.js, quality.js).
//  7. A timeline of every CloudEvent, grouped by call (timeline.js).
//
// For tests: window.softphone = { state, events, stats(), lastStats }.
import {
  LevelMeter, canChooseSpeaker, listDevices, setTone, toneState, unlock, useSpeaker,
} from './audio.js';
import { describeQuality, readQuality } from './quality.js';
import {
  STATUS_TEXT, addTimelineEntry, displayAddress, summarizeTimelineGroup,
} from './timeline.js';

(() => {
  const ORIGIN = window.location.origin;
  const REDIRECT_URI = `${ORIGIN}/softphone/`;
  const CLIENT_ID = 'softphone';
  const DISCOVERY_URL = `${ORIGIN}/oauth/.well-known/openid-configuration`;
  const SCOPES = [
    'openid',
    'webrtc-registration:sessions:create',
    'webrtc-registration:sessions:read',
    'webrtc-registration:sessions:write',
    'webrtc-registration:sessions:delete',
    'webrtc-call-handling:sessions:create',
    'webrtc-call-handling:sessions:read',
    'webrtc-call-handling:sessions:write',
    'webrtc-call-handling:sessions:delete',
    'webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create',
    'webrtc-events:org.camaraproject.webrtc-events.v0.session-invitation:create',
    'webrtc-events:org.camaraproject.webrtc-events.v0.registration-ends:create',
    'webrtc-events:read',
    'webrtc-events:update',
    'webrtc-events:delete',
  ].join(' ');
  const REGISTRATION_API = '/webrtc-registration/v0.3';
  const CALLS_API = '/webrtc-call-handling/v0.3';
  const EVENTS_API = '/webrtc-events/v0.2';
  const RELAY_API = '/relay';
  const SESSION_STATUS = 'org.camaraproject.webrtc-events.v0.session-status';
  const SESSION_INVITATION = 'org.camaraproject.webrtc-events.v0.session-invitation';
  const REGISTRATION_ENDS = 'org.camaraproject.webrtc-events.v0.registration-ends';
  const SUBSCRIPTION_ENDED = 'org.camaraproject.webrtc-events.v0.subscription-ended';
  const SUBSCRIBED_TYPES = [SESSION_STATUS, SESSION_INVITATION, REGISTRATION_ENDS];
  /** Session statuses after which nothing more happens to a call (the gateway's list). */
  const FINAL_STATUSES = new Set([
    'Terminated', 'SessionCancelled', 'Declined', 'Failed', 'NoAnswer', 'NotReachable', 'Busy',
  ]);
  const PKCE_KEY = 'softphone.pkce';
  const DEVICE_KEY = 'softphone.deviceId';
  const PING_INTERVAL_MS = 20_000;
  const ICE_GATHERING_TIMEOUT_MS = 5_000;
  const RELAY_READY_TIMEOUT_MS = 10_000;
  const HANGUP_CONFIRM_TIMEOUT_MS = 10_000;
  /** The gateway's built-in test lines (embedded defaults): one echoes the caller, one plays a tone. */
  const TEST_NUMBERS = Object.freeze({ echo: '+818000000900', tone: '+818000000901' });
  const MICROPHONE_KEY = 'softphone.microphone';
  const SPEAKER_KEY = 'softphone.speaker';
  const METER_INTERVAL_MS = 100;
  const QUALITY_INTERVAL_MS = 1000;
  /** Statuses of a call whose media is up: the timer runs from the first of them. */
  const ESTABLISHED = new Set(['Connected', 'Hold', 'Resume']);

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  const $ = (id) => document.getElementById(id);

  function uuid() {
    if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function base64url(bytes) {
    let text = '';
    for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
    return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function randomString(byteCount) {
    return base64url(crypto.getRandomValues(new Uint8Array(byteCount)));
  }

  /** The payload of a JWT, for display only (the gateway verifies tokens, not this page). */
  function jwtPayload(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const padded = part + '='.repeat((4 - (part.length % 4)) % 4);
      const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return {};
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** The CAMARA error of a failed call, or anything else thrown. */
  class ApiError extends Error {
    constructor(status, code, message, correlator) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.code = code;
      this.correlator = correlator;
    }
  }

  function describeError(e) {
    if (e instanceof ApiError) {
      const http = e.status ? `${e.status} ` : '';
      return `${http}${e.code}: ${e.message}`;
    }
    return e && e.message ? e.message : String(e);
  }

  // ---------------------------------------------------------------------------------------------
  // State

  let deviceId = localStorage.getItem(DEVICE_KEY);
  if (!deviceId || !/^[0-9a-f-]{36}$/i.test(deviceId)) {
    deviceId = uuid();
    localStorage.setItem(DEVICE_KEY, deviceId);
  }

  const auth = {
    metadata: null,
    accessToken: null,
    refreshToken: null,
    expiresAt: 0, // ms since the epoch
    lifetime: 0, // ms, as issued
    claims: {},
    refreshTimer: null,
    refreshing: null, // the promise of a refresh in flight
  };
  const app = {
    registration: null, // { registrationId, expiresAt, phoneNumber }
    registrationTimer: null,
    channel: null, // the live RelayChannel
    subscription: null, // { id, expiresAt, channelId }
    subscriptionTimer: null,
    call: null, // see newCall()
    incoming: null, // { mediaSessionId, originatorAddress, receiverAddress, offerSdp }
    lastCall: null,
    busy: new Set(), // actions in progress: their buttons stay disabled
    seenEvents: new Set(), // `${source} ${id}` of every CloudEvent handled
    retiring: new Set(), // ids of the subscriptions being deleted by this page
    earlyEvents: [], // session events that came before the POST /sessions answer
    devices: { inputs: 0, outputs: 0 },
  };
  /** Every CloudEvent received, in arrival order. */
  const events = [];
  let lastStats = { packetsSent: 0, packetsReceived: 0, bytesSent: 0, bytesReceived: 0 };

  // ---------------------------------------------------------------------------------------------
  // Status region

  function setStatus(text, kind = 'info') {
    const el = $('status');
    el.textContent = text;
    el.dataset.kind = kind;
    (kind === 'error' ? console.warn : console.info)(`[softphone] ${text}`);
  }

  /** Runs a user action: its button stays disabled meanwhile, and a failure is shown. */
  async function action(name, work) {
    unlock();
    if (app.busy.has(name)) return;
    app.busy.add(name);
    render();
    try {
      await work();
    } catch (e) {
      setStatus(`${name} failed: ${describeError(e)}`, 'error');
    } finally {
      app.busy.delete(name);
      render();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // HTTP

  /**
   * One API call, with `x-correlator` and the bearer token. Resolves with the JSON body (or null);
   * rejects with an ApiError carrying the CAMARA `{status, code, message}` of the answer.
   */
  async function api(method, path, { body, headers = {}, authenticated = true, retried = false } = {}) {
    const correlator = uuid();
    const h = { 'x-correlator': correlator, accept: 'application/json', ...headers };
    if (authenticated) {
      await freshToken();
      h.authorization = `Bearer ${auth.accessToken}`;
    }
    if (body !== undefined) h['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new ApiError(0, 'NETWORK_ERROR', `${method} ${path}: ${e.message}`, correlator);
    }
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (response.status === 401 && authenticated && !retried && auth.refreshToken) {
      // The token may have been revoked or have expired early: one refresh, one retry.
      await refreshTokens();
      return api(method, path, { body, headers, authenticated, retried: true });
    }
    if (!response.ok) {
      const code = (json && json.code) || `HTTP_${response.status}`;
      const message = (json && json.message) || text.slice(0, 300) || response.statusText;
      throw new ApiError(response.status, code, message, correlator);
    }
    return json;
  }

  // ---------------------------------------------------------------------------------------------
  // 1. Sign in: authorization code + PKCE

  async function discover() {
    if (auth.metadata) return auth.metadata;
    const metadata = await api('GET', DISCOVERY_URL, { authenticated: false });
    if (!metadata || !metadata.authorization_endpoint || !metadata.token_endpoint) {
      throw new Error('the OAuth discovery document has no authorization_endpoint or token_endpoint');
    }
    auth.metadata = metadata;
    return metadata;
  }

  async function signIn() {
    if (!window.isSecureContext || !crypto.subtle) {
      throw new Error('this page needs a secure context (HTTPS, or http://localhost) for PKCE and the microphone');
    }
    const metadata = await discover();
    const verifier = randomString(32); // 43 characters
    const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
    const state = randomString(16);
    const nonce = randomString(16);
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({
      verifier, state, nonce, issuer: metadata.issuer, tokenEndpoint: metadata.token_endpoint,
    }));
    const url = new URL(metadata.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT_URI,
      scope: SCOPES,
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    }).toString();
    setStatus('Redirecting to the sign-in page…');
    window.location.assign(url.href);
  }

  /** Back from the provider with ?code=&state= (or ?error=). */
  async function completeSignIn(params) {
    const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || 'null');
    sessionStorage.removeItem(PKCE_KEY);
    // The code must not stay in the address bar or the history.
    window.history.replaceState(null, '', REDIRECT_URI);
    if (params.get('error')) {
      const description = params.get('error_description');
      throw new ApiError(0, params.get('error'), description || 'the sign-in was not completed');
    }
    if (!saved || !params.get('state') || params.get('state') !== saved.state) {
      throw new Error('the sign-in answer does not match the request sent (state); sign in again');
    }
    if (params.get('iss') && saved.issuer && params.get('iss') !== saved.issuer) {
      throw new Error('the sign-in answer comes from another issuer (iss); sign in again');
    }
    const tokens = await tokenRequest(saved.tokenEndpoint, {
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: REDIRECT_URI,
      client_id: CLIENT_ID,
      code_verifier: saved.verifier,
    });
    if (tokens.id_token) {
      const idClaims = jwtPayload(tokens.id_token);
      if (idClaims.nonce !== undefined && idClaims.nonce !== saved.nonce) {
        throw new Error('the ID token does not carry the nonce of the sign-in; sign in again');
      }
    }
    acceptTokens(tokens);
    setStatus(`Signed in as ${auth.claims.phone_number || auth.claims.sub || 'unknown'}`);
  }

  async function tokenRequest(endpoint, form) {
    let response;
    try {
      response = await fetch(endpoint, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
          'x-correlator': uuid(),
        },
        body: new URLSearchParams(form).toString(),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new ApiError(0, 'NETWORK_ERROR', `token endpoint: ${e.message}`);
    }
    const json = await response.json().catch(() => ({}));
    if (!response.ok || !json.access_token) {
      throw new ApiError(response.status, json.error || `HTTP_${response.status}`,
        json.error_description || 'the token endpoint refused the request');
    }
    return json;
  }

  function acceptTokens(tokens) {
    auth.accessToken = tokens.access_token;
    if (tokens.refresh_token) auth.refreshToken = tokens.refresh_token; // rotated on each use
    const lifetime = Math.max(1, Number(tokens.expires_in) || 300) * 1000;
    auth.expiresAt = Date.now() + lifetime;
    auth.lifetime = lifetime;
    auth.claims = jwtPayload(tokens.access_token);
    clearTimeout(auth.refreshTimer);
    if (auth.refreshToken) {
      // A minute before expiry, or at 80 % of a short lifetime.
      const delay = Math.max(1000, lifetime > 120_000 ? lifetime - 60_000 : lifetime * 0.8);
      auth.refreshTimer = setTimeout(() => {
        refreshTokens().catch((e) => setStatus(`Token refresh failed: ${describeError(e)}; sign in again`, 'error'));
      }, delay);
    }
    render();
  }

  /** Refreshes the tokens (grant_type=refresh_token); concurrent callers share one request. */
  function refreshTokens() {
    if (!auth.refreshing) {
      auth.refreshing = (async () => {
        if (!auth.refreshToken) throw new Error('no refresh token: sign in again');
        const metadata = await discover();
        const tokens = await tokenRequest(metadata.token_endpoint, {
          grant_type: 'refresh_token',
          refresh_token: auth.refreshToken,
          client_id: CLIENT_ID,
        });
        acceptTokens(tokens);
      })().finally(() => {
        auth.refreshing = null;
      });
    }
    return auth.refreshing;
  }

  /** A token that stays valid for a while (30 s, or a fifth of a short lifetime). */
  async function freshToken() {
    if (!auth.accessToken) throw new ApiError(401, 'UNAUTHENTICATED', 'not signed in');
    const margin = Math.min(30_000, auth.lifetime * 0.2);
    if (auth.expiresAt - Date.now() < margin && auth.refreshToken) await refreshTokens();
  }

  async function signOut() {
    await teardown();
    clearTimeout(auth.refreshTimer);
    Object.assign(auth, { accessToken: null, refreshToken: null, expiresAt: 0, claims: {}, refreshTimer: null });
    setStatus('Signed out');
  }

  /** Ends everything this page holds at the gateway: call, subscription, channel, registration. */
  async function teardown() {
    const errors = [];
    const attempt = async (work) => {
      try {
        await work();
      } catch (e) {
        errors.push(describeError(e));
      }
    };
    if (app.call) await attempt(() => hangup());
    if (app.incoming) await attempt(() => decline());
    if (app.subscription || app.channel) await attempt(() => unsubscribe());
    if (app.registration) await attempt(() => unregister());
    if (errors.length) throw new Error(errors.join('; '));
  }

  function phoneNumber() {
    return (app.registration && app.registration.phoneNumber) || auth.claims.phone_number || null;
  }

  // ---------------------------------------------------------------------------------------------
  // 2. Registration

  async function register() {
    let registration;
    try {
      registration = await api('POST', `${REGISTRATION_API}/sessions`, { body: { deviceId } });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 409)) throw e;
      // This device is registered already (a reload): carry on with that registration.
      const found = await api('GET', `${REGISTRATION_API}/sessions?deviceId=${encodeURIComponent(deviceId)}`);
      if (!Array.isArray(found) || !found.length) throw e;
      registration = found[0];
    }
    acceptRegistration(registration);
    setStatus(`Registered ${app.registration.phoneNumber} until ${new Date(app.registration.expiresAt).toLocaleString()}`);
  }

  function acceptRegistration(r) {
    app.registration = {
      registrationId: r.registrationId,
      expiresAt: r.expiresAt,
      phoneNumber: (r.regInfo && r.regInfo.phoneNumber) || auth.claims.phone_number,
    };
    clearTimeout(app.registrationTimer);
    const remaining = Date.parse(r.expiresAt) - Date.now();
    if (Number.isFinite(remaining)) {
      const delay = Math.max(5_000, remaining > 300_000 ? remaining - 60_000 : remaining * 0.8);
      app.registrationTimer = setTimeout(() => {
        action('Renew registration', renewRegistration);
      }, delay);
    }
    render();
  }

  async function renewRegistration() {
    if (!app.registration) return;
    try {
      const r = await api('PUT', `${REGISTRATION_API}/sessions/${encodeURIComponent(app.registration.registrationId)}`,
        { body: {} });
      acceptRegistration(r);
      setStatus(`Registration renewed until ${new Date(r.expiresAt).toLocaleString()}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) dropRegistration();
      throw e;
    }
  }

  async function unregister() {
    if (!app.registration) return;
    const id = app.registration.registrationId;
    try {
      await api('DELETE', `${REGISTRATION_API}/sessions/${encodeURIComponent(id)}`);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    dropRegistration();
    setStatus('Unregistered');
  }

  function dropRegistration() {
    clearTimeout(app.registrationTimer);
    app.registration = null;
    render();
  }

  // ---------------------------------------------------------------------------------------------
  // 3. Relay channel (WebSocket) and subscription

  /** One Notification Relay channel and its WebSocket, reconnected with backoff. */
  class RelayChannel {
    constructor(info) {
      this.info = info;
      this.ws = null;
      this.ready = false;
      this.closed = false; // closed on purpose, or ended by the relay: no reconnection
      this.attempt = 0;
      this.pingTimer = null;
      this.reconnectTimer = null;
      this.readyWaiters = [];
      this.lastError = null;
      this.inFlight = 0; // events received and not yet acknowledged
    }

    get id() {
      return this.info.channelId;
    }

    /** Resolves once the relay says `ready`. */
    connect() {
      this.open();
      return this.whenReady(RELAY_READY_TIMEOUT_MS);
    }

    whenReady(timeoutMs) {
      if (this.ready) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the relay WebSocket was not ready within ${timeoutMs} ms${this.lastError ? ` (${this.lastError})` : ''}`)), timeoutMs);
        this.readyWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }

    open() {
      if (this.closed) return;
      const url = new URL(this.info.websocketUrl, window.location.href);
      url.searchParams.set('token', this.info.websocketToken);
      const ws = new WebSocket(url.href);
      this.ws = ws;
      ws.onmessage = (message) => this.onFrame(message.data);
      ws.onerror = () => {
        this.lastError = 'WebSocket error';
      };
      ws.onclose = (close) => this.onClose(ws, close);
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: 'ping' }), PING_INTERVAL_MS);
      render();
    }

    send(frame) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
    }

    onFrame(data) {
      let frame;
      try {
        frame = JSON.parse(data);
      } catch {
        console.warn('[softphone] unintelligible relay frame', data);
        return;
      }
      if (frame.type === 'ready') {
        this.ready = true;
        this.attempt = 0;
        this.lastError = null;
        for (const wake of this.readyWaiters.splice(0)) wake();
        render();
      } else if (frame.type === 'event') {
        // Handled in order, one at a time; acknowledged once handled (also when handling failed:
        // a redelivery would fail the same way).
        this.inFlight += 1;
        queueEvent(frame.event).finally(() => {
          this.send({ type: 'ack', deliveryId: frame.deliveryId });
          this.inFlight -= 1;
        });
      } else if (frame.type !== 'pong') {
        console.info('[softphone] relay frame ignored', frame);
      }
    }

    onClose(ws, close) {
      if (ws !== this.ws) return;
      clearInterval(this.pingTimer);
      this.ready = false;
      this.lastError = `closed ${close.code}${close.reason ? ` ${close.reason}` : ''}`;
      // 4000 replaced by a newer socket, 4001 channel deleted, 4002 channel expired.
      if ([4000, 4001, 4002].includes(close.code)) {
        this.closed = true;
        if (app.channel === this) {
          setStatus(`The relay closed the event channel (${this.lastError}); subscribe again`, 'error');
        }
      }
      if (!this.closed) {
        const delay = Math.min(30_000, 1000 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
        this.attempt += 1;
        this.reconnectTimer = setTimeout(() => this.open(), delay);
      }
      render();
    }

    close() {
      this.closed = true;
      clearInterval(this.pingTimer);
      clearTimeout(this.reconnectTimer);
      if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, 'closed by the device');
      render();
    }

    describe() {
      if (this.ready) return 'connected';
      if (this.closed) return `closed (${this.lastError || 'by the device'})`;
      return this.attempt ? `reconnecting (attempt ${this.attempt}${this.lastError ? `, ${this.lastError}` : ''})` : 'connecting';
    }
  }

  async function openChannel() {
    const info = await api('POST', `${RELAY_API}/channels`);
    const channel = new RelayChannel(info);
    try {
      await channel.connect();
    } catch (e) {
      await closeChannel(channel);
      throw e;
    }
    return channel;
  }

  async function closeChannel(channel) {
    // The events it delivered are acknowledged first, or the relay would wait for them.
    await waitFor(() => channel.inFlight === 0, 2000);
    channel.close();
    try {
      await api('DELETE', `${RELAY_API}/channels/${encodeURIComponent(channel.id)}`);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) console.warn('[softphone] channel not deleted', e);
    }
  }

  /** A new channel and a subscription on it; an existing subscription is replaced afterwards. */
  async function subscribe() {
    const channel = await openChannel();
    let created;
    try {
      const config = { subscriptionDetail: { deviceId } };
      // The sink credential expires with the channel: so does the subscription.
      if (channel.info.expiresAt) config.subscriptionExpireTime = channel.info.expiresAt;
      created = await api('POST', `${EVENTS_API}/subscriptions`, {
        body: {
          protocol: 'HTTP',
          sink: channel.info.sinkUrl,
          sinkCredential: channel.info.sinkCredential,
          types: SUBSCRIBED_TYPES,
          config,
        },
      });
    } catch (e) {
      await closeChannel(channel);
      throw e;
    }
    const old = { subscription: app.subscription, channel: app.channel };
    app.channel = channel;
    app.subscription = { id: created.id, expiresAt: created.expiresAt || null, channelId: channel.id };
    scheduleResubscribe(channel);
    render();
    setStatus('Subscribed to call and registration events');
    if (old.subscription || old.channel) await retire(old.subscription, old.channel);
  }

  function scheduleResubscribe(channel) {
    clearTimeout(app.subscriptionTimer);
    const remaining = Date.parse(channel.info.expiresAt) - Date.now();
    if (!Number.isFinite(remaining) || remaining > 2 ** 31 - 1) return;
    const delay = Math.max(10_000, remaining - Math.min(300_000, remaining * 0.2));
    app.subscriptionTimer = setTimeout(() => action('Renew subscription', subscribe), delay);
  }

  /** Deletes a subscription, waits briefly for its subscription-ended, then drops its channel. */
  async function retire(subscription, channel) {
    let failure = null;
    if (subscription) {
      app.retiring.add(subscription.id);
      try {
        await api('DELETE', `${EVENTS_API}/subscriptions/${encodeURIComponent(subscription.id)}`);
        await waitFor(() => events.some((e) => e.type === SUBSCRIPTION_ENDED && e.data.subscriptionId === subscription.id), 2000);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) failure = e;
      } finally {
        app.retiring.delete(subscription.id);
      }
    }
    if (channel) await closeChannel(channel);
    if (failure) throw failure;
  }

  async function unsubscribe() {
    clearTimeout(app.subscriptionTimer);
    const { subscription, channel } = app;
    try {
      await retire(subscription, channel);
    } finally {
      app.subscription = null;
      app.channel = null;
      render();
    }
    setStatus('Unsubscribed');
  }

  /** Polls `predicate` until it holds or `timeoutMs` passes (no error on timeout). */
  async function waitFor(predicate, timeoutMs) {
    const until = Date.now() + timeoutMs;
    while (!predicate() && Date.now() < until) await sleep(50);
    return predicate();
  }

  // ---------------------------------------------------------------------------------------------
  // Events

  let eventChain = Promise.resolve();

  /** Handles CloudEvents one at a time, in arrival order. */
  function queueEvent(event) {
    const run = eventChain.then(() => onCloudEvent(event));
    eventChain = run.catch(() => {});
    return run.catch((e) => setStatus(`An event could not be handled: ${describeError(e)}`, 'error'));
  }

  async function onCloudEvent(event) {
    if (!event || typeof event !== 'object') return;
    const key = `${event.source} ${event.id}`;
    if (app.seenEvents.has(key)) return; // a redelivery of an event already handled
    app.seenEvents.add(key);
    const data = (event.data && typeof event.data === 'object') ? event.data : {};
    const entry = {
      receivedAt: new Date().toISOString(),
      id: event.id,
      type: event.type,
      time: event.time || null,
      status: data.status || null,
      reason: data.reason || data.terminationReason || null,
      sequenceNumber: data.sequenceNumber ?? null,
      mediaSessionId: data.mediaSessionId || null,
      data,
      event,
    };
    events.push(entry);
    appendTimeline(entry);
    switch (event.type) {
      case SESSION_INVITATION:
        await onInvitation(data);
        break;
      case SESSION_STATUS:
        await onSessionStatus(data);
        break;
      case REGISTRATION_ENDS:
        if (app.registration && data.registrationId === app.registration.registrationId) {
          dropRegistration();
          setStatus(`The registration ended (${data.terminationReason || 'no reason given'}); register again`, 'error');
        }
        break;
      case SUBSCRIPTION_ENDED:
        // Ended by the gateway (expiry, ...); one this page deletes is retire()'s business.
        if (app.subscription && data.subscriptionId === app.subscription.id && !app.retiring.has(data.subscriptionId)) {
          clearTimeout(app.subscriptionTimer);
          const channel = app.channel;
          app.subscription = null;
          app.channel = null;
          if (channel) setTimeout(() => closeChannel(channel), 0); // after this event's ack
          setStatus(`The event subscription ended (${data.terminationReason || 'no reason given'}); subscribe again`, 'error');
        }
        break;
      default:
        break;
    }
    render();
  }

  function appendTimeline(entry) {
    addTimelineEntry(entry, phoneNumber());
    updateTimelineSummary(entry.mediaSessionId);
  }

  /** The duration of a call, in its timeline group once it is known. */
  function updateTimelineSummary(mediaSessionId) {
    let duration = null;
    if (app.call && app.call.mediaSessionId === mediaSessionId && app.call.connectedAt) duration = timerText(app.call);
    else if (app.lastCall && app.lastCall.mediaSessionId === mediaSessionId && app.lastCall.connectedAt) duration = app.lastCall.timerText;
    summarizeTimelineGroup(mediaSessionId, duration);
  }

  async function onInvitation(data) {
    if (!data.mediaSessionId || !data.offer || !data.offer.sdp) {
      setStatus('An incoming call came without an SDP offer; ignored', 'error');
      return;
    }
    if (app.call || app.incoming) {
      // One call at a time: a second caller is refused.
      setStatus(`Busy: declining the call from ${data.originatorAddress}`);
      await api('PUT', `${CALLS_API}/sessions/${encodeURIComponent(data.mediaSessionId)}/status`,
        { body: { status: 'Declined' } }).catch((e) => console.warn('[softphone] decline failed', e));
      return;
    }
    app.incoming = {
      mediaSessionId: data.mediaSessionId,
      originatorAddress: data.originatorAddress,
      receiverAddress: data.receiverAddress,
      offerSdp: data.offer.sdp,
    };
    render();
    setStatus(`Incoming call from ${data.originatorAddress}`);
    $('answer').focus();
  }

  async function onSessionStatus(data) {
    const id = data.mediaSessionId;
    if (app.incoming && app.incoming.mediaSessionId === id && FINAL_STATUSES.has(data.status)) {
      app.incoming = null;
      const why = data.reason ? `: ${data.reason}` : '';
      setStatus(`Call from ${displayAddress(data.originatorAddress)} ended before it was answered (${STATUS_TEXT[data.status] || data.status}${why})`);
      return;
    }
    const call = app.call;
    if (!call) return;
    if (!call.mediaSessionId) {
      // Still waiting for the answer to POST /sessions: kept until then.
      if (call.direction === 'outgoing') app.earlyEvents.push(data);
      return;
    }
    if (call.mediaSessionId !== id) return;
    await applyStatus(call, data);
  }

  async function applyStatus(call, data) {
    call.status = data.status;
    call.reason = data.reason || null;
    if (ESTABLISHED.has(data.status) && !call.connectedAt) call.connectedAt = Date.now();
    // The network's SDP answer, in the first event that has one (early media or Connected).
    if (call.direction === 'outgoing' && !call.answerApplied && data.answer && data.answer.sdp && call.pc) {
      call.answerApplied = true;
      try {
        await call.pc.setRemoteDescription({ type: 'answer', sdp: data.answer.sdp });
      } catch (e) {
        call.answerApplied = false;
        setStatus(`The SDP answer could not be used: ${describeError(e)}`, 'error');
      }
    }
    if (FINAL_STATUSES.has(data.status)) {
      await finishCall(call, data.status, data.reason);
    } else {
      setStatus(`Call ${call.direction === 'outgoing' ? 'to' : 'from'} ${call.remoteAddress}: ${data.status}`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // 4./5. Calls

  function newCall(direction, remoteAddress) {
    return {
      direction,
      remoteAddress,
      mediaSessionId: null,
      status: 'Creating',
      reason: null,
      pc: null,
      stream: null,
      sender: null,
      answerApplied: false,
      muted: false,
      ending: false,
      endTimer: null,
      startedAt: new Date().toISOString(),
      connectedAt: null, // ms since the epoch: the first established status
      endedAt: null, // ms since the epoch: media released
      remoteStream: null,
      meters: null, // { input, output } LevelMeters
      levels: { input: 0, output: 0, inputMax: 0, outputMax: 0 },
      reading: null, // the last getStats reading, to turn counters into rates
      quality: null,
      qualityUpdates: 0,
      sampling: false, // a getStats reading in flight
      timers: [], // the intervals of startCallClock()
    };
  }

  function normalizeAddress(input) {
    const text = input.trim();
    if (/^(tel|sip|urn):/i.test(text)) return text;
    const digits = text.replace(/[\s().-]/g, '');
    if (!/^\+?[0-9*#]+$/.test(digits)) throw new Error(`"${input}" is not a phone number or address`);
    return `tel:${digits}`;
  }

  async function microphone() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('this browser gives no microphone here (a secure context is needed)');
    }
    const chosen = $('microphone').value;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: chosen ? { deviceId: { exact: chosen } } : true, video: false })
        .catch((e) => {
          // The chosen microphone is gone (unplugged, another browser profile): the default one.
          if (chosen && e.name === 'OverconstrainedError') return navigator.mediaDevices.getUserMedia({ audio: true, video: false });
          throw e;
        });
      refreshDevices(); // labels are only given once a microphone was allowed
      return stream;
    } catch (e) {
      throw new Error(`no microphone: ${e.name}: ${e.message}`);
    }
  }

  function peerConnection(call) {
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    pc.ontrack = (e) => {
      const audio = $('remote-audio');
      call.remoteStream = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
      // Chromium feeds a remote stream to WebAudio only while a media element plays it too.
      audio.srcObject = call.remoteStream;
      audio.play().catch(() => {}); // autoplay may wait for a user gesture; the element still plays once allowed
      if (call.meters) {
        call.meters.output.close();
        call.meters.output = new LevelMeter(call.remoteStream);
      }
    };
    startCallClock(call);
    pc.onconnectionstatechange = () => {
      console.info(`[softphone] peer connection ${pc.connectionState}`);
      // Rates are measured from here: the first reading with media is the baseline.
      if (pc.connectionState === 'connected') sampleQuality(call);
      if (pc.connectionState === 'failed' && app.call === call) {
        setStatus('The media connection failed', 'error');
      }
      render();
    };
    pc.oniceconnectionstatechange = () => render();
    return pc;
  }

  /** No trickle ICE in this API: the SDP goes once every candidate is in it. */
  function iceGatheringComplete(pc) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        pc.removeEventListener('icecandidate', candidate);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === 'complete') done();
      };
      const candidate = (e) => {
        if (!e.candidate) done();
      };
      // With what was gathered so far, after a while (a host with an unreachable interface).
      const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
      pc.addEventListener('icegatheringstatechange', check);
      pc.addEventListener('icecandidate', candidate);
    });
  }

  function releaseMedia(call) {
    stopCallClock(call);
    if (call.connectedAt && !call.endedAt) call.endedAt = Date.now();
    if (call.stream) call.stream.getTracks().forEach((t) => t.stop());
    if (call.pc && call.pc.signalingState !== 'closed') call.pc.close();
  }

  // ---------------------------------------------------------------------------------------------
  // During a call: timer, level meters, quality line

  function durationSeconds(call) {
    if (!call.connectedAt) return 0;
    return Math.max(0, Math.floor(((call.endedAt || Date.now()) - call.connectedAt) / 1000));
  }

  function formatDuration(seconds) {
    const two = (n) => String(n).padStart(2, '0');
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    return `${h ? `${h}:${two(m)}` : two(m)}:${two(seconds % 60)}`;
  }

  function timerText(call) {
    return call && call.connectedAt ? formatDuration(durationSeconds(call)) : '--:--';
  }

  /** Meters and timer ten times a second, the quality line once a second, until media stops. */
  function startCallClock(call) {
    if (call.timers.length) return;
    call.meters = { input: new LevelMeter(call.stream), output: new LevelMeter(call.remoteStream) };
    call.timers.push(setInterval(() => tickMeters(call), METER_INTERVAL_MS));
    call.timers.push(setInterval(() => sampleQuality(call), QUALITY_INTERVAL_MS));
  }

  function stopCallClock(call) {
    call.timers.forEach(clearInterval);
    call.timers = [];
    if (call.meters) {
      call.meters.input.close();
      call.meters.output.close();
    }
    if (app.call === call || !app.call) {
      $('input-level').value = 0;
      $('output-level').value = 0;
    }
  }

  function tickMeters(call) {
    const levels = call.levels;
    levels.input = call.muted ? 0 : call.meters.input.level();
    levels.output = call.meters.output.level();
    levels.inputMax = Math.max(levels.inputMax, levels.input);
    levels.outputMax = Math.max(levels.outputMax, levels.output);
    if (app.call !== call) return;
    $('input-level').value = levels.input;
    $('output-level').value = levels.output;
    const timer = timerText(call);
    if ($('call-timer').textContent !== timer) $('call-timer').textContent = timer;
  }

  async function sampleQuality(call) {
    const pc = call.pc;
    if (!pc || pc.signalingState === 'closed' || call.sampling) return;
    call.sampling = true;
    try {
      const reading = await readQuality(pc, call.reading);
      if (pc.signalingState === 'closed') return;
      call.reading = reading;
      lastStats = counters(reading.totals);
      if (reading.quality.sendKbps !== null) {
        call.quality = reading.quality;
        call.qualityUpdates += 1;
      }
      if (app.call === call) $('quality-info').textContent = describeQuality(call.quality);
    } catch (e) {
      console.warn('[softphone] stats unavailable', e);
    } finally {
      call.sampling = false;
    }
  }

  const counters = (t) => ({ packetsSent: t.packetsSent, packetsReceived: t.packetsReceived, bytesSent: t.bytesSent, bytesReceived: t.bytesReceived });

  async function switchMicrophone() {
    const call = app.call;
    if (!call || !call.stream || call.ending) return;
    const stream = await microphone();
    const [track] = stream.getAudioTracks();
    track.enabled = !call.muted;
    if (call.sender) await call.sender.replaceTrack(track);
    call.stream.getTracks().forEach((t) => t.stop());
    call.stream = stream;
    if (call.meters) {
      call.meters.input.close();
      call.meters.input = new LevelMeter(stream);
    }
    setStatus(`Microphone: ${$('microphone').selectedOptions[0].textContent}`);
  }

  // ---------------------------------------------------------------------------------------------
  // Audio devices

  function fillDevices(select, devices, wanted) {
    // The first option, the system default, stays; Chromium's own "default" entry would repeat it.
    while (select.options.length > 1) select.remove(1);
    for (const d of devices) {
      if (d.deviceId === 'default') continue;
      select.add(new Option(d.label, d.deviceId));
    }
    select.value = [...select.options].some((o) => o.value === wanted) ? wanted : '';
  }

  async function refreshDevices() {
    const { inputs, outputs } = await listDevices();
    app.devices = { inputs: inputs.length, outputs: outputs.length };
    fillDevices($('microphone'), inputs, localStorage.getItem(MICROPHONE_KEY) || '');
    if (canChooseSpeaker) fillDevices($('speaker'), outputs, localStorage.getItem(SPEAKER_KEY) || '');
  }

  async function chooseSpeaker() {
    const deviceId = $('speaker').value;
    await useSpeaker($('remote-audio'), deviceId);
    localStorage.setItem(SPEAKER_KEY, deviceId);
    setStatus(`Speaker: ${$('speaker').selectedOptions[0].textContent}`);
  }

  async function placeCall() {
    if (!app.registration) throw new Error('register first');
    if (!app.subscription) throw new Error('subscribe to events first: the answer arrives as an event');
    const receiverAddress = normalizeAddress($('dial-number').value);
    const me = phoneNumber();
    if (!me) throw new Error('the access token carries no phone number');
    const call = newCall('outgoing', receiverAddress);
    app.call = call;
    app.earlyEvents = [];
    render();
    try {
      setStatus(`Calling ${receiverAddress}…`);
      call.stream = await microphone();
      call.pc = peerConnection(call);
      const [track] = call.stream.getAudioTracks();
      call.sender = call.pc.addTrack(track, call.stream);
      await call.pc.setLocalDescription(await call.pc.createOffer());
      await iceGatheringComplete(call.pc);
      const created = await api('POST', `${CALLS_API}/sessions`, {
        headers: { registrationId: app.registration.registrationId },
        body: {
          originatorAddress: me.startsWith('tel:') ? me : `tel:${me}`,
          receiverAddress,
          offer: { sdp: call.pc.localDescription.sdp },
        },
      });
      call.mediaSessionId = created.mediaSessionId;
      if (app.call === call && call.status === 'Creating') call.status = created.status || 'Initial';
    } catch (e) {
      if (app.call === call) app.call = null;
      releaseMedia(call);
      app.earlyEvents = [];
      throw e;
    }
    // Events of this call that arrived before its id was known.
    const early = app.earlyEvents.filter((d) => d.mediaSessionId === call.mediaSessionId);
    app.earlyEvents = [];
    for (const data of early) {
      if (app.call === call) await applyStatus(call, data);
    }
    if (app.call === call && !FINAL_STATUSES.has(call.status)) {
      setStatus(`Calling ${receiverAddress}: ${call.status}`);
    }
    render();
  }

  async function answer() {
    const incoming = app.incoming;
    if (!incoming) return;
    app.incoming = null;
    const call = newCall('incoming', incoming.originatorAddress);
    call.mediaSessionId = incoming.mediaSessionId;
    call.status = 'Initial';
    app.call = call;
    render();
    try {
      setStatus(`Answering ${incoming.originatorAddress}…`);
      call.stream = await microphone();
      call.pc = peerConnection(call);
      await call.pc.setRemoteDescription({ type: 'offer', sdp: incoming.offerSdp });
      const [track] = call.stream.getAudioTracks();
      call.sender = call.pc.addTrack(track, call.stream);
      await call.pc.setLocalDescription(await call.pc.createAnswer());
      await iceGatheringComplete(call.pc);
      const session = await api('PUT', `${CALLS_API}/sessions/${encodeURIComponent(call.mediaSessionId)}/status`, {
        body: { status: 'Connected', answer: { sdp: call.pc.localDescription.sdp } },
      });
      if (app.call === call && session && session.status && !FINAL_STATUSES.has(call.status)) {
        call.status = session.status;
        if (ESTABLISHED.has(call.status) && !call.connectedAt) call.connectedAt = Date.now();
      }
      setStatus(`In a call with ${incoming.originatorAddress}`);
    } catch (e) {
      if (app.call === call) {
        app.call = null;
        releaseMedia(call);
      }
      throw e;
    }
  }

  async function decline() {
    const incoming = app.incoming;
    if (!incoming) return;
    app.incoming = null;
    render();
    await api('PUT', `${CALLS_API}/sessions/${encodeURIComponent(incoming.mediaSessionId)}/status`,
      { body: { status: 'Declined' } });
    setStatus(`Declined the call from ${incoming.originatorAddress}`);
  }

  async function hangup() {
    const call = app.call;
    if (!call) return;
    if (!call.mediaSessionId) throw new Error('the call is still being set up');
    try {
      await api('DELETE', `${CALLS_API}/sessions/${encodeURIComponent(call.mediaSessionId)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        await finishCall(call, 'Terminated', 'the gateway no longer knows the call');
        return;
      }
      throw e;
    }
    if (app.call !== call) return; // the final status came while DELETE was answered
    // Media stops now; the call ends when the gateway's final status arrives (or after a while).
    call.ending = true;
    await captureStats(call);
    releaseMedia(call);
    call.endTimer = setTimeout(() => {
      if (app.call === call) finishCall(call, call.status, 'no final status received after hanging up');
    }, HANGUP_CONFIRM_TIMEOUT_MS);
    setStatus('Hanging up…');
    render();
  }

  async function finishCall(call, status, reason) {
    clearTimeout(call.endTimer);
    if (call.pc && call.pc.signalingState !== 'closed') await captureStats(call);
    releaseMedia(call);
    call.status = status;
    call.reason = reason || null;
    app.lastCall = snapshotCall(call);
    if (app.call === call) app.call = null;
    $('remote-audio').srcObject = null;
    setStatus(`Call ${call.direction === 'outgoing' ? 'to' : 'from'} ${call.remoteAddress} ended: ${status}${reason ? ` (${reason})` : ''}`);
    updateTimelineSummary(call.mediaSessionId);
    render();
  }

  async function setHold(hold) {
    const call = app.call;
    if (!call || !call.mediaSessionId) return;
    const status = hold ? 'Hold' : 'Resume';
    const session = await api('PUT', `${CALLS_API}/sessions/${encodeURIComponent(call.mediaSessionId)}/status`,
      { body: { status } });
    if (app.call === call && session && session.status && !FINAL_STATUSES.has(call.status)) call.status = session.status;
    setStatus(hold ? 'Call on hold' : 'Call resumed');
  }

  function toggleMute() {
    const call = app.call;
    if (!call || !call.stream) return;
    call.muted = !call.muted;
    call.stream.getAudioTracks().forEach((t) => { t.enabled = !call.muted; });
    setStatus(call.muted ? 'Microphone muted' : 'Microphone on');
    render();
  }

  function sendTone(tone) {
    const call = app.call;
    const dtmf = call && call.sender && call.sender.dtmf;
    if (!dtmf) throw new Error('no call to send tones on');
    if (dtmf.canInsertDTMF === false) throw new Error('the call does not accept DTMF tones (telephone-event)');
    dtmf.insertDTMF(dtmf.toneBuffer + tone, 100, 70);
    setStatus(`Tone ${tone} sent`);
  }

  // ---------------------------------------------------------------------------------------------
  // Statistics (tests read them through window.softphone.stats())

  async function captureStats(call) {
    if (!call.pc || call.pc.signalingState === 'closed') return lastStats;
    try {
      lastStats = counters((await readQuality(call.pc, null)).totals);
    } catch (e) {
      console.warn('[softphone] stats unavailable', e);
    }
    return lastStats;
  }

  /** Audio packet and byte counters of the current call, or of the last one once it ended. */
  async function stats() {
    const call = app.call;
    if (call && call.pc && call.pc.signalingState !== 'closed') return captureStats(call);
    return { ...lastStats };
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering

  function snapshotCall(call) {
    if (!call) return null;
    return {
      mediaSessionId: call.mediaSessionId,
      direction: call.direction,
      remoteAddress: call.remoteAddress,
      status: call.status,
      reason: call.reason,
      answerApplied: call.answerApplied,
      muted: call.muted,
      ending: call.ending,
      startedAt: call.startedAt,
      connectedAt: call.connectedAt ? new Date(call.connectedAt).toISOString() : null,
      durationSeconds: durationSeconds(call),
      timerText: timerText(call),
      quality: call.quality ? { ...call.quality, text: describeQuality(call.quality), updates: call.qualityUpdates } : null,
      levels: { ...call.levels },
      connectionState: call.pc ? call.pc.connectionState : null,
      iceConnectionState: call.pc ? call.pc.iceConnectionState : null,
    };
  }

  function snapshot() {
    const channel = app.channel;
    const tones = toneState();
    return {
      signedIn: Boolean(auth.accessToken),
      subject: auth.claims.sub || null,
      phoneNumber: phoneNumber(),
      tokenExpiresAt: auth.expiresAt ? new Date(auth.expiresAt).toISOString() : null,
      deviceId,
      registration: app.registration ? { ...app.registration } : null,
      relay: channel ? { channelId: channel.id, ready: channel.ready, state: channel.describe() } : null,
      subscription: app.subscription ? { ...app.subscription } : null,
      call: snapshotCall(app.call),
      incoming: app.incoming ? {
        mediaSessionId: app.incoming.mediaSessionId,
        originatorAddress: app.incoming.originatorAddress,
        receiverAddress: app.incoming.receiverAddress,
      } : null,
      lastCall: app.lastCall,
      audio: { tone: tones.playing, tones: tones.history, canChooseSpeaker, devices: { ...app.devices } },
      testNumbers: TEST_NUMBERS,
      busy: [...app.busy],
    };
  }

  function render() {
    const signedIn = Boolean(auth.accessToken);
    const busy = (name) => app.busy.has(name);
    const call = app.call;
    const live = call && !call.ending;
    const incoming = app.incoming;

    $('identity').textContent = signedIn
      ? `${auth.claims.phone_number || 'no phone number'} (${auth.claims.sub || 'unknown user'})`
      : 'nobody';
    $('token-info').textContent = signedIn
      ? `valid until ${new Date(auth.expiresAt).toLocaleTimeString()}${auth.refreshToken ? ', renewed automatically' : ''}`
      : 'none';
    $('device-id').textContent = deviceId;
    $('registration-info').textContent = app.registration
      ? `${app.registration.phoneNumber}, until ${new Date(app.registration.expiresAt).toLocaleString()} (${app.registration.registrationId})`
      : 'not registered';
    $('relay-info').textContent = app.channel ? app.channel.describe() : 'not connected';
    $('subscription-info').textContent = app.subscription ? `active (${app.subscription.id})` : 'none';

    // Rewritten only when it changes: it is a live region, and each write may be read out.
    let callInfo = 'none';
    if (call) {
      const peer = call.pc ? `, media ${call.pc.connectionState}` : '';
      const state = call.ending ? 'ending' : STATUS_TEXT[call.status] || call.status;
      callInfo = `${call.direction === 'outgoing' ? 'to' : 'from'} ${displayAddress(call.remoteAddress)}: ${state}${peer}`;
    } else if (app.lastCall) {
      callInfo = `none (last: ${displayAddress(app.lastCall.remoteAddress)}, ${STATUS_TEXT[app.lastCall.status] || app.lastCall.status})`;
    }
    if ($('call-info').textContent !== callInfo) $('call-info').textContent = callInfo;
    // What the last call showed stays until the next one starts.
    const shown = call || app.lastCall;
    $('call-timer').textContent = call ? timerText(call) : (app.lastCall ? app.lastCall.timerText : '--:--');
    if (call) $('quality-info').textContent = call.pc ? describeQuality(call.quality) : '-';
    else if (!shown) $('quality-info').textContent = '-';
    else if (shown.quality) $('quality-info').textContent = `${shown.quality.text} (last call)`;

    // Ringback while the far end rings, the ringtone while a call waits for an answer here.
    const ringback = live && call.direction === 'outgoing' && call.status === 'Ringing';
    setTone(incoming ? 'ringtone' : ringback ? 'ringback' : null);

    $('incoming').hidden = !incoming;
    if (incoming) {
      $('incoming-from').textContent = incoming.originatorAddress || 'unknown';
      $('incoming-to').textContent = incoming.receiverAddress || '';
    }

    $('sign-in').disabled = signedIn || busy('Sign in');
    $('sign-out').disabled = !signedIn || busy('Sign out');
    $('register').disabled = !signedIn || Boolean(app.registration) || busy('Register');
    $('renew-registration').disabled = !app.registration || busy('Renew registration');
    $('unregister').disabled = !app.registration || busy('Unregister');
    $('subscribe').disabled = !signedIn || Boolean(app.subscription) || busy('Subscribe') || busy('Renew subscription');
    $('unsubscribe').disabled = !app.subscription || busy('Unsubscribe');
    const canDial = signedIn && Boolean(app.registration) && Boolean(app.subscription) && !call && !incoming;
    $('dial-number').disabled = !canDial;
    $('call').disabled = !canDial || busy('Call');
    $('echo-test').disabled = !canDial || busy('Call');
    $('answer').disabled = !incoming || busy('Answer');
    $('decline').disabled = !incoming || busy('Decline');
    const established = live && ['Connected', 'Resume', 'Hold'].includes(call.status);
    $('hold').disabled = !established || call.status === 'Hold' || busy('Hold');
    $('resume').disabled = !established || call.status !== 'Hold' || busy('Resume');
    $('mute').disabled = !live || !call.stream;
    $('mute').setAttribute('aria-pressed', String(Boolean(call && call.muted)));
    $('hangup').disabled = !live || !call.mediaSessionId || busy('Hang up');
    $('keypad').disabled = !(live && call.sender && call.pc && ['connected', 'completed'].includes(call.pc.iceConnectionState));
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring

  function bind(id, name, work) {
    $(id).addEventListener('click', () => action(name, work));
  }

  function start() {
    bind('sign-in', 'Sign in', signIn);
    bind('sign-out', 'Sign out', signOut);
    bind('register', 'Register', register);
    bind('renew-registration', 'Renew registration', renewRegistration);
    bind('unregister', 'Unregister', unregister);
    bind('subscribe', 'Subscribe', subscribe);
    bind('unsubscribe', 'Unsubscribe', unsubscribe);
    bind('answer', 'Answer', answer);
    bind('decline', 'Decline', decline);
    bind('hold', 'Hold', () => setHold(true));
    bind('resume', 'Resume', () => setHold(false));
    bind('hangup', 'Hang up', hangup);
    $('mute').addEventListener('click', toggleMute);
    $('echo-test').addEventListener('click', () => {
      $('dial-number').value = TEST_NUMBERS.echo;
      action('Call', placeCall);
    });
    $('echo-number').textContent = TEST_NUMBERS.echo;
    $('tone-number').textContent = TEST_NUMBERS.tone;
    $('microphone').addEventListener('change', () => {
      localStorage.setItem(MICROPHONE_KEY, $('microphone').value);
      action('Change microphone', switchMicrophone);
    });
    if (canChooseSpeaker) {
      $('speaker').addEventListener('change', () => action('Change speaker', chooseSpeaker));
    } else {
      $('speaker-field').hidden = true;
      $('speaker-note').hidden = false;
    }
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', () => refreshDevices());
    }
    refreshDevices().then(() => {
      const saved = localStorage.getItem(SPEAKER_KEY);
      if (saved && $('speaker').value === saved) useSpeaker($('remote-audio'), saved).catch(() => {});
    });
    // Any key or click may let sound start (the ringtone of a call that comes later needs it).
    document.addEventListener('pointerdown', unlock);
    document.addEventListener('keydown', unlock);
    $('dial-form').addEventListener('submit', (e) => {
      e.preventDefault();
      action('Call', placeCall);
    });
    for (const key of $('keypad').querySelectorAll('button[data-tone]')) {
      key.addEventListener('click', () => {
        try {
          sendTone(key.dataset.tone);
        } catch (e) {
          setStatus(`Tone not sent: ${describeError(e)}`, 'error');
        }
      });
    }
    // Leaving the page ends what it holds at the gateway (best effort: the page cannot wait).
    window.addEventListener('pagehide', () => {
      if (!auth.accessToken) return;
      const headers = { authorization: `Bearer ${auth.accessToken}`, 'x-correlator': uuid() };
      const gone = (path) => fetch(path, { method: 'DELETE', headers, keepalive: true }).catch(() => {});
      if (app.call && app.call.mediaSessionId && !app.call.ending) gone(`${CALLS_API}/sessions/${encodeURIComponent(app.call.mediaSessionId)}`);
      if (app.subscription) gone(`${EVENTS_API}/subscriptions/${encodeURIComponent(app.subscription.id)}`);
      if (app.channel) gone(`${RELAY_API}/channels/${encodeURIComponent(app.channel.id)}`);
      if (app.registration) gone(`${REGISTRATION_API}/sessions/${encodeURIComponent(app.registration.registrationId)}`);
    });

    window.softphone = Object.freeze({
      /** A snapshot of the page's state (plain data). */
      get state() {
        return snapshot();
      },
      /** Every CloudEvent received: { receivedAt, id, type, status, reason, sequenceNumber, mediaSessionId, data, event }. */
      events,
      /** Audio counters of the call in progress, or of the last one. */
      stats,
      get lastStats() {
        return { ...lastStats };
      },
    });

    render();
    const params = new URLSearchParams(window.location.search);
    if (params.has('code') || params.has('error')) {
      action('Sign in', () => completeSignIn(params));
    } else if (!window.isSecureContext) {
      setStatus('This page is not in a secure context (HTTPS or localhost): sign-in and the microphone will not work', 'error');
    } else {
      setStatus('Ready: sign in to start');
    }
  }

  start();
})();
