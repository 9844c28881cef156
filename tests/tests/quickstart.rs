//! The README's curl example, `examples/curl/quickstart.sh`, against a gateway on its embedded
//! defaults (only the listen ports move to free loopback ones, and the state to memory): it
//! exits 0, and what it says it created is there, read back with a token of the same flow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use camara_gateway::GatewayConfig;
use camara_gateway_tests::*;
use camara_oauth::{DEMO_SCRIPT_CLIENT_ID, DEMO_SCRIPT_SECRET};

async fn embedded_defaults() -> camara_gateway::RunningGateway {
    init_logs();
    let mut config = GatewayConfig::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let sip_port = free_port();
    config.sip.udp_listen = Some(SocketAddr::from(([127, 0, 0, 1], sip_port)));
    config.sip.tcp_listen = Some(SocketAddr::from(([127, 0, 0, 1], sip_port)));
    config.storage.path = None;
    camara_gateway::start(config).await.expect("the gateway starts on embedded defaults")
}

/// Runs the script against `gateway` with `json_tool` (`jq` or `python3`); its `name=value` lines.
async fn run_quickstart(gateway: &camara_gateway::RunningGateway, json_tool: &str) -> HashMap<String, String> {
    let script = repo_root().join("examples/curl/quickstart.sh");
    let run = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(format!("http://{}", gateway.http_addr))
        .env("QUICKSTART_JSON", json_tool)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the script ends").expect("bash runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "quickstart.sh ({json_tool}) failed: {}\n{stderr}\n{stdout}", out.status);
    stdout.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A token of the script's flow: client_credentials of the development client (here with
/// `client_secret_post`, the script uses basic).
async fn script_token(api: &Api) -> String {
    let answer = api
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", DEMO_SCRIPT_CLIENT_ID),
                ("client_secret", DEMO_SCRIPT_SECRET),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["access_token"].as_str().expect("an access token").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_curl_quickstart_creates_a_registration_a_subscription_and_a_session() {
    let gateway = embedded_defaults().await;
    let api = Api::new(gateway.http_addr);
    // The script and README publish the development client: they must name the server's.
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let script = std::fs::read_to_string(repo_root().join("examples/curl/quickstart.sh")).unwrap();
    assert!(readme.contains("examples/curl/quickstart.sh"), "README shows the script");
    for text in [&readme, &script] {
        assert!(text.contains(DEMO_SCRIPT_CLIENT_ID) && text.contains(DEMO_SCRIPT_SECRET));
    }

    for tool in ["jq", "python3"] {
        if tool == "jq" && std::process::Command::new("jq").arg("--version").output().is_err() {
            eprintln!("jq is not installed: the script's jq path is not run");
            continue;
        }
        let created = run_quickstart(&gateway, tool).await;
        let token = script_token(&api).await;
        let get = |path: String| {
            let (api, token) = (api.clone(), token.clone());
            async move { api.call("GET", &path, Some(&token), &[], None).await }
        };

        let id = |name: &str| created.get(name).unwrap_or_else(|| panic!("no {name} in {created:?}")).clone();
        let registration = get(format!("/webrtc-registration/v0.3/sessions/{}", id("registrationId"))).await;
        assert_eq!(registration.status, 200, "{:?}", registration.body);
        assert_eq!(registration.body["regInfo"]["phoneNumber"], ALICE, "the development client is alice's line");

        let subscription = get(format!("/webrtc-events/v0.2/subscriptions/{}", id("subscriptionId"))).await;
        assert_eq!(subscription.status, 200, "{:?}", subscription.body);
        assert!(subscription.body["sink"].as_str().unwrap().contains("/relay/sink/"), "{:?}", subscription.body);
        assert_eq!(subscription.body["types"].as_array().map(Vec::len), Some(2), "{:?}", subscription.body);

        let session = get(format!("/webrtc-call-handling/v0.3/sessions/{}", id("mediaSessionId"))).await;
        assert_eq!(session.status, 200, "{:?}", session.body);
        assert_eq!(session.body["originatorAddress"], format!("tel:{ALICE}"), "{:?}", session.body);
        assert_eq!(
            session.body["receiverAddress"],
            format!("tel:{}", camara_gateway::demo::ECHO_NUMBER),
            "{:?}",
            session.body
        );
        assert!(id("websocketUrl").contains("/relay/channels/"), "{created:?}");
    }
    gateway.stop().await;
}
