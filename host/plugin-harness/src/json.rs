//! Calling plugin exports with JSON, for the CLI and for tests written as data.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Harness, HarnessError, PluginKind};

/// Every function callable through [`Harness::call_json`]: kind, WIT name, JSON parameters.
pub const JSON_FUNCTIONS: &[(PluginKind, &str, &[&str])] = &[
    (PluginKind::Authorization, "authorize", &["request"]),
    (PluginKind::ApiMapping, "map-outgoing-call", &["request", "call", "network"]),
    (PluginKind::ApiMapping, "map-registration", &["request", "network"]),
    (PluginKind::ApiMapping, "map-incoming-call", &["invite", "call-id"]),
    (PluginKind::ApiMapping, "map-sip-event", &["event", "call"]),
    (PluginKind::NotificationRouting, "route", &["event", "subscriptions"]),
    (PluginKind::NotificationRouting, "on-delivery-failure", &["failure"]),
];

/// Reads parameter `name` of `function` from the input object.
fn param<T: DeserializeOwned>(input: &Value, function: &str, name: &str) -> Result<T, HarnessError> {
    let value = input.get(name).cloned().ok_or_else(|| HarnessError::BadInput {
        function: function.into(),
        reason: format!("missing member {name:?}"),
    })?;
    serde_json::from_value(value)
        .map_err(|e| HarnessError::BadInput { function: function.into(), reason: format!("{name}: {e}") })
}

fn output<T: serde::Serialize>(value: T) -> Result<Value, HarnessError> {
    serde_json::to_value(value).map_err(|e| HarnessError::BadInput { function: "output".into(), reason: e.to_string() })
}

pub(crate) async fn call(
    harness: &Harness,
    kind: PluginKind,
    wasm: &Path,
    config: &[(&str, &str)],
    function: &str,
    input: Value,
) -> Result<Value, HarnessError> {
    if !JSON_FUNCTIONS.iter().any(|(k, f, _)| *k == kind && *f == function) {
        let known: Vec<_> = JSON_FUNCTIONS.iter().filter(|(k, ..)| *k == kind).map(|(_, f, _)| *f).collect();
        return Err(HarnessError::UnknownFunction {
            kind: kind.as_str(),
            function: function.into(),
            known: known.join(", "),
        });
    }
    match kind {
        PluginKind::Authorization => {
            let plugin = harness.authorization(wasm, config).await?;
            output(plugin.authorize(&param(&input, function, "request")?).await?)
        }
        PluginKind::ApiMapping => {
            let plugin = harness.mapping(wasm, config).await?;
            match function {
                "map-outgoing-call" => {
                    let request = param(&input, function, "request")?;
                    let call = param(&input, function, "call")?;
                    output(plugin.map_outgoing_call(&request, &call, &param(&input, function, "network")?).await?)
                }
                "map-registration" => output(
                    plugin
                        .map_registration(&param(&input, function, "request")?, &param(&input, function, "network")?)
                        .await?,
                ),
                "map-incoming-call" => {
                    let call_id: String = param(&input, function, "call-id")?;
                    output(plugin.map_incoming_call(&param(&input, function, "invite")?, &call_id).await?)
                }
                _ => output(
                    plugin.map_sip_event(&param(&input, function, "event")?, &param(&input, function, "call")?).await?,
                ),
            }
        }
        PluginKind::NotificationRouting => {
            let plugin = harness.routing(wasm, config).await?;
            match function {
                "route" => {
                    let subscriptions: Vec<_> = param(&input, function, "subscriptions")?;
                    output(plugin.route(&param(&input, function, "event")?, &subscriptions).await?)
                }
                _ => output(plugin.on_delivery_failure(&param(&input, function, "failure")?).await?),
            }
        }
    }
}
