//! [`HostProtection`]: the host is protected from its group's scale-in while
//! any of its jobs runs, and let go once it has been idle a moment (so that
//! a worker between two jobs does not flap). [`Busy`] counts the jobs; the
//! [`Processor`](crate::Processor) holds a [`BusyGuard`] for each.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use anb_domain::ports::{Clock, ScaleInProtection};
use futures::future::{Either, select};
use futures::task::AtomicWaker;

use crate::Shutdown;

/// How many jobs this process runs now, and a change signal for one watcher.
#[derive(Debug, Default)]
pub struct Busy {
    jobs: AtomicUsize,
    version: AtomicU64,
    waker: AtomicWaker,
}

impl Busy {
    /// One more job, until the guard drops.
    pub fn enter(self: &Arc<Self>) -> BusyGuard {
        self.jobs.fetch_add(1, Ordering::AcqRel);
        self.bump();
        BusyGuard(self.clone())
    }

    /// The jobs running now.
    pub fn jobs(&self) -> usize {
        self.jobs.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Resolves once the count changed after `seen` (a version), with the
    /// new version.
    async fn changed(&self, seen: u64) -> u64 {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            let now = self.version.load(Ordering::Acquire);
            if now == seen { Poll::Pending } else { Poll::Ready(now) }
        })
        .await
    }
}

/// A job being run; the count drops with it.
#[derive(Debug)]
pub struct BusyGuard(Arc<Busy>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.jobs.fetch_sub(1, Ordering::AcqRel);
        self.0.bump();
    }
}

/// Keeps the host protected from scale-in while [`Busy`] counts a job.
pub struct HostProtection {
    busy: Arc<Busy>,
    port: Arc<dyn ScaleInProtection>,
    clock: Arc<dyn Clock>,
    /// Idle time before the host is let go.
    linger: Duration,
}

impl HostProtection {
    /// Protection through `port` while `busy` counts a job, let go after
    /// `linger` idle.
    pub fn new(busy: Arc<Busy>, port: Arc<dyn ScaleInProtection>, clock: Arc<dyn Clock>, linger: Duration) -> Self {
        Self { busy, port, clock, linger }
    }

    /// Follows the job count until `shutdown`, then lets the host go. At
    /// start the protection is unknown (a process that died mid-job left it
    /// on): an idle host is let go at once. A failed call is tried again at
    /// the next change or after `linger`.
    pub async fn run(&self, shutdown: Shutdown) {
        let mut protected: Option<bool> = None;
        let mut seen = 0;
        loop {
            let busy = self.busy.jobs() > 0;
            let wait = match protected {
                Some(state) if state == busy => None,
                // Unknown, or a job came: at once.
                None | Some(false) => Some(Duration::ZERO),
                Some(true) => Some(self.linger),
            };
            let woke = match wait {
                // In step: wait for the count to change.
                None => match select(pin!(self.busy.changed(seen)), shutdown.clone()).await {
                    Either::Left((version, _)) => Some(version),
                    Either::Right(_) => None,
                },
                Some(delay) => {
                    let step = async {
                        if !delay.is_zero() {
                            // Idle: wait `linger`, unless a job comes first.
                            if let Either::Left((version, _)) = select(pin!(self.busy.changed(seen)), pin!(self.clock.sleep(delay))).await {
                                return version;
                            }
                        }
                        let want = self.busy.jobs() > 0;
                        match self.port.protect(want).await {
                            Ok(()) => {
                                protected = Some(want);
                                tracing::info!(protected = want, jobs = self.busy.jobs(), "scale-in protection set");
                            }
                            Err(error) => {
                                tracing::warn!(%error, want, "could not set the scale-in protection; trying again");
                                self.clock.sleep(self.linger).await;
                            }
                        }
                        seen
                    };
                    match select(pin!(step), shutdown.clone()).await {
                        Either::Left((version, _)) => Some(version),
                        Either::Right(_) => None,
                    }
                }
            };
            match woke {
                Some(version) => seen = version,
                None => break,
            }
        }
        // Stopping (the jobs are handed back): a host that is only being
        // restarted must not stay protected. Best effort, briefly.
        if protected != Some(false) {
            let release = pin!(self.port.protect(false));
            match select(release, pin!(self.clock.sleep(SHUTDOWN_RELEASE))).await {
                Either::Left((Ok(()), _)) => tracing::info!("scale-in protection released at shutdown"),
                Either::Left((Err(error), _)) => tracing::warn!(%error, "could not release the scale-in protection at shutdown"),
                Either::Right(_) => tracing::warn!("releasing the scale-in protection at shutdown took too long"),
            }
        }
    }
}

/// Longest a stopping process tries to release its protection.
const SHUTDOWN_RELEASE: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    /// Records each protection asked for.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<bool>>);

    #[async_trait]
    impl ScaleInProtection for Recorder {
        async fn protect(&self, protected: bool) -> Result<(), anb_domain::BackendError> {
            self.0.lock().unwrap().push(protected);
            Ok(())
        }
    }

    struct TokioClock;

    #[async_trait]
    impl Clock for TokioClock {
        fn now(&self) -> anb_domain::Timestamp {
            chrono::Utc::now()
        }

        async fn sleep(&self, duration: Duration) {
            tokio::time::sleep(duration).await;
        }
    }

    fn clock() -> Arc<TokioClock> {
        Arc::new(TokioClock)
    }

    #[tokio::test(start_paused = true)]
    async fn protected_while_a_job_runs_and_let_go_after_a_quiet_moment() {
        let (busy, port) = (Arc::new(Busy::default()), Arc::new(Recorder::default()));
        let protection = Arc::new(HostProtection::new(busy.clone(), port.clone(), clock(), Duration::from_millis(200)));
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        let shutdown = crate::shutdown_on(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn({
            let protection = protection.clone();
            async move { protection.run(shutdown).await }
        });
        let asked = || port.0.lock().unwrap().clone();
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        assert_eq!(asked(), [false], "idle at start: let go, whatever a dead process left");
        let first = busy.enter();
        settle().await;
        assert_eq!(asked(), [false, true], "protected at once");
        let second = busy.enter();
        drop(first);
        settle().await;
        assert_eq!(asked(), [false, true], "still a job");
        drop(second);
        let next = busy.enter();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(next);
        settle().await;
        assert_eq!(asked(), [false, true], "a job between two others does not let it go");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(asked(), [false, true, false], "let go after the quiet moment");
        let last = busy.enter();
        settle().await;
        assert_eq!(asked(), [false, true, false, true]);
        stop.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(asked(), [false, true, false, true, false], "let go at shutdown");
        drop(last);
    }
}
