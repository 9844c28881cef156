//! What the operator of a demo configures (the gateway's `[oauth_server]` section), with defaults
//! that make a working demo out of the box, and the checks that refuse a broken setup at start-up.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::OAuthError;

/// The scopes of the CAMARA WebRTC APIs (the `security` sections of their OpenAPI documents).
pub const CAMARA_WEBRTC_SCOPES: &[&str] = &[
    "webrtc-registration:sessions:create",
    "webrtc-registration:sessions:read",
    "webrtc-registration:sessions:write",
    "webrtc-registration:sessions:delete",
    "webrtc-call-handling:sessions:create",
    "webrtc-call-handling:sessions:read",
    "webrtc-call-handling:sessions:write",
    "webrtc-call-handling:sessions:delete",
    "webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create",
    "webrtc-events:org.camaraproject.webrtc-events.v0.session-invitation:create",
    "webrtc-events:org.camaraproject.webrtc-events.v0.registration-ends:create",
    "webrtc-events:read",
    "webrtc-events:update",
    "webrtc-events:delete",
];

/// The client id of the development client for scripts ([`ClientConfig::demo_script`]).
pub const DEMO_SCRIPT_CLIENT_ID: &str = "demo-script";

/// The secret of [`DEMO_SCRIPT_CLIENT_ID`]: published in the README on purpose, so that a
/// newcomer's `curl` needs nothing from the logs. Anyone who can reach the token endpoint can
/// use it: it is as secret as alice's password, and as unfit for production.
pub const DEMO_SCRIPT_SECRET: &str = "demo-script-dev-only-secret";

/// The placeholder in `redirect_uris` replaced by the origin (`scheme://host[:port]`) of `issuer`.
pub const ORIGIN_PLACEHOLDER: &str = "{origin}";

/// Claims every access token carries; the phone number claim must not be one of them.
const RESERVED_CLAIMS: &[&str] = &["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id"];

/// Longest token lifetime accepted (a year): keeps the date arithmetic far from overflow.
const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// The built-in authorization server (the gateway's `[oauth_server]` section).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// Read by the embedding gateway to decide whether to mount the server at all; the server
    /// itself does not look at it. Off by default: this is a development and demo provider.
    pub enabled: bool,
    /// The issuer identifier, exactly as clients reach it (the `iss` of every token). All
    /// endpoints live under its path: `{issuer}/authorize`, `{issuer}/token`, ...
    pub issuer: String,
    /// The `aud` of every access token: what the gateway's `[auth] audiences` must accept.
    pub audience: String,
    pub access_token_ttl_seconds: u64,
    pub refresh_token_ttl_seconds: u64,
    pub clients: Vec<ClientConfig>,
    /// The people who can sign in at `/authorize`.
    pub subscribers: Vec<SubscriberConfig>,
    /// The access-token claim that carries the subscriber's E.164 phone number.
    pub phone_number_claim: String,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            enabled: false,
            issuer: "http://127.0.0.1:8080/oauth".into(),
            audience: "camara-webrtc-gateway".into(),
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 86_400,
            clients: vec![ClientConfig::softphone(), ClientConfig::demo_script()],
            subscribers: vec![
                SubscriberConfig {
                    username: "alice".into(),
                    password: "alice".into(),
                    phone_number: "+818000000001".into(),
                },
                SubscriberConfig {
                    username: "bob".into(),
                    password: "bob".into(),
                    phone_number: "+818000000002".into(),
                },
            ],
            phone_number_claim: "phone_number".into(),
        }
    }
}

/// The OAuth 2.0 grant types this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
        }
    }
}

/// A registered client (application).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// `None`: a public client (a browser or native app), which must use PKCE and cannot use
    /// `client_credentials`. Otherwise a confidential client authenticating with
    /// `client_secret_basic` or `client_secret_post`.
    pub client_secret: Option<String>,
    /// Compared exactly with the `redirect_uri` of each request; `{origin}` stands for the
    /// origin of `issuer`.
    pub redirect_uris: Vec<String>,
    /// What the client may ask for; also what it gets when it asks for no scope.
    pub allowed_scopes: Vec<String>,
    pub grant_types: Vec<GrantType>,
    /// For `client_credentials`: the E.164 number its tokens carry (a server acting for one line).
    pub phone_number: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: String::new(),
            client_secret: None,
            redirect_uris: Vec::new(),
            allowed_scopes: all_scopes(),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            phone_number: None,
        }
    }
}

