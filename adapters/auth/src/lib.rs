//! Password hashing (argon2id), access tokens (JWT, HS256), and the keyring
//! of single-use tokens and network pseudonyms ([`keyring`]).

pub mod keyring;

pub use keyring::HmacKeyring;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anb_domain::ports::{AccessToken, PasswordHasher, TokenError, TokenIssuer};
use anb_domain::{BackendError, Password, PasswordHash, UserId};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Argon2, PasswordHash as PhcHash};
use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Password hashes computed at once, at most: one per core. Each takes
/// 19 MiB for its ~30 ms; unbounded, 600 log-ins arriving together took
/// the web server to 10 GB (bench/web, the voting-week ramp). The others
/// wait their turn, which costs what the cores could not give anyway.
static HASHING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(hashing_slots())));

/// How many password hashes run at once, at most.
pub fn hashing_slots() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// A turn to hash, held by the blocking task until it ends (also when the
/// request that asked for it has gone).
async fn turn() -> Result<OwnedSemaphorePermit, BackendError> {
    HASHING.clone().acquire_owned().await.map_err(|e| BackendError::internal(format!("hashing turn: {e}")))
}

/// argon2id with the crate's defaults (OWASP: m=19 MiB, t=2, p=1), run on the
/// blocking pool so it never stalls the async workers, one per core at most.
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2Hasher;

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, BackendError> {
        let password = password.clone();
        let turn = turn().await?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| PasswordHash(h.to_string()))
                .map_err(|e| BackendError::internal(format!("argon2: {e}")))
        })
        .await
        .map_err(|e| BackendError::internal(format!("hashing task: {e}")))?
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> bool {
        let (password, hash) = (password.clone(), hash.0.clone());
        let Ok(turn) = turn().await else { return false };
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            PhcHash::new(&hash).is_ok_and(|parsed| Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok())
        })
        .await
        .unwrap_or(false)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// The keys of access tokens: the current one signs, the previous one (the
/// key before the last rotation) is still accepted, so that a rotation logs
/// no one out and servers that have not learnt of it yet keep working.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeys {
    pub current: Vec<u8>,
    pub previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("current", &key_id(&self.current))
            .field("previous", &self.previous.as_deref().map(key_id))
            .finish()
    }
}

/// Where the keys are read from again: when a token names a key this
/// server does not know (another server learnt of a rotation first), and
/// when they are older than [`KEYS_MAX_AGE`].
#[async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// The keys as they are now.
    async fn keys(&self) -> Result<SigningKeys, BackendError>;
}

/// How long keys read from a [`KeySource`] are used before they are read
/// again.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(300);
/// Fewest seconds between two reads caused by unknown key ids (each forged
/// token could otherwise cost a read).
const MIN_READ_INTERVAL: Duration = Duration::from_secs(2);

/// The id of a key in a token's `kid`: 16 hex digits of an HMAC over a
/// label, which tell keys apart and say nothing of them.
pub fn key_id(key: &[u8]) -> String {
    hex::encode(&keyring::mac(key, &[b"anb access token key id v1"])[..8])
}

/// The keys in the form the JWT library takes.
struct KeySet {
    current: String,
    encoding: EncodingKey,
    /// By key id: the current key and the previous one.
    decoding: Vec<(String, DecodingKey)>,
    read_at: std::time::Instant,
}

impl KeySet {
    fn new(keys: &SigningKeys) -> Self {
        let current = key_id(&keys.current);
        let mut decoding = vec![(current.clone(), DecodingKey::from_secret(&keys.current))];
        if let Some(previous) = keys.previous.as_deref().filter(|p| *p != keys.current.as_slice()) {
            decoding.push((key_id(previous), DecodingKey::from_secret(previous)));
        }
        Self { current, encoding: EncodingKey::from_secret(&keys.current), decoding, read_at: std::time::Instant::now() }
    }

