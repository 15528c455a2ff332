//! `anb-amqp`: [`AmqpQueue`], the [`JobQueue`] and [`DeadLetterQueue`] ports
//! on RabbitMQ (AMQP 0.9.1, with `lapin`).
//!
//! # Topology ([`Topology`], declared by [`AmqpQueue::connect`] and `anb-worker provision`)
//!
//! One durable direct exchange, named after the prefix (`anb.jobs` by
//! default), routes by key to durable quorum queues:
//!
//! | key | queue | what |
//! |---|---|---|
//! | `jobs` | `anb.jobs` | the jobs; `x-delivery-limit` = attempts − 1, dead-letters to key `dead` |
//! | `delay.5s`, … | `anb.jobs.delay.5s`, … | one per delay tier ([`DELAY_TIERS`]): no consumer, a queue-wide TTL, then dead-lettered back to key `jobs` |
//! | `dead` | `anb.jobs.dead` | jobs that will never succeed: by the worker (with its reason) or by the broker (delivery limit) |
//! | `failed` | `anb.jobs.failed` | where the sweeper moves the dead jobs once their videos are marked `failed`; kept for inspection and re-drive |
//!
//! Dead-lettering out of the job and delay queues is at-least-once
//! (`x-dead-letter-strategy`, with `x-overflow=reject-publish`, RabbitMQ
//! 3.10 and later), so a broker failure between the two queues loses nothing.
//!
//! # Deliveries
//!
//! Publishing waits for the broker's confirm, `mandatory`, persistent: a job
//! is in a queue on disk before [`JobQueue::send`] returns (the outbox relay
//! deletes its row only then), and an unroutable publish is an error, not a
//! silent drop. Workers consume with manual acks and a prefetch of their
//! number of job loops. A receive count is the broker's `x-delivery-count`
//! (returns to the queue: a nack, a worker whose connection died) plus the
//! receives carried by our own header on copies (`x-anb-receives`), plus one.
//!
//! AMQP has no visibility timeout: a delivery is ours until we settle it or
//! our connection dies. The adapter keeps the port's meaning anyway: each
//! delivery has a deadline, moved by [`JobQueue::extend`]; a delivery not
//! extended in time is given back to the queue (a nack) at the next
//! `receive` of this process. A receipt also stops being ours when its
//! connection is lost (the broker has put the job back by then).
//!
//! Giving a job back with a delay publishes a copy with its receive count
//! to the smallest delay tier at least as long (so it never comes back
//! early; at most [`DELAY_TIERS`]'s last, 10 minutes), then acknowledges
//! the original. Dead-lettering publishes a copy with the reason to `dead`,
//! then acknowledges: a crash between the two leaves a duplicate, never a
//! loss, and duplicates are harmless (the worker's steps are idempotent and
//! `LeasedQueue` admits one live delivery per video).
//!
//! # Connection
//!
//! One connection a process, two channels (publishing with confirms;
//! consuming), heartbeats every 10 s unless the URL sets them. A lost
//! connection is opened again on the next call, after a back-off from 0.5 s
//! doubling to 30 s while the broker stays unreachable; the topology is
//! declared again each time. The URL's password never reaches a log or an
//! error ([`AmqpUrl`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use anb_domain::ports::{DeadLetterQueue, HealthCheck, JobQueue, QueueError};
use anb_domain::{BackendError, Delivery, Job, Receipt};
use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, ExchangeKind};
use tokio::sync::Mutex;

/// The delay queues, in seconds: a job given back with a delay waits in the
/// shortest one at least as long. Dense up to 30 s, where the retry delay
/// and the wait for a dead worker's lease (at most the job visibility) fall.
pub const DELAY_TIERS: [u64; 13] = [1, 2, 5, 10, 15, 20, 25, 30, 45, 60, 120, 300, 600];
/// How long a receive waits for a job by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// Receives of earlier copies of a job.
const RECEIVES_HEADER: &str = "x-anb-receives";
/// Why a job was dead-lettered by a worker.
const REASON_HEADER: &str = "x-anb-reason";
const HEARTBEAT_SECONDS: u16 = 10;
const CONNECT_TIMEOUT_MS: u64 = 5_000;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Dead letters that are not jobs moved aside in one sweep step, at most.
const NON_JOBS_PER_SWEEP: usize = 10;