impl ClientConfig {
    /// The browser softphone of the demo: a public client served from the issuer's origin.
    pub fn softphone() -> Self {
        ClientConfig {
            client_id: "softphone".into(),
            redirect_uris: vec![format!("{ORIGIN_PLACEHOLDER}/softphone/")],
            ..ClientConfig::default()
        }
    }

    /// The development client of scripts and `curl`: `client_credentials` with a published
    /// secret ([`DEMO_SCRIPT_SECRET`]), tokens for alice's line with every scope of the three
    /// APIs, since a two-legged token has no user to take a number from.
    pub fn demo_script() -> Self {
        ClientConfig {
            client_id: DEMO_SCRIPT_CLIENT_ID.into(),
            client_secret: Some(DEMO_SCRIPT_SECRET.into()),
            grant_types: vec![GrantType::ClientCredentials],
            phone_number: Some("+818000000001".into()),
            ..ClientConfig::default()
        }
    }

    pub fn is_public(&self) -> bool {
        self.client_secret.is_none()
    }

    pub(crate) fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

/// Secrets stay out of logs.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_uris", &self.redirect_uris)
            .field("allowed_scopes", &self.allowed_scopes)
            .field("grant_types", &self.grant_types)
            .field("phone_number", &self.phone_number)
            .finish()
    }
}

/// A subscriber who signs in with a username and password (held in clear: demo only).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriberConfig {
    pub username: String,
    pub password: String,
    /// E.164 with the leading `+`, e.g. `+818000000001`.
    pub phone_number: String,
}

impl fmt::Debug for SubscriberConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("phone_number", &self.phone_number)
            .finish()
    }
}

fn all_scopes() -> Vec<String> {
    std::iter::once("openid").chain(CAMARA_WEBRTC_SCOPES.iter().copied()).map(str::to_string).collect()
}

