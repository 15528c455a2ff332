//! The job queue kept in the `jobs` table: the single-node default. The
//! upload's transaction inserts the job row with the video; workers take rows
//! with a visibility timeout, much as SQS hands out messages.

use std::time::Duration;

use anb_domain::ports::{JobQueue, QueueError};
use anb_domain::{Delivery, Job, Receipt, TaskId, VideoId};
use async_trait::async_trait;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseBackend, EntityTrait, FromQueryResult, QueryFilter, Set};

use crate::{Database, db_error, job, millis};

/// Longest a receive waits for a job before answering that there is none.
const LONG_POLL: Duration = Duration::from_secs(1);
/// How often a waiting receive looks at the table (for jobs added by other processes).
const LOOK_AGAIN: Duration = Duration::from_millis(250);

/// State of a job waiting or running.
pub(crate) const QUEUED: &str = "queued";
/// State of a job given up on (the dead-letter "queue").
pub(crate) const DEAD: &str = "dead";

/// A [`JobQueue`] on the database the videos live in.
#[derive(Clone, Debug)]
pub struct SeaOrmJobQueue {
    db: Database,
    /// Longest a receive waits for a job, and how often it looks meanwhile.
    long_poll: Duration,
    look_again: Duration,
}

#[derive(Debug, FromQueryResult)]
struct Taken {
    task_id: String,
    video_id: i64,
    receive_count: i32,
}

impl SeaOrmJobQueue {
    /// The queue on `db`.
    pub fn new(db: Database) -> Self {
        Self { db, long_poll: LONG_POLL, look_again: LOOK_AGAIN }
    }

    /// A receive waits up to `long_poll` for a job, looking at the table
    /// every `look_again` meanwhile (and at once when this process adds one).
    #[must_use]
    pub fn with_long_poll(mut self, long_poll: Duration, look_again: Duration) -> Self {
        self.long_poll = long_poll;
        self.look_again = look_again.max(Duration::from_millis(1));
        self
    }

    /// Jobs in the dead-letter state, with their last error (for operators
    /// and tests).
    ///
    /// # Errors
    /// When the database fails.
    pub async fn dead_letters(&self) -> Result<Vec<(Job, String)>, QueueError> {
        let rows = job::Entity::find().filter(job::Column::State.eq(DEAD)).all(self.db.connection()).await.map_err(|e| db_error(&e))?;
        rows.into_iter().map(|r| Ok((to_job(&r.task_id, r.video_id)?, r.last_error.unwrap_or_default()))).collect()
    }

    /// How many jobs wait or run.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn depth(&self) -> Result<u64, QueueError> {
        use sea_orm::PaginatorTrait;
        job::Entity::find().filter(job::Column::State.eq(QUEUED)).count(self.db.connection()).await.map_err(|e| db_error(&e).into())
    }

    /// Takes the oldest visible job, if any, hiding it for `visibility`.
    async fn take(&self, visibility: Duration) -> Result<Option<Delivery>, QueueError> {
        let now = now_ms();
        let receipt = uuid::Uuid::new_v4().to_string();
        // One statement takes the oldest visible job, so two workers never
        // get the same delivery; PostgreSQL skips rows another worker holds.
        let lock = if self.db.backend() == DatabaseBackend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE jobs SET receipt = $1, visible_at = $2, receive_count = receive_count + 1 \
             WHERE task_id = (SELECT task_id FROM jobs WHERE state = $3 AND visible_at <= $4 \
                              ORDER BY visible_at, created_at LIMIT 1 {lock}) \
             RETURNING task_id, video_id, receive_count"
        );
        let values = vec![receipt.clone().into(), now.saturating_add(ms(visibility)).into(), QUEUED.into(), now.into()];
        let taken = Taken::find_by_statement(self.db.statement(&sql, values)).one(self.db.connection()).await.map_err(|e| db_error(&e))?;
        let Some(taken) = taken else { return Ok(None) };
        Ok(Some(Delivery {
            job: to_job(&taken.task_id, taken.video_id)?,
            receipt: Receipt(receipt),
            receive_count: u32::try_from(taken.receive_count).unwrap_or(u32::MAX),
        }))
    }

    async fn update_by_receipt(&self, receipt: &Receipt, update: sea_orm::UpdateMany<job::Entity>) -> Result<(), QueueError> {
        let result = update
            .filter(job::Column::Receipt.eq(receipt.0.as_str()))
            .filter(job::Column::State.eq(QUEUED))
            .exec(self.db.connection())
            .await
            .map_err(|e| db_error(&e))?;
        if result.rows_affected == 0 { Err(QueueError::ReceiptExpired) } else { Ok(()) }
    }
}

fn to_job(task_id: &str, video_id: i64) -> Result<Job, QueueError> {
    let task_id = task_id.parse().map_err(|_| anb_domain::BackendError::internal(format!("invalid task id {task_id:?} in jobs")))?;
    Ok(Job { task_id: TaskId(task_id), video_id: VideoId(video_id) })
}

fn now_ms() -> i64 {
    millis(chrono::Utc::now())
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl JobQueue for SeaOrmJobQueue {
    async fn send(&self, job: &Job) -> Result<(), QueueError> {
        let now = now_ms();
        let row = job::ActiveModel {
            task_id: Set(job.task_id.to_string()),
            video_id: Set(job.video_id.0),
            state: Set(QUEUED.to_owned()),
            visible_at: Set(now),
            receive_count: Set(0),
            receipt: Set(None),
            last_error: Set(None),
            created_at: Set(now),
        };
        job::Entity::insert(row)
            .on_conflict(OnConflict::column(job::Column::TaskId).do_nothing().to_owned())
            .exec_without_returning(self.db.connection())
            .await
            .map_err(|e| db_error(&e))?;
        self.db.job_added();
        Ok(())
    }

    /// Takes the oldest visible job; when there is none, waits up to
    /// [`LONG_POLL`] for one (woken at once by a job added in this process,
    /// looking again every [`LOOK_AGAIN`] for those of other processes;
    /// [`SeaOrmJobQueue::with_long_poll`] changes both).
    async fn receive(&self, visibility: Duration) -> Result<Option<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + self.long_poll;
        let mut added = self.db.watch_jobs();
        loop {
            if let Some(delivery) = self.take(visibility).await? {
                return Ok(Some(delivery));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Woken or timed out, look again.
            let _ = tokio::time::timeout_at((now + self.look_again).min(deadline), added.changed()).await;
        }
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        let update = job::Entity::update_many().col_expr(job::Column::VisibleAt, Expr::value(now_ms().saturating_add(ms(visibility))));
        self.update_by_receipt(receipt, update).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let result = job::Entity::delete_many()
            .filter(job::Column::Receipt.eq(receipt.0.as_str()))
            .exec(self.db.connection())
            .await
            .map_err(|e| db_error(&e))?;
        if result.rows_affected == 0 { Err(QueueError::ReceiptExpired) } else { Ok(()) }
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), QueueError> {
        let update = job::Entity::update_many()
            .col_expr(job::Column::VisibleAt, Expr::value(now_ms().saturating_add(ms(delay))))
            .col_expr(job::Column::Receipt, Expr::value(Option::<String>::None));
        self.update_by_receipt(receipt, update).await?;
        if delay.is_zero() {
            self.db.job_added();
        }
        Ok(())
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<(), QueueError> {
        let update = job::Entity::update_many()
            .col_expr(job::Column::State, Expr::value(DEAD))
            .col_expr(job::Column::LastError, Expr::value(reason))
            .col_expr(job::Column::Receipt, Expr::value(Option::<String>::None));
        self.update_by_receipt(receipt, update).await
    }
}
