//! The queue family, the one place that knows the queue technologies: the
//! database queue (a table beside the videos), SQS, RabbitMQ and Kafka.
//! For each: what its settings must be ([`check`]), how a process connects
//! ([`build`]: the queue, the outbox relay that feeds an external one, the
//! sweeper of its dead letters), and what `anb-worker provision` creates
//! ([`provision`]).
//!
//! Adding a technology: an adapter crate implementing `JobQueue` and
//! `DeadLetterQueue` (its messages through `anb-job-json`), passing
//! testkit's queue contract; a cargo feature of this crate; a `QueueKind`
//! variant in `config`; then an arm in each function below.

// A build without some of the technologies leaves their helpers unused.
#![cfg_attr(not(all(feature = "aws", feature = "rabbitmq", feature = "kafka")), allow(unused_variables, dead_code, clippy::unused_async))]

use std::sync::Arc;
use std::time::Duration;

use anb_application::DeadLetterSweeper;
use anb_domain::ports::{Clock, JobQueue, VideoRepository};
use anb_sql::{Database, OutboxRelay};

use crate::StartupError;
use crate::aws::Cloud;
use crate::checked::{not_built, required};
use crate::config::{CommonConfig, QueueKind, Secret};

/// How often an idle outbox relay looks for new jobs.
const RELAY_INTERVAL: Duration = Duration::from_millis(200);
/// How often worker hosts look in the dead-letter queue for jobs no worker
/// finished (see [`DeadLetterSweeper`]).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Checks the queue settings without connecting.
pub(crate) fn check(config: &CommonConfig) -> Result<(), StartupError> {
    match config.queue {
        QueueKind::Database => {}
        QueueKind::Sqs => {
            if !cfg!(feature = "aws") {
                return Err(not_built("ANB_QUEUE=sqs", "aws"));
            }
            required(
                config.sqs_queue_url.as_deref(),
                "ANB_SQS_QUEUE_URL (--sqs-queue-url) must name the queue with ANB_QUEUE=sqs; `anb-worker provision` prints it",
            )?;
        }
        QueueKind::Rabbitmq => {
            if !cfg!(feature = "rabbitmq") {
                return Err(not_built("ANB_QUEUE=rabbitmq", "rabbitmq"));
            }
            let url = required(
                config.amqp_url.as_ref().map(Secret::expose),
                "ANB_AMQP_URL (--amqp-url) must name the broker with ANB_QUEUE=rabbitmq",
            )?;
            #[cfg(feature = "rabbitmq")]
            anb_amqp::AmqpUrl::parse(url).map_err(|e| StartupError::Config(format!("ANB_AMQP_URL: {e}")))?;
        }
        QueueKind::Kafka => {
            if !cfg!(feature = "kafka") {
                return Err(not_built("ANB_QUEUE=kafka", "kafka"));
            }
            required(config.kafka_brokers.as_deref(), "ANB_KAFKA_BROKERS (--kafka-brokers) must name the brokers with ANB_QUEUE=kafka")?;
        }
    }
    Ok(())
}

/// Checks the queue settings for `anb-worker provision`, which makes the
/// SQS queue whose URL the other processes are then given.
pub(crate) fn check_for_provision(config: &CommonConfig) -> Result<(), StartupError> {
    match config.queue {
        QueueKind::Sqs if !cfg!(feature = "aws") => Err(not_built("ANB_QUEUE=sqs", "aws")),
        QueueKind::Sqs => Ok(()),
        _ => check(config),
    }
}

/// The queue of a process and what comes with it.
pub(crate) struct Queues {
    /// Where jobs are sent and received.
    pub jobs: Arc<dyn JobQueue>,
    /// Moves jobs from the database outbox to an external queue.
    pub relay: Option<OutboxRelay>,
    /// Marks the videos of dead-lettered jobs failed (worker hosts).
    pub sweeper: Option<DeadLetterSweeper>,
    /// A connection to close at the end.
    pub broker: Option<Broker>,
    /// Attempts a job gets: the setting, or the SQS redrive policy's count.
    pub max_attempts: u32,
    /// Whether the broker answers (`/api/ready`); none for the database
    /// queue, which the database's own check covers.
    pub check: Option<Arc<dyn anb_domain::ports::HealthCheck>>,
}

/// What the sweeper of dead letters needs besides the queue.
pub(crate) struct SweepPorts {
    pub videos: Arc<dyn VideoRepository>,
    pub clock: Arc<dyn Clock>,
}

