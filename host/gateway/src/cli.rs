//! The command line: `run` the gateway, or `plugin call` one plugin with no gateway.

use std::path::PathBuf;

use camara_plugin_harness::{Harness, JSON_FUNCTIONS, PluginKind};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "camara-gateway",
    version,
    about = "CAMARA WebRTC gateway: WebRTC APIs towards apps, SIP towards the telco network"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (embedded defaults, then --config, then CAMARA_GW_* variables).
    Run {
        #[arg(long, env = "CAMARA_GW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run only the Notification Relay, as its own process (`[relay]` of the configuration; its
    /// `[relay.auth]`, or else `[auth]`, verifies the devices' tokens). Devices then use its URL,
    /// and the gateway runs with `[device_side] relay = false`.
    Relay {
        #[arg(long, env = "CAMARA_GW_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
    /// Work with one plugin component on its own.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a component and call one of its exports with JSON input; prints the JSON result.
    Call {
        /// authorization, api-mapping or notification-routing.
        #[arg(long)]
        kind: PluginKind,
        #[arg(long)]
        wasm: PathBuf,
        /// The WIT export, e.g. authorize, map-sip-event, route (see `plugin functions`).
        #[arg(long)]
        function: String,
        /// A JSON object with one member per parameter; `-` reads standard input.
        #[arg(long, default_value = "-")]
        input: String,
        /// Plugin configuration entries, key=value (repeatable).
        #[arg(long = "config", value_parser = parse_pair)]
        config: Vec<(String, String)>,
    },
    /// List the functions `plugin call` knows and their JSON parameters.
    Functions,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// Runs a `plugin` subcommand; returns the process exit code.
pub async fn plugin(command: PluginCommand) -> anyhow::Result<i32> {
    match command {
        PluginCommand::Functions => {
            for (kind, function, params) in JSON_FUNCTIONS {
                println!("{:<22} {:<20} {{{}}}", kind.as_str(), function, params.join(", "));
            }
            Ok(0)
        }
        PluginCommand::Call { kind, wasm, function, input, config } => {
            let text = if input == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&input)?
            };
            let input: serde_json::Value = serde_json::from_str(&text)?;
            let config: Vec<(&str, &str)> = config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            match Harness::new()?.call_json(kind, &wasm, &config, &function, input).await {
                Ok(output) => {
                    println!("{}", serde_json::to_string_pretty(&output)?);
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(1)
                }
            }
        }
    }
}
