//! The worker: takes one job from the queue and turns the original upload
//! into the published video, keeping the job alive while it works.
//!
//! Each step is idempotent by video id, so a job delivered twice (a worker
//! died, a relay published again) does no harm: a video that is gone or
//! already processed is acknowledged without work.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{
    Clock, JobEvent, JobEvents, JobQueue, ObjectStorage, QueueError, ScratchDir, ScratchSpace, StorageError, TranscodeError, Transcoder,
    VideoRepository, VideoRepositoryError,
};
use anb_domain::{ATTEMPTS_EXHAUSTED, BackendError, Delivery, ObjectKey, ProgressSink, Receipt, VideoId, VideoStatus};
use futures::future::{Either, select};
use tracing::Instrument;

use crate::cache::PageCache;
use crate::shutdown::Shutdown;

/// How often a running job's progress is written to its video, at most.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// A failure of the worker's own plumbing (database, queue, scratch disk);
/// the job itself comes back after its visibility timeout.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// How a worker paces its jobs.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// How long a received job stays hidden from other workers.
    pub visibility: Duration,
    /// How often the visibility is extended while a job runs.
    pub heartbeat: Duration,
    /// Deliveries after which a failing job is dead-lettered.
    pub max_attempts: u32,
    /// Wait before a failed attempt is tried again.
    pub retry_delay: Duration,
    /// Wait between polls when the queue was empty.
    pub idle_wait: Duration,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            visibility: Duration::from_secs(20),
            heartbeat: Duration::from_secs(5),
            max_attempts: 3,
            retry_delay: Duration::from_secs(5),
            idle_wait: Duration::from_millis(500),
        }
    }
}

/// How handling one delivery ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Processed now.
    Done,
    /// Nothing to do (video gone or already final); the job is finished.
    Skipped(&'static str),
    /// Delivered more times than there are attempts: every earlier attempt
    /// was cut short (its worker killed). Not tried again.
    Exhausted,
    /// This attempt failed; the user-facing reason.
    Failed(String),
    /// The job's visibility ran out and another worker may hold it.
    Lost,
    /// Shutdown came first; the job goes back to the queue.
    Interrupted,
}

/// Longest wait between two reads of a job's video while the database
/// cannot be reached.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(5);

/// What reading a job's video came to.
enum Read {
    Video(Option<anb_domain::Video>),
    /// The job's visibility was lost meanwhile.
    Lost,
    /// Shutdown came first.
    Interrupted,
}

/// Processes jobs, one per call of [`Processor::process_next_job`].
#[derive(Clone)]
pub struct Processor {
    videos: Arc<dyn VideoRepository>,
    queue: Arc<dyn JobQueue>,
    storage: Arc<dyn ObjectStorage>,
    transcoder: Arc<dyn Transcoder>,
    scratch: Arc<dyn ScratchSpace>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn JobEvents>,
    settings: ProcessorSettings,
    pages: Arc<PageCache>,
    /// Counts the jobs under way (scale-in protection follows it).
    busy: Arc<crate::protection::Busy>,
}

/// The ports a [`Processor`] works through.
#[derive(Clone)]
pub struct ProcessorPorts {
    pub videos: Arc<dyn VideoRepository>,
    pub queue: Arc<dyn JobQueue>,
    pub storage: Arc<dyn ObjectStorage>,
    pub transcoder: Arc<dyn Transcoder>,
    pub scratch: Arc<dyn ScratchSpace>,
    pub clock: Arc<dyn Clock>,
    pub events: Arc<dyn JobEvents>,
}

impl Processor {
    /// Wires the worker to its ports.
    pub fn new(ports: ProcessorPorts, settings: ProcessorSettings) -> Self {
        let ProcessorPorts { videos, queue, storage, transcoder, scratch, clock, events } = ports;
        Self {
            videos,
            queue,
            storage,
            transcoder,
            scratch,
            clock,
            events,
            settings,
            pages: Arc::new(PageCache::disabled()),
            busy: Arc::default(),
        }
    }

    /// The count of jobs under way, for [`HostProtection`](crate::HostProtection).
    pub fn busy(&self) -> Arc<crate::protection::Busy> {
        self.busy.clone()
    }

    /// Marks the public pages in `pages` stale whenever a video turns public.
    #[must_use]
    pub fn with_cache(mut self, pages: Arc<PageCache>) -> Self {
        self.pages = pages;
        self
    }

