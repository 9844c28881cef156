//! One module per WIT package version, one per world inside it: its `bindgen!`, and its
//! conversions from and to the facade types of [`crate::hooks`].
//!
//! A world's marker type implements [`crate::runtime::World`] (linking, instantiation,
//! `validate-config`) and its kind's hook trait below; a plugin handle
//! ([`crate::AuthorizationPlugin`] and the others) holds a loaded plugin of whichever version
//! the component exports and calls the hooks through these traits.

pub mod v0_1;
pub mod v0_2;

use wasmtime::Store;

use crate::hooks::{authorization, mapping, routing};
use crate::state::CallState;

type Run<T> = wasmtime::Result<T>;

pub(crate) trait Authorize: crate::runtime::World {
    fn authorize(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        request: &authorization::AuthorizationRequest,
    ) -> impl Future<Output = Run<authorization::Decision>> + Send;
}

pub(crate) trait Map: crate::runtime::World {
    fn map_outgoing_call(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        request: &mapping::OutgoingCall,
        call: &mapping::CallContext,
        network: &mapping::NetworkContext,
    ) -> impl Future<Output = Run<Result<mapping::InvitePlan, crate::hooks::CamaraError>>> + Send;

    fn map_registration(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        request: &mapping::RegistrationRequest,
        network: &mapping::NetworkContext,
    ) -> impl Future<Output = Run<Result<mapping::RegistrationPlan, crate::hooks::CamaraError>>> + Send;

    fn map_incoming_call(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        invite: &mapping::IncomingInvite,
        call_id: &str,
    ) -> impl Future<Output = Run<Result<mapping::IncomingCall, mapping::SipRejection>>> + Send;

    fn map_sip_event(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        event: &mapping::SipEvent,
        call: &mapping::CallContext,
    ) -> impl Future<Output = Run<Option<mapping::StatusUpdate>>> + Send;
}

pub(crate) trait Route: crate::runtime::World {
    fn route(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        event: &routing::Event,
        subscriptions: &[routing::Subscription],
    ) -> impl Future<Output = Run<Vec<routing::Delivery>>> + Send;

    fn on_delivery_failure(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        failure: &routing::DeliveryFailure,
    ) -> impl Future<Output = Run<routing::RetryDecision>> + Send;
}

/// Implements `runtime::World` for a world's generated bindings.
macro_rules! plugin_world {
    ($marker:ident, $kind:expr, $export:literal, $bindings:ident, $pre:ident, $pair:ty) => {
        pub(crate) struct $marker;

        impl crate::runtime::World for $marker {
            const KIND: crate::runtime::PluginKind = $kind;
            const EXPORT: &'static str = $export;
            type Pre = $pre<crate::state::CallState>;
            type Instance = $bindings;

            fn add_to_linker(
                linker: &mut wasmtime::component::Linker<crate::state::CallState>,
            ) -> wasmtime::Result<()> {
                $bindings::add_to_linker::<_, wasmtime::component::HasSelf<crate::state::CallState>>(linker, |s| s)
            }

            fn pre(pre: wasmtime::component::InstancePre<crate::state::CallState>) -> wasmtime::Result<Self::Pre> {
                $pre::new(pre)
            }

            async fn instantiate(
                pre: &Self::Pre,
                store: &mut wasmtime::Store<crate::state::CallState>,
            ) -> wasmtime::Result<Self::Instance> {
                pre.instantiate_async(store).await
            }

            async fn validate_config(
                instance: &Self::Instance,
                store: &mut wasmtime::Store<crate::state::CallState>,
                config: Vec<(String, String)>,
            ) -> wasmtime::Result<Result<(), String>> {
                type P = $pair;
                let pairs: Vec<P> = config.into_iter().map(|(name, value)| P { name, value }).collect();
                instance.call_validate_config(store, &pairs).await
            }
        }
    };
}
pub(crate) use plugin_world;

/// `fn $name(wit) -> hooks::SessionStatus` for a version's generated `session-status`.
macro_rules! status_from_wit {
    ($name:ident, $wit:ty) => {
        fn $name(status: $wit) -> crate::hooks::SessionStatus {
            use crate::hooks::SessionStatus as S;
            type W = $wit;
            match status {
                W::Initial => S::Initial,
                W::InProgress => S::InProgress,
                W::Ringing => S::Ringing,
                W::Proceeding => S::Proceeding,
                W::Connected => S::Connected,
                W::Terminated => S::Terminated,
                W::Hold => S::Hold,
                W::Resume => S::Resume,
                W::SessionCancelled => S::SessionCancelled,
                W::Declined => S::Declined,
                W::Failed => S::Failed,
                W::Waiting => S::Waiting,
                W::NoAnswer => S::NoAnswer,
                W::NotReachable => S::NotReachable,
                W::Busy => S::Busy,
            }
        }
    };
}
pub(crate) use status_from_wit;
