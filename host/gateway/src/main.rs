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
            running.serve_until_signal().await;
            Ok(())
        }
        Command::Plugin(command) => std::process::exit(camara_gateway::cli::plugin(command).await?),
    }
}