    /// Runs jobs until `shutdown` resolves; an in-flight job is given back
    /// to the queue then. Plumbing failures are logged and retried later.
    pub async fn run(&self, shutdown: Shutdown) {
        use futures::FutureExt;
        while shutdown.clone().now_or_never().is_none() {
            // The step watches `shutdown` itself and hands its job back; it is
            // never dropped half-way.
            let wait = match self.process_next_job(shutdown.clone()).await {
                Ok(true) => continue,
                Ok(false) => self.settings.idle_wait,
                Err(error) => {
                    tracing::warn!(%error, "worker step failed; retrying shortly");
                    self.settings.retry_delay
                }
            };
            if let Either::Right(_) = select(pin!(self.clock.sleep(wait)), shutdown.clone()).await {
                return;
            }
        }
    }

    /// Receives and handles one job. Returns whether there was one.
    ///
    /// # Errors
    /// [`WorkerError`] when the queue or database fail; the job then comes
    /// back after its visibility timeout.
    pub async fn process_next_job(&self, shutdown: Shutdown) -> Result<bool, WorkerError> {
        let receive = pin!(self.queue.receive(self.settings.visibility));
        let Either::Left((received, _)) = select(receive, shutdown.clone()).await else {
            return Ok(false);
        };
        let Some(delivery) = received.map_err(queue_backend)? else {
            return Ok(false);
        };
        let span = tracing::info_span!("job", task_id = %delivery.job.task_id, video_id = %delivery.job.video_id, attempt = delivery.receive_count);
        // `instrument`, not `enter`: a guard held across `.await` tags other
        // tasks' events with this job, and this job's with none.
        async {
            let _busy = self.busy.enter();
            let scratch = self.scratch.create(&format!("job-{}", delivery.job.task_id)).await?;
            let outcome = self.handle(&delivery, &scratch, shutdown).await;
            self.scratch.remove(&scratch).await;
            self.settle(&delivery, outcome).await?;
            Ok(true)
        }
        .instrument(span)
        .await
    }

    async fn handle(&self, delivery: &Delivery, scratch: &ScratchDir, shutdown: Shutdown) -> Result<Outcome, WorkerError> {
        let id = delivery.job.video_id;
        let video = match self.read_video(delivery, &shutdown).await? {
            Read::Video(Some(video)) => video,
            Read::Video(None) => return Ok(Outcome::Skipped("video deleted")),
            Read::Lost => return Ok(Outcome::Lost),
            Read::Interrupted => return Ok(Outcome::Interrupted),
        };
        if matches!(video.status, VideoStatus::Processed | VideoStatus::Failed) {
            return Ok(Outcome::Skipped("video already final"));
        }
        if delivery.receive_count > self.settings.max_attempts {
            return Ok(Outcome::Exhausted);
        }
        match self.videos.mark_processing(id).await {
            Ok(()) => {}
            Err(VideoRepositoryError::NotFound) => return Ok(Outcome::Skipped("video deleted")),
            Err(VideoRepositoryError::InvalidTransition { .. }) => return Ok(Outcome::Skipped("video already final")),
            Err(VideoRepositoryError::Backend(e)) => return Err(e.into()),
        }
        let waited = self.since(video.uploaded_at);
        tracing::info!(waited_ms = millis(waited), "processing started");
        self.events.record(JobEvent::Started { waited });

        let fetching = self.clock.now();
        match self.storage.get_to_file(&video.original_key, &scratch.input).await {
            Ok(()) => {}
            Err(StorageError::NotFound) => {
                return Ok(match self.videos.by_id(id).await.map_err(VideoRepositoryError::into_backend)? {
                    None => Outcome::Skipped("video deleted"),
                    Some(_) => Outcome::Failed("El archivo original ya no existe.".into()),
                });
            }
            Err(StorageError::Backend(e)) => return Err(e.into()),
        }

        let fetched = self.since(fetching);
        let progress = ProgressSink::new();
        let transcoding = self.clock.now();
        let transcode = pin!(self.transcoder.transcode(&scratch.input, &scratch.output, &progress));
        // The visibility heartbeat ends when the job is lost; the progress
        // reports never end by themselves.
        let keep_alive = pin!(self.keep_alive(&delivery.receipt));
        let publish = pin!(self.publish_progress(id, &progress));
        let watch = select(keep_alive, publish);
        let report = match select(transcode, select(watch, shutdown)).await {
            Either::Left((Ok(report), _)) => report,
            Either::Left((Err(error), _)) => {
                tracing::warn!(%error, "transcoding failed");
                return Ok(Outcome::Failed(match error {
                    TranscodeError::InvalidInput(why) => format!("No se pudo decodificar el video: {why}"),
                    TranscodeError::Failed(_) => "Error interno al procesar el video.".into(),
                }));
            }
            Either::Right((Either::Left(_), _)) => return Ok(Outcome::Lost),
            Either::Right((Either::Right(_), _)) => return Ok(Outcome::Interrupted),
        };

        let transcoded = self.since(transcoding);
        let storing = self.clock.now();
        let key = ObjectKey::processed(video.task_id);
        self.storage.put_file(&key, &scratch.output).await.map_err(StorageError::into_backend)?;
        let stored = self.since(storing);
        match self.videos.mark_processed(id, &key, self.clock.now()).await {
            Ok(()) => {
                self.pages.invalidate().await;
                // Where the wait between the upload and `processed` went (bench/latency.py reads these).
                tracing::info!(
                    output_seconds = report.duration.as_secs_f64(),
                    waited_ms = millis(waited),
                    fetch_ms = millis(fetched),
                    transcode_ms = millis(transcoded),
                    store_ms = millis(stored),
                    since_upload_ms = millis(self.since(video.uploaded_at)),
                    "video processed"
                );
                self.events.record(JobEvent::Succeeded { transcode: transcoded, since_upload: self.since(video.uploaded_at) });
                Ok(Outcome::Done)
            }
            Err(VideoRepositoryError::NotFound) => {
                self.storage.delete(&key).await.map_err(StorageError::into_backend)?;
                Ok(Outcome::Skipped("video deleted while processing"))
            }
            Err(VideoRepositoryError::InvalidTransition { .. }) => Ok(Outcome::Skipped("video finished by another worker")),
            Err(VideoRepositoryError::Backend(e)) => Err(e.into()),
        }
    }

