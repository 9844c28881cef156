//! Plugins swapped while the gateway runs: SIGHUP (or `POST /admin/plugins/reload`) reads the
//! plugin section of the configuration file again. A call in progress stays up; the next
//! request is decided by the new plugins; a configuration that fails to validate leaves the
//! running plugins in place and says why. The swap here is the authorization policy's
//! `phone-number-claim`: which claim of the token names the subscriber.

use std::time::Duration;

use camara_gateway_tests::*;
use serde_json::json;

const ADMIN: &str = "[admin]\nbearer_token = \"operator-key\"\n";

/// A token of an application server acting for alice: its `sub` is not a number, `msisdn`
/// names her.
fn msisdn_token() -> String {
    let mut claims = tokens::claims("app-server-7", ALL_SCOPES);
    claims["msisdn"] = json!(ALICE);
    tokens::sign(&claims)
}

/// Rewrites the configuration file with `plugins` (whole tables) added.
fn configure(call: &ProcessCall, plugins: &str) {
    let text = std::fs::read_to_string(&call.config).unwrap();
    let base = text.split("# --- plugins ---").next().unwrap().to_string();
    std::fs::write(&call.config, format!("{base}# --- plugins ---\n{plugins}\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_plugins_and_leaves_the_call_up() {
    let Some(mut call) = ProcessCall::start("reload", ADMIN).await else { return };
    let path = call.session_path();
    let msisdn = msisdn_token();
    let before = call.api.call("GET", &path, Some(&msisdn), &[], None).await;
    assert!(matches!(before.status, 401 | 403), "not a subscriber yet: {:?}", before.body);

    configure(&call, "[plugins.authorization.config]\nphone-number-claim = \"msisdn\"");
    signal(&call.gateway, "HUP");
    // The next requests are the new policy's: the msisdn token reads the session.
    let mut read = None;
    for _ in 0..100 {
        let reply = call.api.call("GET", &path, Some(&msisdn), &[], None).await;
        if reply.status == 200 {
            read = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read = read.expect("the reloaded policy reads the subscriber from msisdn");
    assert_eq!(read.body["status"], "Connected", "the call stayed up: {:?}", read.body);

    // A configuration that does not validate leaves the running plugins, and the admin call
    // says why.
    configure(&call, "[plugins.authorization.config]\nphone-number-claim = \"msisdn\"\nrequire-scopes = \"maybe\"");
    let refused = call.api.call("POST", "/admin/plugins/reload", Some("operator-key"), &[], None).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{:?}", refused.body);
    assert!(refused.body["message"].as_str().unwrap().contains("require-scopes"), "{:?}", refused.body);
    signal(&call.gateway, "HUP");
    let metrics = call.api.get_text("/metrics").await.body;
    assert!(metrics.contains("camara_plugin_reloads_total{outcome=\"reloaded\"} 1"), "{metrics}");
    assert_eq!(call.api.call("GET", &path, Some(&msisdn), &[], None).await.status, 200, "the running policy stayed");

    // The call ends as any call: BYE to the network, Terminated to the subscriber.
    assert_eq!(call.api.call("DELETE", &path, Some(&msisdn), &[], None).await.status, 204);
    next_status(&mut call.sink, "Terminated").await;
    let (code, messages, errors) = call.sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "sipp: {errors}\n{messages}");
    let admin = call.api.call("POST", "/admin/plugins/reload", None, &[], None).await;
    assert_eq!(admin.status, 401, "the admin call needs the operator's key");
}
