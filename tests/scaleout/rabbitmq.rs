//! The scale-out test once more with RabbitMQ as the queue
//! (`ANB_QUEUE=rabbitmq`): two `anb-web` and two `anb-worker` over one
//! PostgreSQL database, S3 (moto) and a broker of the test's own, which is
//! restarted while videos are being processed; a worker is killed with
//! `SIGKILL` mid-transcode. Every valid upload ends `processed` exactly once,
//! the broken one `failed` with its job dead-lettered.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anb_amqp::{AmqpQueue, AmqpSettings, AmqpUrl};
use anb_e2e::{Clips, TestApp, Worker, binary, video_ids_logged};
use anb_testkit::{Moto, Postgres, RabbitBroker};

use crate::{counts, logs, upload};

// Several threads: the broker is stopped and started by blocking calls,
// while the HTTP client's connections stay looked after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_each_upload_is_processed_once_through_a_broker_restart_and_a_killed_worker() {
    let clips = Clips::get().await;
    let broker = RabbitBroker::create();
    let database = Postgres::shared().fresh_database().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("anb.{suffix}");
    let mut env: Vec<(String, String)> = Moto::shared().aws_env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    for (key, value) in [
        ("ANB_DATABASE_URL", database.url.clone()),
        ("ANB_JWT_SECRET", "scale-out-test-secret-of-at-least-32-chars".to_owned()),
        ("ANB_STORAGE", "s3".to_owned()),
        ("ANB_S3_BUCKET", format!("anb-{suffix}")),
        ("ANB_QUEUE", "rabbitmq".to_owned()),
        ("ANB_AMQP_URL", broker.url()),
        ("ANB_AMQP_QUEUE", prefix.clone()),
        ("ANB_RETRY_DELAY", "1".to_owned()),
        ("ANB_MAX_ATTEMPTS", "3".to_owned()),
    ] {
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
    assert_eq!((printed["ANB_AMQP_QUEUE"], printed["ANB_S3_BUCKET"]), (prefix.as_str(), format!("anb-{suffix}").as_str()));

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
        let email = format!("r{i}@example.com");
        webs[i % 2].sign_up(&email, &format!("Rabbit{i}"), "Medellín").await;
        players.push(webs[(i + 1) % 2].token(&email).await);
    }
    let started = Instant::now();
    let mut uploads = Vec::new();
    for i in 0..6 {
        uploads.push((i % 3, upload(&webs[i % 2], &players[i % 3], &format!("Conejo {i}"), &clips.path("valid.mp4")).await));
    }
    let corrupt = upload(&webs[0], &players[0], "Rota", &clips.path("corrupt.mp4")).await;

    // The broker goes away while a video is being transcoded, and comes back.
    let waited = Instant::now();
    while video_ids_logged(&logs(&workers), "processing started").is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(60), "no job started:\n{}", logs(&workers));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| broker.stop());
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| broker.start());
    let outage = stopped_at.elapsed();

    for (n, (player, id)) in uploads.iter().enumerate() {
        let video = webs[n % 2].wait_processed(&players[*player], *id, Duration::from_secs(600)).await;
        assert_eq!(video["status"], "processed", "{video}\n{}", logs(&workers));
    }
    let batch = started.elapsed();
    let failed = webs[1].wait_processed(&players[0], corrupt, Duration::from_secs(180)).await;
    assert_eq!(failed["status"], "failed", "{failed}\n{}", logs(&workers));
    assert!(failed["failure_reason"].as_str().unwrap_or_default().contains("decodificar"), "{failed}");

    // kill -9 the worker that is transcoding: its connection drops, the
    // broker hands the job to the other worker, which waits out the dead
    // one's lease and finishes it.
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

    // The broken job is kept on the broker, in its dead-letter or failed queue.
    let mut settings = AmqpSettings::new(AmqpUrl::parse(&broker.url()).unwrap());
    settings.prefix = prefix;
    let queue = AmqpQueue::connect(settings).await.unwrap();
    let topology = queue.topology().clone();
    let kept = queue.ready(&topology.dead()).await.unwrap() + queue.ready(&topology.failed()).await.unwrap();
    assert_eq!(kept, 1, "the broken job is dead-lettered once");
    assert_eq!(queue.ready(&topology.jobs()).await.unwrap(), 0, "nothing left waiting");
    queue.close().await;
    println!(
        "scale-out on RabbitMQ: 7 valid uploads + 1 broken over 2 web servers and 2 workers; broker down {:.1} s mid-run; \
         6 processed in {:.1} s; duplicates processed: 0; lost: 0; dead-lettered: 1; killed worker's job finished {:.1} s after the kill",
        outage.as_secs_f64(),
        batch.as_secs_f64(),
        recovery.as_secs_f64()
    );
}
