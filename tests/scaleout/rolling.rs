//! The rolling-deploy drill: two web servers behind HAProxy (the stand-in
//! for the ALB: health checks on `/api/health`, a failed connection tried
//! on the other server), under a steady load of public pages, a player's
//! own list and log-ins; each server in turn is replaced as a deploy does
//! (SIGTERM, its drain, the new process on the same port). Not one request
//! may fail.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anb_e2e::TestApp;
use anb_testkit::{Haproxy, Postgres};
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_every_web_server_under_load_fails_no_request() {
    let database = Postgres::shared().fresh_database().await;
    let ports = [free_port(), free_port()];
    let mut servers = Vec::new();
    for port in ports {
        let addr = format!("127.0.0.1:{port}");
        let env = [
            ("ANB_DATABASE_URL", database.url.as_str()),
            ("ANB_JWT_SECRET", "rolling-deploy-secret-that-is-long-enough"),
            ("ANB_HTTP_ADDR", addr.as_str()),
            ("ANB_BEHIND_PROXY", "true"),
        ];
        servers.push(TestApp::spawn(0, &env).await);
    }
    let proxy = Haproxy::start(&ports);
    let base = format!("http://127.0.0.1:{}", proxy.port());
    let token = servers[0].player("rolling@example.com", "Rolo", "Medellín").await;

    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let (running, served) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for n in 0..6 {
        let (base, token, failures, running, served) = (base.clone(), token.clone(), failures.clone(), running.clone(), served.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut i = 0usize;
            while running.load(Ordering::SeqCst) {
                i += 1;
                let request = match (n + i) % 3 {
                    0 => http.get(format!("{base}/api/public/rankings")),
                    1 => http.get(format!("{base}/api/videos")).bearer_auth(&token),
                    _ => http
                        .post(format!("{base}/api/auth/login"))
                        .json(&json!({"email": "rolling@example.com", "password": "S3cure!pass"})),
                };
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(response) => {
                        let failure = format!("{} {}", response.status(), response.text().await.unwrap_or_default());
                        failures.lock().unwrap().push(failure);
                    }
                    Err(error) => failures.lock().unwrap().push(format!("transport: {error}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for server in &mut servers {
        server.replace().await;
        // The load balancer takes it back after two good checks (0.5 s apart).
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    running.store(false, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let served = served.load(Ordering::SeqCst);
    assert!(served > 200, "the load ran: {served} answered");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(10)]
    );
    for server in &servers {
        // Each was really replaced: two processes served on its port.
        let starts = server.all_logs().lines().filter(|l| l.contains("serving") && l.contains("max_connections=")).count();
        assert!(starts >= 2, "started {starts} time(s):\n{}", server.all_logs());
    }
    println!(
        "rolling deploy: 2 web servers replaced one at a time behind HAProxy in {:.1} s; {served} requests (public pages, own \
         list, log-ins), 0 failed",
        started.elapsed().as_secs_f64()
    );
}
