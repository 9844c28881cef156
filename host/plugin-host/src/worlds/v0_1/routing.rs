//! The `notification-routing` world of 0.1.0.

wasmtime::component::bindgen!({
    world: "notification-routing",
    path: "../../wit/v0.1.0",
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
    "camara:gateway/routing@0.1.0",
    NotificationRouting,
    NotificationRoutingPre,
    super::authorization::camara::gateway::types::Pair
);

impl super::super::Route for RoutingWorld {
    async fn route(
        instance: &Self::Instance,
        store: &mut wasmtime::Store<crate::state::CallState>,
        event: &hook::Event,
        subscriptions: &[hook::Subscription],
    ) -> wasmtime::Result<Vec<hook::Delivery>> {
        let event = wit::Event {
            event_type: event.event_type.clone(),
            cloudevent_json: event.cloudevent_json.clone(),
            media_session_id: event.media_session_id.clone(),
            registration_id: event.registration_id.clone(),
            device_id: event.device_id.clone(),
            phone_number: event.phone_number.clone(),
        };
        let subscriptions: Vec<_> = subscriptions
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
        let deliveries = instance.camara_gateway_routing().call_route(store, &event, &subscriptions).await?;
        Ok(deliveries
            .into_iter()
            .map(|d| hook::Delivery {
                subscription_id: d.subscription_id,
                sink: d.sink,
                content_type: d.content_type,
                headers: super::from_pairs(d.headers),
                payload: Some(d.payload),
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
        };
        Ok(match instance.camara_gateway_routing().call_on_delivery_failure(store, &failure).await? {
            wit::RetryDecision::RetryAfterMs(ms) => hook::RetryDecision::NotBeforeMs(ms.into()),
            wit::RetryDecision::GiveUp(why) => hook::RetryDecision::GiveUp(why),
        })
    }
}