/// `+` then 1 to 15 digits, the first one not 0 (ITU-T E.164).
pub(crate) fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else { return false };
    (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty() && scope.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The parts of `issuer` the server needs, checked.
pub(crate) struct IssuerParts {
    /// The path all endpoints live under, without a trailing slash ("" for the root).
    pub(crate) path: String,
    /// `scheme://host[:port]`, for the `{origin}` placeholder.
    pub(crate) origin: String,
}

impl OAuthConfig {
    /// Checks everything a request would otherwise trip over, and expands `{origin}`.
    pub(crate) fn validated(mut self) -> Result<(Self, IssuerParts), OAuthError> {
        let bad = |m: String| Err(OAuthError::Config(m));
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| OAuthError::Config(format!("issuer {:?} is not a URL: {e}", self.issuer)))?;
        if !matches!(issuer.scheme(), "http" | "https") || issuer.host().is_none() {
            return bad(format!("issuer {:?} must be an http or https URL with a host", self.issuer));
        }
        // OIDC Discovery §2 / RFC 8414 §2: no query, no fragment.
        if issuer.query().is_some() || issuer.fragment().is_some() || !issuer.username().is_empty() {
            return bad(format!("issuer {:?} must not have a query, fragment or user", self.issuer));
        }
        let path = issuer.path().trim_end_matches('/').to_string();
        // The path becomes an axum route: plain segments only.
        if !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b)) || path.contains("//") {
            return bad(format!("issuer path {path:?} may only hold letters, digits and - . _ ~ /"));
        }
        let parts = IssuerParts { path, origin: issuer.origin().ascii_serialization() };

        if self.audience.is_empty() {
            return bad("audience must not be empty".into());
        }
        for (name, ttl) in [
            ("access_token_ttl_seconds", self.access_token_ttl_seconds),
            ("refresh_token_ttl_seconds", self.refresh_token_ttl_seconds),
        ] {
            if ttl == 0 || ttl > MAX_TTL_SECONDS {
                return bad(format!("{name} must be between 1 and {MAX_TTL_SECONDS}"));
            }
        }
        if self.phone_number_claim.is_empty() || RESERVED_CLAIMS.contains(&self.phone_number_claim.as_str()) {
            return bad(format!("phone_number_claim {:?} must be a claim name of its own", self.phone_number_claim));
        }

        let mut ids = HashSet::new();
        for client in &mut self.clients {
            let id = client.client_id.clone();
            let fail = |m: &str| Err(OAuthError::Config(format!("client {id:?}: {m}")));
            if id.is_empty() || id.contains(':') || id.chars().any(char::is_control) {
                return fail("client_id must be non-empty, without ':' or control characters");
            }
            if !ids.insert(id.clone()) {
                return fail("client_id is registered twice");
            }
            if client.client_secret.as_deref() == Some("") {
                return fail("client_secret must not be empty (leave it out for a public client)");
            }
            if client.grant_types.is_empty() {
                return fail("grant_types is empty");
            }
            if client.is_public() && client.allows(GrantType::ClientCredentials) {
                return fail("a public client (no client_secret) cannot use client_credentials");
            }
            if let Some(scope) = client.allowed_scopes.iter().find(|s| !is_scope_token(s)) {
                return fail(&format!("allowed scope {scope:?} is not a valid scope token"));
            }
            if let Some(number) = &client.phone_number
                && !is_e164(number)
            {
                return fail(&format!("phone_number {number:?} is not E.164 (+ and up to 15 digits)"));
            }
            for uri in &mut client.redirect_uris {
                *uri = uri.replace(ORIGIN_PLACEHOLDER, &parts.origin);
                match url::Url::parse(uri) {
                    // RFC 6749 §3.1.2: absolute, no fragment.
                    Ok(parsed) if parsed.fragment().is_none() => {}
                    _ => return fail(&format!("redirect URI {uri:?} must be an absolute URL without fragment")),
                }
            }
            if client.allows(GrantType::AuthorizationCode) && client.redirect_uris.is_empty() {
                return fail("authorization_code needs at least one redirect URI");
            }
        }

        let mut names = HashSet::new();
        for subscriber in &self.subscribers {
            let name = &subscriber.username;
            if name.is_empty() || !names.insert(name.clone()) {
                return bad(format!("subscriber {name:?}: username must be non-empty and unique"));
            }
            if subscriber.password.is_empty() {
                return bad(format!("subscriber {name:?}: password must not be empty"));
            }
            if !is_e164(&subscriber.phone_number) {
                return bad(format!(
                    "subscriber {name:?}: phone_number {:?} is not E.164 (+ and up to 15 digits)",
                    subscriber.phone_number
                ));
            }
        }
        Ok((self, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_expand_the_origin() {
        let (config, parts) = OAuthConfig::default().validated().unwrap();
        assert_eq!(parts.path, "/oauth");
        assert_eq!(parts.origin, "http://127.0.0.1:8080");
        assert_eq!(config.clients[0].redirect_uris, ["http://127.0.0.1:8080/softphone/"]);
        assert!(config.clients[0].is_public());
        let script = &config.clients[1];
        assert_eq!(script.client_id, DEMO_SCRIPT_CLIENT_ID);
        assert!(!script.is_public() && script.allows(GrantType::ClientCredentials));
        assert_eq!(script.phone_number, Some(config.subscribers[0].phone_number.clone()), "alice's line");
    }

    type Change = Box<dyn Fn(&mut OAuthConfig)>;

    #[test]
    fn broken_settings_are_refused() {
        let cases: Vec<(&str, Change)> = vec![
            ("not a URL", Box::new(|c| c.issuer = "nope".into())),
            ("query", Box::new(|c| c.issuer = "http://h/oauth?x=1".into())),
            ("path", Box::new(|c| c.issuer = "http://h/o{a}".into())),
            ("ttl", Box::new(|c| c.access_token_ttl_seconds = 0)),
            ("claim", Box::new(|c| c.phone_number_claim = "sub".into())),
            ("public cc", Box::new(|c| c.clients[0].grant_types.push(GrantType::ClientCredentials))),
            ("twice", Box::new(|c| c.clients.push(ClientConfig::softphone()))),
            ("e164", Box::new(|c| c.subscribers[0].phone_number = "818000000001".into())),
            ("fragment", Box::new(|c| c.clients[0].redirect_uris = vec!["http://h/cb#x".into()])),
            ("scope", Box::new(|c| c.clients[0].allowed_scopes.push("a\"b".into()))),
        ];
        for (name, change) in cases {
            let mut config = OAuthConfig::default();
            change(&mut config);
            assert!(config.validated().is_err(), "{name} should be refused");
        }
    }

    #[test]
    fn e164() {
        assert!(is_e164("+818000000001"));
        assert!(!is_e164("+0818"));
        assert!(!is_e164("+"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+81a"));
    }
}
