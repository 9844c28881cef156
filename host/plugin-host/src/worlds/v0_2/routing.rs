//! The `notification-routing` world of 0.2.0: the plugin names subscriptions, the host builds
//! what is sent.

wasmtime::component::bindgen!({
    world: "notification-routing",
    path: "../../wit/v0.2.0",
    exports: { default: async },
    with: {
        "camara:gateway/types": super::authorization::camara::gateway::types,
        "camara:gateway/log": super::authorization::camara::gateway::log,
        "camara:gateway/config": super::authorization::camara::gateway::config,
    },
});

use exports::camara::gateway::routing as wit;

use crate::hooks::routing as hook;

super::super::plugin_world!(
    RoutingWorld,
    crate::PluginKind::NotificationRouting,
    "camara:gateway/routing@0.2.0",
    NotificationRouting,
    NotificationRoutingPre,
    super::authorization::camara::gateway::types::Pair
);

/// The content type of what the host builds for a 0.2.0 plugin.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

impl super::super::Route for RoutingWorld {
    async fn route(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        event: &hook::Event,
        subscriptions: &[hook::Subscription],
    ) -> wasmtime::Result<Vec<hook::Delivery>> {
        let (id, time, status) = event.head();
        let wit_event = wit::Event {
            id,
            event_type: event.event_type.clone(),
            time,
            media_session_id: event.media_session_id.clone(),
            registration_id: event.registration_id.clone(),
            device_id: event.device_id.clone(),
            phone_number: event.phone_number.clone(),
            status: status.map(super::to_status),
        };
        let wit_subscriptions: Vec<_> = subscriptions
            .iter()
            .map(|s| wit::Subscription {
                id: s.id.clone(),
                sink: s.sink.clone(),
                types: s.types.clone(),
                device_id: s.device_id.clone(),
                owner_phone_number: s.owner_phone_number.clone(),
                has_sink_credential: s.has_sink_credential,
            })
            .collect();
        let routed = instance.camara_gateway_routing().call_route(store, &wit_event, &wit_subscriptions).await?;
        Ok(routed
            .into_iter()
            .map(|r| hook::Delivery {
                // An unknown id keeps an empty sink: the gateway drops what names no subscription.
                sink: subscriptions
                    .iter()
                    .find(|s| s.id == r.subscription_id)
                    .map(|s| s.sink.clone())
                    .unwrap_or_default(),
                subscription_id: r.subscription_id,
                content_type: CLOUDEVENTS_JSON.into(),
                headers: super::from_pairs(r.headers),
                payload: None,
            })
            .collect())
    }

    async fn on_delivery_failure(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        failure: &hook::DeliveryFailure,
    ) -> wasmtime::Result<hook::RetryDecision> {
        let failure = wit::DeliveryFailure {
            subscription_id: failure.subscription_id.clone(),
            sink: failure.sink.clone(),
            attempt: failure.attempt,
            kind: match failure.kind {
                hook::FailureKind::HttpStatus => wit::FailureKind::HttpStatus,
                hook::FailureKind::Timeout => wit::FailureKind::Timeout,
                hook::FailureKind::Connection => wit::FailureKind::Connection,
            },
            status_code: failure.status_code,
            retry_after_ms: failure.retry_after_ms,
            next_attempt_ms: failure.next_attempt_ms,
        };
        Ok(match instance.camara_gateway_routing().call_on_delivery_failure(store, &failure).await? {
            wit::RetryDecision::AsScheduled => hook::RetryDecision::AsScheduled,
            wit::RetryDecision::NotBeforeMs(ms) => hook::RetryDecision::NotBeforeMs(ms),
            wit::RetryDecision::GiveUp(why) => hook::RetryDecision::GiveUp(why),
        })
    }
}
