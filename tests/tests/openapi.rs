//! The gateway's generated OpenAPI document against the CAMARA definitions in `../shared/spec/`:
//! same operations at the same paths, same parameters, same request schemas, the same
//! constraints on every schema both name (but the deliberate differences the README lists),
//! success codes that the CAMARA files allow, the configured issuer's discovery URL. Skips when the spec is not beside the checkout.

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

/// The constraints of a property or schema the two documents must agree on.
const CONSTRAINTS: [&str; 8] =
    ["maxLength", "minLength", "pattern", "maxItems", "minItems", "minimum", "maximum", "additionalProperties"];

/// Where the served document deliberately says more than the CAMARA files (the README's list):
/// schema, property, constraint.
const DELIBERATE: &[(&str, &str, &str)] = &[
    // The consolidated subscription of the CAMARA call flows (`[api] multi_event_subscriptions`).
    ("Subscription", "types", "maxItems"),
];

/// An optional member as utoipa writes it (`oneOf` the schema and `null`): the schema.
fn non_null(schema: &Value) -> &Value {
    let variants = schema.get("oneOf").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    match variants {
        [one, null] if null["type"] == "null" => one,
        _ => schema,
    }
}

/// Every constraint of the CAMARA component schemas that the served schema of the same name
/// states otherwise, as "schema.property: constraint ours vs theirs".
fn constraint_differences(camara: &Value, ours: &Value) -> Vec<String> {
    let mut differences = Vec::new();
    let theirs_schemas = camara["components"]["schemas"].as_object().unwrap();
    for (name, theirs) in theirs_schemas {
        let Some(mine) = ours["components"]["schemas"].get(name) else { continue };
        let mut pairs = vec![(String::new(), theirs, mine)];
        for (property, their_property) in theirs.get("properties").and_then(Value::as_object).into_iter().flatten() {
            if let Some(my_property) = mine["properties"].get(property) {
                pairs.push((property.clone(), resolve(camara, their_property), resolve(ours, non_null(my_property))));
            }
        }
        for (property, theirs, mine) in pairs {
            for constraint in CONSTRAINTS {
                let deliberate = DELIBERATE.contains(&(name.as_str(), property.as_str(), constraint));
                if theirs.get(constraint) != mine.get(constraint) && !deliberate {
                    differences.push(format!(
                        "{name}.{property}: {constraint} {:?} vs CAMARA {:?}",
                        mine.get(constraint),
                        theirs.get(constraint)
                    ));
                }
            }
        }
    }
    differences
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
    assert_eq!(
        ours["components"]["securitySchemes"]["openId"]["openIdConnectUrl"],
        format!("{ISSUER}/.well-known/openid-configuration"),
        "the configured issuer's discovery document"
    );
    let mut differences = Vec::new();
    let mut compared = 0;
    for (file, base) in [
        ("webrtc-registration.yaml", "/webrtc-registration/v0.3"),
        ("webrtc-call-handling.yaml", "/webrtc-call-handling/v0.3"),
        ("webrtc-events.yaml", "/webrtc-events/v0.2"),
    ] {
        let text = std::fs::read_to_string(spec_dir.join(file)).unwrap();
        let camara: Value = serde_yaml_ng::from_str(&text).unwrap();
        differences.extend(constraint_differences(&camara, &ours).into_iter().map(|d| format!("{file}: {d}")));
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
                        let (theirs, mine) = (resolve(&camara, theirs), resolve(&ours, mine));
                        if theirs.get("additionalProperties") != mine.get("additionalProperties") {
                            differences.push(format!("{operation_id}: request additionalProperties"));
                        }
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
                let list = |doc: &Value, op: &Value| {
                    resolve(doc, &op["responses"]["200"]).pointer("/content/application~1json/schema/maxItems").cloned()
                };
                if list(&camara, operation) != list(&ours, &mine) {
                    differences.push(format!("{operation_id}: the maxItems of its list"));
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 14, "every CAMARA operation but the ones not yet served was compared");
    assert!(differences.is_empty(), "differences not listed as deliberate:\n{}", differences.join("\n"));
    gateway.stop().await;
}
