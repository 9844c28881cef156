//! Gateway configuration: embedded defaults, then an optional TOML file, then `CAMARA_GW_*`
//! environment variables (`CAMARA_GW_HTTP__LISTEN=0.0.0.0:8443`, say).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The process's log lines: `format = "text"` (default) or `"json"`; `RUST_LOG` filters.
    pub log: crate::logging::LogConfig,
    pub http: HttpConfig,
    pub api: ApiConfig,
    /// Access-token verification (CAMARA ICM): JWKS (file, URL or OIDC discovery), introspection.
    pub auth: camara_auth::VerifierConfig,
    pub sip: SipSettings,
    pub media: MediaConfig,
    pub registration: RegistrationPolicy,
    pub notifications: NotificationConfig,
    /// The operator's API (dead letters); not served unless a token is set.
    pub admin: AdminConfig,
    /// What SIGTERM / SIGINT does: a graceful drain.
    pub shutdown: ShutdownConfig,
    pub storage: StorageConfig,
    pub plugins: PluginsConfig,
    /// The built-in OAuth/OIDC provider (development and demos; on in the embedded defaults so a
    /// newcomer can sign in, off in a production configuration).
    pub oauth_server: camara_oauth::OAuthConfig,
    /// The Notification Relay, when it runs in this process (`[device_side] relay`).
    pub relay: camara_relay::RelayConfig,
    pub device_side: DeviceSide,
    /// The file this configuration was read from, read again to reload the plugins.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            log: Default::default(),
            http: Default::default(),
            api: Default::default(),
            auth: Default::default(),
            sip: Default::default(),
            media: Default::default(),
            registration: Default::default(),
            notifications: Default::default(),
            admin: Default::default(),
            shutdown: Default::default(),
            storage: Default::default(),
            plugins: Default::default(),
            oauth_server: camara_oauth::OAuthConfig { enabled: true, ..Default::default() },
            relay: Default::default(),
            device_side: Default::default(),
            source: None,
        }
    }
}

/// What of the seed's device side runs in this process. The embedded defaults run all of it, so
/// one command gives a working call; an operator turns each part off for the real one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceSide {
    /// The Notification Relay under `[relay] mount_path` (off when devices use an external relay).
    pub relay: bool,
    /// The browser softphone at `/softphone/`.
    pub softphone: bool,
    /// A SIP endpoint on the network side that answers calls and echoes their audio, and calls
    /// the device on `POST /demo/calls`; it is the `[sip] next_hop` when none is configured.
    pub demo_endpoint: bool,
    /// Where the demo endpoint listens (UDP); port 0 picks a free one.
    pub demo_endpoint_listen: SocketAddr,
}

impl Default for DeviceSide {
    fn default() -> Self {
        DeviceSide {
            relay: true,
            softphone: true,
            demo_endpoint: true,
            demo_endpoint_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// Where registrations, subscriptions, sessions and undelivered events are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where the state is kept: `redb` (an embedded file at `path`), `memory` (lost on exit) or
    /// `redis` (a server at `url`, shared by several gateway nodes). Unset: `redb` when `path`
    /// is set, else `memory`.
    pub backend: Option<StorageBackend>,
    /// A redb file (created when missing).
    pub path: Option<PathBuf>,
    /// The Redis server for `backend = "redis"`: `redis://host:port/db`, with a password as
    /// `redis://:password@host:port`. Best from the environment
    /// (`CAMARA_GW_STORAGE__URL`) when it carries a password.
    pub url: Option<String>,
    /// Put before every Redis key, so that several deployments (or tests) share one server.
    pub key_prefix: String,
    /// This gateway's name among the nodes sharing the store: a session names the node that
    /// holds its call, and a node ends (after a restart, on a drain) only its own calls. Each
    /// node needs its own, the same across its restarts.
    pub node_id: String,
    /// Where the other nodes reach this one (its API's base URL, for requests on the calls it
    /// holds); default `http://{[http] listen}` as bound.
    pub node_address: Option<String>,
    /// A node that has not said it is alive for this long is dead to the others, and one of
    /// them takes over its calls, events and SIP registrations. Each node says so every third.
    pub node_lease_ms: u64,
}

/// The kinds of storage of `[storage] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Redb,
    Memory,
    Redis,
}

impl StorageConfig {
    /// Whether several gateway nodes may share the store (only Redis can be).
    pub fn is_shared(&self) -> bool {
        self.backend() == StorageBackend::Redis
    }

