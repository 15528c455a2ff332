//! `anb-web`: the HTTP face of the ANB Rising Stars Showcase (spec/api.md),
//! with Swagger UI at `/docs`, the OpenAPI document at `/api/openapi.json`,
//! signed file links under `/files/`, and (in single-node mode) the worker
//! pool in the same process.

pub mod api;
pub mod app;
pub mod files;
pub mod problem;
pub mod upload;

pub use app::Application;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
///
/// # Errors
/// When `RUST_LOG` is not a valid filter.
pub fn init_tracing() -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) => EnvFilter::try_new(&value).map_err(|e| format!("invalid RUST_LOG {value:?}: {e}"))?,
        Err(_) => EnvFilter::new("info"),
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    Ok(())
}
