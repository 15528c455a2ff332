//! `anb-kafka`: [`KafkaQueue`], the [`JobQueue`] and [`DeadLetterQueue`]
//! ports on Kafka (`rdkafka`, librdkafka built from the crate's bundled
//! source).
//!
//! # Topics ([`Topics`], created by [`KafkaQueue::connect`] and `anb-worker provision`)
//!
//! | topic | what |
//! |---|---|
//! | `anb.jobs` | the jobs, keyed by video; read by the consumer group `anb.jobs.workers` |
//! | `anb.jobs.retry` | copies of jobs given back with a delay, each with the time it is due; read by the same group |
//! | `anb.jobs.dead` | jobs that will never succeed, with their reason; read by the group `anb.jobs.dead-letters` (the sweeper) and kept for the topic's retention (30 days) |
//!
//! # Deliveries
//!
//! Sending waits for the leader's acknowledgement with every in-sync
//! replica (`acks=all`, idempotent producer): a job is in the log before
//! [`JobQueue::send`] returns, so the outbox relay deletes its row only
//! then.
//!
//! A consuming process reads its partitions in a background task, ahead of
//! its job loops by at most a few messages (it pauses its partitions when
//! that many wait), and keeps polling while its jobs run, so the group never
//! takes its partitions away for being slow. Offsets are committed only
//! after a job ends (acknowledged, moved to the retry or dead-letter topic)
//! and in order: a partition's committed offset moves over a settled prefix
//! only. A process that dies leaves its unsettled jobs after the committed
//! offset, and the partition's next owner reads them again (jobs that
//! ended after an unsettled one come again too; the worker's steps are
//! idempotent).
//!
//! Kafka has no visibility timeout: a partition's messages are its owner's.
//! The adapter keeps the port's meaning inside the owner: each delivery has
//! a deadline, moved by [`JobQueue::extend`]; a job not extended in time
//! is handed out again (a new receipt, one more receive) at the next
//! `receive`. A receipt also ends when a rebalance moves its partition to
//! another process, which reads the job again.
//!
//! Giving a job back with a delay writes a copy, with its receive count and
//! the time it is due, to the retry topic, then settles the original: the
//! job's partition goes on at once. The reader keeps copies not yet due
//! aside in memory, offsets uncommitted, and hands each out when due; a
//! process that dies loses nothing (the retry partition's next owner reads
//! the copies again). Dead-lettering writes a copy with the reason to the
//! dead-letter topic, then settles the original. Either way a crash between
//! the two leaves a duplicate, never a loss (`LeasedQueue` admits one live
//! delivery per video).
//!
//! The receive count is what the adapter knows: the copies' carried count
//! plus its own deliveries. A job read again after its process died starts
//! over at one; `LeasedQueue`, which counts the takes of each video,
//! bounds the attempts across processes.

mod state;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anb_domain::ports::{DeadLetterQueue, HealthCheck, JobQueue, QueueError};
use anb_domain::{BackendError, Delivery, Job, Receipt};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::state::{Partition, Pending, Position, State};

/// How long a receive waits for a job by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// Deliveries of earlier copies of a job.
const RECEIVES_HEADER: &str = "anb-receives";
/// When a copy on the retry topic is due, in ms since the Unix epoch.
const DUE_HEADER: &str = "anb-due-ms";
/// Why a job was dead-lettered.
const REASON_HEADER: &str = "anb-reason";
/// How long the dead-letter topic keeps its messages.
const DEAD_RETENTION_MS: &str = "2592000000";
/// How often the reader looks at its copies' due times and its pause.
const TICK: Duration = Duration::from_millis(200);
/// Dead letters that are not jobs skipped in one sweep step, at most.
const NON_JOBS_PER_SWEEP: usize = 10;

/// The names of the topics and consumer groups, all under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The jobs.
    pub fn jobs(&self) -> String {
        self.prefix.clone()
    }

    /// Copies of jobs given back with a delay.
    pub fn retry(&self) -> String {
        format!("{}.retry", self.prefix)
    }

    /// Jobs that will never succeed.
    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Every topic, the jobs first.
    pub fn all(&self) -> [String; 3] {
        [self.jobs(), self.retry(), self.dead()]
    }

    /// The consumer group of the workers.
    pub fn workers_group(&self) -> String {
        format!("{}.workers", self.prefix)
    }

    /// The consumer group of the dead-letter sweepers.
    pub fn sweepers_group(&self) -> String {
        format!("{}.dead-letters", self.prefix)
    }
}

