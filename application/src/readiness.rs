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
/// How long an answer is reused: `/api/ready` needs no account, so a flood
/// of it must not become a flood of every dependency.
pub const READY_REUSE: Duration = Duration::from_secs(1);

type Answers = Vec<(&'static str, Result<(), BackendError>)>;

/// The dependencies of a process, each by name.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<(&'static str, Arc<dyn HealthCheck>)>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    /// The last answers and when they were had.
    last: Arc<std::sync::Mutex<Option<(anb_domain::Timestamp, Answers)>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.checks.iter().map(|(name, _)| name)).finish()
    }
}

impl Readiness {
    /// No dependency yet; `clock` times the answers.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { checks: Vec::new(), clock, timeout: READY_TIMEOUT, last: Arc::default() }
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
    /// and whether it answered. Answers had within [`READY_REUSE`] are
    /// given again.
    pub async fn check(&self) -> Answers {
        let now = self.clock.now();
        let reuse = chrono::Duration::from_std(READY_REUSE).unwrap_or_default();
        if let Some((at, answers)) = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            && now - *at < reuse
            && *at <= now
        {
            return answers.clone();
        }
        let answers = self.ask().await;
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((self.clock.now(), answers.clone()));
        answers
    }

    async fn ask(&self) -> Answers {
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

    #[tokio::test]
    async fn an_answer_is_reused_for_a_second() {
        let mut database = MockHealthCheck::new();
        database.expect_check().times(1).returning(|| Ok(()));
        let readiness = Readiness::new(Arc::new(TokioClock)).with("database", Arc::new(database));
        for _ in 0..3 {
            assert!(readiness.check().await[0].1.is_ok());
        }
    }
}