    /// The job's video, read while the job is kept: a database that cannot
    /// be reached (a failover) is waited for, the job's visibility extended
    /// meanwhile, so that a passing outage costs the job no attempt (handed
    /// back, it would come again with one more receive counted).
    async fn read_video(&self, delivery: &Delivery, shutdown: &Shutdown) -> Result<Read, WorkerError> {
        let id = delivery.job.video_id;
        let reading = async {
            let (mut wait, mut tries) = (Duration::from_millis(500), 0u32);
            loop {
                match self.videos.by_id(id).await {
                    Ok(video) => {
                        if tries > 0 {
                            tracing::info!(tries, "the database answers again; the job goes on");
                        }
                        return Ok(video);
                    }
                    Err(VideoRepositoryError::Backend(error)) if error.kind == anb_domain::BackendErrorKind::Unavailable => {
                        if tries.is_multiple_of(10) {
                            tracing::warn!(%error, tries, "database unreachable; keeping the job until it answers");
                        }
                        tries += 1;
                        self.clock.sleep(wait).await;
                        wait = (wait * 2).min(UNREACHABLE_RETRY);
                    }
                    Err(error) => return Err(WorkerError::from(error.into_backend())),
                }
            }
        };
        let keep_alive = pin!(self.keep_alive(&delivery.receipt));
        match select(pin!(reading), select(keep_alive, shutdown.clone())).await {
            Either::Left((result, _)) => result.map(Read::Video),
            Either::Right((Either::Left(_), _)) => Ok(Read::Lost),
            Either::Right((Either::Right(_), _)) => Ok(Read::Interrupted),
        }
    }

