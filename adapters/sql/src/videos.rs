//! [`SeaOrmVideoRepository`]: videos, their status moves, the public listing.

use anb_domain::ports::{Deletion, VideoRepository, VideoRepositoryError};
use anb_domain::{
    BackendError, CityFilter, NewVideo, ObjectKey, Page, PublicVideo, TaskId, Timestamp, UserId, Video, VideoId, VideoStatus,
};
use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, Set, TransactionTrait,
};

use crate::entities::{job, video, vote};
use crate::{Database, db_error, millis, queue};

/// Stores videos with SeaORM; writes each upload's job in the same transaction.
#[derive(Clone, Debug)]
pub struct SeaOrmVideoRepository {
    pub(crate) db: Database,
}

fn to_video(m: video::Model) -> Result<Video, BackendError> {
    let bad = |what: &str| BackendError::internal(format!("stored {what} of video {} is invalid", m.id));
    Ok(Video {
        id: VideoId(m.id),
        owner: UserId(m.owner_id),
        status: m.status.parse().map_err(|_| bad("status"))?,
        task_id: TaskId(m.task_id.parse().map_err(|_| bad("task id"))?),
        original_key: ObjectKey::parse(&m.original_key).map_err(|_| bad("original key"))?,
        processed_key: m.processed_key.as_deref().map(ObjectKey::parse).transpose().map_err(|_| bad("processed key"))?,
        title: m.title,
        uploaded_at: m.uploaded_at,
        processed_at: m.processed_at,
        failure_reason: m.failure_reason,
        votes: m.votes,
        progress: m.progress.and_then(|p| u8::try_from(p).ok()),
    })
}

impl SeaOrmVideoRepository {
    /// Moves a video to `to` if its status is one of `from`, setting extra
    /// columns too; tells a missing video from a wrong status.
    async fn transition(
        &self,
        conn: &impl ConnectionTrait,
        id: VideoId,
        from: &[VideoStatus],
        to: VideoStatus,
        extra: Vec<(video::Column, sea_orm::sea_query::SimpleExpr)>,
    ) -> Result<(), VideoRepositoryError> {
        let mut update = video::Entity::update_many().col_expr(video::Column::Status, Expr::value(to.as_str()));
        if to != VideoStatus::Processing {
            // Progress only means something while processing.
            update = update.col_expr(video::Column::Progress, Expr::value(Option::<i16>::None));
        }
        let mut update = update.filter(video::Column::Id.eq(id.0)).filter(video::Column::Status.is_in(from.iter().map(|s| s.as_str())));
        for (column, value) in extra {
            update = update.col_expr(column, value);
        }
        let result = update.exec(conn).await.map_err(|e| db_error(&e))?;
        if result.rows_affected == 1 {
            return Ok(());
        }
        match self.by_id(id).await? {
            None => Err(VideoRepositoryError::NotFound),
            Some(video) => Err(VideoRepositoryError::InvalidTransition { from: video.status, to }),
        }
    }
}

#[derive(Debug, FromQueryResult)]
struct PublicRow {
    id: i64,
    title: String,
    first_name: String,
    last_name: String,
    city: String,
    processed_key: String,
    votes: i64,
}

#[async_trait]
impl VideoRepository for SeaOrmVideoRepository {
    async fn create_with_job(&self, new: NewVideo) -> Result<Video, VideoRepositoryError> {
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        let model = video::ActiveModel {
            owner_id: Set(new.owner.0),
            title: Set(new.title.as_str().to_owned()),
            status: Set(VideoStatus::Uploaded.as_str().to_owned()),
            task_id: Set(new.task_id.to_string()),
            original_key: Set(new.original_key.as_str().to_owned()),
            processed_key: Set(None),
            uploaded_at: Set(new.uploaded_at),
            processed_at: Set(None),
            failure_reason: Set(None),
            votes: Set(0),
            progress: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|e| db_error(&e))?;
        job::ActiveModel {
            task_id: Set(new.task_id.to_string()),
            video_id: Set(model.id),
            state: Set(queue::QUEUED.to_owned()),
            visible_at: Set(millis(new.uploaded_at)),
            receive_count: Set(0),
            receipt: Set(None),
            last_error: Set(None),
            created_at: Set(millis(new.uploaded_at)),
        }
        .insert(&txn)
        .await
        .map_err(|e| db_error(&e))?;
        txn.commit().await.map_err(|e| db_error(&e))?;
        self.db.job_added();
        Ok(to_video(model)?)
    }

    async fn by_id(&self, id: VideoId) -> Result<Option<Video>, VideoRepositoryError> {
        let found = video::Entity::find_by_id(id.0).one(self.db.connection()).await.map_err(|e| db_error(&e))?;
        Ok(found.map(to_video).transpose()?)
    }

    async fn list_by_owner(&self, owner: UserId) -> Result<Vec<Video>, VideoRepositoryError> {
        let rows = video::Entity::find()
            .filter(video::Column::OwnerId.eq(owner.0))
            .order_by_desc(video::Column::Id)
            .all(self.db.connection())
            .await
            .map_err(|e| db_error(&e))?;
        Ok(rows.into_iter().map(to_video).collect::<Result<_, _>>()?)
    }

