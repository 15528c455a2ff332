//! Short-lived copies of the public pages (the list of videos and the
//! ranking), kept in a [`Cache`] that every web server may share.
//!
//! - **Fresh within the expiry, usually at once.** Each entry records the
//!   cache's generation when it was built; a vote or a video turning public
//!   bumps the generation ([`PageCache::invalidate`]), so the next read
//!   rebuilds. (Deleting needs nothing: only videos that never went public
//!   can be deleted.) The expiry bounds what a lost invalidation (a
//!   cache that could not be reached, a server with its own in-process
//!   cache) can leave stale.
//! - **One rebuild at a time.** Readers that miss the same entry at the same
//!   generation wait for one build (a stampede costs one query per entry and
//!   web server, not one per request).
//! - **The cache is an optimisation.** When it fails, pages are built from
//!   the database and the failure is logged now and then.
//! - **The database away, the pages stay.** The last copy of each page this
//!   server built or read is kept in memory (a bounded number of pages);
//!   when a build fails because the database cannot be reached (a
//!   failover), readers get that copy, however old, instead of a 503.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anb_domain::ports::{Cache, CacheLookup};
use anb_domain::{BackendError, BackendErrorKind, CityFilter, Page};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// How long an entry lives by default, in seconds.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);

/// Cities longer than this are not cached: no real one is, and a key per
/// arbitrary string would let anyone fill the cache.
const MAX_CACHED_CITY: usize = 100;

/// Pages kept as the last good copy, at most: the first pages of the list
/// and the ranking in every city fit many times over; past it one is
/// dropped for each new one.
const MAX_LAST_GOOD: usize = 512;

/// The format of an encoded entry; bumped when it changes, so that servers
/// of two versions sharing a cache never read each other's entries.
const FORMAT: u8 = 1;

/// A page as last seen: the generation it was built at, and its bytes.
type LastCopy = (u64, Arc<[u8]>);

type Flight = Shared<BoxFuture<'static, Result<Arc<[u8]>, BackendError>>>;
/// Builds under way by (key, generation, local epoch).
type FlightId = (String, u64, u64);
type Flights = Arc<Mutex<HashMap<FlightId, InFlight>>>;

/// The public pages' cache policy over a [`Cache`] port.
pub struct PageCache {
    store: Option<Arc<dyn Cache>>,
    ttl: Duration,
    flights: Flights,
    serials: AtomicU64,
    epoch: AtomicU64,
    failures: AtomicU64,
    /// The last copy of each page seen, with the generation it was built
    /// at, served when the database is away.
    last_good: RwLock<HashMap<String, LastCopy>>,
    /// Pages served from `last_good` since the database went away.
    stale_served: AtomicU64,
}

impl PageCache {
    /// Pages kept in `store` for `ttl`.
    pub fn new(store: Arc<dyn Cache>, ttl: Duration) -> Self {
        Self {
            store: Some(store),
            ttl,
            flights: Arc::default(),
            serials: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_good: RwLock::default(),
            stale_served: AtomicU64::new(0),
        }
    }

    /// Every page built from the database on every request.
    pub fn disabled() -> Self {
        Self {
            store: None,
            ttl: Duration::ZERO,
            flights: Arc::default(),
            serials: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_good: RwLock::default(),
            stale_served: AtomicU64::new(0),
        }
    }

    /// Whether pages are cached at all.
    pub fn enabled(&self) -> bool {
        self.store.is_some()
    }

    /// Marks every cached page stale (after a vote, a video turning public).
    /// A failure is logged, not returned: the change it follows has
    /// happened, and the expiry bounds how long pages miss it.
    pub async fn invalidate(&self) {
        // Builds under way in this process are not joined from now on, even
        // when the cache cannot be told.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(store) = &self.store
            && let Err(error) = store.invalidate().await
        {
            self.failed("invalidating the page cache", &error);
        }
    }

