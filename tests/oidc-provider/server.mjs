// An OpenID Provider that is not this project's code: the npm package `oidc-provider`, configured
// the way an operator's IdP would issue CAMARA access tokens to the gateway. Started by
// tests/tests/oidc_interop.rs as `node server.mjs PORT`; prints one JSON line when listening:
//   {"ready":true,"issuer":"http://127.0.0.1:PORT","clients":{...}}
// and exits when its standard input closes (the test went away).
//
// - Issuer http://127.0.0.1:PORT (loopback http, development only).
// - Signing keys made at start-up: RS256 (ID tokens, JWT access tokens for the "other" API) and
//   ES256 (JWT access tokens for the gateway), both in the JWKS.
// - Resource servers (RFC 8707 resource indicators):
//     urn:camara:webrtc-gateway         JWT access tokens, aud "camara-webrtc-gateway" (the default)
//     urn:camara:webrtc-gateway:opaque  opaque access tokens for the same audience (introspection)
//     urn:example:another-api           JWT access tokens, aud "another-api"
// - Clients (client_credentials, client_secret_basic); each one stands for one subscriber's app,
//   whose E.164 number goes into its tokens as `phone_number` (extraTokenClaims):
//     camara-app          every CAMARA WebRTC scope, +818000000001
//     camara-app-limited  no webrtc-registration scope, +818000000002
//     camara-gateway      the gateway itself, for RFC 7662 introspection only
// - Token introspection (RFC 7662) and revocation (RFC 7009) at the discovery document's
//   introspection_endpoint and revocation_endpoint.
import * as crypto from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const CAMARA_SCOPES = [
  'webrtc-registration:sessions:create', 'webrtc-registration:sessions:read',
  'webrtc-registration:sessions:write', 'webrtc-registration:sessions:delete',
  'webrtc-call-handling:sessions:create', 'webrtc-call-handling:sessions:read',
  'webrtc-call-handling:sessions:write', 'webrtc-call-handling:sessions:delete',
  'webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create',
  'webrtc-events:org.camaraproject.webrtc-events.v0.session-invitation:create',
  'webrtc-events:org.camaraproject.webrtc-events.v0.registration-ends:create',
  'webrtc-events:read', 'webrtc-events:update', 'webrtc-events:delete',
];
const LIMITED_SCOPES = CAMARA_SCOPES.filter((s) => !s.startsWith('webrtc-registration:'));

const GATEWAY_RESOURCE = 'urn:camara:webrtc-gateway';
const OPAQUE_RESOURCE = 'urn:camara:webrtc-gateway:opaque';
const OTHER_RESOURCE = 'urn:example:another-api';
const RESOURCE_SERVERS = {
  [GATEWAY_RESOURCE]: {
    audience: 'camara-webrtc-gateway',
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'ES256' } },
  },
  [OPAQUE_RESOURCE]: { audience: 'camara-webrtc-gateway', accessTokenFormat: 'opaque' },
  [OTHER_RESOURCE]: { audience: 'another-api', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } },
};

const CLIENTS = {
  'camara-app': { secret: 'camara-app-secret', scopes: CAMARA_SCOPES, phoneNumber: '+818000000001' },
  'camara-app-limited': { secret: 'camara-app-limited-secret', scopes: LIMITED_SCOPES, phoneNumber: '+818000000002' },
  'camara-gateway': { secret: 'camara-gateway-secret', scopes: [], phoneNumber: undefined },
};

function signingKey(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(4).toString('hex')}` };
}

const provider = new Provider(issuer, {
  clients: Object.entries(CLIENTS).map(([clientId, c]) => ({
    client_id: clientId,
    client_secret: c.secret,
    grant_types: c.scopes.length ? ['client_credentials'] : [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: c.scopes.join(' ') || undefined,
  })),
  jwks: {
    keys: [
      signingKey('rsa', { modulusLength: 2048 }, 'RS256'),
      signingKey('ec', { namedCurve: 'P-256' }, 'ES256'),
    ],
  },
  scopes: ['openid', ...CAMARA_SCOPES],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token request without `resource` is for the gateway.
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? GATEWAY_RESOURCE,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const server = RESOURCE_SERVERS[resourceIndicator];
        if (!server) throw new Provider.errors.InvalidTarget();
        return { scope: CAMARA_SCOPES.join(' '), accessTokenTTL: 600, ...server };
      },
    },
  },
  // The subscriber of a client_credentials token is the one its client stands for.
  extraTokenClaims: async (_ctx, token) => {
    const phoneNumber = CLIENTS[token.clientId]?.phoneNumber;
    return phoneNumber ? { phone_number: phoneNumber } : undefined;
  },
});

provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));

const server = provider.listen(port, '127.0.0.1', () => {
  const clients = Object.fromEntries(Object.entries(CLIENTS).map(([id, c]) => [id, {
    secret: c.secret, phoneNumber: c.phoneNumber ?? null,
  }]));
  process.stdout.write(`${JSON.stringify({
    ready: true,
    issuer,
    resources: { gateway: GATEWAY_RESOURCE, opaque: OPAQUE_RESOURCE, other: OTHER_RESOURCE },
    clients,
  })}\n`);
});
server.on('error', (err) => {
  console.error(`oidc-provider cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
});

// The test holds our stdin; when it closes, we are no longer wanted.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
