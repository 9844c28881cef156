//! Schemathesis (a property-based API tester from PyPI, not this project's code) against the
//! gateway's own `/openapi.json`, and against the CAMARA files themselves (`../shared/spec/`):
//! it generates valid and invalid requests for every operation from the document and checks
//! each answer against it. The gateway runs in-process; schemathesis calls it with a really
//! signed token, and finds real resources of the caller half of the time. Skips when
//! schemathesis is not installed (`tests/install-peers.sh` puts it in the peers' venv).

use std::process::Stdio;
use std::time::Duration;

use camara_gateway::config::SipTransportName;
use camara_gateway::store::{Direction, MediaSession, Subscription};
use camara_gateway_tests::*;
use serde_json::json;

/// Examples per operation and phase, and the time budget of a run (seconds): one run for the
/// served document, one per CAMARA file.
const MAX_EXAMPLES: &str = "25";
const MAX_TIME: u64 = 75;
const MAX_TIME_PER_CAMARA_FILE: u64 = 35;
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
/// - `unsupported_method`: a method a path does not document may be an operation on one resource
///   sent without its identifier (`DELETE .../sessions`), which CAMARA's own tests expect
///   answered 400 INVALID_ARGUMENT; the 405 of the methods no operation has is covered by
///   `validation.rs`.
/// - `ignored_auth` is kept: every operation must answer 401 without the token.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_schema_conformance,response_headers_conformance,negative_data_rejection,\
missing_required_header,ignored_auth";

fn schemathesis() -> std::path::PathBuf {
    peer_python().with_file_name("schemathesis")
}

/// A running gateway with a registration, a subscription and a session of the caller for the
/// operations on one resource to find. None for the deletions, which would take it away from
/// the others.
struct Fixture {
    gateway: camara_gateway::RunningGateway,
    token: String,
    registration_id: String,
    subscription_id: String,
    session_id: String,
    workdir: TempDir,
}

impl Fixture {
    async fn start(mut config: camara_gateway::GatewayConfig) -> Fixture {
        init_logs();
        // Thousands of requests from one client, and only https sinks as the CAMARA pattern says.
        config.api.rate_limit_per_second = 1_000_000;
        config.api.rate_limit_burst = 1_000_000;
        config.notifications.allow_http_loopback_sinks = false;
        // A debug build on two cores, busy with schemathesis: the default 100 ms is for release.
        config.plugins.authorization.deadline_ms = Some(2000);
        config.plugins.api_mapping.deadline_ms = Some(2000);
        let gateway = camara_gateway::start(config).await.unwrap();
        let api = Api::new(gateway.http_addr);
        let token = tokens::for_subscriber(ALICE);
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
            .await
            .unwrap();
        let session_id = uuid::Uuid::new_v4().to_string();
        store.insert_session(outgoing_session(&session_id, &registration_id), Vec::new()).await.unwrap();
        Fixture { gateway, token, registration_id, subscription_id, session_id, workdir: TempDir::new("schemathesis") }
    }

    /// The identifier of the fixture's resource in `dictionary`.
    fn identifier(&self, dictionary: &str) -> &str {
        match dictionary {
            "registrations" => &self.registration_id,
            "subscriptions" => &self.subscription_id,
            _ => &self.session_id,
        }
    }

    /// `schemathesis.toml`: the fixture's identifiers as dictionaries, bound to the parameters
    /// `bindings` names (operation, `location.name`, dictionary, probability), then `extra`.
    fn write_config(&self, bindings: &[(&str, &str, &str, f64)], extra: &str) {
        let (registration_id, subscription_id, session_id) =
            (&self.registration_id, &self.subscription_id, &self.session_id);
        let mut config_file = format!(
            "[dictionaries.registrations]\nvalues = [\"{registration_id}\"]\n\n\
             [dictionaries.subscriptions]\nvalues = [\"{subscription_id}\"]\n\n\
             [dictionaries.sessions]\nvalues = [\"{session_id}\"]\n\n"
        );
        for (operation, parameter, dictionary, probability) in bindings {
            config_file.push_str(&format!(
                "[[operations]]\ninclude-operation-id = \"{operation}\"\n\
                 parameters = {{ \"{parameter}\" = {{ dictionary = \"{dictionary}\", probability = {probability} }} }}\n\n"
            ));
        }
        config_file.push_str(extra);
        std::fs::write(self.workdir.0.join("schemathesis.toml"), config_file).unwrap();
    }

