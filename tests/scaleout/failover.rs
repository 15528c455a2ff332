//! The failover drill: a PostgreSQL primary and a hot standby (synchronous
//! streaming replication, as RDS Multi-AZ keeps it), reached through a TCP
//! switch that plays RDS's DNS flip. Under a steady load of public pages,
//! the player's own list, votes and uploads, the primary is stopped at
//! once, the standby promoted and the switch pointed at it. The web server
//! (with its embedded worker) must ride through without a restart: errors
//! only in the failover window, no vote answered 200 lost, every upload
//! answered 201 processed in the end. Prints the window's length.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anb_e2e::{Clips, TestApp};
use anb_testkit::{Cluster, TcpSwitch};
use sea_orm::{ConnectionTrait, Statement};

/// What one request of the load met.
#[derive(Debug, Clone)]
struct Outcome {
    at: Instant,
    what: &'static str,
    status: u16,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.status == 0 || self.status >= 500
    }
}

type Log = Arc<Mutex<Vec<Outcome>>>;

/// From the primary's stop to the switch to the promoted standby (RDS
/// documents 60-120 s for a Multi-AZ failover; the service's part is what
/// follows the switch, so a shorter stand-in shows the same).
const DETECTION: Duration = Duration::from_secs(8);

fn note(log: &Log, what: &'static str, status: u16) {
    log.lock().unwrap().push(Outcome { at: Instant::now(), what, status });
}

async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request.timeout(Duration::from_secs(20)).send().await.map_or(0, |r| r.status().as_u16())
}

/// The text column of every row `sql` returns.
async fn texts(url: &str, sql: &str) -> Vec<String> {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let rows = db.query_all(Statement::from_string(db.get_database_backend(), sql.to_owned())).await.unwrap();
    db.close().await.unwrap();
    rows.iter().map(|row| row.try_get_by_index(0).unwrap()).collect()
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let row = db.query_one(Statement::from_string(db.get_database_backend(), sql.to_owned())).await.unwrap().unwrap();
    let value: i64 = row.try_get_by_index(0).unwrap();
    db.close().await.unwrap();
    value
}

