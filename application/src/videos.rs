//! A player's own videos: upload, list, detail, delete.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{Clock, Deletion, ObjectStorage, ProbeError, StorageError, VideoProbe, VideoRepository, VideoRepositoryError};
use anb_domain::video::InvalidTitle;
use anb_domain::{BackendError, NewVideo, ObjectKey, TaskId, Title, UploadRejection, UploadRules, UserId, Video, VideoId};

/// Why an upload was refused. Nothing is stored when it is.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Rejected(#[from] UploadRejection),
    #[error(transparent)]
    InvalidTitle(#[from] InvalidTitle),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a video cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum VideoAccessError {
    #[error("no such video")]
    NotFound,
    #[error("the video is another user's")]
    Forbidden,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a video cannot be deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no such video")]
    NotFound,
    #[error("the video is another user's")]
    Forbidden,
    #[error("the video is public already")]
    AlreadyPublic,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A video in its owner's list.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSummary {
    pub video: Video,
    /// Signed link to the processed file, once there is one.
    pub processed_url: Option<String>,
}

/// A video with links to both files.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoDetail {
    pub video: Video,
    pub original_url: String,
    pub processed_url: Option<String>,
}

/// Use cases over a player's own videos.
#[derive(Clone)]
pub struct Videos {
    videos: Arc<dyn VideoRepository>,
    storage: Arc<dyn ObjectStorage>,
    probe: Arc<dyn VideoProbe>,
    clock: Arc<dyn Clock>,
    rules: UploadRules,
    url_ttl: Duration,
}

/// What the upload use cases talk to.
pub struct VideosPorts {
    pub videos: Arc<dyn VideoRepository>,
    pub storage: Arc<dyn ObjectStorage>,
    pub probe: Arc<dyn VideoProbe>,
    pub clock: Arc<dyn Clock>,
}

impl Videos {
    /// Wires the use cases to their ports; uploads are checked against
    /// `rules`, and links to a player's files last `url_ttl`.
    pub fn new(ports: VideosPorts, rules: UploadRules, url_ttl: Duration) -> Self {
        let VideosPorts { videos, storage, probe, clock } = ports;
        Self { videos, storage, probe, clock, rules, url_ttl }
    }

    /// The rules uploads are checked against.
    pub fn rules(&self) -> &UploadRules {
        &self.rules
    }

    /// Accepts a received upload: checks the title and the file's contents,
    /// stores the original, records the video with its job. The caller owns
    /// `file` and removes it afterwards.
    ///
    /// # Errors
    /// [`UploadError::Rejected`] or [`UploadError::InvalidTitle`] for a bad
    /// upload; [`UploadError::Backend`] when storage or database fail, in
    /// which case nothing stays stored either.
    pub async fn upload(&self, owner: UserId, title: &str, file: &Path, size: u64) -> Result<Video, UploadError> {
        let title = Title::parse(title)?;
        self.rules.check_size(size)?;
        let facts = self.probe.probe(file).await.map_err(|e| match e {
            ProbeError::NotMp4(_) => UploadError::Rejected(UploadRejection::NotMp4),
            ProbeError::NoVideoTrack => UploadError::Rejected(UploadRejection::NoVideoTrack),
            ProbeError::SizeMismatch { declared_width, declared_height, coded_width, coded_height } => {
                UploadError::Rejected(UploadRejection::SizeMismatch { declared_width, declared_height, coded_width, coded_height })
            }
            ProbeError::Backend(e) => UploadError::Backend(e),
        })?;
        self.rules.check(&facts)?;

        let task_id = TaskId::random();
        let original_key = ObjectKey::original(task_id);
        self.storage.put_file(&original_key, file).await.map_err(StorageError::into_backend)?;
        let new = NewVideo { owner, title, task_id, original_key: original_key.clone(), uploaded_at: self.clock.now() };
        match self.videos.create_with_job(new).await {
            Ok(video) => Ok(video),
            Err(error) => {
                if let Err(cleanup) = self.storage.delete(&original_key).await {
                    tracing::error!(key = %original_key, error = %cleanup, "could not remove the original of a failed upload");
                }
                Err(error.into_backend().into())
            }
        }
    }

