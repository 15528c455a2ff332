//! The background lifecycle: what a process runs beside its requests (the
//! job loops, the sweeper of stale scratch, the outbox relay, the sweeper of
//! dead letters, the mail relay), started together and joined together at
//! shutdown, then the broker connection closed.

use std::sync::Arc;
use std::time::Duration;

use anb_application::{DeadLetterSweeper, HostProtection, MailRelay, Processor, Shutdown};
use anb_domain::ports::Transcoder;
use anb_files::LocalScratch;
use anb_sql::OutboxRelay;
use tokio::task::JoinHandle;

use crate::StartupError;
use crate::queues::Broker;

/// The background work of a process, not yet started.
#[derive(Clone, Default)]
pub(crate) struct Work {
    /// The job loop, and how many of it run; `None` without workers.
    pub processor: Option<(Processor, u32)>,
    pub scratch: Option<LocalScratch>,
    pub relay: Option<OutboxRelay>,
    /// Sends the verification messages (web servers only).
    pub mail: Option<MailRelay>,
    pub sweeper: Option<DeadLetterSweeper>,
    /// A broker connection to close once the rest has ended.
    pub broker: Option<Broker>,
    /// Keeps the host out of scale-in while a job runs.
    pub protection: Option<Arc<HostProtection>>,
}

impl Work {
    /// Starts everything until `shutdown`.
    pub(crate) fn start(&self, shutdown: &Shutdown) -> Background {
        let mut tasks = Vec::new();
        let workers = self.processor.as_ref().map_or(0, |(_, n)| *n);
        if let Some((processor, _)) = &self.processor {
            for _ in 0..workers {
                let (processor, shutdown) = (processor.clone(), shutdown.clone());
                tasks.push(tokio::spawn(async move { processor.run(shutdown).await }));
            }
        }
        if let Some(scratch) = self.scratch.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { scratch.sweep_until(shutdown).await }));
        }
        if let Some(relay) = self.relay.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { relay.run(shutdown).await }));
        }
        if let Some(sweeper) = self.sweeper.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { sweeper.run(shutdown).await }));
        }
        if let Some(mail) = self.mail.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { mail.run(shutdown).await }));
        }
        if let Some(protection) = self.protection.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { protection.run(shutdown).await }));
        }
        tracing::info!(
            workers,
            relay = self.relay.is_some(),
            dead_letter_sweeper = self.sweeper.is_some(),
            mail_relay = self.mail.is_some(),
            scale_in_protection = self.protection.is_some(),
            "background work started"
        );
        Background { tasks, broker: self.broker.clone() }
    }
}

/// The background tasks of a process, running.
#[derive(Debug)]
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
    broker: Option<Broker>,
}

impl Background {
    /// Waits for every task to end (they end at shutdown), then closes the
    /// broker connection, if any.
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a background task failed");
            }
        }
        if let Some(broker) = self.broker {
            broker.close().await;
        }
    }
}

/// Idle time before a worker host is let go to scale-in: a worker between
/// two jobs keeps its protection.
#[cfg(feature = "aws")]
const PROTECTION_LINGER: Duration = Duration::from_secs(10);

/// Scale-in protection of this instance in its Auto Scaling group while
/// `processor` runs a job (`ANB_SCALE_IN_PROTECTION`).
#[cfg(feature = "aws")]
pub(crate) async fn protection(
    config: &crate::config::CommonConfig,
    cloud: &crate::aws::Cloud,
    processor: &Processor,
    clock: Arc<dyn anb_domain::ports::Clock>,
) -> Arc<HostProtection> {
    let port = anb_aws::AsgScaleInProtection::new(cloud.config().await, config.instance_id.clone());
    Arc::new(HostProtection::new(processor.busy(), Arc::new(port), clock, PROTECTION_LINGER))
}

/// A job that left its scratch files untouched for a whole visibility has a
/// dead worker (a live one writes its output all the time, and would have
/// lost its job by now anyway): the scratch directory, its leftovers from a
/// killed process removed.
pub(crate) async fn scratch(dir: std::path::PathBuf, visibility: Duration) -> Result<LocalScratch, StartupError> {
    let scratch = LocalScratch::new(dir, visibility);
    scratch.prepare().await.map_err(StartupError::Scratch)?;
    Ok(scratch)
}

/// The GStreamer transcoder, for `workers` jobs at once.
#[cfg(feature = "gstreamer")]
pub(crate) fn transcoder(workers: u32) -> Result<Arc<dyn Transcoder>, StartupError> {
    use anb_gstreamer::{GstTranscoder, TranscodeSettings};
    // What the upload rules ask, checked again on the frames the stream really decodes to.
    let min_short_side = anb_domain::UploadRules::default().min_short_side;
    let settings = TranscodeSettings { min_short_side, ..TranscodeSettings::for_jobs_at_once(workers, crate::runtime::cores()) };
    Ok(Arc::new(GstTranscoder::new(settings).map_err(|e| StartupError::Transcoder(e.to_string()))?))
}

/// A build without GStreamer has none (`Checked` refuses workers there).
#[cfg(not(feature = "gstreamer"))]
pub(crate) fn transcoder(_workers: u32) -> Result<Arc<dyn Transcoder>, StartupError> {
    Err(StartupError::Transcoder("this build has no transcoder".into()))
}
