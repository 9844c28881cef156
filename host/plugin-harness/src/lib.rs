//! The plugin authors' test bench.
//!
//! Owns running one plugin component on its own, with no gateway: build a plugin crate into a
//! component ([`build_component`]), load it with a configuration map ([`Harness`]), and call its
//! exports with the typed inputs of `camara-plugin-host` or with JSON ([`Harness::call_json`], the
//! engine of `camara-gateway plugin call`). Plugins run exactly as in the gateway: the same
//! runtime, limits and isolation. Does not own the plugins or the gateway.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use camara_plugin_harness::{build_component, fixtures, Harness};
//! let wasm = build_component(env!("CARGO_MANIFEST_DIR"))?;
//! let harness = Harness::new()?;
//! let policy = harness.authorization(&wasm, &[("phone-number-claim", "msisdn")]).await?;
//! let request = fixtures::authorization_request("webrtc-call-handling", "createSession", serde_json::json!({
//!     "sub": "+818000000001", "scope": "webrtc-call-handling:sessions:create"
//! }));
//! let decision = policy.authorize(&request).await?;
//! # Ok(()) }
//! ```

pub mod fixtures;
mod json;

use std::path::{Path, PathBuf};

pub use camara_plugin_host::{
    AuthorizationPlugin, MappingPlugin, PluginError, PluginKind, PluginLimits, PluginRuntime, PluginSpec,
    RoutingPlugin, RuntimeConfig, WasmSource, WitVersion, authorization, mapping, routing,
};
pub use json::JSON_FUNCTIONS;

/// Why the harness could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("building the component failed: {0}")]
    Build(String),
    #[error("{kind} plugins have no function {function:?}; they have: {known}")]
    UnknownFunction { kind: &'static str, function: String, known: String },
    #[error("input for {function} does not fit its WIT types: {reason}")]
    BadInput { function: String, reason: String },
}

/// A plugin runtime for tests and the CLI: the gateway's engine and limits, nothing else.
pub struct Harness {
    runtime: PluginRuntime,
    limits: PluginLimits,
}

impl Harness {
    pub fn new() -> Result<Self, HarnessError> {
        Self::with_limits(PluginLimits::default())
    }

    /// A harness whose plugins get `limits` instead of the gateway's defaults.
    pub fn with_limits(limits: PluginLimits) -> Result<Self, HarnessError> {
        // A small pool: a test loads a handful of plugins and calls them one at a time.
        let config = RuntimeConfig { max_concurrent_calls: 16, ..RuntimeConfig::default() };
        Ok(Harness { runtime: PluginRuntime::new(&config)?, limits })
    }

    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    fn spec(&self, wasm: &Path, config: &[(&str, &str)]) -> PluginSpec {
        PluginSpec {
            name: wasm.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into()),
            wasm: WasmSource::File(wasm.to_path_buf()),
            config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            limits: self.limits,
        }
    }

    /// Loads an authorization-policy component (its `validate-config` runs first).
    pub async fn authorization(
        &self,
        wasm: &Path,
        config: &[(&str, &str)],
    ) -> Result<AuthorizationPlugin, HarnessError> {
        Ok(AuthorizationPlugin::load(&self.runtime, self.spec(wasm, config)).await?)
    }

    /// Loads an api-mapping component.
    pub async fn mapping(&self, wasm: &Path, config: &[(&str, &str)]) -> Result<MappingPlugin, HarnessError> {
        Ok(MappingPlugin::load(&self.runtime, self.spec(wasm, config)).await?)
    }

    /// Loads a notification-routing component.
    pub async fn routing(&self, wasm: &Path, config: &[(&str, &str)]) -> Result<RoutingPlugin, HarnessError> {
        Ok(RoutingPlugin::load(&self.runtime, self.spec(wasm, config)).await?)
    }

    /// Loads `wasm` as a plugin of `kind` and calls `function` (a WIT export name such as
    /// `authorize` or `map-sip-event`) with `input`, a JSON object with one member per parameter.
    /// See [`JSON_FUNCTIONS`] for the names and parameters.
    pub async fn call_json(
        &self,
        kind: PluginKind,
        wasm: &Path,
        config: &[(&str, &str)],
        function: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, HarnessError> {
        json::call(self, kind, wasm, config, function, input).await
    }
}

/// Builds the plugin crate in `crate_dir` into a `wasm32-wasip2` component and returns its path.
///
/// Runs `cargo build --release --target wasm32-wasip2` with size-oriented settings, in a target
/// directory of its own (`<target>/plugins`), so it can run from inside `cargo test`.
pub fn build_component(crate_dir: impl AsRef<Path>) -> Result<PathBuf, HarnessError> {
    let manifest_path = crate_dir.as_ref().join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(&manifest_path)
        .output()
        .map_err(|e| HarnessError::Build(format!("cargo metadata: {e}")))?;
    if !out.status.success() {
        return Err(HarnessError::Build(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| HarnessError::Build(format!("cargo metadata: {e}")))?;
    let manifest = manifest_path.canonicalize().map_err(|e| HarnessError::Build(format!("{e}")))?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .and_then(|p| p["name"].as_str())
        .ok_or_else(|| HarnessError::Build(format!("no package at {}", manifest.display())))?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(|t| Path::new(t).join("plugins"))
        .ok_or_else(|| HarnessError::Build("cargo metadata has no target_directory".into()))?;
    let build = camara_plugin_build::PluginBuild { manifest_path, packages: vec![package.to_string()], target_dir };
    let mut paths = build.run().map_err(|e| HarnessError::Build(e.to_string()))?;
    Ok(paths.remove(0))
}