/// How a [`KafkaQueue`] connects, creates its topics and consumes.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Prefix of the topics' and groups' names ([`Topics`]).
    pub prefix: String,
    /// Partitions of each topic when this queue creates them: at most this
    /// many worker processes share the jobs.
    pub partitions: i32,
    /// Jobs read ahead of the job loops (their number, say).
    pub read_ahead: usize,
    /// How long a receive waits for a job.
    pub wait: Duration,
    /// How long a send may wait for the brokers before it fails.
    pub send_timeout: Duration,
    /// How long the group waits for a silent member before giving its
    /// partitions to the others (a killed worker's jobs come back after it).
    pub session_timeout: Duration,
    /// The client's name, as the brokers' tools show it.
    pub client_id: String,
}

impl KafkaSettings {
    /// Defaults around `brokers`: prefix `anb.jobs`, 6 partitions, 1 job read
    /// ahead, sends failing after 30 s, a 10 s session.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            prefix: "anb.jobs".into(),
            partitions: 6,
            read_ahead: 1,
            wait: DEFAULT_WAIT,
            send_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            client_id: format!("anb-{}", std::process::id()),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        // A request a broker never answers (one restarting, say) is given
        // up after 10 s and sent again, not after librdkafka's 60 s: the
        // group's session is 10 s too.
        config.set("bootstrap.servers", &self.brokers).set("client.id", &self.client_id).set("socket.timeout.ms", "10000");
        config
    }
}

/// Jobs on Kafka: see the [crate documentation](crate).
#[derive(Clone)]
pub struct KafkaQueue {
    shared: Arc<Shared>,
}

impl fmt::Debug for KafkaQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaQueue").field("brokers", &self.shared.settings.brokers).field("topics", &self.shared.topics).finish()
    }
}

struct Shared {
    settings: KafkaSettings,
    topics: Topics,
    producer: FutureProducer<Logs>,
    state: Arc<StdMutex<State>>,
    arrived: Arc<Notify>,
    reader: Mutex<Option<Reader>>,
    dead: Mutex<Option<DeadReader>>,
}

/// The consumer of the jobs and retry topics, and its background task.
struct Reader {
    consumer: Arc<StreamConsumer<Group>>,
    task: JoinHandle<()>,
}

/// The sweeper's consumer of the dead-letter topic; `last` is the message
/// handed out last, committed at the next call (the sweeper is done with it).
struct DeadReader {
    consumer: StreamConsumer<Logs>,
    last: Option<(i32, i64)>,
}

impl KafkaQueue {
    /// Creates the topics if missing ([`KafkaQueue::create_topics`]) and
    /// returns the queue. It joins the workers' group only at its first
    /// receive, so a process that only sends (a web server) never does.
    ///
    /// # Errors
    /// When the brokers cannot be reached or refuse the topics.
    pub async fn connect(settings: KafkaSettings) -> Result<Self, BackendError> {
        let producer: FutureProducer<Logs> = settings
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.timeout.ms", millis(settings.send_timeout))
            .create_with_context(Logs)
            .map_err(|e| kafka_error("configuring the producer", &e))?;
        let queue = Self {
            shared: Arc::new(Shared {
                topics: Topics::new(settings.prefix.clone()),
                settings,
                producer,
                state: Arc::new(StdMutex::new(State::default())),
                arrived: Arc::new(Notify::new()),
                reader: Mutex::new(None),
                dead: Mutex::new(None),
            }),
        };
        queue.create_topics().await?;
        Ok(queue)
    }