    /// `node_lease_ms`, at least 300 ms (a heartbeat every 100 ms).
    pub fn node_lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.node_lease_ms.max(300))
    }

    /// The backend in use: the one named, else redb when a file is given, else memory.
    pub fn backend(&self) -> StorageBackend {
        self.backend.unwrap_or(if self.path.is_some() { StorageBackend::Redb } else { StorageBackend::Memory })
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: None,
            path: Some(PathBuf::from(".gateway-data/state.redb")),
            url: None,
            key_prefix: "camara-gateway".into(),
            node_id: crate::store::DEFAULT_NODE.into(),
            node_address: None,
            node_lease_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The externally visible root URL (CloudEvents `source`); default `http://{listen}`.
    pub public_base_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:8080".parse().expect("literal"), public_base_url: None }
    }
}

/// Base paths of the three APIs (the version segment is configurable).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub registration_base: String,
    pub call_handling_base: String,
    pub events_base: String,
    /// Requests per second each API client may make (keyed by the token's `client_id`, else its
    /// subject); above it the API answers 429.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Requests of one client that may be in progress at once (keyed as the rate limit); above
    /// it the API answers 429, so that a client whose requests are slow to answer cannot fill
    /// the plugins' queues for everyone. 0: no limit.
    pub max_requests_in_progress_per_client: u32,
    /// Whether one subscription may carry several event `types` (the consolidated subscription
    /// of the CAMARA call flows). Off, a request with more than one type is answered
    /// `422 MULTIEVENT_SUBSCRIPTION_NOT_SUPPORTED` and every subscription has one type, as the
    /// `Subscription` schema of webrtc-events (`maxItems: 1`) says.
    pub multi_event_subscriptions: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            registration_base: "/webrtc-registration/v0.3".into(),
            call_handling_base: "/webrtc-call-handling/v0.3".into(),
            events_base: "/webrtc-events/v0.2".into(),
            rate_limit_per_second: 20,
            rate_limit_burst: 40,
            max_requests_in_progress_per_client: 64,
            multi_event_subscriptions: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipTransportName {
    Udp,
    Tcp,
    /// SIP over TLS (`sip:` URIs with `transport=tls`); needs `[sip] tls_listen` and `[sip.tls]`.
    Tls,
}

