//! `anb-metrics`: one instrumentation, two outputs. The code records
//! through the `metrics` crate's macros; [`install`] routes every record to
//! a Prometheus registry (rendered as text at `GET /metrics`, see
//! [`Telemetry::render`] and [`serve_prometheus`]) and, with
//! `ANB_METRICS=emf`, to CloudWatch Embedded Metric Format lines on stdout
//! or in a file of their own (`ANB_EMF_FILE`; see [`emf`]), which
//! CloudWatch Logs turns into metrics.
//!
//! The metric names are fixed here ([`names`]) and are what the dashboard
//! and alarms of `deploy/aws/template.yaml` read; docs/operations.md says
//! what each means.

pub mod emf;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anb_domain::ports::{JobEvent, JobEvents};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;

/// Every metric the binaries record.
pub mod names {
    /// Requests answered, by `route` (the route's template) and `status`.
    pub const HTTP_REQUESTS: &str = "http_requests_total";
    /// Time to answer, in milliseconds, by `route`.
    pub const HTTP_DURATION: &str = "http_request_duration_ms";
    /// Uploads accepted.
    pub const UPLOADS_ACCEPTED: &str = "uploads_accepted";
    /// Uploads refused, by `reason`.
    pub const UPLOADS_REJECTED: &str = "uploads_rejected";
    /// Votes recorded.
    pub const VOTES: &str = "votes";
    /// Jobs a worker began.
    pub const JOBS_STARTED: &str = "jobs_started";
    /// Jobs that ended with the video processed.
    pub const JOBS_SUCCEEDED: &str = "jobs_succeeded";
    /// Videos that ended `failed`.
    pub const JOBS_FAILED: &str = "jobs_failed";
    /// Failed attempts that will be tried again.
    pub const JOBS_RETRIED: &str = "jobs_retried";
    /// Jobs moved to the dead-letter queue.
    pub const JOBS_DEAD_LETTERED: &str = "jobs_dead_lettered";
    /// Time a transcode took, in seconds.
    pub const TRANSCODE_SECONDS: &str = "transcode_seconds";
    /// Time from an upload to its video processed, in seconds.
    pub const UPLOAD_TO_PROCESSED_SECONDS: &str = "upload_to_processed_seconds";
    /// Time a job waited between its upload and a worker taking it, in seconds.
    pub const QUEUE_LAG_SECONDS: &str = "queue_lag_seconds";
    /// Connections the web server refused as they came, by `reason`: `full`
    /// (every place busy), `per_client` (the client address holds its
    /// share), `streams_full` (every event-stream place taken).
    pub const HTTP_CONNECTIONS_REFUSED: &str = "http_connections_refused_total";
    /// Connections the web server closed to protect the others, by `reason`:
    /// `idle` and `slow_head` (evicted to make room), `stalled_write`
    /// (evicted: its client stopped reading), `send_timeout` (its client
    /// read too slowly for too long).
    pub const HTTP_CONNECTIONS_CLOSED: &str = "http_connections_closed_total";
}

/// Where metrics go besides Prometheus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Prometheus text only.
    Prometheus,
    /// Also EMF lines, in this CloudWatch namespace, on stdout or appended
    /// to `file`.
    Emf { namespace: &'static str, file: Option<std::path::PathBuf> },
}

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("a metrics recorder is already installed")]
    AlreadyInstalled,
    #[error("cannot open the EMF file {path} (ANB_EMF_FILE): {source}")]
    EmfFile { path: std::path::PathBuf, source: std::io::Error },
}

/// The installed metrics of this process.
pub struct Telemetry {
    prometheus: PrometheusHandle,
    emf: Option<(Mutex<emf::Flusher>, emf::Sink)>,
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("emf", &self.emf.is_some()).finish_non_exhaustive()
    }
}

/// How often EMF lines are written (CloudWatch's resolution is a minute).
pub const EMF_INTERVAL: Duration = Duration::from_secs(60);

/// Installs the process-wide recorder for `service` (`anb-web`,
/// `anb-worker`), and describes every metric.
///
/// # Errors
/// [`MetricsError::AlreadyInstalled`] when called twice in one process.
pub fn install(service: &'static str, output: Output) -> Result<Arc<Telemetry>, MetricsError> {
    let prometheus = PrometheusBuilder::new().add_global_label("service", service).build_recorder();
    let handle = prometheus.handle();
    let mut fanout = FanoutBuilder::default().add_recorder(prometheus);
    let emf = match output {
        Output::Prometheus => None,
        Output::Emf { namespace, file } => {
            let sink = match file {
                Some(path) => emf::Sink::file(&path).map_err(|source| MetricsError::EmfFile { path, source })?,
                None => emf::Sink::Stdout,
            };
            let recorder = emf::Recorder::default();
            let flusher = recorder.flusher(namespace, vec![("Service".to_owned(), service.to_owned())]);
            fanout = fanout.add_recorder(recorder);
            Some((Mutex::new(flusher), sink))
        }
    };
    metrics::set_global_recorder(fanout.build()).map_err(|_| MetricsError::AlreadyInstalled)?;
    describe();
    let process = metrics_process::Collector::default();
    process.describe();
    process.collect();
    Ok(Arc::new(Telemetry { prometheus: handle, emf, process }))
}

