//! The ports: everything the application needs from the outside world, as
//! `dyn`-safe traits. Each method documents the errors an adapter returns;
//! adapters map their own failures (a unique-constraint violation, a missing
//! file) onto these, so the core never sees a database or SDK error type.
//! A [`BackendError`] means the backend itself failed (down, full, broken).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use crate::trust::{AuditFinding, Mail, MailKind, NetworkTag, NewToken, PendingMail, TokenHash, VoidReport};
use crate::{
    BackendError, CityFilter, Delivery, Email, Job, NewUser, NewVideo, ObjectKey, Page, Password, PasswordHash, ProbedVideo, ProgressSink,
    PublicVideo, RankingEntry, Receipt, Timestamp, User, UserId, Video, VideoId,
};

/// Errors of [`UserRepository`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserRepositoryError {
    /// Another account already has this (normalised) e-mail address.
    #[error("e-mail already registered")]
    DuplicateEmail,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Stores accounts.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync + 'static {
    /// Creates an account, and queues the message that verifies its address
    /// (see [`Verifications`]) in the same transaction: no account exists
    /// without its message on the way, and a mail server that is down fails
    /// nothing.
    ///
    /// # Errors
    /// - [`UserRepositoryError::DuplicateEmail`] when the e-mail is taken, also
    ///   when two sign-ups race (a unique index decides).
    async fn create(&self, user: NewUser) -> Result<User, UserRepositoryError>;

    /// The account with this e-mail, if any.
    ///
    /// # Errors
    /// Only [`UserRepositoryError::Backend`].
    async fn by_email(&self, email: &Email) -> Result<Option<User>, UserRepositoryError>;

    /// The account with this id, if any.
    ///
    /// # Errors
    /// Only [`UserRepositoryError::Backend`].
    async fn by_id(&self, id: UserId) -> Result<Option<User>, UserRepositoryError>;
}

/// Errors of [`VideoRepository`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoRepositoryError {
    /// No video has this id.
    #[error("no such video")]
    NotFound,
    /// The video's current status does not allow the move.
    #[error("video cannot go from {from} to {to}")]
    InvalidTransition { from: crate::VideoStatus, to: crate::VideoStatus },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl VideoRepositoryError {
    /// The backend failure inside, for a caller that has no business case
    /// for the other variants (a read that cannot be `NotFound`, say).
    pub fn into_backend(self) -> BackendError {
        match self {
            Self::Backend(e) => e,
            other => BackendError::internal(other.to_string()),
        }
    }
}

/// What [`VideoRepository::delete_unless_public`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// The video and its pending job are gone; here is what it was.
    Deleted(Video),
    /// The video is public (processed) and was kept.
    Public,
    /// There is no such video.
    NotFound,
}

