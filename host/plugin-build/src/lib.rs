//! Builds plugin crates into WebAssembly components.
//!
//! Owns: the one `cargo build --target wasm32-wasip2` invocation that the default bundle's build
//! script and the plugin authors' harness share, with the size-oriented release settings every
//! plugin gets (so a plugin crate needs no profile of its own).
//! Does not own: loading or running components (see `camara-plugin-host`).
//!
//! Plugins get their own target directory so that a nested build never waits on the lock of the
//! cargo invocation that started it (a build script, or a running `cargo test`).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The component-model target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Why a plugin build failed.
#[derive(Debug)]
pub enum BuildError {
    Spawn(std::io::Error),
    Cargo { status: String, stderr: String },
    MissingOutput(PathBuf),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Spawn(e) => write!(f, "could not run cargo: {e}"),
            BuildError::Cargo { status, stderr } => write!(
                f,
                "cargo build --target {TARGET} failed ({status}). Is the target installed? \
                 `rustup target add {TARGET}`\n{stderr}"
            ),
            BuildError::MissingOutput(p) => write!(f, "cargo succeeded but {} is missing", p.display()),
        }
    }
}

impl std::error::Error for BuildError {}

/// One plugin build: a manifest (a crate or a workspace) and the packages to build in it.
#[derive(Debug, Clone)]
pub struct PluginBuild {
    pub manifest_path: PathBuf,
    pub packages: Vec<String>,
    pub target_dir: PathBuf,
}

impl PluginBuild {
    /// Builds the packages and returns the path of each package's `.wasm` component, in order.
    pub fn run(&self) -> Result<Vec<PathBuf>, BuildError> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--release")
            .arg("--target")
            .arg(TARGET)
            .arg("--manifest-path")
            .arg(&self.manifest_path)
            .arg("--target-dir")
            .arg(&self.target_dir);
        for p in &self.packages {
            cmd.arg("-p").arg(p);
        }
        // Settings of the outer build must not leak into the guest build.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_MANIFEST_DIR",
        ] {
            cmd.env_remove(var);
        }
        // Small, self-contained components: ~50 KB instead of megabytes.
        cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
            .env("CARGO_PROFILE_RELEASE_LTO", "true")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
        let out = cmd.output().map_err(BuildError::Spawn)?;
        if !out.status.success() {
            return Err(BuildError::Cargo {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        self.packages
            .iter()
            .map(|p| {
                let path = component_path(&self.target_dir, p);
                if path.exists() { Ok(path) } else { Err(BuildError::MissingOutput(path)) }
            })
            .collect()
    }
}

/// Where cargo puts the component of `package` under `target_dir`.
pub fn component_path(target_dir: &Path, package: &str) -> PathBuf {
    target_dir.join(TARGET).join("release").join(format!("{}.wasm", package.replace('-', "_")))
}