    /// The player's videos, newest first, with links to processed files.
    ///
    /// # Errors
    /// Only [`BackendError`].
    pub async fn list_own(&self, owner: UserId) -> Result<Vec<VideoSummary>, BackendError> {
        let videos = self.videos.list_by_owner(owner).await.map_err(VideoRepositoryError::into_backend)?;
        let mut summaries = Vec::with_capacity(videos.len());
        for video in videos {
            let processed_url = self.processed_url(&video).await?;
            summaries.push(VideoSummary { video, processed_url });
        }
        Ok(summaries)
    }

    /// One of the player's videos.
    ///
    /// # Errors
    /// [`VideoAccessError::NotFound`], or [`VideoAccessError::Forbidden`] when
    /// it belongs to someone else.
    pub async fn detail(&self, owner: UserId, id: VideoId) -> Result<VideoDetail, VideoAccessError> {
        let video = self.videos.by_id(id).await.map_err(VideoRepositoryError::into_backend)?.ok_or(VideoAccessError::NotFound)?;
        if video.owner != owner {
            return Err(VideoAccessError::Forbidden);
        }
        let original_url = self.storage.signed_url(&video.original_key, self.url_ttl).await.map_err(StorageError::into_backend)?;
        let processed_url = self.processed_url(&video).await?;
        Ok(VideoDetail { video, original_url, processed_url })
    }

    /// Deletes one of the player's videos and its files, unless it is public.
    ///
    /// # Errors
    /// [`DeleteError::NotFound`], [`DeleteError::Forbidden`], or
    /// [`DeleteError::AlreadyPublic`] for a processed video.
    pub async fn delete(&self, owner: UserId, id: VideoId) -> Result<VideoId, DeleteError> {
        let video = self.videos.by_id(id).await.map_err(VideoRepositoryError::into_backend)?.ok_or(DeleteError::NotFound)?;
        if video.owner != owner {
            return Err(DeleteError::Forbidden);
        }
        if video.status.is_public() {
            return Err(DeleteError::AlreadyPublic);
        }
        match self.videos.delete_unless_public(id).await.map_err(VideoRepositoryError::into_backend)? {
            Deletion::Deleted(video) => {
                for key in std::iter::once(&video.original_key).chain(video.processed_key.as_ref()) {
                    self.storage.delete(key).await.map_err(StorageError::into_backend)?;
                }
                Ok(id)
            }
            Deletion::Public => Err(DeleteError::AlreadyPublic),
            Deletion::NotFound => Err(DeleteError::NotFound),
        }
    }

