//! The scale-out test once more on each broker an operator may run instead
//! of SQS: two `anb-web` and two `anb-worker` over one PostgreSQL database,
//! S3 (moto) and the broker, which goes away and comes back while videos
//! are being processed; a worker is killed with `SIGKILL` mid-transcode.
//! Every valid upload ends `processed` exactly once, the broken one `failed`
//! with its job dead-lettered.
//!
//! - RabbitMQ (`ANB_QUEUE=rabbitmq`): a `rabbitmq-server` of the test's own,
//!   stopped and started again.
//! - Kafka (`ANB_QUEUE=kafka`, `scaleout/kafka.rs`, a test binary of its own
//!   so that the mock cluster does not share the cores with the others):
//!   librdkafka's mock cluster, three brokers held by that test process, all
//!   taken down and brought back. What the mock
//!   does not cover: a broker's disk (its log lives in memory and survives
//!   the outage, as a real broker's would), replication between brokers on
//!   separate machines, rolling restarts of a real cluster, and topic
//!   creation (the mock has no CreateTopics request: the test makes the
//!   topics through the mock's API, and `anb-worker provision` finds them).

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anb_e2e::{Clips, TestApp, Worker, binary, video_ids_logged};
use anb_testkit::{Moto, Postgres};

use crate::common::{counts, logs, upload};

/// What one run measured.
pub(crate) struct Run {
    pub outage: Duration,
    pub batch: Duration,
    pub recovery: Duration,
    pub corrupt: i64,
}

/// Provisions with `queue_env`, runs the cluster through `stop` and
/// `start` of the broker and a killed worker, and checks every video.
pub(crate) async fn run(queue_env: &[(&str, String)], provisioned: &str, stop: impl FnOnce(), start: impl FnOnce()) -> Run {
    let clips = Clips::get().await;
    let database = Postgres::shared().fresh_database().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let mut env: Vec<(String, String)> = Moto::shared().aws_env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    for (key, value) in [
        ("ANB_DATABASE_URL", database.url.clone()),
        ("ANB_JWT_SECRET", "scale-out-test-secret-of-at-least-32-chars".to_owned()),
        ("ANB_STORAGE", "s3".to_owned()),
        ("ANB_S3_BUCKET", format!("anb-{suffix}")),
        ("ANB_RETRY_DELAY", "1".to_owned()),
        ("ANB_MAX_ATTEMPTS", "3".to_owned()),
    ]
    .into_iter()
    .chain(queue_env.iter().cloned())
    {
        env.push((key.to_owned(), value));
    }
    let output = Command::new(binary("anb-worker"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("provision")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "provision failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let printed: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(printed["ANB_S3_BUCKET"], format!("anb-{suffix}"));
    assert!(stdout.contains(provisioned), "provision printed {stdout}");

    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let webs = [TestApp::spawn(0, &pairs).await, TestApp::spawn(0, &pairs).await];
    let worker = || {
        let mut env = env.clone();
        env.push(("ANB_WORKERS".to_owned(), "1".to_owned()));
        Worker::spawn(&env)
    };
    let mut workers = vec![worker(), worker()];

    let mut players = Vec::new();
    for i in 0..3 {
        let email = format!("b{i}@example.com");
        webs[i % 2].sign_up(&email, &format!("Broker{i}"), "Medellín").await;
        players.push(webs[(i + 1) % 2].token(&email).await);
    }
    let started = Instant::now();
    let mut uploads = Vec::new();
    for i in 0..6 {
        uploads.push((i % 3, upload(&webs[i % 2], &players[i % 3], &format!("Jugada {i}"), &clips.path("valid.mp4")).await));
    }
    let corrupt = upload(&webs[0], &players[0], "Rota", &clips.path("corrupt.mp4")).await;

    // The broker goes away while a video is being transcoded, and comes back.
    let waited = Instant::now();
    while video_ids_logged(&logs(&workers), "processing started").is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(60), "no job started:\n{}", logs(&workers));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(stop);
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(start);
    let outage = stopped_at.elapsed();

    for (n, (player, id)) in uploads.iter().enumerate() {
        let video = webs[n % 2].wait_processed(&players[*player], *id, Duration::from_secs(600)).await;
        assert_eq!(video["status"], "processed", "{video}\n{}", logs(&workers));
    }
    let batch = started.elapsed();
    let failed = webs[1].wait_processed(&players[0], corrupt, Duration::from_secs(180)).await;
    assert_eq!(failed["status"], "failed", "{failed}\n{}", logs(&workers));
    assert!(failed["failure_reason"].as_str().unwrap_or_default().contains("decodificar"), "{failed}");

    // kill -9 the worker that is transcoding: the broker hands its job to
    // the other worker (RabbitMQ when the connection drops, Kafka when the
    // group's session runs out), which waits out the dead one's lease and
    // finishes it.
    let interrupted = upload(&webs[1], &players[1], "Interrumpida", &clips.path("valid.mp4")).await;
    let waited = Instant::now();
    let victim = loop {
        if let Some(n) = workers.iter().position(|w| video_ids_logged(&w.log(), "processing started").contains(&interrupted)) {
            break n;
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "no worker took video {interrupted}:\n{}", logs(&workers));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    workers[victim].kill9();
    let killed_at = Instant::now();
    let video = webs[0].wait_processed(&players[1], interrupted, Duration::from_secs(180)).await;
    let recovery = killed_at.elapsed();
    assert_eq!(video["status"], "processed", "{video}\n{}", logs(&workers));
    let survivor = workers[1 - victim].log();
    assert!(video_ids_logged(&survivor, "video processed").contains(&interrupted), "the other worker finished it:\n{survivor}");

    // Exactly once: each valid video processed by one worker, one time.
    let log = logs(&workers);
    let processed = counts(&video_ids_logged(&log, "video processed"));
    for id in uploads.iter().map(|(_, id)| *id).chain([interrupted]) {
        assert_eq!(processed.get(&id), Some(&1), "video {id}:\n{log}");
    }
    let attempts = counts(&video_ids_logged(&log, "processing started")).get(&corrupt).copied();
    assert!(attempts.is_some_and(|n| (1..=3).contains(&n)), "the broken stream was tried at most 3 times: {attempts:?}");
    for token in &players {
        let (_, mine) = webs[0].get("/api/videos", Some(token)).await;
        for video in mine.as_array().unwrap() {
            assert!(video["status"] == "processed" || video["video_id"] == corrupt, "{video}");
        }
    }
    Run { outage, batch, recovery, corrupt }
}

pub(crate) fn report(broker: &str, run: &Run) {
    println!(
        "scale-out on {broker}: 7 valid uploads + 1 broken over 2 web servers and 2 workers; broker down {:.1} s mid-run; \
         6 processed in {:.1} s; duplicates processed: 0; lost: 0; dead-lettered: 1 (video {}); killed worker's job finished {:.1} s \
         after the kill",
        run.outage.as_secs_f64(),
        run.batch.as_secs_f64(),
        run.corrupt,
        run.recovery.as_secs_f64()
    );
}
