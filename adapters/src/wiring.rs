//! Builds every port's adapter from the configuration and hands them to the
//! use cases. Both binaries call this; `main` stays a few lines.

use std::sync::Arc;
use std::time::Duration;

use anb_application::{Accounts, Processor, ProcessorSettings, Showcase, Videos};
use anb_domain::UploadRules;

use crate::config::CommonConfig;
use crate::gst::TranscodeSettings;
use crate::{Argon2Hasher, Database, GstTranscoder, JwtTokenIssuer, LocalFileStorage, Mp4BoxProbe, SystemClock, UrlSigner};

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
    /// Checks links to locally stored files (served by the web server).
    pub files: Arc<LocalFileStorage>,
}

impl Services {
    /// Connects to the database (migrating it), prepares the data directory
    /// and builds every adapter. `base_url` prefixes links to stored files.
    ///
    /// # Errors
    /// A message naming what failed: database, data directory, key, GStreamer.
    pub async fn build(config: &CommonConfig, base_url: &str) -> Result<Self, String> {
        for dir in [config.files_dir(), config.upload_dir(), config.work_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let key = config.signing_key()?;
        let database =
            Database::connect(&config.database_url(), config.database_pool).await.map_err(|e| format!("database: {}", e.message))?;
        let files = Arc::new(LocalFileStorage::new(config.files_dir(), base_url, UrlSigner::derive(&key)));
        let transcoder = Arc::new(GstTranscoder::new(TranscodeSettings::default())?);
        let clock = Arc::new(SystemClock);
        let (users, videos, votes, queue) =
            (Arc::new(database.users()), Arc::new(database.videos()), Arc::new(database.votes()), Arc::new(database.queue()));

        let mut settings = ProcessorSettings::new(config.work_dir());
        settings.visibility = Duration::from_secs(config.job_visibility);
        settings.heartbeat = settings.visibility / 4;
        settings.max_attempts = config.max_attempts;
        settings.retry_delay = Duration::from_secs(config.retry_delay);

        Ok(Self {
            accounts: Accounts::new(users, Arc::new(Argon2Hasher), Arc::new(JwtTokenIssuer::new(&key, TOKEN_LIFETIME)), clock.clone()),
            videos: Videos::new(
                videos.clone(),
                files.clone(),
                Arc::new(Mp4BoxProbe),
                clock.clone(),
                UploadRules::default(),
                config.url_ttl(),
            ),
            showcase: Showcase::new(videos.clone(), votes, files.clone(), config.url_ttl()),
            processor: Processor::new(videos, queue, files.clone(), transcoder, clock, settings),
            database,
            files,
        })
    }
}