    /// Creates the topics that are missing, with [`KafkaSettings::partitions`]
    /// partitions and a replication factor of 3 (fewer on a smaller
    /// cluster); topics that exist are left as they are.
    ///
    /// # Errors
    /// When the brokers cannot be reached or refuse a topic.
    pub async fn create_topics(&self) -> Result<(), BackendError> {
        let settings = &self.shared.settings;
        // Reading metadata must not create topics with the brokers' defaults.
        let admin: AdminClient<Logs> = settings
            .client()
            .set("allow.auto.create.topics", "false")
            .create_with_context(Logs)
            .map_err(|e| kafka_error("configuring the admin client", &e))?;
        let timeout = Duration::from_secs(10);
        let (admin, metadata) = tokio::task::spawn_blocking(move || {
            let metadata = admin.inner().fetch_metadata(None, timeout);
            (admin, metadata)
        })
        .await
        .map_err(|e| BackendError::internal(format!("reading the cluster's metadata: {e}")))?;
        let metadata = metadata.map_err(|e| kafka_error(&format!("reaching the brokers at {}", settings.brokers), &e))?;
        let brokers = metadata.brokers().len();
        let existing: HashSet<&str> = metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name()).collect();
        let replication = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
        let in_sync = if replication >= 3 { "2" } else { "1" };
        let names = self.shared.topics.all();
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .filter(|name| !existing.contains(name.as_str()))
            .map(|name| {
                let topic =
                    NewTopic::new(name, settings.partitions, TopicReplication::Fixed(replication)).set("min.insync.replicas", in_sync);
                if *name == self.shared.topics.dead() { topic.set("retention.ms", DEAD_RETENTION_MS) } else { topic }
            })
            .collect();
        if topics.is_empty() {
            return Ok(());
        }
        let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
        let results = admin.create_topics(&topics, &options).await.map_err(|e| kafka_error("creating the topics", &e))?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(topic = %name, partitions = settings.partitions, replication, "topic created"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(BackendError::internal(format!("creating the topic {name}: {code}"))),
            }
        }
        Ok(())
    }

    /// The names this queue uses.
    pub fn topics(&self) -> &Topics {
        &self.shared.topics
    }

    /// Joins the workers' group if not yet done and waits, up to `within`,
    /// until the group gives this process partitions; whether it did.
    ///
    /// # Errors
    /// When the consumer cannot be made.
    pub async fn assigned(&self, within: Duration) -> Result<bool, BackendError> {
        let consumer = self.reader().await?;
        let start = Instant::now();
        while start.elapsed() < within {
            if consumer.assignment().is_ok_and(|a| a.count() > 0) {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(false)
    }

    /// Leaves the group: offsets settled so far are committed, jobs held or
    /// read ahead are left to the partitions' next owner (their receipts
    /// end). A later receive joins again. Worker processes call it at
    /// shutdown, so their partitions move at once rather than after the
    /// session timeout.
    pub async fn close(&self) {
        let mut reader = self.shared.reader.lock().await;
        if let Some(Reader { consumer, task }) = reader.take() {
            task.abort();
            let _ = task.await;
            let floors = {
                let mut state = self.lock();
                let floors = state.floors();
                state.clear();
                floors
            };
            // Committing and leaving wait for the brokers (a few ms, or
            // their timeout): off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(error) = commit(&*consumer, floors, CommitMode::Sync) {
                    tracing::warn!(%error, "committing on close");
                }
                consumer.unsubscribe();
                drop(consumer);
            })
            .await;
            self.lock().clear();
        }
        drop(reader);
        if let Some(dead) = self.shared.dead.lock().await.take() {
            let topic = self.shared.topics.dead();
            let _ = tokio::task::spawn_blocking(move || {
                if let Some((partition, offset)) = dead.last {
                    let _ = commit(&dead.consumer, vec![((topic, partition), offset + 1)], CommitMode::Sync);
                }
                drop(dead);
            })
            .await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The workers' consumer, made and subscribed at the first call.
    async fn reader(&self) -> Result<Arc<StreamConsumer<Group>>, BackendError> {
        let mut reader = self.shared.reader.lock().await;
        if let Some(r) = reader.as_ref() {
            return Ok(r.consumer.clone());
        }
        let settings = &self.shared.settings;
        let consumer: StreamConsumer<Group> = settings
            .client()
            .set("group.id", self.shared.topics.workers_group())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Eager rebalancing: every partition is revoked, then the new
            // assignment given, which is what `State` expects.
            .set("partition.assignment.strategy", "range,roundrobin")
            .set("session.timeout.ms", millis(settings.session_timeout))
            .set("heartbeat.interval.ms", millis(settings.session_timeout / 4))
            .create_with_context(Group { state: self.shared.state.clone() })
            .map_err(|e| kafka_error("configuring the consumer", &e))?;
        let topics = self.shared.topics.all();
        consumer.subscribe(&[&topics[0], &topics[1]]).map_err(|e| kafka_error("subscribing to the job topics", &e))?;
        let consumer = Arc::new(consumer);
        let task = tokio::spawn(self.clone().read(consumer.clone()));
        *reader = Some(Reader { consumer: consumer.clone(), task });
        Ok(consumer)
    }

    /// The background reader: polls all the time, keeps at most
    /// `read_ahead` jobs waiting (pausing its partitions beyond), and hands
    /// due copies over.
    async fn read(self, consumer: Arc<StreamConsumer<Group>>) {
        let read_ahead = self.shared.settings.read_ahead.max(1);
        let (mut paused, mut assignments) = (false, 0);
        let mut last_error: Option<Instant> = None;
        loop {
            let (full, now_assignments) = {
                let state = self.lock();
                (state.ready_len() >= read_ahead, state.assignments)
            };
            if now_assignments != assignments {
                // librdkafka keeps a partition paused through a rebalance
                // that gives it back: start each assignment unpaused.
                if let Ok(assignment) = consumer.assignment() {
                    let _ = consumer.resume(&assignment);
                }
                (paused, assignments) = (false, now_assignments);
            }
            if full != paused
                && let Ok(assignment) = consumer.assignment()
            {
                let changed = if full { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
                if changed.is_ok() {
                    paused = full;
                }
            }
            let mut arrived = false;
            match tokio::time::timeout(TICK, consumer.recv()).await {
                Err(_) => {}
                Ok(Ok(message)) => arrived = self.arrive(&message.detach()).await,
                Ok(Err(error)) => {
                    if last_error.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(%error, "reading the job topics");
                        last_error = Some(Instant::now());
                    }
                    tokio::time::sleep(TICK).await;
                }
            }
            if self.lock().promote(now_ms()) > 0 || arrived {
                self.shared.arrived.notify_waiters();
            }
        }
    }

    /// Takes a message in; whether a job became ready.
    async fn arrive(&self, message: &OwnedMessage) -> bool {
        let at = Position { topic: message.topic().to_owned(), partition: message.partition(), offset: message.offset() };
        let headers = message.headers();
        let receives = u32::try_from(header_int(headers, RECEIVES_HEADER).unwrap_or(0)).unwrap_or(u32::MAX);
        let due = header_int(headers, DUE_HEADER);
        match anb_job_json::decode(message.payload().unwrap_or_default()) {
            Ok(job) => {
                let mut state = self.lock();
                state.arrive(Pending { at, job, receives }, due, now_ms()) && state.ready_len() > 0
            }
            Err(error) => {
                // Not ours to act on: to the dead-letter topic, where it can
                // be looked at. Its offset stays open (nothing after it is
                // committed) until it is there.
                if self.lock().hold_open(&at) {
                    tracing::error!(%error, topic = %at.topic, partition = at.partition, offset = at.offset, "a message that is not a job: dead-lettered");
                    let payload = message.payload().unwrap_or_default().to_vec();
                    tokio::spawn(self.clone().set_aside(at, payload));
                }
                false
            }
        }
    }

    /// Writes a message that is not a job to the dead-letter topic, trying
    /// again until it is there, then settles its offset.
    async fn set_aside(self, at: Position, payload: Vec<u8>) {
        let dead = self.shared.topics.dead();
        let mut pause = Duration::from_secs(1);
        loop {
            let headers = OwnedHeaders::new().insert(Header { key: REASON_HEADER, value: Some("not a job") });
            match self.produce(&dead, "", &payload, headers).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "setting a message that is not a job aside; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
        let moved = self.lock().done(&at);
        self.committed(&at, moved).await;
    }

    /// Writes a message to `topic`, waiting for the brokers' acknowledgement.
    async fn produce(&self, topic: &str, key: &str, payload: &[u8], headers: OwnedHeaders) -> Result<(), BackendError> {
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(headers);
        match self.shared.producer.send(record, self.shared.settings.send_timeout).await {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(kafka_error(&format!("writing to {topic}"), &error)),
        }
    }

    /// Commits a partition's new committed offset, if it moved.
    async fn committed(&self, at: &Position, moved: Option<i64>) {
        let Some(offset) = moved else { return };
        let reader = self.shared.reader.lock().await;
        if let Some(reader) = reader.as_ref()
            && let Err(error) = commit(&*reader.consumer, vec![((at.topic.clone(), at.partition), offset)], CommitMode::Async)
        {
            // Not ours any more, or the brokers are away: the next commit carries it.
            tracing::debug!(%error, topic = %at.topic, partition = at.partition, offset, "commit left for later");
        }
    }

    /// Settles a held job's offset.
    async fn settle(&self, pending: &Pending) {
        let moved = self.lock().done(&pending.at);
        self.committed(&pending.at, moved).await;
    }

    /// Writes a copy of a held job to `topic`, then settles the original;
    /// when the copy cannot be written, the job goes back first in line.
    /// It runs as a task of its own: a caller that gives up waiting does
    /// not leave the job's offset open for good.
    async fn move_to(&self, pending: Pending, topic: String, headers: OwnedHeaders) -> Result<(), QueueError> {
        let queue = self.clone();
        tokio::spawn(async move { queue.move_now(pending, &topic, headers).await })
            .await
            .map_err(|e| QueueError::Backend(BackendError::internal(format!("moving a job: {e}"))))?
    }

    async fn move_now(&self, pending: Pending, topic: &str, headers: OwnedHeaders) -> Result<(), QueueError> {
        let receives = pending.receives.to_string();
        let headers = headers.insert(Header { key: RECEIVES_HEADER, value: Some(receives.as_str()) });
        let copy = anb_job_json::encode(&pending.job).into_bytes();
        if let Err(error) = self.produce(topic, &pending.job.video_id.0.to_string(), &copy, headers).await {
            self.lock().requeue(pending);
            self.shared.arrived.notify_waiters();
            return Err(error.into());
        }
        self.settle(&pending).await;
        Ok(())
    }

    /// The sweeper's consumer of the dead-letter topic.
    fn dead_reader(&self) -> Result<DeadReader, BackendError> {
        let settings = &self.shared.settings;
        let consumer: StreamConsumer<Logs> = settings
            .client()
            .set("group.id", self.shared.topics.sweepers_group())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", millis(settings.session_timeout))
            .set("heartbeat.interval.ms", millis(settings.session_timeout / 4))
            .create_with_context(Logs)
            .map_err(|e| kafka_error("configuring the dead-letter consumer", &e))?;
        consumer.subscribe(&[&self.shared.topics.dead()]).map_err(|e| kafka_error("subscribing to the dead-letter topic", &e))?;
        Ok(DeadReader { consumer, last: None })
    }
}

/// Ready when a broker answers for the jobs topic (`/api/ready`'s `queue`).
#[async_trait]
impl HealthCheck for KafkaQueue {
    async fn check(&self) -> Result<(), BackendError> {
        let (producer, topic) = (self.shared.producer.clone(), self.shared.topics.jobs());
        // librdkafka's metadata request blocks its thread.
        let metadata = tokio::task::spawn_blocking(move || {
            rdkafka::producer::Producer::client(&producer).fetch_metadata(Some(&topic), Duration::from_secs(2))
        })
        .await
        .map_err(|e| BackendError::internal(format!("asking the brokers: {e}")))?;
        metadata.map(drop).map_err(|e| kafka_error("reaching the brokers", &e))
    }
}

#[async_trait]
impl JobQueue for KafkaQueue {
    async fn send(&self, job: &Job) -> Result<(), QueueError> {
        let topic = self.shared.topics.jobs();
        Ok(self.produce(&topic, &job.video_id.0.to_string(), anb_job_json::encode(job).as_bytes(), OwnedHeaders::new()).await?)
    }

    async fn receive(&self, visibility: Duration) -> Result<Option<Delivery>, QueueError> {
        self.reader().await?;
        let until = Instant::now() + self.shared.settings.wait;
        loop {
            let notified = self.shared.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(delivery) = self.lock().take(Instant::now(), visibility) {
                return Ok(Some(delivery));
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            // Woken by a new job, or in time to find an overdue one.
            let _ = tokio::time::timeout((until - now).min(Duration::from_secs(1)), notified).await;
        }
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        self.lock().extend(receipt, Instant::now() + visibility)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let (at, moved) = {
            let mut state = self.lock();
            let pending = state.settle(receipt)?;
            let moved = state.done(&pending.at);
            (pending.at, moved)
        };
        self.committed(&at, moved).await;
        Ok(())
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), QueueError> {
        let pending = self.lock().settle(receipt)?;
        if delay.is_zero() {
            self.lock().requeue(pending);
            self.shared.arrived.notify_waiters();
            return Ok(());
        }
        let due = (now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))).to_string();
        let headers = OwnedHeaders::new().insert(Header { key: DUE_HEADER, value: Some(due.as_str()) });
        self.move_to(pending, self.shared.topics.retry(), headers).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<(), QueueError> {
        let pending = self.lock().settle(receipt)?;
        let reason: String = reason.chars().take(1000).collect();
        let headers = OwnedHeaders::new().insert(Header { key: REASON_HEADER, value: Some(reason.as_str()) });
        self.move_to(pending, self.shared.topics.dead(), headers).await
    }
}

/// The sweeper's reader of the dead-letter topic: each dead job is handed
/// out once to the sweepers' group (its offset committed at the next call,
/// whether or not the sweeper managed to mark its video: at most once, as
/// the worker that dead-letters a job marks its video `failed` first) and
/// stays in the topic (so `hide_for` has nothing to hide).
#[async_trait]
impl DeadLetterQueue for KafkaQueue {
    async fn next_dead_letter(&self, _hide_for: Duration) -> Result<Option<Job>, QueueError> {
        let mut slot = self.shared.dead.lock().await;
        if slot.is_none() {
            *slot = Some(self.dead_reader()?);
        }
        let Some(dead) = slot.as_mut() else { return Ok(None) };
        let topic = self.shared.topics.dead();
        for _ in 0..NON_JOBS_PER_SWEEP {
            if let Some((partition, offset)) = dead.last.take()
                && let Err(error) = commit(&dead.consumer, vec![((topic.clone(), partition), offset + 1)], CommitMode::Async)
            {
                tracing::debug!(%error, "dead-letter commit left for later");
            }
            let message = match tokio::time::timeout(self.shared.settings.wait, dead.consumer.recv()).await {
                Err(_) => return Ok(None),
                Ok(Err(error)) => return Err(kafka_error("reading the dead-letter topic", &error).into()),
                Ok(Ok(message)) => message,
            };
            dead.last = Some((message.partition(), message.offset()));
            match anb_job_json::decode(message.payload().unwrap_or_default()) {
                Ok(job) => return Ok(Some(job)),
                Err(error) => tracing::warn!(%error, offset = message.offset(), "a dead letter that is not a job, skipped"),
            }
        }
        Ok(None)
    }
}

/// Commits `offsets` (topic, partition → the next offset to read).
fn commit<C: Consumer<X>, X: ConsumerContext>(consumer: &C, offsets: Vec<(Partition, i64)>, mode: CommitMode) -> Result<(), KafkaError> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        list.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
    }
    if list.count() == 0 {
        return Ok(());
    }
    consumer.commit(&list, mode)
}

