//! Contract tests of `S3Storage` and `SqsQueue` against moto, the S3 and SQS
//! emulator, in server mode on a loopback port (real HTTP, real SDK), and of
//! the outbox relay from the database to SQS.

use anb_testkit::contracts;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anb_aws::ProvisionedQueues;
use anb_aws::{S3Storage, SqsQueue};
use anb_domain::ports::{JobQueue, ObjectStorage, UserRepository, VideoRepository};
use anb_domain::{Email, Job, NewUser, NewVideo, ObjectKey, PasswordHash, TaskId, Title, VideoId, VideoStatus};
use anb_sql::{Database, LeasedQueue, OutboxRelay};
use anb_testkit::Moto;

async fn aws_config() -> aws_config::SdkConfig {
    Moto::shared().sdk_config().await
}

/// A new, empty bucket for one test.
async fn bucket() -> S3Storage {
    let storage = S3Storage::new(&aws_config().await, format!("anb-test-{}", uuid::Uuid::new_v4().simple()));
    assert!(storage.ensure_bucket().await.unwrap(), "a new bucket is created");
    assert!(!storage.ensure_bucket().await.unwrap(), "an existing bucket is kept");
    storage
}

/// A new queue with its dead-letter queue for one test.
async fn queue(max_receives: u32) -> (SqsQueue, ProvisionedQueues) {
    let config = aws_config().await;
    let name = format!("anb-test-{}", uuid::Uuid::new_v4().simple());
    let queues = SqsQueue::provision(&config, &name, max_receives).await.unwrap();
    assert_eq!(SqsQueue::provision(&config, &name, max_receives).await.unwrap(), queues, "provisioning twice finds the same queues");
    (SqsQueue::new(&config, &queues.queue_url).with_wait(Duration::from_secs(1)), queues)
}

fn some_job() -> Job {
    Job { task_id: TaskId::random(), video_id: VideoId(42) }
}

#[tokio::test]
async fn s3_puts_gets_replaces_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket().await;
    contracts::storage_round_trip(&store, dir.path()).await;
    contracts::storage_refuses_a_missing_source(&store, dir.path()).await;
}

#[tokio::test]
async fn s3_sends_large_files_as_multipart_uploads_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket().await;
    // 16 MiB and up go as 8 MiB parts: three parts here, the last one short.
    contracts::storage_keeps_large_files_intact(&store, dir.path(), (20 << 20) + 12_345).await;
    contracts::storage_keeps_large_files_intact(&store, dir.path(), 1 << 20).await;
}

#[tokio::test]
async fn s3_links_are_presigned_gets_that_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket().await;
    let key = ObjectKey::parse(&format!("processed/{}.mp4", uuid::Uuid::new_v4())).unwrap();
    let source = dir.path().join("v.mp4");
    std::fs::write(&source, b"public video").unwrap();
    store.put_file(&key, &source).await.unwrap();

    let url = store.signed_url(&key, Duration::from_secs(90)).await.unwrap();
    assert!(url.starts_with(&format!("{}/{}/{}?", Moto::shared().endpoint(), store.bucket(), key.as_str())), "{url}");
    assert!(url.contains("X-Amz-Expires=90") && url.contains("X-Amz-Signature="), "{url}");
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/mp4");
    assert_eq!(response.bytes().await.unwrap(), &b"public video"[..]);
}

