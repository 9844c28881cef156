//! A gateway as its own process, with a call up through a sipp network: for the tests of what
//! a process does on signals (SIGTERM, SIGKILL, SIGHUP).

use std::time::Duration;

use camara_gateway::config::SipTransportName;

use crate::*;

/// A gateway process whose network is a sipp UAS that answers and waits for BYE, with ALICE
/// registered, subscribed to a sink, and in a connected call.
pub struct ProcessCall {
    pub _dir: TempDir,
    pub config: std::path::PathBuf,
    pub gateway: tokio::process::Child,
    pub sipp: Sipp,
    pub api: Api,
    pub sink: Sink,
    pub token: String,
    pub registration_id: String,
    pub session: String,
}

impl ProcessCall {
    /// With `extra` (whole tables) in the configuration file.
    pub async fn start(tag: &str, extra: &str) -> Option<ProcessCall> {
        init_logs();
        if !sipp_available() {
            eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
            return None;
        }
        let sipp = Sipp::uas("uas_answer_until_bye.xml", SipTransportName::Udp).await;
        let dir = TempDir::new(tag);
        let http_port = free_port();
        let sip_extra = format!("next_hop = \"{}\"\nnext_hop_transport = \"udp\"", sipp.addr);
        let config = write_process_config(&dir, http_port, free_port(), &sip_extra, extra);
        let gateway = start_gateway_process(&config);
        let api = Api::new(format!("127.0.0.1:{http_port}").parse().unwrap());
        wait_for_http(&api).await;
        let mut sink = Sink::start(vec![]).await;
        let token = tokens::for_subscriber(ALICE);
        let registration = api.register(&token).await;
        assert_eq!(registration.status, 201, "{:?}", registration.body);
        let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
        assert_eq!(api.subscribe(&token, &sink.url, "sink-secret").await.status, 201);
        let created = api.call_number(&token, &registration_id, ALICE, &format!("tel:{BOB}")).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let session = created.body["mediaSessionId"].as_str().unwrap().to_string();
        next_status(&mut sink, "Connected").await;
        Some(ProcessCall { _dir: dir, config, gateway, sipp, api, sink, token, registration_id, session })
    }

    pub fn session_path(&self) -> String {
        format!("/webrtc-call-handling/v0.3/sessions/{}", self.session)
    }
}

/// The session-status events up to the one with `status`, which is returned.
pub async fn next_status(sink: &mut Sink, status: &str) -> serde_json::Value {
    loop {
        let event = sink.next(Duration::from_secs(15)).await.body;
        if event["type"] == "org.camaraproject.webrtc-events.v0.session-status" && event["data"]["status"] == status {
            return event;
        }
    }
}

pub fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("the gateway runs").to_string();
    let sent = std::process::Command::new("kill").args(["-s", name, &pid]).status().unwrap();
    assert!(sent.success(), "kill -s {name} {pid}");
}
