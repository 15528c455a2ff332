//! [`S3Storage`]: the [`ObjectStorage`] port on Amazon S3 (or anything that
//! speaks its protocol, such as moto). Large files go up as multipart
//! uploads streamed from disk, a few parts at a time; links are presigned
//! GET URLs.

use std::path::Path;
use std::time::Duration;

use anb_domain::ports::{HealthCheck, ObjectStorage, StorageError};
use anb_domain::{BackendError, ObjectKey};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration};
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use crate::{sdk_error, service_code};

/// Files at least this large are sent as multipart uploads.
const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Size of each part but the last (S3 wants at least 5 MiB).
const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Parts in flight at once; memory stays near this many part buffers.
const PARTS_IN_FLIGHT: usize = 4;
const CONTENT_TYPE: &str = "video/mp4";

/// Objects in one S3 bucket, under the keys the domain names
/// (`uploaded/…`, `processed/…`).
#[derive(Clone, Debug)]
pub struct S3Storage {
    client: Client,
    bucket: String,
}

impl S3Storage {
    /// Storage in `bucket`. With a custom endpoint (`AWS_ENDPOINT_URL`, an
    /// emulator) buckets are addressed by path rather than by host name.
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let path_style = config.endpoint_url().is_some();
        let client = Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(path_style).build());
        Self { client, bucket: bucket.into() }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket unless it exists; returns whether it created it.
    ///
    /// # Errors
    /// When S3 refuses either request.
    pub async fn ensure_bucket(&self) -> Result<bool, BackendError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(false),
            Err(e) if e.as_service_error().is_some_and(aws_sdk_s3::operation::head_bucket::HeadBucketError::is_not_found) => {}
            Err(e) => return Err(sdk_error("checking the bucket", &e)),
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that refuses an explicit constraint.
        if let Some(region) = self.client.config().region().map(ToString::to_string).filter(|r| r != "us-east-1") {
            let constraint = BucketLocationConstraint::from(region.as_str());
            create = create.create_bucket_configuration(CreateBucketConfiguration::builder().location_constraint(constraint).build());
        }
        match create.send().await {
            Ok(_) => Ok(true),
            Err(e) if matches!(service_code(&e), Some("BucketAlreadyOwnedByYou")) => Ok(false),
            Err(e) => Err(sdk_error("creating the bucket", &e)),
        }
    }

    async fn put_multipart(&self, key: &str, source: &Path, size: u64) -> Result<(), BackendError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| sdk_error("starting a multipart upload", &e))?;
        let upload_id = created.upload_id().ok_or_else(|| BackendError::internal("S3 returned no upload id"))?.to_owned();
        let uploaded = self.upload_parts(key, &upload_id, source, size).await;
        let completed = match uploaded {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map(drop)
                .map_err(|e| sdk_error("completing a multipart upload", &e)),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Parts of an unfinished upload are billed until aborted.
            if let Err(e) = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id).send().await {
                tracing::warn!(key, error = %sdk_error("aborting a multipart upload", &e), "multipart upload left behind");
            }
        }
        completed
    }

    async fn upload_parts(&self, key: &str, upload_id: &str, source: &Path, size: u64) -> Result<Vec<CompletedPart>, BackendError> {
        let parts = size.div_ceil(PART_SIZE);
        futures::stream::iter(0..parts)
            .map(|index| async move {
                let offset = index * PART_SIZE;
                let body = ByteStream::read_from()
                    .path(source)
                    .offset(offset)
                    .length(Length::Exact(PART_SIZE.min(size - offset)))
                    .build()
                    .await
                    .map_err(|e| BackendError::internal(format!("reading {}: {e}", source.display())))?;
                let number = i32::try_from(index + 1).map_err(|_| BackendError::internal("too many parts"))?;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| sdk_error("uploading a part", &e))?;
                Ok(CompletedPart::builder().part_number(number).set_e_tag(part.e_tag().map(str::to_owned)).build())
            })
            .buffered(PARTS_IN_FLIGHT)
            .try_collect()
            .await
    }
}

/// Ready when the bucket answers (`/api/ready`'s `storage`).
#[async_trait]
impl HealthCheck for S3Storage {
    async fn check(&self) -> Result<(), BackendError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map(drop).map_err(|e| sdk_error("checking the bucket", &e))
    }
}

#[async_trait]
impl ObjectStorage for S3Storage {
    async fn put_file(&self, key: &ObjectKey, source: &Path) -> Result<(), StorageError> {
        let size = tokio::fs::metadata(source).await.map_err(|e| BackendError::io("reading the file to store", &e))?.len();
        if size >= MULTIPART_THRESHOLD {
            return Ok(self.put_multipart(key.as_str(), source, size).await?);
        }
        let body = ByteStream::from_path(source).await.map_err(|e| BackendError::internal(format!("reading {}: {e}", source.display())))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| sdk_error("storing an object", &e))?;
        Ok(())
    }

    async fn get_to_file(&self, key: &ObjectKey, target: &Path) -> Result<(), StorageError> {
        let object = match self.client.get_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key) => {
                return Err(StorageError::NotFound);
            }
            Err(e) => return Err(sdk_error("reading an object", &e).into()),
        };
        let mut file = tokio::fs::File::create(target).await.map_err(|e| BackendError::io("creating the download file", &e))?;
        let mut body = object.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| BackendError::unavailable(format!("reading an object: {e}")))? {
            file.write_all(&chunk).await.map_err(|e| BackendError::io("writing the download file", &e))?;
        }
        file.flush().await.map_err(|e| BackendError::io("writing the download file", &e))?;
        Ok(())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        // S3 answers a delete of a missing key with success too.
        self.client.delete_object().bucket(&self.bucket).key(key.as_str()).send().await.map_err(|e| sdk_error("deleting an object", &e))?;
        Ok(())
    }

    async fn signed_url(&self, key: &ObjectKey, ttl: Duration) -> Result<String, StorageError> {
        let presigning = PresigningConfig::expires_in(ttl).map_err(|e| BackendError::internal(format!("link lifetime: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .presigned(presigning)
            .await
            .map_err(|e| sdk_error("signing a link", &e))?;
        Ok(request.uri().to_owned())
    }
}
