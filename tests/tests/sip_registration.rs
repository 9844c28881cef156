//! `sip-account` mode: a device registration becomes a SIP REGISTER with digest authentication
//! towards the registrar (sipp), and its deletion an un-REGISTER.

use std::time::Duration;

use camara_gateway::config::{RegistrarConfig, SipAccount, SipTransportName};
use camara_gateway_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_registers_with_digest_and_its_deletion_unregisters() {
    init_logs();
    if !sipp_available() {
        eprintln!("sipp is not installed (apt-get install sip-tester): skipped");
        return;
    }
    let registrar = Sipp::uas("host/sip/tests/sipp/uas_register_digest.xml", SipTransportName::Udp).await;
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.plugins.api_mapping.config.insert("registration-mode".into(), "sip-account".into());
    config.plugins.api_mapping.config.insert("home-domain".into(), "operator.test".into());
    config.sip.registrar = Some(RegistrarConfig {
        address: registrar.addr,
        transport: SipTransportName::Udp,
        domain: "operator.test".into(),
        expires_seconds: 3600,
        answer_timeout_ms: 10_000,
    });
    config.sip.accounts.insert(ALICE.into(), SipAccount { username: ALICE.into(), password: "secret".into() });
    let gateway = camara_gateway::start(config).await.expect("gateway starts");
    let api = Api::new(gateway.http_addr);

    let no_account = api.register(&tokens::for_subscriber(BOB)).await;
    assert_eq!((no_account.status, no_account.body["code"].as_str()), (403, Some("PERMISSION_DENIED")));

    let token = tokens::for_subscriber(ALICE);
    let registration = api.register(&token).await;
    assert_eq!(registration.status, 201, "{:?}", registration.body);
    let id = registration.body["registrationId"].as_str().unwrap().to_string();
    let deleted =
        api.call("DELETE", &format!("/webrtc-registration/v0.3/sessions/{id}"), Some(&token), &[], None).await;
    assert_eq!(deleted.status, 204);

    let (code, messages, errors) = registrar.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp failed: {errors}\n{messages}");
    let register = received_message(&messages, "REGISTER").expect("REGISTER logged");
    assert!(register.starts_with("REGISTER sip:operator.test SIP/2.0"), "{register}");
    assert!(register.contains(&format!("<sip:{ALICE}@operator.test>")), "{register}");
    gateway.stop().await;
}