/// An AMQP URL whose password never shows: `Debug` and [`AmqpUrl::redacted`]
/// print `amqp://user:***@host:port/vhost`.
#[derive(Clone)]
pub struct AmqpUrl(AMQPUri);

impl AmqpUrl {
    /// Parses `amqp://` or `amqps://` URLs; heartbeats every 10 s and a 5 s
    /// connection timeout unless the URL's query sets them.
    ///
    /// # Errors
    /// A message naming what is wrong, without the password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let mut uri: AMQPUri = url.parse().map_err(|e: String| {
            let shown = url.split_once('@').map_or_else(|| url.to_owned(), |(_, host)| format!("…@{host}"));
            format!("not an AMQP URL ({shown}): {e}")
        })?;
        uri.query.heartbeat.get_or_insert(HEARTBEAT_SECONDS);
        uri.query.connection_timeout.get_or_insert(CONNECT_TIMEOUT_MS);
        Ok(Self(uri))
    }

    /// The URL with its password replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        let a = &self.0.authority;
        let vhost = if self.0.vhost == "/" { String::new() } else { self.0.vhost.clone() };
        format!("{}://{}:***@{}:{}/{}", self.0.scheme, a.userinfo.username, a.host, a.port, vhost)
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The names of the exchange and queues, all under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// Names under `prefix` (the exchange's name and the job queue's).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The direct exchange every message is published to.
    pub fn exchange(&self) -> &str {
        &self.prefix
    }

    /// The queue workers consume.
    pub fn jobs(&self) -> String {
        self.prefix.clone()
    }

    /// Where dead jobs arrive.
    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Where dead jobs rest once their videos are `failed`.
    pub fn failed(&self) -> String {
        format!("{}.failed", self.prefix)
    }

    /// The delay queue of `seconds` (one of [`DELAY_TIERS`]).
    pub fn delay(&self, seconds: u64) -> String {
        format!("{}.delay.{seconds}s", self.prefix)
    }

    /// Every queue, the job queue first.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = vec![self.jobs(), self.dead(), self.failed()];
        queues.extend(DELAY_TIERS.iter().map(|&s| self.delay(s)));
        queues
    }
}

/// The routing key of a delay tier.
fn delay_key(seconds: u64) -> String {
    format!("delay.{seconds}s")
}

/// The shortest tier at least `delay` long (the longest beyond it).
fn delay_tier(delay: Duration) -> u64 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    DELAY_TIERS.iter().copied().find(|&tier| tier >= seconds).unwrap_or(DELAY_TIERS[DELAY_TIERS.len() - 1])
}

/// How an [`AmqpQueue`] connects and consumes.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    pub url: AmqpUrl,
    /// Prefix of the exchange's and queues' names ([`Topology`]).
    pub prefix: String,
    /// Deliveries of a job before the broker dead-letters it by itself:
    /// the job queue's `x-delivery-limit` is one less. Every process sharing
    /// the queue must agree (the broker refuses another value).
    pub max_attempts: u32,
    /// Jobs handed to this process at once (its job loops).
    pub prefetch: u16,
    /// How long a receive waits for a job.
    pub wait: Duration,
    /// The connection's name, as the broker's tools show it.
    pub connection_name: String,
}

impl AmqpSettings {
    /// Defaults around `url`: prefix `anb.jobs`, 3 attempts, a prefetch of 1.
    pub fn new(url: AmqpUrl) -> Self {
        Self {
            url,
            prefix: "anb.jobs".into(),
            max_attempts: 3,
            prefetch: 1,
            wait: DEFAULT_WAIT,
            connection_name: format!("anb-{}", std::process::id()),
        }
    }
}

