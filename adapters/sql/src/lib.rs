//! `anb-sql`: the SeaORM adapters (SQLite for one machine, PostgreSQL for
//! scale-out), one code path for both; where the SQL dialects differ,
//! [`Database::backend`] picks the spelling.
//!
//! | module | adapters |
//! |---|---|
//! | [`users`] | [`SeaOrmUserRepository`] |
//! | [`videos`] | [`SeaOrmVideoRepository`] (status moves, public listing) |
//! | [`votes`] | [`SeaOrmVoteRepository`] (votes, rankings) |
//! | [`login`] | [`SeaOrmCounters`], failed log-ins and sign-ups counted where every web server sees them |
//! | [`verifications`] | [`SeaOrmVerifications`], the mail outbox and the verification tokens |
//! | [`audit`] | [`SeaOrmVoteAudit`], ballot stuffing found and voided |
//! | [`queue`] | [`SeaOrmJobQueue`], the job queue in the `jobs` table |
//! | [`lease`] | [`LeasedQueue`]: one live delivery per video over an at-least-once queue |
//! | [`relay`] | [`OutboxRelay`], from the `jobs` table to an external queue |

pub mod audit;
mod entities;
pub mod lease;
pub mod login;
mod migration;
pub mod queue;
pub mod relay;
pub mod users;
pub mod verifications;
pub mod videos;
pub mod votes;

use std::time::Duration;

use anb_domain::{BackendError, CityFilter, Page, Timestamp};
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, SqlErr, Statement, TransactionTrait, Value};
use sea_orm_migration::MigratorTrait;

pub use audit::SeaOrmVoteAudit;
pub use entities::{job, user, video, vote};
pub use lease::LeasedQueue;
pub use login::SeaOrmCounters;
pub use migration::Migrator;
pub use queue::SeaOrmJobQueue;
pub use relay::OutboxRelay;
pub use users::SeaOrmUserRepository;
pub use verifications::SeaOrmVerifications;
pub use videos::SeaOrmVideoRepository;
pub use votes::SeaOrmVoteRepository;

/// Key of the PostgreSQL advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x0041_4e42_5f4d_4947; // "ANB_MIG"

/// A connection pool to the database, migrated to the current schema.
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
    /// Counts the jobs made visible in this process, so that a worker of
    /// the same process waiting on the `jobs` table wakes at once
    /// ([`SeaOrmJobQueue::receive`]); other processes see them on their
    /// next look.
    jobs_added: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
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
        Ok(Self { conn, jobs_added: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)) })
    }

    /// The pool, for adapters built on it.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Which SQL dialect this database speaks.
    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
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

    /// Counters (failed log-ins, sign-ups) in this database.
    pub fn counters(&self) -> SeaOrmCounters {
        SeaOrmCounters { db: self.clone() }
    }

    /// Tells the workers of this process waiting on the `jobs` table that a
    /// job is visible (after the transaction that made it so committed).
    pub(crate) fn job_added(&self) {
        self.jobs_added.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A watch on [`Database::job_added`]: what changes after this call wakes it.
    pub(crate) fn watch_jobs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.jobs_added.subscribe()
    }

    /// The mail outbox and verification tokens in this database.
    pub fn verifications(&self) -> SeaOrmVerifications {
        SeaOrmVerifications { db: self.clone() }
    }

    /// The vote audit on this database.
    pub fn vote_audit(&self) -> SeaOrmVoteAudit {
        SeaOrmVoteAudit { db: self.clone() }
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

/// The database answers: the process can serve.
#[async_trait::async_trait]
impl anb_domain::ports::HealthCheck for Database {
    async fn check(&self) -> Result<(), BackendError> {
        self.conn.ping().await.map_err(|e| db_error(&e))
    }
}

/// Maps a database error to a [`BackendError`]: connection trouble is
/// `Unavailable` (the caller may retry), anything else `Internal`.
pub(crate) fn db_error(error: &DbErr) -> BackendError {
    match error {
        // Opening a connection failed for a reason waiting does not fix: the
        // credentials refused (28P01, 28000), no such database (3D000), a
        // URL or option that does not parse.
        DbErr::Conn(sea_orm::RuntimeErr::SqlxError(inner)) if !connection_trouble(inner) => BackendError::internal(error.to_string()),
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
        // shutdown or starting up (57P…), too many connections (53300), or
        // read-only for now (25006: a standby not yet promoted, reached
        // through a name that has not flipped yet).
        DbErr::Query(sea_orm::RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(e)))
        | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(e)))
            if e.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300" || c == "25006") =>
        {
            BackendError::unavailable(error.to_string())
        }
        _ => BackendError::internal(error.to_string()),
    }
}

/// Whether a failure to open a connection may pass by itself: the server
/// not reached, not accepting connections yet or any more, out of
/// connections, or read-only for now.
fn connection_trouble(error: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match error {
        Error::Io(_) | Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed | Error::Protocol(_) => true,
        Error::Database(e) => e.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300" || c == "25006"),
        _ => false,
    }
}

pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Milliseconds since the Unix epoch, the unit of the jobs table.
pub(crate) fn millis(at: Timestamp) -> i64 {
    at.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::dollar_to_question;

    #[test]
    fn placeholders_become_question_marks_for_sqlite() {
        assert_eq!(dollar_to_question("a = $1 AND b = $12 OR c = '$'"), "a = ? AND b = ? OR c = '$'");
    }
}