    /// Ends the delivery according to the outcome. A plumbing error while
    /// handling is kept for the caller after giving the job back.
    async fn settle(&self, delivery: &Delivery, outcome: Result<Outcome, WorkerError>) -> Result<(), WorkerError> {
        let id = delivery.job.video_id;
        let receipt = &delivery.receipt;
        match outcome {
            Ok(Outcome::Done) => self.finish(receipt).await,
            Ok(Outcome::Skipped(why)) => {
                tracing::info!(why, "job acknowledged without work");
                self.finish(receipt).await
            }
            Ok(Outcome::Lost) => {
                tracing::warn!("job visibility lost; leaving it to its new holder");
                Ok(())
            }
            Ok(Outcome::Interrupted) => {
                tracing::info!("shutting down; job given back to the queue");
                self.give_back(id, receipt, "Interrumpido por un reinicio del servicio.", Duration::ZERO).await
            }
            Ok(Outcome::Exhausted) => {
                tracing::error!(attempts = delivery.receive_count - 1, "every attempt was cut short; video failed, job dead-lettered");
                self.fail_for_good(id, receipt, ATTEMPTS_EXHAUSTED).await
            }
            Ok(Outcome::Failed(reason)) if delivery.receive_count >= self.settings.max_attempts => {
                tracing::error!(%reason, "job failed for the last time; dead-lettered");
                self.fail_for_good(id, receipt, &reason).await
            }
            Ok(Outcome::Failed(reason)) => {
                self.events.record(JobEvent::Retried);
                self.give_back(id, receipt, &reason, self.settings.retry_delay).await
            }
            Err(error) => {
                let _ = self.give_back(id, receipt, "Error temporal del servicio.", self.settings.retry_delay).await;
                Err(error)
            }
        }
    }

    async fn fail_for_good(&self, id: VideoId, receipt: &Receipt, reason: &str) -> Result<(), WorkerError> {
        tolerate_gone(self.videos.mark_failed(id, reason).await)?;
        self.events.record(JobEvent::Failed);
        tolerate_expired(self.queue.dead_letter(receipt, reason).await)?;
        self.events.record(JobEvent::DeadLettered);
        Ok(())
    }

    /// Time from `then` to now (zero if the clocks disagree).
    fn since(&self, then: anb_domain::Timestamp) -> Duration {
        (self.clock.now() - then).to_std().unwrap_or_default()
    }

    async fn finish(&self, receipt: &Receipt) -> Result<(), WorkerError> {
        tolerate_expired(self.queue.ack(receipt).await)
    }

    async fn give_back(&self, id: anb_domain::VideoId, receipt: &Receipt, reason: &str, delay: Duration) -> Result<(), WorkerError> {
        tolerate_gone(self.videos.mark_waiting(id, reason).await)?;
        tolerate_expired(self.queue.release(receipt, delay).await)
    }

    /// Writes the transcode's progress to the video about once a second,
    /// when it moved, so that every web server can show it.
    async fn publish_progress(&self, id: VideoId, progress: &ProgressSink) {
        let mut published = 0;
        loop {
            self.clock.sleep(PROGRESS_INTERVAL).await;
            let now = progress.percent();
            if now != published {
                match self.videos.report_progress(id, now).await {
                    Ok(()) => published = now,
                    Err(error) => tracing::debug!(%error, "could not record the progress"),
                }
            }
            YieldNow(false).await;
        }
    }

    /// Extends the job's visibility every heartbeat; returns only when the
    /// job is no longer ours.
    async fn keep_alive(&self, receipt: &Receipt) {
        loop {
            self.clock.sleep(self.settings.heartbeat).await;
            match self.queue.extend(receipt, self.settings.visibility).await {
                Ok(()) => {}
                Err(QueueError::ReceiptExpired) => return,
                Err(QueueError::Backend(error)) => tracing::warn!(%error, "could not extend the job's visibility"),
            }
        }
    }
}

fn tolerate_expired(result: Result<(), QueueError>) -> Result<(), WorkerError> {
    match result {
        Ok(()) => Ok(()),
        Err(QueueError::ReceiptExpired) => {
            tracing::info!("job was already gone from the queue");
            Ok(())
        }
        Err(QueueError::Backend(e)) => Err(e.into()),
    }
}

fn tolerate_gone(result: Result<(), VideoRepositoryError>) -> Result<(), WorkerError> {
    match result {
        Ok(()) | Err(VideoRepositoryError::NotFound | VideoRepositoryError::InvalidTransition { .. }) => Ok(()),
        Err(VideoRepositoryError::Backend(e)) => Err(e.into()),
    }
}

fn queue_backend(error: QueueError) -> BackendError {
    match error {
        QueueError::Backend(e) => e,
        QueueError::ReceiptExpired => BackendError::internal("receipt expired on receive"),
    }
}

