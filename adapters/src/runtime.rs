//! Process plumbing shared by both binaries: logging and stop signals.

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
///
/// # Errors
/// When `RUST_LOG` is not a valid filter; the message names it.
pub fn init_tracing() -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) => EnvFilter::try_new(&value).map_err(|e| format!("invalid RUST_LOG {value:?}: {e}"))?,
        Err(_) => EnvFilter::new("info"),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    Ok(())
}

/// Caps glibc's malloc arenas at two by restarting the process (same pid,
/// same arguments) with `MALLOC_ARENA_MAX=2`, unless the variable is set.
///
/// glibc gives each thread that allocates its own arena and rarely returns
/// their free memory; a worker's decoder, scaler and encoder threads hand
/// 3 MB frames to one another, so every job left memory behind. Two arenas
/// measured the same speed and 70 MB less peak RSS with two jobs at once
/// (609 MB to 540 MB, `bench/worker.py`, docs/benchmarks.md). Call it
/// first thing in `main`.
pub fn cap_malloc_arenas() {
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
pub fn main_with<F: std::future::Future<Output = std::process::ExitCode>>(body: impl FnOnce() -> F) -> std::process::ExitCode {
    cap_malloc_arenas();
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

/// Removes scratch directories a killed worker left in `work_dir`: those in
/// which nothing changed for `idle` (a live job keeps writing its output, so
/// another process sharing the directory loses nothing). Returns how many.
pub fn sweep_stale_scratch(work_dir: &std::path::Path, idle: std::time::Duration) -> usize {
    let newest = |path: &std::path::Path| {
        let own = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let children = std::fs::read_dir(path).into_iter().flatten().flatten().filter_map(|e| e.metadata().and_then(|m| m.modified()).ok());
        own.into_iter().chain(children).max()
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(work_dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let stale = newest(&path).and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= idle);
        if !stale {
            continue;
        }
        let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a stale scratch directory");
                removed += 1;
            }
            Err(error) => tracing::warn!(path = %path.display(), %error, "could not remove a stale scratch directory"),
        }
    }
    removed
}

/// Sweeps stale scratch every `idle` until `shutdown` (a killed process's
/// scratch goes once it has been idle that long, even while this one runs).
pub async fn sweep_scratch_until(work_dir: std::path::PathBuf, idle: std::time::Duration, shutdown: anb_application::Shutdown) {
    use futures::future::{Either, select};
    loop {
        if let Either::Right(_) = select(std::pin::pin!(tokio::time::sleep(idle)), shutdown.clone()).await {
            return;
        }
        let dir = work_dir.clone();
        let _ = tokio::task::spawn_blocking(move || sweep_stale_scratch(&dir, idle)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn only_idle_scratch_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("job-old")).unwrap();
        std::fs::write(dir.path().join("job-old/processed.mp4"), b"half").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::create_dir(dir.path().join("job-live")).unwrap();
        assert_eq!(super::sweep_stale_scratch(dir.path(), Duration::from_millis(200)), 1);
        assert!(!dir.path().join("job-old").exists() && dir.path().join("job-live").exists());
    }
}
