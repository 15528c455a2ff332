//! The schema, as SeaORM migrations run at start-up. The same migrations
//! serve SQLite and PostgreSQL. Constraints enforce what must never break:
//! one account per e-mail, one vote per person and video.

use sea_orm_migration::prelude::*;

/// All migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(Initial),
            Box::new(PublicOrderIndex),
            Box::new(RankingTotals),
            Box::new(JobLeasesTable),
            Box::new(LoginFailuresTable),
            Box::new(VideoProgress),
            Box::new(JobLeaseTakes),
            Box::new(Trust),
            Box::new(FoldedEmails),
            Box::new(CounterWindows),
            Box::new(AccentlessCities),
        ]
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    FirstName,
    LastName,
    Email,
    PasswordHash,
    City,
    CityKey,
    Country,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Videos {
    Table,
    Id,
    CityKey,
    OwnerId,
    Title,
    Status,
    TaskId,
    OriginalKey,
    ProcessedKey,
    UploadedAt,
    ProcessedAt,
    FailureReason,
    Votes,
}

#[derive(DeriveIden)]
enum Votes {
    Table,
    UserId,
    VideoId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    TaskId,
    VideoId,
    State,
    VisibleAt,
    ReceiveCount,
    Receipt,
    LastError,
    CreatedAt,
}

