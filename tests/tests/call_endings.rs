//! Every way a call ends reaches the API: the subscriber gets `Terminated` (or the cancellation)
//! with a reason that says why, and `GET` answers the same. Each case is a sipp network playing
//! one ending against the gateway's SIP side. Covered elsewhere: the device's DELETE
//! (`walking_skeleton.rs`), the media timeout (`media.rs`), the ends of incoming calls (decline,
//! no answer, the network's BYE: `incoming.rs`).

use std::time::Duration;

use camara_gateway_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

/// An outgoing call placed towards a sipp network playing `scenario`, with its subscriber's sink.
struct Call {
    network: SippNetwork,
    path: String,
}

impl Call {
    async fn place(scenario: &str) -> Option<Call> {
        // The network of the session-timer case asks for a 4 s session.
        let network = SippNetwork::start(scenario, |config| config.sip.min_se_seconds = 2).await?;
        let path = network.call().await;
        Some(Call { network, path })
    }

    /// The data of the next session-status event.
    async fn next_status(&mut self) -> Value {
        self.network.sink.next(WAIT).await.body["data"].clone()
    }

    /// Skips events until one with `status`; panics on a final status first.
    async fn until(&mut self, status: &str) -> Value {
        loop {
            let data = self.next_status().await;
            if data["status"] == status {
                return data;
            }
            assert!(!["Terminated", "Failed"].contains(&data["status"].as_str().unwrap_or_default()), "{data}");
        }
    }

    /// The next event is `status` with a reason containing `reason`, and `GET` answers `status`.
    async fn ends(&mut self, status: &str, reason: &str) {
        let ended = self.next_status().await;
        assert_eq!(ended["status"], status, "{ended}");
        assert!(ended["reason"].as_str().is_some_and(|r| !r.is_empty() && r.contains(reason)), "{ended}");
        assert_eq!(self.read_status().await, status);
    }

    async fn read_status(&self) -> String {
        let read = self.network.api.call("GET", &self.path, Some(&self.network.token), &[], None).await;
        assert_eq!(read.status, 200, "{:?}", read.body);
        read.body["status"].as_str().unwrap_or_default().to_string()
    }

    /// sipp played its whole scenario (it received what the gateway had to send); returns the
    /// methods it received.
    async fn finish(self) -> Vec<String> {
        let (code, messages, errors) = self.network.sipp.finish(WAIT).await;
        assert_eq!(code, 0, "sipp: {errors}\n{messages}");
        self.network.gateway.stop().await;
        received_start_lines(&messages).iter().map(|l| l.split(' ').next().unwrap_or_default().to_string()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_network_never_refreshes_ends_with_bye_and_terminated_naming_the_timer() {
    let Some(mut call) = Call::place("uas_session_never_refreshed.xml").await else { return };
    call.until("Connected").await;
    // refresher=uas with 4 s: the BYE goes at 4 - 4/3 s (RFC 4028 s.10).
    call.ends("Terminated", "session timer").await;
    assert_eq!(call.finish().await.last().map(String::as_str), Some("BYE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_offer_refused_with_481_ends_the_call_with_bye_and_terminated() {
    let Some(mut call) = Call::place("uas_reinvite_481.xml").await else { return };
    call.until("Connected").await;
    let status_path = format!("{}/status", call.path);
    let hold = call
        .network
        .api
        .call("PUT", &status_path, Some(&call.network.token), &[], Some(json!({"status": "Hold"})))
        .await;
    assert_eq!(hold.status, 409, "{:?}", hold.body);
    assert!(hold.body["message"].as_str().is_some_and(|m| m.contains("481")), "{:?}", hold.body);
    call.ends("Terminated", "481").await;
    assert_eq!(call.finish().await.last().map(String::as_str), Some("BYE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_crossing_the_devices_cancel_is_not_reported_as_connected() {
    let Some(mut call) = Call::place("uas_late_200_after_cancel.xml").await else { return };
    call.until("Ringing").await;
    assert_eq!(call.network.api.call("DELETE", &call.path, Some(&call.network.token), &[], None).await.status, 204);
    let ended = call.next_status().await;
    assert_eq!(ended["status"], "SessionCancelled", "{ended}");
    // The 200, its ACK and the BYE come after; none of it may reach the device.
    assert!(call.network.sink.quiet_for(Duration::from_millis(1500)).await, "an event after the cancellation");
    assert_eq!(call.read_status().await, "SessionCancelled");
    let received = call.finish().await;
    assert_eq!(received, ["INVITE", "CANCEL", "ACK", "BYE"], "the answer is ACKed and ended with BYE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_networks_bye_ends_the_session() {
    let Some(mut call) = Call::place("uas_remote_bye_after_answer.xml").await else { return };
    call.until("Connected").await;
    call.ends("Terminated", "").await;
    call.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_the_network_ends_the_session_with_its_status() {
    let Some(mut call) = Call::place("uas_busy.xml").await else { return };
    let ended = call.next_status().await;
    let status = ended["status"].as_str().unwrap_or_default().to_string();
    assert!(!["Initial", "InProgress", "Ringing", "Connected"].contains(&status.as_str()), "{ended}");
    assert!(
        ended["reason"].as_str().is_some_and(|r| r.contains("486") || r.to_lowercase().contains("busy")),
        "{ended}"
    );
    // The mapping plugin read the response's Reason header (WIT 0.2.0 `sip-message`).
    assert!(ended["reason"].as_str().is_some_and(|r| r.contains("Reason: Q.850;cause=17")), "{ended}");
    assert_eq!(call.read_status().await, status);
    assert!(call.network.sink.quiet_for(Duration::from_millis(500)).await, "one final status only");
    call.finish().await;
}
