//! Both cache adapters against the port's contract; Redis is the server
//! `ANB_TEST_REDIS_URL` names, else a throwaway `redis-server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anb_cache::{MemoryCache, RedisCache};
use anb_domain::ports::Cache;
use anb_testkit::{Redis, RedisServer, contracts};

fn prefix() -> String {
    format!("anb-test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn memory_cache_meets_the_contract() {
    contracts::cache_keeps_entries_until_they_expire_or_are_invalidated(&MemoryCache::default()).await;
}

#[tokio::test]
async fn redis_cache_meets_the_contract() {
    let cache = RedisCache::new(Redis::shared().url(), &prefix()).unwrap();
    cache.ping().await.unwrap();
    contracts::cache_keeps_entries_until_they_expire_or_are_invalidated(&cache).await;
}

#[tokio::test]
async fn two_redis_caches_with_one_prefix_share_entries_and_invalidations() {
    let prefix = prefix();
    let (a, b) = (RedisCache::new(Redis::shared().url(), &prefix).unwrap(), RedisCache::new(Redis::shared().url(), &prefix).unwrap());
    let other = RedisCache::new(Redis::shared().url(), &self::prefix()).unwrap();
    a.store("k", Arc::from(&b"page"[..]), Duration::from_secs(60)).await.unwrap();
    assert_eq!(b.lookup("k").await.unwrap().value.as_deref(), Some(&b"page"[..]));
    assert_eq!(other.lookup("k").await.unwrap().value, None, "another prefix is another cache");
    let before = b.lookup("k").await.unwrap().generation;
    a.invalidate().await.unwrap();
    assert_ne!(b.lookup("k").await.unwrap().generation, before, "one server's invalidation reaches the other");
    assert_eq!(other.lookup("k").await.unwrap().generation, 0);
}

#[tokio::test]
async fn a_memory_cache_keeps_at_most_its_entries_and_bytes() {
    let minute = Duration::from_secs(60);
    let cache = MemoryCache::new(3, 1 << 20);
    for key in ["a", "b", "c", "d"] {
        cache.store(key, Arc::from(key.as_bytes()), minute).await.unwrap();
    }
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.lookup("d").await.unwrap().value, None, "a full cache keeps the entries it has");
    cache.store("a", Arc::from(&b"A"[..]), minute).await.unwrap();
    assert_eq!(cache.lookup("a").await.unwrap().value.as_deref(), Some(&b"A"[..]), "replacing needs no room");

    let small = MemoryCache::new(100, 1000);
    small.store("x", Arc::from(vec![1u8; 600]), minute).await.unwrap();
    small.store("y", Arc::from(vec![2u8; 600]), minute).await.unwrap();
    assert_eq!(small.lookup("y").await.unwrap().value, None, "past the bytes it may hold");
    assert_eq!(small.bytes(), 601);
    small.invalidate().await.unwrap();
    assert_eq!((small.len(), small.bytes()), (0, 0), "an invalidation frees everything");

    let short = MemoryCache::new(2, 1 << 20);
    short.store("x", Arc::from(&b"x"[..]), Duration::from_millis(10)).await.unwrap();
    short.store("y", Arc::from(&b"y"[..]), Duration::from_millis(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    short.store("z", Arc::from(&b"z"[..]), minute).await.unwrap();
    assert_eq!(short.lookup("z").await.unwrap().value.as_deref(), Some(&b"z"[..]), "expired entries make room");
    assert_eq!((short.len(), short.bytes()), (1, 2));
}

#[tokio::test]
async fn a_redis_that_goes_away_fails_calls_quickly_and_is_used_again_when_back() {
    let server = RedisServer::create();
    let cache = RedisCache::new(&server.url(), &prefix()).unwrap();
    cache.store("k", Arc::from(&b"v"[..]), Duration::from_secs(60)).await.unwrap();
    server.stop();
    for _ in 0..20 {
        let started = Instant::now();
        assert!(cache.lookup("k").await.is_err(), "a stopped Redis answers nothing");
        assert!(started.elapsed() < Duration::from_millis(600), "a call took {:?}", started.elapsed());
    }
    server.start();
    let back = Instant::now();
    loop {
        match cache.lookup("k").await {
            // It keeps nothing: the entry went with the old process.
            Ok(found) => {
                assert_eq!(found.value, None);
                break;
            }
            Err(e) => assert!(back.elapsed() < Duration::from_secs(10), "Redis is back but calls still fail: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cache.store("k", Arc::from(&b"again"[..]), Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.lookup("k").await.unwrap().value.as_deref(), Some(&b"again"[..]));
}

#[test]
fn a_bad_url_is_refused_without_repeating_it() {
    for url in ["http://user:hunter2@example", "rediss://:hunter2@example:6379", "redis://:hunter2@[::1"] {
        let error = RedisCache::new(url, "p").err().expect("not a redis:// URL");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}

#[tokio::test]
async fn a_redis_that_is_away_at_start_is_not_fatal() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cache = RedisCache::new(&format!("redis://127.0.0.1:{port}"), &prefix()).unwrap();
    assert!(cache.ping().await.is_err());
    assert!(cache.lookup("k").await.is_err());
}