    async fn list_public(&self, city: CityFilter, page: Page) -> Result<Vec<PublicVideo>, VideoRepositoryError> {
        // Index videos_public_order, or videos_city_public with a city.
        let statement = self.db.paged_statement(&city, page, "v.status = 'processed'", "v.city_key", |filter| {
            format!(
                "SELECT v.id, v.title, u.first_name, u.last_name, u.city, v.processed_key, v.votes \
                 FROM videos v JOIN users u ON u.id = v.owner_id WHERE {filter} \
                 ORDER BY v.votes DESC, v.id ASC"
            )
        });
        let rows = PublicRow::find_by_statement(statement).all(self.db.connection()).await.map_err(|e| db_error(&e))?;
        rows.into_iter()
            .map(|r| {
                Ok(PublicVideo {
                    id: VideoId(r.id),
                    title: r.title,
                    username: anb_domain::user::display_name(&r.first_name, &r.last_name),
                    city: r.city,
                    processed_key: ObjectKey::parse(&r.processed_key).map_err(|_| BackendError::internal("invalid processed key"))?,
                    votes: r.votes,
                })
            })
            .collect()
    }

    async fn mark_processing(&self, id: VideoId) -> Result<(), VideoRepositoryError> {
        let from = [VideoStatus::Uploaded, VideoStatus::Processing];
        let extra = vec![(video::Column::Progress, Expr::value(0i16))];
        self.transition(self.db.connection(), id, &from, VideoStatus::Processing, extra).await
    }

    async fn report_progress(&self, id: VideoId, percent: u8) -> Result<(), VideoRepositoryError> {
        video::Entity::update_many()
            .col_expr(video::Column::Progress, Expr::value(i16::from(percent.min(100))))
            .filter(video::Column::Id.eq(id.0))
            .filter(video::Column::Status.eq(VideoStatus::Processing.as_str()))
            .exec(self.db.connection())
            .await
            .map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn mark_processed(&self, id: VideoId, key: &ObjectKey, at: Timestamp) -> Result<(), VideoRepositoryError> {
        let extra = vec![
            (video::Column::ProcessedKey, Expr::value(key.as_str())),
            (video::Column::ProcessedAt, Expr::value(at)),
            (video::Column::FailureReason, Expr::value(Option::<String>::None)),
            (video::Column::CityKey, Expr::cust("(SELECT u.city_key FROM users u WHERE u.id = videos.owner_id)")),
        ];
        // Public from now on: the owner enters the rankings, with this video
        // as their first public one unless they had an earlier one.
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        self.transition(&txn, id, &[VideoStatus::Processing], VideoStatus::Processed, extra).await?;
        // Each placeholder once: SQLite's `?` are positional.
        let first = "UPDATE users SET first_public_video = CASE \
                       WHEN first_public_video IS NULL OR first_public_video > $1 THEN $2 ELSE first_public_video END \
                     WHERE id = (SELECT owner_id FROM videos WHERE id = $3)";
        txn.execute(self.db.statement(first, vec![id.0.into(), id.0.into(), id.0.into()])).await.map_err(|e| db_error(&e))?;
        txn.commit().await.map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn mark_waiting(&self, id: VideoId, reason: &str) -> Result<(), VideoRepositoryError> {
        let extra = vec![(video::Column::FailureReason, Expr::value(reason))];
        self.transition(self.db.connection(), id, &[VideoStatus::Processing], VideoStatus::Uploaded, extra).await
    }

    async fn mark_failed(&self, id: VideoId, reason: &str) -> Result<(), VideoRepositoryError> {
        let extra = vec![(video::Column::FailureReason, Expr::value(reason))];
        let from = [VideoStatus::Processing, VideoStatus::Uploaded];
        self.transition(self.db.connection(), id, &from, VideoStatus::Failed, extra).await
    }

    async fn retry_failed(&self, id: VideoId) -> Result<(), VideoRepositoryError> {
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        let extra = vec![(video::Column::FailureReason, Expr::value(Option::<String>::None))];
        self.transition(&txn, id, &[VideoStatus::Failed], VideoStatus::Uploaded, extra).await?;
        let video = video::Entity::find_by_id(id.0).one(&txn).await.map_err(|e| db_error(&e))?.ok_or(VideoRepositoryError::NotFound)?;
        // A dead job of the database queue has the same task id: replaced.
        job::Entity::delete_many().filter(job::Column::VideoId.eq(id.0)).exec(&txn).await.map_err(|e| db_error(&e))?;
        let now = millis(chrono::Utc::now());
        job::ActiveModel {
            task_id: Set(video.task_id),
            video_id: Set(id.0),
            state: Set(queue::QUEUED.to_owned()),
            visible_at: Set(now),
            receive_count: Set(0),
            receipt: Set(None),
            last_error: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| db_error(&e))?;
        // The lease's count of takes starts over with the attempts.
        txn.execute(self.db.statement("DELETE FROM job_leases WHERE video_id = $1", vec![id.0.into()])).await.map_err(|e| db_error(&e))?;
        txn.commit().await.map_err(|e| db_error(&e))?;
        self.db.job_added();
        Ok(())
    }

    async fn delete_unless_public(&self, id: VideoId) -> Result<Deletion, VideoRepositoryError> {
        let Some(video) = self.by_id(id).await? else {
            return Ok(Deletion::NotFound);
        };
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        let deleted = video::Entity::delete_many()
            .filter(video::Column::Id.eq(id.0))
            .filter(video::Column::Status.ne(VideoStatus::Processed.as_str()))
            .exec(&txn)
            .await
            .map_err(|e| db_error(&e))?;
        if deleted.rows_affected == 0 {
            txn.rollback().await.map_err(|e| db_error(&e))?;
            return Ok(match self.by_id(id).await? {
                Some(_) => Deletion::Public,
                None => Deletion::NotFound,
            });
        }
        job::Entity::delete_many().filter(job::Column::VideoId.eq(id.0)).exec(&txn).await.map_err(|e| db_error(&e))?;
        vote::Entity::delete_many().filter(vote::Column::VideoId.eq(id.0)).exec(&txn).await.map_err(|e| db_error(&e))?;
        txn.commit().await.map_err(|e| db_error(&e))?;
        Ok(Deletion::Deleted(video))
    }
}
