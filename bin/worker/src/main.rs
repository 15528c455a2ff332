//! `anb-worker`: processes videos from the job queue, for hosts that only
//! process (any number may run against one database). `anb-worker transcode
//! IN OUT` runs the transcoder once on a file, the same entry point the worker
//! uses, for benchmarks and debugging.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anb_application::shutdown_on;
use anb_domain::ports::Transcoder;
use anb_gstreamer::{GstTranscoder, TranscodeSettings};
use anb_wiring::config::CommonConfig;
use anb_wiring::{Checked, Role, Services, runtime};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// ANB Rising Stars Showcase video worker. Every flag can be set by its
/// environment variable.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonConfig,

    /// Jobs processed at once by this process (default: one per core, each
    /// job then decoding and encoding on one thread; bench/worker.py drained
    /// a queue 12 % faster than one job at a time, and as fast as with
    /// two per core at half the wait per job).
    #[arg(long, env = "ANB_WORKERS", default_value_t = one_per_core(), value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,

    /// Address to serve the Prometheus text of this worker's metrics at
    /// (`GET /metrics`); none when unset.
    #[arg(long, env = "ANB_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Process jobs until SIGTERM or Ctrl-C (the default).
    Run,
    /// Bring the database schema up to date, and exit (every process also
    /// does this at start; this is for a release step before them).
    Migrate,
    /// Put `failed` videos back to `uploaded` with a new job and their
    /// attempts from zero (once what made them fail is fixed), and exit. The
    /// jobs go through the outbox: the running processes hand them to the
    /// queue. Exits 1 when a video could not be retried (not found, not
    /// failed).
    Retry {
        /// Ids of the videos.
        #[arg(required = true)]
        video_ids: Vec<i64>,
    },
    /// Create what the configuration names, when missing: the S3 bucket
    /// (ANB_STORAGE=s3), the SQS queue and its dead-letter queue with a
    /// redrive after ANB_MAX_ATTEMPTS receives (ANB_QUEUE=sqs), the
    /// RabbitMQ exchange, queues and bindings (ANB_QUEUE=rabbitmq), or the
    /// Kafka topics (ANB_QUEUE=kafka); print their names and URLs as
    /// `KEY=value` lines.
    Provision {
        /// Name of the job queue; the dead-letter queue is NAME-dlq.
        #[arg(long, env = "ANB_SQS_QUEUE_NAME", default_value = "anb-videos")]
        queue_name: String,
    },
    /// Print, as JSON lines, every (player, network) where at least
    /// MIN_ACCOUNTS accounts of one network voted for the player within
    /// SINCE: the network the accounts were created from (`"basis":
    /// "signup"`) or the one their votes came from (`"vote"`), as keyed
    /// pseudonyms; with the accounts' ids and their votes. Largest first.
    AuditVotes {
        /// How far back to look: `90m`, `24h`, `7d` (or seconds).
        #[arg(long, default_value = "7d", value_parser = parse_duration)]
        since: Duration,
        /// Fewest accounts of one network that make a finding.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
        min_accounts: u32,
    },
    /// Remove every vote of these accounts in one transaction, recompute the
    /// videos' and players' totals, and make the web servers' cached pages
    /// stale; print what was removed as one JSON line.
    VoidVotes {
        /// Ids of the accounts (as `audit-votes` prints them).
        #[arg(long = "account", required = true, num_args = 1..)]
        accounts: Vec<i64>,
    },
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
        /// Scaling filter of our scaler (catrom, lanczos, mitchell,
        /// bilinear), or GStreamer's as videoscale:<method>.
        #[arg(long)]
        scale_method: Option<String>,
        /// x264 subpixel motion refinement (subme).
        #[arg(long)]
        subme: Option<u32>,
        /// x264 motion search (dia, hex, umh).
        #[arg(long)]
        motion_search: Option<String>,
        /// Decoder and encoder threads (0: as many as they choose).
        #[arg(long)]
        threads: Option<u32>,
        /// x264 constant quality (CRF).
        #[arg(long)]
        quality: Option<u32>,
        /// Length of each of the intro and outro cards, in seconds (0: no
        /// cards; for measuring what they cost).
        #[arg(long)]
        card_seconds: Option<f64>,
    },
}

fn main() -> ExitCode {
    runtime::main_with(runtime::Memory::Worker, work)
}