/// Jobs on RabbitMQ: see the [crate documentation](crate).
#[derive(Clone)]
pub struct AmqpQueue {
    shared: Arc<Shared>,
}

impl fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpQueue").field("url", &self.shared.settings.url).field("topology", &self.shared.topology).finish_non_exhaustive()
    }
}

struct Shared {
    settings: AmqpSettings,
    topology: Topology,
    link: Mutex<LinkState>,
    consumer: Mutex<Option<(u64, Consumer)>>,
    in_flight: StdMutex<HashMap<String, InFlight>>,
}

#[derive(Default)]
struct LinkState {
    current: Option<Link>,
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
}

/// One connection and its channels; `generation` counts connections.
#[derive(Clone)]
struct Link {
    generation: u64,
    connection: Arc<Connection>,
    publisher: Channel,
    consumer: Channel,
}

/// A delivery this process holds.
struct InFlight {
    generation: u64,
    acker: Acker,
    deadline: Instant,
    job: Job,
    receives: u32,
    message_id: Option<ShortString>,
}

impl AmqpQueue {
    /// Connects, declares the topology ([`Topology`]) and returns the queue.
    ///
    /// # Errors
    /// When the broker cannot be reached, refuses the credentials, or holds
    /// the queues with other arguments (another `max_attempts`, say).
    pub async fn connect(settings: AmqpSettings) -> Result<Self, BackendError> {
        let topology = Topology::new(settings.prefix.clone());
        let queue = Self {
            shared: Arc::new(Shared {
                settings,
                topology,
                link: Mutex::new(LinkState::default()),
                consumer: Mutex::new(None),
                in_flight: StdMutex::new(HashMap::new()),
            }),
        };
        queue.link().await?;
        Ok(queue)
    }

    /// Closes the connection: the deliveries it holds go back to the broker.
    /// A later call connects again.
    pub async fn close(&self) {
        let link = self.shared.link.lock().await.current.take();
        *self.shared.consumer.lock().await = None;
        if let Some(link) = link {
            self.forget(link.generation);
            let _ = link.connection.close(200, "closing".into()).await;
        }
    }

    /// The names this queue uses.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// Messages ready in `queue` (one of [`Topology::queues`]).
    ///
    /// # Errors
    /// When the broker cannot be reached or has no such queue.
    pub async fn ready(&self, queue: &str) -> Result<u32, BackendError> {
        let link = self.link().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        // A passive declare on a missing queue closes the channel: use a channel of its own.
        let channel = link.connection.create_channel().await.map_err(|e| amqp_error("opening a channel", &e))?;
        let declared = channel.queue_declare(queue.into(), options, FieldTable::default()).await;
        let _ = channel.close(200, "done".into()).await;
        Ok(declared.map_err(|e| amqp_error(&format!("reading the queue {queue}"), &e))?.message_count())
    }

    /// The current connection, opened (again) if needed.
    async fn link(&self) -> Result<Link, BackendError> {
        let mut state = self.shared.link.lock().await;
        if let Some(link) = &state.current {
            if link.connection.status().connected() {
                return Ok(link.clone());
            }
            let generation = link.generation;
            state.current = None;
            self.forget(generation);
            tracing::warn!("connection to the broker lost");
        }
        if let Some(at) = state.retry_at {
            let now = Instant::now();
            if now < at {
                return Err(BackendError::unavailable(format!(
                    "the broker at {} is unreachable; next try in {:.1} s",
                    self.shared.settings.url.redacted(),
                    (at - now).as_secs_f64()
                )));
            }
        }
        let generation = state.generation + 1;
        match self.open(generation).await {
            Ok(link) => {
                tracing::info!(broker = %self.shared.settings.url.redacted(), generation, "connected to the broker");
                state.generation = generation;
                state.failures = 0;
                state.retry_at = None;
                state.current = Some(link.clone());
                Ok(link)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let backoff = FIRST_BACKOFF.saturating_mul(1 << state.failures.min(8).saturating_sub(1)).min(MAX_BACKOFF);
                state.retry_at = Some(Instant::now() + backoff);
                tracing::warn!(%error, backoff_seconds = backoff.as_secs_f64(), "cannot connect to the broker");
                Err(error)
            }
        }
    }