    /// The page under `key` (`None`: do not cache this one), from the cache
    /// when it is fresh, else from `build`, once for all the readers that
    /// want it at the same time; when `build` cannot reach the database, the
    /// last copy of the page seen here, if any.
    pub(crate) async fn fetch<T, B>(&self, key: Option<String>, build: B) -> Result<T, BackendError>
    where
        T: Encoded,
        B: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let (Some(store), Some(key)) = (&self.store, key) else { return build.await };
        // Read before the lookup: a build joined later started after it.
        let epoch = self.epoch.load(Ordering::Acquire);
        let generation = match store.lookup(&key).await {
            Ok(CacheLookup { generation, value }) => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    // Back: the next failure is logged at once.
                    self.failures.store(0, Ordering::Relaxed);
                }
                if let Some(bytes) = value
                    && let Some(page) = decode::<T>(&bytes, Some(generation))
                {
                    self.remember(&key, generation, bytes);
                    return Ok(page);
                }
                generation
            }
            Err(error) => {
                // Still one build at a time while the cache is away.
                self.failed("reading the page cache", &error);
                u64::MAX
            }
        };
        let flight = self.flight(store, (key.clone(), generation, epoch), build);
        let bytes = match flight.await {
            Ok(bytes) => {
                self.remember(&key, generation, bytes.clone());
                bytes
            }
            Err(error) => return self.last_copy(&key, error),
        };
        decode::<T>(&bytes, None).ok_or_else(|| BackendError::internal("a page just encoded does not decode"))
    }

    /// Keeps `bytes` as the last good copy of `key`, unless it has this
    /// generation's already (the common case, on every cache hit: a shared
    /// read lock, no copy).
    fn remember(&self, key: &str, generation: u64, bytes: Arc<[u8]>) {
        let known =
            |kept: &HashMap<String, LastCopy>| kept.get(key).is_some_and(|(built, _)| *built == generation && generation != u64::MAX);
        if known(&self.last_good.read().unwrap_or_else(PoisonError::into_inner)) {
            return;
        }
        let mut kept = self.last_good.write().unwrap_or_else(PoisonError::into_inner);
        if known(&kept) {
            return;
        }
        if kept.len() >= MAX_LAST_GOOD && !kept.contains_key(key) {
            // Full: a first page (what most readers ask for) takes the place
            // of a later one; a later page is not kept.
            if !is_first_page(key) {
                return;
            }
            let Some(dropped) = kept.keys().find(|k| !is_first_page(k)).or_else(|| kept.keys().next()).cloned() else { return };
            kept.remove(&dropped);
        }
        kept.insert(key.to_owned(), (generation, bytes));
        if self.stale_served.load(Ordering::Relaxed) != 0 {
            // The database answers again.
            let served = self.stale_served.swap(0, Ordering::Relaxed);
            tracing::info!(served, "the database answers again: pages are fresh again");
        }
    }

    /// The last good copy of `key` when `error` says the database is away,
    /// else `error`.
    fn last_copy<T: Encoded>(&self, key: &str, error: BackendError) -> Result<T, BackendError> {
        if error.kind != BackendErrorKind::Unavailable {
            return Err(error);
        }
        let bytes = self.last_good.read().unwrap_or_else(PoisonError::into_inner).get(key).map(|(_, bytes)| bytes.clone());
        let Some(page) = bytes.and_then(|bytes| decode::<T>(&bytes, None)) else { return Err(error) };
        let served = self.stale_served.fetch_add(1, Ordering::Relaxed);
        if served.is_multiple_of(1000) {
            tracing::warn!(%error, served = served + 1, "the database is away: serving the last copy of public pages");
        }
        Ok(page)
    }

    /// The build under way for `id`, or a new one.
    fn flight<T, B>(&self, store: &Arc<dyn Cache>, id: FlightId, build: B) -> FlightGuard
    where
        T: Encoded,
        B: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let generation = id.1;
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = flights.entry(id.clone()).or_insert_with(|| {
            let (store, ttl, key) = (store.clone(), self.ttl, id.0.clone());
            let flight = async move {
                let page = build.await?;
                let bytes: Arc<[u8]> = encode(&page, generation).into();
                if generation != u64::MAX {
                    // A failed store only costs the next reader a build.
                    if let Err(error) = store.store(&key, bytes.clone(), ttl).await {
                        tracing::debug!(%error, "storing a page in the cache");
                    }
                }
                Ok(bytes)
            };
            let serial = self.serials.fetch_add(1, Ordering::Relaxed);
            InFlight { serial, readers: 0, flight: flight.boxed().shared() }
        });
        entry.readers += 1;
        FlightGuard { flight: entry.flight.clone(), serial: entry.serial, id, flights: self.flights.clone(), left: false }
    }

    /// Logs the first failure of an outage, then one in a thousand.
    fn failed(&self, what: &str, error: &BackendError) {
        let count = self.failures.fetch_add(1, Ordering::Relaxed);
        if count.is_multiple_of(1000) {
            tracing::warn!(%error, failures = count + 1, "{what} failed; serving from the database");
        }
    }
}

