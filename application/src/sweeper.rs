//! [`DeadLetterSweeper`]: a job whose every attempt was cut short (its
//! workers killed, say) reaches the dead-letter queue by the queue's own
//! redrive, with no worker left to mark its video `failed`. The sweeper
//! reads the dead-letter queue and does: the video ends `failed` with a
//! reason, so nobody waits on it forever. The jobs stay in the dead-letter
//! queue for inspection and re-drive.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{Clock, DeadLetterQueue, JobEvent, JobEvents, QueueError, VideoRepository, VideoRepositoryError};
use anb_domain::{ATTEMPTS_EXHAUSTED, BackendError};
use futures::future::{Either, select};

use crate::shutdown::Shutdown;

/// Marks the videos of dead-lettered jobs `failed`.
#[derive(Clone)]
pub struct DeadLetterSweeper {
    dead: Arc<dyn DeadLetterQueue>,
    videos: Arc<dyn VideoRepository>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn JobEvents>,
    /// How long a job looked at stays out of sight of the next sweeps.
    hide_for: Duration,
    /// Time between sweeps.
    interval: Duration,
}

impl DeadLetterSweeper {
    /// A sweeper of `dead`, every `interval`.
    pub fn new(
        dead: Arc<dyn DeadLetterQueue>,
        videos: Arc<dyn VideoRepository>,
        clock: Arc<dyn Clock>,
        events: Arc<dyn JobEvents>,
        interval: Duration,
    ) -> Self {
        // SQS's longest visibility: each dead job is looked at twice a day.
        Self { dead, videos, clock, events, hide_for: Duration::from_secs(12 * 3600), interval }
    }

    /// Looks at every dead job not seen lately; returns how many videos it
    /// marked `failed`.
    ///
    /// # Errors
    /// [`BackendError`] when the queue or the database fail.
    pub async fn sweep(&self) -> Result<usize, BackendError> {
        let mut marked = 0;
        loop {
            let job = match self.dead.next_dead_letter(self.hide_for).await {
                Ok(Some(job)) => job,
                Ok(None) => return Ok(marked),
                Err(QueueError::Backend(e)) => return Err(e),
                Err(QueueError::ReceiptExpired) => continue,
            };
            match self.videos.mark_failed(job.video_id, ATTEMPTS_EXHAUSTED).await {
                Ok(()) => {
                    tracing::warn!(video_id = %job.video_id, task_id = %job.task_id, "dead-lettered job: video marked failed");
                    self.events.record(JobEvent::Failed);
                    // Moved by the queue itself (every attempt cut short):
                    // counted as dead-lettered here, where it is first seen
                    // (the dead-letter alarm counts these).
                    self.events.record(JobEvent::DeadLettered);
                    marked += 1;
                }
                // Deleted, or already final (a worker marked it): nothing to do.
                Err(VideoRepositoryError::NotFound | VideoRepositoryError::InvalidTransition { .. }) => {}
                Err(VideoRepositoryError::Backend(e)) => return Err(e),
            }
        }
    }

    /// Sweeps every interval until `shutdown`.
    pub async fn run(&self, shutdown: Shutdown) {
        loop {
            if let Err(error) = self.sweep().await {
                tracing::warn!(%error, "dead-letter sweep failed; trying again later");
            }
            if let Either::Right(_) = select(pin!(self.clock.sleep(self.interval)), shutdown.clone()).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use anb_domain::ports::{MockClock, MockDeadLetterQueue, MockVideoRepository};
    use anb_domain::{BackendError, Job, TaskId, VideoId, VideoStatus};
    use mockall::predicate::eq;

    use super::*;

    fn job(id: i64) -> Job {
        Job { task_id: TaskId::random(), video_id: VideoId(id) }
    }

    #[tokio::test]
    async fn every_dead_job_s_video_ends_failed_unless_it_is_gone_or_final() {
        let mut dead = MockDeadLetterQueue::new();
        let mut jobs = vec![job(3), job(2), job(1)];
        dead.expect_next_dead_letter().returning(move |hide| {
            assert_eq!(hide, Duration::from_secs(43_200));
            Ok(jobs.pop())
        });
        let mut videos = MockVideoRepository::new();
        videos.expect_mark_failed().with(eq(VideoId(1)), eq(ATTEMPTS_EXHAUSTED)).times(1).returning(|_, _| Ok(()));
        videos
            .expect_mark_failed()
            .with(eq(VideoId(2)), eq(ATTEMPTS_EXHAUSTED))
            .times(1)
            .returning(|_, _| Err(VideoRepositoryError::InvalidTransition { from: VideoStatus::Processed, to: VideoStatus::Failed }));
        videos
            .expect_mark_failed()
            .with(eq(VideoId(3)), eq(ATTEMPTS_EXHAUSTED))
            .times(1)
            .returning(|_, _| Err(VideoRepositoryError::NotFound));
        let mut events = anb_domain::ports::MockJobEvents::new();
        events.expect_record().with(eq(JobEvent::Failed)).times(1).return_const(());
        events.expect_record().with(eq(JobEvent::DeadLettered)).times(1).return_const(());
        let sweeper =
            DeadLetterSweeper::new(Arc::new(dead), Arc::new(videos), Arc::new(MockClock::new()), Arc::new(events), Duration::from_secs(30));
        assert_eq!(sweeper.sweep().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_failing_queue_is_reported() {
        let mut dead = MockDeadLetterQueue::new();
        dead.expect_next_dead_letter().returning(|_| Err(BackendError::unavailable("sqs down").into()));
        let sweeper = DeadLetterSweeper::new(
            Arc::new(dead),
            Arc::new(MockVideoRepository::new()),
            Arc::new(MockClock::new()),
            Arc::new(anb_domain::ports::NoJobEvents),
            Duration::from_secs(1),
        );
        assert!(sweeper.sweep().await.is_err());
    }
}
