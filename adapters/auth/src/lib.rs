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

/// HS256 JWTs naming the user in `sub`.
#[derive(Clone)]
pub struct JwtTokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime: Duration,
}

impl std::fmt::Debug for JwtTokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokenIssuer").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

impl JwtTokenIssuer {
    /// An issuer signing with `secret`, tokens valid for `lifetime`.
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), lifetime }
    }
}

impl TokenIssuer for JwtTokenIssuer {
    fn issue(&self, user: UserId) -> Result<AccessToken, BackendError> {
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims { sub: user.0.to_string(), iat: now, exp: now.saturating_add(lifetime) };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| BackendError::internal(format!("jwt: {e}")))?;
        Ok(AccessToken { token, expires_in: self.lifetime.as_secs() })
    }

    fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        data.claims.sub.parse().map(UserId).map_err(|_| TokenError::Invalid)
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

    #[test]
    fn tokens_round_trip_and_reject_forgeries_and_expiry() {
        let issuer = JwtTokenIssuer::new(b"k1", Duration::from_secs(3600));
        let token = issuer.issue(UserId(42)).unwrap();
        assert_eq!(token.expires_in, 3600);
        assert_eq!(issuer.verify(&token.token), Ok(UserId(42)));
        assert_eq!(JwtTokenIssuer::new(b"k2", Duration::from_secs(3600)).verify(&token.token), Err(TokenError::Invalid));
        assert_eq!(issuer.verify("not.a.token"), Err(TokenError::Invalid));
        let claims = Claims { sub: "42".into(), iat: 0, exp: chrono::Utc::now().timestamp() - 10 };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"k1")).unwrap();
        assert_eq!(issuer.verify(&expired), Err(TokenError::Expired));
        let none_alg = format!("{}.{}.", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", token.token.split('.').nth(1).unwrap());
        assert_eq!(issuer.verify(&none_alg), Err(TokenError::Invalid));
    }
}
