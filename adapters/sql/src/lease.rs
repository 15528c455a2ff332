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
//!
//! The lease, not the queue's receipt, says who processes a video. A worker
//! whose receipt went stale while its lease is live (a RabbitMQ connection
//! lost and opened again: the broker has put the job back) keeps working
//! and extending its lease; the copy the broker hands out again waits, then
//! finds the video processed. And the lease counts the times its video was
//! taken, kept across releases: a delivery's receive count is at least
//! that, so a queue that does not count redeliveries itself (Kafka after a
//! worker's crash) still ends in the dead-letter queue after the attempts.

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
    /// unless another receipt holds it: `Ok(takes)`, the times the video has
    /// been taken, this one included, or `Err(remaining)`.
    async fn acquire(&self, video: VideoId, receipt: &Receipt, visibility: Duration) -> Result<Result<u32, Duration>, QueueError> {
        let now = millis(chrono::Utc::now());
        let until = now.saturating_add(ms(visibility));
        let sql = "INSERT INTO job_leases (video_id, receipt, until_ms, takes) VALUES ($1, $2, $3, 1) \
                   ON CONFLICT (video_id) DO UPDATE SET receipt = excluded.receipt, until_ms = excluded.until_ms, \
                   takes = job_leases.takes + 1 WHERE job_leases.until_ms <= $4 RETURNING takes";
        let values = vec![video.0.into(), receipt.0.clone().into(), until.into(), now.into()];
        let taken = self.db.connection().query_one(self.db.statement(sql, values)).await.map_err(|e| db_error(&e))?;
        if let Some(row) = taken {
            let takes: i32 = row.try_get("", "takes").map_err(|e| db_error(&e))?;
            return Ok(Ok(u32::try_from(takes).unwrap_or(1)));
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

    async fn update_lease(&self, receipt: &Receipt, change: Lease) -> Result<bool, QueueError> {
        let now = millis(chrono::Utc::now());
        let statement = match change {
            Lease::Extend(visibility) => self.db.statement(
                "UPDATE job_leases SET until_ms = $1 WHERE receipt = $2",
                vec![now.saturating_add(ms(visibility)).into(), receipt.0.clone().into()],
            ),
            Lease::Renew(visibility) => self.db.statement(
                "UPDATE job_leases SET until_ms = $1 WHERE receipt = $2 AND until_ms > $3",
                vec![now.saturating_add(ms(visibility)).into(), receipt.0.clone().into(), now.into()],
            ),
            // The row stays, with its count of takes.
            Lease::End => self.db.statement("UPDATE job_leases SET until_ms = 0 WHERE receipt = $1", vec![receipt.0.clone().into()]),
            Lease::Finish => self.db.statement("DELETE FROM job_leases WHERE receipt = $1", vec![receipt.0.clone().into()]),
        };
        let done = self.db.connection().execute(statement).await.map_err(|e| db_error(&e))?;
        Ok(done.rows_affected() > 0)
    }
}

/// What happens to a lease.
#[derive(Debug, Clone, Copy)]
enum Lease {
    /// Held for the visibility from now.
    Extend(Duration),
    /// Held for the visibility from now, if still held.
    Renew(Duration),
    /// Given up; its video may be taken again at once.
    End,
    /// The job is over: forgotten, takes and all.
    Finish,
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
                Ok(Ok(takes)) => return Ok(Some(Delivery { receive_count: delivery.receive_count.max(takes), ..delivery })),
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
        match self.inner.extend(receipt, visibility).await {
            Ok(()) => self.update_lease(receipt, Lease::Extend(visibility)).await.map(drop),
            // The queue took the job back, but the video is still ours: the
            // copy it hands out waits for this lease.
            Err(QueueError::ReceiptExpired) if self.update_lease(receipt, Lease::Renew(visibility)).await? => {
                tracing::debug!("the queue took the job back; its lease holds the video");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let acked = self.inner.ack(receipt).await;
        self.update_lease(receipt, Lease::Finish).await?;
        acked
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), QueueError> {
        let released = self.inner.release(receipt, delay).await;
        self.update_lease(receipt, Lease::End).await?;
        released
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<(), QueueError> {
        let moved = self.inner.dead_letter(receipt, reason).await;
        self.update_lease(receipt, Lease::Finish).await?;
        moved
    }
}