    /// The keys that may have signed a token naming `kid` (all of them for
    /// a token without one: those signed before tokens carried it).
    fn candidates(&self, kid: Option<&str>) -> Vec<&DecodingKey> {
        self.decoding.iter().filter(|(id, _)| kid.is_none_or(|kid| kid == id)).map(|(_, key)| key).collect()
    }
}

/// HS256 JWTs naming the user in `sub`, with the signing key's id in `kid`.
pub struct JwtTokenIssuer {
    keys: Arc<Keys>,
    lifetime: Duration,
}

/// The keys now, and where they are read again from.
struct Keys {
    set: std::sync::RwLock<Arc<KeySet>>,
    source: Option<Arc<dyn KeySource>>,
    /// When the keys were last read from `source` (one read at a time).
    last_read: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// A read started in the background is under way.
    reading: std::sync::atomic::AtomicBool,
}

/// Longest a request waits for the keys to be read again (on a token of a
/// key it does not know); the read goes on without it.
const READ_WAIT: Duration = Duration::from_secs(3);

impl Keys {
    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reads the keys again from the source, unless they were read less
    /// than `min_interval` ago; a failure keeps the keys there are.
    async fn read_again(&self, min_interval: Duration) {
        let Some(source) = &self.source else { return };
        let mut last = self.last_read.lock().await;
        if last.is_some_and(|at| at.elapsed() < min_interval) {
            return;
        }
        *last = Some(std::time::Instant::now());
        match source.keys().await {
            Ok(keys) => {
                let set = KeySet::new(&keys);
                if set.current != self.current().current {
                    tracing::info!(key_id = %set.current, "access tokens: signing with a new key");
                }
                *self.set.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
            }
            Err(error) => tracing::warn!(%error, "access tokens: could not read the keys again; keeping the ones there are"),
        }
    }
}

impl std::fmt::Debug for JwtTokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokenIssuer").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

impl JwtTokenIssuer {
    /// An issuer signing with `secret`, tokens valid for `lifetime`.
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        Self::with_keys(&SigningKeys { current: secret.to_vec(), previous: None }, lifetime)
    }

    /// An issuer signing with `keys.current` and accepting `keys.previous`
    /// too.
    pub fn with_keys(keys: &SigningKeys, lifetime: Duration) -> Self {
        Self::build(keys, None, lifetime)
    }

    /// An issuer starting from `keys` and reading them again from `source`
    /// (see [`KeySource`]).
    pub fn reading_again_from(keys: &SigningKeys, source: Arc<dyn KeySource>, lifetime: Duration) -> Self {
        Self::build(keys, Some(source), lifetime)
    }

    fn build(keys: &SigningKeys, source: Option<Arc<dyn KeySource>>, lifetime: Duration) -> Self {
        let keys = Keys {
            set: std::sync::RwLock::new(Arc::new(KeySet::new(keys))),
            source,
            last_read: tokio::sync::Mutex::new(None),
            reading: std::sync::atomic::AtomicBool::new(false),
        };
        Self { keys: Arc::new(keys), lifetime }
    }

    /// Reads the keys again in a task of its own (a request that goes away
    /// never cuts a read short), waiting for it up to [`READ_WAIT`] when
    /// the request needs it, else not at all.
    async fn read_again(&self, min_interval: Duration, wait: bool) {
        use std::sync::atomic::Ordering;
        if self.keys.source.is_none() {
            return;
        }
        if !wait && self.keys.reading.swap(true, Ordering::AcqRel) {
            // One read in the background at a time.
            return;
        }
        let keys = self.keys.clone();
        let read = tokio::spawn(async move {
            keys.read_again(min_interval).await;
            if !wait {
                keys.reading.store(false, Ordering::Release);
            }
        });
        if wait {
            let _ = tokio::time::timeout(READ_WAIT, read).await;
        }
    }
}

