//! Starts the web server: reads the configuration, builds the application,
//! serves until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use anb_adapters::config::{CommonConfig, WebConfig};
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
    anb_adapters::runtime::main_with(serve)
}

async fn serve() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = anb_adapters::runtime::init_tracing() {
        eprintln!("anb-web: {message}");
        return ExitCode::from(2);
    }
    let app = match anb_web::Application::build(cli.common, cli.web).await {
        Ok(app) => app,
        Err(message) => {
            tracing::error!("cannot start: {message}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until(anb_adapters::runtime::termination()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
