//! What everyone sees: public videos, votes and the ranking of players.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{
    Clock, Keyring, ObjectStorage, StorageError, UserRepository, UserRepositoryError, VideoRepository, VideoRepositoryError,
    VoteRepository, VoteRepositoryError,
};
use anb_domain::{BackendError, CityFilter, Page, PublicVideo, RankingEntry, UserId, VideoId};

use crate::cache::{Encoded, PageCache, Reader, Writer, page_key};

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
    #[error("voted for this video already")]
    AlreadyVoted,
    #[error("no such public video")]
    NotFound,
    #[error("a vote for one's own video")]
    OwnVideo,
    /// The deployment requires a verified address, and the voter's is not.
    #[error("votes need a verified e-mail address")]
    Unverified,
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
    users: Arc<dyn UserRepository>,
    storage: Arc<dyn ObjectStorage>,
    keyring: Arc<dyn Keyring>,
    clock: Arc<dyn Clock>,
    rules: ShowcaseRules,
    cache: Arc<PageCache>,
}

/// The ports [`Showcase`] works through.
#[derive(Clone)]
pub struct ShowcasePorts {
    pub videos: Arc<dyn VideoRepository>,
    pub votes: Arc<dyn VoteRepository>,
    pub users: Arc<dyn UserRepository>,
    pub storage: Arc<dyn ObjectStorage>,
    pub keyring: Arc<dyn Keyring>,
    pub clock: Arc<dyn Clock>,
}

/// What one deployment decides about the public pages and votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowcaseRules {
    /// How long the signed links handed out stay valid.
    pub url_ttl: Duration,
    /// Whether only people with a verified address may vote.
    pub votes_require_verified_email: bool,
}

/// Default page size of the public video list.
pub const DEFAULT_VIDEO_LIMIT: i64 = 20;
/// Default page size of the ranking.
pub const DEFAULT_RANKING_LIMIT: i64 = 10;

impl Showcase {
    /// Wires the use cases to their ports.
    pub fn new(ports: ShowcasePorts, rules: ShowcaseRules) -> Self {
        let ShowcasePorts { videos, votes, users, storage, keyring, clock } = ports;
        Self { videos, votes, users, storage, keyring, clock, rules, cache: Arc::new(PageCache::disabled()) }
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
        let (videos, storage, url_ttl) = (self.videos.clone(), self.storage.clone(), self.rules.url_ttl);
        // The links are signed for `url_ttl`, far longer than a page is kept.
        let build = async move {
            let videos = videos.list_public(city, page).await.map_err(VideoRepositoryError::into_backend)?;
            let mut views = Vec::with_capacity(videos.len());
            for video in videos {
                let processed_url = storage.signed_url(&video.processed_key, url_ttl).await.map_err(StorageError::into_backend)?;
                views.push(PublicVideoView::new(video, processed_url));
            }
            Ok(views)
        };
        Ok(self.cache.fetch(key, build).await?)
    }

