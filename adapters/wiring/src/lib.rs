//! `anb-wiring`: the one typed configuration of both binaries ([`config`]),
//! the wiring that builds each port's adapter from it and hands them to the
//! use cases ([`Services`]), and the process plumbing both share
//! ([`runtime`]). Both binaries' `main` stay a few lines.
//!
//! Adapters are chosen here, by configuration: SQLite or PostgreSQL
//! (`anb-sql`), local files or S3 (`anb-files`, `anb-aws`), the database
//! queue, SQS, RabbitMQ (`anb-amqp`) or Kafka (`anb-kafka`). The GStreamer transcoder (`anb-gstreamer`) is linked only
//! with the `transcoder` feature, and built only when the process runs
//! workers, so a web-only host needs no GStreamer.

pub mod clock;
pub mod config;
pub mod mail;
pub mod runtime;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anb_amqp::{AmqpQueue, AmqpSettings, AmqpUrl};
use anb_application::{
    AccountRules, Accounts, AccountsPorts, BallotAudit, DeadLetterSweeper, MailRelay, PageCache, Processor, ProcessorPorts,
    ProcessorSettings, Showcase, ShowcasePorts, ShowcaseRules, Shutdown, Videos,
};
use anb_auth::{Argon2Hasher, HmacKeyring, JwtTokenIssuer};
use anb_aws::{S3Storage, SqsQueue};
use anb_cache::{MemoryCache, RedisCache};
use anb_domain::ports::{DeadLetterQueue, HealthCheck, JobQueue, ObjectStorage, Transcoder};
use anb_domain::{BackendError, UploadRules};
use anb_files::{LocalFileStorage, LocalScratch, UrlSigner};
use anb_kafka::{KafkaQueue, KafkaSettings};
use anb_mp4::Mp4BoxProbe;
use anb_sql::{Database, LeasedQueue, OutboxRelay};
pub use clock::SystemClock;
use tokio::task::JoinHandle;

use crate::config::{CacheKind, CommonConfig, QueueKind, StorageKind};
use crate::mail::MailConfig;

/// How often an idle outbox relay looks for new jobs.
const RELAY_INTERVAL: Duration = Duration::from_millis(200);
/// How often workers look in the dead-letter queue for jobs no worker
/// finished (see [`DeadLetterSweeper`]).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Access tokens live one hour (docs/api.md: `expires_in: 3600`).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Why a process could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting, or a combination of settings, that cannot work.
    #[error("{0}")]
    Config(String),
    /// A directory of the data directory could not be made.
    #[error("cannot create {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// The signing key could not be read or made.
    #[error("signing key: {0}")]
    Key(#[from] config::KeyError),
    /// A secret could not be read from Secrets Manager.
    #[error("secret: {0}")]
    Secret(BackendError),
    /// The database could not be reached or migrated.
    #[error("database: {0}")]
    Database(BackendError),
    /// The queue could not be reached.
    #[error("queue: {0}")]
    Queue(BackendError),
    /// The scratch directory of the workers could not be prepared.
    #[error("scratch directory: {0}")]
    Scratch(BackendError),
    /// The transcoder cannot run here (GStreamer or its elements missing).
    #[error("transcoder: {0}")]
    Transcoder(String),
    /// `RUST_LOG` is not a valid filter.
    #[error("invalid RUST_LOG {value:?}: {reason}")]
    LogFilter { value: String, reason: String },
}

/// What this process is, for the checks and adapters that depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `anb-web`: it signs tokens, limits failed log-ins and sign-ups, sends
    /// the verification messages and takes votes; links to local files are
    /// absolute under `public_base_url` when set, else relative
    /// (`/files/...`, made absolute per request by the web layer).
    Web(Box<WebRole>),
    /// `anb-worker`: processes videos only.
    Worker { workers: u32 },
}

/// What a web server is asked to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRole {
    pub public_base_url: Option<String>,
    pub workers: u32,
    pub accounts: AccountRules,
    pub mail: MailConfig,
    pub votes_require_verified_email: bool,
}

impl Role {
    /// Job loops this process runs.
    pub fn workers(&self) -> u32 {
        match self {
            Self::Web(web) => web.workers,
            Self::Worker { workers } => *workers,
        }
    }
}

