//! The typed handles the gateway holds, one per plugin kind, whatever WIT version the
//! component was built for.
//!
//! A component is compiled once, its exports name its version, and it is linked against that
//! version's bindings (the newest it exports wins). The handles take and return the facade
//! types of [`crate::hooks`] only.

use crate::PluginError;
use crate::hooks::{CamaraError, authorization, mapping, routing};
use crate::runtime::{Compiled, LoadedPlugin, PluginRuntime, PluginSpec, World};
use crate::worlds::{Authorize, Map, Route, v0_1, v0_2};

/// A WIT package version the host binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WitVersion {
    V0_1,
    V0_2,
}

impl WitVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.0",
        }
    }
}

/// A loaded plugin of world `Old` (0.1.0) or `New` (0.2.0).
enum Versioned<Old: World, New: World> {
    V0_1(LoadedPlugin<Old>),
    V0_2(LoadedPlugin<New>),
}

impl<Old: World, New: World> Versioned<Old, New> {
    async fn load(runtime: &PluginRuntime, spec: PluginSpec) -> Result<Self, PluginError> {
        let compiled: Compiled = runtime.compile(&spec).await?;
        if compiled.exports(New::EXPORT) {
            Ok(Versioned::V0_2(runtime.load(spec, compiled).await?))
        } else if compiled.exports(Old::EXPORT) {
            Ok(Versioned::V0_1(runtime.load(spec, compiled).await?))
        } else {
            let [new, old] = New::KIND.worlds();
            Err(PluginError::Load {
                reason: format!("implements neither {new} nor {old} (it exports {})", compiled.export_names()),
                plugin: spec.name,
            })
        }
    }

    fn name(&self) -> &str {
        match self {
            Versioned::V0_1(p) => p.name(),
            Versioned::V0_2(p) => p.name(),
        }
    }

    fn version(&self) -> WitVersion {
        match self {
            Versioned::V0_1(_) => WitVersion::V0_1,
            Versioned::V0_2(_) => WitVersion::V0_2,
        }
    }
}

/// Runs hook `$method` of a versioned plugin: a fresh instance, the call, its outcome.
macro_rules! call_hook {
    ($versioned:expr, $hook:literal, <$old:ty, $new:ty>::$method:ident ( $($arg:expr),* )) => {
        match &$versioned {
            Versioned::V0_1(p) => {
                let mut call = p.start($hook).await?;
                let left = call.time_left();
                let result =
                    crate::runtime::within(left, <$old>::$method(&call.instance, &mut call.store, $($arg),*)).await;
                call.finish(result)
            }
            Versioned::V0_2(p) => {
                let mut call = p.start($hook).await?;
                let left = call.time_left();
                let result =
                    crate::runtime::within(left, <$new>::$method(&call.instance, &mut call.store, $($arg),*)).await;
                call.finish(result)
            }
        }
    };
}

macro_rules! handle {
    ($(#[$doc:meta])* $handle:ident, $old:ty, $new:ty) => {
        $(#[$doc])*
        pub struct $handle(Versioned<$old, $new>);

        impl $handle {
            pub async fn load(runtime: &PluginRuntime, spec: PluginSpec) -> Result<Self, PluginError> {
                Versioned::load(runtime, spec).await.map(Self)
            }

            pub fn name(&self) -> &str {
                self.0.name()
            }

            /// The WIT version the component was built for.
            pub fn wit_version(&self) -> WitVersion {
                self.0.version()
            }
        }
    };
}

type AuthorizationV1 = v0_1::authorization::AuthorizationWorld;
type AuthorizationV2 = v0_2::authorization::AuthorizationWorld;
type MappingV1 = v0_1::mapping::MappingWorld;
type MappingV2 = v0_2::mapping::MappingWorld;
type RoutingV1 = v0_1::routing::RoutingWorld;
type RoutingV2 = v0_2::routing::RoutingWorld;

handle!(
    /// A loaded authorization-policy plugin.
    AuthorizationPlugin,
    AuthorizationV1,
    AuthorizationV2
);
handle!(
    /// A loaded api-mapping plugin.
    MappingPlugin,
    MappingV1,
    MappingV2
);
handle!(
    /// A loaded notification-routing plugin.
    RoutingPlugin,
    RoutingV1,
    RoutingV2
);

impl AuthorizationPlugin {
    pub async fn authorize(
        &self,
        request: &authorization::AuthorizationRequest,
    ) -> Result<authorization::Decision, PluginError> {
        call_hook!(self.0, "authorize", <AuthorizationV1, AuthorizationV2>::authorize(request))
    }
}

impl MappingPlugin {
    /// `call`: the session about to be created, with the Call-ID its INVITE will have.
    pub async fn map_outgoing_call(
        &self,
        request: &mapping::OutgoingCall,
        call: &mapping::CallContext,
        network: &mapping::NetworkContext,
    ) -> Result<Result<mapping::InvitePlan, CamaraError>, PluginError> {
        call_hook!(self.0, "map-outgoing-call", <MappingV1, MappingV2>::map_outgoing_call(request, call, network))
    }

    pub async fn map_registration(
        &self,
        request: &mapping::RegistrationRequest,
        network: &mapping::NetworkContext,
    ) -> Result<Result<mapping::RegistrationPlan, CamaraError>, PluginError> {
        call_hook!(self.0, "map-registration", <MappingV1, MappingV2>::map_registration(request, network))
    }

    pub async fn map_incoming_call(
        &self,
        invite: &mapping::IncomingInvite,
        call_id: &str,
    ) -> Result<Result<mapping::IncomingCall, mapping::SipRejection>, PluginError> {
        call_hook!(self.0, "map-incoming-call", <MappingV1, MappingV2>::map_incoming_call(invite, call_id))
    }

    pub async fn map_sip_event(
        &self,
        event: &mapping::SipEvent,
        call: &mapping::CallContext,
    ) -> Result<Option<mapping::StatusUpdate>, PluginError> {
        call_hook!(self.0, "map-sip-event", <MappingV1, MappingV2>::map_sip_event(event, call))
    }
}

impl RoutingPlugin {
    pub async fn route(
        &self,
        event: &routing::Event,
        subscriptions: &[routing::Subscription],
    ) -> Result<Vec<routing::Delivery>, PluginError> {
        call_hook!(self.0, "route", <RoutingV1, RoutingV2>::route(event, subscriptions))
    }

    /// Whether the plugin is asked after a failed delivery. A 0.1.0 plugin is not: its
    /// decision assumed a plugin-owned schedule, which the host's replaced (a 0.1.0 default
    /// gave up after 15 s).
    pub fn decides_retries(&self) -> bool {
        self.0.version() >= WitVersion::V0_2
    }

    pub async fn on_delivery_failure(
        &self,
        failure: &routing::DeliveryFailure,
    ) -> Result<routing::RetryDecision, PluginError> {
        call_hook!(self.0, "on-delivery-failure", <RoutingV1, RoutingV2>::on_delivery_failure(failure))
    }
}
