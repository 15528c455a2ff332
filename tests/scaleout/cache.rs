//! The public pages' cache across web servers. Two servers share Redis: a
//! video turning public (on a third process's worker) and a vote (on either
//! server) show on both at once, although their entries live five minutes.
//! A server with its own in-process cache shows a vote made elsewhere
//! within its expiry, as docs/deployment.md states.

use std::time::{Duration, Instant};

use anb_e2e::{Clips, TestApp};
use anb_testkit::{Postgres, Redis};
use sea_orm::ConnectionTrait;

/// The votes of the first video of the public list and of the first
/// player of the ranking, as `app` shows them.
async fn votes_on(app: &TestApp) -> (Option<i64>, Option<i64>) {
    let (status, videos) = app.get("/api/public/videos", None).await;
    assert_eq!(status, 200, "{videos}");
    let (status, ranking) = app.get("/api/public/rankings", None).await;
    assert_eq!(status, 200, "{ranking}");
    (videos[0]["votes"].as_i64(), ranking[0]["votes"].as_i64())
}

#[tokio::test]
async fn a_change_shows_at_once_on_servers_sharing_redis_and_within_the_expiry_on_one_with_its_own_cache() {
    let clips = Clips::get().await;
    let database = Postgres::shared().fresh_database().await;
    let prefix = format!("anb-test-{}", uuid::Uuid::new_v4().simple());
    let common = [("ANB_DATABASE_URL", database.url.as_str()), ("ANB_JWT_SECRET", "page-cache-test-secret-of-32-chars-or-more")];
    let shared: Vec<_> = common
        .iter()
        .copied()
        .chain([("ANB_REDIS_URL", Redis::shared().url()), ("ANB_REDIS_PREFIX", &prefix), ("ANB_CACHE_TTL", "300")])
        .collect();
    let own: Vec<_> = common.iter().copied().chain([("ANB_CACHE", "memory"), ("ANB_CACHE_TTL", "3")]).collect();
    let (processing, a, b) = (TestApp::spawn(1, &shared).await, TestApp::spawn(0, &shared).await, TestApp::spawn(0, &own).await);
    let c = TestApp::spawn(0, &shared).await;

    // Empty pages, now cached for five minutes on the Redis servers.
    for app in [&a, &c, &b] {
        assert_eq!(votes_on(app).await, (None, None));
    }
    let token = processing.player("ana@example.com", "Ana", "Bogotá").await;
    let (status, body) = processing.upload(&token, Some("Triple"), Some(&clips.path("valid.mp4"))).await;
    assert_eq!(status, 201, "{body}");
    let (_, mine) = processing.get("/api/videos", Some(&token)).await;
    let id = mine[0]["video_id"].as_i64().expect("the upload is listed");
    assert_eq!(processing.wait_processed(&token, id, Duration::from_secs(120)).await["status"], "processed");
    for app in [&a, &c] {
        assert_eq!(votes_on(app).await, (Some(0), Some(0)), "the worker's invalidation reached every Redis server");
    }

    // Pages are served from the cache: a change made behind the servers'
    // backs (no invalidation) does not show.
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    db.execute_unprepared("UPDATE videos SET votes = 40; UPDATE users SET public_votes = 40").await.unwrap();
    assert_eq!(votes_on(&a).await, (Some(0), Some(0)), "the cached pages");

    // A vote on one server shows on the other at once.
    a.sign_up("fan@example.com", "Fan", "Cali").await;
    let fan = a.token("fan@example.com").await;
    let wait_own = Instant::now() + Duration::from_secs(3);
    let before = votes_on(&b).await;
    let (status, body) = a.call(reqwest::Method::POST, &format!("/api/public/videos/{id}/vote"), Some(&fan)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(votes_on(&c).await, (Some(41), Some(41)), "the vote, on the other server sharing Redis");
    assert_eq!(votes_on(&a).await, (Some(41), Some(41)));

    // The server with its own cache shows it once its entries expire.
    let voted = Instant::now();
    let stale = votes_on(&b).await;
    if Instant::now() < wait_own {
        assert_eq!(stale, before, "its own cache still holds the page it built before the vote");
    }
    loop {
        let seen = votes_on(&b).await;
        if seen == (Some(41), Some(41)) {
            break;
        }
        assert!(voted.elapsed() < Duration::from_secs(4), "still {seen:?} {:?} after the vote; the expiry is 3 s", voted.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("page cache: the vote showed at once on the servers sharing Redis, after {:?} on the one with its own cache", voted.elapsed());
}