/// Checks the settings as a whole, before anything connects.
///
/// # Errors
/// [`StartupError::Config`] naming the setting to fix.
pub fn validate(config: &CommonConfig, role: &Role) -> Result<(), StartupError> {
    if config.storage == StorageKind::S3 && config.bucket().is_none() {
        return Err(StartupError::Config("ANB_S3_BUCKET (--s3-bucket) must name the bucket with ANB_STORAGE=s3".into()));
    }
    if config.queue == QueueKind::Sqs && config.sqs_queue_url.as_deref().is_none_or(str::is_empty) {
        return Err(StartupError::Config(
            "ANB_SQS_QUEUE_URL (--sqs-queue-url) must name the queue with ANB_QUEUE=sqs; `anb-worker provision` prints it".into(),
        ));
    }
    if config.queue == QueueKind::Rabbitmq {
        let url = config
            .amqp_url
            .as_ref()
            .filter(|u| !u.expose().is_empty())
            .ok_or_else(|| StartupError::Config("ANB_AMQP_URL (--amqp-url) must name the broker with ANB_QUEUE=rabbitmq".into()))?;
        AmqpUrl::parse(url.expose()).map_err(|e| StartupError::Config(format!("ANB_AMQP_URL: {e}")))?;
    }
    if config.queue == QueueKind::Kafka && config.kafka_brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
        return Err(StartupError::Config("ANB_KAFKA_BROKERS (--kafka-brokers) must name the brokers with ANB_QUEUE=kafka".into()));
    }
    if config.cache_kind() == CacheKind::Redis {
        let url = config
            .redis_url
            .as_ref()
            .filter(|u| !u.expose().is_empty())
            .ok_or_else(|| StartupError::Config("ANB_REDIS_URL (--redis-url) must name the server with ANB_CACHE=redis".into()))?;
        RedisCache::new(url.expose(), &config.redis_prefix).map_err(|e| StartupError::Config(format!("ANB_REDIS_URL: {}", e.message)))?;
    }
    if config.database_secret.is_some() && config.database_url.is_some() {
        return Err(StartupError::Config("set ANB_DATABASE_URL or ANB_DATABASE_SECRET, not both".into()));
    }
    if config.jwt_secret.as_ref().is_some_and(|key| key.expose().len() < 32) {
        return Err(StartupError::Config("ANB_JWT_SECRET (--jwt-secret) must be at least 32 characters long".into()));
    }
    if config.jwt_secret_id.is_some() && config.jwt_secret.is_some() {
        return Err(StartupError::Config("set ANB_JWT_SECRET or ANB_JWT_SECRET_ID, not both".into()));
    }
    if let Role::Web(web) = role {
        web.mail.validate()?;
    }
    if matches!(role, Role::Web(_)) && config.shared_database() && config.jwt_secret.is_none() && config.jwt_secret_id.is_none() {
        return Err(StartupError::Config(
            "ANB_JWT_SECRET (--jwt-secret) or ANB_JWT_SECRET_ID is required with a shared database: every web server must verify the \
             tokens the others sign"
                .into(),
        ));
    }
    if role.workers() > 0 && !cfg!(feature = "transcoder") {
        return Err(StartupError::Config(
            "this build has no transcoder (built without GStreamer): set ANB_WORKERS=0 and run anb-worker hosts".into(),
        ));
    }
    Ok(())
}

/// The use cases, wired to their adapters, and the background work of the
/// process (job loops, scratch sweeper, outbox relay).
#[derive(Clone)]
pub struct Services {
    pub accounts: Accounts,
    pub videos: Videos,
    pub showcase: Showcase,
    /// The vote audit, for operators.
    pub audit: BallotAudit,
    /// What `/api/health` asks.
    pub health: Arc<dyn HealthCheck>,
    /// Checks links to locally stored files (served by the web server);
    /// `None` when files live in S3.
    pub files: Option<Arc<LocalFileStorage>>,
    /// The job loop; `None` when this process runs no workers.
    processor: Option<Processor>,
    scratch: Option<LocalScratch>,
    relay: Option<OutboxRelay>,
    /// Sends the verification messages (web servers only).
    mail: Option<MailRelay>,
    sweeper: Option<DeadLetterSweeper>,
    /// A broker connection to close once the background work has ended.
    broker: Option<Broker>,
    workers: u32,
}