    /// Runs schemathesis on `schema` (a URL or a file) with `args`; its output when it reports
    /// a failure or tests nothing.
    async fn run(&self, schema: &str, args: &[&str], max_time: u64) -> Result<String, String> {
        self.run_checks(schema, args, max_time, CHECKS).await
    }

    /// [`Self::run`] with other `--checks`.
    async fn run_checks(&self, schema: &str, args: &[&str], max_time: u64, checks: &str) -> Result<String, String> {
        let mut command = tokio::process::Command::new(schemathesis());
        command
            .current_dir(&self.workdir.0)
            .arg("run")
            .arg(schema)
            .args(args)
            .args(["--header", &format!("Authorization: Bearer {}", self.token)])
            .args(["--checks", checks])
            .args(["--max-examples", MAX_EXAMPLES, "--max-time", &max_time.to_string(), "--seed", SEED])
            .args(["--workers", "1", "--request-timeout", "10", "--generation-database", "none"])
            .args(["--no-color", "--output-truncate", "false"])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(max_time + 35), command.output())
            .await
            .expect("schemathesis finishes within its time budget")
            .expect("schemathesis runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("{stdout}");
        if !output.status.success() {
            return Err(format!("schemathesis reported failures ({}):\n{stdout}\n{stderr}", output.status));
        }
        if !stdout.contains("passed") {
            return Err(format!("schemathesis tested nothing:\n{stdout}"));
        }
        Ok(stdout)
    }
}

/// An `[[operations]]` entry of `schemathesis.toml` giving `parameter` of `operation` `value`.
fn fixed_parameter(operation: &str, parameter: &str, value: &str) -> String {
    format!(
        "[[operations]]\ninclude-operation-id = \"{operation}\"\nparameters = {{ \"{parameter}\" = \"{value}\" }}\n\n"
    )
}

