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
    #[error("plugin {plugin}: trapped: {detail}")]
    Trapped { plugin: String, detail: String },
}

impl PluginError {
    /// The name of the plugin that failed.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Load { plugin, .. }
            | PluginError::InvalidConfig { plugin, .. }
            | PluginError::DeadlineExceeded { plugin, .. }
            | PluginError::MemoryLimitExceeded { plugin, .. }
            | PluginError::Trapped { plugin, .. } => plugin,
        }
    }
}

/// Marker error raised from the epoch callback, recognised when the call returns.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub(crate) struct DeadlineMarker;

/// Marker error raised by the resource limiter.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded")]
pub(crate) struct MemoryMarker;