/// A broker whose clients say goodbye: RabbitMQ gets its deliveries back at
/// once, Kafka moves the partitions of a leaving worker at once (rather than
/// after its session timeout).
#[derive(Debug, Clone)]
enum Broker {
    Amqp(Arc<AmqpQueue>),
    Kafka(Arc<KafkaQueue>),
}

impl Broker {
    async fn close(&self) {
        match self {
            Self::Amqp(queue) => queue.close().await,
            Self::Kafka(queue) => queue.close().await,
        }
    }
}

/// The public pages' cache the configuration asks for. A Redis that does not
/// answer at start is not fatal: pages come from the database until it does.
///
/// # Errors
/// [`StartupError::Config`] when `ANB_REDIS_URL` is not a Redis URL.
async fn page_cache(config: &CommonConfig) -> Result<PageCache, StartupError> {
    // Cached pages hand out signed links: a link served from the cache
    // keeps at least half its lifetime.
    let ttl = Duration::from_secs(config.cache_ttl.min(config.url_ttl / 2));
    if ttl.as_secs() < config.cache_ttl {
        tracing::info!(cache_ttl = ttl.as_secs(), url_ttl = config.url_ttl, "pages are cached for at most half of ANB_URL_TTL");
    }
    match (config.cache_kind(), &config.redis_url) {
        (CacheKind::Off, _) => Ok(PageCache::disabled()),
        _ if ttl.is_zero() => Ok(PageCache::disabled()),
        (CacheKind::Memory, _) => Ok(PageCache::new(Arc::new(MemoryCache::default()), ttl)),
        (CacheKind::Redis, Some(url)) => {
            let redis = RedisCache::new(url.expose(), &config.redis_prefix)
                .map_err(|e| StartupError::Config(format!("ANB_REDIS_URL: {}", e.message)))?;
            match redis.ping().await {
                Ok(()) => tracing::info!(server = redis.server(), "public pages cached in Redis"),
                Err(error) => tracing::warn!(%error, "Redis does not answer: public pages come from the database until it does"),
            }
            Ok(PageCache::new(Arc::new(redis), ttl))
        }
        (CacheKind::Redis, None) => {
            Err(StartupError::Config("ANB_REDIS_URL (--redis-url) must name the server with ANB_CACHE=redis".into()))
        }
    }
}

