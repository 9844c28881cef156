//! Test support for the end-to-end tests: real tokens, a real HTTP sink, a real SIP peer (sipp),
//! and a gateway started in-process on free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use camara_gateway::config::{GatewayConfig, SipTransportName};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const DEVICE_ID: &str = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
pub const ALICE: &str = "+818000000001";
pub const BOB: &str = "+818000000002";
pub const ISSUER: &str = "https://auth.operator.test";
pub const AUDIENCE: &str = "camara-webrtc-gateway";
pub const SESSION_STATUS: &str = "org.camaraproject.webrtc-events.v0.session-status";
pub const SESSION_INVITATION: &str = "org.camaraproject.webrtc-events.v0.session-invitation";
pub const SUBSCRIPTION_ENDED: &str = "org.camaraproject.webrtc-events.v0.subscription-ended";

/// Every scope of the three APIs.
pub const ALL_SCOPES: &str = "webrtc-registration:sessions:create webrtc-registration:sessions:read \
webrtc-registration:sessions:write webrtc-registration:sessions:delete \
webrtc-call-handling:sessions:create webrtc-call-handling:sessions:read \
webrtc-call-handling:sessions:write webrtc-call-handling:sessions:delete \
webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create \
webrtc-events:org.camaraproject.webrtc-events.v0.session-invitation:create \
webrtc-events:org.camaraproject.webrtc-events.v0.registration-ends:create \
webrtc-events:read webrtc-events:update webrtc-events:delete";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The component of the plugin crate at `crate_dir` (relative to the workspace root), built for
/// `wasm32-wasip2` if it is not yet.
pub fn plugin_component(crate_dir: &str) -> PathBuf {
    camara_plugin_harness::build_component(repo_root().join(crate_dir)).expect("the plugin builds")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// Access tokens signed with the test keys of `fixtures/`.
pub mod process;
pub use process::{ProcessCall, next_status, signal};

pub mod tokens {
    use super::*;

    /// Claims of a valid three-legged token for `phone` with `scope`.
    pub fn claims(phone: &str, scope: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": phone, "iat": now, "nbf": now - 5, "exp": now + 600, "scope": scope})
    }

    pub fn sign_with(claims: &Value, alg: Algorithm, kid: &str, key_file: &str) -> String {
        let pem = std::fs::read(fixture(key_file)).expect("test key");
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .expect("test key parses");
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    /// RS256, key `test-rs256`.
    pub fn sign(claims: &Value) -> String {
        sign_with(claims, Algorithm::RS256, "test-rs256", "rs256-test-key.pem")
    }

    /// A token for `phone` with every scope.
    pub fn for_subscriber(phone: &str) -> String {
        sign(&claims(phone, ALL_SCOPES))
    }
}

/// A free loopback port (UDP and TCP both free at the time of asking).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A gateway configuration on loopback, trusting the test JWKS, with loopback http sinks.
pub fn gateway_config(next_hop: Option<SocketAddr>, transport: SipTransportName) -> GatewayConfig {
    let mut config = GatewayConfig::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let sip_port = free_port();
    config.sip.udp_listen = Some(SocketAddr::from(([127, 0, 0, 1], sip_port)));
    config.sip.tcp_listen = Some(SocketAddr::from(([127, 0, 0, 1], sip_port)));
    config.sip.next_hop = next_hop;
    config.sip.next_hop_transport = transport;
    config.auth.jwks_file = Some(fixture("jwks.json"));
    config.auth.issuers = vec![ISSUER.into()];
    config.auth.audiences = vec![AUDIENCE.into()];
    config.notifications.allow_http_loopback_sinks = true;
    config.storage.path = None;
    // The tests bring their own SIP peers (sipp) and sign their own tokens.
    config.device_side.demo_endpoint = false;
    config.oauth_server.enabled = false;
    // Unoptimised plugin code on a busy 2-core machine can miss the production deadline
    // (100 ms) on a first call; tests of deadlines set their own.
    for slot in
        [&mut config.plugins.authorization, &mut config.plugins.api_mapping, &mut config.plugins.notification_routing]
    {
        slot.deadline_ms.get_or_insert(1000);
    }
    config
}

/// A minimal HTTP client for the gateway's API.
#[derive(Clone, Debug)]
pub struct Api {
    base: String,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

/// A response: status, headers and JSON body (Null when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Api {
            base: format!("http://{addr}"),
            client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        self.try_request(method, path, token, headers, body).await.expect("gateway answers")
    }

    /// [`Api::call`], `None` when the gateway does not answer (it is down, or killed meanwhile).
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Option<Reply> {
        let mut request = hyper::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self.client.request(request.body(body).unwrap()).await.ok()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        Some(Reply { status, headers, body })
    }

    /// `GET` of a document that is not JSON (`/metrics`): status, headers and text.
    pub async fn get_text(&self, path: &str) -> RawReply {
        let request = hyper::Request::builder().uri(format!("{}{path}", self.base)).body(Full::new(Bytes::new()));
        let response = self.client.request(request.unwrap()).await.expect("gateway answers");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        RawReply { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// The status of a request without body or token, `None` when nothing answers.
    pub async fn try_call(&self, method: &str, path: &str) -> Option<u16> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(Full::new(Bytes::new()))
            .ok()?;
        self.client.request(request).await.ok().map(|r| r.status().as_u16())
    }

    /// `POST /webrtc-registration/v0.3/sessions` for the test device.
    pub async fn register(&self, token: &str) -> Reply {
        self.call("POST", "/webrtc-registration/v0.3/sessions", Some(token), &[], Some(json!({"deviceId": DEVICE_ID})))
            .await
    }

    /// `POST /webrtc-events/v0.2/subscriptions` of the test device to `sink`.
    pub async fn subscribe(&self, token: &str, sink: &str, sink_token: &str) -> Reply {
        let body = json!({
            "protocol": "HTTP",
            "sink": sink,
            "sinkCredential": {
                "credentialType": "ACCESSTOKEN",
                "accessToken": sink_token,
                "accessTokenExpiresUtc": "2099-12-31T23:59:59.999Z",
                "accessTokenType": "bearer"
            },
            "types": [SESSION_STATUS, SESSION_INVITATION],
            "config": {"subscriptionDetail": {"deviceId": DEVICE_ID}}
        });
        self.call("POST", "/webrtc-events/v0.2/subscriptions", Some(token), &[], Some(body)).await
    }

    /// `POST /webrtc-call-handling/v0.3/sessions` from `from` to `to`.
    pub async fn call_number(&self, token: &str, registration_id: &str, from: &str, to: &str) -> Reply {
        let body = json!({
            "originatorAddress": format!("tel:{from}"),
            "originatorName": "Alice",
            "receiverAddress": to,
            "receiverName": "Bob",
            "offer": {"sdp": WEBRTC_OFFER}
        });
        let headers = [("registrationId", registration_id), ("x-correlator", "a1b2c3d4-e5f6-7890-abcd-000000000007")];
        self.call("POST", "/webrtc-call-handling/v0.3/sessions", Some(token), &headers, Some(body)).await
    }
}

/// The WebRTC offer of the call-flow example.
pub const WEBRTC_OFFER: &str = "v=0\r\no=- 8066321617929821805 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 42988 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 127.0.0.1\r\na=ice-ufrag:4eKp\r\na=ice-pwd:D4sF5Pv9vx9ggaqxBlHbAFMx\r\na=fingerprint:sha-256 CF:56:D8:57:9B:68:B2:1C:F6:ED:6C:C0:02:7C:96:C2:88:A3:C2:38:AD:A2:CA:F5:0D:47:BB:81:74:7B:75:17\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";

/// One POST the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
}

/// An HTTP server on loopback that records every POST and answers with the next scripted
/// status (204 once the script is used up).
pub struct Sink {
    pub url: String,
    events: mpsc::UnboundedReceiver<Received>,
}

impl Sink {
    pub async fn start(script: Vec<u16>) -> Sink {
        Sink::start_at(0, script).await
    }

    /// [`Sink::start`] on loopback port `port` (0: any), for a sink that comes up late.
    pub async fn start_at(port: u16, script: Vec<u16>) -> Sink {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let url = format!("http://{}/webhooks/webrtc", listener.local_addr().unwrap());
        let (tx, events) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(script.into_iter()));
        let app = axum::Router::new().route(
            "/webhooks/webrtc",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                let script = script.clone();
                async move {
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let _ = tx.send(Received { headers, body });
                    let status = script.lock().unwrap().next().unwrap_or(204);
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sink { url, events }
    }

    /// The next POST, or a panic after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Received {
        self.try_next(timeout).await.expect("sink received nothing in time")
    }

    /// The next POST, `None` if nothing arrives within `wait`.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Received> {
        tokio::time::timeout(wait, self.events.recv()).await.ok().map(|r| r.expect("sink open"))
    }

    /// Whether anything arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.events.recv()).await.is_err()
    }
}

