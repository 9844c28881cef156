#!/usr/bin/env node
// A small stand-in for the gateway, to test the softphone page and softphone.mjs without it.
//
// Serves the softphone files from host/gateway/web/softphone/ (read per request) and fakes, with
// the gateway's URL paths and JSON shapes: the OAuth provider (discovery, sign-in page, code +
// PKCE S256, rotating refresh tokens), webrtc-registration, the Notification Relay (channels and
// the WebSocket with ready/event/ack/ping/pong), webrtc-events subscriptions and
// webrtc-call-handling. It checks what the page sends (x-correlator on every call, bearer tokens,
// body shapes, a complete SDP offer) and records every violation in GET /mock/log.
//
// The network side of a call is either
//  - a "far end" browser page (GET /mock/far-end.html, opened by selftest.mjs in a second
//    Chromium) that answers the page's offers and makes offers for incoming calls, so that real
//    audio flows between the two browsers; or, when none is connected,
//  - fake SDP that the page accepts but that carries no media (signalling checks only).
//
// An outgoing call to a number that another page registered (and subscribed) rings that page
// instead, every device of the number at once: browser to browser, with the gateway's forking
// (each device its own session; once one answers, the others end SessionCancelled, "The call was
// answered on another device"; one declining leaves the others ringing). A call to the far end
// rings for --ring-ms (Ringing) before it is answered.
//
// Test controls: POST /mock/invite {"to"?, "from"?, "fork"?} starts an incoming call (with
// "fork": true, on every device registered for "to"); POST /mock/hangup {"mediaSessionId"?} ends
// a call from the network side; POST /mock/cancel {"mediaSessionId", "reason"?} ends a ringing
// session as answered elsewhere; POST /mock/extra-css {"css"} appends CSS to style.css (to
// prove that the driver's overflow check catches a layout that does not fit); GET /mock/log.
//
// Usage: node mock-gateway.mjs [--port 0] [--token-ttl 900] [--ring-ms 1500]; prints
// {"listening":"http://..."}.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const WEB_DIR = path.resolve(here, '../../host/gateway/web/softphone');
const USERS = { alice: { password: 'alice', phone: '+818000000001' }, bob: { password: 'bob', phone: '+818000000002' } };
const CORRELATOR = /^[a-zA-Z0-9\-_:;./<>{}]{0,256}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const EVENT_TYPES = [
  'org.camaraproject.webrtc-events.v0.session-status',
  'org.camaraproject.webrtc-events.v0.session-invitation',
  'org.camaraproject.webrtc-events.v0.registration-ends',
];
const SOFTPHONE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
  + "media-src 'self' blob:; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

const id = () => crypto.randomUUID();
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const TOKEN_TTL = Number(option('--token-ttl', '900'));
/** How long the far end rings before it answers an outgoing call. */
const RING_MS = Number(option('--ring-ms', '1500'));

const state = {
  origin: null,
  codes: new Map(), // code -> { user, challenge, redirectUri, scope, nonce }
  access: new Map(), // access token -> user
  refresh: new Map(), // refresh token -> { user, scope }
  registrations: new Map(),
  channels: new Map(), // id -> { info, ws, chain, pending: Map(deliveryId -> resolve) }
  subscriptions: new Map(),
  sessions: new Map(),
  farEnd: null, // the far-end page's WebSocket
  farEndWaiters: new Map(), // request id -> resolve
  log: [], // every API request
  violations: [], // what the page did wrong
  frames: [], // frames from the page over relay sockets
  extraCss: '', // appended to style.css: a layout regression on purpose (POST /mock/extra-css)
};

function violation(text) {
  state.violations.push(text);
  console.error(`[mock] VIOLATION ${text}`);
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const type = typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
  res.end(text);
}

const camara = (res, status, code, message) => send(res, status, { status, code, message });

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function jsonBody(req, res) {
  const text = await readBody(req);
  if (!text) return {};
  if (!String(req.headers['content-type'] || '').startsWith('application/json')) {
    camara(res, 415, 'UNSUPPORTED_MEDIA_TYPE', 'The request body must be application/json');
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    camara(res, 400, 'INVALID_ARGUMENT', 'Invalid request body');
    return null;
  }
}

/** The user of the bearer token, or an error answer. */
function caller(req, res) {
  const m = /^Bearer (.+)$/i.exec(req.headers.authorization || '');
  const token = m && state.access.get(m[1]);
  if (token && token.exp <= Date.now() / 1000) {
    violation(`${req.method} ${req.url} with an expired access token`);
    camara(res, 401, 'UNAUTHENTICATED', 'Request not authenticated: the token has expired');
    return null;
  }
  const user = token && token.user;
  if (!user) {
    camara(res, 401, 'UNAUTHENTICATED', 'Request not authenticated due to missing, invalid, or expired credentials.');
    return null;
  }
  return user;
}

// ---------------------------------------------------------------------------------------------
// OAuth

function jwt(payload) {
  return `${b64url(JSON.stringify({ alg: 'none', typ: 'at+jwt' }))}.${b64url(JSON.stringify(payload))}.mock`;
}