impl Services {
    /// Checks the settings ([`validate`]), prepares the data directory,
    /// connects to the database (migrating it) and builds every adapter.
    ///
    /// # Errors
    /// A [`StartupError`] naming what failed.
    pub async fn build(config: &CommonConfig, role: &Role) -> Result<Self, StartupError> {
        validate(config, role)?;
        for path in [config.files_dir(), config.upload_dir()] {
            std::fs::create_dir_all(&path).map_err(|source| StartupError::DataDir { path, source })?;
        }
        let uses_aws = config.storage == StorageKind::S3
            || config.queue == QueueKind::Sqs
            || config.database_secret.is_some()
            || config.jwt_secret_id.is_some()
            || matches!(role, Role::Web(web) if web.mail.uses_aws());
        let aws = if uses_aws { Some(anb_aws::sdk_config().await) } else { None };
        let (database_url, key) = secrets(config, aws.as_ref()).await?;
        let database = Database::connect(&database_url, config.database_pool).await.map_err(StartupError::Database)?;
        let pages = Arc::new(page_cache(config).await?);
        let clock = Arc::new(SystemClock);
        let (users, videos, votes) = (Arc::new(database.users()), Arc::new(database.videos()), Arc::new(database.votes()));
        let base_url = match role {
            Role::Web(web) => web.public_base_url.as_deref().unwrap_or_default(),
            Role::Worker { .. } => "",
        };
        let keyring = Arc::new(HmacKeyring::derive(&key));
        let verifications = Arc::new(database.verifications());
        let mail = match role {
            Role::Web(web) => Some(web.mail.relay(aws.as_ref(), verifications.clone(), keyring.clone(), clock.clone())?),
            Role::Worker { .. } => None,
        };
        let (rules, votes_require_verified_email) = match role {
            Role::Web(web) => (web.accounts, web.votes_require_verified_email),
            Role::Worker { .. } => (AccountRules::default(), false),
        };

        let (storage, files): (Arc<dyn ObjectStorage>, _) = match (config.bucket(), &aws) {
            (Some(bucket), Some(aws)) if config.storage == StorageKind::S3 => (Arc::new(S3Storage::new(aws, bucket)), None),
            _ => {
                let files = Arc::new(LocalFileStorage::new(config.files_dir(), base_url, UrlSigner::derive(&key)));
                (files.clone(), Some(files))
            }
        };

        let mut settings = ProcessorSettings {
            visibility: Duration::from_secs(config.job_visibility),
            heartbeat: Duration::from_secs(config.job_visibility) / 4,
            max_attempts: config.max_attempts,
            retry_delay: Duration::from_secs(config.retry_delay),
            // Every queue adapter waits for a job itself (long polling; the
            // database queue is woken by an upload in the same process), so
            // a worker looks again at once: a pause here would be a pause
            // between an upload and its pick-up.
            idle_wait: Duration::from_millis(20),
        };
        let workers = role.workers();
        let mut broker = None;
        let (queue, relay, sweeper): (Arc<dyn JobQueue>, _, _) = match (&config.sqs_queue_url, &aws) {
            _ if matches!(config.queue, QueueKind::Rabbitmq | QueueKind::Kafka) => {
                let (jobs, dead): (Arc<dyn JobQueue>, Arc<dyn DeadLetterQueue>) = if config.queue == QueueKind::Rabbitmq {
                    let amqp = Arc::new(amqp_queue(config, workers).await.map_err(StartupError::Queue)?);
                    broker = Some(Broker::Amqp(amqp.clone()));
                    (amqp.clone(), amqp)
                } else {
                    let kafka = Arc::new(kafka_queue(config, workers).await.map_err(StartupError::Queue)?);
                    broker = Some(Broker::Kafka(kafka.clone()));
                    (kafka.clone(), kafka)
                };
                let relay = config.outbox_relay.then(|| OutboxRelay::new(database.queue(), jobs.clone(), RELAY_INTERVAL));
                // Jobs dead-lettered with no worker left to mark their videos
                // (RabbitMQ's delivery limit, every attempt cut short) are
                // marked `failed` by the worker hosts' sweep.
                let sweeper = (workers > 0).then(|| {
                    DeadLetterSweeper::new(dead, videos.clone(), clock.clone(), Arc::new(anb_metrics::MetricsJobEvents), SWEEP_INTERVAL)
                });
                // A lost connection (RabbitMQ) or a rebalance (Kafka) hands a
                // held job out again: the lease keeps its worker going, and
                // counts the takes where the broker's count starts over.
                (Arc::new(LeasedQueue::new(jobs, database.clone())), relay, sweeper)
            }
            (Some(url), Some(aws)) if config.queue == QueueKind::Sqs => {
                let sqs = Arc::new(SqsQueue::new(aws, url));
                // The last attempt must be the last receive before the
                // redrive policy moves the job to the dead-letter queue.
                match sqs.max_receive_count().await.map_err(StartupError::Queue)? {
                    Some(count) => {
                        if count != settings.max_attempts {
                            tracing::info!(max_attempts = count, "attempts follow the queue's redrive policy");
                        }
                        settings.max_attempts = count;
                    }
                    None => tracing::warn!("the SQS queue has no redrive policy: failed jobs will not reach a dead-letter queue"),
                }
                let relay = config.outbox_relay.then(|| OutboxRelay::new(database.queue(), sqs.clone(), RELAY_INTERVAL));
                // Jobs whose every attempt was cut short reach the DLQ by the
                // redrive policy alone; worker hosts mark their videos failed.
                // (Only worker hosts look the DLQ up: the web servers' role may not.)
                let dead = if workers > 0 { sqs.dead_letter_queue().await.map_err(StartupError::Queue)? } else { None };
                let sweeper = dead.map(|dead| {
                    DeadLetterSweeper::new(
                        Arc::new(dead),
                        videos.clone(),
                        clock.clone(),
                        Arc::new(anb_metrics::MetricsJobEvents),
                        SWEEP_INTERVAL,
                    )
                });
                // SQS may hand out a job twice: a copy waits while a live worker holds the video.
                (Arc::new(LeasedQueue::new(sqs, database.clone())), relay, sweeper)
            }
            _ => (Arc::new(database.queue()), None, None),
        };

        let (processor, scratch) = if workers > 0 {
            // Nothing changed in a job's directory for a whole visibility: its
            // worker is dead (a live one writes its output all the time, and
            // would have lost its job by now anyway).
            let scratch = LocalScratch::new(config.work_dir(), settings.visibility);
            // A job that was running when its process was killed left its
            // scratch files; its delivery comes back after the visibility.
            scratch.prepare().await.map_err(StartupError::Scratch)?;
            let ports = ProcessorPorts {
                videos: videos.clone(),
                queue,
                storage: storage.clone(),
                transcoder: transcoder(workers)?,
                scratch: Arc::new(scratch.clone()),
                clock: clock.clone(),
                events: Arc::new(anb_metrics::MetricsJobEvents),
            };
            (Some(Processor::new(ports, settings).with_cache(pages.clone())), Some(scratch))
        } else {
            (None, None)
        };

        let showcase = Showcase::new(
            ShowcasePorts {
                videos: videos.clone(),
                votes,
                users: users.clone(),
                storage: storage.clone(),
                keyring: keyring.clone(),
                clock: clock.clone(),
            },
            ShowcaseRules { url_ttl: config.url_ttl(), votes_require_verified_email },
        );
        Ok(Self {
            accounts: Accounts::new(
                AccountsPorts {
                    users,
                    hasher: Arc::new(Argon2Hasher),
                    tokens: Arc::new(JwtTokenIssuer::new(&key, TOKEN_LIFETIME)),
                    clock: clock.clone(),
                    counters: Arc::new(database.counters()),
                    keyring,
                    verifications,
                },
                rules,
            ),
            audit: BallotAudit::new(Arc::new(database.vote_audit()), clock.clone(), pages.clone()),
            videos: Videos::new(videos, storage, Arc::new(Mp4BoxProbe), clock, UploadRules::default(), config.url_ttl()),
            showcase: showcase.with_cache(pages),
            health: Arc::new(database),
            files,
            processor,
            scratch,
            relay,
            mail,
            sweeper,
            broker,
            workers,
        })
    }

