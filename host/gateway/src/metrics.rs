//! Prometheus metrics at `/metrics`: every metric name is declared here, recorded through the
//! `metrics` facade where things happen, and rendered by `metrics-exporter-prometheus`.
//!
//! One recorder per process (the facade's is global): several gateways in one process (tests)
//! share it. An application embedding the gateway that installed its own recorder keeps it; the
//! gateway's `/metrics` is then empty.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::app::Gateway;

pub const PATH: &str = "/metrics";

/// HTTP requests by method, route (the matched pattern, never the raw path) and status.
pub const HTTP_REQUESTS: &str = "camara_http_requests_total";
/// Their latency, by method and route.
pub const HTTP_DURATION: &str = "camara_http_request_duration_seconds";
/// `POST /sessions` to the INVITE handed to the SIP stack.
pub const CALL_SETUP: &str = "camara_call_setup_seconds";
/// Session statuses reached, by direction and status.
pub const SESSION_STATUS: &str = "camara_session_status_total";
/// Calls with media anchored now.
pub const CALLS_ACTIVE: &str = "camara_calls_active";
/// Responses to our INVITEs, by status code.
pub const SIP_RESPONSES: &str = "camara_sip_invite_responses_total";
/// Calls ended on the SIP side, by cause.
pub const CALL_ENDS: &str = "camara_call_ends_total";
/// Delivery attempts (and routing attempts of events), by outcome: `delivered`, `retried`,
/// `dead-lettered`.
pub const DELIVERIES: &str = "camara_deliveries_total";
/// Outbox entries (events not yet routed and notifications not yet delivered), at the scrape.
pub const OUTBOX_DEPTH: &str = "camara_outbox_entries";
/// Age of the oldest outbox entry (since it was first due), at the scrape; 0 when empty.
pub const OUTBOX_OLDEST: &str = "camara_outbox_oldest_entry_seconds";
/// Subscriptions the gateway ended on its own, by reason (`sink_unreachable`).
pub const SUBSCRIPTIONS_ENDED: &str = "camara_subscriptions_ended_total";
/// Dead letters kept, at the scrape.
pub const DEAD_LETTERS: &str = "camara_dead_letters";
/// RTP packets received, sent and lost (RFC 3550: expected from the sequence numbers less
/// received), by leg (`network`, `device`); counted for each call when its media closes.
pub const RTP_RECEIVED: &str = "camara_rtp_packets_received_total";
pub const RTP_SENT: &str = "camara_rtp_packets_sent_total";
pub const RTP_LOST: &str = "camara_rtp_packets_lost_total";
/// The interarrival jitter of each call's incoming stream at its end, by leg.
pub const RTP_JITTER: &str = "camara_rtp_jitter_seconds";
/// Plugin reloads (SIGHUP, admin API), by outcome (`reloaded`, `failed`).
pub const PLUGIN_RELOADS: &str = "camara_plugin_reloads_total";
pub use camara_plugin_host::metrics::{CALL_DURATION as PLUGIN_CALL_DURATION, FAILURES as PLUGIN_FAILURES};

const SECONDS_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The process's recorder, installed on first use (`app::start` uses it first).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        // Histograms (not summaries), so that several gateways' figures can be aggregated.
        let builder = builder.set_buckets(&SECONDS_BUCKETS).expect("bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed: /metrics stays empty");
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status");
    metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "HTTP request latency");
    metrics::describe_histogram!(CALL_SETUP, metrics::Unit::Seconds, "POST /sessions to the INVITE sent");
    metrics::describe_counter!(SESSION_STATUS, "Session statuses reached, by direction and status");
    metrics::describe_gauge!(CALLS_ACTIVE, "Calls with media anchored");
    metrics::describe_counter!(SIP_RESPONSES, "Responses to our INVITEs, by status code");
    metrics::describe_counter!(CALL_ENDS, "Calls ended on the SIP side, by cause");
    metrics::describe_counter!(DELIVERIES, "Delivery and routing attempts, by outcome");
    metrics::describe_gauge!(OUTBOX_DEPTH, "Events not yet routed and notifications not yet delivered");
    metrics::describe_gauge!(OUTBOX_OLDEST, metrics::Unit::Seconds, "Age of the oldest outbox entry");
    metrics::describe_gauge!(DEAD_LETTERS, "Dead letters kept");
    metrics::describe_counter!(SUBSCRIPTIONS_ENDED, "Subscriptions the gateway ended on its own, by reason");
    metrics::describe_counter!(PLUGIN_RELOADS, "Plugin reloads, by outcome");
    metrics::describe_counter!(RTP_RECEIVED, "RTP packets received, by leg, counted when a call ends");
    metrics::describe_counter!(RTP_SENT, "RTP packets sent, by leg, counted when a call ends");
    metrics::describe_counter!(RTP_LOST, "RTP packets lost (RFC 3550), by leg, counted when a call ends");
    metrics::describe_histogram!(RTP_JITTER, metrics::Unit::Seconds, "Interarrival jitter at a call's end, by leg");
    metrics::describe_histogram!(
        PLUGIN_CALL_DURATION,
        metrics::Unit::Seconds,
        "Plugin call latency, by plugin, kind and hook"
    );
    metrics::describe_counter!(
        PLUGIN_FAILURES,
        "Plugin calls failed or not started, by plugin, kind, hook and failure"
    );
}

/// Counts the RTP of a call whose media is closing.
pub fn record_rtp(stats: &camara_media::RelayStats) {
    let legs = [
        ("network", stats.from_network_reception, stats.to_network),
        ("device", stats.from_device_reception, stats.to_device),
    ];
    for (leg, reception, sent) in legs {
        metrics::counter!(RTP_RECEIVED, "leg" => leg).increment(reception.received);
        metrics::counter!(RTP_SENT, "leg" => leg).increment(sent);
        metrics::counter!(RTP_LOST, "leg" => leg).increment(reception.lost);
        if reception.received > 1 {
            metrics::histogram!(RTP_JITTER, "leg" => leg).record(reception.jitter_us as f64 / 1e6);
        }
    }
}

/// `GET /metrics`, in the Prometheus text format.
pub async fn serve(State(gw): State<Arc<Gateway>>) -> Response {
    metrics::gauge!(CALLS_ACTIVE).set(gw.media_sessions.len() as f64);
    record_outbox(&gw).await;
    let body = handle().render();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The outbox gauges, read from the store (a scrape reads every entry: fine for the outbox of
/// one gateway, which is empty when sinks keep up).
async fn record_outbox(gw: &Gateway) {
    let backend = gw.store.backend();
    let (Ok(notifications), Ok(events), Ok(dead)) = (
        backend.pending_notifications(usize::MAX).await,
        backend.pending_events(usize::MAX).await,
        backend.dead_letters(usize::MAX).await,
    ) else {
        return;
    };
    let oldest = notifications.iter().map(|n| n.first_due).chain(events.iter().map(|e| e.first_due)).min();
    let age = oldest.map_or(0.0, |t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
    metrics::gauge!(OUTBOX_DEPTH).set((notifications.len() + events.len()) as f64);
    metrics::gauge!(OUTBOX_OLDEST).set(age);
    metrics::gauge!(DEAD_LETTERS).set(dead.len() as f64);
}

/// Middleware counting every request and its latency, and running it in a `http` span (method,
/// route, `x-correlator`) so that every log line it causes names the request.
pub async fn track_http(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let correlator = request.headers().get("x-correlator").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let span = tracing::info_span!("http", method, route, correlator = correlator.to_string());
    let response = next.run(request).instrument(span).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route).record(started.elapsed().as_secs_f64());
    response
}
