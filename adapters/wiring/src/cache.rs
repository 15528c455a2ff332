//! The cache family: where the public pages are kept for a few seconds, in
//! this process (`MemoryCache`), in a Redis every server shares
//! (`RedisCache`), or nowhere.

use std::sync::Arc;
use std::time::Duration;

use anb_application::PageCache;
use anb_cache::MemoryCache;
use anb_domain::ports::HealthCheck;

use crate::StartupError;
use crate::checked::required;
use crate::config::{CacheKind, CommonConfig, Secret};

/// Checks the cache settings without connecting.
pub(crate) fn check(config: &CommonConfig) -> Result<(), StartupError> {
    if config.cache_kind() == CacheKind::Redis {
        if !cfg!(feature = "redis") {
            return Err(crate::checked::not_built("ANB_CACHE=redis", "redis"));
        }
        let url = required(
            config.redis_url.as_ref().map(Secret::expose),
            "ANB_REDIS_URL (--redis-url) must name the server with ANB_CACHE=redis",
        )?;
        #[cfg(feature = "redis")]
        anb_cache::RedisCache::new(url, &config.redis_prefix).map_err(|e| StartupError::Config(format!("ANB_REDIS_URL: {}", e.message)))?;
        #[cfg(not(feature = "redis"))]
        let _ = url;
    }
    Ok(())
}

/// The public pages' cache the configuration asks for. A Redis that does not
/// answer at start is not fatal: pages come from the database until it does.
/// The public pages' cache, and what tells whether it answers (Redis's
/// `PING`; nothing for the cache in memory).
pub(crate) async fn page_cache(config: &CommonConfig) -> Result<(PageCache, Option<Arc<dyn HealthCheck>>), StartupError> {
    // Cached pages hand out signed links: a link served from the cache
    // keeps at least half its lifetime.
    let ttl = Duration::from_secs(config.cache_ttl.min(config.url_ttl / 2));
    if ttl.as_secs() < config.cache_ttl {
        tracing::info!(cache_ttl = ttl.as_secs(), url_ttl = config.url_ttl, "pages are cached for at most half of ANB_URL_TTL");
    }
    Ok(match config.cache_kind() {
        CacheKind::Off => (PageCache::disabled(), None),
        _ if ttl.is_zero() => (PageCache::disabled(), None),
        #[cfg(feature = "redis")]
        CacheKind::Redis => {
            let url = config.redis_url.as_ref().map(Secret::expose).unwrap_or_default();
            let redis = anb_cache::RedisCache::new(url, &config.redis_prefix)
                .map_err(|e| StartupError::Config(format!("ANB_REDIS_URL: {}", e.message)))?;
            match redis.ping().await {
                Ok(()) => tracing::info!(server = redis.server(), "public pages cached in Redis"),
                Err(error) => tracing::warn!(%error, "Redis does not answer: public pages come from the database until it does"),
            }
            let redis = Arc::new(redis);
            (PageCache::new(redis.clone(), ttl), Some(redis))
        }
        // Memory (Redis is refused by `check` when not built).
        _ => (PageCache::new(Arc::new(MemoryCache::default()), ttl), None),
    })
}
