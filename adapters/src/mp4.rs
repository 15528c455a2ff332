//! [`Mp4BoxProbe`]: the `VideoProbe` port on the strict MP4 box parser of
//! the `anb-mp4` crate (re-exported here as [`parse`]).

use std::path::Path;

use anb_domain::ports::{ProbeError, VideoProbe};
use anb_domain::{BackendError, ProbedVideo};
pub use anb_mp4::{MAX_MOOV_BYTES, parse};
use async_trait::async_trait;

/// [`anb_domain::ports::VideoProbe`] on this parser.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mp4BoxProbe;

#[async_trait]
impl VideoProbe for Mp4BoxProbe {
    async fn probe(&self, path: &Path) -> Result<ProbedVideo, ProbeError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| BackendError::internal(format!("opening upload: {e}")))?;
            parse(std::io::BufReader::new(file))
        })
        .await
        .map_err(|e| BackendError::internal(format!("probe task: {e}")))?
    }
}
