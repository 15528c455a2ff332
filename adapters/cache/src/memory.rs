//! The in-process cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anb_domain::BackendError;
use anb_domain::ports::{Cache, CacheLookup};
use async_trait::async_trait;

/// How often a full cache looks for expired entries to make room.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Entries in a map of this process, bounded in number and in bytes. When
/// full, expired entries are swept (at most once a second) and, if that
/// makes no room, a new entry is not kept: the live ones stay useful.
pub struct MemoryCache {
    inner: RwLock<Inner>,
    generation: AtomicU64,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, (Instant, Arc<[u8]>)>,
    bytes: usize,
    next_sweep: Option<Instant>,
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        self.entries.retain(|_, (expires, _)| *expires > now);
        self.bytes = self.entries.iter().map(|(k, (_, v))| k.len() + v.len()).sum();
        self.next_sweep = Some(now + SWEEP_EVERY);
    }
}

impl MemoryCache {
    /// At most 10,000 entries (a page of a list is a few kB)…
    pub const DEFAULT_ENTRIES: usize = 10_000;
    /// …and 64 MiB of them.
    pub const DEFAULT_BYTES: usize = 64 << 20;

    /// An empty cache holding at most `max_entries` entries of `max_bytes`
    /// in all (keys and values).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self { inner: RwLock::default(), generation: AtomicU64::new(0), max_entries, max_bytes }
    }

    /// Entries held now, expired ones included.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held now (keys and values), expired entries included.
    pub fn bytes(&self) -> usize {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).bytes
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_ENTRIES, Self::DEFAULT_BYTES)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn lookup(&self, key: &str) -> Result<CacheLookup, BackendError> {
        let generation = self.generation.load(Ordering::Acquire);
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let value = inner.entries.get(key).filter(|(expires, _)| *expires > Instant::now()).map(|(_, value)| value.clone());
        Ok(CacheLookup { generation, value })
    }

    async fn store(&self, key: &str, value: Arc<[u8]>, ttl: Duration) -> Result<(), BackendError> {
        let now = Instant::now();
        let size = key.len() + value.len();
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, old)) = inner.entries.remove(key) {
            inner.bytes -= key.len() + old.len();
        }
        let full = |inner: &Inner| inner.entries.len() >= self.max_entries || inner.bytes + size > self.max_bytes;
        if full(&inner) && inner.next_sweep.is_none_or(|at| now >= at) {
            inner.sweep(now);
        }
        if !full(&inner) {
            inner.bytes += size;
            inner.entries.insert(key.to_owned(), (now + ttl, value));
        }
        Ok(())
    }

    async fn invalidate(&self) -> Result<(), BackendError> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Nothing stored before is served again: free it now.
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.entries.clear();
        inner.bytes = 0;
        Ok(())
    }
}
