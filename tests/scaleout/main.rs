//! The AWS shape on loopback: two `anb-web` (no embedded workers) and two
//! `anb-worker` processes over one PostgreSQL database, S3 and SQS (moto),
//! provisioned by `anb-worker provision`. Uploads spread over both web
//! servers are processed exactly once; a worker killed mid-transcode, a
//! stream that cannot be decoded and a web server killed right after its
//! commit lose nothing. The same again on RabbitMQ and Kafka in [`brokers`].

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anb_aws::SqsQueue;
use anb_e2e::{Clips, TestApp, Worker, binary, video_ids_logged};
use anb_testkit::{Moto, Postgres};
use common::{counts, logs, upload};

mod brokers;
mod cache;
mod common;
mod login_limits;
mod rabbitmq;
mod secrets;
mod trust;

/// Settings every process of the cluster shares.
struct Cluster {
    env: Vec<(String, String)>,
    dead_letter_url: String,
    _database: anb_testkit::TestDatabase,
}

impl Cluster {
    /// A fresh database, bucket and queues, made by `anb-worker provision`.
    async fn provision() -> Self {
        let database = Postgres::shared().fresh_database().await;
        let moto = Moto::shared();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let mut env: Vec<(String, String)> = moto.aws_env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        for (key, value) in [
            ("ANB_DATABASE_URL", database.url.clone()),
            ("ANB_JWT_SECRET", "scale-out-test-secret-of-at-least-32-chars".to_owned()),
            ("ANB_STORAGE", "s3".to_owned()),
            ("ANB_S3_BUCKET", format!("anb-{suffix}")),
            ("ANB_QUEUE", "sqs".to_owned()),
            // The job visibility is the default: a killed worker's job must
            // start again within 30 s as deployed.
            ("ANB_RETRY_DELAY", "1".to_owned()),
            ("ANB_MAX_ATTEMPTS", "3".to_owned()),
        ] {
            env.push((key.to_owned(), value));
        }
        let output = Command::new(binary("anb-worker"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["provision", "--queue-name", &format!("anb-{suffix}")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "provision failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        let printed: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
        env.push(("ANB_SQS_QUEUE_URL".into(), printed["ANB_SQS_QUEUE_URL"].to_owned()));
        assert_eq!(printed["ANB_S3_BUCKET"], format!("anb-{suffix}"));
        Self { env, dead_letter_url: printed["ANB_SQS_DEAD_LETTER_URL"].to_owned(), _database: database }
    }

    async fn web(&self, extra: &[(&str, &str)]) -> TestApp {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.extend_from_slice(extra);
        TestApp::spawn(0, &env).await
    }

    /// An `anb-worker` of one job at a time, whatever the machine's cores.
    fn worker(&self) -> Worker {
        let mut env = self.env.clone();
        env.push(("ANB_WORKERS".to_owned(), "1".to_owned()));
        Worker::spawn(&env)
    }
}

#[tokio::test]
async fn two_web_servers_and_two_workers_process_each_upload_once_and_recover_from_crashes() {
    let clips = Clips::get().await;
    let cluster = Cluster::provision().await;
    let webs = [cluster.web(&[]).await, cluster.web(&[]).await];
    let mut workers = vec![cluster.worker(), cluster.worker()];

    // Accounts made on one web server work on the other: one shared database and key.
    let mut players = Vec::new();
    for i in 0..5 {
        let email = format!("p{i}@example.com");
        webs[i % 2].sign_up(&email, &format!("Player{i}"), "Bogotá").await;
        players.push(webs[(i + 1) % 2].token(&email).await);
    }

    // Ten valid uploads spread over both servers, and one whose stream is broken.
    let started = Instant::now();
    let mut uploads = Vec::new();
    for i in 0..10 {
        uploads.push((i % 5, upload(&webs[i % 2], &players[i % 5], &format!("Jugada {i}"), &clips.path("valid.mp4")).await));
    }
    let corrupt = upload(&webs[0], &players[0], "Rota", &clips.path("corrupt.mp4")).await;

    for (n, (player, id)) in uploads.iter().enumerate() {
        let video = webs[n % 2].wait_processed(&players[*player], *id, Duration::from_secs(600)).await;
        assert_eq!(video["status"], "processed", "{video}\n{}", logs(&workers));
    }
    let batch = started.elapsed();
    let failed = webs[1].wait_processed(&players[0], corrupt, Duration::from_secs(120)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["failure_reason"].as_str().unwrap_or_default().contains("decodificar"), "{failed}");

    // Each processed exactly once, by either worker, none lost.
    let log = logs(&workers);
    let processed = counts(&video_ids_logged(&log, "video processed"));
    let started_jobs = counts(&video_ids_logged(&log, "processing started"));
    for (_, id) in &uploads {
        assert_eq!((processed.get(id), started_jobs.get(id)), (Some(&1), Some(&1)), "video {id}:\n{log}");
    }
    let per_worker: Vec<usize> = workers.iter().map(|w| video_ids_logged(&w.log(), "video processed").len()).collect();
    assert!(per_worker.iter().all(|&n| n > 0), "both workers took jobs: {per_worker:?}");
    assert_eq!(started_jobs.get(&corrupt), Some(&3), "the broken stream was tried the allowed three times");

    // The processed file is public through a presigned S3 link.
    let (status, public) = webs[0].get("/api/public/videos?limit=100", None).await;
    assert_eq!((status, public.as_array().unwrap().len()), (200, 10), "{public}");
    let link = public[0]["processed_url"].as_str().unwrap();
    assert!(link.starts_with(Moto::shared().endpoint()) && link.contains("X-Amz-Signature="), "{link}");
    let file = reqwest::get(link).await.unwrap();
    assert_eq!(file.status(), 200);
    assert!(file.bytes().await.unwrap().len() > 100_000);

    // The broken job ends in the dead-letter queue while the others flowed.
    let dead_letters = SqsQueue::new(&Moto::shared().sdk_config().await, &cluster.dead_letter_url);
    let waited = Instant::now();
    while dead_letters.depth().await.unwrap() != 1 {
        assert!(waited.elapsed() < Duration::from_secs(60), "the broken job never reached the dead-letter queue");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // kill -9 the worker that is transcoding: the job comes back after its
    // visibility timeout (the default) and the other worker finishes it.
    let interrupted = upload(&webs[1], &players[1], "Interrumpida", &clips.path("valid.mp4")).await;
    let waited = Instant::now();
    let victim = loop {
        if let Some(n) = workers.iter().position(|w| video_ids_logged(&w.log(), "processing started").contains(&interrupted)) {
            break n;
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "no worker took video {interrupted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    workers[victim].kill9();
    let killed_at = Instant::now();
    let restarted = loop {
        if video_ids_logged(&workers[1 - victim].log(), "processing started").contains(&interrupted) {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(30), "the killed worker's job did not start again within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let video = webs[0].wait_processed(&players[1], interrupted, Duration::from_secs(180)).await;
    let recovery = killed_at.elapsed();
    assert_eq!(video["status"], "processed", "{video}");
    let survivor = workers[1 - victim].log();
    assert!(video_ids_logged(&survivor, "video processed").contains(&interrupted), "the other worker finished it:\n{survivor}");

    // A web server killed between its commit and its publish: this one does
    // not relay, so its job reaches SQS only through the others' relays.
    let mut doomed = cluster.web(&[("ANB_OUTBOX_RELAY", "false")]).await;
    let orphan = upload(&doomed, &players[2], "Huérfana", &clips.path("valid.mp4")).await;
    doomed.kill9();
    let video = webs[1].wait_processed(&players[2], orphan, Duration::from_secs(180)).await;
    assert_eq!(video["status"], "processed", "{video}");

    // Nothing is left half-done.
    for token in &players {
        let (status, mine) = webs[0].get("/api/videos", Some(token)).await;
        assert_eq!(status, 200);
        for video in mine.as_array().unwrap() {
            assert!(video["status"] == "processed" || video["video_id"] == corrupt, "{video}");
        }
    }
    let duplicates = counts(&video_ids_logged(&logs(&workers), "video processed")).values().filter(|&&n| n > 1).count();
    assert_eq!(duplicates, 0);
    println!(
        "scale-out: 12 valid uploads + 1 broken over 2 web servers and 2 workers; 10 processed in {:.1} s; \
         duplicates processed: {duplicates}; lost: 0; dead-lettered: 1; killed worker's job started again {:.1} s and \
         finished {:.1} s after the kill (default visibility)",
        batch.as_secs_f64(),
        restarted.as_secs_f64(),
        recovery.as_secs_f64()
    );
}
