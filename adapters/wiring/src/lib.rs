//! `anb-wiring`: the composition root of both binaries. Each decision has
//! one place:
//!
//! - [`config`]: the typed settings (every `ANB_*` variable and its flag);
//! - [`checked`]: the settings checked as a whole, once ([`Checked`]), the
//!   only thing [`Services::build`] takes;
//! - one module per port family that knows its technologies: `secrets`
//!   (configuration or Secrets Manager), `storage` (files or S3), `queues`
//!   (the database, SQS, RabbitMQ, Kafka; also what `anb-worker provision`
//!   creates), `cache` (memory or Redis), [`mail`] (files, SMTP, SES);
//! - `background`: the work beside the requests, started and joined as one;
//! - [`runtime`]: process plumbing (logs, metrics, signals).
//!
//! Each technology but the defaults (SQLite, local files, the database
//! queue, the in-process cache, file and SMTP mail) is a cargo feature:
//! `aws` (S3, SQS, SES, Secrets Manager), `rabbitmq`, `kafka`, `redis` and
//! `gstreamer` (the transcoder). A build without one refuses, at start, the
//! settings that need it. `anb-web` turns them all on by default except
//! that `make run` builds only what one machine needs; `anb-worker` has them
//! all.

pub mod checked;
pub mod clock;
pub mod config;
pub mod mail;
pub mod runtime;

mod aws;
mod background;
mod cache;
mod database;
mod queues;
mod secrets;
mod storage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anb_application::{
    AccountRules, Accounts, AccountsPorts, BallotAudit, PageCache, Processor, ProcessorPorts, ProcessorSettings, Readiness, Showcase,
    ShowcasePorts, ShowcaseRules, Shutdown, Videos, VideosPorts,
};
use anb_auth::{Argon2Hasher, HmacKeyring, JwtTokenIssuer};
use anb_domain::ports::{Clock, Verifications, VideoRepository};
use anb_domain::{BackendError, UploadRules};
use anb_files::LocalFileStorage;
use anb_mp4::Mp4BoxProbe;
use anb_sql::Database;
pub use background::Background;
pub use checked::Checked;
pub use clock::SystemClock;
pub use secrets::database_url;

use crate::aws::Cloud;
use crate::config::CommonConfig;
use crate::mail::MailConfig;

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
    /// What `anb-worker provision` creates could not be created.
    #[error("{0}: {1}")]
    Provision(&'static str, BackendError),
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
    /// `anb-worker`: processes videos (none for its one-shot commands).
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

    /// The base of links to local files: empty for relative links.
    fn link_base(&self) -> &str {
        match self {
            Self::Web(web) => web.public_base_url.as_deref().unwrap_or_default(),
            Self::Worker { .. } => "",
        }
    }
}

/// What the requests of a web server need: the use cases, the health check
/// and the local files it serves.
#[derive(Clone)]
pub struct UseCases {
    pub accounts: Accounts,
    pub videos: Videos,
    pub showcase: Showcase,
    /// What `/api/ready` asks: each dependency of the process.
    pub readiness: Readiness,
    /// Checks links to locally stored files (served by the web server);
    /// `None` when files live in S3.
    pub files: Option<Arc<LocalFileStorage>>,
}

/// The use cases wired to their adapters, and the background work of the
/// process.
#[derive(Clone)]
pub struct Services {
    pub use_cases: UseCases,
    work: background::Work,
}

impl Services {
    /// Prepares the data directory, reads the secrets, connects to the
    /// database (waiting for it while it cannot be reached; migrating it)
    /// and builds every adapter.
    ///
    /// # Errors
    /// A [`StartupError`] naming what failed.
    pub async fn build(checked: &Checked) -> Result<Self, StartupError> {
        let (config, role) = (checked.common(), checked.role());
        for path in [config.files_dir(), config.upload_dir()] {
            std::fs::create_dir_all(&path).map_err(|source| StartupError::DataDir { path, source })?;
        }
        let cloud = Cloud::new();
        let (database_url, keys) = secrets::read(config, &cloud).await?;
        let database = database::connect(config, &cloud, database_url).await?;
        let (pages, cache_check) = cache::page_cache(config).await?;
        let shared = Shared {
            videos: Arc::new(database.videos()),
            verifications: Arc::new(database.verifications()),
            storage: storage::build(config, &cloud, role.link_base(), &keys.keyring).await,
            keyring: Arc::new(HmacKeyring::derive(&keys.keyring)),
            clock: Arc::new(SystemClock),
            pages: Arc::new(pages),
            database,
        };
        let sweep = queues::SweepPorts { videos: shared.videos.clone(), clock: shared.clock.clone() };
        let queues = queues::build(config, &cloud, &shared.database, role.workers(), sweep).await?;
        let mut work = background::Work { relay: queues.relay, sweeper: queues.sweeper, broker: queues.broker, ..Default::default() };
        if role.workers() > 0 {
            let visibility = Duration::from_secs(config.job_visibility);
            let scratch = background::scratch(config.work_dir(), visibility).await?;
            let settings = ProcessorSettings {
                visibility,
                heartbeat: visibility / 4,
                max_attempts: queues.max_attempts,
                retry_delay: Duration::from_secs(config.retry_delay),
                // Every queue adapter waits for a job itself (long polling;
                // the database queue is woken by an upload in the same
                // process), so a worker looks again at once.
                idle_wait: Duration::from_millis(20),
            };
            let ports = ProcessorPorts {
                videos: shared.videos.clone(),
                queue: queues.jobs,
                storage: shared.storage.objects.clone(),
                transcoder: background::transcoder(role.workers())?,
                scratch: Arc::new(scratch.clone()),
                clock: shared.clock.clone(),
                events: Arc::new(anb_metrics::MetricsJobEvents),
            };
            let processor = Processor::new(ports, settings).with_cache(shared.pages.clone());
            #[cfg(feature = "aws")]
            if config.scale_in_protection {
                work.protection = Some(background::protection(config, &cloud, &processor, shared.clock.clone()).await);
            }
            work.processor = Some((processor, role.workers()));
            work.scratch = Some(scratch);
        }
        if let Role::Web(web) = role {
            let (verifications, keyring, clock) = (shared.verifications.clone(), shared.keyring.clone(), shared.clock.clone());
            work.mail = Some(web.mail.relay(&cloud, verifications, keyring, clock).await?);
        }
        let readiness = [("queue", queues.check.clone()), ("cache", cache_check)].into_iter().fold(
            Readiness::new(shared.clock.clone())
                .with("database", Arc::new(shared.database.clone()))
                .with("storage", shared.storage.check.clone()),
            |readiness, (name, check)| match check {
                Some(check) => readiness.with(name, check),
                None => readiness,
            },
        );
        Ok(Self { use_cases: shared.use_cases(config, role, keys, readiness), work })
    }

