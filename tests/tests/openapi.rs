//! The gateway's generated OpenAPI document against the CAMARA definitions in `../shared/spec/`:
//! same operations at the same paths, same parameters, same request schemas, success codes that
//! the CAMARA files allow. Skips when the spec is not beside the checkout.

use std::collections::BTreeSet;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;
use serde_json::Value;

/// CAMARA operations this gateway does not serve yet, each with the reason.
const NOT_YET_SERVED: &[(&str, &str)] = &[];

fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {r}"))
        }
        None => node,
    }
}

fn ref_name(node: &Value) -> Option<String> {
    node.get("$ref").and_then(|r| r.as_str()).map(|r| r.rsplit('/').next().unwrap().to_string())
}

/// Property names of a schema, following `$ref` and `allOf`.
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    let mut names: BTreeSet<String> =
        schema.get("properties").and_then(|p| p.as_object()).map(|p| p.keys().cloned().collect()).unwrap_or_default();
    for part in schema.get("allOf").and_then(|a| a.as_array()).into_iter().flatten() {
        names.extend(properties(doc, part));
    }
    names
}

fn parameter_names(doc: &Value, operation: &Value) -> BTreeSet<String> {
    operation
        .get("parameters")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .map(|p| resolve(doc, p)["name"].as_str().unwrap().to_string())
        .collect()
}

fn request_schema(operation: &Value) -> Option<&Value> {
    operation.pointer("/requestBody/content/application~1json/schema")
}

#[tokio::test]
async fn the_served_document_matches_the_camara_definitions() {
    let spec_dir = repo_root().join("../shared/spec/camara-webrtc/api");
    if !spec_dir.exists() {
        eprintln!("{} is absent: skipped", spec_dir.display());
        return;
    }
    init_logs();
    let gateway = camara_gateway::start(gateway_config(None, SipTransportName::Udp)).await.unwrap();
    let ours = Api::new(gateway.http_addr).call("GET", "/openapi.json", None, &[], None).await;
    assert_eq!(ours.status, 200);
    let ours = ours.body;
    let mut compared = 0;
    for (file, base) in [
        ("webrtc-registration.yaml", "/webrtc-registration/v0.3"),
        ("webrtc-call-handling.yaml", "/webrtc-call-handling/v0.3"),
        ("webrtc-events.yaml", "/webrtc-events/v0.2"),
    ] {
        let text = std::fs::read_to_string(spec_dir.join(file)).unwrap();
        let camara: Value = serde_yaml_ng::from_str(&text).unwrap();
        for (path, item) in camara["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(operation_id) = operation.get("operationId").and_then(|o| o.as_str()) else { continue };
                if NOT_YET_SERVED.iter().any(|(id, _)| *id == operation_id) {
                    continue;
                }
                let full = format!("{base}{path}");
                let mine = ours["paths"][&full][method].clone();
                assert!(mine.is_object(), "{operation_id}: {method} {full} is missing from the gateway's document");
                assert_eq!(mine["operationId"], operation_id, "{method} {full}");
                let wanted = parameter_names(&camara, operation);
                let have = parameter_names(&ours, &mine);
                assert!(wanted.is_subset(&have), "{operation_id}: parameters {wanted:?} vs ours {have:?}");
                match (request_schema(operation), request_schema(&mine)) {
                    (Some(theirs), Some(mine)) => {
                        assert_eq!(ref_name(theirs), ref_name(mine), "{operation_id}: request schema name");
                        let (want, have) = (properties(&camara, theirs), properties(&ours, mine));
                        assert!(want.is_subset(&have), "{operation_id}: request properties {want:?} vs ours {have:?}");
                    }
                    (None, None) => {}
                    (theirs, mine) => panic!("{operation_id}: request body {theirs:?} vs ours {mine:?}"),
                }
                let camara_success: BTreeSet<&str> = operation["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .filter(|c| c.starts_with('2'))
                    .collect();
                for code in mine["responses"].as_object().unwrap().keys().filter(|c| c.starts_with('2')) {
                    assert!(
                        camara_success.contains(code.as_str()),
                        "{operation_id}: {code} is not a CAMARA success code {camara_success:?}"
                    );
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 14, "every CAMARA operation but the ones not yet served was compared");
    gateway.stop().await;
}