#[tokio::test]
async fn a_database_failover_under_load_loses_nothing_and_heals_within_30_s() {
    let clips = Clips::get().await;
    let primary = Cluster::create();
    let standby = Cluster::standby_of(&primary);
    // Synchronous: a commit answers once the standby has it (RDS Multi-AZ).
    let admin = sea_orm::Database::connect(primary.admin_url()).await.unwrap();
    admin.execute_unprepared("ALTER SYSTEM SET synchronous_standby_names = '*'").await.unwrap();
    admin.execute_unprepared("SELECT pg_reload_conf()").await.unwrap();
    let started = Instant::now();
    while scalar(&primary.admin_url(), "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").await != 1 {
        assert!(started.elapsed() < Duration::from_secs(30), "the standby never became synchronous");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    admin.close().await.unwrap();
    let switch = TcpSwitch::start(([127, 0, 0, 1], primary.port()).into()).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", switch.port());
    let app =
        TestApp::spawn(1, &[("ANB_DATABASE_URL", url.as_str()), ("ANB_JWT_SECRET", "failover-drill-secret-that-is-long-enough")]).await;
    let pid = app.pid();

    // A public video to vote for, and the voters.
    let player = app.player("drill@example.com", "Dora", "Bogotá").await;
    let video = app.upload_video(&player, "Antes", &clips.path("light.mp4")).await;
    assert_eq!(app.wait_processed(&player, video, Duration::from_secs(120)).await["status"], "processed");
    let mut voters = Vec::new();
    for n in 0..40 {
        let email = format!("fan{n}@example.com");
        voters.push((email.clone(), app.player(&email, "Fan", "Cali").await));
    }

    let log: Log = Arc::default();
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut load = Vec::new();
    // Readers: a public page (served from its last copy while the database
    // is away) and the player's own list (which needs the database).
    for (what, path, token) in [("public", "/api/public/rankings", None), ("own list", "/api/videos", Some(player.clone()))] {
        let (app_http, url, log, running) = (app.http.clone(), app.url(path), log.clone(), running.clone());
        load.push(tokio::spawn(async move {
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                let mut request = app_http.get(&url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                note(&log, what, status_of(request).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // Votes: each voter once; a refused vote is tried again later.
    let voted = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let (http, url, log, running, voted) =
            (app.http.clone(), app.url(&format!("/api/public/videos/{video}/vote")), log.clone(), running.clone(), voted.clone());
        let mut queue: std::collections::VecDeque<_> = voters.into_iter().collect();
        load.push(tokio::spawn(async move {
            while let Some((email, token)) = queue.pop_front() {
                if !running.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let status = status_of(http.post(&url).bearer_auth(&token)).await;
                note(&log, "vote", status);
                match status {
                    200 => voted.lock().unwrap().push(email),
                    // Counted before its answer was lost: it stands.
                    400 => {}
                    _ => queue.push_back((email, token)),
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        }));
    }
    // Uploads, one every 3 s.
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (http, url, log, running, accepted, token) =
            (app.http.clone(), app.url("/api/videos/upload"), log.clone(), running.clone(), accepted.clone(), player.clone());
        let bytes = std::fs::read(clips.path("light.mp4")).unwrap();
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let file = reqwest::multipart::Part::bytes(bytes.clone()).file_name("clip.mp4").mime_str("video/mp4").unwrap();
                let form = reqwest::multipart::Form::new().text("title", format!("Jugada {n}")).part("video_file", file);
                let status = status_of(http.post(&url).bearer_auth(&token).multipart(form)).await;
                note(&log, "upload", status);
                if status == 201 {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(5)).await;
    let stopped = Instant::now();
    primary.stop();
    // RDS takes a while to notice, promote and flip its name: the service
    // meets a database that does not answer meanwhile.
    tokio::time::sleep(DETECTION).await;
    standby.promote();
    switch.switch_to(([127, 0, 0, 1], standby.port()).into());
    let switched = Instant::now();
    tokio::time::sleep(Duration::from_secs(35)).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }

    let outcomes = log.lock().unwrap().clone();
    let before: Vec<_> = outcomes.iter().filter(|o| o.at < stopped && o.failed()).collect();
    assert!(before.is_empty(), "errors before the failover: {before:?}");
    let failed: Vec<_> = outcomes.iter().filter(|o| o.failed()).collect();
    let last_error = failed.iter().map(|o| o.at).max().unwrap_or(switched);
    let window = last_error.saturating_duration_since(switched);
    for what in ["public", "own list", "vote", "upload"] {
        let ok_after = outcomes.iter().any(|o| o.what == what && o.at > last_error && (200..300).contains(&o.status));
        assert!(ok_after, "{what}: answered again after the window\n{}", app.log());
    }
    assert!(window < Duration::from_secs(30), "errors went on {window:?} after the switch: {failed:?}");
    let public_failed = outcomes.iter().filter(|o| o.what == "public" && o.failed()).count();
    assert_eq!(public_failed, 0, "the public pages are served from their last copy throughout");
    let down: Vec<_> = outcomes.iter().filter(|o| o.at > stopped + Duration::from_secs(1) && o.at < switched).collect();
    assert!(down.iter().any(|o| o.what == "own list" && o.status == 503), "the database was away for the service: {down:?}");
    assert!(
        failed.iter().all(|o| o.status == 503),
        "while away, a 503 (with Retry-After), no other error: {:?}",
        failed.iter().filter(|o| o.status != 503).collect::<Vec<_>>()
    );

    // No restart; nothing answered as done is lost.
    assert_eq!(app.pid(), pid);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "anb-web still runs");
    let standby_url = standby.admin_url();
    let voted = voted.lock().unwrap().clone();
    let kept =
        texts(&standby_url, &format!("SELECT u.email FROM votes v JOIN users u ON u.id = v.user_id WHERE v.video_id = {video}")).await;
    for email in &voted {
        assert_eq!(kept.iter().filter(|k| *k == email).count(), 1, "the vote of {email}, answered 200, is there once");
    }
    let counted = scalar(&standby_url, &format!("SELECT votes FROM videos WHERE id = {video}")).await;
    let rows = scalar(&standby_url, &format!("SELECT count(*) FROM votes WHERE video_id = {video}")).await;
    assert_eq!(counted, rows, "the video's count matches its votes");
    let accepted = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let (_, list) = app.get("/api/videos", Some(&player)).await;
    let ids: Vec<i64> = list.as_array().unwrap().iter().map(|v| v["video_id"].as_i64().unwrap()).collect();
    // An upload committed whose answer was lost (a 503 after the commit, a
    // cut connection) may have its video too, as a vote may.
    let unanswered = outcomes.iter().filter(|o| o.what == "upload" && o.failed()).count();
    assert!(
        (accepted + 1..=accepted + 1 + unanswered).contains(&ids.len()),
        "every upload answered 201 has its video ({accepted} + the first), at most {unanswered} more: {list}"
    );
    for id in ids {
        let video = app.wait_processed(&player, id, Duration::from_secs(240)).await;
        assert_eq!(video["status"], "processed", "{video}\n{}", app.log());
    }
    let count = |what: &str| outcomes.iter().filter(|o| o.what == what).count();
    let errors = |what: &str| outcomes.iter().filter(|o| o.what == what && o.failed()).count();
    println!(
        "failover: database away {:.1} s; errors until {:.1} s after the switch; requests (errors): public pages {} ({}), \
         own list {} ({}), votes {} ({}), uploads {} ({}); {} votes answered 200 all kept; {} uploads answered 201 all processed; \
         no restart",
        switched.duration_since(stopped).as_secs_f64(),
        window.as_secs_f64(),
        count("public"),
        errors("public"),
        count("own list"),
        errors("own list"),
        count("vote"),
        errors("vote"),
        count("upload"),
        errors("upload"),
        voted.len(),
        accepted
    );
}