async fn work() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = runtime::init_tracing(cli.common.log_format) {
        eprintln!("anb-worker: {message}");
        return ExitCode::from(2);
    }
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.common, cli.workers, cli.metrics_addr).await,
        Command::Migrate => migrate(&cli.common).await,
        Command::Retry { video_ids } => retry(&cli.common, &video_ids).await,
        Command::Provision { queue_name } => provision(&cli.common, &queue_name).await,
        Command::AuditVotes { since, min_accounts } => audit_votes(&cli.common, since, min_accounts).await,
        Command::VoidVotes { accounts } => void_votes(&cli.common, &accounts).await,
        Command::Transcode { input, output, preset, bframes, scale_method, subme, motion_search, threads, quality, card_seconds } => {
            let defaults = TranscodeSettings::default();
            let settings = TranscodeSettings {
                speed_preset: preset.unwrap_or(defaults.speed_preset.clone()),
                bframes: bframes.unwrap_or(defaults.bframes),
                scale_method: scale_method.unwrap_or(defaults.scale_method.clone()),
                subme: subme.unwrap_or(defaults.subme),
                motion_search: motion_search.unwrap_or(defaults.motion_search.clone()),
                threads: threads.unwrap_or(defaults.threads),
                quality: quality.unwrap_or(defaults.quality),
                card: match card_seconds.map(Duration::try_from_secs_f64) {
                    None => defaults.card,
                    Some(Ok(card)) => card,
                    Some(Err(e)) => {
                        eprintln!("anb-worker: --card-seconds: {e}");
                        return ExitCode::from(2);
                    }
                },
                ..defaults
            };
            transcode(settings, &input, &output).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn one_per_core() -> u32 {
    runtime::cores().min(64)
}

async fn run(common: &CommonConfig, workers: u32, metrics_addr: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let telemetry = runtime::init_metrics("anb-worker", "ANB/Worker", common)?;
    let checked = Checked::new(common.clone(), Role::Worker { workers }).context("cannot start")?;
    let services = Services::build(&checked).await.context("cannot start")?;
    let shutdown = shutdown_on(runtime::termination());
    if let Some(addr) = metrics_addr {
        let (telemetry, shutdown) = (telemetry.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = anb_metrics::serve_prometheus(addr, telemetry, shutdown).await {
                tracing::error!(%error, %addr, "cannot serve the metrics");
            }
        });
    }
    let metrics = tokio::spawn(telemetry.run(shutdown.clone()));
    services.start_background(&shutdown).join().await;
    let _ = metrics.await;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(common: &CommonConfig) -> anyhow::Result<()> {
    // The default SQLite file lives in the data directory.
    std::fs::create_dir_all(&common.data_dir).with_context(|| format!("cannot create {}", common.data_dir.display()))?;
    anb_sql::Database::connect(&anb_wiring::database_url(common).await?, 1).await.context("database")?;
    tracing::info!("database schema up to date");
    Ok(())
}

async fn retry(common: &CommonConfig, ids: &[i64]) -> anyhow::Result<()> {
    use anb_domain::ports::{VideoRepository, VideoRepositoryError};
    std::fs::create_dir_all(&common.data_dir).with_context(|| format!("cannot create {}", common.data_dir.display()))?;
    // Two connections: a refused move is explained by reading the video beside its transaction.
    let database = anb_sql::Database::connect(&anb_wiring::database_url(common).await?, 2).await.context("database")?;
    let videos = database.videos();
    let mut refused = 0;
    for &id in ids {
        let outcome = match videos.retry_failed(anb_domain::VideoId(id)).await {
            Ok(()) => "queued again".to_owned(),
            Err(VideoRepositoryError::NotFound) => "not retried: no such video".to_owned(),
            Err(VideoRepositoryError::InvalidTransition { from, .. }) => format!("not retried: it is {from}, not failed"),
            Err(VideoRepositoryError::Backend(e)) => return Err(e).context("database"),
        };
        refused += usize::from(!outcome.starts_with("queued"));
        tracing::info!(video_id = id, outcome, "retry");
        println!("video {id}: {outcome}");
    }
    anyhow::ensure!(refused == 0, "{refused} of {} videos not retried", ids.len());
    Ok(())
}

/// `90m`, `24h`, `7d`, `30s` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 90m, 24h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

async fn audit_votes(common: &CommonConfig, since: Duration, min_accounts: u32) -> anyhow::Result<()> {
    let audit = anb_wiring::ballot_audit(&tool(common)?).await.context("cannot start")?;
    let findings = audit.findings(since, min_accounts).await.context("database")?;
    for f in &findings {
        let line = serde_json::json!({
            "player_id": f.player.0,
            "player": f.player_name,
            "basis": f.basis.as_str(),
            "network": f.network.0,
            "accounts": f.accounts.len(),
            "votes": f.votes,
            "first_vote": f.first_vote.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "last_vote": f.last_vote.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "account_ids": f.accounts.iter().map(|a| a.0).collect::<Vec<_>>(),
        });
        println!("{line}");
    }
    tracing::info!(findings = findings.len(), since_seconds = since.as_secs(), min_accounts, "vote audit done");
    Ok(())
}

async fn void_votes(common: &CommonConfig, accounts: &[i64]) -> anyhow::Result<()> {
    let audit = anb_wiring::ballot_audit(&tool(common)?).await.context("cannot start")?;
    let ids: Vec<anb_domain::UserId> = accounts.iter().map(|&id| anb_domain::UserId(id)).collect();
    let report = audit.void(&ids).await.context("database")?;
    let line = serde_json::json!({
        "accounts": accounts,
        "votes_removed": report.votes,
        "videos": report.videos.iter().map(|v| v.0).collect::<Vec<_>>(),
    });
    println!("{line}");
    Ok(())
}

async fn provision(common: &CommonConfig, queue_name: &str) -> anyhow::Result<()> {
    let settings = anb_wiring::provision(common, queue_name).await?;
    anyhow::ensure!(
        !settings.is_empty(),
        "nothing to provision: the data directory and the database queue need none (set ANB_STORAGE=s3, or ANB_QUEUE=sqs, rabbitmq or \
         kafka)"
    );
    for (variable, value) in settings {
        println!("{variable}={value}");
    }
    Ok(())
}

/// The settings of a one-shot command (no job loops), checked.
fn tool(common: &CommonConfig) -> anyhow::Result<Checked> {
    Ok(Checked::new(common.clone(), Role::Worker { workers: 0 })?)
}

async fn transcode(settings: TranscodeSettings, input: &std::path::Path, output: &std::path::Path) -> anyhow::Result<()> {
    let transcoder = GstTranscoder::new(settings)?;
    let started = std::time::Instant::now();
    let report = transcoder.transcode(input, output, &anb_domain::ProgressSink::new()).await?;
    println!("{{\"output_seconds\": {:.3}, \"wall_seconds\": {:.3}}}", report.duration.as_secs_f64(), started.elapsed().as_secs_f64());
    Ok(())
}