/// A gateway whose network is a sipp UAS playing a scenario, with the test subscriber (ALICE)
/// registered and subscribed to a sink: the set-up of the tests that place one call.
pub struct SippNetwork {
    pub sipp: Sipp,
    pub gateway: camara_gateway::RunningGateway,
    pub api: Api,
    pub sink: Sink,
    pub token: String,
    pub registration_id: String,
}

impl SippNetwork {
    /// `None` (with a message) when sipp is not installed.
    pub async fn start(scenario: &str, configure: impl FnOnce(&mut GatewayConfig)) -> Option<SippNetwork> {
        init_logs();
        if !sipp_available() {
            eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
            return None;
        }
        let sipp = Sipp::uas(scenario, SipTransportName::Udp).await;
        let mut config = gateway_config(Some(sipp.addr), SipTransportName::Udp);
        configure(&mut config);
        let gateway = camara_gateway::start(config).await.expect("gateway starts");
        let api = Api::new(gateway.http_addr);
        let sink = Sink::start(vec![]).await;
        let token = tokens::for_subscriber(ALICE);
        let registration = api.register(&token).await;
        assert_eq!(registration.status, 201, "{:?}", registration.body);
        let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
        let subscription = api.subscribe(&token, &sink.url, "sink-secret").await;
        assert_eq!(subscription.status, 201, "{:?}", subscription.body);
        Some(SippNetwork { sipp, gateway, api, sink, token, registration_id })
    }