function issueTokens(user, scope, nonce) {
  const now = Math.floor(Date.now() / 1000);
  const phone = USERS[user].phone;
  const access = jwt({
    iss: `${state.origin}/oauth`, sub: user, aud: 'camara-webrtc-gateway', iat: now, nbf: now, exp: now + TOKEN_TTL,
    jti: id(), scope, client_id: 'softphone', phone_number: phone,
  });
  const refresh = b64url(crypto.randomBytes(24));
  state.access.set(access, { user, exp: now + TOKEN_TTL });
  state.refresh.set(refresh, { user, scope });
  const body = { access_token: access, token_type: 'Bearer', expires_in: TOKEN_TTL, scope, refresh_token: refresh };
  if (scope.split(' ').includes('openid')) {
    body.id_token = jwt({ iss: `${state.origin}/oauth`, sub: user, aud: 'softphone', iat: now, exp: now + TOKEN_TTL, nonce, phone_number: phone });
  }
  return body;
}

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

function consentPage(res, params, error) {
  const hidden = ['client_id', 'redirect_uri', 'response_type', 'scope', 'state', 'nonce', 'code_challenge', 'code_challenge_method']
    .filter((k) => params.get(k) !== null)
    .map((k) => `<input type="hidden" name="${k}" value="${escapeHtml(params.get(k))}">`).join('\n');
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in - mock</title></head><body><main>
<h1>Sign in</h1>${error ? `<p role="alert" id="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/oauth/authorize">${hidden}
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
</form></main></body></html>`;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function authorizeError(params) {
  if (params.get('client_id') !== 'softphone') return 'unknown client_id';
  if (params.get('redirect_uri') !== `${state.origin}/softphone/`) return `redirect_uri ${params.get('redirect_uri')} is not registered`;
  if (params.get('response_type') !== 'code') return 'response_type must be code';
  if (params.get('code_challenge_method') !== 'S256') return 'code_challenge_method must be S256';
  if (!/^[A-Za-z0-9_-]{43}$/.test(params.get('code_challenge') || '')) return 'code_challenge is not an S256 challenge';
  if (!params.get('state')) return 'no state';
  const scopes = (params.get('scope') || '').split(' ');
  for (const s of ['openid', 'webrtc-registration:sessions:create', 'webrtc-call-handling:sessions:create',
    'webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create']) {
    if (!scopes.includes(s)) return `scope lacks ${s}`;
  }
  return null;
}

async function oauth(req, res, url) {
  const p = url.pathname;
  if (p === '/oauth/.well-known/openid-configuration' && req.method === 'GET') {
    return send(res, 200, {
      issuer: `${state.origin}/oauth`,
      authorization_endpoint: `${state.origin}/oauth/authorize`,
      token_endpoint: `${state.origin}/oauth/token`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
    });
  }
  if (p === '/oauth/authorize' && req.method === 'GET') {
    const why = authorizeError(url.searchParams);
    if (why) {
      violation(`authorize: ${why}`);
      return send(res, 400, `Authorization request refused: ${why}`);
    }
    return consentPage(res, url.searchParams);
  }
  if (p === '/oauth/authorize' && req.method === 'POST') {
    const params = new URLSearchParams(await readBody(req));
    const why = authorizeError(params);
    if (why) return send(res, 400, `Authorization request refused: ${why}`);
    const back = new URL(params.get('redirect_uri'));
    if (params.get('decision') === 'deny') {
      back.searchParams.set('error', 'access_denied');
      back.searchParams.set('error_description', 'the user denied the request');
    } else {
      const user = params.get('username');
      if (!USERS[user] || USERS[user].password !== params.get('password')) {
        return consentPage(res, params, 'The username or password is wrong.');
      }
      const code = b64url(crypto.randomBytes(24));
      state.codes.set(code, {
        user, challenge: params.get('code_challenge'), redirectUri: params.get('redirect_uri'),
        scope: params.get('scope'), nonce: params.get('nonce'),
      });
      back.searchParams.set('code', code);
    }
    back.searchParams.set('state', params.get('state'));
    back.searchParams.set('iss', `${state.origin}/oauth`);
    res.writeHead(303, { location: back.href, 'cache-control': 'no-store' });
    return res.end();
  }
  if (p === '/oauth/token' && req.method === 'POST') {
    if (!String(req.headers['content-type'] || '').startsWith('application/x-www-form-urlencoded')) {
      violation('token: not a form');
      return send(res, 400, { error: 'invalid_request', error_description: 'the body must be a form' });
    }
    const form = new URLSearchParams(await readBody(req));
    const fail = (error, description) => {
      violation(`token: ${error}: ${description}`);
      return send(res, 400, { error, error_description: description });
    };
    if (form.get('client_id') !== 'softphone') return fail('invalid_client', 'client_id must be softphone');
    if (form.get('grant_type') === 'authorization_code') {
      const grant = state.codes.get(form.get('code'));
      state.codes.delete(form.get('code'));
      if (!grant) return fail('invalid_grant', 'unknown code');
      if (form.get('redirect_uri') !== grant.redirectUri) return fail('invalid_grant', 'redirect_uri differs');
      const computed = b64url(crypto.createHash('sha256').update(form.get('code_verifier') || '').digest());
      if (computed !== grant.challenge) return fail('invalid_grant', 'code_verifier does not match');
      return send(res, 200, issueTokens(grant.user, grant.scope, grant.nonce));
    }
    if (form.get('grant_type') === 'refresh_token') {
      const grant = state.refresh.get(form.get('refresh_token'));
      state.refresh.delete(form.get('refresh_token')); // rotation: single use
      if (!grant) return fail('invalid_grant', 'unknown or reused refresh token');
      state.log.push({ method: 'POST', path: '/oauth/token', grant: 'refresh_token' });
      return send(res, 200, issueTokens(grant.user, grant.scope));
    }
    return fail('unsupported_grant_type', String(form.get('grant_type')));
  }
  return camara(res, 404, 'NOT_FOUND', 'The requested resource does not exist');
}

// ---------------------------------------------------------------------------------------------
// Relay and events

function cloudEvent(type, data) {
  return {
    specversion: '1.0', id: id(), source: `${state.origin}/webrtc-events/v0.2`, type,
    time: new Date().toISOString(), datacontenttype: 'application/json', data,
  };
}

/**
 * Pushes an event to the subscriptions of `phone` through their relay channels, in order; a
 * session's events go to its own device only (the subscription's deviceId), as each device of a
 * number has its own session of a call.
 */
function publish(phone, type, data, deviceId = null) {
  for (const sub of state.subscriptions.values()) {
    if (sub.phone !== phone || (deviceId && sub.deviceId !== deviceId) || !sub.types.includes(type)) continue;
    publishTo(sub, type, data);
  }
}

function publishTo(sub, type, data) {
  const channel = state.channels.get(sub.channelId);
  if (!channel) return;
  const event = cloudEvent(type, data);
  channel.chain = channel.chain.then(() => deliver(channel, event));
}

async function deliver(channel, event) {
  // Like the relay: an event waits a while for the device to (re)connect.
  const until = Date.now() + 10_000;
  while ((!channel.ws || channel.ws.readyState !== 1) && Date.now() < until && state.channels.has(channel.info.channelId)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return new Promise((resolve) => {
    const deliveryId = id();
    const timer = setTimeout(() => {
      violation(`no ack for ${event.type} ${event.data.status || ''} within 5 s (channel ${channel.info.channelId})`);
      channel.pending.delete(deliveryId);
      resolve();
    }, 5000);
    channel.pending.set(deliveryId, () => {
      clearTimeout(timer);
      resolve();
    });
    if (!channel.ws || channel.ws.readyState !== 1) {
      violation(`event ${event.type} for a channel without a socket`);
      clearTimeout(timer);
      channel.pending.delete(deliveryId);
      return resolve();
    }
    channel.deliveries = (channel.deliveries || 0) + 1;
    channel.ws.send(JSON.stringify({ type: 'event', deliveryId, event }));
  });
}

async function relay(req, res, url, user) {
  const m = /^\/relay\/channels(?:\/([^/]+))?$/.exec(url.pathname);
  if (url.pathname === '/relay/channels' && req.method === 'POST') {
    const channelId = id();
    const expiresAt = new Date(Date.now() + 24 * 3600 * 1000).toISOString();
    const info = {
      channelId,
      sinkUrl: `${state.origin}/relay/sink/${channelId}`,
      sinkCredential: { credentialType: 'ACCESSTOKEN', accessToken: b64url(crypto.randomBytes(24)), accessTokenType: 'bearer', accessTokenExpiresUtc: expiresAt },
      websocketUrl: `${state.origin.replace(/^http/, 'ws')}/relay/channels/${channelId}/ws`,
      websocketToken: b64url(crypto.randomBytes(24)),
      createdAt: new Date().toISOString(),
      expiresAt,
      connected: false,
      pendingDeliveries: 0,
    };
    state.channels.set(channelId, { info, user, ws: null, chain: Promise.resolve(), pending: new Map() });
    return send(res, 201, info, { location: `/relay/channels/${channelId}` });
  }
  if (m && m[1] && req.method === 'DELETE') {
    const channel = state.channels.get(m[1]);
    if (!channel || channel.user !== user) return camara(res, 404, 'NOT_FOUND', 'channel not found');
    state.channels.delete(m[1]);
    if (channel.ws) channel.ws.close(4001, 'channel deleted');
    return send(res, 204);
  }
  return camara(res, 404, 'NOT_FOUND', 'The requested resource does not exist');
}

async function subscriptions(req, res, url, user) {
  const m = /^\/webrtc-events\/v0\.2\/subscriptions(?:\/([^/]+))?$/.exec(url.pathname);
  if (!m) return camara(res, 404, 'NOT_FOUND', 'The requested resource does not exist');
  if (!m[1] && req.method === 'POST') {
    const body = await jsonBody(req, res);
    if (!body) return undefined;
    const problems = [];
    if (body.protocol !== 'HTTP') problems.push('protocol must be HTTP');
    const sinkId = /\/relay\/sink\/([^/]+)$/.exec(body.sink || '');
    const channel = sinkId && state.channels.get(sinkId[1]);
    if (!channel) problems.push(`sink ${body.sink} is not a relay channel`);
    const cred = body.sinkCredential || {};
    if (channel && (cred.credentialType !== 'ACCESSTOKEN' || cred.accessTokenType !== 'bearer'
      || cred.accessToken !== channel.info.sinkCredential.accessToken || !cred.accessTokenExpiresUtc)) {
      problems.push('sinkCredential is not the channel\'s');
    }
    if (!Array.isArray(body.types) || body.types.length < 1 || body.types.length > 3
      || body.types.some((t) => !EVENT_TYPES.includes(t))) problems.push('types');
    const deviceId = body.config && body.config.subscriptionDetail && body.config.subscriptionDetail.deviceId;
    if (!UUID.test(deviceId || '')) problems.push('config.subscriptionDetail.deviceId must be a UUID');
    const extra = Object.keys(body).filter((k) => !['protocol', 'sink', 'sinkCredential', 'types', 'config'].includes(k));
    if (extra.length) problems.push(`unknown fields ${extra}`);
    if (problems.length) {
      violation(`subscription: ${problems.join('; ')}`);
      return camara(res, 400, 'INVALID_ARGUMENT', problems.join('; '));
    }
    const sub = {
      id: id(), phone: USERS[user].phone, user, deviceId, types: body.types, channelId: channel.info.channelId,
      response: {
        protocol: 'HTTP', sink: body.sink, types: body.types, config: body.config,
        startsAt: new Date().toISOString(), expiresAt: body.config.subscriptionExpireTime, status: 'ACTIVE',
      },
    };
    sub.response.id = sub.id;
    state.subscriptions.set(sub.id, sub);
    return send(res, 201, sub.response);
  }
  const sub = m[1] && state.subscriptions.get(m[1]);
  if (!sub || sub.user !== user) return camara(res, 404, 'NOT_FOUND', 'Subscription not found');
  if (req.method === 'GET') return send(res, 200, sub.response);
  if (req.method === 'DELETE') {
    publishTo(sub, 'org.camaraproject.webrtc-events.v0.subscription-ended', {
      subscriptionId: sub.id, terminationReason: 'SUBSCRIPTION_DELETED', terminationDescription: 'Subscription deleted by client request',
    });
    const channel = state.channels.get(sub.channelId);
    const done = () => state.subscriptions.delete(sub.id);
    if (channel) channel.chain = channel.chain.then(done); else done();
    return send(res, 202, { id: sub.id });
  }
  return camara(res, 405, 'METHOD_NOT_ALLOWED', 'The method is not allowed on this resource');
}

// ---------------------------------------------------------------------------------------------
// Registration

async function registration(req, res, url, user) {
  const m = /^\/webrtc-registration\/v0\.3\/sessions(?:\/([^/]+))?$/.exec(url.pathname);
  if (!m) return camara(res, 404, 'NOT_FOUND', 'The requested resource does not exist');
  const phone = USERS[user].phone;
  const view = (r) => ({ registrationId: r.id, regInfo: { phoneNumber: r.phone, regStatus: 'Registered' }, expiresAt: r.expiresAt });
  if (!m[1] && req.method === 'POST') {
    const body = await jsonBody(req, res);
    if (!body) return undefined;
    if (!UUID.test(body.deviceId || '')) {
      violation('registration: deviceId is not a UUID');
      return camara(res, 400, 'INVALID_ARGUMENT', 'deviceId must be a UUID');
    }
    for (const r of state.registrations.values()) {
      if (r.phone === phone && r.deviceId === body.deviceId) {
        return camara(res, 409, 'ALREADY_EXISTS', 'An active registration already exists for this deviceId and phone number');
      }
    }
    const r = { id: id(), phone, user, deviceId: body.deviceId, expiresAt: new Date(Date.now() + 3600_000).toISOString() };
    state.registrations.set(r.id, r);
    return send(res, 201, view(r));
  }
  if (!m[1] && req.method === 'GET') {
    const deviceId = url.searchParams.get('deviceId');
    return send(res, 200, [...state.registrations.values()].filter((r) => r.phone === phone && r.deviceId === deviceId).map(view));
  }
  const r = m[1] && state.registrations.get(m[1]);
  if (!r || r.user !== user) return camara(res, 404, 'NOT_FOUND', 'Registration not found');
  if (req.method === 'GET') return send(res, 200, view(r));
  if (req.method === 'PUT') {
    const body = await jsonBody(req, res);
    if (!body) return undefined;
    r.expiresAt = new Date(Date.now() + 3600_000).toISOString();
    return send(res, 200, view(r));
  }
  if (req.method === 'DELETE') {
    state.registrations.delete(r.id);
    return send(res, 204);
  }
  return camara(res, 405, 'METHOD_NOT_ALLOWED', 'The method is not allowed on this resource');
}

// ---------------------------------------------------------------------------------------------
// Calls

/** A device that can be called: registered and subscribed to invitations. */
function deviceSubscribed(registration) {
  return [...state.subscriptions.values()].some((sub) => sub.phone === registration.phone && sub.deviceId === registration.deviceId
    && sub.types.includes('org.camaraproject.webrtc-events.v0.session-invitation'));
}

const sessionData = (s) => ({
  mediaSessionId: s.id, originatorAddress: s.originatorAddress, receiverAddress: s.receiverAddress,
  status: s.status, sequenceNumber: s.sequence,
});

const FINAL = ['Terminated', 'SessionCancelled', 'Declined', 'Failed', 'NoAnswer', 'NotReachable', 'Busy'];
const ANSWERED_ELSEWHERE = 'The call was answered on another device';

function setStatus(s, status, reason, extra = {}) {
  if (FINAL.includes(s.status)) return;
  s.status = status;
  s.sequence += 1;
  const data = { ...sessionData(s), reason, ...extra };
  if (s.answer) data.answer = { sdp: s.answer };
  publish(s.phone, 'org.camaraproject.webrtc-events.v0.session-status', data, s.deviceId);
}

/**
 * A call to a number rings every registered device of it, each with its own session (a "leg");
 * `call` ties them together: { caller: the outgoing session of a browser caller, or null for the
 * far end; legs; answered: the leg that answered }.
 */
function newLeg(call, registration, originatorAddress, offer) {
  const leg = {
    id: id(), phone: registration.phone, user: registration.user, deviceId: registration.deviceId, direction: 'incoming',
    originatorAddress, receiverAddress: `tel:${registration.phone}`, offer, answer: null, status: 'Initial', sequence: 1,
    call, farEnd: !call.caller,
  };
  state.sessions.set(leg.id, leg);
  call.legs.push(leg);
  return leg;
}

function invite(leg) {
  publish(leg.phone, 'org.camaraproject.webrtc-events.v0.session-invitation', { ...sessionData(leg), offer: { sdp: leg.offer } }, leg.deviceId);
}

/** The legs still ringing are cancelled, with `reason`. */
function cancelRinging(call, reason) {
  for (const leg of call.legs) {
    if (leg.status === 'Initial') {
      if (leg.farEnd) tellFarEnd({ type: 'close', mediaSessionId: leg.id });
      setStatus(leg, 'SessionCancelled', reason);
    }
  }
}

function onLegAnswered(leg) {
  const { call } = leg;
  call.answered = leg;
  cancelRinging(call, ANSWERED_ELSEWHERE);
  if (call.caller) {
    call.caller.answer = leg.answer;
    setStatus(call.caller, 'Connected', 'Answered (200)');
  }
}

function onLegDeclined(leg) {
  const { call } = leg;
  if (call.caller && !call.answered && call.legs.every((l) => FINAL.includes(l.status))) {
    setStatus(call.caller, 'Declined', 'Declined by the callee (603)');
  }
}

/** One side hung up: the other side of an answered call ends, legs still ringing are cancelled. */
function hangUpCall(call, by) {
  cancelRinging(call, 'The caller hung up');
  if (call.answered && call.answered !== by) setStatus(call.answered, 'Terminated', 'Ended by the caller (BYE)');
  if (call.caller && call.caller !== by) setStatus(call.caller, 'Terminated', 'Ended by the callee (BYE)');
}

/** Asks the far-end page; resolves with its reply, or null without one. */
function askFarEnd(message, timeoutMs = 10_000) {
  const ws = state.farEnd;
  if (!ws || ws.readyState !== 1) return Promise.resolve(null);
  return new Promise((resolve) => {
    const requestId = id();
    const timer = setTimeout(() => {
      state.farEndWaiters.delete(requestId);
      resolve(null);
    }, timeoutMs);
    state.farEndWaiters.set(requestId, (reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
    ws.send(JSON.stringify({ ...message, requestId }));
  });
}

function tellFarEnd(message) {
  if (state.farEnd && state.farEnd.readyState === 1) state.farEnd.send(JSON.stringify(message));
}

/** SDP the page accepts but that leads nowhere (no far end): signalling checks only. An answer
 * takes the offer's mid and telephone-event payload type. */
function fakeSdp(kind, offer = '') {
  const mid = (/^a=mid:(\S+)/m.exec(offer) || [])[1] || '0';
  const dtmf = (/^a=rtpmap:(\d+) telephone-event\/8000/m.exec(offer) || [])[1] || '101';
  const fingerprint = Array.from(crypto.randomBytes(32), (b) => b.toString(16).toUpperCase().padStart(2, '0')).join(':');
  return [
    'v=0', `o=- ${Date.now()} 1 IN IP4 127.0.0.1`, 's=-', 't=0 0', `a=group:BUNDLE ${mid}`,
    `m=audio 9 UDP/TLS/RTP/SAVPF 0 ${dtmf}`, 'c=IN IP4 127.0.0.1', `a=mid:${mid}`, 'a=sendrecv', 'a=rtcp-mux',
    `a=ice-ufrag:${b64url(crypto.randomBytes(6))}`, `a=ice-pwd:${b64url(crypto.randomBytes(18))}`,
    `a=fingerprint:sha-256 ${fingerprint}`, `a=setup:${kind === 'offer' ? 'actpass' : 'active'}`,
    'a=rtpmap:0 PCMU/8000', `a=rtpmap:${dtmf} telephone-event/8000`, `a=fmtp:${dtmf} 0-16`,
    'a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host', '',
  ].join('\r\n');
}

function checkOffer(sdp) {
  const problems = [];
  if (typeof sdp !== 'string' || !sdp.startsWith('v=0')) problems.push('offer.sdp is not SDP');
  else {
    if (!/^m=audio /m.test(sdp)) problems.push('no audio m-line');
    if (!/^a=candidate:/m.test(sdp)) problems.push('no ICE candidate: gathering was not waited for');
    if (!/^a=fingerprint:/m.test(sdp)) problems.push('no DTLS fingerprint');
  }
  return problems;
}

async function calls(req, res, url, user) {
  const phone = USERS[user].phone;
  if (url.pathname === '/webrtc-call-handling/v0.3/sessions' && req.method === 'POST') {
    const body = await jsonBody(req, res);
    if (!body) return undefined;
    const registrationId = req.headers.registrationid;
    const r = registrationId && state.registrations.get(registrationId);
    const problems = checkOffer(body.offer && body.offer.sdp);
    if (!r || r.phone !== phone) problems.push('registrationId header does not name a registration of the caller');
    if (body.originatorAddress !== `tel:${phone}`) problems.push(`originatorAddress ${body.originatorAddress} is not tel:${phone}`);
    if (!/^tel:\+[1-9][0-9]{4,14}$|^sip:|^tel:[0-9*#]+;phone-context=/.test(body.receiverAddress || '')) problems.push('receiverAddress');
    const extra = Object.keys(body).filter((k) => !['originatorAddress', 'receiverAddress', 'offer', 'originatorName', 'receiverName'].includes(k));
    if (extra.length) problems.push(`unexpected fields ${extra}`);
    if (problems.length) {
      violation(`create session: ${problems.join('; ')}`);
      return camara(res, 400, 'INVALID_ARGUMENT', problems.join('; '));
    }
    const s = {
      id: id(), phone, user, deviceId: r.deviceId, direction: 'outgoing', originatorAddress: body.originatorAddress,
      receiverAddress: body.receiverAddress, offer: body.offer.sdp, answer: null, status: 'Initial', sequence: 1,
    };
    state.sessions.set(s.id, s);
    // An event before the answer to POST: the page has to keep it until it knows the id.
    setStatus(s, 'InProgress', 'Trying (100)');
    setTimeout(() => send(res, 201, { ...sessionData(s), status: 'Initial', offer: { sdp: s.offer } }), 300);
    const callees = [...state.registrations.values()]
      .filter((x) => `tel:${x.phone}` === body.receiverAddress && x.id !== r.id && deviceSubscribed(x));
    if (callees.length) {
      // Another browser registered for the number: it gets the caller's offer, and its answer.
      s.call = { caller: s, legs: [], answered: null };
      for (const callee of callees) invite(newLeg(s.call, callee, body.originatorAddress, s.offer));
      setTimeout(() => setStatus(s, 'Ringing', 'Ringing (180)'), 400);
      return undefined;
    }
    s.farEnd = true;
    (async () => {
      const ringing = new Promise((resolve) => setTimeout(resolve, 400 + RING_MS));
      setTimeout(() => setStatus(s, 'Ringing', 'Ringing (180)'), 400);
      const reply = await askFarEnd({ type: 'offer', mediaSessionId: s.id, sdp: s.offer });
      await ringing;
      s.answer = reply ? reply.sdp : fakeSdp('answer', s.offer);
      setStatus(s, 'Connected', 'Answered (200)');
    })();
    return undefined;
  }
  const m = /^\/webrtc-call-handling\/v0\.3\/sessions\/([^/]+)(\/status)?$/.exec(url.pathname);
  const s = m && state.sessions.get(m[1]);
  if (!s || s.user !== user) return camara(res, 404, 'NOT_FOUND', 'Session not found');
  const view = () => ({ ...sessionData(s), offer: { sdp: s.offer }, ...(s.answer ? { answer: { sdp: s.answer } } : {}) });
  if (!m[2] && req.method === 'GET') return send(res, 200, view());
  if (!m[2] && req.method === 'DELETE') {
    if (s.farEnd) tellFarEnd({ type: 'close', mediaSessionId: s.id });
    setStatus(s, 'Terminated', 'Ended by the device');
    if (s.call) hangUpCall(s.call, s);
    return send(res, 204);
  }
  if (m[2] && req.method === 'PUT') {
    const body = await jsonBody(req, res);
    if (!body) return undefined;
    if (['Hold', 'Resume'].includes(body.status)) {
      if (s.direction !== 'outgoing' || !['Connected', 'Hold', 'Resume'].includes(s.status)) {
        return camara(res, 409, 'CONFLICT', `A ${s.status} session cannot be put on hold or resumed`);
      }
      setStatus(s, body.status, `Call ${body.status === 'Hold' ? 'put on hold' : 'resumed'} by the device`);
      return send(res, 200, view());
    }
    if (s.direction !== 'incoming') return camara(res, 409, 'CONFLICT', `An outgoing session is answered by the network; ${body.status} cannot be requested`);
    if (FINAL.includes(s.status)) return camara(res, 409, 'CONFLICT', `The session is ${s.status}`);
    if (body.status === 'Declined') {
      if (s.farEnd) tellFarEnd({ type: 'close', mediaSessionId: s.id });
      setStatus(s, 'Declined', 'Declined by the device');
      if (s.call) onLegDeclined(s);
      return send(res, 200, view());
    }
    if (body.status === 'Connected' || body.status === 'InProgress') {
      if (!s.answer) {
        if (!body.answer || typeof body.answer.sdp !== 'string' || !body.answer.sdp.startsWith('v=0')) {
          violation('answer without answer.sdp');
          return camara(res, 400, 'INVALID_ARGUMENT', `status ${body.status} needs answer.sdp`);
        }
        const problems = checkOffer(body.answer.sdp).filter((p) => !p.startsWith('offer.sdp'));
        if (problems.length) violation(`answer: ${problems.join('; ')}`);
        s.answer = body.answer.sdp;
        if (s.farEnd) tellFarEnd({ type: 'answer', mediaSessionId: s.id, sdp: s.answer });
      }
      setStatus(s, body.status, body.status === 'Connected' ? 'Answered by the device (200)' : 'Answer sent to the network (183)');
      if (body.status === 'Connected' && s.call && !s.call.answered) onLegAnswered(s);
      return send(res, 200, view());
    }
    return camara(res, 400, 'INVALID_ARGUMENT', `status ${body.status} cannot be requested`);
  }
  return camara(res, 405, 'METHOD_NOT_ALLOWED', 'The method is not allowed on this resource');
}

async function controls(req, res, url) {
  if (url.pathname === '/mock/log' && req.method === 'GET') {
    return send(res, 200, {
      violations: state.violations,
      requests: state.log,
      frames: state.frames,
      registrations: [...state.registrations.values()].map((r) => r.id),
      subscriptions: [...state.subscriptions.keys()],
      channels: [...state.channels.keys()],
      pendingDeliveries: [...state.channels.values()].reduce((n, c) => n + c.pending.size, 0),
      pings: state.pings || 0,
      connections: state.connections || 0,
      refreshes: state.log.filter((r) => r.grant === 'refresh_token').length,
      farEnd: Boolean(state.farEnd),
    });
  }
  if (url.pathname === '/mock/invite' && req.method === 'POST') {
    const body = JSON.parse((await readBody(req)) || '{}');
    const registered = [...state.registrations.values()].filter((r) => !body.to || r.phone === body.to);
    const targets = body.fork ? registered : registered.slice(0, 1);
    if (!targets.length) return camara(res, 404, 'NOT_FOUND', 'nobody is registered');
    // The far end makes one offer per leg, as a forking proxy would send one INVITE per contact.
    const call = { caller: null, legs: [], answered: null };
    let farEnd = true;
    for (const target of targets) {
      const leg = newLeg(call, target, body.from || 'tel:+818000000002', null);
      const reply = await askFarEnd({ type: 'make-offer', mediaSessionId: leg.id });
      leg.offer = reply ? reply.sdp : fakeSdp('offer');
      farEnd = farEnd && Boolean(reply);
    }
    call.legs.forEach(invite);
    return send(res, 201, { mediaSessionId: call.legs[0].id, mediaSessionIds: call.legs.map((l) => l.id), farEnd });
  }
  if (url.pathname === '/mock/cancel' && req.method === 'POST') {
    // An incoming call answered on a device the mock does not drive.
    const body = JSON.parse((await readBody(req)) || '{}');
    const s = state.sessions.get(body.mediaSessionId);
    if (!s) return camara(res, 404, 'NOT_FOUND', 'no such session');
    if (s.farEnd) tellFarEnd({ type: 'close', mediaSessionId: s.id });
    setStatus(s, 'SessionCancelled', body.reason || ANSWERED_ELSEWHERE);
    return send(res, 200, { mediaSessionId: s.id });
  }
  if (url.pathname === '/mock/hangup' && req.method === 'POST') {
    const body = JSON.parse((await readBody(req)) || '{}');
    const s = body.mediaSessionId ? state.sessions.get(body.mediaSessionId) : [...state.sessions.values()].pop();
    if (!s) return camara(res, 404, 'NOT_FOUND', 'no such session');
    if (s.farEnd) tellFarEnd({ type: 'close', mediaSessionId: s.id });
    setStatus(s, 'Terminated', 'Ended by the network (BYE)');
    if (s.call) hangUpCall(s.call, null);
    return send(res, 200, { mediaSessionId: s.id });
  }
  if (url.pathname === '/mock/extra-css' && req.method === 'POST') {
    state.extraCss = JSON.parse((await readBody(req)) || '{}').css || '';
    return send(res, 200, { css: state.extraCss });
  }
  if (url.pathname === '/mock/drop-sockets' && req.method === 'POST') {
    // Connections lost without a close frame: the page has to reconnect by itself.
    let dropped = 0;
    for (const channel of state.channels.values()) {
      if (channel.ws) {
        channel.ws.terminate();
        channel.ws = null;
        dropped += 1;
      }
    }
    return send(res, 200, { dropped });
  }
  if (url.pathname === '/mock/far-end.html' && req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(FAR_END_PAGE);
  }
  return camara(res, 404, 'NOT_FOUND', 'The requested resource does not exist');
}

/** The network side of calls: a second browser answers and makes offers, and echoes nothing. */
const FAR_END_PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>far end</title><link rel="icon" href="data:,"></head><body>
<p id="far-status">starting</p><audio id="far-audio" autoplay></audio>
<script>
const peers = new Map();
const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/mock/far-end');
const gathered = (pc) => pc.iceGatheringState === 'complete' ? Promise.resolve() : new Promise((r) => {
  pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
  setTimeout(r, 5000);
});
async function peer(id) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.ontrack = (e) => { document.getElementById('far-audio').srcObject = e.streams[0]; };
  peers.set(id, { pc, stream });
  return { pc, stream };
}
ws.onopen = () => { document.getElementById('far-status').textContent = 'connected'; };
ws.onmessage = async (m) => {
  const msg = JSON.parse(m.data);
  try {
    if (msg.type === 'offer') {
      const { pc, stream } = await peer(msg.mediaSessionId);
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      stream.getTracks().forEach((t) => pc.addTrack(t, stream));
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      ws.send(JSON.stringify({ type: 'reply', requestId: msg.requestId, sdp: pc.localDescription.sdp }));
    } else if (msg.type === 'make-offer') {
      const { pc, stream } = await peer(msg.mediaSessionId);
      stream.getTracks().forEach((t) => pc.addTrack(t, stream));
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      ws.send(JSON.stringify({ type: 'reply', requestId: msg.requestId, sdp: pc.localDescription.sdp }));
    } else if (msg.type === 'answer') {
      await peers.get(msg.mediaSessionId).pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    } else if (msg.type === 'close') {
      const p = peers.get(msg.mediaSessionId);
      if (p) { p.stream.getTracks().forEach((t) => t.stop()); p.pc.close(); peers.delete(msg.mediaSessionId); }
    }
  } catch (e) { console.error('far end: ' + e); }
};
</script></body></html>`;

// ---------------------------------------------------------------------------------------------
// Server

// The files the gateway serves (host/gateway/src/device_pages.rs): a file missing there is missing here.
const JS = 'text/javascript; charset=utf-8';
const STATIC = {
  '/softphone/': ['index.html', 'text/html; charset=utf-8'],
  '/softphone/app.js': ['app.js', JS],
  '/softphone/audio.js': ['audio.js', JS],
  '/softphone/quality.js': ['quality.js', JS],
  '/softphone/timeline.js': ['timeline.js', JS],
  '/softphone/style.css': ['style.css', 'text/css; charset=utf-8'],
};

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, state.origin);
  try {
    if (req.method === 'GET' && url.pathname === '/softphone') {
      res.writeHead(308, { location: '/softphone/' });
      return res.end();
    }
    if (req.method === 'GET' && STATIC[url.pathname]) {
      const [file, type] = STATIC[url.pathname];
      res.writeHead(200, {
        'content-type': type, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff',
        'content-security-policy': SOFTPHONE_CSP, 'referrer-policy': 'no-referrer',
      });
      const content = fs.readFileSync(path.join(WEB_DIR, file), 'utf8');
      return res.end(file === 'style.css' ? content + state.extraCss : content);
    }
    if (url.pathname.startsWith('/mock/')) return await controls(req, res, url);
    if (!/^\/(oauth|relay|webrtc-[a-z-]+)\//.test(url.pathname)) return camara(res, 404, 'NOT_FOUND', 'The requested resource does not exist');
    const correlator = req.headers['x-correlator'];
    state.log.push({ method: req.method, path: url.pathname, correlator: correlator ?? null });
    if (url.pathname.startsWith('/oauth/')) return await oauth(req, res, url);
    // Every API call carries a valid x-correlator (the gateway echoes it).
    if (correlator === undefined) violation(`${req.method} ${url.pathname} without x-correlator`);
    else if (!CORRELATOR.test(correlator)) violation(`${req.method} ${url.pathname}: invalid x-correlator ${correlator}`);
    else res.setHeader('x-correlator', correlator);
    const user = caller(req, res);
    if (!user) return undefined;
    if (url.pathname.startsWith('/relay/')) return await relay(req, res, url, user);
    if (url.pathname.startsWith('/webrtc-registration/')) return await registration(req, res, url, user);
    if (url.pathname.startsWith('/webrtc-events/')) return await subscriptions(req, res, url, user);
    if (url.pathname.startsWith('/webrtc-call-handling/')) return await calls(req, res, url, user);
    return camara(res, 404, 'NOT_FOUND', 'The requested resource does not exist');
  } catch (e) {
    console.error('[mock]', e);
    if (!res.headersSent) camara(res, 500, 'INTERNAL', String(e));
    return undefined;
  }
});

const sockets = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, state.origin);
  if (url.pathname === '/mock/far-end') {
    return sockets.handleUpgrade(req, socket, head, (ws) => {
      state.farEnd = ws;
      ws.on('message', (data) => {
        const msg = JSON.parse(String(data));
        const wake = state.farEndWaiters.get(msg.requestId);
        if (wake) {
          state.farEndWaiters.delete(msg.requestId);
          wake(msg);
        }
      });
      ws.on('close', () => {
        if (state.farEnd === ws) state.farEnd = null;
      });
    });
  }
  const m = /^\/relay\/channels\/([^/]+)\/ws$/.exec(url.pathname);
  const channel = m && state.channels.get(m[1]);
  if (!channel || url.searchParams.get('token') !== channel.info.websocketToken) {
    violation(`WebSocket refused: ${url.pathname}`);
    socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
    return undefined;
  }
  return sockets.handleUpgrade(req, socket, head, (ws) => {
    if (channel.ws) channel.ws.close(4000, 'replaced by a newer connection');
    channel.ws = ws;
    state.connections = (state.connections || 0) + 1;
    ws.send(JSON.stringify({ type: 'ready', channelId: channel.info.channelId }));
    ws.on('message', (data) => {
      let frame;
      try {
        frame = JSON.parse(String(data));
      } catch {
        return violation(`relay frame is not JSON: ${data}`);
      }
      state.frames.push(frame.type);
      if (frame.type === 'ping') state.pings = (state.pings || 0) + 1;
      if (frame.type === 'ping') ws.send(JSON.stringify({ type: 'pong' }));
      else if (frame.type === 'ack') {
        const wake = channel.pending.get(frame.deliveryId);
        if (!wake) violation(`ack of unknown delivery ${frame.deliveryId}`);
        else {
          channel.pending.delete(frame.deliveryId);
          wake();
        }
      } else violation(`unknown relay frame ${frame.type}`);
      return undefined;
    });
    ws.on('close', () => {
      if (channel.ws === ws) channel.ws = null;
    });
  });
});

server.listen(Number(option('--port', '0')), '127.0.0.1', () => {
  const { port } = server.address();
  state.origin = `http://127.0.0.1:${port}`;
  process.stdout.write(`${JSON.stringify({ listening: state.origin })}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    sockets.clients.forEach((ws) => ws.terminate());
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}