#[async_trait]
impl TokenIssuer for JwtTokenIssuer {
    async fn issue(&self, user: UserId) -> Result<AccessToken, BackendError> {
        let keys = self.keys.current();
        if keys.read_at.elapsed() > KEYS_MAX_AGE {
            // Signed with the keys there are; the next token with the new.
            self.read_again(KEYS_MAX_AGE, false).await;
        }
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims { sub: user.0.to_string(), iat: now, exp: now.saturating_add(lifetime) };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.current.clone());
        let token = jsonwebtoken::encode(&header, &claims, &keys.encoding).map_err(|e| BackendError::internal(format!("jwt: {e}")))?;
        Ok(AccessToken { token, expires_in: self.lifetime.as_secs() })
    }

    async fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let kid = header.kid.as_deref();
        if kid.is_some() && self.keys.current().candidates(kid).is_empty() {
            // A key this server has not seen: perhaps a rotation.
            self.read_again(MIN_READ_INTERVAL, true).await;
        } else if self.keys.current().read_at.elapsed() > KEYS_MAX_AGE {
            // A key retired elsewhere (rotated twice after a leak) stops
            // being accepted here within about this age too.
            self.read_again(KEYS_MAX_AGE, false).await;
        }
        let keys = self.keys.current();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let mut outcome = Err(TokenError::Invalid);
        for key in keys.candidates(kid) {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    outcome = Ok(data);
                    break;
                }
                // Signed by this key, but too old: that is the answer.
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => outcome = Err(TokenError::Expired),
                Err(_) => {}
            }
        }
        outcome?.claims.sub.parse().map(UserId).map_err(|_| TokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_run_one_per_core_at_most_and_give_their_turn_back() {
        let hash = Argon2Hasher.hash(&Password::new("S3cure!pass").unwrap()).await.unwrap();
        let slots = hashing_slots();
        let burst = join_in_order((0..slots * 4).map(|_| {
            let hash = hash.clone();
            tokio::spawn(async move { Argon2Hasher.verify(&Password::candidate("S3cure!pass"), &hash).await })
        }));
        let probe = tokio::spawn(async {
            let mut lowest = usize::MAX;
            for _ in 0..100 {
                lowest = lowest.min(HASHING.available_permits());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            lowest
        });
        assert!(burst.await.into_iter().all(|ok| ok), "every verification succeeds, in turn");
        assert_eq!(probe.await.unwrap(), 0, "the burst took every turn");
        // (Another test of this process may hash meanwhile: give it a moment.)
        let start = std::time::Instant::now();
        while HASHING.available_permits() != slots && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(HASHING.available_permits(), slots, "and gave them back");
    }

    /// Awaits every task, in order.
    async fn join_in_order(tasks: impl Iterator<Item = tokio::task::JoinHandle<bool>>) -> Vec<bool> {
        let tasks: Vec<_> = tasks.collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify_only_the_right_password() {
        let hash = Argon2Hasher.hash(&Password::new("S3cure!pass").unwrap()).await.unwrap();
        assert!(hash.0.starts_with("$argon2id$"), "{}", hash.0);
        assert!(Argon2Hasher.verify(&Password::candidate("S3cure!pass"), &hash).await);
        assert!(!Argon2Hasher.verify(&Password::candidate("S3cure!pasS"), &hash).await);
        assert!(!Argon2Hasher.verify(&Password::candidate("x"), &PasswordHash("garbage".into())).await);
    }

    #[tokio::test]
    async fn tokens_round_trip_and_reject_forgeries_and_expiry() {
        let issuer = JwtTokenIssuer::new(b"k1", Duration::from_secs(3600));
        let token = issuer.issue(UserId(42)).await.unwrap();
        assert_eq!(token.expires_in, 3600);
        assert_eq!(issuer.verify(&token.token).await, Ok(UserId(42)));
        assert_eq!(JwtTokenIssuer::new(b"k2", Duration::from_secs(3600)).verify(&token.token).await, Err(TokenError::Invalid));
        assert_eq!(issuer.verify("not.a.token").await, Err(TokenError::Invalid));
        let claims = Claims { sub: "42".into(), iat: 0, exp: chrono::Utc::now().timestamp() - 10 };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"k1")).unwrap();
        assert_eq!(issuer.verify(&expired).await, Err(TokenError::Expired));
        let none_alg = format!("{}.{}.", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", token.token.split('.').nth(1).unwrap());
        assert_eq!(issuer.verify(&none_alg).await, Err(TokenError::Invalid));
    }

    fn keys(current: &[u8], previous: Option<&[u8]>) -> SigningKeys {
        SigningKeys { current: current.to_vec(), previous: previous.map(<[u8]>::to_vec) }
    }

    fn kid_of(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    #[tokio::test]
    async fn the_previous_key_is_accepted_and_the_current_one_signs() {
        let before = JwtTokenIssuer::new(b"k1", Duration::from_secs(3600));
        let after = JwtTokenIssuer::with_keys(&keys(b"k2", Some(b"k1")), Duration::from_secs(3600));
        let old = before.issue(UserId(1)).await.unwrap().token;
        let new = after.issue(UserId(2)).await.unwrap().token;
        assert_eq!((kid_of(&old), kid_of(&new)), (key_id(b"k1"), key_id(b"k2")));
        assert_eq!(after.verify(&old).await, Ok(UserId(1)), "a token of the previous key");
        assert_eq!(after.verify(&new).await, Ok(UserId(2)));
        let retired = JwtTokenIssuer::with_keys(&keys(b"k3", Some(b"k2")), Duration::from_secs(3600));
        assert_eq!(retired.verify(&old).await, Err(TokenError::Invalid), "two rotations ago");
        // Tokens of before `kid` are checked against every key.
        let claims = Claims { sub: "3".into(), iat: 0, exp: chrono::Utc::now().timestamp() + 60 };
        let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"k1")).unwrap();
        assert_eq!(after.verify(&no_kid).await, Ok(UserId(3)));
        // A token claiming one key's id but signed with another is forged.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key_id(b"k2"));
        let mislabelled = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"k1")).unwrap();
        assert_eq!(after.verify(&mislabelled).await, Err(TokenError::Invalid));
        assert!(!format!("{:?}", keys(b"k2-secret", None)).contains("k2-secret"), "no key in a debug line");
    }

    /// Keys that a test rotates, counting the reads.
    struct Rotating {
        keys: std::sync::Mutex<SigningKeys>,
        reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl KeySource for Rotating {
        async fn keys(&self) -> Result<SigningKeys, BackendError> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.keys.lock().unwrap().clone())
        }
    }

    #[tokio::test]
    async fn a_token_of_a_key_not_seen_yet_makes_the_server_read_its_keys_again() {
        let source = Arc::new(Rotating { keys: std::sync::Mutex::new(keys(b"k1", None)), reads: Default::default() });
        let lagging = JwtTokenIssuer::reading_again_from(&keys(b"k1", None), source.clone(), Duration::from_secs(3600));
        // The rotation: another server read the new keys first.
        *source.keys.lock().unwrap() = keys(b"k2", Some(b"k1"));
        let ahead = JwtTokenIssuer::with_keys(&keys(b"k2", Some(b"k1")), Duration::from_secs(3600));
        let token = ahead.issue(UserId(5)).await.unwrap().token;
        assert_eq!(lagging.verify(&token).await, Ok(UserId(5)), "read again, then accepted");
        assert_eq!(kid_of(&lagging.issue(UserId(6)).await.unwrap().token), key_id(b"k2"), "and signing with the new key");
        // Forged key ids cost at most one read per interval.
        let mut header = Header::new(Algorithm::HS256);
        for n in 0..20 {
            header.kid = Some(format!("{n:016x}"));
            let claims = Claims { sub: "1".into(), iat: 0, exp: chrono::Utc::now().timestamp() + 60 };
            let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"guess")).unwrap();
            assert_eq!(lagging.verify(&forged).await, Err(TokenError::Invalid));
        }
        assert_eq!(source.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
