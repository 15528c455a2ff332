//! The vote audit, for operators facing ballot stuffing: the accounts that
//! share a network and voted for one player, and voiding their votes, after
//! which every web server shows the new ranking at once (the page cache is
//! invalidated).

use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{Clock, VoteAudit};
use anb_domain::{AuditFinding, BackendError, UserId, VoidReport};

use crate::cache::PageCache;

/// Audit use cases.
#[derive(Clone)]
pub struct BallotAudit {
    audit: Arc<dyn VoteAudit>,
    clock: Arc<dyn Clock>,
    cache: Arc<PageCache>,
}

impl BallotAudit {
    /// The audit over its port; `cache` is the page cache the web servers
    /// share (or a disabled one: their pages then expire by themselves).
    pub fn new(audit: Arc<dyn VoteAudit>, clock: Arc<dyn Clock>, cache: Arc<PageCache>) -> Self {
        Self { audit, clock, cache }
    }

    /// Every (player, network) where at least `min_accounts` accounts of one
    /// network voted for the player within the last `since`.
    ///
    /// # Errors
    /// Only [`BackendError`].
    pub async fn findings(&self, since: Duration, min_accounts: u32) -> Result<Vec<AuditFinding>, BackendError> {
        let from = self.clock.now() - chrono::Duration::from_std(since).unwrap_or(chrono::Duration::MAX);
        self.audit.findings(from, min_accounts.max(2)).await
    }

    /// Removes every vote of `accounts`, recomputes the totals, and makes
    /// every cached page stale.
    ///
    /// # Errors
    /// Only [`BackendError`].
    pub async fn void(&self, accounts: &[UserId]) -> Result<VoidReport, BackendError> {
        let report = self.audit.void(accounts).await?;
        tracing::warn!(accounts = ?accounts.iter().map(|a| a.0).collect::<Vec<_>>(), votes = report.votes, "votes voided");
        self.cache.invalidate().await;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use anb_domain::VideoId;
    use anb_domain::ports::{MockClock, MockVoteAudit};

    use super::*;

    #[tokio::test]
    async fn the_audit_looks_back_from_now_and_wants_at_least_two_accounts() {
        let now = chrono::Utc::now();
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        let mut audit = MockVoteAudit::new();
        audit
            .expect_findings()
            .withf(move |since, min| *since == now - chrono::Duration::hours(24) && *min == 2)
            .times(1)
            .returning(|_, _| Ok(vec![]));
        audit.expect_void().returning(|accounts| Ok(VoidReport { votes: accounts.len() as u64, videos: vec![VideoId(1)] }));
        let audit = BallotAudit::new(Arc::new(audit), Arc::new(clock), Arc::new(PageCache::disabled()));
        assert!(audit.findings(Duration::from_secs(86_400), 1).await.unwrap().is_empty());
        assert_eq!(audit.void(&[UserId(4), UserId(5)]).await.unwrap().votes, 2);
    }
}
