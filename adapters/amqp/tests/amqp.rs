//! `AmqpQueue` against a real RabbitMQ: the broker `ANB_TEST_AMQP_URL` names,
//! else a throwaway `rabbitmq-server` (`anb_testkit::RabbitMq`). Each test
//! uses exchange and queues of its own, deleted when it ends.

use std::time::{Duration, Instant};

use anb_amqp::{AmqpQueue, AmqpSettings, AmqpUrl, Topology};
use anb_domain::ports::{DeadLetterQueue, JobQueue, QueueError};
use anb_domain::{Delivery, Job, TaskId, VideoId};
use anb_testkit::{RabbitBroker, RabbitMq, contracts};
use lapin::options::{BasicGetOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Deletes a test's exchange and queues when dropped.
struct Names {
    url: String,
    prefix: String,
}

impl Names {
    fn new(url: &str) -> Self {
        Self { url: url.to_owned(), prefix: format!("anbtest.{}", uuid::Uuid::new_v4().simple()) }
    }

    fn settings(&self, max_attempts: u32) -> AmqpSettings {
        let mut settings = AmqpSettings::new(AmqpUrl::parse(&self.url).unwrap());
        settings.prefix = self.prefix.clone();
        settings.max_attempts = max_attempts;
        settings.prefetch = 4;
        settings.wait = Duration::from_secs(1);
        settings
    }

    async fn queue(&self, max_attempts: u32) -> AmqpQueue {
        AmqpQueue::connect(self.settings(max_attempts)).await.unwrap()
    }

    fn topology(&self) -> Topology {
        Topology::new(self.prefix.clone())
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        let (url, topology) = (self.url.clone(), self.topology());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let Ok(connection) = Connection::connect(&url, ConnectionProperties::default()).await else { return };
                let channel = connection.create_channel().await.expect("channel");
                for queue in topology.queues() {
                    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
                }
                let _ = channel.exchange_delete(topology.exchange().into(), ExchangeDeleteOptions::default()).await;
                let _ = connection.close(200, "done".into()).await;
            });
        })
        .join();
    }
}

fn some_job(video: i64) -> Job {
    Job { task_id: TaskId::random(), video_id: VideoId(video) }
}

