//! Test doubles for the crates above (with the `mocks` feature): a video in
//! any status, consistent with it, and ports whose behaviour a test needs
//! whole rather than call by call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{Count, Counters, Keyring};
use crate::trust::{NetworkTag, NewToken, TokenHash, network_of};
use crate::{BackendError, Email, ObjectKey, PasswordHash, TaskId, Timestamp, User, UserId, Video, VideoId, VideoStatus};

/// User `id`, Ana Pérez of Bogotá, created 2026-03-01T12:00:00Z, whose
/// address is verified or not.
///
/// # Panics
/// Never: the values are constants.
pub fn user(id: i64, email_verified: bool) -> User {
    User {
        id: UserId(id),
        first_name: "Ana".into(),
        last_name: "Pérez".into(),
        email: Email::parse(&format!("ana{id}@example.com")).expect("a valid address"),
        password_hash: PasswordHash("$argon2id$real".into()),
        city: "Bogotá".into(),
        country: "Colombia".into(),
        created_at: "2026-03-01T12:00:00Z".parse().expect("a valid time"),
        email_verified,
    }
}

/// A [`Keyring`] whose outputs can be read: tags are `net:` or `addr:` and
/// the network or address, a token's hash is `hash:` and the token, and
/// tokens are `token-1`, `token-2`, ...
#[derive(Debug, Default)]
pub struct PlainKeyring {
    issued: std::sync::atomic::AtomicU64,
}

impl Keyring for PlainKeyring {
    fn new_token(&self) -> NewToken {
        let n = self.issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let token = format!("token-{n}");
        NewToken { hash: self.token_hash(&token), token }
    }

    fn token_hash(&self, token: &str) -> TokenHash {
        TokenHash(format!("hash:{token}"))
    }

    fn network_tag(&self, address: std::net::IpAddr) -> NetworkTag {
        NetworkTag(format!("net:{}", network_of(address)))
    }

    fn address_tag(&self, address: std::net::IpAddr) -> NetworkTag {
        NetworkTag(format!("addr:{address}"))
    }
}

/// Video `id` of `owner` in `status`, uploaded 2026-03-01T12:00:00Z; a
/// processed one has its key and processing time, a failed one its reason.
///
/// # Panics
/// Never: the times are constants.
pub fn video(id: i64, owner: i64, status: VideoStatus) -> Video {
    let task_id = TaskId::random();
    let processed = status == VideoStatus::Processed;
    Video {
        id: VideoId(id),
        owner: UserId(owner),
        title: "Mi mejor tiro".into(),
        status,
        task_id,
        original_key: ObjectKey::original(task_id),
        processed_key: processed.then(|| ObjectKey::processed(task_id)),
        uploaded_at: "2026-03-01T12:00:00Z".parse().expect("a valid time"),
        processed_at: processed.then(|| "2026-03-01T12:01:10Z".parse().expect("a valid time")),
        failure_reason: (status == VideoStatus::Failed).then(|| "No se pudo decodificar el video.".to_owned()),
        votes: 0,
        progress: (status == VideoStatus::Processing).then_some(0),
    }
}

/// [`Counters`] in memory, with the port's documented behaviour.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    counts: Mutex<HashMap<String, (u32, Timestamp)>>,
}

impl MemoryCounters {
    /// The keys that hold counts now.
    ///
    /// # Panics
    /// When a test panicked while holding the lock.
    pub fn keys(&self) -> Vec<String> {
        self.counts.lock().expect("not poisoned").keys().cloned().collect()
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn counts(&self, keys: &[String]) -> Result<Vec<Count>, BackendError> {
        let counts = self.counts.lock().expect("not poisoned");
        Ok(keys.iter().filter_map(|k| counts.get(k).map(|&(count, since)| Count { key: k.clone(), count, since })).collect())
    }

    async fn record(&self, keys: &[String], window: Duration, now: Timestamp) -> Result<Vec<Count>, BackendError> {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let mut counts = self.counts.lock().expect("not poisoned");
        let mut now_counts = Vec::with_capacity(keys.len());
        for key in keys {
            let entry = counts.entry(key.clone()).or_insert((0, now));
            if entry.1 + window <= now {
                *entry = (0, now);
            }
            entry.0 += 1;
            now_counts.push(Count { key: key.clone(), count: entry.0, since: entry.1 });
        }
        Ok(now_counts)
    }

    async fn clear(&self, keys: &[String]) -> Result<(), BackendError> {
        let mut counts = self.counts.lock().expect("not poisoned");
        for key in keys {
            counts.remove(key);
        }
        Ok(())
    }
}
