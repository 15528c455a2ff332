//! `KafkaQueue` over the Kafka protocol: librdkafka's mock cluster (three
//! brokers in this process, the real protocol on loopback sockets), or the
//! brokers `ANB_TEST_KAFKA_BROKERS` names. Each test uses topics and groups
//! of its own, deleted when it ends.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anb_domain::ports::{DeadLetterQueue, JobQueue, QueueError};
use anb_domain::{BackendErrorKind, Delivery, Job, TaskId, VideoId};
use anb_kafka::{KafkaQueue, KafkaSettings, Topics};
use anb_testkit::contracts;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// A message's payload and headers.
type Read = (Vec<u8>, Vec<(String, String)>);

/// The brokers of one test, and its names.
struct Kafka {
    mock: Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    brokers: String,
    prefix: String,
    partitions: i32,
}

impl Kafka {
    /// Brokers for a test whose topics have `partitions` partitions.
    fn new(partitions: i32) -> Self {
        let prefix = format!("anbtest.{}", uuid::Uuid::new_v4().simple());
        let kafka = match std::env::var("ANB_TEST_KAFKA_BROKERS") {
            Ok(brokers) if !brokers.is_empty() => Self { mock: None, brokers, prefix, partitions },
            _ => {
                let mock = MockCluster::new(3).expect("librdkafka's mock cluster starts");
                Self { brokers: mock.bootstrap_servers(), mock: Some(mock), prefix, partitions }
            }
        };
        kafka.make_topics();
        kafka
    }

    /// The mock cluster has no CreateTopics request: there the test makes
    /// the topics through the mock's own API, and the queue finds them.
    /// Real brokers get them from the queue itself.
    fn make_topics(&self) {
        if let Some(mock) = &self.mock {
            for topic in self.topics().all() {
                mock.create_topic(&topic, self.partitions, 3).expect("the mock creates the topic");
            }
        }
    }

    fn settings(&self) -> KafkaSettings {
        let mut settings = KafkaSettings::new(self.brokers.clone());
        settings.prefix.clone_from(&self.prefix);
        settings.partitions = self.partitions;
        settings.read_ahead = 4;
        settings.wait = Duration::from_secs(1);
        settings.session_timeout = Duration::from_secs(6);
        settings
    }

    /// A queue that has joined the workers' group and holds partitions.
    async fn worker(&self) -> KafkaQueue {
        let queue = KafkaQueue::connect(self.settings()).await.unwrap();
        assert!(queue.assigned(Duration::from_secs(30)).await.unwrap(), "the group gives the worker partitions");
        queue
    }

    fn topics(&self) -> Topics {
        Topics::new(self.prefix.clone())
    }

    /// Every message of `topic`, read from the start, with its headers.
    fn read_all(&self, topic: &str) -> Vec<Read> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{}.inspector", self.prefix))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for partition in 0..self.partitions {
            list.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut messages = Vec::new();
        let start = Instant::now();
        let mut quiet_since = Instant::now();
        while start.elapsed() < Duration::from_secs(20) && quiet_since.elapsed() < Duration::from_secs(3) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter().map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect()
                    })
                    .unwrap_or_default();
                messages.push((message.payload().unwrap_or_default().to_vec(), headers));
                quiet_since = Instant::now();
            }
        }
        messages
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        if self.mock.is_some() {
            return; // the mock cluster goes with it
        }
        let (brokers, topics) = (self.brokers.clone(), self.topics());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let Ok(admin) = ClientConfig::new().set("bootstrap.servers", &brokers).create::<AdminClient<DefaultClientContext>>() else {
                    return;
                };
                let names = topics.all();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
                let groups = [topics.workers_group(), topics.sweepers_group(), format!("{}.inspector", topics.jobs())];
                let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
                let _ = admin.delete_groups(&groups, &AdminOptions::new()).await;
            });
        })
        .join();
    }
}

fn some_job(video: i64) -> Job {
    Job { task_id: TaskId::random(), video_id: VideoId(video) }
}

/// Receives until a job comes, for up to `within`.
async fn next(queue: &KafkaQueue, visibility: Duration, within: Duration) -> Option<Delivery> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(delivery) = queue.receive(visibility).await.unwrap() {
            return Some(delivery);
        }
    }
    None
}

#[tokio::test]
async fn the_queue_contract_holds() {
    let kafka = Kafka::new(3);
    let queue = kafka.worker().await;
    let job = some_job(1);
    queue.send(&job).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    contracts::queue_delivers_at_least_once(&queue, &job).await;
    queue.close().await;
}

