//! The database away for a while: the service says so (503 on readiness and
//! on requests, promptly) while its liveness stays 200 (the load balancer
//! keeps it), survives, and recovers by itself.

use std::time::{Duration, Instant};

use anb_e2e::TestApp;
use anb_testkit::Cluster;
use serde_json::json;

#[tokio::test]
async fn a_database_outage_answers_503_promptly_and_heals_by_itself() {
    let cluster = Cluster::create();
    let url = cluster.admin_url();
    let app = TestApp::spawn(1, &[("ANB_DATABASE_URL", url.as_str()), ("ANB_JWT_SECRET", "outage-test-secret-that-is-long-enough")]).await;
    let token = app.player("ana@example.com", "Ana", "Bogotá").await;
    assert_eq!(app.get("/api/health", None).await.0, 200);
    assert_eq!(app.get("/api/ready", None).await, (200, json!({"status": "ok", "checks": {"database": "ok", "storage": "ok"}})));
    // The public pages, read once before the outage (so this server has
    // a copy of each).
    let public = ["/api/public/videos", "/api/public/rankings", "/api/public/rankings?city=Bogota"];
    let mut before = Vec::new();
    for path in public {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        before.push(body);
    }

    cluster.stop();
    let down = Instant::now();
    // A readiness answer is reused for a second (`READY_REUSE`).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let asked = Instant::now();
    assert_eq!(app.get("/api/health", None).await.0, 200, "liveness checks no dependency");
    assert!(asked.elapsed() < Duration::from_secs(1), "at once: {:?}", asked.elapsed());
    let (status, body) = app.get("/api/ready", None).await;
    assert_eq!((status, &body["checks"]["database"]), (503, &json!("unreachable")), "{body}");
    assert!(asked.elapsed() < Duration::from_secs(4), "readiness answers within its 2 s per dependency: {:?}", asked.elapsed());
    // The pages (past the cache's expiry) are the last copies.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (path, before) in public.iter().zip(&before) {
        assert_eq!(&app.get(path, None).await, &(200, before.clone()), "{path}: the last copy, while the database is away");
    }
    // What needs the database answers 503, promptly, with when to try again.
    let vote = app.http.post(app.url("/api/public/videos/1/vote")).bearer_auth(&token);
    let login = app.http.post(app.url("/api/auth/login")).json(&json!({"email": "ana@example.com", "password": "S3cure!pass"}));
    let requests = [
        ("my videos", app.http.get(app.url("/api/videos")).bearer_auth(&token)),
        ("a page never read", app.http.get(app.url("/api/public/rankings?city=Cali"))),
        ("a vote", vote),
        ("a log-in", login),
    ];
    for (what, request) in requests {
        let asked = Instant::now();
        let response = request.send().await.unwrap();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = anb_e2e::json_of(response).await;
        assert_eq!(status, 503, "{what}: {body}");
        assert_eq!(body["status"], 503, "{what}: a problem body: {body}");
        assert_eq!(retry_after.as_deref(), Some("5"), "{what}: says when to try again");
        assert!(asked.elapsed() < Duration::from_secs(8), "{what} took {:?}", asked.elapsed());
    }
    let outage = down.elapsed();

    cluster.start();
    let back = Instant::now();
    loop {
        if app.get("/api/ready", None).await.0 == 200 && app.get("/api/videos", Some(&token)).await.0 == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(30), "not recovered 30 s after the database came back:\n{}", app.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = back.elapsed();
    assert!(app.token("ana@example.com").await.len() > 20, "log-in works again");
    assert!(app.log().contains("serving the last copy of public pages"), "the stale pages are logged:\n{}", app.log());
    assert!(!app.log().contains("panicked"));
    println!(
        "outage: public pages served from their last copy, every other request 503 with Retry-After while down ({:.1} s checked); \
         recovered {:.1} s after the database returned",
        outage.as_secs_f64(),
        recovered.as_secs_f64()
    );
}

#[tokio::test]
async fn both_binaries_start_while_the_database_is_away_and_wait_for_it() {
    let cluster = Cluster::create();
    let url = cluster.admin_url();
    let env = [("ANB_DATABASE_URL", url.as_str()), ("ANB_JWT_SECRET", "outage-test-secret-that-is-long-enough")];
    let mut app = TestApp::spawn(0, &env).await;
    let token = app.player("ana@example.com", "Ana", "Bogotá").await;
    cluster.stop();
    // Both start while the database is away; it comes back 6 s later.
    let worker = app.spawn_worker_with(&env);
    let comes_back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(6));
        cluster.start();
        cluster
    });
    let starting = Instant::now();
    app.restart().await;
    let started = starting.elapsed();
    let _cluster = comes_back.join().unwrap();
    assert!(started >= Duration::from_secs(5), "served only once the database was there: {started:?}");
    for (who, log) in [("anb-web", app.log()), ("anb-worker", worker.log())] {
        assert!(log.contains("database not reachable yet; trying again"), "{who} waited:\n{log}");
    }
    assert!(app.log().contains("connected to the database"), "{}", app.log());
    let clips = anb_e2e::Clips::get().await;
    let id = app.upload_video(&token, "Mi mejor tiro", &clips.path("valid.mp4")).await;
    let video = app.wait_processed(&token, id, Duration::from_secs(120)).await;
    assert_eq!(video["status"], "processed", "{video}\n{}", worker.log());
    assert!(worker.log().contains("connected to the database"), "{}", worker.log());
    println!(
        "anb-web served {:.1} s after it started with the database away (back after 6 s); anb-worker processed",
        started.as_secs_f64()
    );
}