/// The queue the configuration names, for a process running `workers` job
/// loops (a web server with none still sends jobs).
pub(crate) async fn build(
    config: &CommonConfig,
    cloud: &Cloud,
    database: &Database,
    workers: u32,
    sweep: SweepPorts,
) -> Result<Queues, StartupError> {
    match config.queue {
        #[cfg(feature = "aws")]
        QueueKind::Sqs => sqs(config, cloud, database, workers, sweep).await,
        #[cfg(feature = "rabbitmq")]
        QueueKind::Rabbitmq => {
            let amqp = Arc::new(amqp_queue(config, workers).await.map_err(StartupError::Queue)?);
            Ok(broker(config, database, workers, sweep, amqp.clone(), Broker::Amqp(amqp)))
        }
        #[cfg(feature = "kafka")]
        QueueKind::Kafka => {
            let kafka = Arc::new(kafka_queue(config, workers).await.map_err(StartupError::Queue)?);
            Ok(broker(config, database, workers, sweep, kafka.clone(), Broker::Kafka(kafka)))
        }
        // The database queue (the others are refused by `check` when not built).
        _ => Ok(Queues {
            jobs: Arc::new(database.queue()),
            relay: None,
            sweeper: None,
            broker: None,
            max_attempts: config.max_attempts,
            check: None,
        }),
    }
}

/// RabbitMQ or Kafka (`adapter`: its jobs, its dead letters and its
/// readiness), fed by the outbox relay.
#[cfg(any(feature = "rabbitmq", feature = "kafka"))]
fn broker<A>(config: &CommonConfig, database: &Database, workers: u32, sweep: SweepPorts, adapter: Arc<A>, connection: Broker) -> Queues
where
    A: JobQueue + anb_domain::ports::DeadLetterQueue + anb_domain::ports::HealthCheck,
{
    let (jobs, dead, check): (Arc<dyn JobQueue>, Arc<dyn anb_domain::ports::DeadLetterQueue>, Arc<dyn anb_domain::ports::HealthCheck>) =
        (adapter.clone(), adapter.clone(), adapter);
    let relay = config.outbox_relay.then(|| OutboxRelay::new(database.queue(), jobs.clone(), RELAY_INTERVAL));
    // Jobs dead-lettered with no worker left to mark their videos
    // (RabbitMQ's delivery limit, every attempt cut short) are marked
    // `failed` by the worker hosts' sweep.
    let sweeper = (workers > 0).then(|| sweeper(dead, sweep));
    Queues {
        // A lost connection (RabbitMQ) or a rebalance (Kafka) hands a held
        // job out again: the lease keeps its worker going, and counts the
        // takes where the broker's count starts over.
        jobs: Arc::new(anb_sql::LeasedQueue::new(jobs, database.clone())),
        relay,
        sweeper,
        broker: Some(connection),
        max_attempts: config.max_attempts,
        check: Some(check),
    }
}

/// SQS: attempts follow the queue's redrive policy.
#[cfg(feature = "aws")]
async fn sqs(config: &CommonConfig, cloud: &Cloud, database: &Database, workers: u32, sweep: SweepPorts) -> Result<Queues, StartupError> {
    let url = config.sqs_queue_url.as_deref().unwrap_or_default();
    let sqs = Arc::new(anb_aws::SqsQueue::new(cloud.config().await, url));
    // The last attempt must be the last receive before the redrive policy
    // moves the job to the dead-letter queue.
    let max_attempts = match sqs.max_receive_count().await.map_err(StartupError::Queue)? {
        Some(count) => {
            if count != config.max_attempts {
                tracing::info!(max_attempts = count, "attempts follow the queue's redrive policy");
            }
            count
        }
        None => {
            tracing::warn!("the SQS queue has no redrive policy: failed jobs will not reach a dead-letter queue");
            config.max_attempts
        }
    };
    let relay = config.outbox_relay.then(|| OutboxRelay::new(database.queue(), sqs.clone(), RELAY_INTERVAL));
    // Jobs whose every attempt was cut short reach the DLQ by the redrive
    // policy alone; worker hosts mark their videos failed. (Only worker hosts
    // look the DLQ up: the web servers' role may not.)
    let dead = if workers > 0 { sqs.dead_letter_queue().await.map_err(StartupError::Queue)? } else { None };
    let sweeper = dead.map(|dead| sweeper(Arc::new(dead), sweep));
    // SQS may hand out a job twice: a copy waits while a live worker holds the video.
    let jobs = Arc::new(anb_sql::LeasedQueue::new(sqs.clone(), database.clone()));
    Ok(Queues { jobs, relay, sweeper, broker: None, max_attempts, check: Some(sqs) })
}

#[cfg(any(feature = "aws", feature = "rabbitmq", feature = "kafka"))]
fn sweeper(dead: Arc<dyn anb_domain::ports::DeadLetterQueue>, sweep: SweepPorts) -> DeadLetterSweeper {
    DeadLetterSweeper::new(dead, sweep.videos, sweep.clock, Arc::new(anb_metrics::MetricsJobEvents), SWEEP_INTERVAL)
}

/// A broker whose clients say goodbye: RabbitMQ gets its deliveries back at
/// once, Kafka moves the partitions of a leaving worker at once (rather than
/// after its session timeout).
#[derive(Debug, Clone)]
pub(crate) enum Broker {
    #[cfg(feature = "rabbitmq")]
    Amqp(Arc<anb_amqp::AmqpQueue>),
    #[cfg(feature = "kafka")]
    Kafka(Arc<anb_kafka::KafkaQueue>),
}