#[tokio::test]
async fn a_delayed_job_waits_aside_without_holding_up_its_partition() {
    // One partition: a delayed job held in place would hold up the next.
    let kafka = Kafka::new(1);
    let queue = kafka.worker().await;
    contracts::queue_retries_after_a_delay_without_holding_back_the_next(&queue, &some_job(1), &some_job(2)).await;
    queue.close().await;
}

#[tokio::test]
async fn offsets_are_committed_only_after_each_job_ends_and_in_order() {
    let kafka = Kafka::new(1);
    let (first, second) = (some_job(1), some_job(2));
    let queue = kafka.worker().await;
    queue.send(&first).await.unwrap();
    queue.send(&second).await.unwrap();
    let a = next(&queue, Duration::from_secs(30), Duration::from_secs(10)).await.unwrap();
    let b = next(&queue, Duration::from_secs(30), Duration::from_secs(10)).await.unwrap();
    assert_eq!((&a.job, &b.job), (&first, &second), "in the order sent");
    queue.ack(&b.receipt).await.unwrap();
    queue.close().await; // as a worker that stopped with the first job unfinished
    assert_eq!(queue.ack(&a.receipt).await, Err(QueueError::ReceiptExpired), "receipts end with the consumer");

    let successor = kafka.worker().await;
    let again = next(&successor, Duration::from_secs(30), Duration::from_secs(15)).await.expect("the unfinished job comes back");
    assert_eq!(again.job, first, "from the committed offset: the first job's");
    successor.ack(&again.receipt).await.unwrap();
    // The second job ended after an unfinished one: it comes again too.
    let repeat = next(&successor, Duration::from_secs(30), Duration::from_secs(10)).await.expect("the job after it");
    assert_eq!(repeat.job, second);
    successor.ack(&repeat.receipt).await.unwrap();
    successor.close().await;

    let third = kafka.worker().await;
    assert!(next(&third, Duration::from_secs(30), Duration::from_secs(3)).await.is_none(), "both ended and committed");
    third.close().await;
}

#[tokio::test]
async fn dead_letters_keep_their_reason_and_reach_the_sweeper_once() {
    let kafka = Kafka::new(1);
    let queue = kafka.worker().await;
    let job = some_job(7);
    queue.send(&job).await.unwrap();
    let delivery = next(&queue, Duration::from_secs(30), Duration::from_secs(10)).await.unwrap();
    queue.dead_letter(&delivery.receipt, "no se puede decodificar").await.unwrap();
    assert!(next(&queue, Duration::from_secs(30), Duration::from_secs(2)).await.is_none(), "gone from the jobs");

    let start = Instant::now();
    let mut swept = None;
    while swept.is_none() && start.elapsed() < Duration::from_secs(20) {
        swept = queue.next_dead_letter(Duration::from_secs(60)).await.unwrap();
    }
    assert_eq!(swept, Some(job), "the sweeper gets the dead job");
    assert_eq!(queue.next_dead_letter(Duration::from_secs(60)).await.unwrap(), None, "once");

    let dead = kafka.read_all(&kafka.topics().dead());
    assert_eq!(dead.len(), 1, "kept in the dead-letter topic");
    let headers = &dead[0].1;
    assert!(headers.contains(&("anb-reason".into(), "no se puede decodificar".into())), "{headers:?}");
    assert!(headers.contains(&("anb-receives".into(), "1".into())), "{headers:?}");
    assert_eq!(anb_job_json::decode(&dead[0].0).unwrap().video_id.0, 7);
    queue.close().await;

    // Another sweeper of the group, once the group has given it the
    // partition (the mock waits 3 s before a group's first assignment).
    let sweeper = KafkaQueue::connect(kafka.settings()).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        assert_eq!(sweeper.next_dead_letter(Duration::from_secs(60)).await.unwrap(), None, "the group's offset was committed");
    }
    sweeper.close().await;
}

#[tokio::test]
async fn a_message_that_is_not_a_job_is_dead_lettered_and_the_jobs_go_on() {
    let kafka = Kafka::new(1);
    let queue = kafka.worker().await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &kafka.brokers).create().unwrap();
    let topic = kafka.topics().jobs();
    producer.send(FutureRecord::<str, str>::to(&topic).payload("{\"hello\":1}"), Duration::from_secs(10)).await.unwrap();
    contracts::queue_sets_aside_messages_that_are_not_jobs(&queue, &some_job(3)).await;
    let dead = kafka.read_all(&kafka.topics().dead());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, b"{\"hello\":1}");
    assert!(dead[0].1.contains(&("anb-reason".into(), "not a job".into())), "{:?}", dead[0].1);
    queue.close().await;
}

