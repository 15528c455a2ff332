//! The one typed configuration of both binaries: every `ANB_*` variable has a
//! matching flag, `--help` lists them, and a bad value stops start-up with a
//! message naming it. Secrets are wrapped so they never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A secret string: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Any string; what a secret must be is checked where it is used, so that a
/// refusal never echoes the secret (clap's own errors print the value).
impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Settings shared by `anb-web` and `anb-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// Directory for the SQLite database, stored files, scratch space and the
    /// generated JWT key.
    #[arg(long, env = "ANB_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://PATH?mode=rwc` or `postgres://USER@HOST/DB`.
    /// Default: the SQLite file `anb.db` in the data directory.
    #[arg(long, env = "ANB_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// AWS Secrets Manager secret (name or ARN) holding the database's
    /// credentials as RDS attaches them (username, password, host, port,
    /// dbname): read at start, instead of `ANB_DATABASE_URL`.
    #[arg(long, env = "ANB_DATABASE_SECRET")]
    pub database_secret: Option<String>,

    /// Most open database connections.
    #[arg(long, env = "ANB_DATABASE_POOL", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool: u32,

    /// Key that signs access tokens (at least 32 characters); also the
    /// keyring's unless `ANB_KEYRING_SECRET` is set. Default: a random key
    /// generated once into the data directory.
    #[arg(long, env = "ANB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// The key before the last rotation of `ANB_JWT_SECRET`: tokens it
    /// signed are still accepted (nobody is logged out); nothing is signed
    /// with it. docs/operations.md has the two-step rotation.
    #[arg(long, env = "ANB_JWT_PREVIOUS_SECRET", hide_env_values = true)]
    pub jwt_previous_secret: Option<Secret>,

    /// AWS Secrets Manager secret (name or ARN) holding the token key,
    /// instead of `ANB_JWT_SECRET`: its `AWSCURRENT` version signs, its
    /// `AWSPREVIOUS` one is still accepted, and both are read again when a
    /// token names a key this server has not seen (a rotation) and every
    /// five minutes.
    #[arg(long, env = "ANB_JWT_SECRET_ID")]
    pub jwt_secret_id: Option<String>,

    /// Key of the keyring (at least 32 characters): the network pseudonyms
    /// that sign-up limits and the vote audit compare, the tokens of
    /// verification links and device cookies, and the signed file links.
    /// It is never rotated with the token key, so that a rotation breaks
    /// none of these. Default: the token key (`ANB_JWT_SECRET`, the key
    /// file, or the secret's `AWSCURRENT`).
    #[arg(long, env = "ANB_KEYRING_SECRET", hide_env_values = true)]
    pub keyring_secret: Option<Secret>,

    /// AWS Secrets Manager secret (name or ARN) holding the keyring's key,
    /// instead of `ANB_KEYRING_SECRET`.
    #[arg(long, env = "ANB_KEYRING_SECRET_ID")]
    pub keyring_secret_id: Option<String>,

    /// Lifetime of signed file links, in seconds.
    #[arg(long, env = "ANB_URL_TTL", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub url_ttl: u64,

    /// Seconds a worker keeps a job hidden from other workers; extended every
    /// quarter of it while the job runs, so a killed worker's job is taken up
    /// again by another within this time.
    #[arg(long, env = "ANB_JOB_VISIBILITY", default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=43_200))]
    pub job_visibility: u64,

    /// Attempts before a failing job is dead-lettered and its video `failed`.
    #[arg(long, env = "ANB_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// Seconds before a failed attempt is tried again.
    #[arg(long, env = "ANB_RETRY_DELAY", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub retry_delay: u64,

    /// Keep this EC2 instance out of its Auto Scaling group's scale-in while
    /// any of its jobs runs (set and cleared through the Auto Scaling API),
    /// so that a scale-in never cuts a transcode. For the worker hosts of the
    /// AWS stack; needs `autoscaling:SetInstanceProtection`.
    #[arg(long, env = "ANB_SCALE_IN_PROTECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub scale_in_protection: bool,

    /// The instance `ANB_SCALE_IN_PROTECTION` protects, when not this one
    /// (default: from the EC2 instance metadata service).
    #[arg(long, env = "ANB_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Where original and processed files live: `local` (the data directory,
    /// links served by anb-web) or `s3` (links are presigned S3 URLs).
    #[arg(long, env = "ANB_STORAGE", value_enum, default_value_t = StorageKind::Local)]
    pub storage: StorageKind,

    /// The S3 bucket, with `ANB_STORAGE=s3`. Credentials and region come from
    /// the standard AWS chain; `AWS_ENDPOINT_URL` points at an emulator.
    #[arg(long, env = "ANB_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// The job queue: `database` (a table beside the videos), `sqs`,
    /// `rabbitmq` or `kafka`.
    #[arg(long, env = "ANB_QUEUE", value_enum, default_value_t = QueueKind::Database)]
    pub queue: QueueKind,

    /// The SQS queue's URL, with `ANB_QUEUE=sqs` (`anb-worker provision`
    /// prints it).
    #[arg(long, env = "ANB_SQS_QUEUE_URL")]
    pub sqs_queue_url: Option<String>,

    /// The RabbitMQ broker, with `ANB_QUEUE=rabbitmq`:
    /// `amqp://user:password@host:5672/vhost` (or `amqps://`); heartbeats
    /// every 10 s unless the URL's `?heartbeat=` says otherwise.
    #[arg(long, env = "ANB_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<Secret>,

    /// Name of the RabbitMQ exchange and job queue, and prefix of the other
    /// queues (`NAME.dead`, `NAME.failed`, `NAME.delay.5s`, …).
    #[arg(long, env = "ANB_AMQP_QUEUE", default_value = "anb.jobs")]
    pub amqp_queue: String,

    /// The Kafka brokers to start from, with `ANB_QUEUE=kafka`:
    /// `host:port[,host:port…]` (plaintext).
    #[arg(long, env = "ANB_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Name of the Kafka jobs topic, and prefix of the other topics
    /// (`NAME.retry`, `NAME.dead`) and consumer groups (`NAME.workers`,
    /// `NAME.dead-letters`).
    #[arg(long, env = "ANB_KAFKA_TOPIC", default_value = "anb.jobs")]
    pub kafka_topic: String,

    /// Partitions of each Kafka topic when created (by `anb-worker
    /// provision` or the first process): at most this many worker processes
    /// share the jobs.
    #[arg(long, env = "ANB_KAFKA_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub kafka_partitions: i32,

    /// Where the public pages (the list of videos, the ranking) are kept for
    /// up to `ANB_CACHE_TTL` seconds: `memory` (in this process), `redis`
    /// (one Redis that every web server and worker shares, at
    /// `ANB_REDIS_URL`) or `off`. Default: `redis` when `ANB_REDIS_URL` is
    /// set, else `memory`.
    #[arg(long, env = "ANB_CACHE", value_enum)]
    pub cache: Option<CacheKind>,

    /// The Redis of the page cache: `redis://[:password@]host:6379[/db]`
    /// (no TLS: a Redis in the private network). A Redis that is away only
    /// means pages come from the database until it is back.
    #[arg(long, env = "ANB_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Prefix of the page cache's keys in Redis (`PREFIX:page:…`,
    /// `PREFIX:generation`): deployments sharing one Redis use different ones.
    #[arg(long, env = "ANB_REDIS_PREFIX", default_value = "anb")]
    pub redis_prefix: String,

    /// Seconds a cached page lives at most (and at most half of
    /// `ANB_URL_TTL`: cached pages hold signed links). A vote or a video turning public
    /// shows at once on every server sharing the cache; this bounds how long
    /// a server with its own (`memory`) cache, or a lost invalidation, can
    /// show a page without it.
    #[arg(long, env = "ANB_CACHE_TTL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub cache_ttl: u64,

    /// Whether this process relays jobs from the database outbox to the
    /// queue (with an external queue; at least one process must).
    #[arg(long, env = "ANB_OUTBOX_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_relay: bool,

    /// Metrics besides Prometheus text (always at `GET /metrics`): `emf`
    /// also writes CloudWatch Embedded Metric Format lines on stdout.
    #[arg(long, env = "ANB_METRICS", value_enum, default_value_t = MetricsKind::Prometheus)]
    pub metrics: MetricsKind,

    /// With `ANB_METRICS=emf`: append the EMF lines to this file instead of
    /// stdout, each line in one write, so that no log line can tear one (the
    /// CloudWatch agent ships the file).
    #[arg(long, env = "ANB_EMF_FILE")]
    pub emf_file: Option<PathBuf>,

    /// Log lines: `text` (for people) or `json` (one object a line, for
    /// CloudWatch Logs and the like).
    #[arg(long, env = "ANB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where metrics go besides Prometheus text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsKind {
    Prometheus,
    Emf,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the public pages are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheKind {
    Memory,
    Redis,
    Off,
}

