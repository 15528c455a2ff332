//! `anb-worker`: processes videos from the job queue, for hosts that only
//! process (any number may run against one database). `anb-worker transcode
//! IN OUT` runs the transcoder once on a file, the same entry point the worker
//! uses, for benchmarks and debugging.

use std::path::PathBuf;
use std::process::ExitCode;

use anb_adapters::config::CommonConfig;
use anb_adapters::gst::{GstTranscoder, TranscodeSettings};
use anb_adapters::wiring::Services;
use anb_application::worker::shutdown_on;
use anb_domain::ports::Transcoder;
use clap::{Parser, Subcommand};

/// ANB Rising Stars Showcase video worker. Every flag can be set by its
/// environment variable.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonConfig,

    /// Jobs processed at once by this process.
    #[arg(long, env = "ANB_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Process jobs until SIGTERM or Ctrl-C (the default).
    Run,
    /// Transcode one file as the worker would, and exit. The flags override
    /// the worker's settings, for measuring alternatives.
    Transcode {
        input: PathBuf,
        output: PathBuf,
        /// x264 speed preset.
        #[arg(long)]
        preset: Option<String>,
        /// x264 B-frames.
        #[arg(long)]
        bframes: Option<u32>,
        /// videoscale method.
        #[arg(long)]
        scale_method: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = anb_adapters::runtime::init_tracing() {
        eprintln!("anb-worker: {message}");
        return ExitCode::from(2);
    }
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.common, cli.workers).await,
        Command::Transcode { input, output, preset, bframes, scale_method } => {
            let defaults = TranscodeSettings::default();
            let settings = TranscodeSettings {
                speed_preset: preset.unwrap_or(defaults.speed_preset.clone()),
                bframes: bframes.unwrap_or(defaults.bframes),
                scale_method: scale_method.unwrap_or(defaults.scale_method.clone()),
                ..defaults
            };
            transcode(settings, &input, &output).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(common: &CommonConfig, workers: u32) -> Result<(), String> {
    let services = Services::build(common, "http://localhost").await?;
    let shutdown = shutdown_on(anb_adapters::runtime::termination());
    tracing::info!(workers, "processing jobs");
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (processor, shutdown) = (services.processor.clone(), shutdown.clone());
            tokio::spawn(async move { processor.run(shutdown).await })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| format!("worker task failed: {e}"))?;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn transcode(settings: TranscodeSettings, input: &std::path::Path, output: &std::path::Path) -> Result<(), String> {
    let transcoder = GstTranscoder::new(settings)?;
    let started = std::time::Instant::now();
    let report = transcoder.transcode(input, output).await.map_err(|e| e.to_string())?;
    println!("{{\"output_seconds\": {:.3}, \"wall_seconds\": {:.3}}}", report.duration.as_secs_f64(), started.elapsed().as_secs_f64());
    Ok(())
}