    async fn open(&self, generation: u64) -> Result<Link, BackendError> {
        let settings = &self.shared.settings;
        let properties = ConnectionProperties::default().with_connection_name(LongString::from(settings.connection_name.as_str()));
        let connection = Connection::connect_uri(settings.url.0.clone(), properties)
            .await
            .map_err(|e| amqp_error(&format!("connecting to {}", settings.url.redacted()), &e))?;
        let publisher = connection.create_channel().await.map_err(|e| amqp_error("opening a channel", &e))?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| amqp_error("enabling publisher confirms", &e))?;
        declare(&publisher, &self.shared.topology, settings.max_attempts).await?;
        let consumer = connection.create_channel().await.map_err(|e| amqp_error("opening a channel", &e))?;
        consumer
            .basic_qos(settings.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| amqp_error("setting the prefetch", &e))?;
        Ok(Link { generation, connection: Arc::new(connection), publisher, consumer })
    }

    /// Drops the connection of `generation` after an error on it; the next
    /// call connects again.
    async fn broken(&self, generation: u64, error: &lapin::Error) {
        let mut state = self.shared.link.lock().await;
        if let Some(link) = state.current.take_if(|link| link.generation == generation) {
            tracing::warn!(%error, "dropping the broker connection after an error");
            self.forget(generation);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), link.connection.close(200, "reconnecting".into())).await;
            });
        }
    }

    /// Deliveries of a lost connection are the broker's again.
    fn forget(&self, generation: u64) {
        self.in_flight().retain(|_, held| held.generation != generation);
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        self.shared.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a held delivery out for settling; a stale receipt is expired.
    fn settle(&self, receipt: &Receipt) -> Result<InFlight, QueueError> {
        let held = self.in_flight().remove(&receipt.0).ok_or(QueueError::ReceiptExpired)?;
        if held.acker.usable() { Ok(held) } else { Err(QueueError::ReceiptExpired) }
    }

    /// Gives back every delivery whose deadline passed without an extension.
    async fn give_back_overdue(&self) {
        let now = Instant::now();
        let overdue: Vec<InFlight> = {
            let mut held = self.in_flight();
            let keys: Vec<String> = held.iter().filter(|(_, h)| h.deadline <= now).map(|(k, _)| k.clone()).collect();
            keys.iter().filter_map(|k| held.remove(k)).collect()
        };
        for held in overdue {
            tracing::info!(task_id = %held.job.task_id, video_id = %held.job.video_id, "job not extended in time; given back to the queue");
            let _ = held.acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
        }
    }

    /// Publishes `body` to `key`, waiting for the broker's confirm.
    async fn publish(&self, key: &str, body: &[u8], headers: FieldTable, message_id: Option<ShortString>) -> Result<(), BackendError> {
        let link = self.link().await?;
        let mut properties =
            BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into()).with_headers(headers);
        if let Some(id) = message_id {
            properties = properties.with_message_id(id);
        }
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let exchange = self.shared.topology.exchange();
        let confirm = match link.publisher.basic_publish(exchange.into(), key.into(), options, body, properties).await {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        match confirm {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(returned))) => Err(BackendError::internal(format!(
                "the broker has no queue bound to {exchange} for {key} ({}): run `anb-worker provision`",
                returned.reply_text
            ))),
            Ok(Confirmation::Nack(_)) => Err(BackendError::unavailable(format!("the broker refused a message for {key}"))),
            Ok(Confirmation::NotRequested) => Err(BackendError::internal("publisher confirms are off on the channel")),
            Err(e) => {
                self.broken(link.generation, &e).await;
                Err(amqp_error("publishing a job", &e))
            }
        }
    }

    /// Publishes a copy of a held job to `key`, then acknowledges it.
    async fn move_to(&self, held: InFlight, key: &str, mut headers: FieldTable) -> Result<(), QueueError> {
        headers.insert(RECEIVES_HEADER.into(), AMQPValue::LongLongInt(i64::from(held.receives)));
        if let Err(error) = self.publish(key, anb_job_json::encode(&held.job).as_bytes(), headers, held.message_id.clone()).await {
            // Back in the queue now rather than held until the connection ends.
            let _ = held.acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
            return Err(error.into());
        }
        ack(&held.acker).await
    }

    /// Turns a delivery into a held job, or sets aside one that is not a job.
    async fn take(&self, generation: u64, delivery: lapin::message::Delivery, visibility: Duration) -> Option<Delivery> {
        let headers = delivery.properties.headers().as_ref();
        let receives = header_int(headers, RECEIVES_HEADER).saturating_add(header_int(headers, "x-delivery-count")).saturating_add(1);
        let job = match anb_job_json::decode(&delivery.data) {
            Ok(job) => job,
            Err(error) => {
                // Not ours to act on: to the dead-letter queue, where it can be looked at.
                tracing::error!(%error, "a message that is not a job: dead-lettered");
                let _ = delivery.acker.nack(BasicNackOptions { requeue: false, ..BasicNackOptions::default() }).await;
                return None;
            }
        };
        let receipt = format!("{generation}.{}", delivery.delivery_tag);
        let held = InFlight {
            generation,
            acker: delivery.acker.clone(),
            deadline: Instant::now() + visibility,
            job,
            receives: u32::try_from(receives).unwrap_or(u32::MAX),
            message_id: delivery.properties.message_id().clone(),
        };
        let receive_count = held.receives;
        self.in_flight().insert(receipt.clone(), held);
        Some(Delivery { job, receipt: Receipt(receipt), receive_count })
    }
}

