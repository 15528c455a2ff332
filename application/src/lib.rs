//! The use cases of the ANB Rising Stars Showcase, one method per operation
//! of the HTTP API, plus the background work: the job [`Processor`], the
//! [`MailRelay`] and the [`DeadLetterSweeper`].
//!
//! Everything here talks to the world through the ports of `anb-domain`, so
//! it is tested with mocks and runs unchanged on SQLite or PostgreSQL, local
//! files or S3, any of the queues (the database, SQS, RabbitMQ, Kafka), the
//! page cache in memory or in Redis, and any mailer.
//!
//! Modules import only from below: `shutdown`, `login` and `cache` import
//! nothing of this crate, `protection` only `shutdown`; the use cases import
//! those and nothing of each other.

pub mod accounts;
pub mod audit;
pub mod cache;
pub mod login;
pub mod mail;
pub mod processor;
pub mod protection;
pub mod readiness;
pub mod showcase;
pub mod shutdown;
pub mod sweeper;
pub mod videos;

pub use accounts::{
    AccountRules, Accounts, AccountsPorts, AuthError, FieldError, LogInError, LoggedIn, ResendError, Resent, SignUp, SignUpError,
    SignUpLimits, VerifyError,
};
pub use audit::BallotAudit;
pub use cache::{DEFAULT_CACHE_TTL, PageCache};
pub use login::LoginLimits;
pub use mail::{MailRelay, MailSettings};
pub use processor::{Processor, ProcessorPorts, ProcessorSettings, WorkerError};
pub use protection::{Busy, BusyGuard, HostProtection};
pub use readiness::Readiness;
pub use showcase::{PublicQueryError, Showcase, ShowcasePorts, ShowcaseRules, VoteError};
pub use shutdown::{Shutdown, shutdown_on};
pub use sweeper::DeadLetterSweeper;
pub use videos::{DeleteError, UploadError, VideoAccessError, VideoDetail, VideoSummary, Videos, VideosPorts};

use std::time::Duration;

/// How long the signed links handed out in responses stay valid by default.
pub const DEFAULT_URL_TTL: Duration = Duration::from_secs(3600);