    /// One vote by `voter`, from `client` (its network is recorded, as a
    /// pseudonym, for the vote audit), for a public video.
    ///
    /// # Errors
    /// [`VoteError::Unverified`] when votes require a verified address and
    /// the voter's is not; [`VoteError::OwnVideo`] on the voter's own video;
    /// [`VoteError::AlreadyVoted`] on a second vote (racing ones included);
    /// [`VoteError::NotFound`] when the video does not exist or is not public.
    pub async fn vote(&self, voter: UserId, video: VideoId, client: Option<IpAddr>) -> Result<(), VoteError> {
        if self.rules.votes_require_verified_email {
            let user = self.users.by_id(voter).await.map_err(|e| match e {
                UserRepositoryError::Backend(e) => e,
                other => BackendError::internal(other.to_string()),
            })?;
            if !user.is_some_and(|u| u.email_verified) {
                return Err(VoteError::Unverified);
            }
        }
        let network = client.map(|address| self.keyring.network_tag(address));
        self.votes.cast(voter, video, network, self.clock.now()).await.map_err(|e| match e {
            VoteRepositoryError::DuplicateVote => VoteError::AlreadyVoted,
            VoteRepositoryError::VideoNotPublic => VoteError::NotFound,
            VoteRepositoryError::OwnVideo => VoteError::OwnVideo,
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
        Ok(self.cache.fetch(key, build).await?)
    }
}

/// The cache key of a page of the public list, `None` when not cached.
fn videos_key(city: &CityFilter, page: Page) -> Option<String> {
    page_key("videos", city, page)
}

/// The cache key of a page of the ranking, `None` when not cached.
fn rankings_key(city: &CityFilter, page: Page) -> Option<String> {
    page_key("rankings", city, page)
}

impl Encoded for PublicVideoView {
    fn write(&self, out: &mut Writer) {
        out.i64(self.id.0);
        out.i64(self.votes);
        out.str(&self.title);
        out.str(&self.username);
        out.str(&self.city);
        out.str(&self.processed_url);
    }

    fn read(input: &mut Reader<'_>) -> Option<Self> {
        let (id, votes) = (input.i64()?, input.i64()?);
        let (title, username, city, processed_url) = (input.string()?, input.string()?, input.string()?, input.string()?);
        Some(Self { id: VideoId(id), title, username, city, votes, processed_url })
    }
}

impl Encoded for RankingEntry {
    fn write(&self, out: &mut Writer) {
        out.i64(self.position);
        out.i64(self.votes);
        out.str(&self.username);
        out.str(&self.city);
    }

    fn read(input: &mut Reader<'_>) -> Option<Self> {
        let (position, votes) = (input.i64()?, input.i64()?);
        Some(Self { position, votes, username: input.string()?, city: input.string()? })
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
    use anb_domain::fixtures::{PlainKeyring, user};
    use anb_domain::ports::{MockClock, MockObjectStorage, MockUserRepository, MockVideoRepository, MockVoteRepository};
    use anb_domain::{NetworkTag, UserId};
    use mockall::predicate::{always, eq};

    use super::*;

    fn showcase(videos: MockVideoRepository, votes: MockVoteRepository, storage: MockObjectStorage) -> Showcase {
        showcase_with(videos, votes, storage, MockUserRepository::new(), false)
    }

    fn showcase_with(
        videos: MockVideoRepository,
        votes: MockVoteRepository,
        storage: MockObjectStorage,
        users: MockUserRepository,
        votes_require_verified_email: bool,
    ) -> Showcase {
        let mut clock = MockClock::new();
        clock.expect_now().returning(chrono::Utc::now);
        let ports = ShowcasePorts {
            videos: Arc::new(videos),
            votes: Arc::new(votes),
            users: Arc::new(users),
            storage: Arc::new(storage),
            keyring: Arc::new(PlainKeyring::default()),
            clock: Arc::new(clock),
        };
        Showcase::new(ports, ShowcaseRules { url_ttl: Duration::from_secs(60), votes_require_verified_email })
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
    async fn votes_map_duplicates_own_and_missing_videos() {
        let mut votes = MockVoteRepository::new();
        let one = |id| (eq(UserId(1)), eq(VideoId(id)), always(), always());
        let (v, d, n, b, o) = (one(1), one(2), one(3), one(4), one(5));
        votes.expect_cast().with(v.0, v.1, v.2, v.3).returning(|_, _, _, _| Ok(()));
        votes.expect_cast().with(d.0, d.1, d.2, d.3).returning(|_, _, _, _| Err(VoteRepositoryError::DuplicateVote));
        votes.expect_cast().with(n.0, n.1, n.2, n.3).returning(|_, _, _, _| Err(VoteRepositoryError::VideoNotPublic));
        votes.expect_cast().with(b.0, b.1, b.2, b.3).returning(|_, _, _, _| Err(BackendError::unavailable("x").into()));
        votes.expect_cast().with(o.0, o.1, o.2, o.3).returning(|_, _, _, _| Err(VoteRepositoryError::OwnVideo));
        let s = showcase(MockVideoRepository::new(), votes, MockObjectStorage::new());
        assert!(s.vote(UserId(1), VideoId(1), None).await.is_ok());
        assert!(matches!(s.vote(UserId(1), VideoId(2), None).await, Err(VoteError::AlreadyVoted)));
        assert!(matches!(s.vote(UserId(1), VideoId(3), None).await, Err(VoteError::NotFound)));
        assert!(matches!(s.vote(UserId(1), VideoId(4), None).await, Err(VoteError::Backend(_))));
        assert!(matches!(s.vote(UserId(1), VideoId(5), None).await, Err(VoteError::OwnVideo)));
    }

    #[tokio::test]
    async fn a_vote_records_the_pseudonym_of_the_client_network() {
        let mut votes = MockVoteRepository::new();
        votes
            .expect_cast()
            .withf(|_, _, network, _| *network == Some(NetworkTag("net:203.0.113.0/24".into())))
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let s = showcase(MockVideoRepository::new(), votes, MockObjectStorage::new());
        s.vote(UserId(1), VideoId(1), Some("203.0.113.77".parse().unwrap())).await.unwrap();
    }

    #[tokio::test]
    async fn when_required_only_verified_addresses_vote() {
        let mut users = MockUserRepository::new();
        users.expect_by_id().returning(|id| Ok(Some(user(id.0, id.0 == 2))));
        let mut votes = MockVoteRepository::new();
        votes.expect_cast().withf(|voter, _, _, _| *voter == UserId(2)).times(1).returning(|_, _, _, _| Ok(()));
        let s = showcase_with(MockVideoRepository::new(), votes, MockObjectStorage::new(), users, true);
        let refused = s.vote(UserId(1), VideoId(1), None).await.unwrap_err();
        assert!(matches!(refused, VoteError::Unverified));
        s.vote(UserId(2), VideoId(1), None).await.unwrap();
    }

    #[test]
    fn pages_round_trip_and_keys_tell_pages_apart() {
        use crate::cache::{decode, encode};
        let view = PublicVideoView {
            id: VideoId(3),
            title: "Triple ✓".into(),
            username: "Ana".into(),
            city: "Bogotá".into(),
            votes: 12,
            processed_url: "/files/processed/x.mp4?expires=1&signature=ab".into(),
        };
        let bytes = encode(&vec![view.clone(), view.clone()], 42);
        assert_eq!(decode::<Vec<PublicVideoView>>(&bytes, Some(42)), Some(vec![view.clone(), view]));
        let ranking = vec![RankingEntry { position: 1, username: "Ana Pérez".into(), city: "Bogotá".into(), votes: 7 }];
        assert_eq!(decode::<Vec<RankingEntry>>(&encode(&ranking, 3), Some(3)), Some(ranking));
        let page = Page { limit: 20, offset: 0 };
        let keys = [
            videos_key(&CityFilter::any(), page),
            videos_key(&CityFilter::city("Bogotá"), page),
            videos_key(&CityFilter::any(), Page { limit: 20, offset: 20 }),
            rankings_key(&CityFilter::any(), page),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(videos_key(&CityFilter::city("BOGOTÁ"), page), videos_key(&CityFilter::city("bogotá"), page));
        assert_eq!(videos_key(&CityFilter::city(&"x".repeat(101)), page), None, "an absurd city is not cached");
    }
}