    /// Starts the background work until `shutdown`.
    pub fn start_background(&self, shutdown: &Shutdown) -> Background {
        self.work.start(shutdown)
    }
}

/// The adapters that the use cases and the background work share.
struct Shared {
    database: Database,
    videos: Arc<dyn VideoRepository>,
    verifications: Arc<dyn Verifications>,
    storage: storage::Storage,
    /// Pseudonyms and the tokens of messages.
    keyring: Arc<HmacKeyring>,
    clock: Arc<dyn Clock>,
    pages: Arc<PageCache>,
}

impl Shared {
    /// The use cases over these adapters; access tokens are signed with
    /// `keys`' current key.
    fn use_cases(self, config: &CommonConfig, role: &Role, keys: secrets::Keys, readiness: Readiness) -> UseCases {
        let (rules, votes_require_verified_email) = match role {
            Role::Web(web) => (web.accounts, web.votes_require_verified_email),
            Role::Worker { .. } => (AccountRules::default(), false),
        };
        let Self { database, videos, verifications, storage, keyring, clock, pages } = self;
        let users = Arc::new(database.users());
        let accounts = Accounts::new(
            AccountsPorts {
                users: users.clone(),
                hasher: Arc::new(Argon2Hasher),
                tokens: Arc::new(match keys.source {
                    Some(source) => JwtTokenIssuer::reading_again_from(&keys.tokens, source, TOKEN_LIFETIME),
                    None => JwtTokenIssuer::with_keys(&keys.tokens, TOKEN_LIFETIME),
                }),
                clock: clock.clone(),
                counters: Arc::new(database.counters()),
                keyring: keyring.clone(),
                verifications,
            },
            rules,
        );
        let showcase = Showcase::new(
            ShowcasePorts {
                videos: videos.clone(),
                votes: Arc::new(database.votes()),
                users,
                storage: storage.objects.clone(),
                keyring,
                clock: clock.clone(),
            },
            ShowcaseRules { url_ttl: config.url_ttl(), votes_require_verified_email },
        )
        .with_cache(pages);
        let videos = Videos::new(
            VideosPorts { videos, storage: storage.objects, probe: Arc::new(Mp4BoxProbe), clock },
            UploadRules::default(),
            config.url_ttl(),
        );
        UseCases { accounts, videos, showcase, readiness, files: storage.files }
    }
}

/// The vote audit for `anb-worker audit-votes` and `void-votes`: the
/// database, and the page cache the web servers share (so that a void shows
/// on every one of them at once; an in-process cache of a web server lets
/// its pages expire within `ANB_CACHE_TTL` instead).
///
/// # Errors
/// A [`StartupError`] naming what could not be reached.
pub async fn ballot_audit(checked: &Checked) -> Result<BallotAudit, StartupError> {
    let config = checked.common();
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartupError::DataDir { path: config.data_dir.clone(), source })?;
    let database = Database::connect(&database_url(config).await?, 2).await.map_err(StartupError::Database)?;
    let pages = Arc::new(cache::page_cache(config).await?.0);
    Ok(BallotAudit::new(Arc::new(database.vote_audit()), Arc::new(SystemClock), pages))
}

/// Creates what the configuration names, when missing (the S3 bucket; the
/// SQS queues, RabbitMQ topology or Kafka topics; `sqs_queue_name` names a
/// new SQS queue), and returns the settings that name them, as
/// `(variable, value)`.
///
/// # Errors
/// A [`StartupError`] naming what could not be created.
pub async fn provision(config: &CommonConfig, sqs_queue_name: &str) -> Result<Vec<(&'static str, String)>, StartupError> {
    // Not a `Checked`: the SQS queue's URL is what this makes.
    storage::check(config)?;
    queues::check_for_provision(config)?;
    let cloud = Cloud::new();
    let mut settings = storage::provision(config, &cloud).await?;
    settings.extend(queues::provision(config, &cloud, sqs_queue_name).await?);
    Ok(settings)
}