/// The operations on one resource of the caller's, and the dictionary of its identifiers.
const ON_ONE_RESOURCE: [(&str, &str, &str); 7] = [
    ("getRegistrationById", "path.registrationId", "registrations"),
    ("updateRegistrationById", "path.registrationId", "registrations"),
    ("retrieveNotificationChannelSubscription", "path.subscriptionId", "subscriptions"),
    ("updateNotificationChannelSubscription", "path.subscriptionId", "subscriptions"),
    ("getSessionDetailsById", "path.mediaSessionId", "sessions"),
    ("updateSessionStatus", "path.mediaSessionId", "sessions"),
    ("deleteSessionById", "path.mediaSessionId", "sessions"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong_with_the_served_document() {
    if !peer_installed("schemathesis", schemathesis().exists()) {
        return;
    }
    let fx = Fixture::start(gateway_config(None, SipTransportName::Udp)).await;
    let bindings: Vec<_> = ON_ONE_RESOURCE.iter().map(|(o, p, d)| (*o, *p, *d, 0.5)).collect();
    // The stateful phase links the registrations schemathesis creates to createSession's
    // registrationId header: such a call is valid and goes to the network side, which this
    // gateway does not have (no [sip] next_hop), and 503 UNAVAILABLE says exactly that. Allowed
    // for that operation and that status only; any other server error still fails.
    fx.write_config(
        &bindings,
        "[[operations]]\ninclude-operation-id = \"createSession\"\n\
         checks.not_a_server_error.expected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"503\"]\n",
    );
    let url = format!("http://{}/openapi.json", fx.gateway.http_addr);
    let outcome = fx.run(&url, &[], MAX_TIME).await;
    fx.gateway.stop().await;
    outcome.unwrap();
}

/// The CAMARA files as they are, each against the gateway under its base path: no answer
/// outside the response schemas, no status code they do not list. The gateway is configured as
/// the files describe it (one type per subscription) and has a SIP network side (sipp, always
/// busy) so that calls are placed: `createSession` always names the caller's registration.
/// What the served document says beyond the files (README, "Where the gateway differs from the
/// CAMARA files") is kept out of reach, narrowly:
/// - `updateSessionStatus` runs on its own without the status-code check: a status the call's
///   state does not allow (`Resume` on a call that has ended) is 409 INCOMPATIBLE_STATE, the
///   CAMARA Commonalities code, which its file does not list, and schemathesis reaches such
///   sessions through the calls it places. (Its per-operation check settings do not override
///   `--checks`.) Its answers must still match the file's response schemas.
/// - No stateful phase: it runs against the served document above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong_against_the_camara_files() {
    let spec = repo_root().join("../shared/spec/camara-webrtc/api");
    if !spec.exists() {
        eprintln!("{} is absent: skipped", spec.display());
        return;
    }
    if !peer_installed("schemathesis", schemathesis().exists()) || !peer_installed("sipp", sipp_available()) {
        return;
    }
    let network =
        Sipp::uas_with("uas_busy.xml", SipTransportName::Udp, free_port(), &["-m", "1000000", "-timeout", "600s"])
            .await;
    let mut config = gateway_config(Some(network.addr), SipTransportName::Udp);
    config.api.multi_event_subscriptions = false;
    let fx = Fixture::start(config).await;
    // The real identifiers always (createSession's registrationId header among them).
    // Schemathesis 4.32 applies neither these nor dictionaries to a parameter whose schema is a
    // `$ref`, as the CAMARA files write registrationId and subscriptionId in paths: those
    // operations see generated identifiers only (404).
    let mut fixed = String::new();
    for (operation, parameter, dictionary) in ON_ONE_RESOURCE {
        fixed.push_str(&fixed_parameter(operation, parameter, fx.identifier(dictionary)));
    }
    fixed.push_str(&fixed_parameter("createSession", "header.registrationId", &fx.registration_id));
    fx.write_config(&[], &fixed);
    let api = &fx.gateway.gateway.config.api;
    let mut failures = Vec::new();
    // The registration's own file last: the fixture's registration does not outlive its run,
    // and the others need it (calls from it, session events of its device).
    for (file, base) in [
        ("webrtc-call-handling.yaml", &api.call_handling_base),
        ("webrtc-events.yaml", &api.events_base),
        ("webrtc-registration.yaml", &api.registration_base),
    ] {
        let url = format!("http://{}{base}", fx.gateway.http_addr);
        let schema = spec.join(file).display().to_string();
        let args =
            ["--url", &url, "--phases", "examples,coverage,fuzzing", "--exclude-operation-id", "updateSessionStatus"];
        if let Err(failure) = fx.run(&schema, &args, MAX_TIME_PER_CAMARA_FILE).await {
            failures.push(format!("{file}: {failure}"));
        }
        if file == "webrtc-call-handling.yaml" {
            let args = [
                "--url",
                &url,
                "--phases",
                "examples,coverage,fuzzing",
                "--include-operation-id",
                "updateSessionStatus",
            ];
            let checks = "not_a_server_error,content_type_conformance,response_schema_conformance,\
                          response_headers_conformance,negative_data_rejection,missing_required_header,ignored_auth";
            if let Err(failure) = fx.run_checks(&schema, &args, MAX_TIME_PER_CAMARA_FILE, checks).await {
                failures.push(format!("{file} (updateSessionStatus): {failure}"));
            }
        }
    }
    fx.gateway.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
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
        status: camara_gateway::model::SessionStatus::Initial,
        sequence: 0,
        local_hangup: None,
        node: None,
        sip_dialog: None,
        created_at: chrono::Utc::now(),
        revision: 0,
    }
}