    async fn processed_url(&self, video: &Video) -> Result<Option<String>, BackendError> {
        match (&video.processed_key, video.status.is_public()) {
            (Some(key), true) => Ok(Some(self.storage.signed_url(key, self.url_ttl).await.map_err(StorageError::into_backend)?)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use anb_domain::ports::{MockClock, MockObjectStorage, MockVideoProbe, MockVideoRepository};
    use anb_domain::{ProbedVideo, VideoStatus};
    use chrono::Utc;
    use mockall::predicate::eq;

    use super::*;

    use anb_domain::fixtures::video;

    fn good_probe() -> MockVideoProbe {
        let mut probe = MockVideoProbe::new();
        probe.expect_probe().returning(|_| {
            Ok(ProbedVideo { duration: Duration::from_secs(40), width: 1920, height: 1080, codec: "avc1".into(), frame_rate: Some(30.0) })
        });
        probe
    }

    fn clock() -> MockClock {
        let mut clock = MockClock::new();
        clock.expect_now().returning(Utc::now);
        clock
    }

    fn videos(repo: MockVideoRepository, storage: MockObjectStorage, probe: MockVideoProbe) -> Videos {
        Videos::new(
            VideosPorts { videos: Arc::new(repo), storage: Arc::new(storage), probe: Arc::new(probe), clock: Arc::new(clock()) },
            UploadRules::default(),
            Duration::from_secs(60),
        )
    }

    fn file() -> PathBuf {
        PathBuf::from("/tmp/upload.mp4")
    }

    #[tokio::test]
    async fn a_valid_upload_stores_the_original_then_records_video_and_job() {
        let mut storage = MockObjectStorage::new();
        storage
            .expect_put_file()
            .withf(|key, path| key.as_str().starts_with("uploaded/") && path == file())
            .times(1)
            .returning(|_, _| Ok(()));
        let mut repo = MockVideoRepository::new();
        repo.expect_create_with_job()
            .withf(|v| v.owner == UserId(3) && v.title.as_str() == "Tiro" && v.original_key == ObjectKey::original(v.task_id))
            .returning(|v| {
                Ok(Video {
                    title: v.title.as_str().into(),
                    task_id: v.task_id,
                    original_key: v.original_key,
                    ..video(1, 3, VideoStatus::Uploaded)
                })
            });
        let video = videos(repo, storage, good_probe()).upload(UserId(3), "Tiro", &file(), 1000).await.unwrap();
        assert_eq!(video.status, VideoStatus::Uploaded);
    }

    #[tokio::test]
    async fn a_file_that_is_not_mp4_is_rejected_and_nothing_is_stored() {
        let mut probe = MockVideoProbe::new();
        probe.expect_probe().returning(|_| Err(ProbeError::NotMp4("no ftyp".into())));
        let err =
            videos(MockVideoRepository::new(), MockObjectStorage::new(), probe).upload(UserId(3), "Tiro", &file(), 10).await.unwrap_err();
        assert!(matches!(err, UploadError::Rejected(UploadRejection::NotMp4)));
    }

    #[tokio::test]
    async fn an_mp4_without_video_is_rejected() {
        let mut probe = MockVideoProbe::new();
        probe.expect_probe().returning(|_| Err(ProbeError::NoVideoTrack));
        let err =
            videos(MockVideoRepository::new(), MockObjectStorage::new(), probe).upload(UserId(3), "Tiro", &file(), 10).await.unwrap_err();
        assert!(matches!(err, UploadError::Rejected(UploadRejection::NoVideoTrack)));
    }

    #[tokio::test]
    async fn uploads_breaking_the_video_rules_are_rejected() {
        for (secs, w, h) in [(12.0, 1920, 1080), (61.0, 1920, 1080), (30.0, 1280, 720)] {
            let mut probe = MockVideoProbe::new();
            probe.expect_probe().returning(move |_| {
                Ok(ProbedVideo { duration: Duration::from_secs_f64(secs), width: w, height: h, codec: "avc1".into(), frame_rate: None })
            });
            let err = videos(MockVideoRepository::new(), MockObjectStorage::new(), probe)
                .upload(UserId(3), "Tiro", &file(), 10)
                .await
                .unwrap_err();
            assert!(matches!(err, UploadError::Rejected(UploadRejection::Duration { .. } | UploadRejection::Resolution { .. })), "{err:?}");
        }
    }

    #[tokio::test]
    async fn an_oversized_file_or_a_bad_title_is_rejected_before_probing() {
        let v = videos(MockVideoRepository::new(), MockObjectStorage::new(), MockVideoProbe::new());
        assert!(matches!(
            v.upload(UserId(3), "Tiro", &file(), 104_857_601).await,
            Err(UploadError::Rejected(UploadRejection::TooLarge { .. }))
        ));
        assert!(matches!(v.upload(UserId(3), "", &file(), 10).await, Err(UploadError::InvalidTitle(InvalidTitle::Missing))));
    }

    #[tokio::test]
    async fn when_the_database_fails_the_stored_original_is_removed() {
        let mut storage = MockObjectStorage::new();
        storage.expect_put_file().returning(|_, _| Ok(()));
        storage.expect_delete().withf(|key| key.as_str().starts_with("uploaded/")).times(1).returning(|_| Ok(()));
        let mut repo = MockVideoRepository::new();
        repo.expect_create_with_job().returning(|_| Err(BackendError::unavailable("db down").into()));
        let err = videos(repo, storage, good_probe()).upload(UserId(3), "Tiro", &file(), 10).await.unwrap_err();
        assert!(matches!(err, UploadError::Backend(_)));
    }

    #[tokio::test]
    async fn when_storage_fails_no_video_is_recorded() {
        let mut storage = MockObjectStorage::new();
        storage.expect_put_file().returning(|_, _| Err(BackendError::storage_full("disk full").into()));
        let err = videos(MockVideoRepository::new(), storage, good_probe()).upload(UserId(3), "Tiro", &file(), 10).await.unwrap_err();
        assert!(matches!(err, UploadError::Backend(e) if e.kind == anb_domain::BackendErrorKind::StorageFull));
    }

    #[tokio::test]
    async fn own_list_links_only_processed_files() {
        let mut repo = MockVideoRepository::new();
        repo.expect_list_by_owner()
            .with(eq(UserId(3)))
            .returning(|_| Ok(vec![video(2, 3, VideoStatus::Processed), video(1, 3, VideoStatus::Uploaded)]));
        let mut storage = MockObjectStorage::new();
        storage.expect_signed_url().times(1).returning(|key, _| Ok(format!("https://files/{key}")));
        let list = videos(repo, storage, MockVideoProbe::new()).list_own(UserId(3)).await.unwrap();
        assert!(list[0].processed_url.as_deref().unwrap().contains("processed/"));
        assert_eq!(list[1].processed_url, None);
    }

    #[tokio::test]
    async fn detail_of_someone_elses_video_is_forbidden_and_of_a_missing_one_not_found() {
        let mut repo = MockVideoRepository::new();
        repo.expect_by_id().with(eq(VideoId(1))).returning(|_| Ok(Some(video(1, 9, VideoStatus::Processed))));
        repo.expect_by_id().with(eq(VideoId(2))).returning(|_| Ok(None));
        let v = videos(repo, MockObjectStorage::new(), MockVideoProbe::new());
        assert!(matches!(v.detail(UserId(3), VideoId(1)).await, Err(VideoAccessError::Forbidden)));
        assert!(matches!(v.detail(UserId(3), VideoId(2)).await, Err(VideoAccessError::NotFound)));
    }

    #[tokio::test]
    async fn detail_links_the_original_always() {
        let mut repo = MockVideoRepository::new();
        repo.expect_by_id().returning(|_| Ok(Some(video(1, 3, VideoStatus::Uploaded))));
        let mut storage = MockObjectStorage::new();
        storage.expect_signed_url().times(1).returning(|key, ttl| Ok(format!("https://files/{key}?ttl={}", ttl.as_secs())));
        let detail = videos(repo, storage, MockVideoProbe::new()).detail(UserId(3), VideoId(1)).await.unwrap();
        assert!(detail.original_url.contains("uploaded/") && detail.original_url.ends_with("ttl=60"));
        assert_eq!(detail.processed_url, None);
    }

    #[tokio::test]
    async fn deleting_removes_the_row_then_the_files() {
        let mut repo = MockVideoRepository::new();
        let stored = video(1, 3, VideoStatus::Failed);
        let (s1, s2) = (stored.clone(), stored.clone());
        repo.expect_by_id().returning(move |_| Ok(Some(s1.clone())));
        repo.expect_delete_unless_public().returning(move |_| Ok(Deletion::Deleted(s2.clone())));
        let mut storage = MockObjectStorage::new();
        storage.expect_delete().with(eq(stored.original_key.clone())).times(1).returning(|_| Ok(()));
        assert_eq!(videos(repo, storage, MockVideoProbe::new()).delete(UserId(3), VideoId(1)).await.unwrap(), VideoId(1));
    }

    #[tokio::test]
    async fn public_videos_cannot_be_deleted_even_when_they_become_public_meanwhile() {
        let mut repo = MockVideoRepository::new();
        repo.expect_by_id().with(eq(VideoId(1))).returning(|_| Ok(Some(video(1, 3, VideoStatus::Processed))));
        repo.expect_by_id().with(eq(VideoId(2))).returning(|_| Ok(Some(video(2, 3, VideoStatus::Processing))));
        repo.expect_delete_unless_public().with(eq(VideoId(2))).returning(|_| Ok(Deletion::Public));
        let v = videos(repo, MockObjectStorage::new(), MockVideoProbe::new());
        assert!(matches!(v.delete(UserId(3), VideoId(1)).await, Err(DeleteError::AlreadyPublic)));
        assert!(matches!(v.delete(UserId(3), VideoId(2)).await, Err(DeleteError::AlreadyPublic)));
    }

    #[tokio::test]
    async fn deleting_someone_elses_or_a_missing_video_is_refused() {
        let mut repo = MockVideoRepository::new();
        repo.expect_by_id().with(eq(VideoId(1))).returning(|_| Ok(Some(video(1, 9, VideoStatus::Uploaded))));
        repo.expect_by_id().with(eq(VideoId(2))).returning(|_| Ok(None));
        let v = videos(repo, MockObjectStorage::new(), MockVideoProbe::new());
        assert!(matches!(v.delete(UserId(3), VideoId(1)).await, Err(DeleteError::Forbidden)));
        assert!(matches!(v.delete(UserId(3), VideoId(2)).await, Err(DeleteError::NotFound)));
    }
}