/// Receives until a job comes, for up to `within`.
async fn next(queue: &AmqpQueue, visibility: Duration, within: Duration) -> Option<anb_domain::Delivery> {
    let start = Instant::now();
    while start.elapsed() < within {
        match queue.receive(visibility).await {
            Ok(Some(delivery)) => return Some(delivery),
            Ok(None) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}

/// Sweeps the dead-letter queue until a job comes out, for up to 10 s (the
/// broker dead-letters asynchronously).
async fn swept(queue: &AmqpQueue) -> Option<Job> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(job) = queue.next_dead_letter(Duration::from_secs(60)).await.unwrap() {
            return Some(job);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn rabbitmq_delivers_at_least_once() {
    let names = Names::new(RabbitMq::shared().url());
    let queue = names.queue(5).await;
    let job = some_job(42);
    queue.send(&job).await.unwrap();
    contracts::queue_delivers_at_least_once(&queue, &job).await;
}

#[tokio::test]
async fn a_delayed_job_waits_in_its_tier_without_holding_back_the_next() {
    let names = Names::new(RabbitMq::shared().url());
    let queue = names.queue(5).await;
    let settled = contracts::queue_retries_after_a_delay_without_holding_back_the_next(&queue, &some_job(1), &some_job(2)).await;
    assert_eq!(queue.release(&settled, Duration::ZERO).await, Err(QueueError::ReceiptExpired), "a settled receipt is stale");
}

#[tokio::test]
async fn a_dead_lettered_job_keeps_its_reason_and_is_swept_once_into_failed() {
    let names = Names::new(RabbitMq::shared().url());
    let queue = names.queue(5).await;
    let job = some_job(7);
    queue.send(&job).await.unwrap();
    let got = queue.receive(Duration::from_secs(30)).await.unwrap().unwrap();
    queue.dead_letter(&got.receipt, "No se pudo decodificar el video.").await.unwrap();
    assert!(queue.receive(Duration::from_secs(30)).await.unwrap().is_none(), "a dead job is not delivered again");
    assert_eq!(queue.ready(&names.topology().dead()).await.unwrap(), 1);

    assert_eq!(queue.next_dead_letter(Duration::from_secs(60)).await.unwrap(), Some(job));
    assert_eq!(queue.next_dead_letter(Duration::from_secs(60)).await.unwrap(), None, "each dead job is swept once");
    let failed = names.topology().failed();
    assert_eq!(queue.ready(&failed).await.unwrap(), 1, "it rests in the failed queue");
    // For inspection: the reason and the receive count travel with it.
    let connection = Connection::connect(&names.url, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let kept = channel.basic_get(failed.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().unwrap();
    let headers = kept.delivery.properties.headers().clone().unwrap();
    assert_eq!(
        headers.inner().get("x-anb-reason").and_then(|v| v.as_long_string()).map(ToString::to_string).as_deref(),
        Some("No se pudo decodificar el video.")
    );
    assert_eq!(anb_job_json::decode(&kept.delivery.data).unwrap().video_id.0, 7);
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn the_broker_dead_letters_a_job_returned_more_often_than_its_attempts() {
    let names = Names::new(RabbitMq::shared().url());
    let queue = names.queue(2).await;
    let job = some_job(9);
    queue.send(&job).await.unwrap();
    for count in 1..=2 {
        let got = next(&queue, Duration::from_secs(30), Duration::from_secs(5)).await.expect("delivered");
        assert_eq!(got.receive_count, count);
        // As a worker killed mid-job would: the job goes back to the broker.
        queue.release(&got.receipt, Duration::ZERO).await.unwrap();
    }
    assert!(queue.receive(Duration::from_secs(30)).await.unwrap().is_none(), "two attempts, then no more");
    assert_eq!(swept(&queue).await, Some(job), "the broker dead-lettered it");
}

#[tokio::test]
async fn a_job_held_by_a_lost_connection_goes_to_another_worker() {
    let names = Names::new(RabbitMq::shared().url());
    let (crashing, survivor) = (names.queue(5).await, names.queue(5).await);
    let crash = |queue: AmqpQueue, held: Delivery| async move {
        queue.close().await;
        assert_eq!(queue.extend(&held.receipt, Duration::from_secs(30)).await, Err(QueueError::ReceiptExpired));
    };
    contracts::queue_redelivers_the_job_of_a_dead_worker(crashing, crash, &survivor, &some_job(11)).await;
}

#[tokio::test]
async fn a_message_that_is_not_a_job_is_set_aside_without_blocking_the_queue() {
    let names = Names::new(RabbitMq::shared().url());
    let queue = names.queue(5).await;
    let connection = Connection::connect(&names.url, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            names.prefix.as_str().into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            b"{not json",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
    contracts::queue_sets_aside_messages_that_are_not_jobs(&queue, &some_job(12)).await;
    // The broker dead-letters it in its own time; swept, it rests in `failed`.
    let start = Instant::now();
    while queue.ready(&names.topology().failed()).await.unwrap() == 0 {
        assert_eq!(queue.next_dead_letter(Duration::from_secs(60)).await.unwrap(), None, "no job among the dead");
        assert!(start.elapsed() < Duration::from_secs(10), "the stray message was not set aside");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn processes_that_disagree_on_the_attempts_are_refused_with_the_reason() {
    let names = Names::new(RabbitMq::shared().url());
    let _first = names.queue(3).await;
    let error = AmqpQueue::connect(names.settings(5)).await.unwrap_err().to_string();
    assert!(error.contains("ANB_MAX_ATTEMPTS") && error.contains("x-delivery-limit"), "{error}");
}

#[tokio::test]
async fn an_unreachable_broker_is_an_error_that_hides_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = AmqpSettings::new(AmqpUrl::parse(&format!("amqp://anb:hunter2@127.0.0.1:{port}/%2f")).unwrap());
    settings.wait = Duration::from_secs(1);
    let error = AmqpQueue::connect(settings).await.unwrap_err().to_string();
    assert!(error.contains(&format!("127.0.0.1:{port}")) && !error.contains("hunter2"), "{error}");
}

/// A broker restart loses no job: a job sent before it and the one in a
/// worker's hands at the time are both delivered after it, sends during it
/// fail (the outbox keeps them), and the queue reconnects by itself.
#[tokio::test]
async fn a_broker_restart_loses_nothing_and_the_queue_reconnects() {
    let broker = RabbitBroker::create();
    let names = Names::new(&broker.url());
    let queue = names.queue(5).await;
    let (held_job, waiting_job) = (some_job(21), some_job(22));
    queue.send(&held_job).await.unwrap();
    queue.send(&waiting_job).await.unwrap();
    let held = queue.receive(Duration::from_secs(300)).await.unwrap().unwrap();
    assert_eq!(held.job, held_job);

    broker.stop();
    assert!(queue.send(&some_job(23)).await.is_err(), "no broker, no confirm: the send fails");
    assert!(queue.receive(Duration::from_secs(30)).await.is_err());
    broker.start();

    let mut seen = Vec::new();
    while let Some(delivery) = next(&queue, Duration::from_secs(30), Duration::from_secs(60)).await {
        seen.push(delivery.job);
        queue.ack(&delivery.receipt).await.unwrap();
        if seen.len() == 2 {
            break;
        }
    }
    seen.sort_by_key(|job| job.video_id.0);
    assert_eq!(seen, vec![held_job, waiting_job], "both jobs after the restart");
    assert_eq!(queue.extend(&held.receipt, Duration::from_secs(30)).await, Err(QueueError::ReceiptExpired), "the old receipt is stale");
    assert!(queue.receive(Duration::from_secs(30)).await.unwrap().is_none(), "and nothing twice");
    // Declared again after the restart: sending works.
    queue.send(&some_job(24)).await.unwrap();
}

#[tokio::test]
async fn every_send_is_in_the_queue_when_it_returns() {
    let names = Names::new(RabbitMq::shared().url());
    let queue = names.queue(5).await;
    for video in 0..20 {
        queue.send(&some_job(video)).await.unwrap();
    }
    assert_eq!(queue.ready(&names.topology().jobs()).await.unwrap(), 20, "confirmed, so already queued");
}
