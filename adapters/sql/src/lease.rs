//! [`LeasedQueue`]: one live delivery per video over a queue that may hand
//! out a job twice (SQS delivers at least once, and a relay that dies between
//! its send and its delete sends again).
//!
//! Each delivery takes a lease on its video in the database, as long as its
//! visibility and extended with it by the worker's heartbeat. A second copy
//! that arrives while a live worker holds the lease is not handed to a
//! worker: it goes back to the queue until the lease would have run out, and
//! when it comes again the video is processed and the worker acknowledges it
//! without work. A worker that dies stops extending; its lease ends with its
//! visibility, so its redelivered job is taken up as before. The copy is
//! given back rather than deleted, so clocks that disagree by a little can
//! at worst delay a job, never lose one.

use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{JobQueue, QueueError};
use anb_domain::{Delivery, Job, Receipt, VideoId};
use async_trait::async_trait;
use sea_orm::ConnectionTrait;

use crate::Database;
use crate::{db_error, millis};

/// Copies held back in one `receive` before it gives up for this poll.
const HOLD_BACKS_PER_RECEIVE: usize = 5;

/// A [`JobQueue`] whose deliveries hold a lease on their video.
#[derive(Clone)]
pub struct LeasedQueue {
    inner: Arc<dyn JobQueue>,
    db: Database,
}

impl LeasedQueue {
    /// Leases in `db` over the deliveries of `inner`.
    pub fn new(inner: Arc<dyn JobQueue>, db: Database) -> Self {
        Self { inner, db }
    }

    /// Takes the lease on `video` for `receipt` until `visibility` from now,
    /// unless another receipt holds it; `Err(remaining)` then.
    async fn acquire(&self, video: VideoId, receipt: &Receipt, visibility: Duration) -> Result<Result<(), Duration>, QueueError> {
        let now = millis(chrono::Utc::now());
        let until = now.saturating_add(ms(visibility));
        let sql = "INSERT INTO job_leases (video_id, receipt, until_ms) VALUES ($1, $2, $3) \
                   ON CONFLICT (video_id) DO UPDATE SET receipt = excluded.receipt, until_ms = excluded.until_ms \
                   WHERE job_leases.until_ms <= $4";
        let values = vec![video.0.into(), receipt.0.clone().into(), until.into(), now.into()];
        let taken = self.db.connection().execute(self.db.statement(sql, values)).await.map_err(|e| db_error(&e))?;
        if taken.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let holder = self
            .db
            .connection()
            .query_one(self.db.statement("SELECT until_ms FROM job_leases WHERE video_id = $1", vec![video.0.into()]))
            .await
            .map_err(|e| db_error(&e))?;
        let until: i64 = holder.and_then(|row| row.try_get("", "until_ms").ok()).unwrap_or(now);
        Ok(Err(Duration::from_millis(u64::try_from(until.saturating_sub(now)).unwrap_or(0))))
    }

    async fn update_lease(&self, receipt: &Receipt, until: Option<Duration>) -> Result<(), QueueError> {
        let statement = match until {
            Some(visibility) => self.db.statement(
                "UPDATE job_leases SET until_ms = $1 WHERE receipt = $2",
                vec![millis(chrono::Utc::now()).saturating_add(ms(visibility)).into(), receipt.0.clone().into()],
            ),
            None => self.db.statement("DELETE FROM job_leases WHERE receipt = $1", vec![receipt.0.clone().into()]),
        };
        self.db.connection().execute(statement).await.map_err(|e| db_error(&e))?;
        Ok(())
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl JobQueue for LeasedQueue {
    async fn send(&self, job: &Job) -> Result<(), QueueError> {
        self.inner.send(job).await
    }

    async fn receive(&self, visibility: Duration) -> Result<Option<Delivery>, QueueError> {
        for _ in 0..HOLD_BACKS_PER_RECEIVE {
            let Some(delivery) = self.inner.receive(visibility).await? else { return Ok(None) };
            match self.acquire(delivery.job.video_id, &delivery.receipt, visibility).await {
                Ok(Ok(())) => return Ok(Some(delivery)),
                Ok(Err(remaining)) => {
                    tracing::info!(
                        video_id = %delivery.job.video_id,
                        task_id = %delivery.job.task_id,
                        "a live worker holds this video; its duplicate job waits"
                    );
                    self.inner.release(&delivery.receipt, remaining + Duration::from_secs(1)).await?;
                }
                Err(error) => {
                    let _ = self.inner.release(&delivery.receipt, Duration::ZERO).await;
                    return Err(error);
                }
            }
        }
        Ok(None)
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.inner.extend(receipt, visibility).await?;
        self.update_lease(receipt, Some(visibility)).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let acked = self.inner.ack(receipt).await;
        self.update_lease(receipt, None).await?;
        acked
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), QueueError> {
        let released = self.inner.release(receipt, delay).await;
        self.update_lease(receipt, None).await?;
        released
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<(), QueueError> {
        let moved = self.inner.dead_letter(receipt, reason).await;
        self.update_lease(receipt, None).await?;
        moved
    }
}
