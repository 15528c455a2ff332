//! What everyone sees: public videos, votes and the ranking of players.

use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{ObjectStorage, VideoRepository, VoteRepository, VoteRepositoryError};
use anb_domain::{BackendError, CityFilter, Page, PublicVideo, RankingEntry, UserId, VideoId};

use crate::cache::{PageCache, rankings_key, videos_key};
use crate::videos::{storage_backend, video_backend};

/// Why a public listing was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublicQueryError {
    /// A query parameter is out of range; the message says which.
    #[error("{0}")]
    InvalidParameter(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a vote was refused.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    #[error("Ya has votado por este video.")]
    AlreadyVoted,
    #[error("El video no existe o no es público.")]
    NotFound,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A public video with a link to watch it (what the public list shows: no
/// storage key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicVideoView {
    pub id: VideoId,
    pub title: String,
    pub username: String,
    pub city: String,
    pub votes: i64,
    pub processed_url: String,
}

impl PublicVideoView {
    fn new(video: PublicVideo, processed_url: String) -> Self {
        let PublicVideo { id, title, username, city, votes, .. } = video;
        Self { id, title, username, city, votes, processed_url }
    }
}

/// Public use cases.
#[derive(Clone)]
pub struct Showcase {
    videos: Arc<dyn VideoRepository>,
    votes: Arc<dyn VoteRepository>,
    storage: Arc<dyn ObjectStorage>,
    url_ttl: Duration,
    cache: Arc<PageCache>,
}

/// Default page size of the public video list.
pub const DEFAULT_VIDEO_LIMIT: i64 = 20;
/// Default page size of the ranking.
pub const DEFAULT_RANKING_LIMIT: i64 = 10;

impl Showcase {
    /// Wires the use cases to their ports.
    pub fn new(
        videos: Arc<dyn VideoRepository>,
        votes: Arc<dyn VoteRepository>,
        storage: Arc<dyn ObjectStorage>,
        url_ttl: Duration,
    ) -> Self {
        Self { videos, votes, storage, url_ttl, cache: Arc::new(PageCache::disabled()) }
    }

    /// Keeps the pages of the list and the ranking in `cache` (shared with
    /// whatever else invalidates it).
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<PageCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Processed videos, most voted first.
    ///
    /// # Errors
    /// [`PublicQueryError::InvalidParameter`] for `limit` outside 1–100 or a
    /// negative `offset`.
    pub async fn list_videos(
        &self,
        city: Option<&str>,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<Vec<PublicVideoView>, PublicQueryError> {
        let page = page(limit.unwrap_or(DEFAULT_VIDEO_LIMIT), offset.unwrap_or(0))?;
        let city = city_filter(city);
        let key = videos_key(&city, page);
        let (videos, storage, url_ttl) = (self.videos.clone(), self.storage.clone(), self.url_ttl);
        // The links are signed for `url_ttl`, far longer than a page is kept.
        let build = async move {
            let videos = videos.list_public(city, page).await.map_err(video_backend)?;
            let mut views = Vec::with_capacity(videos.len());
            for video in videos {
                let processed_url = storage.signed_url(&video.processed_key, url_ttl).await.map_err(storage_backend)?;
                views.push(PublicVideoView::new(video, processed_url));
            }
            Ok(views)
        };
        Ok(self.cache.videos(key, build).await?)
    }

    /// One vote by `voter` for a public video.
    ///
    /// # Errors
    /// [`VoteError::AlreadyVoted`] on a second vote (racing ones included),
    /// [`VoteError::NotFound`] when the video does not exist or is not public.
    pub async fn vote(&self, voter: UserId, video: VideoId) -> Result<(), VoteError> {
        self.votes.cast(voter, video).await.map_err(|e| match e {
            VoteRepositoryError::DuplicateVote => VoteError::AlreadyVoted,
            VoteRepositoryError::VideoNotPublic => VoteError::NotFound,
            VoteRepositoryError::Backend(e) => VoteError::Backend(e),
        })?;
        self.cache.invalidate().await;
        Ok(())
    }

    /// Players ranked by votes.
    ///
    /// # Errors
    /// As [`Showcase::list_videos`].
    pub async fn rankings(
        &self,
        city: Option<&str>,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<Vec<RankingEntry>, PublicQueryError> {
        let page = page(limit.unwrap_or(DEFAULT_RANKING_LIMIT), offset.unwrap_or(0))?;
        let city = city_filter(city);
        let key = rankings_key(&city, page);
        let votes = self.votes.clone();
        let build = async move {
            votes.rankings(city, page).await.map_err(|e| match e {
                VoteRepositoryError::Backend(e) => e,
                other => BackendError::internal(other.to_string()),
            })
        };
        Ok(self.cache.rankings(key, build).await?)
    }
}

fn page(limit: i64, offset: i64) -> Result<Page, PublicQueryError> {
    let limit = u32::try_from(limit)
        .ok()
        .filter(|l| (1..=100).contains(l))
        .ok_or_else(|| PublicQueryError::InvalidParameter(format!("limit {limit} fuera del rango permitido (1–100).")))?;
    let offset =
        u64::try_from(offset).map_err(|_| PublicQueryError::InvalidParameter(format!("offset {offset} no puede ser negativo.")))?;
    Ok(Page { limit, offset })
}

/// A blank city means no filter.
fn city_filter(city: Option<&str>) -> CityFilter {
    match city {
        Some(c) if !c.trim().is_empty() => CityFilter::city(c),
        _ => CityFilter::any(),
    }
}

#[cfg(test)]
mod tests {
    use anb_domain::ObjectKey;
    use anb_domain::ports::{MockObjectStorage, MockVideoRepository, MockVoteRepository};
    use mockall::predicate::eq;

    use super::*;

    fn showcase(videos: MockVideoRepository, votes: MockVoteRepository, storage: MockObjectStorage) -> Showcase {
        Showcase::new(Arc::new(videos), Arc::new(votes), Arc::new(storage), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn public_list_filters_by_normalised_city_and_links_each_video() {
        let mut videos = MockVideoRepository::new();
        videos.expect_list_public().with(eq(CityFilter::city("bogotá")), eq(Page { limit: 5, offset: 10 })).returning(|_, _| {
            Ok(vec![PublicVideo {
                id: VideoId(1),
                title: "t".into(),
                username: "Ana Pérez".into(),
                city: "Bogotá".into(),
                processed_key: ObjectKey::parse("processed/x.mp4").unwrap(),
                votes: 2,
            }])
        });
        let mut storage = MockObjectStorage::new();
        storage.expect_signed_url().returning(|k, _| Ok(format!("u/{k}")));
        let list = showcase(videos, MockVoteRepository::new(), storage).list_videos(Some("BOGOTÁ"), Some(5), Some(10)).await.unwrap();
        assert_eq!(list[0].processed_url, "u/processed/x.mp4");
    }

    #[tokio::test]
    async fn defaults_apply_and_blank_city_means_all() {
        let mut votes = MockVoteRepository::new();
        votes.expect_rankings().with(eq(CityFilter::any()), eq(Page { limit: 10, offset: 0 })).returning(|_, _| Ok(vec![]));
        let mut videos = MockVideoRepository::new();
        videos.expect_list_public().with(eq(CityFilter::any()), eq(Page { limit: 20, offset: 0 })).returning(|_, _| Ok(vec![]));
        let s = showcase(videos, votes, MockObjectStorage::new());
        assert!(s.rankings(Some("  "), None, None).await.unwrap().is_empty());
        assert!(s.list_videos(None, None, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn out_of_range_paging_is_refused() {
        let s = showcase(MockVideoRepository::new(), MockVoteRepository::new(), MockObjectStorage::new());
        for (limit, offset) in [(0, 0), (101, 0), (-1, 0), (10, -1)] {
            assert!(matches!(s.rankings(None, Some(limit), Some(offset)).await, Err(PublicQueryError::InvalidParameter(_))));
            assert!(matches!(s.list_videos(None, Some(limit), Some(offset)).await, Err(PublicQueryError::InvalidParameter(_))));
        }
    }

    #[tokio::test]
    async fn votes_map_duplicates_and_missing_videos() {
        let mut votes = MockVoteRepository::new();
        votes.expect_cast().with(eq(UserId(1)), eq(VideoId(1))).returning(|_, _| Ok(()));
        votes.expect_cast().with(eq(UserId(1)), eq(VideoId(2))).returning(|_, _| Err(VoteRepositoryError::DuplicateVote));
        votes.expect_cast().with(eq(UserId(1)), eq(VideoId(3))).returning(|_, _| Err(VoteRepositoryError::VideoNotPublic));
        votes.expect_cast().with(eq(UserId(1)), eq(VideoId(4))).returning(|_, _| Err(BackendError::unavailable("x").into()));
        let s = showcase(MockVideoRepository::new(), votes, MockObjectStorage::new());
        assert!(s.vote(UserId(1), VideoId(1)).await.is_ok());
        assert_eq!(s.vote(UserId(1), VideoId(2)).await.unwrap_err().to_string(), "Ya has votado por este video.");
        assert!(matches!(s.vote(UserId(1), VideoId(3)).await, Err(VoteError::NotFound)));
        assert!(matches!(s.vote(UserId(1), VideoId(4)).await, Err(VoteError::Backend(_))));
    }
}
