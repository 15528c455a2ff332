//! The broker scale-out scenario of [`brokers`] on Kafka: librdkafka's mock
//! cluster (three brokers held by this test process), every broker taken
//! down mid-run and brought back, a worker killed mid-transcode. A test
//! binary of its own, so that the in-process brokers do not share the two
//! cores with the other scale-out tests.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};

mod brokers;
mod common;

use crate::brokers::{report, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_each_upload_is_processed_once_through_a_broker_outage_and_a_killed_worker() {
    let mock = MockCluster::new(3).expect("librdkafka's mock cluster starts");
    let brokers = mock.bootstrap_servers();
    let topic = format!("anb.{}", uuid::Uuid::new_v4().simple());
    // The mock has no CreateTopics request: the topics are made through its
    // own API, and `anb-worker provision` finds them.
    for name in [topic.clone(), format!("{topic}.retry"), format!("{topic}.dead")] {
        mock.create_topic(&name, 6, 3).expect("the mock creates the topic");
    }
    let env = [("ANB_QUEUE", "kafka".to_owned()), ("ANB_KAFKA_BROKERS", brokers.clone()), ("ANB_KAFKA_TOPIC", topic.clone())];
    let all_brokers = |up: bool| {
        for id in 1..=3 {
            if up { mock.broker_up(id) } else { mock.broker_down(id) }.expect("the mock broker changes state");
        }
    };
    let run = run(&env, &format!("ANB_KAFKA_DEAD_LETTER_TOPIC={topic}.dead"), || all_brokers(false), || all_brokers(true)).await;

    // The broken job is kept in the dead-letter topic, once.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}.inspector"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let dead = format!("{topic}.dead");
    let metadata = consumer.fetch_metadata(Some(&dead), Duration::from_secs(10)).unwrap();
    let mut list = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        list.add_partition_offset(&dead, partition.id(), Offset::Beginning).unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut videos = Vec::new();
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(5) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let body: serde_json::Value = serde_json::from_slice(message.payload().unwrap_or_default()).unwrap();
            videos.push(body["video_id"].as_i64().unwrap());
        }
    }
    assert_eq!(videos, vec![run.corrupt], "the broken job is dead-lettered once");
    report("Kafka (librdkafka mock cluster)", &run);
}
