//! [`Readiness`]: whether each dependency this process uses answers now
//! (database, storage, queue, cache), for `GET /api/ready`: operators and
//! monitors ask it. The load balancer asks `GET /api/health`, which checks
//! nothing, so that a database failover never makes every server look dead.

use std::sync::Arc;
use std::time::Duration;

use anb_domain::BackendError;
use anb_domain::ports::{Clock, HealthCheck};
use futures::future::{Either, select};

/// How long one dependency has to answer before it counts as unreachable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The dependencies of a process, each by name.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<(&'static str, Arc<dyn HealthCheck>)>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.checks.iter().map(|(name, _)| name)).finish()
    }
}

impl Readiness {
    /// No dependency yet; `clock` times the answers.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { checks: Vec::new(), clock, timeout: READY_TIMEOUT }
    }

    /// Adds a dependency named `name` (`database`, `storage`, `queue`,
    /// `cache`).
    #[must_use]
    pub fn with(mut self, name: &'static str, check: Arc<dyn HealthCheck>) -> Self {
        self.checks.push((name, check));
        self
    }

    /// Another time to answer than [`READY_TIMEOUT`].
    #[must_use]
    pub fn within(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Every dependency, asked at once, each within the timeout: its name
    /// and whether it answered.
    pub async fn check(&self) -> Vec<(&'static str, Result<(), BackendError>)> {
        let timeout = self.timeout;
        let asks = self.checks.iter().map(|(name, check)| async move {
            let answer = match select(check.check(), std::pin::pin!(self.clock.sleep(timeout))).await {
                Either::Left((answer, _)) => answer,
                Either::Right(_) => Err(BackendError::unavailable(format!("{name} did not answer within {} ms", timeout.as_millis()))),
            };
            (*name, answer)
        });
        futures::future::join_all(asks).await
    }
}

#[cfg(test)]
mod tests {
    use anb_domain::ports::MockHealthCheck;

    use super::*;

    struct TokioClock;

    #[async_trait::async_trait]
    impl Clock for TokioClock {
        fn now(&self) -> anb_domain::Timestamp {
            chrono::Utc::now()
        }

        async fn sleep(&self, duration: Duration) {
            tokio::time::sleep(duration).await;
        }
    }

    struct Never;

    #[async_trait::async_trait]
    impl HealthCheck for Never {
        async fn check(&self) -> Result<(), BackendError> {
            futures::future::pending().await
        }
    }

    #[tokio::test]
    async fn each_dependency_is_asked_at_once_and_one_that_hangs_is_unreachable_in_time() {
        let mut up = MockHealthCheck::new();
        up.expect_check().returning(|| Ok(()));
        let mut down = MockHealthCheck::new();
        down.expect_check().returning(|| Err(BackendError::unavailable("connection refused")));
        let readiness = Readiness::new(Arc::new(TokioClock))
            .with("database", Arc::new(up))
            .with("storage", Arc::new(down))
            .with("queue", Arc::new(Never))
            .within(Duration::from_millis(50));
        let started = std::time::Instant::now();
        let answers = readiness.check().await;
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        let states: Vec<(&str, bool)> = answers.iter().map(|(name, answer)| (*name, answer.is_ok())).collect();
        assert_eq!(states, [("database", true), ("storage", false), ("queue", false)]);
        assert!(answers[2].1.as_ref().unwrap_err().to_string().contains("within 50 ms"));
    }
}
