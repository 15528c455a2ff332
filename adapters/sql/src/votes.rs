//! [`SeaOrmVoteRepository`]: one vote per person and video, and the ranking.

use anb_domain::ports::{VoteRepository, VoteRepositoryError};
use anb_domain::{CityFilter, NetworkTag, Page, RankingEntry, Timestamp, UserId, VideoId, VideoStatus};
use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, Set, TransactionTrait};

use crate::entities::{video, vote};
use crate::{Database, db_error, is_unique_violation};

/// Records votes and ranks players with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaOrmVoteRepository {
    pub(crate) db: Database,
}

#[derive(Debug, FromQueryResult)]
struct RankingRow {
    first_name: String,
    last_name: String,
    city: String,
    votes: i64,
}

#[async_trait]
impl VoteRepository for SeaOrmVoteRepository {
    async fn cast(&self, voter: UserId, video_id: VideoId, network: Option<NetworkTag>, at: Timestamp) -> Result<(), VoteRepositoryError> {
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        // The count goes up first: on SQLite that takes the write lock at once,
        // on PostgreSQL it locks the video row; racing votes then queue here.
        let counted = video::Entity::update_many()
            .col_expr(video::Column::Votes, Expr::col(video::Column::Votes).add(1))
            .filter(video::Column::Id.eq(video_id.0))
            .filter(video::Column::Status.eq(VideoStatus::Processed.as_str()))
            .filter(video::Column::OwnerId.ne(voter.0))
            .exec(&txn)
            .await
            .map_err(|e| db_error(&e))?;
        if counted.rows_affected == 0 {
            // Which rule refused it: the video is the voter's own, or not public.
            let own = video::Entity::find()
                .filter(video::Column::Id.eq(video_id.0))
                .filter(video::Column::Status.eq(VideoStatus::Processed.as_str()))
                .filter(video::Column::OwnerId.eq(voter.0))
                .one(&txn)
                .await
                .map_err(|e| db_error(&e))?
                .is_some();
            txn.rollback().await.map_err(|e| db_error(&e))?;
            return Err(if own { VoteRepositoryError::OwnVideo } else { VoteRepositoryError::VideoNotPublic });
        }
        let total = "UPDATE users SET public_votes = public_votes + 1 WHERE id = (SELECT owner_id FROM videos WHERE id = $1)";
        txn.execute(self.db.statement(total, vec![video_id.0.into()])).await.map_err(|e| db_error(&e))?;
        let vote =
            vote::ActiveModel { user_id: Set(voter.0), video_id: Set(video_id.0), created_at: Set(at), network: Set(network.map(|n| n.0)) };
        match vote::Entity::insert(vote).exec_without_returning(&txn).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                txn.rollback().await.map_err(|e| db_error(&e))?;
                return Err(VoteRepositoryError::DuplicateVote);
            }
            Err(e) => return Err(db_error(&e).into()),
        }
        txn.commit().await.map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn rankings(&self, city: CityFilter, page: Page) -> Result<Vec<RankingEntry>, VoteRepositoryError> {
        // Players with a public video, by the vote totals their rows keep
        // (index users_ranking, or users_city_ranking with a city).
        let statement = self.db.paged_statement(&city, page, "u.first_public_video IS NOT NULL", "u.city_key", |filter| {
            format!(
                "SELECT u.first_name, u.last_name, u.city, u.public_votes AS votes FROM users u WHERE {filter} \
                 ORDER BY u.public_votes DESC, u.first_public_video ASC, u.id ASC"
            )
        });
        let rows = RankingRow::find_by_statement(statement).all(self.db.connection()).await.map_err(|e| db_error(&e))?;
        let first = i64::try_from(page.offset).unwrap_or(i64::MAX);
        Ok(rows
            .into_iter()
            .zip(1..)
            .map(|(r, i)| RankingEntry {
                position: first.saturating_add(i),
                username: anb_domain::user::display_name(&r.first_name, &r.last_name),
                city: r.city,
                votes: r.votes,
            })
            .collect())
    }
}
