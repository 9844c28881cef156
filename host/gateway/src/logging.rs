//! The process's log output: `[log] format`, filtered by `RUST_LOG` (default `info`), on stderr.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// `[log]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans), for log collectors.
    Json,
}

/// Colour only for a person at a terminal: escape codes in a file or a collector are noise.
/// `NO_COLOR` (<https://no-color.org>) turns it off there too.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber; a second call (tests) leaves the first in place.
pub fn init(config: &LogConfig) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.with_ansi(colour()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_read_from_its_lowercase_name() {
        let parsed: LogConfig = serde_json::from_value(serde_json::json!({"format": "json"})).unwrap();
        assert_eq!(parsed.format, LogFormat::Json);
        assert_eq!(LogConfig::default().format, LogFormat::Text);
        assert!(serde_json::from_value::<LogConfig>(serde_json::json!({"format": "xml"})).is_err());
    }
}