/// Stores videos and moves them through their statuses.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VideoRepository: Send + Sync + 'static {
    /// Inserts the video with status `uploaded` and, in the same transaction,
    /// its processing job (read by the database queue, or relayed to an
    /// external queue), so that no video exists without its job.
    ///
    /// # Errors
    /// Only [`VideoRepositoryError::Backend`].
    async fn create_with_job(&self, video: NewVideo) -> Result<Video, VideoRepositoryError>;

    /// The video with this id, if any.
    ///
    /// # Errors
    /// Only [`VideoRepositoryError::Backend`].
    async fn by_id(&self, id: VideoId) -> Result<Option<Video>, VideoRepositoryError>;

    /// A player's videos, newest first.
    ///
    /// # Errors
    /// Only [`VideoRepositoryError::Backend`].
    async fn list_by_owner(&self, owner: UserId) -> Result<Vec<Video>, VideoRepositoryError>;

    /// Processed videos, most voted first (older first among equals).
    ///
    /// # Errors
    /// Only [`VideoRepositoryError::Backend`].
    async fn list_public(&self, city: CityFilter, page: Page) -> Result<Vec<PublicVideo>, VideoRepositoryError>;

    /// Moves the video to `processing` (from `uploaded`, or from `processing`
    /// when a job is redelivered), with its progress at 0.
    ///
    /// # Errors
    /// - [`VideoRepositoryError::NotFound`] when it was deleted.
    /// - [`VideoRepositoryError::InvalidTransition`] when processed or failed.
    async fn mark_processing(&self, id: VideoId) -> Result<(), VideoRepositoryError>;

    /// Moves the video from `processing` to `processed`, public from now on.
    ///
    /// # Errors
    /// - [`VideoRepositoryError::NotFound`] when it was deleted meanwhile.
    /// - [`VideoRepositoryError::InvalidTransition`] when not `processing`.
    async fn mark_processed(&self, id: VideoId, key: &ObjectKey, at: Timestamp) -> Result<(), VideoRepositoryError>;

    /// Records how far processing has got (0–100) while the video is
    /// `processing`; does nothing in any other status. Any later move
    /// clears it.
    ///
    /// # Errors
    /// Only [`VideoRepositoryError::Backend`].
    async fn report_progress(&self, id: VideoId, percent: u8) -> Result<(), VideoRepositoryError>;

    /// Moves the video from `processing` back to `uploaded` (an attempt
    /// failed and will be retried), keeping the reason.
    ///
    /// # Errors
    /// As [`VideoRepository::mark_processed`].
    async fn mark_waiting(&self, id: VideoId, reason: &str) -> Result<(), VideoRepositoryError>;

    /// Moves the video from `processing` (or `uploaded`, when its job was
    /// dead-lettered while it waited) to `failed` with the reason.
    ///
    /// # Errors
    /// - [`VideoRepositoryError::NotFound`] when it was deleted meanwhile.
    /// - [`VideoRepositoryError::InvalidTransition`] when already final.
    async fn mark_failed(&self, id: VideoId, reason: &str) -> Result<(), VideoRepositoryError>;

    /// Moves a `failed` video back to `uploaded` with a new processing job
    /// (same task) and its attempts counted from zero, in one transaction:
    /// an operator's retry, once what made it fail is fixed.
    ///
    /// # Errors
    /// - [`VideoRepositoryError::NotFound`] when there is no such video.
    /// - [`VideoRepositoryError::InvalidTransition`] when it is not `failed`.
    async fn retry_failed(&self, id: VideoId) -> Result<(), VideoRepositoryError>;

    /// Deletes the video, its votes and its pending job, unless it is public;
    /// checked and done in one transaction so a video that becomes public
    /// meanwhile is kept.
    ///
    /// # Errors
    /// Only [`VideoRepositoryError::Backend`].
    async fn delete_unless_public(&self, id: VideoId) -> Result<Deletion, VideoRepositoryError>;
}

/// Errors of [`VoteRepository`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteRepositoryError {
    /// This person already voted for this video (a unique index decides, so
    /// racing requests get this too).
    #[error("already voted")]
    DuplicateVote,
    /// No such video, or it is not public.
    #[error("video not found or not public")]
    VideoNotPublic,
    /// The video is the voter's own.
    #[error("own video")]
    OwnVideo,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Records votes and ranks players.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VoteRepository: Send + Sync + 'static {
    /// Records one vote, with the network it came from (for the audit) and
    /// its time, and adds it to the video's and the player's counts in one
    /// transaction.
    ///
    /// # Errors
    /// - [`VoteRepositoryError::DuplicateVote`] on a second vote.
    /// - [`VoteRepositoryError::VideoNotPublic`] when the video does not
    ///   exist or is not processed.
    /// - [`VoteRepositoryError::OwnVideo`] when the voter owns the video.
    async fn cast(&self, voter: UserId, video: VideoId, network: Option<NetworkTag>, at: Timestamp) -> Result<(), VoteRepositoryError>;

    /// Players by the sum of votes of their public videos, ties broken by the
    /// earlier first upload; players without public videos are left out.
    ///
    /// # Errors
    /// Only [`VoteRepositoryError::Backend`].
    async fn rankings(&self, city: CityFilter, page: Page) -> Result<Vec<RankingEntry>, VoteRepositoryError>;
}

/// Errors of [`ObjectStorage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// No object has this key.
    #[error("no object at this key")]
    NotFound,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl StorageError {
    /// The backend failure inside, for a caller that expects the object to
    /// exist (a missing one is then an internal failure).
    pub fn into_backend(self) -> BackendError {
        match self {
            Self::Backend(e) => e,
            Self::NotFound => BackendError::internal("stored file is missing"),
        }
    }
}

/// Keeps the original and processed files.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ObjectStorage: Send + Sync + 'static {
    /// Stores the file at `source` under `key`, streaming it (never whole in
    /// memory), replacing any object there. The source file is left as is.
    ///
    /// # Errors
    /// [`StorageError::Backend`], of kind `StorageFull` when out of space; a
    /// failed put leaves no partial object.
    async fn put_file(&self, key: &ObjectKey, source: &Path) -> Result<(), StorageError>;

    /// Writes the object to the file `target` (created or truncated).
    ///
    /// # Errors
    /// - [`StorageError::NotFound`] when there is no such object.
    async fn get_to_file(&self, key: &ObjectKey, target: &Path) -> Result<(), StorageError>;

    /// Deletes the object; deleting a missing object is not an error.
    ///
    /// # Errors
    /// Only [`StorageError::Backend`].
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;

    /// A URL that reads the object without other credentials until `ttl` ends.
    ///
    /// # Errors
    /// Only [`StorageError::Backend`].
    async fn signed_url(&self, key: &ObjectKey, ttl: Duration) -> Result<String, StorageError>;
}

