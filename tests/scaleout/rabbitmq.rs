//! The broker scale-out scenario of [`crate::brokers`] on RabbitMQ: a
//! `rabbitmq-server` of the test's own, stopped and started again mid-run,
//! and a worker killed mid-transcode.

use anb_amqp::{AmqpQueue, AmqpSettings, AmqpUrl};
use anb_testkit::RabbitBroker;

use crate::brokers::{report, run};

// Several threads: the broker is stopped and started by blocking calls,
// while the HTTP client's connections stay looked after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_each_upload_is_processed_once_through_a_broker_restart_and_a_killed_worker() {
    let broker = RabbitBroker::create();
    let prefix = format!("anb.{}", uuid::Uuid::new_v4().simple());
    let env = [("ANB_QUEUE", "rabbitmq".to_owned()), ("ANB_AMQP_URL", broker.url()), ("ANB_AMQP_QUEUE", prefix.clone())];
    let run = run(&env, &format!("ANB_AMQP_QUEUE={prefix}"), || broker.stop(), || broker.start()).await;

    // The broken job is kept on the broker, in its dead-letter or failed queue.
    let mut settings = AmqpSettings::new(AmqpUrl::parse(&broker.url()).unwrap());
    settings.prefix = prefix;
    let queue = AmqpQueue::connect(settings).await.unwrap();
    let topology = queue.topology().clone();
    let kept = queue.ready(&topology.dead()).await.unwrap() + queue.ready(&topology.failed()).await.unwrap();
    assert_eq!(kept, 1, "the broken job is dead-lettered once");
    assert_eq!(queue.ready(&topology.jobs()).await.unwrap(), 0, "nothing left waiting");
    queue.close().await;
    report("RabbitMQ", &run);
}
