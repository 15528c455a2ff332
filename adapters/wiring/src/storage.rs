//! The storage family: where original and processed files live, the data
//! directory (links served by anb-web) or S3 (presigned links).

use std::sync::Arc;

use anb_domain::ports::ObjectStorage;
use anb_files::{LocalFileStorage, UrlSigner};

use crate::StartupError;
use crate::aws::Cloud;
use crate::checked::not_built;
use crate::config::{CommonConfig, StorageKind};

/// Checks the storage settings without connecting.
pub(crate) fn check(config: &CommonConfig) -> Result<(), StartupError> {
    if config.storage == StorageKind::S3 {
        if !cfg!(feature = "aws") {
            return Err(not_built("ANB_STORAGE=s3", "aws"));
        }
        if config.bucket().is_none() {
            return Err(StartupError::Config("ANB_S3_BUCKET (--s3-bucket) must name the bucket with ANB_STORAGE=s3".into()));
        }
    }
    Ok(())
}

/// The stored files.
pub(crate) struct Storage {
    pub objects: Arc<dyn ObjectStorage>,
    /// The same storage when it is local files, which anb-web serves.
    pub files: Option<Arc<LocalFileStorage>>,
    /// Whether it answers (`/api/ready`).
    pub check: Arc<dyn anb_domain::ports::HealthCheck>,
}

/// The storage the configuration names; local links start with `base_url`
/// (empty: relative links) and are signed with `key`.
#[cfg_attr(not(feature = "aws"), allow(unused_variables))]
pub(crate) async fn build(config: &CommonConfig, cloud: &Cloud, base_url: &str, key: &[u8]) -> Storage {
    #[cfg(feature = "aws")]
    if let (StorageKind::S3, Some(bucket)) = (config.storage, config.bucket()) {
        let s3 = Arc::new(anb_aws::S3Storage::new(cloud.config().await, bucket));
        return Storage { objects: s3.clone(), files: None, check: s3 };
    }
    let files = Arc::new(LocalFileStorage::new(config.files_dir(), base_url, UrlSigner::derive(key)));
    Storage { objects: files.clone(), files: Some(files.clone()), check: files }
}

/// Creates the S3 bucket the configuration names, if missing; the settings
/// that name it. Nothing for local files.
#[cfg_attr(not(feature = "aws"), allow(unused_variables, clippy::unused_async))]
pub(crate) async fn provision(config: &CommonConfig, cloud: &Cloud) -> Result<Vec<(&'static str, String)>, StartupError> {
    #[cfg(feature = "aws")]
    if let (StorageKind::S3, Some(bucket)) = (config.storage, config.bucket()) {
        let created =
            anb_aws::S3Storage::new(cloud.config().await, bucket).ensure_bucket().await.map_err(|e| StartupError::Provision("S3", e))?;
        tracing::info!(bucket, created, "bucket ready");
        return Ok(vec![("ANB_S3_BUCKET", bucket.to_owned())]);
    }
    Ok(Vec::new())
}