/// Errors of [`JobQueue`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The receipt no longer holds the job: it was acknowledged, or its
    /// visibility ran out and someone else received it.
    #[error("receipt no longer valid")]
    ReceiptExpired,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Hands processing jobs to workers, at least once each.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueues a job; sending a job that is already queued is harmless.
    ///
    /// # Errors
    /// Only [`QueueError::Backend`].
    async fn send(&self, job: &Job) -> Result<(), QueueError>;

    /// The next visible job, hidden from other receivers for `visibility`;
    /// `None` when there is none (an adapter may wait a while first).
    ///
    /// # Errors
    /// Only [`QueueError::Backend`].
    async fn receive(&self, visibility: Duration) -> Result<Option<Delivery>, QueueError>;

    /// Keeps the job hidden for `visibility` from now (a heartbeat).
    ///
    /// # Errors
    /// - [`QueueError::ReceiptExpired`] when the job is no longer ours.
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), QueueError>;

    /// Removes a finished job.
    ///
    /// # Errors
    /// - [`QueueError::ReceiptExpired`] when the job is no longer ours.
    async fn ack(&self, receipt: &Receipt) -> Result<(), QueueError>;

    /// Gives the job back, visible again after `delay` (zero: at once).
    ///
    /// # Errors
    /// - [`QueueError::ReceiptExpired`] when the job is no longer ours.
    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), QueueError>;

    /// Moves a job that will never succeed to the dead-letter queue.
    ///
    /// # Errors
    /// - [`QueueError::ReceiptExpired`] when the job is no longer ours.
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<(), QueueError>;
}

/// Where the jobs that will never succeed end up (an SQS dead-letter queue,
/// say), read by the sweeper that marks their videos `failed`. Jobs stay
/// there, for inspection and re-drive.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait DeadLetterQueue: Send + Sync + 'static {
    /// The next dead job not looked at within the last `hide_for`, or
    /// `None` when there is none. It stays in the dead-letter queue.
    ///
    /// # Errors
    /// Only [`QueueError::Backend`].
    async fn next_dead_letter(&self, hide_for: Duration) -> Result<Option<Job>, QueueError>;
}

/// Errors of [`Transcoder`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// The input cannot be decoded (corrupt, truncated, unsupported codec).
    #[error("cannot decode the video: {0}")]
    InvalidInput(String),
    /// Processing failed for another reason (missing plugin, disk, bug).
    #[error("transcoding failed: {0}")]
    Failed(String),
}

/// What a finished transcode produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscodeReport {
    /// Length of the output, cards included.
    pub duration: Duration,
}

/// Turns an original upload into the published file (docs/video-rules.md).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Transcoder: Send + Sync + 'static {
    /// Reads `input` and writes the processed MP4 to `output`, reporting
    /// into `progress` how much of the output is done as it goes.
    ///
    /// # Errors
    /// [`TranscodeError::InvalidInput`] for a file that cannot be decoded,
    /// [`TranscodeError::Failed`] otherwise. On error `output` may be partial.
    async fn transcode(&self, input: &Path, output: &Path, progress: &ProgressSink) -> Result<TranscodeReport, TranscodeError>;
}

/// Errors of [`VideoProbe`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Not an MP4 or QuickTime (ISO base media) file, or too damaged to read.
    #[error("not an MP4 file: {0}")]
    NotMp4(String),
    /// An MP4 without a video track.
    #[error("no video track")]
    NoVideoTrack,
    /// The container declares one frame size and the coded stream (its
    /// parameter sets) another: the metadata cannot be trusted.
    #[error("the container says {declared_width}x{declared_height} but the stream is {coded_width}x{coded_height}")]
    SizeMismatch { declared_width: u32, declared_height: u32, coded_width: u32, coded_height: u32 },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Reads the facts the upload rules need from a file's own bytes.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VideoProbe: Send + Sync + 'static {
    /// Probes the file.
    ///
    /// The facts come from the file's own bytes: the size from the coded
    /// stream's parameter sets where the codec has them (H.264, HEVC), the
    /// duration from the samples' timing.
    ///
    /// # Errors
    /// [`ProbeError::NotMp4`], [`ProbeError::NoVideoTrack`],
    /// [`ProbeError::SizeMismatch`], or a backend error when the file cannot
    /// be read.
    async fn probe(&self, path: &Path) -> Result<ProbedVideo, ProbeError>;
}

