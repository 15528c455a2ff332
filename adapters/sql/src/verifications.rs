//! [`SeaOrmVerifications`]: the mail outbox (`mail_outbox`, filled in the
//! sign-up's own transaction) and the verification tokens (`email_tokens`,
//! hashes only).

use std::time::Duration;

use anb_domain::ports::{RedeemError, UserRepository, Verifications};
use anb_domain::{BackendError, MailKind, PendingMail, Timestamp, TokenHash, UserId};
use async_trait::async_trait;
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};

use crate::{Database, db_error, millis};

/// How long a used or expired token is kept (for a clear "already used" or
/// "expired" answer) before it is swept.
const TOKEN_KEEP: Duration = Duration::from_secs(7 * 86_400);
/// Most characters of a sending error kept for operators.
const MAX_ERROR_CHARS: usize = 500;

/// Verification in the database.
#[derive(Clone, Debug)]
pub struct SeaOrmVerifications {
    pub(crate) db: Database,
}

#[derive(Debug, FromQueryResult)]
struct DueRow {
    id: i64,
    user_id: i64,
    kind: String,
    due_ms: i64,
    attempts: i32,
}

#[derive(Debug, FromQueryResult)]
struct TokenRow {
    user_id: i64,
    expires_ms: i64,
    used_ms: Option<i64>,
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Verifications for SeaOrmVerifications {
    async fn queue_mail(&self, user: UserId, kind: MailKind, now: Timestamp) -> Result<(), BackendError> {
        let sql = "INSERT INTO mail_outbox (user_id, kind, due_ms, attempts, created_ms) VALUES ($1, $2, $3, 0, $4)";
        let values = vec![user.0.into(), kind.as_str().into(), millis(now).into(), millis(now).into()];
        self.db.connection().execute(self.db.statement(sql, values)).await.map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn take_due(&self, now: Timestamp, lease: Duration, limit: u32) -> Result<Vec<PendingMail>, BackendError> {
        let now_ms = millis(now);
        let sql = "SELECT id, user_id, kind, due_ms, attempts FROM mail_outbox WHERE due_ms <= $1 ORDER BY due_ms, id LIMIT $2";
        let due = DueRow::find_by_statement(self.db.statement(sql, vec![now_ms.into(), i64::from(limit).into()]))
            .all(self.db.connection())
            .await
            .map_err(|e| db_error(&e))?;
        let users = self.db.users();
        let mut taken = Vec::with_capacity(due.len());
        for row in due {
            // Taken only if no other relay took it since the read.
            let take = "UPDATE mail_outbox SET due_ms = $1 WHERE id = $2 AND due_ms = $3";
            let values = vec![now_ms.saturating_add(ms(lease)).into(), row.id.into(), row.due_ms.into()];
            let result = self.db.connection().execute(self.db.statement(take, values)).await.map_err(|e| db_error(&e))?;
            if result.rows_affected() != 1 {
                continue;
            }
            let Some(kind) = MailKind::parse(&row.kind) else {
                tracing::error!(id = row.id, kind = row.kind, "an outbox message of an unknown kind: dropped");
                self.mail_sent(row.id).await?;
                continue;
            };
            let user = users.by_id(UserId(row.user_id)).await.map_err(|e| BackendError::internal(e.to_string()))?;
            // The account is gone (its outbox rows go with it; this one raced).
            let Some(user) = user else { continue };
            taken.push(PendingMail { id: row.id, kind, user, attempts: u32::try_from(row.attempts).unwrap_or(0) });
        }
        Ok(taken)
    }

    async fn mail_sent(&self, id: i64) -> Result<(), BackendError> {
        let statement = self.db.statement("DELETE FROM mail_outbox WHERE id = $1", vec![id.into()]);
        self.db.connection().execute(statement).await.map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn mail_failed(&self, id: i64, error: &str, retry_at: Timestamp) -> Result<(), BackendError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        let sql = "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $1, due_ms = $2 WHERE id = $3";
        let statement = self.db.statement(sql, vec![error.into(), millis(retry_at).into(), id.into()]);
        self.db.connection().execute(statement).await.map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn store_token(&self, user: UserId, hash: &TokenHash, expires_at: Timestamp) -> Result<(), BackendError> {
        let insert = "INSERT INTO email_tokens (token_hash, user_id, expires_ms) VALUES ($1, $2, $3)";
        let values = vec![hash.0.as_str().into(), user.0.into(), millis(expires_at).into()];
        self.db.connection().execute(self.db.statement(insert, values)).await.map_err(|e| db_error(&e))?;
        let stale = millis(chrono::Utc::now()).saturating_sub(ms(TOKEN_KEEP));
        let sweep = self.db.statement("DELETE FROM email_tokens WHERE expires_ms < $1", vec![stale.into()]);
        self.db.connection().execute(sweep).await.map_err(|e| db_error(&e))?;
        Ok(())
    }

    async fn redeem(&self, hash: &TokenHash, now: Timestamp) -> Result<UserId, RedeemError> {
        let now_ms = millis(now);
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        // Used once: the first of racing requests takes it.
        let use_it = "UPDATE email_tokens SET used_ms = $1 WHERE token_hash = $2 AND used_ms IS NULL AND expires_ms > $3";
        let values = vec![now_ms.into(), hash.0.as_str().into(), now_ms.into()];
        let used = txn.execute(self.db.statement(use_it, values)).await.map_err(|e| db_error(&e))?.rows_affected() == 1;
        let find = "SELECT user_id, expires_ms, used_ms FROM email_tokens WHERE token_hash = $1";
        let row =
            TokenRow::find_by_statement(self.db.statement(find, vec![hash.0.as_str().into()])).one(&txn).await.map_err(|e| db_error(&e))?;
        let result = match row {
            None => Err(RedeemError::Unknown),
            Some(row) if used => {
                let verify = "UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email_verified_at IS NULL";
                txn.execute(self.db.statement(verify, vec![now.into(), row.user_id.into()])).await.map_err(|e| db_error(&e))?;
                Ok(UserId(row.user_id))
            }
            Some(TokenRow { used_ms: Some(_), .. }) => Err(RedeemError::Used),
            Some(TokenRow { expires_ms, .. }) if expires_ms <= now_ms => Err(RedeemError::Expired),
            Some(_) => Err(RedeemError::Used),
        };
        txn.commit().await.map_err(|e| db_error(&e))?;
        result
    }
}
