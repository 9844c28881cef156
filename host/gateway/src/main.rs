use camara_gateway::cli::{Cli, Command};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run { config } => {
            let config = camara_gateway::GatewayConfig::load(config.as_deref())?;
            let running = camara_gateway::start(config).await?;
            println!("camara-gateway: HTTP on http://{}", running.http_addr);
            let gateway = &running.gateway;
            if gateway.config.device_side.softphone {
                let base = gateway.config.public_base_url();
                println!("Open {base}/softphone/ in a browser to make a call.");
                if gateway.config.oauth_server.enabled {
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
            running.serve_until_signal().await;
            Ok(())
        }
        Command::Relay { config, listen } => {
            let config = camara_gateway::GatewayConfig::load(config.as_deref())?;
            let mut relay = config.relay;
            if !camara_gateway::app::auth_configured(&relay.auth) {
                relay.auth = config.auth;
            }
            let listener = tokio::net::TcpListener::bind(listen).await?;
            println!("camara-gateway relay: HTTP on http://{}", listener.local_addr()?);
            camara_relay::serve(relay, listener).await?;
            Ok(())
        }
        Command::Plugin(command) => std::process::exit(camara_gateway::cli::plugin(command).await?),
    }
}
