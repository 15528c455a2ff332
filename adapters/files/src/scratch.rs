//! [`LocalScratch`]: the [`ScratchSpace`] port in a directory of the local
//! disk. Each job gets `<root>/<label>-<random>/`; the directory goes when
//! the job ends, and the sweeper removes those a killed worker left behind
//! once nothing in them has changed for the job visibility (a live job keeps
//! writing its output, so another process sharing the root loses nothing).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anb_domain::BackendError;
use anb_domain::ports::{ScratchDir, ScratchSpace};
use async_trait::async_trait;

/// Scratch directories under one root.
#[derive(Debug, Clone)]
pub struct LocalScratch {
    root: PathBuf,
    /// A directory unchanged this long belongs to a dead job.
    idle: Duration,
}

impl LocalScratch {
    /// Scratch under `root`; directories idle for `idle` are stale.
    pub fn new(root: PathBuf, idle: Duration) -> Self {
        Self { root, idle }
    }

    /// Creates the root, and removes what stale jobs left in it. Returns how
    /// many directories were removed.
    ///
    /// # Errors
    /// When the root cannot be created.
    pub async fn prepare(&self) -> Result<usize, BackendError> {
        tokio::fs::create_dir_all(&self.root).await.map_err(|e| BackendError::io(&format!("creating {}", self.root.display()), &e))?;
        Ok(self.sweep().await)
    }

    /// Removes the directories in which nothing changed for the idle time.
    /// Returns how many.
    pub async fn sweep(&self) -> usize {
        let (root, idle) = (self.root.clone(), self.idle);
        tokio::task::spawn_blocking(move || sweep_stale(&root, idle)).await.unwrap_or(0)
    }

    /// Sweeps every idle time until `stop` resolves (a killed process's
    /// scratch goes once it has been idle that long, even while this one runs).
    pub async fn sweep_until(&self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(self.idle) => { self.sweep().await; }
            }
        }
    }
}

#[async_trait]
impl ScratchSpace for LocalScratch {
    async fn create(&self, label: &str) -> Result<ScratchDir, BackendError> {
        let dir = self.root.join(format!("{label}-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&dir).await.map_err(|e| BackendError::io(&format!("creating {}", dir.display()), &e))?;
        Ok(ScratchDir { input: dir.join("original.mp4"), output: dir.join("processed.mp4"), dir })
    }

    async fn remove(&self, dir: &ScratchDir) {
        if let Err(error) = tokio::fs::remove_dir_all(&dir.dir).await {
            tracing::warn!(dir = %dir.dir.display(), %error, "could not remove a scratch directory; the sweeper will");
        }
    }
}

fn sweep_stale(root: &Path, idle: Duration) -> usize {
    let newest = |path: &Path| {
        let own = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let children = std::fs::read_dir(path).into_iter().flatten().flatten().filter_map(|e| e.metadata().and_then(|m| m.modified()).ok());
        own.into_iter().chain(children).max()
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let path = entry.path();
        let stale = newest(&path).and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= idle);
        if !stale {
            continue;
        }
        let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a stale scratch directory");
                removed += 1;
            }
            Err(error) => tracing::warn!(path = %path.display(), %error, "could not remove a stale scratch directory"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_idle_scratch_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("job-old")).unwrap();
        std::fs::write(dir.path().join("job-old/processed.mp4"), b"half").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::create_dir(dir.path().join("job-live")).unwrap();
        let scratch = LocalScratch::new(dir.path().to_owned(), Duration::from_millis(200));
        assert_eq!(scratch.prepare().await.unwrap(), 1);
        assert!(!dir.path().join("job-old").exists() && dir.path().join("job-live").exists());
    }

    #[tokio::test]
    async fn a_job_directory_is_created_empty_and_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = LocalScratch::new(dir.path().join("work"), Duration::from_secs(60));
        scratch.prepare().await.unwrap();
        let job = scratch.create("job-1").await.unwrap();
        assert!(job.dir.is_dir() && job.dir.starts_with(dir.path().join("work")));
        assert_eq!((job.input.parent(), job.output.parent()), (Some(job.dir.as_path()), Some(job.dir.as_path())));
        std::fs::write(&job.output, b"x").unwrap();
        scratch.remove(&job).await;
        assert!(!job.dir.exists());
    }
}