/// Declares the exchange, the queues and their bindings (idempotent).
async fn declare(channel: &Channel, topology: &Topology, max_attempts: u32) -> Result<(), BackendError> {
    let exchange = topology.exchange();
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .map_err(|e| declare_error(&format!("the exchange {exchange}"), &e))?;
    let limit = i64::from(max_attempts.max(1) - 1);
    let mut jobs = quorum();
    jobs.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
    dead_letter_to(&mut jobs, exchange, "dead");
    let mut queues = vec![
        (topology.jobs(), "jobs".to_owned(), jobs),
        (topology.dead(), "dead".into(), quorum()),
        (topology.failed(), "failed".into(), quorum()),
    ];
    for seconds in DELAY_TIERS {
        let mut delay = quorum();
        delay.insert("x-message-ttl".into(), AMQPValue::LongLongInt(i64::try_from(seconds * 1000).unwrap_or(i64::MAX)));
        dead_letter_to(&mut delay, exchange, "jobs");
        queues.push((topology.delay(seconds), delay_key(seconds), delay));
    }
    for (queue, key, arguments) in queues {
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, arguments)
            .await
            .map_err(|e| declare_error(&format!("the queue {queue}"), &e))?;
        channel
            .queue_bind(queue.as_str().into(), exchange.into(), key.as_str().into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(|e| declare_error(&format!("the binding of {queue}"), &e))?;
    }
    Ok(())
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments
}

/// At-least-once dead-lettering to `key` of `exchange`.
fn dead_letter_to(arguments: &mut FieldTable, exchange: &str, key: &str) {
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(exchange.into()));
    arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(key.into()));
    arguments.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
}