/// An integer header written as decimal text.
fn header_int<H: Headers>(headers: Option<&H>, name: &str) -> Option<i64> {
    headers?.iter().find(|h| h.key == name)?.value.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

/// A client error as a backend error: configuration mistakes are internal,
/// the rest (brokers away, timeouts) unavailability.
fn kafka_error(context: &str, error: &KafkaError) -> BackendError {
    let message = format!("{context}: {error}");
    match error {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Subscription(_) => BackendError::internal(message),
        _ => BackendError::unavailable(message),
    }
}

/// librdkafka's logs and errors, into `tracing`.
#[derive(Debug, Clone, Copy)]
struct Logs;

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client");
    }
}

impl ConsumerContext for Logs {}

fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(facility, "librdkafka: {message}");
        }
        RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
    }
}

/// The workers' consumer context: rebalances update the [`State`].
struct Group {
    state: Arc<StdMutex<State>>,
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClientContext for Group {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka consumer");
    }
}

fn partitions(list: &TopicPartitionList) -> impl Iterator<Item = Partition> + '_ {
    list.elements().into_iter().map(|e| (e.topic().to_owned(), e.partition()))
}

impl ConsumerContext for Group {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let lost = consumer.assignment_lost();
            tracing::info!(partitions = list.count(), lost, "rebalance: partitions revoked");
            self.lock().revoke(partitions(list), lost);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = list.count(), "rebalance: partitions assigned");
                let kept = self.lock().assign(&partitions(list).collect::<HashSet<_>>());
                if let Err(error) = commit(consumer, kept, CommitMode::Async) {
                    tracing::debug!(%error, "commit after the rebalance left for later");
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hang_off_one_prefix() {
        let topics = Topics::new("anb.jobs");
        assert_eq!(topics.all(), ["anb.jobs".to_owned(), "anb.jobs.retry".into(), "anb.jobs.dead".into()]);
        assert_eq!(topics.workers_group(), "anb.jobs.workers");
        assert_eq!(topics.sweepers_group(), "anb.jobs.dead-letters");
    }

    #[test]
    fn integer_headers_are_decimal_text() {
        let headers = OwnedHeaders::new()
            .insert(Header { key: RECEIVES_HEADER, value: Some("2") })
            .insert(Header { key: DUE_HEADER, value: Some("x") });
        assert_eq!(header_int(Some(&headers), RECEIVES_HEADER), Some(2));
        assert_eq!(header_int(Some(&headers), DUE_HEADER), None);
        assert_eq!(header_int(Some(&headers), REASON_HEADER), None);
        assert_eq!(header_int::<OwnedHeaders>(None, RECEIVES_HEADER), None);
    }
}
