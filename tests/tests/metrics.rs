//! `/metrics` is Prometheus text that a Prometheus parser reads, and its counters move as a call
//! is made (sipp as the network) and ended.

use std::time::Duration;

use camara_gateway_tests::*;

/// The sum of every sample of `name` whose labels include all of `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn scrape(api: &Api) -> prometheus_parse::Scrape {
    let reply = api.get_text("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"].to_str().unwrap().starts_with("text/plain"), "{:?}", reply.headers);
    let lines = reply.body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_move_as_a_call_is_made() {
    let Some(mut network) = SippNetwork::start("uas_call_flow.xml", |_| {}).await else { return };
    let before = scrape(&network.api).await;
    let path = network.call().await;
    let wait = Duration::from_secs(10);
    while network.sink.next(wait).await.body["data"]["status"] != "Connected" {}
    let during = scrape(&network.api).await;
    assert_eq!(network.api.call("DELETE", &path, Some(&network.token), &[], None).await.status, 204);
    while network.sink.next(wait).await.body["data"]["status"] != "Terminated" {}
    let after = scrape(&network.api).await;

    // Counted from the gateway's first request, before anything scraped.
    let registered = [("method", "POST"), ("route", "/webrtc-registration/v0.3/sessions"), ("status", "201")];
    assert_eq!(value(&before, "camara_http_requests_total", &registered), 1.0);
    let posted = [("method", "POST"), ("route", "/webrtc-call-handling/v0.3/sessions"), ("status", "201")];
    assert_eq!(
        value(&after, "camara_http_requests_total", &posted) - value(&before, "camara_http_requests_total", &posted),
        1.0
    );
    let connected = [("direction", "outgoing"), ("status", "Connected")];
    assert_eq!(value(&after, "camara_session_status_total", &connected), 1.0);
    assert_eq!(value(&after, "camara_sip_invite_responses_total", &[("code", "200")]), 1.0);
    assert_eq!(value(&during, "camara_calls_active", &[]), 1.0);
    assert_eq!(value(&after, "camara_calls_active", &[]), 0.0);
    assert_eq!(value(&after, "camara_call_ends_total", &[("cause", "local")]), 1.0);
    let setups = after.samples.iter().find(|s| s.metric == "camara_call_setup_seconds");
    let Some(prometheus_parse::Value::Histogram(buckets)) = setups.map(|s| &s.value) else {
        panic!("no call set-up histogram: {:?}", after.samples.iter().map(|s| &s.metric).collect::<Vec<_>>());
    };
    assert_eq!(buckets.last().map(|b| b.count), Some(1.0), "{buckets:?}");
    // Plugin calls, by hook: one outgoing call mapped, every API request authorized.
    let plugin_calls = |scrape: &prometheus_parse::Scrape, hook: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "camara_plugin_call_duration_seconds" && s.labels.get("hook") == Some(hook))
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
                _ => 0.0,
            })
            .sum::<f64>()
    };
    assert_eq!(plugin_calls(&after, "map-outgoing-call") - plugin_calls(&before, "map-outgoing-call"), 1.0);
    assert!(plugin_calls(&after, "authorize") >= 4.0, "register, subscribe, POST and DELETE were authorized");
    assert!(plugin_calls(&after, "route") > plugin_calls(&before, "route"), "the call's events were routed");
    assert_eq!(value(&after, "camara_plugin_call_failures_total", &[]), 0.0);
    // The events the sink had before the scrape during the call were delivered and counted.
    assert!(value(&during, "camara_deliveries_total", &[("outcome", "delivered")]) >= 1.0);
    assert_eq!(value(&before, "camara_dead_letters", &[]), 0.0);
    assert!(before.samples.iter().any(|s| s.metric == "camara_outbox_entries"), "the outbox depth is exported");
    let (code, messages, errors) = network.sipp.finish(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "sipp failed: {errors}\n{messages}");
    network.gateway.stop().await;
}