#[tokio::test]
async fn sqs_delivers_at_least_once() {
    let (queue, _) = queue(5).await;
    let job = some_job();
    queue.send(&job).await.unwrap();
    contracts::queue_delivers_at_least_once(&queue, &job).await;
    assert_eq!(queue.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn sqs_retries_after_a_delay_without_holding_back_the_next() {
    let (queue, _) = queue(5).await;
    contracts::queue_retries_after_a_delay_without_holding_back_the_next(&queue, &some_job(), &some_job()).await;
}

#[tokio::test]
async fn sqs_hands_the_job_of_a_dead_worker_to_another() {
    let (queue, queues) = queue(5).await;
    let crashing = SqsQueue::new(&aws_config().await, &queues.queue_url).with_wait(Duration::from_secs(1));
    // A killed worker says nothing: its job's visibility runs out.
    let crash = |queue: SqsQueue, _| async move { drop(queue) };
    contracts::queue_redelivers_the_job_of_a_dead_worker(crashing, crash, &queue, &some_job()).await;
}

#[tokio::test]
async fn sqs_reads_the_redrive_policy_and_dead_letters_after_the_last_receive() {
    let (queue, queues) = queue(2).await;
    assert_eq!(queue.max_receive_count().await.unwrap(), Some(2));
    let job = some_job();
    queue.send(&job).await.unwrap();
    let first = queue.receive(Duration::from_secs(30)).await.unwrap().unwrap();
    queue.release(&first.receipt, Duration::ZERO).await.unwrap();
    let last = queue.receive(Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!(last.receive_count, 2, "the worker sees this is the last attempt");
    queue.dead_letter(&last.receipt, "cannot decode").await.unwrap();

    assert!(queue.receive(Duration::from_secs(30)).await.unwrap().is_none(), "the redrive policy took it");
    let dead = SqsQueue::new(&aws_config().await, &queues.dead_letter_url).with_wait(Duration::from_secs(1));
    let moved = dead.receive(Duration::from_secs(30)).await.unwrap().expect("the job is in the dead-letter queue");
    assert_eq!(moved.job, job);
}

/// The sweeper's clock is only for its loop; a sweep needs none.
struct NoClock;

#[async_trait::async_trait]
impl anb_domain::ports::Clock for NoClock {
    fn now(&self) -> anb_domain::Timestamp {
        chrono::Utc::now()
    }

    async fn sleep(&self, _: Duration) {}
}

#[tokio::test]
async fn a_job_whose_every_attempt_was_cut_short_is_swept_from_the_dead_letter_queue_and_its_video_fails() {
    let (db, _pg) = database().await;
    let owner = db.users().create(user("swept@example.com")).await.unwrap().id;
    let (queue, _) = queue(1).await;
    let job = upload(&db, owner, 0).await;
    db.videos().mark_processing(job.video_id).await.unwrap();
    queue.send(&job).await.unwrap();
    // Its only worker dies with it: never acknowledged, never extended.
    assert!(queue.receive(Duration::from_secs(1)).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(queue.receive(Duration::from_secs(30)).await.unwrap().is_none(), "the redrive policy moved it");
    assert_eq!(db.videos().by_id(job.video_id).await.unwrap().unwrap().status, VideoStatus::Processing, "stuck so far");

    let dead = queue.dead_letter_queue().await.unwrap().expect("the queue has a dead-letter queue");
    let dead_depth = dead.clone();
    let sweeper = anb_application::DeadLetterSweeper::new(
        Arc::new(dead),
        Arc::new(db.videos()),
        Arc::new(NoClock),
        Arc::new(anb_domain::ports::NoJobEvents),
        Duration::from_secs(60),
    );
    assert_eq!(sweeper.sweep().await.unwrap(), 1);
    let video = db.videos().by_id(job.video_id).await.unwrap().unwrap();
    assert_eq!(video.status, VideoStatus::Failed);
    assert_eq!(video.failure_reason.as_deref(), Some(anb_domain::ATTEMPTS_EXHAUSTED));
    assert_eq!(sweeper.sweep().await.unwrap(), 0, "a job looked at is not looked at again at once");
    assert_eq!(dead_depth.depth().await.unwrap(), 1, "the job stays in the dead-letter queue, for inspection and re-drive");
}

#[tokio::test]
async fn sqs_skips_messages_that_are_not_jobs() {
    let (queue, _) = queue(1).await;
    let client = aws_sdk_sqs::Client::new(&aws_config().await);
    client.send_message().queue_url(queue.url()).message_body("not a job").send().await.unwrap();
    assert!(queue.receive(Duration::from_secs(30)).await.unwrap().is_none(), "an unreadable message is nobody's job");
    contracts::queue_sets_aside_messages_that_are_not_jobs(&queue, &some_job()).await;
}

async fn database() -> (Database, anb_testkit::TestDatabase) {
    let pg = anb_testkit::Postgres::shared().fresh_database().await;
    (Database::connect(&pg.url, 10).await.unwrap(), pg)
}

fn user(email: &str) -> NewUser {
    NewUser {
        first_name: "R".into(),
        last_name: "Relay".into(),
        email: Email::parse(email).unwrap(),
        password_hash: PasswordHash("$argon2id$x".into()),
        city: "Cali".into(),
        country: "Colombia".into(),
        created_at: chrono::Utc::now(),
        signup_network: None,
    }
}

async fn upload(db: &Database, owner: anb_domain::UserId, i: usize) -> Job {
    let task_id = TaskId::random();
    let video = db
        .videos()
        .create_with_job(NewVideo {
            owner,
            title: Title::parse(&format!("v{i}")).unwrap(),
            task_id,
            original_key: ObjectKey::original(task_id),
            uploaded_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    Job { task_id, video_id: video.id }
}

#[tokio::test]
async fn the_relay_publishes_each_committed_job_once_even_with_several_relays() {
    let (db, _pg) = database().await;
    let (queue, _) = queue(3).await;
    let owner = db.users().create(user("relay@example.com")).await.unwrap().id;
    let mut jobs = HashSet::new();
    for i in 0..30 {
        jobs.insert(upload(&db, owner, i).await.task_id);
    }
    let target: Arc<dyn JobQueue> = Arc::new(queue.clone());
    let relays: Vec<_> = (0..3).map(|_| OutboxRelay::new(db.queue(), target.clone(), Duration::from_millis(50))).collect();
    let published: usize =
        futures::future::join_all(relays.iter().map(OutboxRelay::publish_pending)).await.into_iter().map(Result::unwrap).sum();
    assert_eq!(published, 30);
    assert_eq!(db.queue().depth().await.unwrap(), 0, "the outbox is empty once published");
    assert_eq!(relays[0].publish_pending().await.unwrap(), 0);

    let mut received = Vec::new();
    while let Some(delivery) = queue.receive(Duration::from_secs(60)).await.unwrap() {
        received.push(delivery.job.task_id);
    }
    let unique: HashSet<_> = received.iter().copied().collect();
    assert_eq!((received.len(), unique), (30, jobs), "every job once, none twice");
}

#[tokio::test]
async fn a_second_copy_of_a_job_waits_while_a_live_worker_holds_its_video() {
    let (db, _pg) = database().await;
    let (sqs, _) = queue(10).await;
    let queue = LeasedQueue::new(Arc::new(sqs), db);
    let visibility = Duration::from_secs(2);
    let job = some_job();
    queue.send(&job).await.unwrap();
    queue.send(&job).await.unwrap(); // a relay that died between send and delete

    let first = queue.receive(visibility).await.unwrap().expect("one copy");
    assert!(queue.receive(visibility).await.unwrap().is_none(), "the other copy waits while the first is live");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    queue.extend(&first.receipt, visibility).await.unwrap(); // the heartbeat keeps the lease too
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(queue.receive(visibility).await.unwrap().is_none(), "still held: the heartbeat extended the lease");
    queue.ack(&first.receipt).await.unwrap();

    let started = std::time::Instant::now();
    let copy = loop {
        if let Some(copy) = queue.receive(visibility).await.unwrap() {
            break copy;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the copy never came back");
    };
    assert_eq!(copy.job, job, "the copy comes back once the first is done (the worker then skips it)");
    queue.ack(&copy.receipt).await.unwrap();

    // A worker that dies stops extending: its job is leased again after the visibility.
    let other = Job { task_id: TaskId::random(), video_id: VideoId(43) };
    queue.send(&other).await.unwrap();
    let dead = queue.receive(visibility).await.unwrap().expect("delivered");
    tokio::time::sleep(visibility + Duration::from_millis(500)).await;
    let again = queue.receive(visibility).await.unwrap().expect("redelivered to a live worker");
    assert_eq!((again.job, again.receive_count), (dead.job, 2));
    queue.ack(&again.receipt).await.unwrap();
}

#[tokio::test]
async fn ses_sends_as_a_verified_sender_and_refuses_an_unverified_one() {
    use anb_domain::Mail;
    use anb_domain::ports::Mailer;
    // A moto of this test's own: its record of sent mail is read back whole.
    let moto = Moto::own();
    let config = moto.sdk_config().await;
    let sender = format!("no-reply-{}@anb.example", uuid::Uuid::new_v4().simple());
    aws_sdk_sesv2::Client::new(&config).create_email_identity().email_identity(&sender).send().await.unwrap();
    let mail = Mail {
        to: Email::parse("ana@example.com").unwrap(),
        to_name: "Ana Pérez".into(),
        subject: "Confirma tu correo electrónico".into(),
        text: format!("Hola Ana,\n\nhttps://anb.example/#/verificar?token={}\n", "ab".repeat(32)),
    };
    anb_aws::SesMailer::new(&config, format!("ANB Rising Stars <{sender}>")).send(&mail).await.unwrap();

    // moto keeps what it was asked to send.
    let data: serde_json::Value = reqwest::get(format!("{}/moto-api/data.json", moto.endpoint())).await.unwrap().json().await.unwrap();
    let sent: Vec<&serde_json::Value> =
        data["ses"]["Message"].as_array().unwrap().iter().filter(|m| m["source"].as_str().is_some_and(|s| s.contains(&sender))).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["subject"], "Confirma tu correo electrónico");
    assert!(sent[0]["body"].as_str().unwrap().contains("/#/verificar?token=abab"), "{}", sent[0]);
    assert_eq!(sent[0]["destinations"]["ToAddresses"], serde_json::json!(["ana@example.com"]));

    let refused = anb_aws::SesMailer::new(&config, "nobody@unverified.example").send(&mail).await.unwrap_err();
    assert_eq!(refused.kind, anb_domain::BackendErrorKind::Internal, "a refusal, not an outage: {refused}");
}

#[tokio::test]
async fn scale_in_protection_is_set_and_cleared_on_this_instance_in_its_group() {
    use anb_aws::AsgScaleInProtection;
    use anb_domain::ports::ScaleInProtection;
    let config = aws_config().await;
    let asg = aws_sdk_autoscaling::Client::new(&config);
    let name = format!("anb-workers-{}", uuid::Uuid::new_v4().simple());
    asg.create_launch_configuration()
        .launch_configuration_name(&name)
        .image_id("ami-0123456789abcdef0")
        .instance_type("c6i.large")
        .send()
        .await
        .unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_configuration_name(&name)
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
    let groups = asg.describe_auto_scaling_groups().auto_scaling_group_names(&name).send().await.unwrap();
    let instance = groups.auto_scaling_groups()[0].instances()[0].instance_id().unwrap().to_owned();
    let protected = || {
        let (asg, instance) = (asg.clone(), instance.clone());
        async move {
            let found = asg.describe_auto_scaling_instances().instance_ids(instance).send().await.unwrap();
            found.auto_scaling_instances()[0].protected_from_scale_in().expect("the API says whether it is protected")
        }
    };
    assert!(!protected().await, "not protected at launch");
    let port = AsgScaleInProtection::new(&config, Some(instance.clone()));
    port.protect(true).await.unwrap();
    assert!(protected().await, "protected while a job runs");
    port.protect(false).await.unwrap();
    assert!(!protected().await, "let go when idle");
    let stray = AsgScaleInProtection::new(&config, Some("i-0123456789abcdef0".into()));
    let error = stray.protect(true).await.unwrap_err();
    assert!(error.message.contains("in no Auto Scaling group"), "{error}");
    asg.delete_auto_scaling_group().auto_scaling_group_name(&name).force_delete(true).send().await.unwrap();
}