    /// `POST /sessions` from ALICE to BOB; returns the session's path.
    pub async fn call(&self) -> String {
        let session = self.api.call_number(&self.token, &self.registration_id, ALICE, &format!("tel:{BOB}")).await;
        assert_eq!(session.status, 201, "{:?}", session.body);
        format!("/webrtc-call-handling/v0.3/sessions/{}", session.body["mediaSessionId"].as_str().unwrap())
    }
}

/// A sipp process playing a scenario of `tests/sipp/`.
pub struct Sipp {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    pub message_log: PathBuf,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("camara-gw-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn sipp_available() -> bool {
    std::process::Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

impl Sipp {
    /// Starts sipp as a UAS with `scenario` (in `tests/sipp/`, or a path from the repository
    /// root) on a free loopback port over `transport`.
    pub async fn uas(scenario: &str, transport: SipTransportName) -> Sipp {
        Sipp::uas_with(scenario, transport, free_port(), &[]).await
    }

    /// [`Sipp::uas`] on `port`, with `extra` sipp arguments (`-rsa`, `-key`...).
    pub async fn uas_with(scenario: &str, transport: SipTransportName, port: u16, extra: &[&str]) -> Sipp {
        let sipp = Sipp::spawn(scenario, transport, port, extra, None);
        // Wait until sipp listens.
        for _ in 0..100 {
            let bound = match transport {
                SipTransportName::Udp => std::net::UdpSocket::bind(("127.0.0.1", port)).is_err(),
                SipTransportName::Tcp | SipTransportName::Tls => {
                    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                }
            };
            if bound {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sipp
    }

    /// Starts sipp as a UAC playing `scenario` towards `target` (one call).
    pub async fn uac(scenario: &str, target: SocketAddr, transport: SipTransportName) -> Sipp {
        Sipp::spawn(scenario, transport, free_port(), &[], Some(target))
    }

    /// [`Sipp::uac`] with `extra` sipp arguments (`-rtp_echo -mp PORT`...).
    pub async fn uac_with(scenario: &str, target: SocketAddr, transport: SipTransportName, extra: &[&str]) -> Sipp {
        Sipp::spawn(scenario, transport, free_port(), extra, Some(target))
    }

    fn spawn(
        scenario: &str,
        transport: SipTransportName,
        port: u16,
        extra: &[&str],
        target: Option<SocketAddr>,
    ) -> Sipp {
        let dir = TempDir::new("sipp");
        let message_log = dir.0.join("messages.log");
        let mut command = tokio::process::Command::new("sipp");
        command
            .current_dir(&dir.0)
            .arg("-sf")
            .arg(if scenario.contains('/') {
                repo_root().join(scenario)
            } else {
                repo_root().join("tests/sipp").join(scenario)
            })
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-t",
                match transport {
                    SipTransportName::Udp => "u1",
                    SipTransportName::Tcp => "t1",
                    // sipp's TLS also needs -tls_cert and -tls_key in `extra`.
                    SipTransportName::Tls => "l1",
                },
            ])
            .args(["-m", "1", "-timeout", "60s", "-timeout_error", "-nostdin", "-trace_msg", "-trace_err"])
            .args(extra)
            .arg("-message_file")
            .arg(&message_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(target) = target {
            command.arg(target.to_string());
        }
        let child = command.spawn().expect("sipp starts");
        Sipp { addr: SocketAddr::from(([127, 0, 0, 1], port)), child, message_log, _dir: dir }
    }

    /// Waits for sipp to finish its scenario; returns its exit code and what it printed.
    pub async fn finish(mut self, timeout: Duration) -> (i32, String, String) {
        let status = tokio::time::timeout(timeout, self.child.wait()).await.expect("sipp finished in time").unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut stderr).await;
        }
        let messages = std::fs::read_to_string(&self.message_log).unwrap_or_default();
        let errors: String = std::fs::read_dir(&self._dir.0)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        (status.code().unwrap_or(-1), messages, format!("{stderr}{errors}"))
    }
}

/// The first lines (start lines) of the SIP messages sipp received, in order.
pub fn received_start_lines(message_log: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut take_next = false;
    for line in message_log.lines() {
        if take_next && !line.trim().is_empty() {
            lines.push(line.trim().to_string());
            take_next = false;
        }
        if line.contains("message received") {
            take_next = true;
        }
    }
    lines
}

/// The full text of the first received message whose start line begins with `method`.
pub fn received_message(message_log: &str, method: &str) -> Option<String> {
    received_message_nth(message_log, method, 0)
}

/// The full text of the `index`th (from 0) received message whose start line begins with `method`.
pub fn received_message_nth(message_log: &str, method: &str, index: usize) -> Option<String> {
    message_log
        .split("----------------------------------------------- ")
        .filter_map(|block| block.split_once("message received").map(|(_, rest)| rest))
        .map(|rest| rest.split_once('\n').map(|(_, msg)| msg.trim().replace("\r\n", "\n")).unwrap_or_default())
        .filter(|msg| msg.starts_with(method))
        .nth(index)
}

/// A real WebRTC peer that is not this project's code: `tests/peers/webrtc_peer.py` (aiortc),
/// sending a sine tone and analysing what comes back. Driven with one JSON object per line.
pub struct WebRtcPeer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

/// The Python of the venv `tests/install-peers.sh` makes.
pub fn peer_python() -> PathBuf {
    let venv = std::env::var_os("CAMARA_PEERS_VENV").map(PathBuf::from);
    venv.unwrap_or_else(|| PathBuf::from("/opt/camara-peers-venv")).join("bin/python")
}

/// Whether a real peer the test needs is installed. In CI (`CI` set), a missing peer is a
/// failure, not a skip: `.ci/run` installs them.
pub fn peer_installed(what: &str, installed: bool) -> bool {
    if !installed {
        assert!(std::env::var_os("CI").is_none(), "{what} is missing: run tests/install-peers.sh");
        eprintln!("{what} is not installed (tests/install-peers.sh): skipped");
    }
    installed
}

impl WebRtcPeer {
    pub fn available() -> bool {
        peer_python().exists()
    }

