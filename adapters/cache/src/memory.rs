//! The in-process cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anb_domain::BackendError;
use anb_domain::ports::{Cache, CacheLookup};
use async_trait::async_trait;

/// A value and when it expires.
type Entry = (Instant, Arc<[u8]>);

/// Entries in a map of this process, at most `capacity` of them.
pub struct MemoryCache {
    entries: RwLock<HashMap<String, Entry>>,
    generation: AtomicU64,
    capacity: usize,
}

impl MemoryCache {
    /// Room for 10,000 entries (a page of a list is a few kB).
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self { entries: RwLock::default(), generation: AtomicU64::new(0), capacity }
    }

    /// Entries held now, expired ones included.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn lookup(&self, key: &str) -> Result<CacheLookup, BackendError> {
        let generation = self.generation.load(Ordering::Acquire);
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let value = entries.get(key).filter(|(expires, _)| *expires > Instant::now()).map(|(_, value)| value.clone());
        Ok(CacheLookup { generation, value })
    }

    async fn store(&self, key: &str, value: Arc<[u8]>, ttl: Duration) -> Result<(), BackendError> {
        let now = Instant::now();
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.capacity {
                // Full of live entries: this one is not kept (the next
                // reader builds it again), the others stay useful.
                return Ok(());
            }
        }
        entries.insert(key.to_owned(), (now + ttl, value));
        Ok(())
    }

    async fn invalidate(&self) -> Result<(), BackendError> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Nothing stored before is served again: free it now.
        self.entries.write().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(())
    }
}
