//! Adapters: the ports of `anb-domain` implemented on real technology.
//!
//! | module | adapters |
//! |---|---|
//! | [`db`] | SeaORM repositories and the database job queue (SQLite, PostgreSQL) |
//! | [`storage`] | local-directory object storage with HMAC-signed URLs |
//! | [`mp4`] | the MP4 box parser behind [`mp4::Mp4BoxProbe`] |
//! | [`gst`] | [`gst::GstTranscoder`], the GStreamer processing pipeline |
//! | [`auth`] | argon2id password hashing, HS256 JWT access tokens |
//! | [`clock`] | the system clock |

pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod gst;
pub mod mp4;
pub mod runtime;
pub mod storage;
pub mod wiring;

pub use auth::{Argon2Hasher, JwtTokenIssuer};
pub use clock::SystemClock;
pub use db::{Database, SeaOrmJobQueue, SeaOrmUserRepository, SeaOrmVideoRepository, SeaOrmVoteRepository};
pub use gst::GstTranscoder;
pub use mp4::Mp4BoxProbe;
pub use storage::{LocalFileStorage, UrlSigner};
