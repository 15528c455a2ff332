//! The use cases of the ANB Rising Stars Showcase, one method per operation
//! of the HTTP API, plus the worker step that processes one job.
//!
//! Everything here talks to the world through the ports of `anb-domain`, so
//! it is tested with mocks and runs unchanged on SQLite or PostgreSQL, local
//! files or S3, the database queue or SQS.

pub mod accounts;
pub mod audit;
pub mod cache;
pub mod login;
pub mod mail;
pub mod public;
pub mod sweeper;
pub mod videos;
pub mod worker;

pub use accounts::{
    AccountRules, Accounts, AccountsPorts, AuthError, LogInError, ResendError, Resent, SignUp, SignUpError, SignUpLimits, VerifyError,
};
pub use audit::BallotAudit;
pub use cache::{DEFAULT_CACHE_TTL, PageCache};
pub use login::LoginLimits;
pub use mail::{MailRelay, MailSettings};
pub use public::{PublicQueryError, Showcase, ShowcasePorts, ShowcaseRules, VoteError};
pub use sweeper::DeadLetterSweeper;
pub use videos::{DeleteError, UploadError, VideoAccessError, VideoDetail, VideoSummary, Videos};
pub use worker::{Processor, ProcessorPorts, ProcessorSettings, Shutdown, WorkerError};

use std::time::Duration;

/// How long the signed links handed out in responses stay valid by default.
pub const DEFAULT_URL_TTL: Duration = Duration::from_secs(3600);

/// A field that failed validation, reported as `errors[]` in problem bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field's name as the client sent it.
    pub field: &'static str,
    /// What is wrong with it, for the user.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}