fn declare_error(what: &str, error: &lapin::Error) -> BackendError {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) if e.get_id() == 406 => BackendError::internal(format!(
            "the broker holds {what} with other settings ({}): every process must use the same ANB_MAX_ATTEMPTS, or delete the \
             queues and provision again",
            e.get_message()
        )),
        _ => amqp_error(&format!("declaring {what}"), error),
    }
}

/// A broker error as a backend error: unreachable brokers and lost
/// connections are unavailability, the rest internal.
fn amqp_error(context: &str, error: &lapin::Error) -> BackendError {
    let message = format!("{context}: {error}");
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) if e.get_id() == 403 => BackendError::internal(message),
        lapin::ErrorKind::ProtocolError(_) | lapin::ErrorKind::ParsingError(_) | lapin::ErrorKind::SerialisationError(_) => {
            BackendError::internal(message)
        }
        _ => BackendError::unavailable(message),
    }
}

/// An integer header of any width; zero when missing.
fn header_int(headers: Option<&FieldTable>, name: &str) -> u64 {
    let value = headers.and_then(|h| h.inner().get(name));
    let number = match value {
        Some(AMQPValue::ShortShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortShortUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortUInt(v)) => i64::from(*v),
        Some(AMQPValue::LongInt(v)) => i64::from(*v),
        Some(AMQPValue::LongUInt(v)) => i64::from(*v),
        Some(AMQPValue::LongLongInt(v)) => *v,
        _ => 0,
    };
    u64::try_from(number).unwrap_or(0)
}

async fn ack(acker: &Acker) -> Result<(), QueueError> {
    match acker.ack(BasicAckOptions::default()).await {
        Ok(true) => Ok(()),
        // The channel is gone: the broker has the job back.
        Ok(false) | Err(_) => Err(QueueError::ReceiptExpired),
    }
}

/// Ready when the broker's connection is up, or opens (`/api/ready`'s `queue`).
#[async_trait]
impl HealthCheck for AmqpQueue {
    async fn check(&self) -> Result<(), BackendError> {
        self.link().await.map(drop)
    }
}

#[async_trait]
impl JobQueue for AmqpQueue {
    async fn send(&self, job: &Job) -> Result<(), QueueError> {
        let id = ShortString::from(job.task_id.0.to_string());
        Ok(self.publish("jobs", anb_job_json::encode(job).as_bytes(), FieldTable::default(), Some(id)).await?)
    }

    async fn receive(&self, visibility: Duration) -> Result<Option<Delivery>, QueueError> {
        self.give_back_overdue().await;
        let link = self.link().await?;
        let mut consumer = self.shared.consumer.lock().await;
        if consumer.as_ref().is_none_or(|(generation, _)| *generation != link.generation) {
            let queue = self.shared.topology.jobs();
            match link.consumer.basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await
            {
                Ok(stream) => *consumer = Some((link.generation, stream)),
                Err(e) => {
                    self.broken(link.generation, &e).await;
                    return Err(amqp_error("consuming the job queue", &e).into());
                }
            }
        }
        let Some((generation, stream)) = consumer.as_mut() else { return Ok(None) };
        let generation = *generation;
        match tokio::time::timeout(self.shared.settings.wait, stream.next()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(delivery))) => Ok(self.take(generation, delivery, visibility).await),
            Ok(Some(Err(e))) => {
                *consumer = None;
                self.broken(generation, &e).await;
                Err(amqp_error("receiving a job", &e).into())
            }
            Ok(None) => {
                *consumer = None;
                Err(BackendError::unavailable("the broker cancelled the consumer (was the queue deleted?)").into())
            }
        }
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError> {
        let mut held = self.in_flight();
        match held.get_mut(&receipt.0) {
            Some(h) if h.acker.usable() => {
                h.deadline = Instant::now() + visibility;
                Ok(())
            }
            Some(_) => {
                held.remove(&receipt.0);
                Err(QueueError::ReceiptExpired)
            }
            None => Err(QueueError::ReceiptExpired),
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError> {
        ack(&self.settle(receipt)?.acker).await
    }

    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), QueueError> {
        let held = self.settle(receipt)?;
        if delay.is_zero() {
            return match held.acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await {
                Ok(true) => Ok(()),
                Ok(false) | Err(_) => Err(QueueError::ReceiptExpired),
            };
        }
        self.move_to(held, &delay_key(delay_tier(delay)), FieldTable::default()).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<(), QueueError> {
        let held = self.settle(receipt)?;
        let mut headers = FieldTable::default();
        let reason: String = reason.chars().take(1000).collect();
        headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.as_str().into()));
        self.move_to(held, "dead", headers).await
    }
}