/// Where stored files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    Local,
    S3,
}

/// Which mail system sends the verification messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MailKind {
    /// Each message an `.eml` file under `DATA_DIR/mail/` (one machine).
    File,
    /// An SMTP server (`ANB_SMTP_URL`).
    Smtp,
    /// Amazon SES (region and credentials from the standard AWS chain).
    Ses,
}

/// Which queue hands jobs to workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueKind {
    Database,
    Sqs,
    Rabbitmq,
    Kafka,
}

impl CommonConfig {
    /// The page cache to use.
    pub fn cache_kind(&self) -> CacheKind {
        self.cache.unwrap_or(if self.redis_url.is_some() { CacheKind::Redis } else { CacheKind::Memory })
    }

    /// The database URL to use.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("anb.db").display()),
        }
    }

    /// Whether the database is a server that several processes share (so
    /// that, say, every web server must sign tokens with the same key).
    pub fn shared_database(&self) -> bool {
        self.database_secret.is_some() || !self.database_url().starts_with("sqlite:")
    }

    /// The S3 bucket, when one is named.
    pub fn bucket(&self) -> Option<&str> {
        self.s3_bucket.as_deref().filter(|b| !b.is_empty())
    }

    /// Where stored objects live in single-node mode.
    pub fn files_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    /// Where uploads are received before they are accepted.
    pub fn upload_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// Where the `file` mailer writes its messages.
    pub fn mail_dir(&self) -> PathBuf {
        self.data_dir.join("mail")
    }

    /// Where workers keep scratch files.
    pub fn work_dir(&self) -> PathBuf {
        self.data_dir.join("work")
    }

    /// Lifetime of signed links.
    pub fn url_ttl(&self) -> Duration {
        Duration::from_secs(self.url_ttl)
    }

    /// The signing key: `ANB_JWT_SECRET`, else the key file in the data
    /// directory, created with a random key the first time.
    ///
    /// # Errors
    /// When the key file cannot be read or written.
    pub fn signing_key(&self) -> Result<Vec<u8>, KeyError> {
        if let Some(secret) = &self.jwt_secret {
            return Ok(secret.expose().as_bytes().to_vec());
        }
        load_or_create_key(&self.data_dir.join("jwt.key"))
    }
}

