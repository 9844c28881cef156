//! The README's run command: the gateway binary on embedded defaults (no configuration file, the
//! embedded plugin bundle) answers HTTP and SIP. Only the listen addresses move to free ports.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nx-correlator: run-1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn the_binary_serves_http_and_sip_on_embedded_defaults() {
    let http_port = free_port();
    let sip_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_camara-gateway"))
        .arg("run")
        .env("CAMARA_GW_HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
        .env("CAMARA_GW_SIP__UDP_LISTEN", format!("127.0.0.1:{sip_port}"))
        .env("CAMARA_GW_SIP__TCP_LISTEN", format!("127.0.0.1:{sip_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway binary starts");
    let _child = KillOnDrop(child);

    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Some(r) = http_get(http_port, "/health") {
            break r;
        }
        assert!(Instant::now() < deadline, "no HTTP within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // No issuer is configured: the API refuses with a CAMARA body and echoes the correlator.
    let api = http_get(http_port, "/webrtc-registration/v0.3/sessions/some-id").unwrap();
    assert!(api.starts_with("HTTP/1.1 401"), "{api}");
    assert!(api.contains("\"code\":\"UNAUTHENTICATED\"") && api.contains("x-correlator: run-1"), "{api}");

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = socket.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:gateway@127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKrun1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:gateway@127.0.0.1>\r\n\
         Call-ID: run-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(options.as_bytes(), ("127.0.0.1", sip_port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("SIP answer");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(answer.contains("CSeq: 1 OPTIONS") && answer.contains("Allow:"), "{answer}");
}

#[test]
fn plugin_call_runs_a_plugin_with_no_gateway() {
    let wasm = std::env::temp_dir().join(format!("api-mapping-default-{}.wasm", std::process::id()));
    std::fs::write(&wasm, camara_plugin_bundle::API_MAPPING.wasm).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_camara-gateway"))
        .args(["plugin", "call", "--kind", "api-mapping", "--function", "map-sip-event", "--wasm"])
        .arg(&wasm)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"event":{"InviteResponse":{"status_code":486,"reason_phrase":"Busy Here","has_sdp":false,"reliable":false}},"call":{"session_id":"s1","direction":"Outgoing","call_id":"c1@gw"}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&wasm);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["status"], "Busy");
}
