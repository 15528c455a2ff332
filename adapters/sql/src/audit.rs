//! [`SeaOrmVoteAudit`]: who voted for whom from which network, and voiding
//! the votes of accounts found stuffing the ballot.

use std::collections::BTreeMap;

use anb_domain::ports::VoteAudit;
use anb_domain::{AuditBasis, AuditFinding, BackendError, NetworkTag, Timestamp, UserId, VideoId, VoidReport};
use async_trait::async_trait;
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use crate::{Database, db_error};

/// The audit on the database.
#[derive(Clone, Debug)]
pub struct SeaOrmVoteAudit {
    pub(crate) db: Database,
}

#[derive(Debug, FromQueryResult)]
struct VoterRow {
    player: i64,
    first_name: String,
    last_name: String,
    network: String,
    account: i64,
    votes: i64,
    first_vote: Timestamp,
    last_vote: Timestamp,
}

#[derive(Debug, FromQueryResult)]
struct RemovedVote {
    video_id: i64,
}

/// `$first, ...` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl SeaOrmVoteAudit {
    /// Each voter's votes per player since `since`, with the network the
    /// `basis` names.
    async fn voters(&self, since: Timestamp, basis: AuditBasis) -> Result<Vec<VoterRow>, BackendError> {
        let network = match basis {
            AuditBasis::SignUp => "u.signup_network",
            AuditBasis::Vote => "vo.network",
        };
        let sql = format!(
            "SELECT v.owner_id AS player, p.first_name, p.last_name, {network} AS network, vo.user_id AS account, \
                    COUNT(*) AS votes, MIN(vo.created_at) AS first_vote, MAX(vo.created_at) AS last_vote \
             FROM votes vo JOIN videos v ON v.id = vo.video_id JOIN users u ON u.id = vo.user_id JOIN users p ON p.id = v.owner_id \
             WHERE vo.created_at >= $1 AND {network} IS NOT NULL \
             GROUP BY v.owner_id, p.first_name, p.last_name, {network}, vo.user_id"
        );
        VoterRow::find_by_statement(self.db.statement(&sql, vec![since.into()])).all(self.db.connection()).await.map_err(|e| db_error(&e))
    }
}

#[async_trait]
impl VoteAudit for SeaOrmVoteAudit {
    async fn findings(&self, since: Timestamp, min_accounts: u32) -> Result<Vec<AuditFinding>, BackendError> {
        let mut findings = Vec::new();
        for basis in [AuditBasis::SignUp, AuditBasis::Vote] {
            let mut groups: BTreeMap<(i64, String), AuditFinding> = BTreeMap::new();
            for row in self.voters(since, basis).await? {
                let finding = groups.entry((row.player, row.network.clone())).or_insert_with(|| AuditFinding {
                    player: UserId(row.player),
                    player_name: anb_domain::user::display_name(&row.first_name, &row.last_name),
                    basis,
                    network: NetworkTag(row.network.clone()),
                    accounts: Vec::new(),
                    votes: 0,
                    first_vote: row.first_vote,
                    last_vote: row.last_vote,
                });
                finding.accounts.push(UserId(row.account));
                finding.votes += u64::try_from(row.votes).unwrap_or(0);
                finding.first_vote = finding.first_vote.min(row.first_vote);
                finding.last_vote = finding.last_vote.max(row.last_vote);
            }
            findings.extend(groups.into_values().filter(|f| f.accounts.len() >= min_accounts as usize).map(|mut f| {
                f.accounts.sort();
                f
            }));
        }
        findings.sort_by(|a, b| b.accounts.len().cmp(&a.accounts.len()).then(a.player.cmp(&b.player)));
        Ok(findings)
    }

    async fn void(&self, accounts: &[UserId]) -> Result<VoidReport, BackendError> {
        if accounts.is_empty() {
            return Ok(VoidReport::default());
        }
        let ids: Vec<Value> = accounts.iter().map(|a| Value::from(a.0)).collect();
        let list = placeholders(1, ids.len());
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        // The delete comes first: on SQLite it takes the write lock at once
        // (no read-then-write that a racing vote could make fail), on
        // PostgreSQL it holds the rows; it says which votes went.
        let delete = format!("DELETE FROM votes WHERE user_id IN ({list}) RETURNING video_id");
        let removed = RemovedVote::find_by_statement(self.db.statement(&delete, ids)).all(&txn).await.map_err(|e| db_error(&e))?;
        let mut per_video: BTreeMap<i64, i64> = BTreeMap::new();
        for vote in &removed {
            *per_video.entry(vote.video_id).or_default() += 1;
        }
        // Taken off the totals (votes go to public videos only, and a public
        // video stays public): the video's, then its player's. Votes that
        // others cast meanwhile are kept, being added to the same rows.
        for (&video, &n) in &per_video {
            let count = "UPDATE videos SET votes = votes - $1 WHERE id = $2";
            txn.execute(self.db.statement(count, vec![n.into(), video.into()])).await.map_err(|e| db_error(&e))?;
            let total = "UPDATE users SET public_votes = public_votes - $1 WHERE id = (SELECT owner_id FROM videos WHERE id = $2)";
            txn.execute(self.db.statement(total, vec![n.into(), video.into()])).await.map_err(|e| db_error(&e))?;
        }
        txn.commit().await.map_err(|e| db_error(&e))?;
        Ok(VoidReport { votes: removed.len() as u64, videos: per_video.keys().map(|&v| VideoId(v)).collect() })
    }
}
