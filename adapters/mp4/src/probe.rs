//! [`Mp4BoxProbe`]: the `VideoProbe` port on this crate's parser.

use std::path::Path;

use anb_domain::ports::{ProbeError, VideoProbe};
use anb_domain::{BackendError, ProbedVideo};
use async_trait::async_trait;

use crate::parse;

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
