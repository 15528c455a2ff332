//! The cache in Redis.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anb_domain::BackendError;
use anb_domain::ports::{Cache, CacheLookup, HealthCheck};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Longest a cache call may take: past it, the page is built from the
/// database instead.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is left alone after a failed call.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Entries in Redis under `PREFIX:page:KEY` (`SET … PX`), the generation
/// in `PREFIX:generation` (`INCR`); a lookup reads both in one `MGET`.
///
/// A call that fails or times out drops the connection (the next call, a
/// second later, makes a new one: a connection that stopped answering, as
/// after a failover, is not kept), and pauses lookups and stores for a
/// second. Invalidations are always tried: a vote must reach the other
/// servers whenever Redis can take it.
pub struct RedisCache {
    client: redis::Client,
    connection: Mutex<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    paused_until: Mutex<Option<Instant>>,
    generation_key: String,
    page_prefix: String,
    server: String,
}

impl RedisCache {
    /// A cache on the Redis at `url` (`redis://[:password@]host:port[/db]`),
    /// its keys under `prefix`. Nothing is connected yet: the first call
    /// connects, and a Redis that is away at start only means pages come
    /// from the database until it is back.
    ///
    /// # Errors
    /// When the URL is not a `redis://` URL (the error does not repeat it: it
    /// may hold a password). This build has no TLS (`rediss://`): the cache
    /// holds public pages only, and Redis belongs inside the private network.
    pub fn new(url: &str, prefix: &str) -> Result<Self, BackendError> {
        if url.starts_with("rediss:") {
            return Err(BackendError::internal("rediss:// (TLS) is not built in: use redis:// to a Redis in the private network"));
        }
        let client = redis::Client::open(url).map_err(|e| BackendError::internal(format!("not a redis:// URL ({:?})", e.kind())))?;
        let info = client.get_connection_info();
        let server = info.addr().to_string();
        Ok(Self {
            client,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            paused_until: Mutex::new(None),
            generation_key: format!("{prefix}:generation"),
            page_prefix: format!("{prefix}:page:"),
            server,
        })
    }

    /// The server, for logs (never the password).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Connects now, to tell at start whether Redis answers.
    ///
    /// # Errors
    /// When it does not, within the call bound.
    pub async fn ping(&self) -> Result<(), BackendError> {
        self.call(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await.map(drop) }).await
    }

    async fn call<T, F, Fut>(&self, op: F) -> Result<T, BackendError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let paused = self.paused_until.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|until| Instant::now() < until);
        if paused {
            return Err(BackendError::unavailable(format!("Redis at {} failed less than a second ago", self.server)));
        }
        self.call_now(op).await
    }

    /// `op`, unpaused, within [`CALL_TIMEOUT`].
    async fn call_now<T, F, Fut>(&self, op: F) -> Result<T, BackendError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = tokio::time::timeout(CALL_TIMEOUT, async {
            let connection = match self.held() {
                Some(connection) => connection,
                None => {
                    // One connection attempt at a time; the others wait for it.
                    let _connecting = self.connecting.lock().await;
                    match self.held() {
                        Some(connection) => connection,
                        None => {
                            let connection = self.connect().await?;
                            *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
                            connection
                        }
                    }
                }
            };
            op(connection).await.map_err(|e| BackendError::unavailable(format!("Redis at {}: {e}", self.server)))
        })
        .await
        .unwrap_or_else(|_| Err(BackendError::unavailable(format!("Redis at {} did not answer within {CALL_TIMEOUT:?}", self.server))));
        if result.is_err() {
            *self.paused_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + PAUSE_AFTER_FAILURE);
            // The next call connects afresh.
            self.connection.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
        result
    }

    fn held(&self) -> Option<ConnectionManager> {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn connect(&self) -> Result<ConnectionManager, BackendError> {
        // Reconnect once, quickly, after a lost connection; calls meanwhile
        // fail and the page comes from the database.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| BackendError::unavailable(format!("connecting to Redis at {}: {e}", self.server)))
    }
}

/// Ready when Redis answers `PING` (`/api/ready`'s `cache`).
#[async_trait]
impl HealthCheck for RedisCache {
    async fn check(&self) -> Result<(), BackendError> {
        self.ping().await
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn lookup(&self, key: &str) -> Result<CacheLookup, BackendError> {
        let page = format!("{}{key}", self.page_prefix);
        let generation_key = self.generation_key.as_str();
        let (generation, value): (Option<u64>, Option<Vec<u8>>) =
            self.call(|mut c| async move { redis::cmd("MGET").arg(generation_key).arg(&page).query_async(&mut c).await }).await?;
        Ok(CacheLookup { generation: generation.unwrap_or(0), value: value.map(Arc::from) })
    }

    async fn store(&self, key: &str, value: Arc<[u8]>, ttl: Duration) -> Result<(), BackendError> {
        let page = format!("{}{key}", self.page_prefix);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.call(|mut c| async move { redis::cmd("SET").arg(&page).arg(&*value).arg("PX").arg(millis).query_async::<()>(&mut c).await })
            .await
    }

    async fn invalidate(&self) -> Result<(), BackendError> {
        let generation_key = self.generation_key.as_str();
        self.call_now(|mut c| async move { redis::cmd("INCR").arg(generation_key).query_async::<u64>(&mut c).await.map(drop) }).await
    }
}