/// A build under way and how many readers wait for it.
struct InFlight {
    serial: u64,
    readers: usize,
    flight: Flight,
}

/// A reader's share of a build. A finished build leaves the table with its
/// first reader to see it done (later readers find the page in the cache),
/// an abandoned one with its last reader: none stays there.
struct FlightGuard {
    flight: Flight,
    serial: u64,
    id: FlightId,
    flights: Flights,
    left: bool,
}

impl Future for FlightGuard {
    type Output = Result<Arc<[u8]>, BackendError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let result = std::task::ready!(self.flight.poll_unpin(cx));
        self.leave(true);
        std::task::Poll::Ready(result)
    }
}

impl FlightGuard {
    fn leave(&mut self, finished: bool) {
        if std::mem::replace(&mut self.left, true) {
            return;
        }
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = flights.get_mut(&self.id).filter(|e| e.serial == self.serial) {
            entry.readers -= 1;
            if finished || entry.readers == 0 {
                flights.remove(&self.id);
            }
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.leave(false);
    }
}

/// The key of page `page` of `what` (the list, the ranking) in `city`;
/// `None` when it is not to be cached.
pub(crate) fn page_key(what: &str, city: &CityFilter, page: Page) -> Option<String> {
    let city = city.key().unwrap_or("");
    (city.len() <= MAX_CACHED_CITY).then(|| format!("{what}:{}:{}:{city}", page.limit, page.offset))
}

/// Whether `key` (see [`page_key`]) is the first page of what it lists.
fn is_first_page(key: &str) -> bool {
    key.split(':').nth(2) == Some("0")
}

/// A page as bytes: a small length-prefixed format, read defensively (an
/// entry from another version or a corrupt one is a miss, never a fault).
pub(crate) trait Encoded: Sized + Send + Sync + 'static {
    fn write(&self, out: &mut Writer);
    fn read(input: &mut Reader<'_>) -> Option<Self>;
}

/// `page` as an entry built at `generation`.
pub(crate) fn encode<T: Encoded>(page: &T, generation: u64) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(1024));
    out.0.push(FORMAT);
    out.u64(generation);
    page.write(&mut out);
    out.0
}

/// The page in `bytes` if it reads whole and was built at `generation`
/// (when one is expected).
pub(crate) fn decode<T: Encoded>(bytes: &[u8], generation: Option<u64>) -> Option<T> {
    let mut input = Reader(bytes);
    let (format, built) = (input.byte()?, input.u64()?);
    if format != FORMAT || generation.is_some_and(|g| g != built) {
        return None;
    }
    let page = T::read(&mut input)?;
    input.0.is_empty().then_some(page)
}

/// Where an entry is written.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn str(&mut self, value: &str) {
        self.u64(value.len() as u64);
        self.0.extend_from_slice(value.as_bytes());
    }
}

/// What an entry is read from.
pub(crate) struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.bytes().map(i64::from_le_bytes)
    }

    pub(crate) fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.u64()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(text.to_vec()).ok()
    }

    /// A count of items, each at least `min_size` bytes long.
    pub(crate) fn count(&mut self, min_size: usize) -> Option<usize> {
        let count = usize::try_from(self.u64()?).ok()?;
        (count.checked_mul(min_size)? <= self.0.len()).then_some(count)
    }
}

