//! Adapters of the [`Cache`](anb_domain::ports::Cache) port that keeps the
//! public pages for a few seconds:
//!
//! - [`MemoryCache`]: a map in the process, bounded in entries. The default;
//!   with several web servers each has its own, so a change reaches the
//!   others' pages only when their entries expire.
//! - [`RedisCache`]: one Redis shared by every web server and worker, so an
//!   invalidation reaches every server at once. Every call is bounded in
//!   time, and after a failure Redis is left alone for a second: a Redis
//!   that is away slows no request by more than that bound.

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::MemoryCache;
#[cfg(feature = "redis")]
pub use redis::RedisCache;