/// Hashes and checks passwords.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync + 'static {
    /// Hashes a new password with a fresh salt.
    ///
    /// # Errors
    /// Only [`BackendError`] (the hasher itself failed).
    async fn hash(&self, password: &Password) -> Result<PasswordHash, BackendError>;

    /// Whether the password matches the hash; a malformed hash is `false`.
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> bool;
}

/// A signed access token and how long it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The bearer token (a JWT).
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Errors of [`TokenIssuer::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, forged, or signed with another key.
    #[error("invalid token")]
    Invalid,
    /// Well signed but past its expiry.
    #[error("expired token")]
    Expired,
}

/// Issues and checks access tokens. Async because the keys may have to be
/// read again (a rotation another server learnt of first).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait TokenIssuer: Send + Sync + 'static {
    /// A token that names this user.
    ///
    /// # Errors
    /// Only [`BackendError`] (signing failed).
    async fn issue(&self, user: UserId) -> Result<AccessToken, BackendError>;

    /// The user a token names, if the token is valid now.
    ///
    /// # Errors
    /// [`TokenError`] when it is not.
    async fn verify(&self, token: &str) -> Result<UserId, TokenError>;
}

/// Time, so that tests can control it.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);
}

/// A job's own directory of scratch files, handed out by [`ScratchSpace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchDir {
    /// The directory itself.
    pub dir: PathBuf,
    /// Where the original is fetched to.
    pub input: PathBuf,
    /// Where the transcoder writes the processed file.
    pub output: PathBuf,
}

/// The scratch files of the jobs a worker runs: created per job, removed
/// when it ends, and those of a killed worker swept by the adapter.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ScratchSpace: Send + Sync + 'static {
    /// A new, empty directory for one job; `label` names it for operators.
    ///
    /// # Errors
    /// [`BackendError`] when it cannot be created (of kind `StorageFull`
    /// when the disk is full).
    async fn create(&self, label: &str) -> Result<ScratchDir, BackendError>;

    /// Removes the directory and everything in it. A failure is logged, not
    /// returned: the adapter's sweeper removes what is left.
    async fn remove(&self, dir: &ScratchDir);
}

/// Keeps this host out of its group's scale-in while it holds work: a
/// worker host protected while it runs a job is never the one a scale-in
/// terminates mid-transcode (which would cost the job an attempt).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ScaleInProtection: Send + Sync + 'static {
    /// Protects this host (`true`) or lets it go (`false`).
    ///
    /// # Errors
    /// [`BackendError`] when the group's API cannot be reached.
    async fn protect(&self, protected: bool) -> Result<(), BackendError>;
}

/// Whether the process can serve, for the load balancer's health check.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// Checks that the backends the process needs answer now.
    ///
    /// # Errors
    /// [`BackendError`] naming what does not answer.
    async fn check(&self) -> Result<(), BackendError>;
}

/// How many events were counted under one key within its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub key: String,
    pub count: u32,
    /// When the window of this count started (its first event).
    pub since: Timestamp,
}

/// Events counted per key over a window, where every web server sees them,
/// so that limits hold behind a load balancer whatever server a request
/// reaches: failed log-ins, sign-ups, requests for a new verification link.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Counters: Send + Sync + 'static {
    /// The counts of these keys (keys without events are left out).
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn counts(&self, keys: &[String]) -> Result<Vec<Count>, BackendError>;

    /// Counts one event at `now` under each key, and returns the counts as
    /// they now are (so that racing callers each see their own event). A
    /// count whose window (`window` from its first event) has ended starts
    /// again at one.
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn record(&self, keys: &[String], window: Duration, now: Timestamp) -> Result<Vec<Count>, BackendError>;

    /// Forgets the counts of these keys (after a successful log-in).
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn clear(&self, keys: &[String]) -> Result<(), BackendError>;
}

/// What became of a job, for the operators' metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JobEvent {
    /// A worker began processing a video, `waited` after its upload.
    Started { waited: Duration },
    /// The video is processed: the transcode took `transcode`, and the whole
    /// way from the upload `since_upload`.
    Succeeded { transcode: Duration, since_upload: Duration },
    /// An attempt failed and the job will be tried again.
    Retried,
    /// The video ended `failed`.
    Failed,
    /// The job went to the dead-letter queue.
    DeadLettered,
}

/// Takes note of what becomes of jobs (counters, timings). Never fails: a
/// metric that cannot be recorded is not the job's problem.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait JobEvents: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: JobEvent);
}

/// A [`JobEvents`] that keeps nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJobEvents;

