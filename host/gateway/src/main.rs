use std::process::ExitCode;

use camara_gateway::cli::{Cli, Command};
use camara_gateway::listen::{Listener, bind_tcp};
use camara_gateway::logging;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(code) => code,
        Err(e) => {
            // One line with its causes (`cannot listen for the HTTP API on ...: Address already in
            // use`); through the log once it is set up, so that a JSON collector sees it too.
            if tracing::dispatcher::has_been_set() {
                tracing::error!("{e:#}");
            } else {
                eprintln!("camara-gateway: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => {
            let config = camara_gateway::GatewayConfig::load(config.as_deref())?;
            logging::init(&config.log);
            let running = camara_gateway::start(config).await?;
            println!("camara-gateway: HTTP on http://{}", running.http_addr);
            greet(&running.gateway);
            running.serve_until_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Relay { config, listen } => {
            let config = camara_gateway::GatewayConfig::load(config.as_deref())?;
            logging::init(&config.log);
            let mut relay = config.relay;
            if !camara_gateway::app::auth_configured(&relay.auth) {
                relay.auth = config.auth;
            }
            let listener = bind_tcp(Listener::Relay, listen).await?;
            println!("camara-gateway relay: HTTP on http://{}", listener.local_addr()?);
            camara_relay::serve(relay, listener).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(command) => {
            logging::init(&Default::default());
            let code = camara_gateway::cli::plugin(command).await?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
    }
}

/// What a newcomer on the embedded defaults does next.
fn greet(gateway: &camara_gateway::Gateway) {
    let base = gateway.config.public_base_url();
    let oauth = &gateway.config.oauth_server;
    if gateway.config.device_side.softphone {
        println!("Open {base}/softphone/ in a browser to make a call.");
        if oauth.enabled {
            println!("  Sign in as alice / alice (+818000000001) or bob / bob (+818000000002);");
            println!("  signed in in two browsers, they call each other.");
        }
        if gateway.demo.is_some() {
            use camara_gateway::demo::{ECHO_NUMBER, TONE_NUMBER};
            println!("  Call {ECHO_NUMBER} to hear your own voice, {TONE_NUMBER} for a 440 Hz tone.");
            println!("  To be called by the echo number once signed in as alice:");
            println!("    curl -X POST {base}/demo/calls -d '{{\"to\": \"+818000000001\"}}'");
        }
    }
    if oauth.enabled && oauth.clients.iter().any(|c| c.client_id == camara_oauth::DEMO_SCRIPT_CLIENT_ID) {
        println!(
            "From a script: client_credentials as {} / {} (development only; alice's line): examples/curl/quickstart.sh {base}",
            camara_oauth::DEMO_SCRIPT_CLIENT_ID,
            camara_oauth::DEMO_SCRIPT_SECRET
        );
    }
}
