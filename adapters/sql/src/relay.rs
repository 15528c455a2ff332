//! The transactional outbox relay. With an external queue (SQS) the `jobs`
//! table is the outbox: the upload's transaction writes the job beside the
//! video, and [`OutboxRelay`] publishes each row to the queue, deleting it
//! only once the queue has it. A crash between commit and publish therefore
//! loses nothing (the row stays until some relay publishes it), and a crash
//! between publish and delete publishes twice, which the idempotent worker
//! shrugs off.
//!
//! Rows are claimed like jobs of the database queue (a short visibility,
//! `SKIP LOCKED` on PostgreSQL), so any number of relays (one per web server
//! and worker) run side by side without publishing a row twice.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anb_application::Shutdown;
use anb_domain::ports::{JobQueue, QueueError};
use futures::future::{Either, select};

use crate::SeaOrmJobQueue;

/// How long a claimed row stays hidden from other relays.
const CLAIM: Duration = Duration::from_secs(30);
/// Rows published per round before looking at the shutdown signal again.
const BATCH: usize = 100;

/// Moves jobs from the database outbox to the external queue.
#[derive(Clone)]
pub struct OutboxRelay {
    outbox: SeaOrmJobQueue,
    target: Arc<dyn JobQueue>,
    interval: Duration,
}

impl OutboxRelay {
    /// A relay polling `outbox` every `interval` while it is empty.
    pub fn new(outbox: SeaOrmJobQueue, target: Arc<dyn JobQueue>, interval: Duration) -> Self {
        Self { outbox, target, interval }
    }

    /// Publishes until `shutdown` resolves.
    pub async fn run(&self, shutdown: Shutdown) {
        loop {
            let wait = match self.publish_pending().await {
                Ok(BATCH) => Duration::ZERO,
                Ok(_) => self.interval,
                Err(error) => {
                    tracing::warn!(%error, "outbox relay failed; retrying shortly");
                    self.interval.max(Duration::from_secs(1))
                }
            };
            if let Either::Right(_) = select(pin!(tokio::time::sleep(wait)), shutdown.clone()).await {
                return;
            }
        }
    }

    /// Publishes up to [`BATCH`] pending jobs; returns how many.
    ///
    /// # Errors
    /// When the database or the queue fails; the job being published then
    /// comes back to the outbox.
    pub async fn publish_pending(&self) -> Result<usize, QueueError> {
        let mut published = 0;
        while published < BATCH {
            let Some(row) = self.outbox.receive(CLAIM).await? else { break };
            if let Err(error) = self.target.send(&row.job).await {
                let _ = self.outbox.release(&row.receipt, Duration::ZERO).await;
                return Err(error);
            }
            match self.outbox.ack(&row.receipt).await {
                // Our claim ran out and another relay published it too: harmless.
                Ok(()) | Err(QueueError::ReceiptExpired) => {}
                Err(error) => return Err(error),
            }
            tracing::debug!(task_id = %row.job.task_id, "job published");
            published += 1;
        }
        Ok(published)
    }
}