    /// Starts the peer with `args` (`--role offer --codec pcmu --tone 1000`...), on loopback.
    pub fn start(args: &[&str]) -> WebRtcPeer {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(peer_python())
            .arg(repo_root().join("tests/peers/webrtc_peer.py"))
            .args(args)
            .arg("--loopback")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the WebRTC peer starts");
        let stdin = child.stdin.take().unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        WebRtcPeer { child, stdin, lines }
    }

    pub async fn send(&mut self, command: Value) {
        use tokio::io::AsyncWriteExt;
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("peer reads its commands");
    }

    /// The next event named `event`, skipping others; a panic on an error event or timeout.
    pub async fn expect(&mut self, event: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("the peer sent no {event:?} in time"))
                .expect("peer output")
                .unwrap_or_else(|| panic!("the peer exited before {event:?}"));
            let value: Value = serde_json::from_str(&line).expect("peer prints JSON lines");
            assert_ne!(value["event"], "error", "the peer failed: {value}");
            if value["event"] == event {
                return value;
            }
        }
    }

    /// Forgets what was received so far (for a measurement of the next phase).
    pub async fn reset(&mut self) {
        self.send(json!({"cmd": "reset"})).await;
        self.expect("reset", Duration::from_secs(5)).await;
    }

    pub async fn report(&mut self) -> Value {
        self.send(json!({"cmd": "report"})).await;
        self.expect("report", Duration::from_secs(5)).await
    }

    /// Waits `settle` (jitter buffers and codecs), clears the counters, listens for `listen`, and
    /// returns the report of that window.
    pub async fn measure(&mut self, settle: Duration, listen: Duration) -> Value {
        tokio::time::sleep(settle).await;
        self.reset().await;
        tokio::time::sleep(listen).await;
        self.report().await
    }

    /// The peer's own tone of `hz` came back (through an echo): measured for 1.5 s after 1 s of
    /// settling. Returns the report.
    pub async fn assert_tone_back(&mut self, hz: f64) -> Value {
        let report = self.measure(Duration::from_millis(1000), Duration::from_millis(1500)).await;
        let frequency = report["frequency"].as_f64().unwrap_or_else(|| panic!("nothing came back: {report}"));
        assert!((frequency - hz).abs() < 10.0, "sent {hz} Hz, got {frequency} Hz: {report}");
        report
    }

    /// The device vanishes: its process is killed, so it neither closes DTLS nor answers ICE
    /// consent checks any more.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    pub async fn close(mut self) {
        self.send(json!({"cmd": "close"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

// ------------------------------------------------------------------------------------------
// The device side: a device application that cannot host an HTTP endpoint. It signs in at the
// gateway's built-in OAuth server (authorization code + PKCE, the `softphone` client), calls the
// CAMARA APIs with that access token, and receives its events through a Notification Relay
// channel: the subscription's sink is the channel's `sinkUrl`, the events come over the
// channel's WebSocket and are acknowledged one by one.

/// The public client of the built-in OAuth server that devices sign in with.
pub const DEVICE_CLIENT_ID: &str = "softphone";
pub const REGISTRATION_ENDS: &str = "org.camaraproject.webrtc-events.v0.registration-ends";

/// `openid` and every scope of the three APIs.
pub fn device_scopes() -> String {
    format!("openid {}", ALL_SCOPES.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// An answer read as text, whatever its content type.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl RawReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The query parameter `name` of the `Location` header.
    pub fn location_param(&self, name: &str) -> Option<String> {
        let location = self.headers.get("location")?.to_str().ok()?;
        let url = url::Url::parse(location).ok()?;
        url.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
    }
}

/// `application/x-www-form-urlencoded`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The `<input type="hidden" name=".." value="..">` fields of a page, in order.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.split("name=\"").nth(1)?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_string(), html_unescape(value)))
        })
        .collect()
}

impl Api {
    /// The gateway's origin, `http://host:port`.
    pub fn origin(&self) -> &str {
        &self.base
    }

    /// Any request to `url` (absolute, or a path on the gateway), the answer read as text.
    pub async fn raw(&self, method: &str, url: &str, headers: &[(&str, &str)], body: Option<String>) -> RawReply {
        let url = if url.starts_with("http") { url.to_string() } else { format!("{}{url}", self.base) };
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = Full::new(Bytes::from(body.unwrap_or_default()));
        let response = self.client.request(request.body(body).unwrap()).await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        RawReply { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// A form POST (the OAuth endpoints).
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> RawReply {
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        self.raw("POST", url, &headers, Some(form_encode(form))).await
    }
}

type DeviceSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A signed-in device application with (once opened) its relay channel.
pub struct Device {
    pub api: Api,
    pub access_token: String,
    pub refresh_token: String,
    /// The last answer of `/oauth/token`.
    pub tokens: Value,
    /// What `POST /relay/channels` answered (Null until [`Device::open_channel`]).
    pub channel: Value,
    socket: Option<DeviceSocket>,
}

impl Device {
    /// Signs in as `username` with every scope of the three APIs.
    pub async fn sign_in(gateway: SocketAddr, username: &str, password: &str) -> Device {
        Device::sign_in_with_scope(gateway, username, password, &device_scopes()).await
    }

    /// The authorization code flow with PKCE (S256) of a public client, as a browser runs it:
    /// GET `/oauth/authorize` (the sign-in page), POST its form with the credentials and
    /// "approve", follow nothing but read the code off the 303, then POST `/oauth/token`.
    pub async fn sign_in_with_scope(gateway: SocketAddr, username: &str, password: &str, scope: &str) -> Device {
        use base64::Engine;
        use sha2::Digest;
        let api = Api::new(gateway);
        let origin = api.origin().to_string();
        let issuer = format!("{origin}/oauth");
        let redirect_uri = format!("{origin}/softphone/");
        let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&verifier));
        let state = uuid::Uuid::new_v4().simple().to_string();
        let query = form_encode(&[
            ("response_type", "code"),
            ("client_id", DEVICE_CLIENT_ID),
            ("redirect_uri", &redirect_uri),
            ("scope", scope),
            ("state", &state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let page = api.raw("GET", &format!("{issuer}/authorize?{query}"), &[], None).await;
        assert_eq!(page.status, 200, "the sign-in page: {}", page.body);
        let mut form = hidden_fields(&page.body);
        assert!(form.iter().any(|(n, v)| n == "code_challenge" && *v == challenge), "{form:?}");
        form.extend([
            ("username".to_string(), username.to_string()),
            ("password".to_string(), password.to_string()),
            ("decision".to_string(), "approve".to_string()),
        ]);
        let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let redirect = api.post_form(&format!("{issuer}/authorize"), &form).await;
        assert_eq!(redirect.status, 303, "the consent answer: {}", redirect.body);
        let location = redirect.headers["location"].to_str().unwrap().to_string();
        assert!(location.starts_with(&redirect_uri), "back to the client: {location}");
        assert_eq!(redirect.location_param("state").as_deref(), Some(state.as_str()), "{location}");
        assert_eq!(redirect.location_param("iss").as_deref(), Some(issuer.as_str()), "RFC 9207: {location}");
        let code = redirect.location_param("code").unwrap_or_else(|| panic!("no code in {location}"));
        let answer = api
            .post_form(
                &format!("{issuer}/token"),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect_uri),
                    ("client_id", DEVICE_CLIENT_ID),
                    ("code_verifier", &verifier),
                ],
            )
            .await;
        assert_eq!(answer.status, 200, "the code exchange: {}", answer.body);
        let tokens = answer.json();
        assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
        let access_token = tokens["access_token"].as_str().expect("an access token").to_string();
        let refresh_token = tokens["refresh_token"].as_str().expect("a refresh token").to_string();
        Device { api, access_token, refresh_token, tokens, channel: Value::Null, socket: None }
    }

    /// The `refresh_token` grant: a new access token and (rotated) refresh token replace the
    /// old ones. Returns the token endpoint's answer.
    pub async fn refresh(&mut self) -> Value {
        let issuer = format!("{}/oauth", self.api.origin());
        let answer = self
            .api
            .post_form(
                &format!("{issuer}/token"),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &self.refresh_token),
                    ("client_id", DEVICE_CLIENT_ID),
                ],
            )
            .await;
        assert_eq!(answer.status, 200, "the refresh: {}", answer.body);
        let tokens = answer.json();
        self.access_token = tokens["access_token"].as_str().expect("an access token").to_string();
        self.refresh_token = tokens["refresh_token"].as_str().expect("a refresh token").to_string();
        self.tokens = tokens.clone();
        tokens
    }

    /// A CAMARA API call with the device's access token.
    pub async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Reply {
        self.api.call(method, path, Some(&self.access_token), headers, body).await
    }

    /// `POST /webrtc-registration/v0.3/sessions` for [`DEVICE_ID`], expiring when asked.
    pub async fn register(&self, expire_time: Option<&str>) -> Reply {
        let mut body = json!({"deviceId": DEVICE_ID});
        if let Some(t) = expire_time {
            body["registrationExpireTime"] = t.into();
        }
        self.call("POST", "/webrtc-registration/v0.3/sessions", &[], Some(body)).await
    }

    /// Asks the relay for a channel (`POST /relay/channels` with the access token), connects
    /// its WebSocket with the channel's `websocketToken` and waits for `ready`. Returns the
    /// channel as the relay described it.
    pub async fn open_channel(&mut self) -> Value {
        let created = self.call("POST", "/relay/channels", &[], None).await;
        assert_eq!(created.status, 201, "relay channel: {:?}", created.body);
        let channel = created.body;
        let id = channel["channelId"].as_str().expect("channelId");
        let url = format!(
            "{}?token={}",
            channel["websocketUrl"].as_str().expect("websocketUrl"),
            channel["websocketToken"].as_str().expect("websocketToken")
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("the relay's WebSocket");
        let ready = Device::next_frame(&mut socket, Duration::from_secs(5)).await.expect("a ready frame");
        assert_eq!(ready, json!({"type": "ready", "channelId": id}));
        self.socket = Some(socket);
        self.channel = channel.clone();
        channel
    }

    /// `POST /webrtc-events/v0.2/subscriptions` of `types` for [`DEVICE_ID`], to the channel's
    /// `sinkUrl` with its `sinkCredential` as the relay handed them out.
    pub async fn subscribe(&self, types: &[&str], expire_time: Option<&str>) -> Reply {
        assert!(self.channel.is_object(), "open_channel first");
        let mut config = json!({"subscriptionDetail": {"deviceId": DEVICE_ID}});
        if let Some(t) = expire_time {
            config["subscriptionExpireTime"] = t.into();
        }
        let body = json!({
            "protocol": "HTTP",
            "sink": self.channel["sinkUrl"],
            "sinkCredential": self.channel["sinkCredential"],
            "types": types,
            "config": config,
        });
        self.call("POST", "/webrtc-events/v0.2/subscriptions", &[], Some(body)).await
    }

    /// The next text frame as JSON, skipping WebSocket pings and pongs; `None` after `wait`.
    /// Panics when the socket closes.
    async fn next_frame(socket: &mut DeviceSocket, wait: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => return None,
                Ok(message) => message,
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).unwrap_or_else(|_| panic!("relay frame {text:?}")));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("the relay's WebSocket ended: {other:?}"),
            }
        }
    }

    /// The next event the relay pushes, or `None` after `wait`; acknowledged once read.
    pub async fn try_next_event(&mut self, wait: Duration) -> Option<Value> {
        use futures_util::SinkExt;
        let socket = self.socket.as_mut().expect("open_channel first");
        let frame = Device::next_frame(socket, wait).await?;
        assert_eq!(frame["type"], "event", "only events are pushed: {frame}");
        let delivery_id = frame["deliveryId"].as_str().expect("deliveryId");
        let ack = json!({"type": "ack", "deliveryId": delivery_id}).to_string();
        socket.send(tokio_tungstenite::tungstenite::Message::Text(ack.into())).await.expect("ack sent");
        Some(frame["event"].clone())
    }

    /// The next event (a CloudEvent), acknowledged; a panic when none comes within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Value {
        self.try_next_event(wait).await.unwrap_or_else(|| panic!("the relay pushed no event within {wait:?}"))
    }

    /// A panic if any event arrives within `wait`.
    pub async fn expect_no_event(&mut self, wait: Duration) {
        if let Some(event) = self.try_next_event(wait).await {
            panic!("no event was expected, the relay pushed {event}");
        }
    }
}

