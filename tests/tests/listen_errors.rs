//! A listener that cannot be bound stops the start with an error naming the listener, its
//! address and the setting that moves it; here the port is taken by a listener the test holds.

use std::net::SocketAddr;

use camara_gateway::config::SipTransportName;
use camara_gateway_tests::*;

/// The start's error as `main` prints it: one line with its causes.
async fn start_error(config: camara_gateway::GatewayConfig) -> String {
    match camara_gateway::start(config).await {
        Ok(_) => panic!("the gateway started on a taken port"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_http_port_is_named_as_the_http_api_with_its_address() {
    init_logs();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.http.listen = addr;
    let error = start_error(config).await;
    assert!(
        error.starts_with(&format!("cannot listen for the HTTP API on {addr} (set by [http] listen): ")),
        "{error}"
    );
    assert!(error.contains("in use"), "the cause: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_sip_port_is_named_with_its_transport() {
    init_logs();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.sip.udp_listen = Some(addr);
    config.sip.tcp_listen = Some(SocketAddr::from(([127, 0, 0, 1], free_port())));
    let error = start_error(config).await;
    assert!(
        error.starts_with(&format!("cannot listen for SIP over UDP on {addr} (set by [sip] udp_listen): ")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_demo_endpoint_port_is_named_as_the_demo_endpoint() {
    init_logs();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut config = gateway_config(None, SipTransportName::Udp);
    config.device_side.demo_endpoint = true;
    config.device_side.demo_endpoint_listen = addr;
    let error = start_error(config).await;
    assert!(error.starts_with(&format!("cannot listen for the demo endpoint (SIP over UDP) on {addr}")), "{error}");
}
