//! SeaORM adapters of the repository ports and the database job queue. One
//! code path serves SQLite (single node) and PostgreSQL (scale-out); where the
//! SQL dialects differ, [`Database::backend`] picks the spelling.

mod entities;
mod migration;
mod queue;

use std::time::Duration;

use anb_domain::ports::{
    Deletion, UserRepository, UserRepositoryError, VideoRepository, VideoRepositoryError, VoteRepository, VoteRepositoryError,
};
use anb_domain::{
    BackendError, CityFilter, Email, NewUser, NewVideo, ObjectKey, Page, PasswordHash, PublicVideo, RankingEntry, TaskId, Timestamp, User,
    UserId, Video, VideoId, VideoStatus,
};
use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, Set, SqlErr, Statement, TransactionTrait, Value,
};
use sea_orm_migration::MigratorTrait;

pub use entities::{job, user, video, vote};
pub use migration::Migrator;
pub use queue::SeaOrmJobQueue;

/// Key of the PostgreSQL advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x0041_4e42_5f4d_4947; // "ANB_MIG"

/// A connection pool to the database, migrated to the current schema.
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
}

impl Database {
    /// Connects (creating a SQLite file if needed), then runs pending
    /// migrations. `pool_size` caps the open connections.
    ///
    /// # Errors
    /// A [`BackendError`] naming the failure, without the URL's password.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, BackendError> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(pool_size)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        // Per-connection SQLite settings, so every pooled connection has them:
        // WAL lets readers work while one writer writes; writers queue for up
        // to 10 s instead of failing with "database is locked".
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
        });
        let conn = sea_orm::Database::connect(options).await.map_err(|e| db_error(&e))?;
        if conn.get_database_backend() == DatabaseBackend::Postgres {
            // Processes starting together would race to create the tables:
            // one migrates under a lock held by its transaction (PostgreSQL
            // DDL is transactional), the others then find nothing to do.
            let txn = conn.begin().await.map_err(|e| db_error(&e))?;
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await.map_err(|e| db_error(&e))?;
            Migrator::up(&txn, None).await.map_err(|e| db_error(&e))?;
            txn.commit().await.map_err(|e| db_error(&e))?;
        } else {
            Migrator::up(&conn, None).await.map_err(|e| db_error(&e))?;
        }
        Ok(Self { conn })
    }

    /// The pool, for adapters built on it.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Which SQL dialect this database speaks.
    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// Whether the database answers a trivial query now.
    pub async fn ping(&self) -> bool {
        self.conn.ping().await.is_ok()
    }

    /// The user repository on this database.
    pub fn users(&self) -> SeaOrmUserRepository {
        SeaOrmUserRepository { db: self.clone() }
    }

    /// The video repository on this database.
    pub fn videos(&self) -> SeaOrmVideoRepository {
        SeaOrmVideoRepository { db: self.clone() }
    }

    /// The vote repository on this database.
    pub fn votes(&self) -> SeaOrmVoteRepository {
        SeaOrmVoteRepository { db: self.clone() }
    }

    /// The job queue kept in this database.
    pub fn queue(&self) -> SeaOrmJobQueue {
        SeaOrmJobQueue::new(self.clone())
    }

    /// A paged query of the public pages: `sql` gets the WHERE condition
    /// (`condition`, and `city_column = $1` when filtering by city) and
    /// returns the query up to its ORDER BY; the page is appended.
    pub(crate) fn paged_statement(
        &self,
        city: &CityFilter,
        page: Page,
        condition: &str,
        city_column: &str,
        sql: impl FnOnce(&str) -> String,
    ) -> Statement {
        let mut values: Vec<Value> = Vec::new();
        let mut filter = condition.to_owned();
        if let Some(key) = city.key() {
            values.push(key.into());
            filter.push_str(&format!(" AND {city_column} = $1"));
        }
        let n = values.len();
        values.push(i64::from(page.limit).into());
        values.push(i64::try_from(page.offset).unwrap_or(i64::MAX).into());
        let text = format!("{} LIMIT ${} OFFSET ${}", sql(&filter), n + 1, n + 2);
        self.statement(&text, values)
    }

    /// A statement in this backend's dialect: `$1, $2, ...` placeholders are
    /// written once, in order, and become `?` on SQLite.
    pub(crate) fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        let backend = self.backend();
        let sql = if backend == DatabaseBackend::Sqlite { dollar_to_question(sql) } else { sql.to_owned() };
        Statement::from_sql_and_values(backend, sql, values)
    }
}