fn describe() {
    use names::*;
    describe_counter!(HTTP_REQUESTS, Unit::Count, "Requests answered, by route and status.");
    describe_histogram!(HTTP_DURATION, Unit::Milliseconds, "Time to answer a request, by route.");
    describe_counter!(UPLOADS_ACCEPTED, Unit::Count, "Uploads accepted.");
    describe_counter!(UPLOADS_REJECTED, Unit::Count, "Uploads refused, by reason.");
    describe_counter!(VOTES, Unit::Count, "Votes recorded.");
    describe_counter!(JOBS_STARTED, Unit::Count, "Jobs a worker began.");
    describe_counter!(JOBS_SUCCEEDED, Unit::Count, "Jobs that ended with the video processed.");
    describe_counter!(JOBS_FAILED, Unit::Count, "Videos that ended failed.");
    describe_counter!(JOBS_RETRIED, Unit::Count, "Failed attempts that will be tried again.");
    describe_counter!(JOBS_DEAD_LETTERED, Unit::Count, "Jobs moved to the dead-letter queue.");
    describe_histogram!(TRANSCODE_SECONDS, Unit::Seconds, "Time a transcode took.");
    describe_histogram!(UPLOAD_TO_PROCESSED_SECONDS, Unit::Seconds, "Time from an upload to its video processed.");
    describe_histogram!(QUEUE_LAG_SECONDS, Unit::Seconds, "Time a job waited between its upload and a worker taking it.");
    describe_counter!(HTTP_CONNECTIONS_REFUSED, Unit::Count, "Connections refused as they came, by reason.");
    describe_counter!(HTTP_CONNECTIONS_CLOSED, Unit::Count, "Connections closed to protect the others, by reason.");
    describe_gauge!("process_resident_memory_bytes", Unit::Bytes, "Resident memory of the process.");
}

impl Telemetry {
    /// The Prometheus text of every metric now (process metrics refreshed).
    pub fn render(&self) -> String {
        self.process.collect();
        self.prometheus.render()
    }

    /// Writes one round of EMF lines where they go, if EMF is on.
    ///
    /// # Errors
    /// When writing fails.
    pub fn flush_emf(&self) -> std::io::Result<()> {
        let Some((flusher, sink)) = &self.emf else { return Ok(()) };
        self.process.collect();
        sink.write(&mut flusher.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Keeps the metrics fresh until `stop`: Prometheus upkeep every 5 s,
    /// EMF lines on stdout every minute and once more at the end.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut upkeep = tokio::time::interval(Duration::from_secs(5));
        let mut emf = tokio::time::interval_at(tokio::time::Instant::now() + EMF_INTERVAL, EMF_INTERVAL);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = upkeep.tick() => self.prometheus.run_upkeep(),
                _ = emf.tick() => self.write_emf(),
            }
        }
        self.write_emf();
    }

    fn write_emf(&self) {
        if let Err(error) = self.flush_emf() {
            tracing::warn!(%error, "could not write the EMF metrics");
        }
    }
}

/// [`JobEvents`] as metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsJobEvents;

impl JobEvents for MetricsJobEvents {
    fn record(&self, event: JobEvent) {
        use names::*;
        match event {
            JobEvent::Started { waited } => {
                counter!(JOBS_STARTED).increment(1);
                histogram!(QUEUE_LAG_SECONDS).record(waited.as_secs_f64());
            }
            JobEvent::Succeeded { transcode, since_upload } => {
                counter!(JOBS_SUCCEEDED).increment(1);
                histogram!(TRANSCODE_SECONDS).record(transcode.as_secs_f64());
                histogram!(UPLOAD_TO_PROCESSED_SECONDS).record(since_upload.as_secs_f64());
            }
            JobEvent::Retried => counter!(JOBS_RETRIED).increment(1),
            JobEvent::Failed => counter!(JOBS_FAILED).increment(1),
            JobEvent::DeadLettered => counter!(JOBS_DEAD_LETTERED).increment(1),
        }
    }
}

/// Serves the Prometheus text at `GET /metrics` on `addr` until `stop`.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn serve_prometheus(addr: SocketAddr, telemetry: Arc<Telemetry>, stop: impl Future<Output = ()>) -> std::io::Result<()> {
    serve_prometheus_on(bind_prometheus(addr).await?, telemetry, stop).await
}

/// Binds the metrics' own port (apart from any public one), saying where.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn bind_prometheus(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
    Ok(listener)
}

/// Serves the Prometheus text at `GET /metrics` on `listener` until `stop`.
pub async fn serve_prometheus_on(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            () = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let telemetry = telemetry.clone();
                async move {
                    let (status, body) =
                        if request.uri().path() == "/metrics" { (200, telemetry.render()) } else { (404, "not found\n".to_owned()) };
                    hyper::Response::builder()
                        .status(status)
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = tokio::time::timeout(Duration::from_secs(30), builder.serve_connection(TokioIo::new(tcp), service)).await;
        });
    }
}