/// Whole milliseconds, as the logs count them.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Gives other futures of the same task a turn (a clock whose sleep returns
/// at once, as in tests, must not starve them).
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use anb_domain::fixtures::video;
    use anb_domain::ports::{MockClock, MockJobQueue, MockObjectStorage, MockTranscoder, MockVideoRepository, TranscodeReport};
    use anb_domain::{Job, TaskId, VideoId};
    use chrono::Utc;
    use mockall::predicate::eq;

    use std::path::{Path, PathBuf};

    use super::*;
    use crate::shutdown::{never, shutdown_on};

    struct Mocks {
        videos: MockVideoRepository,
        queue: MockJobQueue,
        storage: MockObjectStorage,
        transcoder: MockTranscoder,
        clock: MockClock,
    }

    impl Mocks {
        fn new() -> Self {
            let mut clock = MockClock::new();
            clock.expect_now().returning(Utc::now);
            Self {
                videos: MockVideoRepository::new(),
                queue: MockJobQueue::new(),
                storage: MockObjectStorage::new(),
                transcoder: MockTranscoder::new(),
                clock,
            }
        }

        fn deliver(&mut self, status: VideoStatus, receive_count: u32) {
            let stored = video(5, 1, status);
            let job = Job { task_id: stored.task_id, video_id: VideoId(5) };
            self.queue
                .expect_receive()
                .times(1)
                .returning(move |_| Ok(Some(Delivery { job, receipt: Receipt("r1".into()), receive_count })));
            self.videos.expect_by_id().with(eq(VideoId(5))).returning(move |_| Ok(Some(stored.clone())));
        }

        fn processor(self, dir: &Path) -> Processor {
            let (transcoder, clock) = (Arc::new(self.transcoder), Arc::new(self.clock));
            Self::build(self.videos, self.queue, self.storage, transcoder, clock, dir)
        }

        /// A processor whose transcode never ends and whose clock sleeps as told.
        fn hanging_processor(self, dir: &Path, sleeps_forever: bool) -> Processor {
            Self::build(self.videos, self.queue, self.storage, Arc::new(Hang), Arc::new(TestClock { sleeps_forever }), dir)
        }

        fn build(
            videos: MockVideoRepository,
            queue: MockJobQueue,
            storage: MockObjectStorage,
            transcoder: Arc<dyn Transcoder>,
            clock: Arc<dyn Clock>,
            dir: &Path,
        ) -> Processor {
            Self::build_with_events(videos, queue, storage, transcoder, clock, dir, None)
        }

        /// A processor whose job events go to `events`.
        fn processor_recording(self, dir: &Path, events: Arc<Recorded>) -> Processor {
            let (transcoder, clock) = (Arc::new(self.transcoder), Arc::new(self.clock));
            Self::build_with_events(self.videos, self.queue, self.storage, transcoder, clock, dir, Some(events))
        }

        fn build_with_events(
            videos: MockVideoRepository,
            queue: MockJobQueue,
            storage: MockObjectStorage,
            transcoder: Arc<dyn Transcoder>,
            clock: Arc<dyn Clock>,
            dir: &Path,
            events: Option<Arc<dyn JobEvents>>,
        ) -> Processor {
            let settings = ProcessorSettings { heartbeat: Duration::from_secs(3600), ..ProcessorSettings::default() };
            let scratch = Arc::new(TestScratch(dir.to_path_buf()));
            let ports = ProcessorPorts {
                videos: Arc::new(videos),
                queue: Arc::new(queue),
                storage: Arc::new(storage),
                transcoder,
                scratch,
                clock,
                events: events.unwrap_or_else(|| Arc::new(anb_domain::ports::NoJobEvents)),
            };
            Processor::new(ports, settings)
        }
    }

    /// Scratch directories under a test's own root, so that a test can check
    /// that every job's directory is gone when it ends.
    struct TestScratch(PathBuf);

    #[async_trait::async_trait]
    impl ScratchSpace for TestScratch {
        async fn create(&self, label: &str) -> Result<ScratchDir, BackendError> {
            let dir = self.0.join(format!("{label}-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).map_err(|e| BackendError::io("scratch", &e))?;
            Ok(ScratchDir { input: dir.join("original.mp4"), output: dir.join("processed.mp4"), dir })
        }

        async fn remove(&self, dir: &ScratchDir) {
            std::fs::remove_dir_all(&dir.dir).unwrap();
        }
    }

    /// The events a processor recorded.
    #[derive(Default)]
    struct Recorded(std::sync::Mutex<Vec<JobEvent>>);

    impl JobEvents for Recorded {
        fn record(&self, event: JobEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl Recorded {
        fn kinds(&self) -> Vec<&'static str> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|e| match e {
                    JobEvent::Started { .. } => "started",
                    JobEvent::Succeeded { .. } => "succeeded",
                    JobEvent::Retried => "retried",
                    JobEvent::Failed => "failed",
                    JobEvent::DeadLettered => "dead-lettered",
                })
                .collect()
        }
    }

    /// A transcode that never finishes (mockall answers synchronously).
    struct Hang;

    #[async_trait::async_trait]
    impl Transcoder for Hang {
        async fn transcode(&self, _: &Path, _: &Path, _: &ProgressSink) -> Result<TranscodeReport, TranscodeError> {
            futures::future::pending().await
        }
    }

    struct TestClock {
        sleeps_forever: bool,
    }

    #[async_trait::async_trait]
    impl Clock for TestClock {
        fn now(&self) -> anb_domain::Timestamp {
            Utc::now()
        }

        async fn sleep(&self, _: Duration) {
            if self.sleeps_forever {
                futures::future::pending::<()>().await;
            }
        }
    }

    /// A test's own scratch root, removed when it is dropped.
    struct ScratchRoot(PathBuf);

    impl Drop for ScratchRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for ScratchRoot {
        type Target = Path;

        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn scratch_root() -> ScratchRoot {
        ScratchRoot(std::env::temp_dir().join(format!("anb-worker-test-{}", uuid::Uuid::new_v4())))
    }

    fn assert_scratch_empty(root: &Path) {
        let left: Vec<_> = std::fs::read_dir(root).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "scratch files left: {left:?}");
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn an_empty_queue_means_no_work() {
        let mut m = Mocks::new();
        m.queue.expect_receive().returning(|_| Ok(None));
        assert!(!m.processor(&scratch_root()).process_next_job(never()).await.unwrap());
    }

    #[tokio::test]
    async fn a_job_is_fetched_transcoded_stored_marked_and_acknowledged() {
        let mut m = Mocks::new();
        m.deliver(VideoStatus::Uploaded, 1);
        m.videos.expect_mark_processing().with(eq(VideoId(5))).times(1).returning(|_| Ok(()));
        m.storage.expect_get_to_file().times(1).returning(|_, path| {
            std::fs::write(path, b"original").unwrap();
            Ok(())
        });
        m.transcoder.expect_transcode().times(1).returning(|input, output, _| {
            assert!(input.exists());
            std::fs::write(output, b"processed").unwrap();
            Ok(TranscodeReport { duration: Duration::from_secs(35) })
        });
        m.storage
            .expect_put_file()
            .withf(|key, path| key.as_str().starts_with("processed/") && path.exists())
            .times(1)
            .returning(|_, _| Ok(()));
        m.videos
            .expect_mark_processed()
            .withf(|id, key, _| *id == VideoId(5) && key.as_str().starts_with("processed/"))
            .times(1)
            .returning(|_, _, _| Ok(()));
        m.queue.expect_ack().with(eq(Receipt("r1".into()))).times(1).returning(|_| Ok(()));
        let root = scratch_root();
        let events = Arc::new(Recorded::default());
        assert!(m.processor_recording(&root, events.clone()).process_next_job(never()).await.unwrap());
        assert_scratch_empty(&root);
        assert_eq!(events.kinds(), ["started", "succeeded"]);
        let JobEvent::Succeeded { since_upload, .. } = events.0.lock().unwrap()[1] else { unreachable!() };
        assert!(since_upload > Duration::from_secs(3600), "the fixture was uploaded long ago: {since_upload:?}");
    }

    #[tokio::test]
    async fn a_job_for_a_deleted_or_finished_video_is_acknowledged_without_work() {
        for status in [VideoStatus::Processed, VideoStatus::Failed] {
            let mut m = Mocks::new();
            m.deliver(status, 1);
            m.queue.expect_ack().times(1).returning(|_| Ok(()));
            assert!(m.processor(&scratch_root()).process_next_job(never()).await.unwrap());
        }
        let mut m = Mocks::new();
        m.queue.expect_receive().returning(|_| {
            Ok(Some(Delivery {
                job: Job { task_id: TaskId::random(), video_id: VideoId(9) },
                receipt: Receipt("r".into()),
                receive_count: 1,
            }))
        });
        m.videos.expect_by_id().returning(|_| Ok(None));
        m.queue.expect_ack().times(1).returning(|_| Err(QueueError::ReceiptExpired));
        assert!(m.processor(&scratch_root()).process_next_job(never()).await.unwrap());
    }

    fn failing_transcode(m: &mut Mocks) {
        m.videos.expect_mark_processing().returning(|_| Ok(()));
        m.storage.expect_get_to_file().returning(|_, _| Ok(()));
        m.transcoder.expect_transcode().returning(|_, _, _| Err(TranscodeError::InvalidInput("broken stream".into())));
    }

    #[tokio::test]
    async fn a_job_met_with_the_database_away_is_kept_until_it_answers_and_costs_no_attempt() {
        let mut m = Mocks::new();
        let stored = video(5, 1, VideoStatus::Processed);
        let job = Job { task_id: stored.task_id, video_id: VideoId(5) };
        m.queue.expect_receive().times(1).returning(move |_| Ok(Some(Delivery { job, receipt: Receipt("r1".into()), receive_count: 1 })));
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = reads.clone();
        m.videos.expect_by_id().returning(move |_| {
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3 {
                Err(VideoRepositoryError::Backend(BackendError::unavailable("failover")))
            } else {
                Ok(Some(stored.clone()))
            }
        });
        m.clock.expect_sleep().returning(|_| ());
        m.videos.expect_mark_waiting().never();
        m.queue.expect_release().never();
        m.queue.expect_ack().times(1).returning(|_| Ok(()));
        assert!(m.processor(&scratch_root()).process_next_job(never()).await.unwrap());
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 4, "read again until the database answered");
    }

    #[tokio::test]
    async fn a_failed_attempt_is_retried_later() {
        let mut m = Mocks::new();
        m.deliver(VideoStatus::Uploaded, 1);
        failing_transcode(&mut m);
        m.videos.expect_mark_waiting().withf(|_, reason| reason.contains("broken stream")).times(1).returning(|_, _| Ok(()));
        m.queue.expect_release().with(eq(Receipt("r1".into())), eq(Duration::from_secs(5))).times(1).returning(|_, _| Ok(()));
        let events = Arc::new(Recorded::default());
        assert!(m.processor_recording(&scratch_root(), events.clone()).process_next_job(never()).await.unwrap());
        assert_eq!(events.kinds(), ["started", "retried"]);
    }

    #[tokio::test]
    async fn the_last_failed_attempt_marks_the_video_failed_and_dead_letters_the_job() {
        let mut m = Mocks::new();
        m.deliver(VideoStatus::Uploaded, 3);
        failing_transcode(&mut m);
        m.videos.expect_mark_failed().withf(|_, reason| reason.contains("broken stream")).times(1).returning(|_, _| Ok(()));
        m.queue.expect_dead_letter().times(1).returning(|_, _| Ok(()));
        let events = Arc::new(Recorded::default());
        assert!(m.processor_recording(&scratch_root(), events.clone()).process_next_job(never()).await.unwrap());
        assert_eq!(events.kinds(), ["started", "failed", "dead-lettered"]);
    }

    #[tokio::test]
    async fn a_job_delivered_past_its_attempts_is_failed_without_processing() {
        // Three workers were killed on it (a video that crashes the process):
        // the fourth delivery must not start a fourth crash.
        let mut m = Mocks::new();
        m.deliver(VideoStatus::Processing, 4);
        m.videos.expect_mark_processing().never();
        m.videos.expect_mark_failed().withf(|_, reason| reason.contains("Se agotaron")).times(1).returning(|_, _| Ok(()));
        m.queue.expect_dead_letter().times(1).returning(|_, _| Ok(()));
        assert!(m.processor(&scratch_root()).process_next_job(never()).await.unwrap());
    }

    #[tokio::test]
    async fn internal_transcoder_errors_are_not_shown_to_the_user() {
        let mut m = Mocks::new();
        m.deliver(VideoStatus::Processing, 3);
        m.videos.expect_mark_processing().returning(|_| Ok(()));
        m.storage.expect_get_to_file().returning(|_, _| Ok(()));
        m.transcoder.expect_transcode().returning(|_, _, _| Err(TranscodeError::Failed("/var/lib/secret/path missing".into())));
        m.videos.expect_mark_failed().withf(|_, reason| !reason.contains("/var/lib")).times(1).returning(|_, _| Ok(()));
        m.queue.expect_dead_letter().returning(|_, _| Ok(()));
        m.processor(&scratch_root()).process_next_job(never()).await.unwrap();
    }

    #[tokio::test]
    async fn a_video_deleted_during_processing_leaves_no_processed_file() {
        let mut m = Mocks::new();
        m.deliver(VideoStatus::Uploaded, 1);
        m.videos.expect_mark_processing().returning(|_| Ok(()));
        m.storage.expect_get_to_file().returning(|_, _| Ok(()));
        m.transcoder.expect_transcode().returning(|_, _, _| Ok(TranscodeReport { duration: Duration::from_secs(35) }));
        m.storage.expect_put_file().returning(|_, _| Ok(()));
        m.videos.expect_mark_processed().returning(|_, _, _| Err(VideoRepositoryError::NotFound));
        m.storage.expect_delete().withf(|k| k.as_str().starts_with("processed/")).times(1).returning(|_| Ok(()));
        m.queue.expect_ack().times(1).returning(|_| Err(QueueError::ReceiptExpired));
        assert!(m.processor(&scratch_root()).process_next_job(never()).await.unwrap());
    }

    #[tokio::test]
    async fn a_missing_original_of_a_deleted_video_is_not_a_failure() {
        let mut m = Mocks::new();
        let stored = video(5, 1, VideoStatus::Uploaded);
        let job = Job { task_id: stored.task_id, video_id: VideoId(5) };
        m.queue.expect_receive().returning(move |_| Ok(Some(Delivery { job, receipt: Receipt("r1".into()), receive_count: 1 })));
        let mut seq = mockall::Sequence::new();
        m.videos.expect_by_id().times(1).in_sequence(&mut seq).returning(move |_| Ok(Some(stored.clone())));
        m.videos.expect_by_id().times(1).in_sequence(&mut seq).returning(|_| Ok(None));
        m.videos.expect_mark_processing().returning(|_| Ok(()));
        m.storage.expect_get_to_file().returning(|_, _| Err(StorageError::NotFound));
        m.queue.expect_ack().times(1).returning(|_| Ok(()));
        assert!(m.processor(&scratch_root()).process_next_job(never()).await.unwrap());
    }

    #[tokio::test]
    async fn shutdown_gives_the_job_back_at_once() {
        let mut m = Mocks::new();
        m.deliver(VideoStatus::Uploaded, 1);
        m.videos.expect_mark_processing().returning(|_| Ok(()));
        m.storage.expect_get_to_file().returning(|_, _| Ok(()));
        m.videos.expect_mark_waiting().times(1).returning(|_, _| Ok(()));
        m.queue.expect_release().with(eq(Receipt("r1".into())), eq(Duration::ZERO)).times(1).returning(|_, _| Ok(()));
        let stop = shutdown_on(async {});
        assert!(m.hanging_processor(&scratch_root(), true).process_next_job(stop).await.unwrap());
    }

    #[tokio::test]
    async fn a_lost_job_is_left_to_its_new_holder() {
        let mut m = Mocks::new();
        m.deliver(VideoStatus::Uploaded, 1);
        m.videos.expect_mark_processing().returning(|_| Ok(()));
        m.storage.expect_get_to_file().returning(|_, _| Ok(()));
        m.queue.expect_extend().times(1).returning(|_, _| Err(QueueError::ReceiptExpired));
        assert!(m.hanging_processor(&scratch_root(), false).process_next_job(never()).await.unwrap());
    }

    #[tokio::test]
    async fn the_loop_stops_when_shutdown_comes_while_idle() {
        let mut m = Mocks::new();
        m.queue.expect_receive().times(1).returning(|_| Ok(None));
        let root = scratch_root();
        let processor = m.hanging_processor(&root, true);
        let stop = shutdown_on(tokio::time::sleep(Duration::from_millis(50)));
        tokio::time::timeout(Duration::from_secs(5), processor.run(stop)).await.expect("run returned on shutdown");
    }

    #[tokio::test]
    async fn a_queue_failure_is_reported_to_the_loop() {
        let mut m = Mocks::new();
        m.queue.expect_receive().returning(|_| Err(BackendError::unavailable("db down").into()));
        assert!(m.processor(&scratch_root()).process_next_job(never()).await.is_err());
    }
}
