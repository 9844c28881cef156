//! The default plugins as they were at an earlier commit, built for the before/after figures
//! of a WIT change in one run (`BENCH_PLUGINS_BASELINE=<rev>`; see BENCHMARKS.md).
//!
//! Their sources are taken with `git archive` (so the checkout needs that history), put in a
//! workspace of their own with the dev-dependencies dropped (the harness they name is not part
//! of the archive), and built exactly as the bundle builds the current ones.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The baseline components, in the bundle's order: authorization, api-mapping, routing.
pub struct Baseline {
    pub rev: String,
    pub wasm: [Vec<u8>; 3],
}

const PLUGINS: [&str; 3] = ["authorization-default", "api-mapping-default", "notification-routing-default"];

pub fn build(rev: &str) -> Baseline {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root");
    let work = root.join("target/bench-baseline").join(rev);
    let src = work.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).expect("baseline dir");
    let mut paths = vec!["wit".to_string(), "plugins/sdk".into(), "Cargo.lock".into()];
    paths.extend(PLUGINS.iter().map(|p| format!("plugins/{p}")));
    let archive = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["archive", "--format=tar", rev, "--"])
        .args(&paths)
        .output()
        .expect("git archive");
    assert!(archive.status.success(), "git archive {rev}: {}", String::from_utf8_lossy(&archive.stderr));
    let mut tar =
        Command::new("tar").arg("-x").arg("-C").arg(&src).stdin(std::process::Stdio::piped()).spawn().expect("tar");
    std::io::Write::write_all(tar.stdin.as_mut().expect("stdin"), &archive.stdout).expect("tar input");
    assert!(tar.wait().expect("tar").success(), "tar -x");
    for plugin in PLUGINS {
        let manifest = src.join("plugins").join(plugin).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("plugin manifest");
        let kept = text.split("\n[dev-dependencies]").next().unwrap_or(&text).to_string();
        std::fs::write(&manifest, kept).expect("plugin manifest");
    }
    let members: Vec<String> = PLUGINS.iter().map(|p| format!("\"plugins/{p}\"")).collect();
    let workspace = format!(
        "[workspace]\nresolver = \"3\"\nmembers = [{}]\n\n[workspace.package]\nversion = \"0.1.0\"\n\
         edition = \"2024\"\nrust-version = \"1.95\"\nlicense = \"Apache-2.0\"\n\n[workspace.dependencies]\n\
         wit-bindgen = \"0.61\"\nserde_json = \"1\"\nserde = {{ version = \"1\", features = [\"derive\"] }}\n",
        members.join(", ")
    );
    std::fs::write(src.join("Cargo.toml"), workspace).expect("workspace manifest");
    let build = camara_plugin_build::PluginBuild {
        manifest_path: src.join("Cargo.toml"),
        packages: PLUGINS.iter().map(|p| p.to_string()).collect(),
        target_dir: work.join("target"),
    };
    let components: Vec<PathBuf> = build.run().unwrap_or_else(|e| panic!("building the {rev} plugins: {e}"));
    let read = |p: &PathBuf| std::fs::read(p).expect("component");
    Baseline { rev: rev.to_string(), wasm: [read(&components[0]), read(&components[1]), read(&components[2])] }
}
