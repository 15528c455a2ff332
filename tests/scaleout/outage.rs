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
    for (path, token) in [("/api/videos", Some(token.as_str())), ("/api/public/videos", None), ("/api/public/rankings", None)] {
        let asked = Instant::now();
        let (status, body) = app.get(path, token).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(asked.elapsed() < Duration::from_secs(8), "{path} took {:?}", asked.elapsed());
        assert_eq!(body["status"], 503, "a problem body: {body}");
    }
    let login = app.http.post(app.url("/api/auth/login")).json(&json!({"email": "ana@example.com", "password": "S3cure!pass"}));
    assert_eq!(login.send().await.unwrap().status(), 503);
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
    assert!(!app.log().contains("panicked"));
    println!(
        "outage: every request 503 while down ({:.1} s checked); recovered {:.1} s after the database returned",
        outage.as_secs_f64(),
        recovered.as_secs_f64()
    );
}
