use std::time::Duration;

/// Why a plugin could not be loaded or why one call of it failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin}: cannot load: {reason}")]
    Load { plugin: String, reason: String },
    #[error("plugin {plugin}: configuration rejected: {reason}")]
    InvalidConfig { plugin: String, reason: String },
    #[error("plugin {plugin}: ran past its deadline of {deadline:?}")]
    DeadlineExceeded { plugin: String, deadline: Duration },
    #[error("plugin {plugin}: exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimitExceeded { plugin: String, limit_bytes: usize },
    /// The wasm backtrace, the guest's panic message and source position, and its stderr are in
    /// `detail`: for the log, never for an API client ([`PluginError::public_message`]).
    #[error("plugin {plugin}: trapped: {detail}")]
    Trapped { plugin: String, detail: String },
    /// The plugin's quota and wait queue are full, or every instance of the pool is in use:
    /// the call was not started.
    #[error("plugin {plugin}: overloaded: {detail}")]
    Overloaded { plugin: String, detail: String },
    /// The plugin failed too often lately: calls are refused until `retry_after` has passed.
    #[error("plugin {plugin}: short-circuited after repeated failures, for {retry_after:?} more")]
    CircuitOpen { plugin: String, retry_after: Duration },
}

/// What kind of failure a [`PluginError`] is, without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginFailureKind {
    Load,
    Config,
    Deadline,
    Memory,
    Trap,
    Overload,
    CircuitOpen,
}

impl PluginFailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginFailureKind::Load => "cannot load",
            PluginFailureKind::Config => "configuration rejected",
            PluginFailureKind::Deadline => "deadline exceeded",
            PluginFailureKind::Memory => "memory limit exceeded",
            PluginFailureKind::Trap => "trapped",
            PluginFailureKind::Overload => "overloaded",
            PluginFailureKind::CircuitOpen => "short-circuited after repeated failures",
        }
    }
}

impl PluginError {
    /// The name of the plugin that failed.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Load { plugin, .. }
            | PluginError::InvalidConfig { plugin, .. }
            | PluginError::DeadlineExceeded { plugin, .. }
            | PluginError::MemoryLimitExceeded { plugin, .. }
            | PluginError::Trapped { plugin, .. }
            | PluginError::Overloaded { plugin, .. }
            | PluginError::CircuitOpen { plugin, .. } => plugin,
        }
    }

    pub fn kind(&self) -> PluginFailureKind {
        match self {
            PluginError::Load { .. } => PluginFailureKind::Load,
            PluginError::InvalidConfig { .. } => PluginFailureKind::Config,
            PluginError::DeadlineExceeded { .. } => PluginFailureKind::Deadline,
            PluginError::MemoryLimitExceeded { .. } => PluginFailureKind::Memory,
            PluginError::Trapped { .. } => PluginFailureKind::Trap,
            PluginError::Overloaded { .. } => PluginFailureKind::Overload,
            PluginError::CircuitOpen { .. } => PluginFailureKind::CircuitOpen,
        }
    }

    /// When the plugin may take calls again, for a circuit that is open.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PluginError::CircuitOpen { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the failure is the plugin's own (it trapped, overran, ran out of memory), as
    /// opposed to the load on it.
    pub fn is_plugin_fault(&self) -> bool {
        matches!(self.kind(), PluginFailureKind::Deadline | PluginFailureKind::Memory | PluginFailureKind::Trap)
    }

    /// The plugin and the kind of failure only: what may be shown outside the gateway. The
    /// `Display` form, with backtraces and guest source paths, is for the log.
    pub fn public_message(&self) -> String {
        format!("plugin {}: {}", self.plugin(), self.kind().as_str())
    }
}

/// Marker error raised from the epoch callback, or when a call waiting in the host (a WASI clock
/// or poll, where no epoch check runs) reaches its deadline; recognised when the call returns.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub(crate) struct DeadlineMarker;

/// Marker error raised by the resource limiter.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded")]
pub(crate) struct MemoryMarker;