struct Initial;

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m20261123_000001_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(ColumnDef::new(Users::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(Users::FirstName).text().not_null())
                .col(ColumnDef::new(Users::LastName).text().not_null())
                .col(ColumnDef::new(Users::Email).text().not_null().unique_key())
                .col(ColumnDef::new(Users::PasswordHash).text().not_null())
                .col(ColumnDef::new(Users::City).text().not_null())
                .col(ColumnDef::new(Users::CityKey).text().not_null())
                .col(ColumnDef::new(Users::Country).text().not_null())
                .col(ColumnDef::new(Users::CreatedAt).timestamp_with_time_zone().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("users_city_key").table(Users::Table).col(Users::CityKey).to_owned()).await?;

        m.create_table(
            Table::create()
                .table(Videos::Table)
                .col(ColumnDef::new(Videos::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(Videos::OwnerId).big_integer().not_null())
                .col(ColumnDef::new(Videos::Title).text().not_null())
                .col(ColumnDef::new(Videos::Status).string_len(16).not_null())
                .col(ColumnDef::new(Videos::TaskId).string_len(36).not_null().unique_key())
                .col(ColumnDef::new(Videos::OriginalKey).text().not_null())
                .col(ColumnDef::new(Videos::ProcessedKey).text())
                .col(ColumnDef::new(Videos::UploadedAt).timestamp_with_time_zone().not_null())
                .col(ColumnDef::new(Videos::ProcessedAt).timestamp_with_time_zone())
                .col(ColumnDef::new(Videos::FailureReason).text())
                .col(ColumnDef::new(Videos::Votes).big_integer().not_null().default(0))
                .foreign_key(
                    ForeignKey::create()
                        .from(Videos::Table, Videos::OwnerId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("videos_owner").table(Videos::Table).col(Videos::OwnerId).col(Videos::Id).to_owned()).await?;
        m.create_index(
            Index::create().name("videos_public").table(Videos::Table).col(Videos::Status).col(Videos::Votes).col(Videos::Id).to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Votes::Table)
                .col(ColumnDef::new(Votes::UserId).big_integer().not_null())
                .col(ColumnDef::new(Votes::VideoId).big_integer().not_null())
                .col(ColumnDef::new(Votes::CreatedAt).timestamp_with_time_zone().not_null())
                .primary_key(Index::create().col(Votes::UserId).col(Votes::VideoId))
                .foreign_key(
                    ForeignKey::create().from(Votes::Table, Votes::UserId).to(Users::Table, Users::Id).on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Votes::Table, Votes::VideoId)
                        .to(Videos::Table, Videos::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("votes_video").table(Votes::Table).col(Votes::VideoId).to_owned()).await?;

        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(ColumnDef::new(Jobs::TaskId).string_len(36).not_null().primary_key())
                .col(ColumnDef::new(Jobs::VideoId).big_integer().not_null())
                .col(ColumnDef::new(Jobs::State).string_len(16).not_null())
                .col(ColumnDef::new(Jobs::VisibleAt).big_integer().not_null())
                .col(ColumnDef::new(Jobs::ReceiveCount).integer().not_null().default(0))
                .col(ColumnDef::new(Jobs::Receipt).string_len(36))
                .col(ColumnDef::new(Jobs::LastError).text())
                .col(ColumnDef::new(Jobs::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("jobs_ready").table(Jobs::Table).col(Jobs::State).col(Jobs::VisibleAt).to_owned()).await?;
        m.create_index(Index::create().name("jobs_receipt").table(Jobs::Table).col(Jobs::Receipt).to_owned()).await?;
        m.create_index(Index::create().name("jobs_video").table(Jobs::Table).col(Jobs::VideoId).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [Jobs::Table.into_iden(), Votes::Table.into_iden(), Videos::Table.into_iden(), Users::Table.into_iden()] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// The public listing reads `status = processed ORDER BY votes DESC, id ASC`:
/// an index in exactly that order serves it, and its first page, without a
/// sort (the first index had `votes` ascending, which only serves
/// `id DESC` among equal votes backwards).
struct PublicOrderIndex;

impl MigrationName for PublicOrderIndex {
    fn name(&self) -> &str {
        "m20261124_000002_public_order_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PublicOrderIndex {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("videos_public").table(Videos::Table).to_owned()).await?;
        m.create_index(
            Index::create()
                .name("videos_public_order")
                .table(Videos::Table)
                .col(Videos::Status)
                .col((Videos::Votes, IndexOrder::Desc))
                .col(Videos::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("videos_public_order").table(Videos::Table).to_owned()).await?;
        m.create_index(
            Index::create().name("videos_public").table(Videos::Table).col(Videos::Status).col(Videos::Votes).col(Videos::Id).to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum Ranking {
    PublicVotes,
    FirstPublicVideo,
}

/// Rankings and the city listing read indexes instead of aggregating every
/// public video: each player keeps the sum of their public videos' votes
/// and the id of their first public video (the tie-breaker), and a public
/// video keeps its owner's city key. The vote's and the publication's
/// transactions keep them current.
struct RankingTotals;

impl MigrationName for RankingTotals {
    fn name(&self) -> &str {
        "m20261124_000003_ranking_totals"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for RankingTotals {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let add = |table: DynIden, column: ColumnDef| Table::alter().table(table).add_column(column).to_owned();
        m.alter_table(add(Users::Table.into_iden(), ColumnDef::new(Ranking::PublicVotes).big_integer().not_null().default(0).to_owned()))
            .await?;
        m.alter_table(add(Users::Table.into_iden(), ColumnDef::new(Ranking::FirstPublicVideo).big_integer().to_owned())).await?;
        m.alter_table(add(Videos::Table.into_iden(), ColumnDef::new(Videos::CityKey).text().to_owned())).await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE users SET \
               public_votes = (SELECT COALESCE(SUM(v.votes), 0) FROM videos v WHERE v.owner_id = users.id AND v.status = 'processed'), \
               first_public_video = (SELECT MIN(v.id) FROM videos v WHERE v.owner_id = users.id AND v.status = 'processed')",
        )
        .await?;
        db.execute_unprepared("UPDATE videos SET city_key = (SELECT u.city_key FROM users u WHERE u.id = videos.owner_id)").await?;
        m.create_index(
            Index::create()
                .name("users_ranking")
                .table(Users::Table)
                .col((Ranking::PublicVotes, IndexOrder::Desc))
                .col(Ranking::FirstPublicVideo)
                .col(Users::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("users_city_ranking")
                .table(Users::Table)
                .col(Users::CityKey)
                .col((Ranking::PublicVotes, IndexOrder::Desc))
                .col(Ranking::FirstPublicVideo)
                .col(Users::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("videos_city_public")
                .table(Videos::Table)
                .col(Videos::CityKey)
                .col(Videos::Status)
                .col((Videos::Votes, IndexOrder::Desc))
                .col(Videos::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (index, table) in [
            ("videos_city_public", Videos::Table.into_iden()),
            ("users_city_ranking", Users::Table.into_iden()),
            ("users_ranking", Users::Table.into_iden()),
        ] {
            m.drop_index(Index::drop().name(index).table(table).to_owned()).await?;
        }
        m.alter_table(Table::alter().table(Videos::Table).drop_column(Videos::CityKey).to_owned()).await?;
        m.alter_table(Table::alter().table(Users::Table).drop_column(Ranking::FirstPublicVideo).to_owned()).await?;
        m.alter_table(Table::alter().table(Users::Table).drop_column(Ranking::PublicVotes).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum JobLeases {
    Table,
    VideoId,
    Receipt,
    UntilMs,
}

/// Which delivery is processing a video, and until when (epoch ms): with an
/// external queue a job can arrive twice, and the second copy must wait
/// while a live worker holds the first (see `LeasedQueue`).
struct JobLeasesTable;

impl MigrationName for JobLeasesTable {
    fn name(&self) -> &str {
        "m20261124_000004_job_leases"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for JobLeasesTable {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(JobLeases::Table)
                .col(ColumnDef::new(JobLeases::VideoId).big_integer().not_null().primary_key())
                .col(ColumnDef::new(JobLeases::Receipt).text().not_null())
                .col(ColumnDef::new(JobLeases::UntilMs).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("job_leases_receipt").table(JobLeases::Table).col(JobLeases::Receipt).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(JobLeases::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
    CounterKey,
    Failures,
    SinceMs,
}

/// Failed log-ins per key (account and address, address, account), counted
/// in the database so that every web server sees them (see `anb_application::login`).
struct LoginFailuresTable;

impl MigrationName for LoginFailuresTable {
    fn name(&self) -> &str {
        "m20261126_000005_login_failures"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for LoginFailuresTable {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LoginFailures::Table)
                .col(ColumnDef::new(LoginFailures::CounterKey).text().not_null().primary_key())
                .col(ColumnDef::new(LoginFailures::Failures).integer().not_null())
                .col(ColumnDef::new(LoginFailures::SinceMs).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("login_failures_since").table(LoginFailures::Table).col(LoginFailures::SinceMs).to_owned())
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LoginFailures::Table).to_owned()).await
    }
}

/// How far processing has got (0–100), written by the worker about once a
/// second while a video is `processing`.
struct VideoProgress;

impl MigrationName for VideoProgress {
    fn name(&self) -> &str {
        "m20261126_000006_video_progress"
    }
}

#[derive(DeriveIden)]
enum VideosProgress {
    #[sea_orm(iden = "videos")]
    Table,
    Progress,
}

#[async_trait::async_trait]
impl MigrationTrait for VideoProgress {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(VideosProgress::Table)
                .add_column(ColumnDef::new(VideosProgress::Progress).small_integer().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(VideosProgress::Table).drop_column(VideosProgress::Progress).to_owned()).await
    }
}

/// How many times a video's job has been taken by a worker, kept across
/// releases, so that a queue that does not count redeliveries itself
/// (Kafka) still bounds the attempts (see `LeasedQueue`).
struct JobLeaseTakes;

impl MigrationName for JobLeaseTakes {
    fn name(&self) -> &str {
        "m20261126_000007_job_lease_takes"
    }
}

#[derive(DeriveIden)]
enum JobLeasesTakes {
    #[sea_orm(iden = "job_leases")]
    Table,
    Takes,
}

#[async_trait::async_trait]
impl MigrationTrait for JobLeaseTakes {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(JobLeasesTakes::Table)
                .add_column(ColumnDef::new(JobLeasesTakes::Takes).integer().not_null().default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(JobLeasesTakes::Table).drop_column(JobLeasesTakes::Takes).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum UsersTrust {
    #[sea_orm(iden = "users")]
    Table,
    EmailAddress,
    EmailVerifiedAt,
    SignupNetwork,
}

#[derive(DeriveIden)]
enum VotesTrust {
    #[sea_orm(iden = "votes")]
    Table,
    Network,
}

#[derive(DeriveIden)]
enum EmailTokens {
    Table,
    TokenHash,
    UserId,
    ExpiresMs,
    UsedMs,
}

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Id,
    UserId,
    Kind,
    DueMs,
    Attempts,
    LastError,
    CreatedMs,
}

/// What keeps the ranking honest: verified addresses (the tokens of their
/// links, stored as hashes, and the outbox of messages), and the network
/// pseudonyms of accounts and votes for the vote audit.
struct Trust;

impl MigrationName for Trust {
    fn name(&self) -> &str {
        "m20261207_000008_trust"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Trust {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            ColumnDef::new(UsersTrust::EmailAddress).text().null().to_owned(),
            ColumnDef::new(UsersTrust::EmailVerifiedAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(UsersTrust::SignupNetwork).text().null().to_owned(),
        ] {
            m.alter_table(Table::alter().table(UsersTrust::Table).add_column(column).to_owned()).await?;
        }
        m.alter_table(Table::alter().table(VotesTrust::Table).add_column(ColumnDef::new(VotesTrust::Network).text().null()).to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table(EmailTokens::Table)
                .col(ColumnDef::new(EmailTokens::TokenHash).text().not_null().primary_key())
                .col(ColumnDef::new(EmailTokens::UserId).big_integer().not_null())
                .col(ColumnDef::new(EmailTokens::ExpiresMs).big_integer().not_null())
                .col(ColumnDef::new(EmailTokens::UsedMs).big_integer().null())
                .foreign_key(
                    ForeignKey::create()
                        .from(EmailTokens::Table, EmailTokens::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("email_tokens_user").table(EmailTokens::Table).col(EmailTokens::UserId).to_owned()).await?;
        m.create_table(
            Table::create()
                .table(MailOutbox::Table)
                .col(ColumnDef::new(MailOutbox::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(MailOutbox::UserId).big_integer().not_null())
                .col(ColumnDef::new(MailOutbox::Kind).string_len(32).not_null())
                .col(ColumnDef::new(MailOutbox::DueMs).big_integer().not_null())
                .col(ColumnDef::new(MailOutbox::Attempts).integer().not_null().default(0))
                .col(ColumnDef::new(MailOutbox::LastError).text().null())
                .col(ColumnDef::new(MailOutbox::CreatedMs).big_integer().not_null())
                .foreign_key(
                    ForeignKey::create()
                        .from(MailOutbox::Table, MailOutbox::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("mail_outbox_due").table(MailOutbox::Table).col(MailOutbox::DueMs).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MailOutbox::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(EmailTokens::Table).to_owned()).await?;
        m.alter_table(Table::alter().table(VotesTrust::Table).drop_column(VotesTrust::Network).to_owned()).await?;
        for column in [UsersTrust::SignupNetwork, UsersTrust::EmailVerifiedAt, UsersTrust::EmailAddress] {
            m.alter_table(Table::alter().table(UsersTrust::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

/// Stored addresses normalised anew with full case folding (`anb_domain::Email`
/// once only lower-cased, so `ας@…` and `ασ@…` could be two accounts). An
/// address whose folded form another account already holds is left as it
/// is: that account can no longer log in by its address (log-ins find the
/// other one), so the log names both accounts for an operator to merge or
/// remove.
struct FoldedEmails;

impl MigrationName for FoldedEmails {
    fn name(&self) -> &str {
        "m20261207_000009_folded_emails"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for FoldedEmails {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = db.get_database_backend();
        let rows = db.query_all(sea_orm::Statement::from_string(backend, "SELECT id, email FROM users")).await?;
        let mut stored = std::collections::HashMap::new();
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, email): (i64, String) = (row.try_get("", "id")?, row.try_get("", "email")?);
            stored.insert(email.clone(), id);
            users.push((id, email));
        }
        let update = match backend {
            sea_orm::DatabaseBackend::Postgres => "UPDATE users SET email = $1 WHERE id = $2",
            _ => "UPDATE users SET email = ? WHERE id = ?",
        };
        for (id, email) in users {
            let Ok(folded) = anb_domain::Email::parse(&email) else { continue };
            let folded = folded.as_str().to_owned();
            if folded == email {
                continue;
            }
            if let Some(&other) = stored.get(&folded) {
                tracing::warn!(user = id, other_user = other, "an account's address folds to another account's: left as it is");
                continue;
            }
            db.execute(sea_orm::Statement::from_sql_and_values(backend, update, [folded.clone().into(), id.into()])).await?;
            stored.insert(folded, id);
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

#[derive(DeriveIden)]
enum CounterEnds {
    #[sea_orm(iden = "login_failures")]
    Table,
    UntilMs,
}

/// The end of each counter's own window: log-in failures (`ANB_LOGIN_LOCKOUT`),
/// sign-ups and requests for a new link (an hour) share the table, and the
/// sweep must not end one kind's windows by another's length.
struct CounterWindows;

impl MigrationName for CounterWindows {
    fn name(&self) -> &str {
        "m20261207_000010_counter_windows"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CounterWindows {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(CounterEnds::Table)
                .add_column(ColumnDef::new(CounterEnds::UntilMs).big_integer().not_null().default(0))
                .to_owned(),
        )
        .await?;
        // Every row so far counted failed log-ins, over the default lockout.
        m.get_connection().execute_unprepared("UPDATE login_failures SET until_ms = since_ms + 300000").await?;
        m.create_index(Index::create().name("login_failures_until").table(CounterEnds::Table).col(CounterEnds::UntilMs).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("login_failures_until").table(CounterEnds::Table).to_owned()).await?;
        m.alter_table(Table::alter().table(CounterEnds::Table).drop_column(CounterEnds::UntilMs).to_owned()).await
    }
}

/// City keys computed anew (`anb_domain::user::city_key` now also drops
/// accents and normalises Unicode), for players and for their videos.
struct AccentlessCities;

impl MigrationName for AccentlessCities {
    fn name(&self) -> &str {
        "m20261207_000011_accentless_cities"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AccentlessCities {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = db.get_database_backend();
        let rows = db.query_all(sea_orm::Statement::from_string(backend, "SELECT id, city, city_key FROM users")).await?;
        let (users, videos) = match backend {
            sea_orm::DatabaseBackend::Postgres => {
                ("UPDATE users SET city_key = $1 WHERE id = $2", "UPDATE videos SET city_key = $1 WHERE owner_id = $2")
            }
            _ => ("UPDATE users SET city_key = ? WHERE id = ?", "UPDATE videos SET city_key = ? WHERE owner_id = ?"),
        };
        for row in rows {
            let (id, city, stored): (i64, String, String) =
                (row.try_get("", "id")?, row.try_get("", "city")?, row.try_get("", "city_key")?);
            let key = anb_domain::user::city_key(&city);
            if key == stored {
                continue;
            }
            for update in [users, videos] {
                db.execute(sea_orm::Statement::from_sql_and_values(backend, update, [key.clone().into(), id.into()])).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
