//! Adapters: the ports of `anb-domain` implemented on real technology.
//!
//! | module | adapters |
//! |---|---|
//! | [`db`] | SeaORM repositories and the database job queue (SQLite, PostgreSQL) |
//! | [`lease`] | [`lease::LeasedQueue`]: one live delivery per video over an at-least-once queue |
//! | [`relay`] | the outbox relay from the `jobs` table to an external queue |
//! | [`storage`] | local-directory object storage with HMAC-signed URLs |
//! | [`s3`] | [`s3::S3Storage`], object storage on Amazon S3 |
//! | [`sqs`] | [`sqs::SqsQueue`], the job queue on Amazon SQS with a dead-letter queue |
//! | [`mp4`] | [`mp4::Mp4BoxProbe`], the `VideoProbe` port on the `anb-mp4` box parser |
//! | [`gst`] | [`gst::GstTranscoder`], the GStreamer processing pipeline |
//! | [`auth`] | argon2id password hashing, HS256 JWT access tokens |
//! | [`clock`] | the system clock |

pub mod auth;
pub mod aws;
pub mod clock;
pub mod config;
pub mod db;
pub mod gst;
pub mod lease;
pub mod mp4;
pub mod relay;
pub mod runtime;
pub mod s3;
pub mod sqs;
pub mod storage;
pub mod wiring;

pub use auth::{Argon2Hasher, JwtTokenIssuer};
pub use clock::SystemClock;
pub use db::{Database, SeaOrmJobQueue, SeaOrmUserRepository, SeaOrmVideoRepository, SeaOrmVoteRepository};
pub use gst::GstTranscoder;
pub use lease::LeasedQueue;
pub use mp4::Mp4BoxProbe;
pub use relay::OutboxRelay;
pub use s3::S3Storage;
pub use sqs::SqsQueue;
pub use storage::{LocalFileStorage, UrlSigner};