impl SipTransportName {
    pub fn transport(self) -> camara_sip::Transport {
        match self {
            SipTransportName::Udp => camara_sip::Transport::Udp,
            SipTransportName::Tcp => camara_sip::Transport::Tcp,
            SipTransportName::Tls => camara_sip::Transport::Tls,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipSettings {
    pub udp_listen: Option<SocketAddr>,
    pub tcp_listen: Option<SocketAddr>,
    /// SIP over TLS listener (conventionally port 5061); needs `[sip.tls]`. Without it the
    /// `tls` transport is not available for the next hop or the registrar either.
    pub tls_listen: Option<SocketAddr>,
    /// Certificate, key and trust anchors of SIP over TLS.
    pub tls: Option<SipTlsSettings>,
    /// Host name or address in Via, Contact and Call-ID; default: the listen address.
    pub advertised_host: Option<String>,
    /// Where INVITEs go (outbound proxy / SBC); none means calls cannot be placed.
    pub next_hop: Option<SocketAddr>,
    pub next_hop_transport: SipTransportName,
    /// Where REGISTERs go when the api-mapping plugin asks for them (`sip-account` mode).
    pub registrar: Option<RegistrarConfig>,
    /// The SIP account of each phone number, for `sip-account` mode, keyed by E.164 number.
    pub accounts: BTreeMap<String, SipAccount>,
    /// Answers digest challenges to INVITEs of numbers without an account of their own (a trunk
    /// account in number-range mode); a number's `accounts` entry is used first.
    pub trunk_account: Option<SipAccount>,
    /// An incoming call the device has not answered after this long is refused with 480.
    pub no_answer_seconds: u64,
    /// RFC 4028 session interval asked for in our INVITEs and offered in our 2xx (0: no session
    /// timers of ours); a call whose refresher lets it expire is ended with BYE.
    pub session_expires_seconds: u32,
    /// The smallest session interval accepted (`Min-SE`; 422 below it). RFC 4028 wants at least
    /// 90 on the wire; less is for tests and labs.
    pub min_se_seconds: u32,
    /// How the device's hold and resume reach the network: `reinvite` (understood everywhere)
    /// or `update` (RFC 3311: one transaction, for networks that prefer it).
    pub reoffer_method: ReofferMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReofferMethod {
    #[default]
    Reinvite,
    Update,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarConfig {
    pub address: SocketAddr,
    #[serde(default = "default_transport")]
    pub transport: SipTransportName,
    /// The registrar's domain (request URI `sip:{domain}`).
    pub domain: String,
    /// Requested binding lifetime; the registrar may grant less. Refreshed before it ends.
    #[serde(default = "default_register_expires")]
    pub expires_seconds: u32,
    /// How long `POST /sessions` waits for the registrar's answer.
    #[serde(default = "default_register_timeout")]
    pub answer_timeout_ms: u64,
}

/// `[sip.tls]`: PEM files, read at startup; a file that cannot be read or parsed stops the
/// gateway with an error naming it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTlsSettings {
    /// Certificate chain (leaf first) presented on `tls_listen`, and to a peer that asks the
    /// gateway for a client certificate.
    pub certificate: PathBuf,
    /// Private key of `certificate` (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// CA certificate(s) that the certificates of the SBC and registrar must chain to. Without
    /// it the gateway opens no TLS connection (it still accepts them): an operator's SBC is
    /// rarely certified by a public CA, and trusting every public CA would be a weak default.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The name the peer's certificate must carry; default: the IP address of `next_hop` (or of
    /// the registrar), since the gateway does no DNS.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `false` accepts a certificate that chains to `ca` whatever names it carries.
    #[serde(default = "default_verify_server_name")]
    pub verify_server_name: bool,
}

fn default_verify_server_name() -> bool {
    true
}

impl SipTlsSettings {
    /// Reads and checks the PEM files.
    pub fn load(&self) -> Result<camara_sip::TlsConfig, ConfigError> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map_err(|e| ConfigError(format!("[sip.tls] {what} {}: {e}", path.display())))
        };
        let certificate = read(&self.certificate, "certificate")?;
        let private_key = read(&self.private_key, "private_key")?;
        let mut tls = camara_sip::TlsConfig::new(&certificate, &private_key).map_err(|e| {
            let file = match e {
                camara_sip::TlsConfigError::NoPrivateKey | camara_sip::TlsConfigError::BadPrivateKey(_) => {
                    format!("private_key {}", self.private_key.display())
                }
                camara_sip::TlsConfigError::Rejected(_) => {
                    format!(
                        "certificate {} with private_key {}",
                        self.certificate.display(),
                        self.private_key.display()
                    )
                }
                _ => format!("certificate {}", self.certificate.display()),
            };
            ConfigError(format!("[sip.tls] {file}: {e}"))
        })?;
        if let Some(ca) = &self.ca {
            tls = tls
                .trust_pem(&read(ca, "ca")?)
                .map_err(|e| ConfigError(format!("[sip.tls] ca {}: {e}", ca.display())))?;
        }
        if let Some(name) = &self.server_name {
            tls = tls.server_name(name).map_err(|e| ConfigError(format!("[sip.tls] server_name: {e}")))?;
        }
        Ok(tls.verify_server_name(self.verify_server_name))
    }
}

fn default_transport() -> SipTransportName {
    SipTransportName::Udp
}

fn default_register_expires() -> u32 {
    3600
}

fn default_register_timeout() -> u64 {
    10_000
}

/// Digest credentials of one SIP account (no AKA: the gateway has no SIM).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipAccount {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SipAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipAccount").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            udp_listen: Some("127.0.0.1:5060".parse().expect("literal")),
            tcp_listen: Some("127.0.0.1:5060".parse().expect("literal")),
            tls_listen: None,
            tls: None,
            advertised_host: None,
            next_hop: None,
            next_hop_transport: SipTransportName::Udp,
            registrar: None,
            accounts: BTreeMap::new(),
            trunk_account: None,
            no_answer_seconds: 60,
            session_expires_seconds: 1800,
            min_se_seconds: 90,
            reoffer_method: ReofferMethod::Reinvite,
        }
    }
}