impl Broker {
    pub(crate) async fn close(&self) {
        match *self {
            #[cfg(feature = "rabbitmq")]
            Self::Amqp(ref queue) => queue.close().await,
            #[cfg(feature = "kafka")]
            Self::Kafka(ref queue) => queue.close().await,
        }
    }
}

/// The RabbitMQ queue of `ANB_AMQP_URL`, its topology declared, with a
/// prefetch of `workers`.
#[cfg(feature = "rabbitmq")]
async fn amqp_queue(config: &CommonConfig, workers: u32) -> Result<anb_amqp::AmqpQueue, anb_domain::BackendError> {
    use anb_amqp::{AmqpSettings, AmqpUrl};
    let url = config.amqp_url.as_ref().map(Secret::expose).unwrap_or_default();
    let mut settings = AmqpSettings::new(AmqpUrl::parse(url).map_err(anb_domain::BackendError::internal)?);
    settings.prefix.clone_from(&config.amqp_queue);
    settings.max_attempts = config.max_attempts;
    settings.prefetch = u16::try_from(workers.max(1)).unwrap_or(u16::MAX);
    settings.connection_name = format!("anb-{}-{}", if workers > 0 { "worker" } else { "web" }, std::process::id());
    anb_amqp::AmqpQueue::connect(settings).await
}

/// The Kafka queue of `ANB_KAFKA_BROKERS`, its topics created if missing,
/// reading `workers` jobs ahead.
#[cfg(feature = "kafka")]
async fn kafka_queue(config: &CommonConfig, workers: u32) -> Result<anb_kafka::KafkaQueue, anb_domain::BackendError> {
    let brokers = config.kafka_brokers.as_deref().unwrap_or_default();
    let mut settings = anb_kafka::KafkaSettings::new(brokers.trim());
    settings.prefix.clone_from(&config.kafka_topic);
    settings.partitions = config.kafka_partitions;
    settings.read_ahead = usize::try_from(workers.max(1)).unwrap_or(usize::MAX);
    settings.client_id = format!("anb-{}-{}", if workers > 0 { "worker" } else { "web" }, std::process::id());
    anb_kafka::KafkaQueue::connect(settings).await
}

/// Creates what the queue settings name, when missing (the SQS queue and its
/// dead-letter queue with a redrive after `ANB_MAX_ATTEMPTS` receives; the
/// RabbitMQ exchange, queues and bindings; the Kafka topics), and returns
/// the settings that name them. Nothing for the database queue.
pub(crate) async fn provision(
    config: &CommonConfig,
    cloud: &Cloud,
    sqs_queue_name: &str,
) -> Result<Vec<(&'static str, String)>, StartupError> {
    match config.queue {
        #[cfg(feature = "aws")]
        QueueKind::Sqs => {
            let queues = anb_aws::SqsQueue::provision(cloud.config().await, sqs_queue_name, config.max_attempts)
                .await
                .map_err(|e| StartupError::Provision("SQS", e))?;
            tracing::info!(
                queue = queues.queue_url,
                dead_letter = queues.dead_letter_url,
                max_receives = config.max_attempts,
                "queues ready"
            );
            Ok(vec![("ANB_SQS_QUEUE_URL", queues.queue_url), ("ANB_SQS_DEAD_LETTER_URL", queues.dead_letter_url)])
        }
        #[cfg(feature = "rabbitmq")]
        QueueKind::Rabbitmq => {
            let queue = amqp_queue(config, 1).await.map_err(|e| StartupError::Provision("RabbitMQ", e))?;
            let topology = queue.topology();
            tracing::info!(exchange = topology.exchange(), queues = ?topology.queues(), delivery_limit = config.max_attempts - 1, "exchange and queues ready");
            queue.close().await;
            Ok(vec![
                ("ANB_AMQP_QUEUE", topology.jobs()),
                ("ANB_AMQP_DEAD_LETTER_QUEUE", topology.dead()),
                ("ANB_AMQP_FAILED_QUEUE", topology.failed()),
            ])
        }
        #[cfg(feature = "kafka")]
        QueueKind::Kafka => {
            let queue = kafka_queue(config, 0).await.map_err(|e| StartupError::Provision("Kafka", e))?;
            let topics = queue.topics();
            tracing::info!(topics = ?topics.all(), partitions = config.kafka_partitions, "topics ready");
            Ok(vec![
                ("ANB_KAFKA_TOPIC", topics.jobs()),
                ("ANB_KAFKA_RETRY_TOPIC", topics.retry()),
                ("ANB_KAFKA_DEAD_LETTER_TOPIC", topics.dead()),
                ("ANB_KAFKA_GROUP", topics.workers_group()),
            ])
        }
        _ => Ok(Vec::new()),
    }
}
