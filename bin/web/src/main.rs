//! Starts the web server: reads the configuration, builds the application,
//! serves until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use anb_wiring::config::{CommonConfig, WebConfig};
use anb_wiring::runtime;
use clap::Parser;

/// ANB Rising Stars Showcase: HTTP API, Swagger UI and (by default) an
/// embedded worker pool. Every flag can be set by its environment variable.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonConfig,
    #[command(flatten)]
    web: WebConfig,
}

fn main() -> ExitCode {
    runtime::main_with(runtime::Memory::Web, serve)
}

async fn serve() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = runtime::init_tracing(cli.common.log_format) {
        eprintln!("anb-web: {message}");
        return ExitCode::from(2);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    use anyhow::Context;
    let telemetry = runtime::init_metrics("anb-web", "ANB/Backend", &cli.common)?;
    let app = anb_web::Application::build(cli.common, cli.web, Some(telemetry)).await.context("cannot start")?;
    app.run_until(runtime::termination()).await.context("server failed")
}
