//! [`HmacKeyring`]: HMAC-SHA256 keys derived from the deployment's secret
//! (the JWT key), one per purpose, so that no two uses share a key: the
//! hashes of single-use tokens, and the pseudonyms of client networks and
//! addresses (the vote audit and sign-up limits store these, never an
//! address).

use std::net::IpAddr;

use anb_domain::ports::Keyring;
use anb_domain::trust::network_of;
use anb_domain::{NetworkTag, NewToken, TokenHash};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of randomness in a token (256 bits; 64 hex characters).
const TOKEN_BYTES: usize = 32;

/// The keys of one deployment.
#[derive(Clone)]
pub struct HmacKeyring {
    tokens: Vec<u8>,
    networks: Vec<u8>,
}

impl std::fmt::Debug for HmacKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKeyring(<redacted>)")
    }
}

fn derive(secret: &[u8], purpose: &[u8]) -> Vec<u8> {
    mac(secret, &[purpose])
}

pub(crate) fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

impl HmacKeyring {
    /// The keys derived from `secret`.
    pub fn derive(secret: &[u8]) -> Self {
        Self { tokens: derive(secret, b"anb verification tokens v1"), networks: derive(secret, b"anb client networks v1") }
    }

    fn tag(&self, kind: &[u8], text: &str) -> NetworkTag {
        // 128 bits are plenty to tell networks apart.
        NetworkTag(hex::encode(&mac(&self.networks, &[kind, b"\n", text.as_bytes()])[..16]))
    }
}

impl Keyring for HmacKeyring {
    fn new_token(&self) -> NewToken {
        let mut bytes = [0u8; TOKEN_BYTES];
        OsRng.fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        NewToken { hash: self.token_hash(&token), token }
    }

    fn token_hash(&self, token: &str) -> TokenHash {
        TokenHash(hex::encode(mac(&self.tokens, &[token.as_bytes()])))
    }

    fn network_tag(&self, address: IpAddr) -> NetworkTag {
        self.tag(b"network", &network_of(address))
    }

    fn address_tag(&self, address: IpAddr) -> NetworkTag {
        self.tag(b"address", &address.to_canonical().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_keyed_hash_is_kept() {
        let keyring = HmacKeyring::derive(b"a secret of at least thirty-two bytes");
        let (a, b) = (keyring.new_token(), keyring.new_token());
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 64);
        assert_eq!(keyring.token_hash(&a.token), a.hash);
        assert_ne!(a.hash.0, a.token);
        let other = HmacKeyring::derive(b"another secret of thirty-two bytes!");
        assert_ne!(other.token_hash(&a.token), a.hash, "a hash is keyed by the deployment's secret");
    }

    #[test]
    fn one_network_has_one_pseudonym_that_names_no_address() {
        let keyring = HmacKeyring::derive(b"a secret of at least thirty-two bytes");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let tag = keyring.network_tag(ip("203.0.113.9"));
        assert_eq!(tag, keyring.network_tag(ip("203.0.113.200")));
        assert_eq!(tag, keyring.network_tag(ip("::ffff:203.0.113.1")));
        assert_ne!(tag, keyring.network_tag(ip("203.0.114.9")));
        assert!(!tag.0.contains("203"), "{tag:?}");
        assert_ne!(keyring.address_tag(ip("203.0.113.9")), keyring.address_tag(ip("203.0.113.10")));
        assert_ne!(keyring.address_tag(ip("203.0.113.9")), tag, "address and network pseudonyms differ");
    }
}
