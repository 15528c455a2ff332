//! What keeps the ranking honest: client networks (for sign-up limits and
//! the vote audit, stored only as keyed pseudonyms), verification of e-mail
//! addresses (single-use tokens stored only as hashes, messages sent through
//! an outbox), and what the audit finds.

use std::fmt;
use std::net::IpAddr;

use crate::{Email, Timestamp, User, UserId, VideoId};

/// The network a client address belongs to, as sign-up limits and the vote
/// audit count it: its /24 for IPv4, its /64 for IPv6 (what one home, office
/// or phone carrier's customer usually holds). An IPv4 address written as
/// IPv6 (`::ffff:a.b.c.d`) counts as IPv4.
pub fn network_of(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

/// A keyed pseudonym (HMAC) of a client network: equal for one network, and
/// no raw address can be read back from it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NetworkTag(pub String);

impl fmt::Debug for NetworkTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkTag({})", self.0)
    }
}

/// The stored form of a single-use token (a keyed hash): the token itself
/// only ever travels in the message to its owner.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash(pub String);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// A new single-use token: the text for the link, and its stored hash.
#[derive(Clone)]
pub struct NewToken {
    /// What the link carries; never stored.
    pub token: String,
    pub hash: TokenHash,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewToken(<redacted>)")
    }
}

/// One e-mail message, plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Email,
    /// The recipient's name, for the `To:` header.
    pub to_name: String,
    pub subject: String,
    pub text: String,
}

/// What kind of message an outbox entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// A link that verifies the address (after sign-up, or asked again).
    Verification,
}

impl MailKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verification => "verification",
        }
    }

    /// The kind a stored name names.
    pub fn parse(name: &str) -> Option<Self> {
        (name == "verification").then_some(Self::Verification)
    }
}

/// An outbox entry taken for sending: the message is made when it is sent
/// (so that no token sits in the outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMail {
    pub id: i64,
    pub kind: MailKind,
    pub user: User,
    /// Earlier attempts that failed.
    pub attempts: u32,
}

/// A suspicious pattern the vote audit found: `accounts` created from one
/// network (`network`) all voted for one player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFinding {
    pub player: UserId,
    pub player_name: String,
    /// Which network the accounts share: where they signed up, or where
    /// they voted from.
    pub basis: AuditBasis,
    pub network: NetworkTag,
    /// The voting accounts, ascending.
    pub accounts: Vec<UserId>,
    /// Their votes for the player's videos.
    pub votes: u64,
    pub first_vote: Timestamp,
    pub last_vote: Timestamp,
}

/// What the accounts of an [`AuditFinding`] share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditBasis {
    /// They were created from one network.
    SignUp,
    /// Their votes came from one network.
    Vote,
}

impl AuditBasis {
    /// Its name in the audit's output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignUp => "signup",
            Self::Vote => "vote",
        }
    }
}

/// What voiding accounts' votes did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VoidReport {
    /// Votes removed.
    pub votes: u64,
    /// Videos whose totals went down.
    pub videos: Vec<VideoId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_a_slash_24_or_a_slash_64() {
        let net = |s: &str| network_of(s.parse().unwrap());
        assert_eq!(net("203.0.113.9"), "203.0.113.0/24");
        assert_eq!(net("203.0.113.200"), net("203.0.113.1"));
        assert_ne!(net("203.0.114.1"), net("203.0.113.1"));
        assert_eq!(net("::ffff:203.0.113.9"), "203.0.113.0/24", "an IPv4 address written as IPv6 is IPv4");
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(net("2001:db8:1:2::ffff"), net("2001:db8:1:2:aaaa::1"));
        assert_ne!(net("2001:db8:1:3::1"), net("2001:db8:1:2::1"));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let token = NewToken { token: "s3cr3t".into(), hash: TokenHash("h4sh".into()) };
        let shown = format!("{token:?} {:?}", token.hash);
        assert!(!shown.contains("s3cr3t") && !shown.contains("h4sh"), "{shown}");
    }

    #[test]
    fn mail_kinds_round_trip() {
        assert_eq!(MailKind::parse(MailKind::Verification.as_str()), Some(MailKind::Verification));
        assert_eq!(MailKind::parse("other"), None);
    }
}
