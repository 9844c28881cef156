//! Builds the default plugins (plugins/ in this workspace) into components, so that building or
//! testing the gateway needs no separate plugin step.

use std::path::PathBuf;

const PLUGINS: [&str; 3] = ["authorization-default", "api-mapping-default", "notification-routing-default"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.join("../..").canonicalize().expect("workspace root");
    for dir in ["wit", "plugins/sdk", "Cargo.lock"]
        .iter()
        .map(|d| root.join(d))
        .chain(PLUGINS.iter().map(|p| root.join("plugins").join(p)))
    {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("plugins");
    let build = camara_plugin_build::PluginBuild {
        manifest_path: root.join("Cargo.toml"),
        packages: PLUGINS.iter().map(|p| p.to_string()).collect(),
        target_dir,
    };
    let components = match build.run() {
        Ok(c) => c,
        Err(e) => panic!("building the default plugin bundle failed: {e}"),
    };
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    for (package, component) in PLUGINS.iter().zip(components) {
        std::fs::copy(&component, out_dir.join(format!("{package}.wasm"))).expect("copy component");
    }
}
