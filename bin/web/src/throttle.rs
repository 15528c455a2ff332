//! Login brute-force protection: failed log-ins are counted per account and
//! per client address; past a limit within the lockout period, log-ins for
//! that account or from that address answer 429 with `Retry-After` until the
//! period ends, even with the right password (else guessing would simply go
//! on until it hit). A successful log-in clears its account's count.
//!
//! The counts live in this process: behind a load balancer each web server
//! keeps its own, so the effective limit is the per-server limit times the
//! number of servers, still far below what guessing needs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before expired ones are swept (bounds memory against
/// attackers who make up e-mail addresses).
const SWEEP_ABOVE: usize = 100_000;
/// A client address may fail this many times the per-account limit (many
/// people can share one address).
const ADDRESS_FACTOR: u32 = 4;

/// Failure counts per account and per address.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    lockout: Duration,
    counts: Mutex<HashMap<Key, Count>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    /// When the first counted failure happened; counts reset a lockout later.
    since: Instant,
}

impl LoginThrottle {
    /// At most `max_failures` failures per account (four times as many per
    /// address) within `lockout`.
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self { max_failures, lockout, counts: Mutex::new(HashMap::new()) }
    }

    /// `Err(wait)` when log-ins for `email` or from `address` are locked.
    ///
    /// # Errors
    /// The time until the lock ends.
    pub fn check(&self, email: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let wait = keys(email, address)
            .filter_map(|key| {
                let count = counts.get(&key)?;
                let ends = count.since + self.lockout;
                (count.failures >= self.limit(&key) && ends > now).then(|| ends - now)
            })
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed log-in.
    pub fn failed(&self, email: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() > SWEEP_ABOVE {
            counts.retain(|_, count| count.since + self.lockout > now);
        }
        for key in keys(email, address) {
            let count = counts.entry(key).or_insert(Count { failures: 0, since: now });
            if count.since + self.lockout <= now {
                *count = Count { failures: 0, since: now };
            }
            count.failures = count.failures.saturating_add(1);
        }
    }

    /// Forgets the account's failures after a successful log-in.
    pub fn succeeded(&self, email: &str) {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&Key::Account(normalise(email)));
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::Account(_) => self.max_failures,
            Key::Address(_) => self.max_failures.saturating_mul(ADDRESS_FACTOR),
        }
    }
}

fn keys(email: &str, address: Option<IpAddr>) -> impl Iterator<Item = Key> {
    std::iter::once(Key::Account(normalise(email))).chain(address.map(Key::Address))
}

/// The account key: e-mails are compared without case, as accounts are.
fn normalise(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));

    #[test]
    fn an_account_locks_after_its_failures_whatever_the_case_and_address() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        for n in 0..3 {
            assert!(throttle.check("ana@example.com", HOME).is_ok(), "failure {n}");
            throttle.failed(if n % 2 == 0 { "ana@example.com" } else { "ANA@example.com" }, Some(format!("10.0.1.{n}").parse().unwrap()));
        }
        let wait = throttle.check("Ana@Example.com", HOME).unwrap_err();
        assert!(wait > Duration::from_secs(58) && wait <= Duration::from_secs(60), "{wait:?}");
        assert!(throttle.check("beto@example.com", HOME).is_ok(), "other accounts are not affected");
    }

    #[test]
    fn an_address_locks_after_four_times_the_failures_across_accounts() {
        let throttle = LoginThrottle::new(2, Duration::from_secs(60));
        for n in 0..8 {
            assert!(throttle.check(&format!("user{n}@example.com"), HOME).is_ok());
            throttle.failed(&format!("user{n}@example.com"), HOME);
        }
        assert!(throttle.check("new@example.com", HOME).is_err());
        assert!(throttle.check("new@example.com", None).is_ok());
    }

    #[test]
    fn locks_end_with_the_lockout_and_success_clears_the_account() {
        let throttle = LoginThrottle::new(1, Duration::from_millis(50));
        throttle.failed("ana@example.com", None);
        assert!(throttle.check("ana@example.com", None).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(throttle.check("ana@example.com", None).is_ok());
        throttle.failed("ana@example.com", None);
        throttle.succeeded("ana@example.com");
        assert!(throttle.check("ana@example.com", None).is_ok());
    }
}
