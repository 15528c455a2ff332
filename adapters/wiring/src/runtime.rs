//! Process plumbing shared by both binaries: logging, the malloc arena cap,
//! the async runtime and stop signals.

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): as text, or as
/// one JSON object a line (the event's fields flat, the request's or job's
/// span under `span`: request id, route, job and video ids).
///
/// # Errors
/// [`StartupError::LogFilter`] when `RUST_LOG` is not a valid filter.
pub fn init_tracing(format: crate::config::LogFormat) -> Result<(), crate::StartupError> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) => EnvFilter::try_new(&value).map_err(|e| crate::StartupError::LogFilter { reason: e.to_string(), value })?,
        Err(_) => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        crate::config::LogFormat::Text => {
            builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
        }
        crate::config::LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
        }
    }
    Ok(())
}

/// Installs the metrics of `service`, as the configuration says
/// (`ANB_METRICS`, `ANB_EMF_FILE`).
///
/// # Errors
/// When metrics were installed already in this process.
pub fn init_metrics(
    service: &'static str,
    namespace: &'static str,
    config: &crate::config::CommonConfig,
) -> Result<std::sync::Arc<anb_metrics::Telemetry>, anb_metrics::MetricsError> {
    let output = match config.metrics {
        crate::config::MetricsKind::Prometheus => anb_metrics::Output::Prometheus,
        crate::config::MetricsKind::Emf => anb_metrics::Output::Emf { namespace, file: config.emf_file.clone() },
    };
    anb_metrics::install(service, output)
}

/// How glibc's malloc should behave in a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// Two arenas ([`cap_malloc_arenas`]).
    Worker,
    /// Two arenas, and blocks of 4 MB or more mapped on their own, so that
    /// they go back to the system when freed: a password hash takes 19 MiB
    /// for a moment, and with glibc's moving threshold 200 log-ins at once
    /// left the web server at about 500 MB instead of about 40 MB
    /// (`bench/web/logins.py`, docs/benchmarks.md).
    Web,
}

/// Restarts the process (same pid, same arguments) with `MALLOC_ARENA_MAX=2`,
/// and for [`Memory::Web`] `MALLOC_MMAP_THRESHOLD_=4194304`, unless
/// `MALLOC_ARENA_MAX` is set already (by the unit, or by the restart).
///
/// glibc gives each thread that allocates its own arena and rarely returns
/// their free memory; a worker's decoder, scaler and encoder threads hand
/// 3 MB frames to one another, so every job left memory behind. Two arenas
/// measured the same speed and 70 MB less peak RSS with two jobs at once
/// (609 MB to 540 MB, `bench/worker.py`, docs/benchmarks.md). Call it
/// first thing in `main`.
pub fn cap_malloc_arenas(memory: Memory) {
    const VARIABLE: &str = "MALLOC_ARENA_MAX";
    if !cfg!(target_os = "linux") || std::env::var_os(VARIABLE).is_some() {
        return;
    }
    if let Ok(exe) = std::env::current_exe() {
        use std::os::unix::process::CommandExt;
        // Returns only when the exec failed; the process then goes on as is.
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        if memory == Memory::Web && std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            command.env("MALLOC_MMAP_THRESHOLD_", "4194304");
        }
        let error = command.args(args).env(VARIABLE, "2").exec();
        eprintln!("note: could not restart with {VARIABLE}=2 ({error}); going on without it");
    }
}

/// The cores this process may use (at least 1).
pub fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// What both binaries' `main` does: caps the malloc arenas, then runs
/// `body` on a multi-threaded Tokio runtime.
pub fn main_with<F: std::future::Future<Output = std::process::ExitCode>>(
    memory: Memory,
    body: impl FnOnce() -> F,
) -> std::process::ExitCode {
    cap_malloc_arenas(memory);
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(body()),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