fn dollar_to_question(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Maps a database error to a [`BackendError`]: connection trouble is
/// `Unavailable` (the caller may retry), anything else `Internal`.
pub(crate) fn db_error(error: &DbErr) -> BackendError {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => BackendError::unavailable(error.to_string()),
        DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
            if matches!(
                e,
                sea_orm::sqlx::Error::Io(_)
                    | sea_orm::sqlx::Error::PoolTimedOut
                    | sea_orm::sqlx::Error::PoolClosed
                    | sea_orm::sqlx::Error::Tls(_)
            ) =>
        {
            BackendError::unavailable(error.to_string())
        }
        // PostgreSQL going away or refusing: connection exceptions (08…),
        // shutdown or starting up (57P…), too many connections (53300).
        DbErr::Query(sea_orm::RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(e)))
        | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(e)))
            if e.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300") =>
        {
            BackendError::unavailable(error.to_string())
        }
        _ => BackendError::internal(error.to_string()),
    }
}

fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Stores accounts with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaOrmUserRepository {
    db: Database,
}

fn to_user(m: user::Model) -> Result<User, BackendError> {
    Ok(User {
        id: UserId(m.id),
        email: Email::parse(&m.email).map_err(|_| BackendError::internal(format!("stored e-mail of user {} is invalid", m.id)))?,
        first_name: m.first_name,
        last_name: m.last_name,
        password_hash: PasswordHash(m.password_hash),
        city: m.city,
        country: m.country,
        created_at: m.created_at,
    })
}

#[async_trait]
impl UserRepository for SeaOrmUserRepository {
    async fn create(&self, new: NewUser) -> Result<User, UserRepositoryError> {
        let model = user::ActiveModel {
            first_name: Set(new.first_name),
            last_name: Set(new.last_name),
            email: Set(new.email.as_str().to_owned()),
            password_hash: Set(new.password_hash.0),
            city_key: Set(anb_domain::user::city_key(&new.city)),
            city: Set(new.city),
            country: Set(new.country),
            created_at: Set(new.created_at),
            ..Default::default()
        };
        match model.insert(self.db.connection()).await {
            Ok(m) => Ok(to_user(m)?),
            Err(e) if is_unique_violation(&e) => Err(UserRepositoryError::DuplicateEmail),
            Err(e) => Err(db_error(&e).into()),
        }
    }

    async fn by_email(&self, email: &Email) -> Result<Option<User>, UserRepositoryError> {
        let found = user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .one(self.db.connection())
            .await
            .map_err(|e| db_error(&e))?;
        Ok(found.map(to_user).transpose()?)
    }

    async fn by_id(&self, id: UserId) -> Result<Option<User>, UserRepositoryError> {
        let found = user::Entity::find_by_id(id.0).one(self.db.connection()).await.map_err(|e| db_error(&e))?;
        Ok(found.map(to_user).transpose()?)
    }
}

/// Stores videos with SeaORM; writes each upload's job in the same transaction.
#[derive(Clone, Debug)]
pub struct SeaOrmVideoRepository {
    db: Database,
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
    })
}

/// Milliseconds since the Unix epoch, the unit of the jobs table.
pub(crate) fn millis(at: Timestamp) -> i64 {
    at.timestamp_millis()
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
        let mut update = video::Entity::update_many()
            .col_expr(video::Column::Status, Expr::value(to.as_str()))
            .filter(video::Column::Id.eq(id.0))
            .filter(video::Column::Status.is_in(from.iter().map(|s| s.as_str())));
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
        self.transition(self.db.connection(), id, &[VideoStatus::Uploaded, VideoStatus::Processing], VideoStatus::Processing, vec![]).await
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
        self.transition(self.db.connection(), id, &[VideoStatus::Processing], VideoStatus::Failed, extra).await
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

/// Records votes and ranks players with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaOrmVoteRepository {
    db: Database,
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
    async fn cast(&self, voter: UserId, video_id: VideoId) -> Result<(), VoteRepositoryError> {
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        // The count goes up first: on SQLite that takes the write lock at once,
        // on PostgreSQL it locks the video row; racing votes then queue here.
        let counted = video::Entity::update_many()
            .col_expr(video::Column::Votes, Expr::col(video::Column::Votes).add(1))
            .filter(video::Column::Id.eq(video_id.0))
            .filter(video::Column::Status.eq(VideoStatus::Processed.as_str()))
            .exec(&txn)
            .await
            .map_err(|e| db_error(&e))?;
        if counted.rows_affected == 0 {
            txn.rollback().await.map_err(|e| db_error(&e))?;
            return Err(VoteRepositoryError::VideoNotPublic);
        }
        let total = "UPDATE users SET public_votes = public_votes + 1 WHERE id = (SELECT owner_id FROM videos WHERE id = $1)";
        txn.execute(self.db.statement(total, vec![video_id.0.into()])).await.map_err(|e| db_error(&e))?;
        let vote = vote::ActiveModel { user_id: Set(voter.0), video_id: Set(video_id.0), created_at: Set(chrono::Utc::now()) };
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

#[cfg(test)]
mod tests {
    use super::dollar_to_question;

    #[test]
    fn placeholders_become_question_marks_for_sqlite() {
        assert_eq!(dollar_to_question("a = $1 AND b = $12 OR c = '$'"), "a = ? AND b = ? OR c = '$'");
    }
}
