//! Test doubles for the crates above (with the `mocks` feature): a video in
//! any status, consistent with it, and ports whose behaviour a test needs
//! whole rather than call by call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{FailureCount, LoginAttempts};
use crate::{BackendError, ObjectKey, TaskId, Timestamp, UserId, Video, VideoId, VideoStatus};

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

/// [`LoginAttempts`] in memory, with the port's documented behaviour.
#[derive(Debug, Default)]
pub struct MemoryLoginAttempts {
    counts: Mutex<HashMap<String, (u32, Timestamp)>>,
}

impl MemoryLoginAttempts {
    /// The keys that hold counts now.
    ///
    /// # Panics
    /// When a test panicked while holding the lock.
    pub fn keys(&self) -> Vec<String> {
        self.counts.lock().expect("not poisoned").keys().cloned().collect()
    }
}

#[async_trait]
impl LoginAttempts for MemoryLoginAttempts {
    async fn failures(&self, keys: &[String]) -> Result<Vec<FailureCount>, BackendError> {
        let counts = self.counts.lock().expect("not poisoned");
        Ok(keys.iter().filter_map(|k| counts.get(k).map(|&(failures, since)| FailureCount { key: k.clone(), failures, since })).collect())
    }

    async fn record_failure(&self, keys: &[String], window: Duration, now: Timestamp) -> Result<(), BackendError> {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let mut counts = self.counts.lock().expect("not poisoned");
        for key in keys {
            let entry = counts.entry(key.clone()).or_insert((0, now));
            if entry.1 + window <= now {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
        Ok(())
    }

    async fn clear(&self, keys: &[String]) -> Result<(), BackendError> {
        let mut counts = self.counts.lock().expect("not poisoned");
        for key in keys {
            counts.remove(key);
        }
        Ok(())
    }
}