/// Media anchoring: the RTP leg towards the network and the WebRTC leg towards devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Address of the RTP leg (bound, and in the SIP-side SDP `c=` line); default: the SIP
    /// listen address.
    pub address: Option<String>,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Address ICE gathers its candidate on, towards devices; default: `address`.
    pub webrtc_address: Option<String>,
    /// Public address announced to devices when `webrtc_address` is behind a 1:1 NAT.
    pub webrtc_announced_address: Option<String>,
    /// UDP ports of the WebRTC leg (0 and 0: any free port).
    pub webrtc_port_min: u16,
    pub webrtc_port_max: u16,
    /// ICE lite, for a gateway on a public address (full ICE otherwise).
    pub ice_lite: bool,
    /// No RTP from the network for this long ends the call with a status event.
    pub media_timeout_seconds: u64,
    /// How long the device leg may stay without ICE connectivity (its consent lost, RFC 7675,
    /// or ICE failed) before the call ends; room for the device to restart ICE.
    pub device_failure_grace_seconds: u64,
    /// G.711 laws the network accepts, preferred first (`PCMU`, `PCMA`).
    pub network_codecs: Vec<String>,
    /// Opus towards the device, G.711 towards the network, when they share no G.711.
    pub transcoding: bool,
    /// Opus towards the device whenever it offers Opus.
    pub prefer_opus_to_device: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            address: None,
            rtp_port_min: 30000,
            rtp_port_max: 39999,
            webrtc_address: None,
            webrtc_announced_address: None,
            webrtc_port_min: 0,
            webrtc_port_max: 0,
            ice_lite: false,
            media_timeout_seconds: 30,
            device_failure_grace_seconds: 10,
            network_codecs: vec!["PCMU".into(), "PCMA".into()],
            transcoding: true,
            prefer_opus_to_device: false,
        }
    }
}

impl MediaConfig {
    /// The media anchor's settings; `default_address` is the SIP listen address.
    pub fn anchor(&self, default_address: std::net::IpAddr) -> anyhow::Result<camara_media::MediaConfig> {
        let ip = |field: &str, value: &Option<String>, default: std::net::IpAddr| -> anyhow::Result<std::net::IpAddr> {
            match value {
                Some(v) => v.parse().map_err(|_| anyhow::anyhow!("[media] {field} = {v:?} is not an IP address")),
                None => Ok(default),
            }
        };
        let network_address = ip("address", &self.address, default_address)?;
        let mut network = Vec::new();
        for name in &self.network_codecs {
            network.push(match name.to_ascii_uppercase().as_str() {
                "PCMU" => camara_media::Encoding::Pcmu,
                "PCMA" => camara_media::Encoding::Pcma,
                _ => anyhow::bail!("[media] network_codecs: {name:?} is not PCMU or PCMA"),
            });
        }
        Ok(camara_media::MediaConfig {
            network_address,
            rtp_ports: (self.rtp_port_min, self.rtp_port_max),
            webrtc_address: ip("webrtc_address", &self.webrtc_address, network_address)?,
            webrtc_announced_address: match &self.webrtc_announced_address {
                Some(_) => Some(ip("webrtc_announced_address", &self.webrtc_announced_address, network_address)?),
                None => None,
            },
            webrtc_ports: (self.webrtc_port_min != 0).then_some((self.webrtc_port_min, self.webrtc_port_max)),
            ice_lite: self.ice_lite,
            media_timeout: std::time::Duration::from_secs(self.media_timeout_seconds.max(1)),
            device_failure_grace: std::time::Duration::from_secs(self.device_failure_grace_seconds),
            codecs: camara_media::CodecPolicy {
                network,
                transcoding: self.transcoding,
                prefer_opus_to_device: self.prefer_opus_to_device,
            },
        })
    }
}