/// The sweeper's reader of `dead`: each dead job is handed out once and
/// moved to `failed`, where it stays (so `hide_for` has nothing to hide).
#[async_trait]
impl DeadLetterQueue for AmqpQueue {
    async fn next_dead_letter(&self, _hide_for: Duration) -> Result<Option<Job>, QueueError> {
        for _ in 0..NON_JOBS_PER_SWEEP {
            let link = self.link().await?;
            let dead = self.shared.topology.dead();
            let got = match link.publisher.basic_get(dead.as_str().into(), BasicGetOptions::default()).await {
                Ok(got) => got,
                Err(e) => {
                    self.broken(link.generation, &e).await;
                    return Err(amqp_error("reading the dead-letter queue", &e).into());
                }
            };
            let Some(message) = got else { return Ok(None) };
            let delivery = message.delivery;
            let headers = delivery.properties.headers().clone().unwrap_or_default();
            self.publish("failed", &delivery.data, headers, delivery.properties.message_id().clone()).await?;
            ack(&delivery.acker).await?;
            match anb_job_json::decode(&delivery.data) {
                Ok(job) => return Ok(Some(job)),
                Err(error) => tracing::warn!(%error, "a dead letter that is not a job, moved aside"),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_waits_in_the_shortest_tier_at_least_as_long() {
        assert_eq!(delay_tier(Duration::from_millis(1)), 1);
        assert_eq!(delay_tier(Duration::from_secs(5)), 5);
        assert_eq!(delay_tier(Duration::from_millis(5_001)), 10);
        assert_eq!(delay_tier(Duration::from_secs(21)), 25);
        assert_eq!(delay_tier(Duration::from_secs(3_600)), 600, "capped at the longest");
    }

    #[test]
    fn urls_get_heartbeats_and_never_show_their_password() {
        let url = AmqpUrl::parse("amqp://anb:s3cret@broker.internal:5673/prod").unwrap();
        assert_eq!(url.0.query.heartbeat, Some(10));
        assert_eq!(url.0.query.connection_timeout, Some(5_000));
        assert_eq!(format!("{url:?}"), "amqp://anb:***@broker.internal:5673/prod");
        assert!(!url.redacted().contains("s3cret"));
        let own = AmqpUrl::parse("amqps://u:p@h/%2f?heartbeat=30").unwrap();
        assert_eq!(own.0.query.heartbeat, Some(30), "the URL's own setting stays");
        let error = AmqpUrl::parse("http://u:hunter2@h").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn integer_headers_of_any_width_are_read() {
        let mut headers = FieldTable::default();
        headers.insert("a".into(), AMQPValue::LongLongInt(2));
        headers.insert("b".into(), AMQPValue::LongInt(3));
        headers.insert("c".into(), AMQPValue::LongString("4".into()));
        assert_eq!(header_int(Some(&headers), "a"), 2);
        assert_eq!(header_int(Some(&headers), "b"), 3);
        assert_eq!(header_int(Some(&headers), "c"), 0);
        assert_eq!(header_int(None, "a"), 0);
    }
}
