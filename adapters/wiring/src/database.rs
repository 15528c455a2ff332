//! The database family: a process that starts while the database cannot be
//! reached (a failover, an instance still booting, a network not up yet)
//! waits for it, trying again with back-off, instead of exiting; systemd's
//! restarts would otherwise spend their budget in seconds and leave the unit
//! failed for good.

use std::time::Duration;

use anb_domain::{BackendError, BackendErrorKind};
use anb_sql::Database;

use crate::StartupError;
use crate::aws::Cloud;
use crate::config::CommonConfig;

/// First wait after a failed try; each next one doubles, up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(500);
/// Longest wait between tries: a database back after a long outage is found
/// within this.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Tries with credentials the database refuses before giving up: the secret
/// is read again before each (a password rotated while this process
/// started), but a wrong password stays wrong.
const REFUSED_TRIES: u32 = 5;

/// Connects to the database (migrating it), trying again while it cannot be
/// reached; reads the URL again from its secret after a refused password.
///
/// # Errors
/// [`StartupError::Database`] for a failure that waiting does not fix (a
/// refused password after [`REFUSED_TRIES`], a failed migration).
pub(crate) async fn connect(config: &CommonConfig, cloud: &Cloud, mut url: String) -> Result<Database, StartupError> {
    let (mut wait, mut refused, mut tries) = (FIRST_WAIT, 0, 0u32);
    loop {
        tries += 1;
        let error = match Database::connect(&url, config.database_pool).await {
            Ok(database) => {
                if tries > 1 {
                    tracing::info!(tries, "connected to the database");
                }
                return Ok(database);
            }
            Err(error) => error,
        };
        match classify(&error) {
            Failure::Unreachable => {}
            Failure::Refused if refused + 1 < REFUSED_TRIES => {
                refused += 1;
                url = crate::secrets::database_url_with(config, cloud).await?;
            }
            Failure::Refused | Failure::Other => return Err(StartupError::Database(error)),
        }
        let next = jittered(wait);
        tracing::warn!(%error, tries, retry_in_ms = u64::try_from(next.as_millis()).unwrap_or(u64::MAX), "database not reachable yet; trying again");
        tokio::time::sleep(next).await;
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// What a failed connection means for the next try.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Not reached, not accepting connections yet, or read-only for now (a
    /// standby being promoted): wait.
    Unreachable,
    /// The password was refused (PostgreSQL's `28P01`, whose message is all
    /// a `BackendError` keeps).
    Refused,
    /// Anything else (a bad URL, a failed migration).
    Other,
}

fn classify(error: &BackendError) -> Failure {
    if error.kind == BackendErrorKind::Unavailable {
        Failure::Unreachable
    } else if error.message.contains("password authentication failed") {
        Failure::Refused
    } else {
        Failure::Other
    }
}

/// `wait` give or take a fifth, so that a fleet started together does not
/// knock at once.
fn jittered(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let fifth = wait / 5;
    wait - fifth + fifth * 2 * (nanos % 1000) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_are_spread() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(10));
            assert!((Duration::from_secs(8)..=Duration::from_secs(12)).contains(&wait), "{wait:?}");
        }
    }

    #[test]
    fn only_an_unreachable_database_or_refused_credentials_are_tried_again() {
        assert_eq!(classify(&BackendError::unavailable("connection refused")), Failure::Unreachable);
        let refused = BackendError::internal("error returned from database: password authentication failed for user \"anb\"");
        assert_eq!(classify(&refused), Failure::Refused);
        assert_eq!(classify(&BackendError::internal("relative URL without a base")), Failure::Other);
    }
}
