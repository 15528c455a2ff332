//! [`SeaOrmCounters`]: events per key (failed log-ins, sign-ups, requests
//! for a new link) in the `login_failures` table, so that the limits hold
//! across every web server of a deployment.

use std::time::Duration;

use anb_domain::ports::{Count, Counters};
use anb_domain::{BackendError, Timestamp};
use async_trait::async_trait;
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use crate::{Database, db_error, millis};

/// Counters in the database.
#[derive(Clone, Debug)]
pub struct SeaOrmCounters {
    pub(crate) db: Database,
}

#[derive(Debug, FromQueryResult)]
struct Row {
    counter_key: String,
    failures: i32,
    since_ms: i64,
}

fn to_count(r: Row) -> Result<Count, BackendError> {
    let since = chrono::DateTime::from_timestamp_millis(r.since_ms).ok_or_else(|| BackendError::internal("invalid since_ms"))?;
    Ok(Count { key: r.counter_key, count: u32::try_from(r.failures).unwrap_or(0), since })
}

/// `$1, $2, ...` for `n` values starting at `first`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[async_trait]
impl Counters for SeaOrmCounters {
    async fn counts(&self, keys: &[String]) -> Result<Vec<Count>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT counter_key, failures, since_ms FROM login_failures WHERE counter_key IN ({})", placeholders(1, keys.len()));
        let values = keys.iter().map(|k| Value::from(k.as_str())).collect();
        let rows = Row::find_by_statement(self.db.statement(&sql, values)).all(self.db.connection()).await.map_err(|e| db_error(&e))?;
        rows.into_iter().map(to_count).collect()
    }

    async fn record(&self, keys: &[String], window: Duration, now: Timestamp) -> Result<Vec<Count>, BackendError> {
        let now_ms = millis(now);
        let expired = now_ms.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        // One statement a key, returning the count it leaves (PostgreSQL and
        // SQLite 3.35+ both return the row an upsert wrote): a count whose
        // window ended starts again.
        // Each row keeps the end of its own window (`until_ms`): counters of
        // different windows share the table, and the sweep below removes
        // only rows whose own window has ended.
        let until = now_ms.saturating_add(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        let upsert = "INSERT INTO login_failures (counter_key, failures, since_ms, until_ms) VALUES ($1, 1, $2, $3) \
                      ON CONFLICT (counter_key) DO UPDATE SET \
                        failures = CASE WHEN login_failures.since_ms <= $4 THEN 1 ELSE login_failures.failures + 1 END, \
                        until_ms = CASE WHEN login_failures.since_ms <= $5 THEN $6 ELSE login_failures.until_ms END, \
                        since_ms = CASE WHEN login_failures.since_ms <= $7 THEN $8 ELSE login_failures.since_ms END \
                      RETURNING counter_key, failures, since_ms";
        let mut counts = Vec::with_capacity(keys.len());
        for key in keys {
            let values = vec![
                key.as_str().into(),
                now_ms.into(),
                until.into(),
                expired.into(),
                expired.into(),
                until.into(),
                expired.into(),
                now_ms.into(),
            ];
            let row = Row::find_by_statement(self.db.statement(upsert, values))
                .one(self.db.connection())
                .await
                .map_err(|e| db_error(&e))?
                .ok_or_else(|| BackendError::internal("an upsert returned no row"))?;
            counts.push(to_count(row)?);
        }
        // Counts whose own window ended are of no use any more.
        let sweep = self.db.statement("DELETE FROM login_failures WHERE until_ms <= $1", vec![now_ms.into()]);
        self.db.connection().execute(sweep).await.map_err(|e| db_error(&e))?;
        Ok(counts)
    }

    async fn clear(&self, keys: &[String]) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        let sql = format!("DELETE FROM login_failures WHERE counter_key IN ({})", placeholders(1, keys.len()));
        let values = keys.iter().map(|k| Value::from(k.as_str())).collect();
        self.db.connection().execute(self.db.statement(&sql, values)).await.map_err(|e| db_error(&e))?;
        Ok(())
    }
}