/// Why the signing key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} holds a key shorter than 32 characters")]
    TooShort(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.to_owned();
    move |source| KeyError::Io { action, path, source }
}

fn load_or_create_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(key) if key.trim().len() >= 32 => return Ok(key.trim().as_bytes().to_vec()),
        Ok(_) => return Err(KeyError::TooShort(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", path)(e)),
    }
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, key.as_bytes()).map_err(io("write", path))?;
            Ok(key.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
        Err(e) => Err(io("create", path)(e)),
    }
}

/// Settings of `anb-web` only.
#[derive(Debug, Clone, clap::Args)]
pub struct WebConfig {
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "ANB_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Base URL clients reach this server at, for absolute links
    /// (default: `http://` and the bound address).
    #[arg(long, env = "ANB_PUBLIC_BASE_URL", value_parser = parse_base_url)]
    pub public_base_url: Option<String>,

    /// Embedded workers processing videos in this process (0: none, for
    /// deployments with separate `anb-worker` hosts).
    #[arg(long, env = "ANB_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub workers: u32,

    /// Seconds an upload may go without receiving a byte before it is
    /// answered 408 and dropped.
    #[arg(long, env = "ANB_UPLOAD_IDLE_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_idle_timeout: u64,

    /// Uploads slower than this on average (bytes per second, after their
    /// first 10 s) are answered 408 and dropped.
    #[arg(long, env = "ANB_UPLOAD_MIN_RATE", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub upload_min_rate: u64,

    /// Seconds a client has to send a request's headers; also how long an
    /// idle keep-alive connection is kept. Behind a load balancer, set it
    /// above the balancer's idle timeout (the ALB's is 60 s).
    #[arg(long, env = "ANB_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,

    /// Seconds a request other than an upload may take before it is
    /// answered 503.
    #[arg(long, env = "ANB_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,

    /// Most connections open at once (default: as many as the open-files
    /// limit allows, two descriptors each, with half as many event streams
    /// beside them, and 64 plus the database pool kept for the rest). Past
    /// it the connection waiting longest for its request head (or whose
    /// client stopped reading) is closed, or a newcomer answered 503.
    #[arg(long, env = "ANB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,

    /// Most connections from one client address (IPv6: one /64), 429 past
    /// it; not applied with `ANB_BEHIND_PROXY` (the balancer's own limits
    /// apply there). Default: a quarter of the connection cap, between 16
    /// and 256 (a school's or an event's shared address fits).
    #[arg(long, env = "ANB_MAX_CONNECTIONS_PER_CLIENT", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_per_client: Option<u64>,