/// The gateway binary cargo built beside the tests (`cargo test --workspace` builds it).
pub fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = dir.join("camara-gateway");
    assert!(binary.exists(), "{} is missing: run `cargo test --workspace`", binary.display());
    binary
}

/// Writes `dir/gateway.toml` for a gateway process: HTTP and SIP (UDP and TCP) on loopback
/// ports, the test token keys, loopback sinks, state in `dir/state.redb`; `sip_extra` goes into
/// the `[sip]` table, `extra` (whole tables) after it.
pub fn write_process_config(dir: &TempDir, http_port: u16, sip_port: u16, sip_extra: &str, extra: &str) -> PathBuf {
    let config = dir.0.join("gateway.toml");
    let text = format!(
        r#"
[http]
listen = "127.0.0.1:{http_port}"
[sip]
udp_listen = "127.0.0.1:{sip_port}"
tcp_listen = "127.0.0.1:{sip_port}"
{sip_extra}
[auth]
jwks_file = "{jwks}"
issuers = ["{ISSUER}"]
audiences = ["{AUDIENCE}"]
[notifications]
allow_http_loopback_sinks = true
[storage]
path = "{store}"
{extra}
"#,
        jwks = fixture("jwks.json").display(),
        store = dir.0.join("state.redb").display(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// The gateway as its own process (`run --config <config>`), killed when dropped. Its log goes
/// to the test's stderr with `CAMARA_TEST_GATEWAY_LOGS` set (`RUST_LOG` filters it).
pub fn start_gateway_process(config: &std::path::Path) -> tokio::process::Child {
    let logs = || {
        if std::env::var_os("CAMARA_TEST_GATEWAY_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() }
    };
    tokio::process::Command::new(gateway_binary())
        .args(["run", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(logs())
        .kill_on_drop(true)
        .spawn()
        .expect("gateway starts")
}

/// Waits until the gateway answers `GET /health`.
pub async fn wait_for_http(api: &Api) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let up = tokio::time::timeout(Duration::from_secs(1), api.try_call("GET", "/health")).await;
        if matches!(up, Ok(Some(200))) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "gateway did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `redis-server` of the test's own on loopback (append-only file synced on every write, in a
/// directory of its own), killed on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub url: String,
    _dir: TempDir,
}

impl RedisServer {
    /// `None` (the test is skipped) where Redis is not installed, except in CI.
    pub async fn start() -> Option<RedisServer> {
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok();
        if !peer_installed("redis-server", installed) {
            return None;
        }
        let dir = TempDir::new("redis");
        // A port found free may be taken before the server binds it: it then exits, and
        // another is tried.
        for _ in 0..5 {
            let port = free_port();
            let mut child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                .arg("--dir")
                .arg(&dir.0)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server starts");
            for _ in 0..200 {
                if child.try_wait().expect("redis-server status").is_some() {
                    break;
                }
                if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut answer = [0u8; 7];
                    if stream.write_all(b"PING\r\n").await.is_ok()
                        && stream.read_exact(&mut answer).await.is_ok()
                        && &answer == b"+PONG\r\n"
                    {
                        return Some(RedisServer { child, url: format!("redis://127.0.0.1:{port}/"), _dir: dir });
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Kamailio, where it is installed.
pub fn kamailio_binary() -> Option<PathBuf> {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// A Kamailio process in the foreground (`-DD -E`), stopped with SIGTERM (which also ends its
/// children) when dropped.
pub struct Kamailio {
    pub addr: SocketAddr,
    child: std::process::Child,
    log: PathBuf,
    dir: TempDir,
}

impl Kamailio {
    /// Starts Kamailio with `config` (a whole `kamailio.cfg`, listening on UDP `port`), once its
    /// socket is bound and its workers started.
    pub async fn start(port: u16, config: &str) -> Kamailio {
        let dir = TempDir::new("kamailio");
        let config_file = dir.0.join("kamailio.cfg");
        std::fs::write(&config_file, config).unwrap();
        let log = dir.0.join("kamailio.log");
        let child = std::process::Command::new(kamailio_binary().expect("kamailio installed"))
            .args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(&config_file)
            .arg("-Y")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio starts");
        let mut kamailio = Kamailio { addr: SocketAddr::from(([127, 0, 0, 1], port)), child, log, dir };
        for _ in 0..100 {
            if let Ok(Some(status)) = kamailio.child.try_wait() {
                panic!("kamailio exited ({status}):\n{}", kamailio.log());
            }
            if std::net::UdpSocket::bind(kamailio.addr).is_err() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return kamailio;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("kamailio did not bind {}:\n{}", kamailio.addr, kamailio.log());
    }

    /// A directory of this Kamailio's own, for files its configuration names.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines of the route script's `xlog` (prefixed `<script>`).
    pub fn script_lines(&self) -> Vec<String> {
        self.log().lines().filter(|l| l.contains("<script>")).map(str::to_string).collect()
    }

    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            for _ in 0..50 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}
