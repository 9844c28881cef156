//! Schemathesis (a property-based API tester from PyPI, not this project's code) against the
//! gateway's own `/openapi.json`: it generates valid and invalid requests for every operation
//! from the document and checks each answer against it. The gateway runs in-process; schemathesis
//! calls it with a really signed token. Skips when schemathesis is not installed
//! (`tests/install-peers.sh` puts it in the peers' venv).

use std::process::Stdio;
use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway::store::{Direction, MediaSession, Subscription};
use camara_gateway_tests::*;
use serde_json::json;

/// Examples per operation and phase, and the time budget of the whole run (seconds).
const MAX_EXAMPLES: &str = "25";
const MAX_TIME: &str = "75";
/// A fixed seed: the same requests every run, so a failure reproduces.
const SEED: &str = "20240605";

/// The checks that matter for a CAMARA API. Left out, narrowly:
/// - `positive_data_acceptance`: a request valid by the schema may still name nothing that
///   exists, which is 404 (a random `registrationId`, `mediaSessionId`, `subscriptionId`), or a
///   device that has no registration of the caller, which webrtc-events answers with
///   422 SERVICE_NOT_APPLICABLE as its CAMARA file says; state, not validation.
/// - `use_after_free`, `ensure_resource_availability`, `object_level_authorization`: stateful
///   checks that need links between operations, which the document does not declare; the
///   ownership rules are covered by `tokens.rs` and `validation.rs`.
/// - `ignored_auth` is kept: every operation must answer 401 without the token.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_schema_conformance,response_headers_conformance,negative_data_rejection,\
missing_required_header,unsupported_method,ignored_auth";

fn schemathesis() -> std::path::PathBuf {
    peer_python().with_file_name("schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong_with_the_served_document() {
    if !peer_installed("schemathesis", schemathesis().exists()) {
        return;
    }
    init_logs();
    let mut config = gateway_config(None, SipTransportName::Udp);
    // Thousands of requests from one client, and only https sinks as the CAMARA pattern says.
    config.api.rate_limit_per_second = 1_000_000;
    config.api.rate_limit_burst = 1_000_000;
    config.notifications.allow_http_loopback_sinks = false;
    // A debug build on two cores, busy with schemathesis: the default 100 ms is for release.
    config.plugins.authorization.deadline_ms = Some(2000);
    let gateway = camara_gateway::start(config).await.unwrap();
    let api = Api::new(gateway.http_addr);
    let token = tokens::for_subscriber(ALICE);

    // Something for the operations on one resource to find, half of the time (the other half
    // are schemathesis' own identifiers): a registration, a subscription and a session of the
    // caller. None for the deletions, which would take it away from the others.
    let registration = api.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}", registration.body);
    let registration_id = registration.body["registrationId"].as_str().unwrap().to_string();
    let subscription_id = uuid::Uuid::new_v4().to_string();
    let store = &gateway.gateway.store;
    store
        .insert_subscription(Subscription {
            id: subscription_id.clone(),
            owner_phone_number: ALICE.into(),
            device_id: DEVICE_ID.into(),
            sink: "https://sink.invalid/hook".into(),
            sink_credential: None,
            types: vec![SESSION_STATUS.into()],
            config_json: json!({"subscriptionDetail": {"deviceId": DEVICE_ID}}),
            starts_at: chrono::Utc::now(),
            expires_at: None,
        })
        .unwrap();
    let session_id = uuid::Uuid::new_v4().to_string();
    store.insert_session(outgoing_session(&session_id, &registration_id)).unwrap();

    let workdir = TempDir::new("schemathesis");
    let bind = |operation: &str, parameter: &str, dictionary: &str| {
        format!(
            "[[operations]]\ninclude-operation-id = \"{operation}\"\n\
             parameters = {{ \"path.{parameter}\" = {{ dictionary = \"{dictionary}\", probability = 0.5 }} }}\n\n"
        )
    };
    let mut config_file = format!(
        "[dictionaries.registrations]\nvalues = [\"{registration_id}\"]\n\n\
         [dictionaries.subscriptions]\nvalues = [\"{subscription_id}\"]\n\n\
         [dictionaries.sessions]\nvalues = [\"{session_id}\"]\n\n"
    );
    for (operation, parameter, dictionary) in [
        ("getRegistrationById", "registrationId", "registrations"),
        ("updateRegistrationById", "registrationId", "registrations"),
        ("retrieveNotificationChannelSubscription", "subscriptionId", "subscriptions"),
        ("updateNotificationChannelSubscription", "subscriptionId", "subscriptions"),
        ("getSessionDetailsById", "mediaSessionId", "sessions"),
        ("updateSessionStatus", "mediaSessionId", "sessions"),
        ("deleteSessionById", "mediaSessionId", "sessions"),
    ] {
        config_file.push_str(&bind(operation, parameter, dictionary));
    }
    // The stateful phase links the registrations schemathesis creates to createSession's
    // registrationId header: such a call is valid and goes to the network side, which this
    // gateway does not have (no [sip] next_hop), and 503 UNAVAILABLE says exactly that. Allowed
    // for that operation and that status only; any other server error still fails.
    config_file.push_str(
        "[[operations]]\ninclude-operation-id = \"createSession\"\n\
         checks.not_a_server_error.expected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"503\"]\n",
    );
    std::fs::write(workdir.0.join("schemathesis.toml"), config_file).unwrap();
    let url = format!("http://{}/openapi.json", gateway.http_addr);
    let mut command = tokio::process::Command::new(schemathesis());
    command
        .current_dir(&workdir.0)
        .arg("run")
        .arg(&url)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES, "--max-time", MAX_TIME, "--seed", SEED])
        .args(["--workers", "1", "--request-timeout", "10", "--generation-database", "none"])
        .args(["--no-color", "--output-truncate", "false"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(110), command.output())
        .await
        .expect("schemathesis finishes within its time budget")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    gateway.stop().await;
    assert!(output.status.success(), "schemathesis reported failures ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("passed"), "schemathesis tested nothing:\n{stdout}");
}

/// An outgoing session in the store, with no call behind it: reading it works, ending it has
/// nothing to send, changing its status is a conflict.
fn outgoing_session(id: &str, registration_id: &str) -> MediaSession {
    MediaSession {
        id: id.into(),
        owner_phone_number: ALICE.into(),
        registration_id: registration_id.into(),
        device_id: DEVICE_ID.into(),
        direction: Direction::Outgoing,
        sip_call_id: None,
        originator_address: format!("tel:{ALICE}"),
        originator_name: None,
        receiver_address: format!("tel:{BOB}"),
        receiver_name: None,
        offer_sdp: WEBRTC_OFFER.into(),
        answer_sdp: None,
        sip_local_sdp: None,
        status: "Initial".into(),
        sequence: 0,
        local_hangup: None,
        created_at: chrono::Utc::now(),
    }
}
