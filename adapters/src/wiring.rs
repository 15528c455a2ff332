//! Builds every port's adapter from the configuration and hands them to the
//! use cases. Both binaries call this; `main` stays a few lines.

use std::sync::Arc;
use std::time::Duration;

use anb_application::{Accounts, Processor, ProcessorSettings, Showcase, Videos};
use anb_domain::UploadRules;
use anb_domain::ports::{JobQueue, ObjectStorage};

use crate::config::{CommonConfig, QueueKind, StorageKind};
use crate::gst::TranscodeSettings;
use crate::{
    Argon2Hasher, Database, GstTranscoder, JwtTokenIssuer, LeasedQueue, LocalFileStorage, Mp4BoxProbe, OutboxRelay, S3Storage, SqsQueue,
    SystemClock, UrlSigner,
};

/// How often an idle outbox relay looks for new jobs.
const RELAY_INTERVAL: Duration = Duration::from_millis(200);

/// Access tokens live one hour (spec/api.md: `expires_in: 3600`).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The use cases, wired to their adapters.
#[derive(Clone)]
pub struct Services {
    pub database: Database,
    pub accounts: Accounts,
    pub videos: Videos,
    pub showcase: Showcase,
    pub processor: Processor,
    /// Checks links to locally stored files (served by the web server);
    /// `None` when files live in S3.
    pub files: Option<Arc<LocalFileStorage>>,
    /// Publishes the database outbox to SQS; `None` with the database queue
    /// or when this process does not relay.
    pub relay: Option<OutboxRelay>,
    /// Where workers keep scratch files, and how long a job stays hidden
    /// (scratch idle that long belongs to a dead job).
    pub work_dir: std::path::PathBuf,
    pub job_visibility: Duration,
}

impl Services {
    /// Connects to the database (migrating it), prepares the data directory
    /// and builds every adapter. `base_url` prefixes links to stored files;
    /// `jobs_at_once` (the process's workers) shares the cores among jobs.
    ///
    /// # Errors
    /// A message naming what failed: database, data directory, key, GStreamer.
    pub async fn build(config: &CommonConfig, base_url: &str, jobs_at_once: u32) -> Result<Self, String> {
        for dir in [config.files_dir(), config.upload_dir(), config.work_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // A job that was running when its process was killed left its scratch
        // files; its delivery comes back after the visibility timeout.
        crate::runtime::sweep_stale_scratch(&config.work_dir(), Duration::from_secs(config.job_visibility));
        let key = config.signing_key()?;
        let database =
            Database::connect(&config.database_url(), config.database_pool).await.map_err(|e| format!("database: {}", e.message))?;
        let transcoder = Arc::new(GstTranscoder::new(TranscodeSettings::for_jobs_at_once(jobs_at_once))?);
        let clock = Arc::new(SystemClock);
        let (users, videos, votes) = (Arc::new(database.users()), Arc::new(database.videos()), Arc::new(database.votes()));
        let aws =
            if config.storage == StorageKind::S3 || config.queue == QueueKind::Sqs { Some(crate::aws::sdk_config().await) } else { None };

        let (storage, files): (Arc<dyn ObjectStorage>, _) = match (config.storage, &aws) {
            (StorageKind::S3, Some(aws)) => (Arc::new(S3Storage::new(aws, config.require_bucket()?)), None),
            _ => {
                let files = Arc::new(LocalFileStorage::new(config.files_dir(), base_url, UrlSigner::derive(&key)));
                (files.clone(), Some(files))
            }
        };

        let mut settings = ProcessorSettings::new(config.work_dir());
        settings.visibility = Duration::from_secs(config.job_visibility);
        settings.heartbeat = settings.visibility / 4;
        settings.max_attempts = config.max_attempts;
        settings.retry_delay = Duration::from_secs(config.retry_delay);

        let (queue, relay): (Arc<dyn JobQueue>, _) = match (config.queue, &aws) {
            (QueueKind::Sqs, Some(aws)) => {
                let sqs = Arc::new(SqsQueue::new(aws, config.require_queue_url()?));
                // The last attempt must be the last receive before the
                // redrive policy moves the job to the dead-letter queue.
                match sqs.max_receive_count().await.map_err(|e| format!("SQS queue: {}", e.message))? {
                    Some(count) => {
                        if count != settings.max_attempts {
                            tracing::info!(max_attempts = count, "attempts follow the queue's redrive policy");
                        }
                        settings.max_attempts = count;
                    }
                    None => tracing::warn!("the SQS queue has no redrive policy: failed jobs will not reach a dead-letter queue"),
                }
                let relay = config.outbox_relay.then(|| OutboxRelay::new(database.queue(), sqs.clone(), RELAY_INTERVAL));
                // SQS may hand out a job twice: a copy waits while a live worker holds the video.
                (Arc::new(LeasedQueue::new(sqs, database.clone())), relay)
            }
            _ => (Arc::new(database.queue()), None),
        };

        Ok(Self {
            accounts: Accounts::new(users, Arc::new(Argon2Hasher), Arc::new(JwtTokenIssuer::new(&key, TOKEN_LIFETIME)), clock.clone()),
            videos: Videos::new(
                videos.clone(),
                storage.clone(),
                Arc::new(Mp4BoxProbe),
                clock.clone(),
                UploadRules::default(),
                config.url_ttl(),
            ),
            showcase: Showcase::new(videos.clone(), votes, storage.clone(), config.url_ttl()),
            processor: Processor::new(videos, queue, storage, transcoder, clock, settings),
            database,
            files,
            relay,
            work_dir: config.work_dir(),
            job_visibility: Duration::from_secs(config.job_visibility),
        })
    }
}