impl JobEvents for NoJobEvents {
    fn record(&self, _: JobEvent) {}
}

/// What a [`Cache`] holds under a key, and the generation it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLookup {
    /// Changes on every [`Cache::invalidate`]; the caller keeps in each
    /// entry the generation it was built at, and an entry of another
    /// generation is stale.
    pub generation: u64,
    /// The entry, unless missing or expired.
    pub value: Option<std::sync::Arc<[u8]>>,
}

/// Short-lived entries (the public pages) that one or many processes share,
/// and one invalidation counter. An optimisation: callers treat every error
/// as a miss.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The current generation and the entry under `key`, in one call.
    ///
    /// # Errors
    /// [`BackendError`] when the cache cannot be reached.
    async fn lookup(&self, key: &str) -> Result<CacheLookup, BackendError>;

    /// Keeps `value` under `key` for `ttl`, replacing any entry there.
    ///
    /// # Errors
    /// [`BackendError`] when the cache cannot be reached.
    async fn store(&self, key: &str, value: std::sync::Arc<[u8]>, ttl: Duration) -> Result<(), BackendError>;

    /// Moves to a new generation: every entry stored before is stale.
    ///
    /// # Errors
    /// [`BackendError`] when the cache cannot be reached.
    async fn invalidate(&self) -> Result<(), BackendError>;
}

/// Keys derived from the deployment's secret: single-use tokens and their
/// stored hashes, and the pseudonyms of client networks. Every web server
/// derives the same ones.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Keyring: Send + Sync + 'static {
    /// A new random single-use token and its hash.
    fn new_token(&self) -> NewToken;

    /// The hash a token is stored under.
    fn token_hash(&self, token: &str) -> TokenHash;

    /// The pseudonym of the network `address` belongs to
    /// ([`crate::trust::network_of`]).
    fn network_tag(&self, address: std::net::IpAddr) -> NetworkTag;

    /// The pseudonym of one client address.
    fn address_tag(&self, address: std::net::IpAddr) -> NetworkTag;
}

/// Sends e-mail.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Hands one message to the mail system.
    ///
    /// # Errors
    /// [`BackendError`]: `Unavailable` when the mail system cannot be
    /// reached (the message is tried again later), `Internal` when it
    /// refused the message.
    async fn send(&self, mail: &Mail) -> Result<(), BackendError>;
}

/// Why a verification token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// No token has this hash (never issued, or forged).
    #[error("unknown token")]
    Unknown,
    /// The token was used already.
    #[error("token already used")]
    Used,
    /// The token's time ran out.
    #[error("token expired")]
    Expired,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// E-mail verification: the outbox of messages to send, and the tokens
/// their links carry (stored only as hashes).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Verifications: Send + Sync + 'static {
    /// Queues a message of `kind` for `user`, due at once.
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn queue_mail(&self, user: UserId, kind: MailKind, now: Timestamp) -> Result<(), BackendError>;

    /// Takes up to `limit` due messages for sending: each is hidden from
    /// other takers for `lease` (a sender that dies leaves it to another).
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn take_due(&self, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<PendingMail>, BackendError>;

    /// The message was sent: it leaves the outbox.
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn mail_sent(&self, id: i64) -> Result<(), BackendError>;

    /// Sending failed: the message is due again at `retry_at`, with the
    /// error kept for operators.
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn mail_failed(&self, id: i64, error: &str, retry_at: Timestamp) -> Result<(), BackendError>;

    /// Stores a token's hash for `user`, valid until `expires_at`.
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn store_token(&self, user: UserId, hash: &TokenHash, expires_at: Timestamp) -> Result<(), BackendError>;

    /// Uses the token with this hash: marks it used and its user's address
    /// verified, in one transaction, and says whose it was.
    ///
    /// # Errors
    /// [`RedeemError`] for an unknown, used or expired token.
    async fn redeem(&self, hash: &TokenHash, now: Timestamp) -> Result<UserId, RedeemError>;
}

/// What operators use against ballot stuffing.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VoteAudit: Send + Sync + 'static {
    /// Every (player, network) where `min_accounts` or more accounts that
    /// share the network (by sign-up, or by the votes' own network) voted
    /// for the player since `since`, largest first.
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn findings(&self, since: Timestamp, min_accounts: u32) -> Result<Vec<AuditFinding>, BackendError>;

    /// Removes every vote of these accounts and takes them off the videos'
    /// and players' totals, in one transaction.
    ///
    /// # Errors
    /// Only [`BackendError`].
    async fn void(&self, accounts: &[UserId]) -> Result<VoidReport, BackendError>;
}