#[tokio::test]
async fn workers_of_one_group_share_the_partitions_and_take_each_job_once() {
    let kafka = Kafka::new(4);
    let one = kafka.worker().await;
    let two = kafka.worker().await;
    // The first worker's partitions were rebalanced when the second joined.
    let start = Instant::now();
    while !(one.assigned(Duration::ZERO).await.unwrap() && two.assigned(Duration::ZERO).await.unwrap())
        && start.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let jobs: Vec<Job> = (1..=24).map(some_job).collect();
    for job in &jobs {
        one.send(job).await.unwrap();
    }
    let take = |queue: KafkaQueue| async move {
        let mut got = Vec::new();
        while let Some(delivery) = next(&queue, Duration::from_secs(30), Duration::from_secs(4)).await {
            queue.ack(&delivery.receipt).await.unwrap();
            got.push(delivery.job);
        }
        queue.close().await;
        got
    };
    let (a, b) = tokio::join!(take(one), take(two));
    let mut all: Vec<&Job> = a.iter().chain(&b).collect();
    all.sort_by_key(|j| j.video_id.0);
    assert_eq!(all, jobs.iter().collect::<Vec<_>>(), "every job once, none twice");
    assert!(!a.is_empty() && !b.is_empty(), "both workers took jobs: {} and {}", a.len(), b.len());
}

#[tokio::test]
async fn partitions_paused_for_reading_ahead_flow_again_after_a_rebalance() {
    let kafka = Kafka::new(2);
    let mut settings = kafka.settings();
    settings.read_ahead = 1;
    let one = KafkaQueue::connect(settings).await.unwrap();
    assert!(one.assigned(Duration::from_secs(30)).await.unwrap());
    let jobs: Vec<Job> = (1..=8).map(some_job).collect();
    for job in &jobs {
        one.send(job).await.unwrap();
    }
    // One job held, one read ahead: the worker pauses its partitions.
    let held = next(&one, Duration::from_secs(60), Duration::from_secs(10)).await.expect("a job");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let two = kafka.worker().await;
    let mut got = vec![held.job];
    // Its partition may have moved to the second worker, which reads it again.
    let _ = one.ack(&held.receipt).await;
    let take = |queue: KafkaQueue| async move {
        let mut got = Vec::new();
        while let Some(delivery) = next(&queue, Duration::from_secs(30), Duration::from_secs(6)).await {
            queue.ack(&delivery.receipt).await.unwrap();
            got.push(delivery.job);
        }
        queue.close().await;
        got
    };
    let (a, b) = tokio::join!(take(one), take(two));
    got.extend(a.into_iter().chain(b));
    got.sort_by_key(|j| j.video_id.0);
    got.dedup();
    assert_eq!(got, jobs, "every job came through the rebalance");
}

#[tokio::test]
async fn sends_fail_while_the_brokers_are_down_and_succeed_once_they_are_back() {
    let kafka = Kafka::new(1);
    let Some(mock) = kafka.mock.as_ref() else {
        eprintln!("brokers of ANB_TEST_KAFKA_BROKERS cannot be stopped from here: this case runs on the mock cluster only");
        return;
    };
    let mut settings = kafka.settings();
    settings.send_timeout = Duration::from_secs(3);
    let queue = KafkaQueue::connect(settings).await.unwrap();
    for broker in 1..=3 {
        mock.broker_down(broker).unwrap();
    }
    let error = queue.send(&some_job(1)).await.expect_err("no broker takes the job");
    let QueueError::Backend(error) = error else { panic!("{error:?}") };
    assert_eq!(error.kind, BackendErrorKind::Unavailable, "{error}");
    for broker in 1..=3 {
        mock.broker_up(broker).unwrap();
    }
    let job = some_job(2);
    let start = Instant::now();
    while queue.send(&job).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "the brokers never came back");
    }
    assert!(queue.assigned(Duration::from_secs(30)).await.unwrap());
    let mut seen = HashSet::new();
    while let Some(delivery) = next(&queue, Duration::from_secs(30), Duration::from_secs(5)).await {
        seen.insert(delivery.job.video_id.0);
        queue.ack(&delivery.receipt).await.unwrap();
    }
    assert!(seen.contains(&2), "the job sent after the outage is delivered: {seen:?}");
    queue.close().await;
}

#[tokio::test]
async fn topics_are_made_once_with_the_partitions_asked_for_and_then_left_alone() {
    let kafka = Kafka::new(3);
    let queue = KafkaQueue::connect(kafka.settings()).await.unwrap();
    let mut other = kafka.settings();
    other.partitions = 5;
    KafkaQueue::connect(other).await.expect("existing topics are left as they are");
    queue.create_topics().await.unwrap();
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &kafka.brokers).create().unwrap();
    for topic in kafka.topics().all() {
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
        assert_eq!(metadata.topics()[0].partitions().len(), 3, "{topic}");
    }
}
