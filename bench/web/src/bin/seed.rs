//! `anb-bench-seed`: loads a data set of the web benchmarks into a database
//! (SQLite or PostgreSQL), after migrating it as `anb-web` would. Every
//! video is processed (public); the vote counts and the rankings' columns
//! are computed from the votes, as the vote transactions keep them.
//!
//! ```sh
//! anb-bench-seed --database-url 'sqlite:///tmp/bench/anb.db?mode=rwc' --size small
//! ```

use std::time::Instant;

use anb_auth::Argon2Hasher;
use anb_bench_web::{DataSet, PASSWORD, Size, city, email, owner, voted};
use anb_domain::Password;
use anb_domain::ports::PasswordHasher;
use anb_sql::{Database, user, video, vote};
use anyhow::Context;
use clap::Parser;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

/// Loads a data set for the web benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// The database (migrated first); it should hold no users yet.
    #[arg(long, env = "ANB_DATABASE_URL")]
    database_url: String,
    /// Which data set.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    size: Size,
}

/// Rows a statement inserts (under SQLite's 32,766 bound variables).
const CHUNK: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = args.size.data_set();
    let started = Instant::now();
    let database = Database::connect(&args.database_url, 4).await.context("connecting to the database")?;
    let db = database.connection();
    let hash = Argon2Hasher.hash(&Password::new(PASSWORD).expect("a valid password")).await?.0;
    let now = chrono::Utc::now();

    insert(
        db,
        (1..=data.players).map(|n| user::ActiveModel {
            first_name: Set(format!("Fan{n}")),
            last_name: Set("Bench".into()),
            email: Set(email(n)),
            password_hash: Set(hash.clone()),
            city: Set(city(&data, n)),
            city_key: Set(city(&data, n).to_lowercase()),
            country: Set("Colombia".into()),
            created_at: Set(now),
            ..Default::default()
        }),
    )
    .await?;
    insert(
        db,
        (1..=data.videos).map(|v| {
            let task = uuid::Uuid::new_v4();
            video::ActiveModel {
                owner_id: Set(owner(&data, v)),
                title: Set(format!("Jugada {v}")),
                status: Set("processed".into()),
                task_id: Set(task.to_string()),
                original_key: Set(format!("uploaded/{task}.mp4")),
                processed_key: Set(Some(format!("processed/{task}.mp4"))),
                uploaded_at: Set(now),
                processed_at: Set(Some(now)),
                votes: Set(0),
                ..Default::default()
            }
        }),
    )
    .await?;
    insert(
        db,
        (1..=data.players).flat_map(|u| {
            voted(&data, u).into_iter().map(move |v| vote::ActiveModel {
                user_id: Set(u),
                video_id: Set(v),
                created_at: Set(now),
                network: Set(None),
            })
        }),
    )
    .await?;
    derive(db).await?;
    let DataSet { players, cities, videos, votes } = data;
    println!(
        "seeded {players} players in {cities} cities, {videos} processed videos, {votes} votes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Inserts `rows` in statements of [`CHUNK`] rows.
async fn insert<A, I>(db: &sea_orm::DatabaseConnection, rows: I) -> anyhow::Result<()>
where
    A: sea_orm::ActiveModelTrait,
    <A::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
    I: IntoIterator<Item = A>,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(CHUNK).collect();
        <A::Entity as EntityTrait>::insert_many(chunk).exec_without_returning(db).await.context("inserting")?;
    }
    Ok(())
}

/// What the vote and publication transactions keep current, computed at once.
async fn derive(db: &sea_orm::DatabaseConnection) -> anyhow::Result<()> {
    for statement in [
        "UPDATE videos SET votes = (SELECT COUNT(*) FROM votes WHERE votes.video_id = videos.id), \
         city_key = (SELECT city_key FROM users WHERE users.id = videos.owner_id)",
        "UPDATE users SET public_votes = COALESCE((SELECT SUM(votes) FROM videos WHERE videos.owner_id = users.id AND \
         videos.status = 'processed'), 0), first_public_video = (SELECT MIN(id) FROM videos WHERE videos.owner_id = users.id AND \
         videos.status = 'processed')",
        "ANALYZE",
    ] {
        db.execute_unprepared(statement).await.with_context(|| format!("running {statement}"))?;
    }
    Ok(())
}