impl<T: Encoded> Encoded for Vec<T> {
    fn write(&self, out: &mut Writer) {
        out.u64(self.len() as u64);
        for item in self {
            item.write(out);
        }
    }

    fn read(input: &mut Reader<'_>) -> Option<Self> {
        let count = input.count(16)?;
        (0..count).map(|_| T::read(input)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;

    use super::*;

    /// A cache in a map, which can be told to fail.
    #[derive(Default)]
    struct MapCache {
        entries: Mutex<HashMap<String, Arc<[u8]>>>,
        generation: AtomicU64,
        failing: std::sync::atomic::AtomicBool,
    }

    impl MapCache {
        fn check(&self) -> Result<(), BackendError> {
            if self.failing.load(Ordering::SeqCst) { Err(BackendError::unavailable("cache down")) } else { Ok(()) }
        }
    }

    #[async_trait]
    impl Cache for MapCache {
        async fn lookup(&self, key: &str) -> Result<CacheLookup, BackendError> {
            self.check()?;
            let value = self.entries.lock().unwrap().get(key).cloned();
            Ok(CacheLookup { generation: self.generation.load(Ordering::SeqCst), value })
        }

        async fn store(&self, key: &str, value: Arc<[u8]>, _: Duration) -> Result<(), BackendError> {
            self.check()?;
            self.entries.lock().unwrap().insert(key.to_owned(), value);
            Ok(())
        }

        async fn invalidate(&self) -> Result<(), BackendError> {
            self.check()?;
            self.generation.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A page of the tests.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Entry {
        votes: i64,
        name: String,
    }

    impl Encoded for Entry {
        fn write(&self, out: &mut Writer) {
            out.i64(self.votes);
            out.str(&self.name);
        }

        fn read(input: &mut Reader<'_>) -> Option<Self> {
            Some(Self { votes: input.i64()?, name: input.string()? })
        }
    }

    fn ranking(votes: i64) -> Vec<Entry> {
        vec![Entry { votes, name: "Ana Pérez".into() }]
    }

    /// A build that counts its runs and answers `votes`, after `delay`.
    fn build(
        runs: &Arc<AtomicUsize>,
        votes: i64,
        delay: Duration,
    ) -> impl Future<Output = Result<Vec<Entry>, BackendError>> + Send + 'static {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(ranking(votes))
        }
    }

    fn key() -> Option<String> {
        page_key("rankings", &CityFilter::any(), Page { limit: 10, offset: 0 })
    }

    #[tokio::test]
    async fn a_page_is_built_once_and_again_after_an_invalidation() {
        let store = Arc::new(MapCache::default());
        let pages = PageCache::new(store.clone(), Duration::from_secs(5));
        let runs = Arc::new(AtomicUsize::new(0));
        assert_eq!(pages.fetch(key(), build(&runs, 1, Duration::ZERO)).await.unwrap(), ranking(1));
        assert_eq!(pages.fetch(key(), build(&runs, 2, Duration::ZERO)).await.unwrap(), ranking(1), "served from the cache");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        pages.invalidate().await;
        assert_eq!(pages.fetch(key(), build(&runs, 3, Duration::ZERO)).await.unwrap(), ranking(3), "rebuilt after the vote");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(pages.flights.lock().unwrap().is_empty(), "no build stays in the table");
    }

    #[tokio::test]
    async fn readers_of_a_missing_page_share_one_build() {
        let pages = Arc::new(PageCache::new(Arc::new(MapCache::default()), Duration::from_secs(5)));
        let runs = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..50)
            .map(|_| {
                let (pages, build) = (pages.clone(), build(&runs, 7, Duration::from_millis(100)));
                tokio::spawn(async move { pages.fetch(key(), build).await })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap().unwrap(), ranking(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "fifty readers, one query");
        assert!(pages.flights.lock().unwrap().is_empty());
    }

    /// A vote lands while a build runs: a reader after it must not get the
    /// page that build read before the vote, whether the cache could be
    /// told (`reachable`) or not.
    async fn vote_during_a_build(reachable: bool) -> (Arc<PageCache>, Arc<AtomicUsize>) {
        let store = Arc::new(MapCache::default());
        store.failing.store(!reachable, Ordering::SeqCst);
        let pages = Arc::new(PageCache::new(store, Duration::from_secs(5)));
        let runs = Arc::new(AtomicUsize::new(0));
        let early = {
            let (pages, build) = (pages.clone(), build(&runs, 1, Duration::from_millis(200)));
            tokio::spawn(async move { pages.fetch(key(), build).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        pages.invalidate().await;
        assert_eq!(pages.fetch(key(), build(&runs, 2, Duration::ZERO)).await.unwrap(), ranking(2), "not the build from before the vote");
        assert_eq!(early.await.unwrap().unwrap(), ranking(1));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        (pages, runs)
    }

    #[tokio::test]
    async fn a_build_under_way_when_the_generation_moves_is_not_joined() {
        let (pages, runs) = vote_during_a_build(true).await;
        // The early build stored its page last, marked with its older
        // generation: it is a miss, never served.
        assert_eq!(pages.fetch(key(), build(&runs, 3, Duration::ZERO)).await.unwrap(), ranking(3));
    }

    #[tokio::test]
    async fn with_the_cache_away_a_reader_after_a_local_vote_does_not_join_an_earlier_build() {
        vote_during_a_build(false).await;
    }

    #[tokio::test]
    async fn a_failing_cache_serves_from_the_database() {
        let store = Arc::new(MapCache::default());
        store.failing.store(true, Ordering::SeqCst);
        let pages = PageCache::new(store.clone(), Duration::from_secs(5));
        let runs = Arc::new(AtomicUsize::new(0));
        assert_eq!(pages.fetch(key(), build(&runs, 4, Duration::ZERO)).await.unwrap(), ranking(4));
        assert_eq!(pages.fetch(key(), build(&runs, 5, Duration::ZERO)).await.unwrap(), ranking(5));
        pages.invalidate().await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(pages.failures.load(Ordering::SeqCst), 3, "two lookups and an invalidation failed");
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(pages.fetch(key(), build(&runs, 6, Duration::ZERO)).await.unwrap(), ranking(6));
        assert_eq!(pages.failures.load(Ordering::SeqCst), 0, "back: the next outage is logged at once");
    }

    #[tokio::test]
    async fn a_failed_build_is_not_kept() {
        let pages = PageCache::new(Arc::new(MapCache::default()), Duration::from_secs(5));
        let failing = async { Err::<Vec<Entry>, _>(BackendError::unavailable("database down")) };
        assert_eq!(pages.fetch(key(), failing).await.unwrap_err().message, "database down");
        let runs = Arc::new(AtomicUsize::new(0));
        assert_eq!(pages.fetch(key(), build(&runs, 1, Duration::ZERO)).await.unwrap(), ranking(1));
        assert!(pages.flights.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn with_the_database_away_the_last_copy_of_a_page_is_served() {
        let pages = PageCache::new(Arc::new(MapCache::default()), Duration::from_millis(1));
        let runs = Arc::new(AtomicUsize::new(0));
        assert_eq!(pages.fetch(key(), build(&runs, 1, Duration::ZERO)).await.unwrap(), ranking(1));
        pages.invalidate().await;
        let away = || async { Err::<Vec<Entry>, _>(BackendError::unavailable("database down")) };
        assert_eq!(pages.fetch(key(), away()).await.unwrap(), ranking(1), "the last copy, though stale");
        assert_eq!(pages.fetch(key(), away()).await.unwrap(), ranking(1));
        assert_eq!(pages.stale_served.load(Ordering::SeqCst), 2);
        let other = page_key("rankings", &CityFilter::any(), Page { limit: 10, offset: 10 });
        assert_eq!(pages.fetch(other, away()).await.unwrap_err().message, "database down", "no copy of a page never seen");
        let fault = async { Err::<Vec<Entry>, _>(BackendError::internal("a bug")) };
        assert_eq!(pages.fetch(key(), fault).await.unwrap_err().message, "a bug", "only an unreachable database is covered");
        assert_eq!(pages.fetch(key(), build(&runs, 2, Duration::ZERO)).await.unwrap(), ranking(2), "back: fresh again");
        assert_eq!(pages.stale_served.load(Ordering::SeqCst), 0);
        pages.invalidate().await;
        assert_eq!(pages.fetch(key(), away()).await.unwrap(), ranking(2), "the newest copy is the one kept");
    }

    #[tokio::test]
    async fn the_last_copies_are_bounded() {
        let pages = PageCache::new(Arc::new(MapCache::default()), Duration::from_secs(5));
        let runs = Arc::new(AtomicUsize::new(0));
        for offset in 0..(MAX_LAST_GOOD as u64 + 50) {
            let key = page_key("rankings", &CityFilter::any(), Page { limit: 10, offset });
            pages.fetch(key, build(&runs, 1, Duration::ZERO)).await.unwrap();
        }
        assert_eq!(pages.last_good.read().unwrap().len(), MAX_LAST_GOOD);
        // Full of later pages: first pages still get in, later ones do not.
        for city in ["Cali", "Pasto"] {
            let key = page_key("rankings", &CityFilter::city(city), Page { limit: 10, offset: 0 });
            pages.fetch(key, build(&runs, 1, Duration::ZERO)).await.unwrap();
        }
        let late = page_key("rankings", &CityFilter::any(), Page { limit: 10, offset: 99_999 });
        pages.fetch(late, build(&runs, 1, Duration::ZERO)).await.unwrap();
        let kept = pages.last_good.read().unwrap();
        assert_eq!(kept.len(), MAX_LAST_GOOD);
        assert!(kept.keys().any(|k| k.ends_with(":0:cali")) && kept.keys().any(|k| k.ends_with(":0:pasto")), "first pages kept");
        assert!(!kept.keys().any(|k| k.contains(":99999:")), "a later page does not push one out");
    }

    #[tokio::test]
    async fn readers_that_give_up_leave_no_build_behind() {
        let pages = Arc::new(PageCache::new(Arc::new(MapCache::default()), Duration::from_secs(5)));
        let runs = Arc::new(AtomicUsize::new(0));
        let gone = tokio::time::timeout(Duration::from_millis(20), pages.fetch(key(), build(&runs, 1, Duration::from_secs(60)))).await;
        assert!(gone.is_err());
        assert!(pages.flights.lock().unwrap().is_empty(), "an abandoned build is dropped with its last reader");
        assert_eq!(pages.fetch(key(), build(&runs, 2, Duration::ZERO)).await.unwrap(), ranking(2));
    }

    #[tokio::test]
    async fn a_corrupt_or_foreign_entry_is_a_miss() {
        let store = Arc::new(MapCache::default());
        let pages = PageCache::new(store.clone(), Duration::from_secs(5));
        let runs = Arc::new(AtomicUsize::new(0));
        let key = key().unwrap();
        let good = encode(&ranking(9), 0);
        let mut other_format = good.clone();
        other_format[0] = FORMAT + 1;
        let mut long_count = good.clone();
        long_count[9..17].copy_from_slice(&u64::MAX.to_le_bytes());
        for (i, bad) in
            [vec![], good[..good.len() - 1].to_vec(), other_format, long_count, [good.clone(), vec![0]].concat()].into_iter().enumerate()
        {
            store.entries.lock().unwrap().insert(key.clone(), bad.into());
            assert_eq!(pages.fetch(Some(key.clone()), build(&runs, 1, Duration::ZERO)).await.unwrap(), ranking(1), "case {i}");
            assert_eq!(runs.load(Ordering::SeqCst), i + 1, "case {i} was a miss");
        }
        assert_eq!(decode::<Vec<Entry>>(&good, Some(0)), Some(ranking(9)));
        assert_eq!(decode::<Vec<Entry>>(&good, Some(1)), None, "another generation");
    }
}