/// Registration lifetime policy (seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationPolicy {
    pub min_ttl_seconds: u64,
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    /// Whether calls of a registration that expires are ended (BYE or CANCEL). CAMARA leaves it
    /// to the implementation (WebRTC issue #146); the default treats the registration as what
    /// permits the calls.
    pub end_calls_on_expiry: bool,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        RegistrationPolicy {
            min_ttl_seconds: 60,
            default_ttl_seconds: 3600,
            max_ttl_seconds: 86400,
            end_calls_on_expiry: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    /// Development only: accept `http://` sinks and loopback addresses.
    pub allow_http_loopback_sinks: bool,
    /// Accept sinks in private, link-local, unique-local and shared address ranges (inside the
    /// operator's network), IPv4-embedding IPv6 forms included. Off by default: a client-chosen
    /// sink must not reach internal services. The other special-purpose ranges are refused
    /// whatever this says (`sink_policy::ranges`).
    pub allow_private_sinks: bool,
    pub request_timeout_ms: u64,
    /// `subscription-ended` with ACCESS_TOKEN_EXPIRED goes out this long before the sink
    /// credential expires, so that the sink still accepts it.
    pub credential_expiry_notice_seconds: u64,
    /// The wait after a first failed delivery (or routing) attempt, doubled after each further
    /// one, with jitter.
    pub retry_first_delay_ms: u64,
    /// The longest wait between two attempts; a sink's `Retry-After` on 429 or 503 may ask more.
    pub retry_max_delay_ms: u64,
    /// How long an event is tried before it moves to the dead letters (see `[admin]`). Webhook
    /// receivers are down for hours at times: a day by default.
    pub retry_horizon_seconds: u64,
}

impl NotificationConfig {
    pub fn sink_policy(&self) -> crate::sink_policy::SinkPolicy {
        crate::sink_policy::SinkPolicy {
            allow_loopback: self.allow_http_loopback_sinks,
            allow_private: self.allow_private_sinks,
            allow_reserved: false,
        }
    }

    pub fn retry_schedule(&self) -> crate::schedule::RetrySchedule {
        crate::schedule::RetrySchedule {
            first_delay: std::time::Duration::from_millis(self.retry_first_delay_ms.max(1)),
            max_delay: std::time::Duration::from_millis(self.retry_max_delay_ms.max(1)),
            horizon: std::time::Duration::from_secs(self.retry_horizon_seconds),
        }
    }
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            allow_http_loopback_sinks: false,
            allow_private_sinks: false,
            request_timeout_ms: 5000,
            credential_expiry_notice_seconds: 60,
            retry_first_delay_ms: 1000,
            retry_max_delay_ms: 600_000,
            retry_horizon_seconds: 24 * 3600,
        }
    }
}

/// `[admin]`: the operator's API under `/admin/` (dead letters: list, replay, purge).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The bearer token an operator presents (`Authorization: Bearer ...`). Unset, the admin
    /// API is not served at all: it is not protected by the CAMARA access tokens, whose
    /// subscribers must never replay or purge each other's events. Best set from the environment
    /// (`CAMARA_GW_ADMIN__BEARER_TOKEN`).
    pub bearer_token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig").field("bearer_token", &self.bearer_token.as_ref().map(|_| "<set>")).finish()
    }
}

/// `[shutdown]`: the drain on SIGTERM or SIGINT (a second signal exits at once).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// The longest a drain takes, from the signal to the exit. New sessions and incoming calls
    /// are refused (503) from the signal on; live calls go on until [`Self::ending_reserve`]
    /// before the end, then are ended with BYE and `Terminated`; the rest of the period is for
    /// the BYEs' answers and the events still due. Set it below the supervisor's kill timeout
    /// (Kubernetes' default grace period is 30 s).
    pub drain_seconds: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_seconds: 25 }
    }
}

impl ShutdownConfig {
    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_seconds)
    }

    /// The end of the period kept for ending the calls still up and delivering their events:
    /// 5 s, or half the period when it is shorter than 10 s.
    pub fn ending_reserve(&self) -> std::time::Duration {
        (self.period() / 2).min(std::time::Duration::from_secs(5))
    }
}