    /// Seconds a client may take to read 64 KiB of a response being sent
    /// to it before the connection is cut.
    #[arg(long, env = "ANB_SEND_TIMEOUT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub send_timeout: u64,

    /// Uploads one account may send at once (429 past it).
    #[arg(long, env = "ANB_UPLOADS_PER_ACCOUNT", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub uploads_per_account: u32,

    /// Event streams one account may hold open at once (429 past it).
    #[arg(long, env = "ANB_STREAMS_PER_ACCOUNT", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub streams_per_account: u32,

    /// Where the Prometheus text is served at `/metrics`, never on the
    /// public port: an address (`127.0.0.1:9464`, loopback only, by
    /// default; port 0 picks one) or `off`.
    #[arg(long, env = "ANB_METRICS_ADDR", default_value = "127.0.0.1:9464", value_parser = parse_listen)]
    pub metrics_addr: Listen,

    /// Failed log-ins of one account from one client address (four times as
    /// many per address, ten times per account from all addresses) before
    /// log-ins are refused with 429 for the lockout period.
    #[arg(long, env = "ANB_LOGIN_MAX_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub login_max_failures: u32,

    /// Seconds the failures are counted over, and a lock lasts.
    #[arg(long, env = "ANB_LOGIN_LOCKOUT", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_lockout: u64,

    /// Sign-ups from one client address within an hour, at most (429 past it).
    #[arg(long, env = "ANB_SIGNUP_PER_ADDRESS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
    pub signup_per_address: u32,

    /// Sign-ups from one network (/24 for IPv4, /64 for IPv6) within an
    /// hour, at most (429 past it).
    #[arg(long, env = "ANB_SIGNUP_PER_NETWORK", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
    pub signup_per_network: u32,

    /// How verification messages are sent: `file` (an `.eml` file each under
    /// `DATA_DIR/mail/`), `smtp` (`ANB_SMTP_URL`) or `ses` (Amazon SES,
    /// region and credentials from the standard AWS chain).
    #[arg(long, env = "ANB_MAIL", value_enum, default_value_t = MailKind::File)]
    pub mail: MailKind,

    /// The sender of the messages: `Name <address>` (required with `smtp`
    /// and `ses`; with SES, an identity it verified).
    #[arg(long, env = "ANB_MAIL_FROM")]
    pub mail_from: Option<String>,

    /// The SMTP server, with `ANB_MAIL=smtp`:
    /// `smtp://user:password@host:587?tls=required` (STARTTLS) or
    /// `smtps://user:password@host:465`.
    #[arg(long, env = "ANB_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,

    /// Whether only accounts with a verified address may vote (403
    /// otherwise). Default: false with `ANB_MAIL=file`, true with `smtp` and
    /// `ses`.
    #[arg(long, env = "ANB_VOTE_REQUIRES_VERIFIED_EMAIL", action = clap::ArgAction::Set)]
    pub vote_requires_verified_email: Option<bool>,

    /// Seconds a verification link works.
    #[arg(long, env = "ANB_VERIFICATION_TTL", default_value_t = 172_800, value_parser = clap::value_parser!(u64).range(60..=2_592_000))]
    pub verification_ttl: u64,

    /// Whether a load balancer stands in front: the client's address is then
    /// the last one in `X-Forwarded-For` (which the balancer appends),
    /// rather than the connection's.
    #[arg(long, env = "ANB_BEHIND_PROXY", default_value_t = false, action = clap::ArgAction::Set)]
    pub behind_proxy: bool,
}

impl WebConfig {
    /// Whether votes need a verified address: as set, else only when mail
    /// really leaves the machine.
    pub fn votes_require_verified_email(&self) -> bool {
        self.vote_requires_verified_email.unwrap_or(self.mail != MailKind::File)
    }
}

/// An address to listen on, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    s.parse().map(|addr| Listen(Some(addr))).map_err(|_| format!("expected an address such as 127.0.0.1:9464, or off: {s:?}"))
}

fn parse_base_url(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")).ok_or("must start with http:// or https://")?;
    if rest.trim_end_matches('/').is_empty() || rest.contains(char::is_whitespace) {
        return Err("must name a host".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret: Secret = "postgres://u:pw@h/db".parse().unwrap();
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.expose(), "postgres://u:pw@h/db", "short values are fine: a database URL can be");
    }

    #[test]
    fn base_urls_must_be_http() {
        assert_eq!(parse_base_url("https://anb.example.com/").unwrap(), "https://anb.example.com");
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("http://").is_err());
    }

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/jwt.key");
        let first = load_or_create_key(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create_key(&path).unwrap(), first);
    }
}