    /// Starts the background work until `shutdown`: the job loops, the
    /// sweeper of stale scratch, and the outbox relay.
    pub fn start_background(&self, shutdown: &Shutdown) -> Background {
        let mut tasks = Vec::new();
        if let Some(processor) = &self.processor {
            for _ in 0..self.workers {
                let (processor, shutdown) = (processor.clone(), shutdown.clone());
                tasks.push(tokio::spawn(async move { processor.run(shutdown).await }));
            }
        }
        if let Some(scratch) = self.scratch.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { scratch.sweep_until(shutdown).await }));
        }
        if let Some(relay) = self.relay.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { relay.run(shutdown).await }));
        }
        if let Some(sweeper) = self.sweeper.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { sweeper.run(shutdown).await }));
        }
        if let Some(mail) = self.mail.clone() {
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move { mail.run(shutdown).await }));
        }
        tracing::info!(
            workers = self.workers,
            relay = self.relay.is_some(),
            dead_letter_sweeper = self.sweeper.is_some(),
            mail_relay = self.mail.is_some(),
            "background work started"
        );
        Background { tasks, broker: self.broker.clone() }
    }
}

/// The RabbitMQ queue of `ANB_AMQP_URL`, its topology declared, with a
/// prefetch of `workers` (for `anb-worker provision` too).
///
/// # Errors
/// When the URL is missing or wrong, or the broker cannot be reached or
/// refuses the topology.
pub async fn amqp_queue(config: &CommonConfig, workers: u32) -> Result<AmqpQueue, BackendError> {
    let url = config.amqp_url.as_ref().ok_or_else(|| BackendError::internal("ANB_AMQP_URL is not set"))?;
    let mut settings = AmqpSettings::new(AmqpUrl::parse(url.expose()).map_err(BackendError::internal)?);
    settings.prefix.clone_from(&config.amqp_queue);
    settings.max_attempts = config.max_attempts;
    settings.prefetch = u16::try_from(workers.max(1)).unwrap_or(u16::MAX);
    settings.connection_name = format!("anb-{}-{}", if workers > 0 { "worker" } else { "web" }, std::process::id());
    AmqpQueue::connect(settings).await
}