/// One plugin slot: the embedded default unless `wasm` names a component file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSlot {
    pub wasm: Option<PathBuf>,
    /// Handed to the plugin's `validate-config` at load and readable through its `config` import.
    pub config: BTreeMap<String, String>,
    pub memory_limit_mib: Option<usize>,
    pub deadline_ms: Option<u64>,
    /// Calls of this plugin that may run at once: its share of `[plugins.runtime]
    /// max_concurrent_calls`, a third by default, so that a looping or flooded plugin cannot
    /// take the instances of the others.
    pub max_concurrent_calls: Option<u32>,
    /// Calls that may wait (each at most one deadline) when the share is in use, as many as the
    /// share by default; beyond them a request is answered 503 at once.
    pub max_waiting_calls: Option<u32>,
    /// The circuit breaker: this many failures (traps, deadlines, memory) within
    /// `breaker_window_seconds` refuse the plugin's calls at once (503) for
    /// `breaker_cool_down_seconds`, then one call probes. 0 turns it off.
    pub breaker_failures: Option<u32>,
    pub breaker_window_seconds: Option<u64>,
    pub breaker_cool_down_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    pub authorization: PluginSlot,
    pub api_mapping: PluginSlot,
    pub notification_routing: PluginSlot,
    pub runtime: PluginRuntimeSettings,
}

/// The engine all plugins share.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginRuntimeSettings {
    /// Pooling allocator (fast instantiation); falls back to on-demand when refused.
    pub pooling: bool,
    /// Plugin calls that may run at once (the instance pool), shared by the three plugins.
    pub max_concurrent_calls: u32,
    /// Memory a pool slot keeps mapped between calls. Fast where the kernel has `pagemap_scan`
    /// (Linux 6.7+); set 0 on older kernels (see BENCHMARKS.md).
    pub keep_resident_kib: usize,
}

impl Default for PluginRuntimeSettings {
    fn default() -> Self {
        let defaults = camara_plugin_host::RuntimeConfig::default();
        PluginRuntimeSettings {
            pooling: defaults.pooling,
            max_concurrent_calls: defaults.max_concurrent_calls,
            keep_resident_kib: defaults.keep_resident_bytes >> 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl GatewayConfig {
    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(GatewayConfig::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!("{} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: GatewayConfig =
            figment.merge(Env::prefixed("CAMARA_GW_").split("__")).extract().map_err(|e| ConfigError(e.to_string()))?;
        let mut config = config;
        config.source = file.map(Path::to_path_buf);
        let r = &config.registration;
        if !(r.min_ttl_seconds <= r.default_ttl_seconds && r.default_ttl_seconds <= r.max_ttl_seconds) {
            return Err(ConfigError("registration: need min_ttl <= default_ttl <= max_ttl".into()));
        }
        Ok(config)
    }

    pub fn public_base_url(&self) -> String {
        self.http.public_base_url.clone().unwrap_or_else(|| format!("http://{}", self.http.listen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `examples/two-nodes/` is what the README points operators to: it must load as written.
    #[test]
    fn the_two_node_example_loads() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/two-nodes");
        let a = GatewayConfig::load(Some(&examples.join("node-a.toml"))).unwrap();
        let b = GatewayConfig::load(Some(&examples.join("node-b.toml"))).unwrap();
        for node in [&a, &b] {
            assert_eq!(node.storage.backend(), StorageBackend::Redis);
            assert!(node.storage.url.is_some());
            assert!(!node.oauth_server.enabled, "one provider key per process cannot serve two nodes");
        }
        assert_eq!((a.storage.node_id.as_str(), b.storage.node_id.as_str()), ("a", "b"));
        assert_eq!(a.storage.key_prefix, b.storage.key_prefix);
        assert_ne!(a.http.listen, b.http.listen);
        assert_ne!(a.sip.udp_listen, b.sip.udp_listen);
    }

    #[test]
    fn the_backend_follows_the_path_unless_named() {
        let mut storage = StorageConfig::default();
        assert_eq!(storage.backend(), StorageBackend::Redb);
        storage.path = None;
        assert_eq!(storage.backend(), StorageBackend::Memory);
        storage.backend = Some(StorageBackend::Redis);
        assert_eq!(storage.backend(), StorageBackend::Redis);
    }
}
