//! `anb-files`: adapters on the local disk.
//!
//! | module | adapters |
//! |---|---|
//! | [`storage`] | [`LocalFileStorage`], object storage in a directory, with links signed by [`UrlSigner`] and served by `anb-web` |
//! | [`scratch`] | [`LocalScratch`], the workers' scratch space, with the sweeper of what killed workers left |

pub mod scratch;
pub mod storage;

pub use scratch::LocalScratch;
pub use storage::{LinkError, LocalFileStorage, UrlSigner};