/// The Kafka queue of `ANB_KAFKA_BROKERS`, its topics created if missing,
/// reading `workers` jobs ahead (for `anb-worker provision` too).
///
/// # Errors
/// When the brokers are not named, cannot be reached or refuse the topics.
pub async fn kafka_queue(config: &CommonConfig, workers: u32) -> Result<KafkaQueue, BackendError> {
    let brokers = config.kafka_brokers.as_deref().ok_or_else(|| BackendError::internal("ANB_KAFKA_BROKERS is not set"))?;
    let mut settings = KafkaSettings::new(brokers.trim());
    settings.prefix.clone_from(&config.kafka_topic);
    settings.partitions = config.kafka_partitions;
    settings.read_ahead = usize::try_from(workers.max(1)).unwrap_or(usize::MAX);
    settings.client_id = format!("anb-{}-{}", if workers > 0 { "worker" } else { "web" }, std::process::id());
    KafkaQueue::connect(settings).await
}

/// The database URL and the signing key: from Secrets Manager when the
/// configuration names secrets there, else from the configuration itself.
async fn secrets(config: &CommonConfig, aws: Option<&aws_config::SdkConfig>) -> Result<(String, Vec<u8>), StartupError> {
    let database_url = match (&config.database_secret, aws) {
        (Some(id), Some(aws)) => anb_aws::secrets::database_url(aws, id).await.map_err(StartupError::Secret)?,
        _ => config.database_url(),
    };
    let key = match (&config.jwt_secret_id, aws) {
        (Some(id), Some(aws)) => {
            let key = anb_aws::secrets::secret_string(aws, id).await.map_err(StartupError::Secret)?;
            if key.trim().len() < 32 {
                return Err(StartupError::Config("the secret of ANB_JWT_SECRET_ID holds a key shorter than 32 characters".into()));
            }
            key.trim().as_bytes().to_vec()
        }
        _ => config.signing_key()?,
    };
    Ok((database_url, key))
}

/// The database URL: `ANB_DATABASE_URL`, or from the secret of
/// `ANB_DATABASE_SECRET` (for `anb-worker migrate`).
///
/// # Errors
/// [`StartupError::Secret`] when the secret cannot be read.
pub async fn database_url(config: &CommonConfig) -> Result<String, StartupError> {
    match &config.database_secret {
        Some(id) => anb_aws::secrets::database_url(&anb_aws::sdk_config().await, id).await.map_err(StartupError::Secret),
        None => Ok(config.database_url()),
    }
}

/// The vote audit for `anb-worker audit-votes` and `void-votes`: the
/// database, and the page cache the web servers share (so that a void shows
/// on every one of them at once; an in-process cache of a web server lets
/// its pages expire within `ANB_CACHE_TTL` instead).
///
/// # Errors
/// A [`StartupError`] naming what could not be reached.
pub async fn ballot_audit(config: &CommonConfig) -> Result<BallotAudit, StartupError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartupError::DataDir { path: config.data_dir.clone(), source })?;
    let database = Database::connect(&database_url(config).await?, 2).await.map_err(StartupError::Database)?;
    let pages = Arc::new(page_cache(config).await?);
    Ok(BallotAudit::new(Arc::new(database.vote_audit()), Arc::new(SystemClock), pages))
}

/// The background tasks of a process.
#[derive(Debug)]
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
    broker: Option<Broker>,
}

impl Background {
    /// Waits for every task to end (they end at shutdown), then closes the
    /// broker connection, if any.
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a background task failed");
            }
        }
        if let Some(broker) = self.broker {
            broker.close().await;
        }
    }
}

#[cfg(feature = "transcoder")]
fn transcoder(workers: u32) -> Result<Arc<dyn Transcoder>, StartupError> {
    use anb_gstreamer::{GstTranscoder, TranscodeSettings};
    let settings = TranscodeSettings::for_jobs_at_once(workers, runtime::cores());
    Ok(Arc::new(GstTranscoder::new(settings).map_err(|e| StartupError::Transcoder(e.to_string()))?))
}

#[cfg(not(feature = "transcoder"))]
fn transcoder(_workers: u32) -> Result<Arc<dyn Transcoder>, StartupError> {
    Err(StartupError::Transcoder("this build has no transcoder".into()))
}
