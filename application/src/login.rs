//! The limits on failed log-ins, kept through the [`Counters`] port so
//! that every web server sees the same counts.
//!
//! Failures are counted under three keys, each over the lockout window:
//! - the account *and* the client address: [`LoginLimits::max_failures`]
//!   (5 by default). Guessing one account from one address stops there, and
//!   someone else's failures from another address never lock the owner out;
//! - the client address, across accounts: four times as many (many people
//!   can share one address; this stops spraying many accounts);
//! - the account, from every address: ten times as many, the last line
//!   against guessing spread over many addresses.
//!
//! Past a limit, log-ins under that key answer "too many attempts" with the
//! time until the window ends, even with the right password (else guessing
//! would go on until it hit). A successful log-in clears the account's
//! counts.
//!
//! A client that has signed in to the account before shows it with its
//! device token (OWASP's device cookie: a random nonce and its keyed hash
//! over the account, handed out at each successful log-in): it is counted
//! only under that token, at the per-pair limit, so that guesses from
//! elsewhere never lock the owner out on their own devices. An unknown
//! client still counts under the three keys above.

use std::net::IpAddr;
use std::time::Duration;

use anb_domain::Timestamp;
use anb_domain::ports::Count;

/// How many failures lock, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures of one account from one address within the window.
    pub max_failures: u32,
    /// The window failures are counted over, and the longest a lock lasts.
    pub lockout: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { max_failures: 5, lockout: Duration::from_secs(300) }
    }
}

/// A client address may fail this many times the per-pair limit.
const ADDRESS_FACTOR: u32 = 4;
/// An account may fail this many times the per-pair limit from all addresses.
const ACCOUNT_FACTOR: u32 = 10;

/// The keys one log-in attempt counts under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub pair: Option<String>,
    pub address: Option<String>,
    /// The account from every address; none for a known device.
    pub account: Option<String>,
}

impl Keys {
    /// The keys of a client known by its device token's `nonce`: only its
    /// own, at the per-pair limit.
    pub fn of_device(account: &str, nonce: &str) -> Self {
        Self { pair: Some(format!("device:{nonce}|{account}")), address: None, account: None }
    }

    /// `account` is the normalised e-mail (or the text as typed when it is
    /// not an address); `address` the client's, when known.
    pub fn new(account: &str, address: Option<IpAddr>) -> Self {
        Self {
            pair: address.map(|a| format!("pair:{a}|{account}")),
            address: address.map(|a| format!("address:{a}")),
            account: Some(format!("account:{account}")),
        }
    }

    pub fn all(&self) -> Vec<String> {
        self.pair.iter().chain(&self.address).chain(&self.account).cloned().collect()
    }

    /// What a successful log-in clears: the account's own counts.
    pub fn owned(&self) -> Vec<String> {
        self.pair.iter().chain(&self.account).cloned().collect()
    }

    fn limit(&self, key: &str, limits: LoginLimits) -> u32 {
        let factor = if Some(key) == self.pair.as_deref() {
            1
        } else if Some(key) == self.address.as_deref() {
            ADDRESS_FACTOR
        } else {
            ACCOUNT_FACTOR
        };
        limits.max_failures.saturating_mul(factor)
    }

    /// How long log-ins under these keys stay locked, if they are.
    pub fn locked_for(&self, counts: &[Count], limits: LoginLimits, now: Timestamp) -> Option<Duration> {
        let own = self.all();
        counts
            .iter()
            .filter(|count| own.contains(&count.key) && count.count >= self.limit(&count.key, limits))
            .filter_map(|count| {
                let ends = count.since + chrono::Duration::from_std(limits.lockout).ok()?;
                (ends > now).then(|| (ends - now).to_std().ok()).flatten()
            })
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(key: &str, n: u32, seconds_ago: i64, now: Timestamp) -> Count {
        Count { key: key.into(), count: n, since: now - chrono::Duration::seconds(seconds_ago) }
    }

    #[test]
    fn each_key_locks_at_its_own_limit_until_its_window_ends() {
        let now = chrono::Utc::now();
        let limits = LoginLimits { max_failures: 5, lockout: Duration::from_secs(300) };
        let keys = Keys::new("ana@example.com", Some("10.0.0.1".parse().unwrap()));
        assert_eq!(keys.all(), ["pair:10.0.0.1|ana@example.com", "address:10.0.0.1", "account:ana@example.com"]);
        let locked = |counts: &[Count]| keys.locked_for(counts, limits, now);

        assert_eq!(locked(&[count(&keys.all()[0], 4, 10, now)]), None);
        let wait = locked(&[count(&keys.all()[0], 5, 10, now)]).unwrap();
        assert!((289..=290).contains(&wait.as_secs()), "{wait:?}");
        assert_eq!(locked(&[count(&keys.all()[0], 9, 300, now)]), None, "the window has ended");
        assert_eq!(locked(&[count(&keys.all()[1], 19, 10, now)]), None);
        assert!(locked(&[count(&keys.all()[1], 20, 10, now)]).is_some(), "an address: four times the limit");
        assert_eq!(locked(&[count(&keys.all()[2], 49, 10, now)]), None);
        assert!(locked(&[count(&keys.all()[2], 50, 10, now)]).is_some(), "an account from everywhere: ten times");
    }

    #[test]
    fn a_known_device_counts_only_under_its_own_key() {
        let now = chrono::Utc::now();
        let limits = LoginLimits { max_failures: 5, lockout: Duration::from_secs(300) };
        let keys = Keys::of_device("ana@example.com", "n0nce");
        assert_eq!(keys.all(), ["device:n0nce|ana@example.com"]);
        assert_eq!(keys.owned(), keys.all());
        let stranger = Keys::new("ana@example.com", Some("10.0.0.1".parse().unwrap()));
        // The account is locked for strangers (50 failures from everywhere)...
        let counts = [count(&stranger.all()[2], 50, 10, now)];
        assert!(stranger.locked_for(&counts, limits, now).is_some());
        // ...not for the owner's device, which only its own failures lock.
        assert_eq!(keys.locked_for(&counts, limits, now), None);
        assert!(keys.locked_for(&[count(&keys.all()[0], 5, 10, now)], limits, now).is_some());
    }

    #[test]
    fn without_a_known_address_only_the_account_counts() {
        let keys = Keys::new("ana@example.com", None);
        assert_eq!(keys.all(), ["account:ana@example.com"]);
        assert_eq!(keys.owned(), ["account:ana@example.com"]);
    }
}
