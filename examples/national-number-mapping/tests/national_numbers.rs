//! The example plugin, tested in isolation through the plugin harness.

use camara_plugin_harness::{Harness, HarnessError, PluginError, build_component, fixtures};

#[tokio::test]
async fn national_numbers_reach_the_network_in_international_form() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("build");
    let mapping = Harness::new()
        .unwrap()
        .mapping(&wasm, &[("country-code", "81"), ("network-domain", "tn.operator.com")])
        .await
        .unwrap();
    let net = fixtures::network_context();
    let context = fixtures::outgoing_call_context();
    assert_eq!(mapping.wit_version(), camara_plugin_harness::WitVersion::V0_1, "the example stays on 0.1.0");
    for receiver in ["tel:0312345678", "tel:0312345678;phone-context=+81"] {
        let call = fixtures::outgoing_call("tel:+818000000001", receiver);
        let plan = mapping.map_outgoing_call(&call, &context, &net).await.unwrap().unwrap();
        assert_eq!(plan.request_uri, "sip:+81312345678@tn.operator.com;user=phone", "{receiver}");
    }
    // International numbers and other countries' contexts pass unchanged.
    let call = fixtures::outgoing_call("tel:+818000000001", "tel:+442071234567");
    let plan = mapping.map_outgoing_call(&call, &context, &net).await.unwrap().unwrap();
    assert_eq!(plan.request_uri, "sip:+442071234567@tn.operator.com;user=phone");
    let call = fixtures::outgoing_call("tel:+818000000001", "tel:0312;phone-context=+44");
    let plan = mapping.map_outgoing_call(&call, &context, &net).await.unwrap().unwrap();
    assert_eq!(plan.request_uri, "sip:0312;phone-context=+44@tn.operator.com;user=phone");
}

#[tokio::test]
async fn the_country_code_is_required() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("build");
    let err = Harness::new().unwrap().mapping(&wasm, &[]).await.err().expect("refused");
    assert!(matches!(err, HarnessError::Plugin(PluginError::InvalidConfig { .. })), "{err}");
}
