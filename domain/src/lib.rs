//! The heart of the ANB Rising Stars Showcase: what a player, a video and a
//! vote are, the rules they obey, and the ports (traits) through which the
//! application reaches the outside world.
//!
//! This crate does no I/O. Adapters (the crates under `adapters/`) implement the ports;
//! use cases in `anb-application` drive them. With the `mocks` feature every
//! port gets a mockall `Mock*` type for unit tests.

pub mod error;
#[cfg(feature = "mocks")]
pub mod fixtures;
pub mod ports;
pub mod trust;
pub mod upload;
pub mod user;
pub mod video;

pub use error::{BackendError, BackendErrorKind};
pub use trust::{AuditBasis, AuditFinding, Mail, MailKind, NetworkTag, NewToken, PendingMail, TokenHash, VoidReport};
pub use upload::{ACCEPTED_CODECS, ProbedVideo, UploadRejection, UploadRules};
pub use user::{Email, NewUser, Password, PasswordHash, User, UserId};
pub use video::{
    ATTEMPTS_EXHAUSTED, CityFilter, Delivery, Job, NewVideo, ObjectKey, Page, ProgressSink, PublicVideo, RankingEntry, Receipt, TaskId,
    Title, Video, VideoId, VideoStatus,
};

/// A point in time, always UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
