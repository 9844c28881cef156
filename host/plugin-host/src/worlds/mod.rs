//! One module per WIT world: its `bindgen!`, its typed plugin handle and its calls.

pub mod authorization;
pub mod mapping;
pub mod routing;

/// Implements `runtime::World` for a world's generated bindings.
macro_rules! plugin_world {
    ($marker:ident, $kind:expr, $bindings:ident, $pre:ident) => {
        pub(crate) struct $marker;

        impl crate::runtime::World for $marker {
            const KIND: crate::runtime::PluginKind = $kind;
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
                let pairs: Vec<Pair> = config.into_iter().map(|(name, value)| Pair { name, value }).collect();
                instance.call_validate_config(store, &pairs).await
            }
        }
    };
}
pub(crate) use plugin_world;
