//! Sign-up (within the limits per client address and network), e-mail
//! verification, log-in and token checks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{
    AccessToken, Clock, Count, Counters, Keyring, PasswordHasher, RedeemError, TokenError, TokenIssuer, UserRepository,
    UserRepositoryError, Verifications,
};
use anb_domain::user::{Email, NewUser, Password};
use anb_domain::{BackendError, MailKind, PasswordHash, User, UserId};

use crate::login::{Keys, LoginLimits};

/// A field that failed validation, reported as `errors[]` in problem bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field's name as the client sent it.
    pub field: &'static str,
    /// What is wrong with it, for the user.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

/// How many sign-ups a client may make, counted over [`SignUpLimits::window`]
/// in the database (every web server sees the same counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignUpLimits {
    /// Sign-ups from one client address.
    pub per_address: u32,
    /// Sign-ups from one network (/24 for IPv4, /64 for IPv6): a wider bound,
    /// for an attacker who holds many addresses of one network.
    pub per_network: u32,
    /// The window the sign-ups are counted over.
    pub window: Duration,
    /// Requests for a new verification link per account within the window.
    pub resends: u32,
}

impl Default for SignUpLimits {
    fn default() -> Self {
        Self { per_address: 10, per_network: 50, window: Duration::from_secs(3600), resends: 5 }
    }
}

/// What one deployment asks of accounts beyond the log-in limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountRules {
    pub login: LoginLimits,
    pub sign_up: SignUpLimits,
}

/// Most characters in a name, city or country.
pub const MAX_TEXT_CHARS: usize = 100;

/// A sign-up form as received.
#[derive(Debug, Clone, Default)]
pub struct SignUp {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub password1: String,
    pub password2: String,
    pub city: String,
    pub country: String,
}

/// Why a sign-up failed.
#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    /// One or more fields are wrong; every one is listed.
    #[error("{}", .0.first().map_or("", |e| e.message.as_str()))]
    Invalid(Vec<FieldError>),
    #[error("the e-mail address is registered already")]
    EmailTaken,
    /// Too many sign-ups from this client's address or network; sign-ups
    /// from it wait `retry_after`.
    #[error("too many sign-ups from this address or network")]
    Throttled { retry_after: Duration },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a verification link was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no such verification link")]
    Invalid,
    #[error("the verification link was used already")]
    Used,
    #[error("the verification link expired")]
    Expired,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What asking for a new verification link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resent {
    /// A new message is on its way.
    Queued,
    /// The address is verified already: nothing was sent.
    AlreadyVerified,
}

/// Why a new verification link was not sent.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// Asked too often; the next request may come after `retry_after`.
    #[error("too many verification links asked for")]
    Throttled { retry_after: Duration },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a log-in failed.
#[derive(Debug, thiserror::Error)]
pub enum LogInError {
    /// Unknown e-mail or wrong password; deliberately the same answer.
    #[error("unknown e-mail address or wrong password")]
    InvalidCredentials,
    /// Too many failures for this account or from this address (see
    /// [`crate::login`]); log-ins wait `retry_after`.
    #[error("too many failed log-ins")]
    Locked { retry_after: Duration },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A successful log-in: the access token, and the device token the client
/// keeps to show it has signed in to this account before ([`crate::login`]).
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub token: AccessToken,
    pub device: String,
}

/// Why a request could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token, or one that is malformed, forged, expired or names no account.
    #[error("no valid access token")]
    Unauthenticated,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A valid argon2id hash of a random password, verified against when the
/// e-mail is unknown so that both failures take the same time.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$m6IoG2lQd7eS1TwiUe3aI+oeBCSxJk/0HKEaeDnwtuE";

/// Account use cases.
#[derive(Clone)]
pub struct Accounts {
    users: Arc<dyn UserRepository>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenIssuer>,
    clock: Arc<dyn Clock>,
    counters: Arc<dyn Counters>,
    keyring: Arc<dyn Keyring>,
    verifications: Arc<dyn Verifications>,
    rules: AccountRules,
}

/// The ports [`Accounts`] works through.
#[derive(Clone)]
pub struct AccountsPorts {
    pub users: Arc<dyn UserRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn TokenIssuer>,
    pub clock: Arc<dyn Clock>,
    pub counters: Arc<dyn Counters>,
    pub keyring: Arc<dyn Keyring>,
    pub verifications: Arc<dyn Verifications>,
}

impl Accounts {
    /// Wires the use cases to their ports, with these limits.
    pub fn new(ports: AccountsPorts, rules: AccountRules) -> Self {
        let AccountsPorts { users, hasher, tokens, clock, counters, keyring, verifications } = ports;
        Self { users, hasher, tokens, clock, counters, keyring, verifications, rules }
    }

    /// Registers a player from `client` (when its address is known), and
    /// queues the message that verifies the address.
    ///
    /// # Errors
    /// [`SignUpError::Invalid`] listing every bad field (missing or blank,
    /// too long, malformed e-mail, weak or mismatched passwords);
    /// [`SignUpError::EmailTaken`] when the e-mail is registered in any case;
    /// [`SignUpError::Throttled`] past the limits per address or network
    /// (no password is hashed then).
    pub async fn sign_up(&self, form: SignUp, client: Option<IpAddr>) -> Result<UserId, SignUpError> {
        let mut errors = Vec::new();
        // Messages name each field as the form does (in Spanish); `field` keeps the JSON name.
        for (field, label, value) in [
            ("first_name", "Nombre", &form.first_name),
            ("last_name", "Apellido", &form.last_name),
            ("city", "Ciudad", &form.city),
            ("country", "País", &form.country),
        ] {
            if let Err(message) = check_text(value) {
                errors.push(FieldError::new(field, format!("{label}: {message}")));
            }
        }
        let email = Email::parse(&form.email).map_err(|e| errors.push(FieldError::new("email", e.to_string()))).ok();
        let password = Password::new(&form.password1).map_err(|e| errors.push(FieldError::new("password1", e.to_string()))).ok();
        if form.password1 != form.password2 {
            errors.push(FieldError::new("password2", "Las contraseñas no coinciden."));
        }
        let (Some(email), Some(password), true) = (email, password, errors.is_empty()) else {
            return Err(SignUpError::Invalid(errors));
        };
        let keys = client.map(|address| self.sign_up_keys(address)).unwrap_or_default();
        // Refused early and cheaply: no write, no hashing.
        let now = self.clock.now();
        self.sign_up_allowed(&self.counters.counts(&keys).await?, 0, now)?;
        if self.users.by_email(&email).await.map_err(user_backend)?.is_some() {
            return Err(SignUpError::EmailTaken);
        }
        // Counted before the hash, and checked on the counts this sign-up
        // left, so that racing sign-ups cannot all pass.
        if !keys.is_empty() {
            let counts = self.counters.record(&keys, self.rules.sign_up.window, now).await?;
            self.sign_up_allowed(&counts, 1, now)?;
        }
        let password_hash = self.hasher.hash(&password).await?;
        let user = NewUser {
            first_name: form.first_name.trim().to_owned(),
            last_name: form.last_name.trim().to_owned(),
            email,
            password_hash,
            city: form.city.trim().to_owned(),
            country: form.country.trim().to_owned(),
            created_at: now,
            signup_network: client.map(|address| self.keyring.network_tag(address)),
        };
        match self.users.create(user).await {
            Ok(user) => Ok(user.id),
            Err(UserRepositoryError::DuplicateEmail) => Err(SignUpError::EmailTaken),
            Err(UserRepositoryError::Backend(e)) => Err(e.into()),
        }
    }

    /// The counter keys of a sign-up from `address`: pseudonyms, never the
    /// address itself.
    fn sign_up_keys(&self, address: IpAddr) -> Vec<String> {
        vec![
            format!("signup-address:{}", self.keyring.address_tag(address).0),
            format!("signup-network:{}", self.keyring.network_tag(address).0),
        ]
    }

    /// Whether these counts leave room for a sign-up; `own` is how many of
    /// them are this sign-up's (1 once recorded).
    fn sign_up_allowed(&self, counts: &[Count], own: u32, now: anb_domain::Timestamp) -> Result<(), SignUpError> {
        let limits = self.rules.sign_up;
        let window = chrono::Duration::from_std(limits.window).unwrap_or(chrono::Duration::MAX);
        let over = counts.iter().filter(|c| c.since + window > now).filter(|c| {
            let limit = if c.key.starts_with("signup-address:") { limits.per_address } else { limits.per_network };
            c.count.saturating_sub(own) >= limit
        });
        match over.map(|c| window_left(c, limits.window, now)).max() {
            Some(retry_after) => {
                tracing::info!(retry_after = retry_after.as_secs(), "sign-up refused: too many from this client's address or network");
                Err(SignUpError::Throttled { retry_after })
            }
            None => Ok(()),
        }
    }

    /// Who is signed in.
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] when the account is gone.
    pub async fn me(&self, user: UserId) -> Result<User, AuthError> {
        self.users.by_id(user).await.map_err(user_backend)?.ok_or(AuthError::Unauthenticated)
    }

    /// Verifies the address whose link carried `token`.
    ///
    /// # Errors
    /// [`VerifyError`] for an unknown (or forged), used or expired token.
    pub async fn verify_email(&self, token: &str) -> Result<UserId, VerifyError> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Invalid);
        }
        let user = self.verifications.redeem(&self.keyring.token_hash(token), self.clock.now()).await.map_err(|e| match e {
            RedeemError::Unknown => VerifyError::Invalid,
            RedeemError::Used => VerifyError::Used,
            RedeemError::Expired => VerifyError::Expired,
            RedeemError::Backend(e) => VerifyError::Backend(e),
        })?;
        tracing::info!(%user, "e-mail address verified");
        Ok(user)
    }

    /// Sends `user` a new verification link, at most
    /// [`SignUpLimits::resends`] times a window.
    ///
    /// # Errors
    /// [`ResendError::Throttled`] when asked too often.
    pub async fn resend_verification(&self, user: UserId) -> Result<Resent, ResendError> {
        let found = self.users.by_id(user).await.map_err(user_backend)?;
        if found.is_none_or(|u| u.email_verified) {
            return Ok(Resent::AlreadyVerified);
        }
        let now = self.clock.now();
        let window = self.rules.sign_up.window;
        let counts = self.counters.record(&[format!("resend:{user}")], window, now).await?;
        if let Some(count) = counts.iter().find(|c| c.count > self.rules.sign_up.resends) {
            return Err(ResendError::Throttled { retry_after: window_left(count, window, now) });
        }
        self.verifications.queue_mail(user, MailKind::Verification, now).await?;
        Ok(Resent::Queued)
    }

    /// Checks credentials and issues an access token, within the limits on
    /// failed log-ins (per account and client address, per address, per
    /// account: see [`crate::login`]).
    ///
    /// # Errors
    /// [`LogInError::Locked`] while a limit holds (checked before the
    /// password, which is not even looked at);
    /// [`LogInError::InvalidCredentials`] for an unknown e-mail or a wrong
    /// password, after the same hashing work in both cases.
    pub async fn log_in(
        &self,
        typed_email: &str,
        password: &str,
        client: Option<IpAddr>,
        device: Option<&str>,
    ) -> Result<LoggedIn, LogInError> {
        let email = Email::parse(typed_email);
        // Not an address: counted under what was typed (bounded).
        let account = email
            .as_ref()
            .map_or_else(|_| typed_email.trim().to_lowercase().chars().take(Email::MAX_LEN).collect(), |e| e.as_str().to_owned());
        let keys = match device.and_then(|token| self.known_device(&account, token)) {
            Some(nonce) => Keys::of_device(&account, &nonce),
            None => Keys::new(&account, client),
        };
        let counts = self.counters.counts(&keys.all()).await?;
        if let Some(retry_after) = keys.locked_for(&counts, self.rules.login, self.clock.now()) {
            return Err(LogInError::Locked { retry_after });
        }
        match self.check_credentials(email.ok(), password).await? {
            Some(user) => {
                self.counters.clear(&keys.owned()).await?;
                Ok(LoggedIn { token: self.tokens.issue(user).await?, device: self.device_token(&account) })
            }
            None => {
                self.counters.record(&keys.all(), self.rules.login.lockout, self.clock.now()).await?;
                Err(LogInError::InvalidCredentials)
            }
        }
    }

    /// A new device token for `account`: a random nonce and its keyed hash
    /// over the account, `NONCE.MAC`.
    fn device_token(&self, account: &str) -> String {
        let nonce = self.keyring.new_token().token;
        let mac = self.keyring.token_hash(&format!("device|{account}|{nonce}"));
        format!("{nonce}.{}", mac.0)
    }

    /// The nonce of a device token this server issued for `account`.
    fn known_device(&self, account: &str, token: &str) -> Option<String> {
        let (nonce, mac) = token.split_once('.').filter(|_| token.len() <= MAX_TOKEN_LEN * 2)?;
        let expected = self.keyring.token_hash(&format!("device|{account}|{nonce}"));
        (!nonce.is_empty() && constant_time_eq(mac.as_bytes(), expected.0.as_bytes())).then(|| nonce.to_owned())
    }

    /// The account these credentials open, if any.
    async fn check_credentials(&self, email: Option<Email>, password: &str) -> Result<Option<UserId>, BackendError> {
        let password = Password::candidate(password);
        let user = match email {
            Some(email) => self.users.by_email(&email).await.map_err(user_backend)?,
            None => None,
        };
        let Some(user) = user else {
            self.hasher.verify(&password, &PasswordHash(DECOY_HASH.to_owned())).await;
            return Ok(None);
        };
        Ok(self.hasher.verify(&password, &user.password_hash).await.then_some(user.id))
    }

    /// The user a bearer token names, if the token is valid and the account
    /// still exists (a token outlives a database reset, or comes from another
    /// environment signing with the same key).
    ///
    /// # Errors
    /// [`AuthError::Unauthenticated`] for a malformed, forged or expired
    /// token, or one naming no account.
    pub async fn authenticate(&self, token: &str) -> Result<UserId, AuthError> {
        let id = self.tokens.verify(token).await.map_err(|_: TokenError| AuthError::Unauthenticated)?;
        match self.users.by_id(id).await.map_err(user_backend)? {
            Some(_) => Ok(id),
            None => Err(AuthError::Unauthenticated),
        }
    }
}

/// Longest token accepted (ours are 64 hexadecimal characters).
const MAX_TOKEN_LEN: usize = 128;

/// Whether two byte strings are equal, in time that depends only on their
/// lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What is left of a count's window at `now`.
fn window_left(count: &Count, window: Duration, now: anb_domain::Timestamp) -> Duration {
    let ends = count.since + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    (ends - now).to_std().unwrap_or(Duration::ZERO).max(Duration::from_secs(1))
}

fn check_text(value: &str) -> Result<(), &'static str> {
    if value.trim().is_empty() {
        Err("el campo es obligatorio.")
    } else if value.chars().count() > MAX_TEXT_CHARS {
        Err("no puede superar 100 caracteres.")
    } else if value.chars().any(char::is_control) {
        Err("no puede contener caracteres de control.")
    } else {
        Ok(())
    }
}

fn user_backend(error: UserRepositoryError) -> BackendError {
    match error {
        UserRepositoryError::Backend(e) => e,
        UserRepositoryError::DuplicateEmail => BackendError::internal("duplicate e-mail on read"),
    }
}

#[cfg(test)]
mod tests {
    use anb_domain::User;
    use anb_domain::fixtures::{MemoryCounters, PlainKeyring};
    use anb_domain::ports::{MockClock, MockPasswordHasher, MockTokenIssuer, MockUserRepository, MockVerifications};
    use chrono::Utc;

    use super::*;

    fn form() -> SignUp {
        SignUp {
            first_name: "Ana".into(),
            last_name: "Pérez".into(),
            email: "Ana@Example.com".into(),
            password1: "S3cure!pass".into(),
            password2: "S3cure!pass".into(),
            city: "Bogotá".into(),
            country: "Colombia".into(),
        }
    }

    fn stored_user() -> User {
        User {
            id: UserId(7),
            first_name: "Ana".into(),
            last_name: "Pérez".into(),
            email: Email::parse("ana@example.com").unwrap(),
            password_hash: PasswordHash("$argon2id$real".into()),
            city: "Bogotá".into(),
            country: "Colombia".into(),
            created_at: Utc::now(),
            email_verified: false,
        }
    }

    fn clock() -> MockClock {
        let mut clock = MockClock::new();
        clock.expect_now().returning(Utc::now);
        clock
    }

    fn accounts(users: MockUserRepository, hasher: MockPasswordHasher, tokens: MockTokenIssuer) -> Accounts {
        accounts_with(users, hasher, tokens, Arc::new(MemoryCounters::default()))
    }

    fn accounts_with(
        users: MockUserRepository,
        hasher: MockPasswordHasher,
        tokens: MockTokenIssuer,
        counters: Arc<dyn Counters>,
    ) -> Accounts {
        accounts_verifying(users, hasher, tokens, counters, MockVerifications::new())
    }

    fn accounts_verifying(
        users: MockUserRepository,
        hasher: MockPasswordHasher,
        tokens: MockTokenIssuer,
        counters: Arc<dyn Counters>,
        verifications: MockVerifications,
    ) -> Accounts {
        let ports = AccountsPorts {
            users: Arc::new(users),
            hasher: Arc::new(hasher),
            tokens: Arc::new(tokens),
            clock: Arc::new(clock()),
            counters,
            keyring: Arc::new(PlainKeyring::default()),
            verifications: Arc::new(verifications),
        };
        let sign_up = SignUpLimits { per_address: 3, per_network: 5, window: Duration::from_secs(3600), resends: 2 };
        Accounts::new(ports, AccountRules { login: LoginLimits { max_failures: 3, lockout: Duration::from_secs(60) }, sign_up })
    }

    fn signing_up_users() -> MockUserRepository {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(None));
        users.expect_create().returning(|_| Ok(stored_user()));
        users
    }

    fn counting_hasher(hashed: Arc<std::sync::atomic::AtomicU32>) -> MockPasswordHasher {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().returning(move |_| {
            hashed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(PasswordHash("h".into()))
        });
        hasher
    }

    #[tokio::test]
    async fn sign_ups_are_limited_per_address_and_per_network_and_a_refused_one_hashes_nothing() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let hashed = Arc::new(AtomicU32::new(0));
        let counters = Arc::new(MemoryCounters::default());
        let accounts = accounts_with(signing_up_users(), counting_hasher(hashed.clone()), MockTokenIssuer::new(), counters.clone());
        let from = |ip: &str| Some(ip.parse::<IpAddr>().unwrap());
        for _ in 0..3 {
            accounts.sign_up(form(), from("203.0.113.9")).await.unwrap();
        }
        let refused = accounts.sign_up(form(), from("203.0.113.9")).await.unwrap_err();
        assert!(matches!(refused, SignUpError::Throttled { retry_after } if retry_after > Duration::from_secs(3590)), "{refused:?}");
        assert_eq!(hashed.load(Ordering::SeqCst), 3, "a refused sign-up hashes no password");
        // Another address of the same /24: its own three would pass, but the network's bound is five.
        accounts.sign_up(form(), from("203.0.113.10")).await.unwrap();
        accounts.sign_up(form(), from("203.0.113.10")).await.unwrap();
        assert!(matches!(accounts.sign_up(form(), from("203.0.113.11")).await, Err(SignUpError::Throttled { .. })));
        // Elsewhere, and with no known address, sign-ups go on.
        accounts.sign_up(form(), from("198.51.100.1")).await.unwrap();
        accounts.sign_up(form(), None).await.unwrap();
        assert!(counters.keys().iter().all(|k| !k.contains("203.0.113.9") || k.contains("addr:")), "{:?}", counters.keys());
    }

    #[tokio::test]
    async fn sign_ups_counted_in_a_window_that_ended_refuse_nothing() {
        let counters = Arc::new(MemoryCounters::default());
        let keys = ["signup-address:addr:203.0.113.9".to_owned(), "signup-network:net:203.0.113.0/24".to_owned()];
        let two_hours_ago = Utc::now() - chrono::Duration::hours(2);
        for _ in 0..10 {
            counters.record(&keys, Duration::from_secs(3600), two_hours_ago).await.unwrap();
        }
        let accounts = accounts_with(signing_up_users(), counting_hasher(Arc::default()), MockTokenIssuer::new(), counters.clone());
        accounts.sign_up(form(), Some("203.0.113.9".parse().unwrap())).await.unwrap();
        let counts = counters.counts(&keys).await.unwrap();
        assert!(counts.iter().all(|c| c.count == 1), "the counts started again: {counts:?}");
    }

    #[tokio::test]
    async fn the_account_records_the_pseudonym_of_its_network() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(None));
        users
            .expect_create()
            .withf(|u| u.signup_network.as_ref().is_some_and(|n| n.0 == "net:203.0.113.0/24"))
            .times(1)
            .returning(|_| Ok(stored_user()));
        let hasher = counting_hasher(Arc::default());
        let accounts = accounts(users, hasher, MockTokenIssuer::new());
        accounts.sign_up(form(), Some("203.0.113.9".parse().unwrap())).await.unwrap();
    }

    #[tokio::test]
    async fn a_token_is_looked_up_by_its_hash_and_each_refusal_says_why() {
        let mut verifications = MockVerifications::new();
        verifications.expect_redeem().returning(|hash, _| match hash.0.as_str() {
            "hash:good" => Ok(UserId(7)),
            "hash:used" => Err(RedeemError::Used),
            "hash:old" => Err(RedeemError::Expired),
            _ => Err(RedeemError::Unknown),
        });
        let accounts = accounts_verifying(
            MockUserRepository::new(),
            MockPasswordHasher::new(),
            MockTokenIssuer::new(),
            Arc::new(MemoryCounters::default()),
            verifications,
        );
        assert_eq!(accounts.verify_email(" good ").await.unwrap(), UserId(7));
        assert!(matches!(accounts.verify_email("used").await, Err(VerifyError::Used)));
        assert!(matches!(accounts.verify_email("old").await, Err(VerifyError::Expired)));
        assert!(matches!(accounts.verify_email("forged").await, Err(VerifyError::Invalid)));
        assert!(matches!(accounts.verify_email("").await, Err(VerifyError::Invalid)));
        assert!(matches!(accounts.verify_email(&"x".repeat(500)).await, Err(VerifyError::Invalid)));
    }

    #[tokio::test]
    async fn a_new_link_is_queued_a_few_times_a_window_and_never_for_a_verified_address() {
        let mut users = MockUserRepository::new();
        users.expect_by_id().returning(|id| Ok(Some(User { id, email_verified: id == UserId(8), ..stored_user() })));
        let mut verifications = MockVerifications::new();
        verifications
            .expect_queue_mail()
            .withf(|user, kind, _| *user == UserId(7) && *kind == MailKind::Verification)
            .times(2)
            .returning(|_, _, _| Ok(()));
        let accounts = accounts_verifying(
            users,
            MockPasswordHasher::new(),
            MockTokenIssuer::new(),
            Arc::new(MemoryCounters::default()),
            verifications,
        );
        assert_eq!(accounts.resend_verification(UserId(8)).await.unwrap(), Resent::AlreadyVerified);
        assert_eq!(accounts.resend_verification(UserId(7)).await.unwrap(), Resent::Queued);
        assert_eq!(accounts.resend_verification(UserId(7)).await.unwrap(), Resent::Queued);
        assert!(matches!(accounts.resend_verification(UserId(7)).await, Err(ResendError::Throttled { .. })));
    }

    /// Accounts where Ana exists, `S3cure!pass` is her password and a log-in issues `jwt`.
    fn ana_logs_in(counters: Arc<MemoryCounters>) -> Accounts {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(Some(stored_user())));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().returning(|p, _| p.expose() == "S3cure!pass");
        let mut tokens = MockTokenIssuer::new();
        tokens.expect_issue().returning(|_| Ok(AccessToken { token: "jwt".into(), expires_in: 3600 }));
        accounts_with(users, hasher, tokens, counters)
    }

    #[tokio::test]
    async fn failures_lock_the_account_from_that_address_only_and_success_clears_them() {
        let attempts = Arc::new(MemoryCounters::default());
        let accounts = ana_logs_in(attempts.clone());
        let (attacker, owner) = (Some("203.0.113.9".parse().unwrap()), Some("198.51.100.4".parse().unwrap()));

        for _ in 0..3 {
            assert!(matches!(accounts.log_in("ana@example.com", "guess", attacker, None).await, Err(LogInError::InvalidCredentials)));
        }
        let locked = accounts.log_in("ANA@example.com", "S3cure!pass", attacker, None).await;
        assert!(matches!(locked, Err(LogInError::Locked { retry_after }) if retry_after > Duration::from_secs(58)), "{locked:?}");
        assert!(accounts.log_in("ana@example.com", "S3cure!pass", owner, None).await.is_ok(), "the owner's address is not locked");
        assert!(attempts.keys().iter().all(|k| !k.contains("ana@example.com") || k.contains("203.0.113.9")), "{:?}", attempts.keys());
    }

    #[tokio::test]
    async fn guesses_from_many_addresses_lock_the_account_at_ten_times_the_limit() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(Some(stored_user())));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().returning(|_, _| false);
        let accounts = accounts_with(users, hasher, MockTokenIssuer::new(), Arc::new(MemoryCounters::default()));
        for n in 0..30 {
            let from = Some(format!("10.0.{}.{}", n / 2, n % 2).parse().unwrap());
            assert!(
                matches!(accounts.log_in("ana@example.com", "guess", from, None).await, Err(LogInError::InvalidCredentials)),
                "attempt {n}"
            );
        }
        let another = Some("10.9.9.9".parse().unwrap());
        assert!(matches!(accounts.log_in("ana@example.com", "guess", another, None).await, Err(LogInError::Locked { .. })));
    }

    #[tokio::test]
    async fn a_device_that_signed_in_before_is_not_locked_out_by_guesses_from_elsewhere() {
        let accounts = ana_logs_in(Arc::new(MemoryCounters::default()));
        let home = Some("198.51.100.4".parse().unwrap());
        let device = accounts.log_in("ana@example.com", "S3cure!pass", home, None).await.unwrap().device;
        // 50 wrong guesses from 10 addresses lock the account for strangers...
        for n in 0..50 {
            let from = Some(format!("10.0.0.{}", n % 10).parse().unwrap());
            let _ = accounts.log_in("ana@example.com", "guess", from, None).await;
        }
        let stranger = accounts.log_in("ana@example.com", "S3cure!pass", Some("10.9.9.9".parse().unwrap()), None).await;
        assert!(matches!(stranger, Err(LogInError::Locked { .. })), "{stranger:?}");
        // ...and for the owner on a new device, but not on the one they used.
        assert!(matches!(accounts.log_in("ana@example.com", "S3cure!pass", home, None).await, Err(LogInError::Locked { .. })));
        let again = accounts.log_in("ana@example.com", "S3cure!pass", home, Some(&device)).await.unwrap();
        assert_ne!(again.device, device, "a new device token at each log-in");
        // A forged token is an unknown client.
        let other = format!("{}.forged", device.split_once('.').unwrap().0);
        assert!(matches!(accounts.log_in("ana@example.com", "S3cure!pass", home, Some(&other)).await, Err(LogInError::Locked { .. })));
        // The device's own failures lock it at the per-pair limit.
        for _ in 0..5 {
            let _ = accounts.log_in("ana@example.com", "guess", home, Some(&again.device)).await;
        }
        assert!(matches!(
            accounts.log_in("ana@example.com", "S3cure!pass", home, Some(&again.device)).await,
            Err(LogInError::Locked { .. })
        ));
    }

    #[tokio::test]
    async fn sign_up_stores_a_normalised_email_and_a_hash() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(None));
        users
            .expect_create()
            .withf(|u| u.email.as_str() == "ana@example.com" && u.password_hash.0 == "hashed")
            .returning(|_| Ok(stored_user()));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().returning(|_| Ok(PasswordHash("hashed".into())));
        let id = accounts(users, hasher, MockTokenIssuer::new()).sign_up(form(), None).await.unwrap();
        assert_eq!(id, UserId(7));
    }

    #[tokio::test]
    async fn sign_up_lists_every_bad_field() {
        let bad = SignUp { first_name: " ".into(), email: "nope".into(), password1: "short".into(), password2: "other".into(), ..form() };
        let err =
            accounts(MockUserRepository::new(), MockPasswordHasher::new(), MockTokenIssuer::new()).sign_up(bad, None).await.unwrap_err();
        let SignUpError::Invalid(errors) = err else { panic!("{err:?}") };
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["first_name", "email", "password1", "password2"]);
    }

    #[tokio::test]
    async fn sign_up_refuses_mismatched_passwords_alone() {
        let bad = SignUp { password2: "S3cure!pasS".into(), ..form() };
        let err =
            accounts(MockUserRepository::new(), MockPasswordHasher::new(), MockTokenIssuer::new()).sign_up(bad, None).await.unwrap_err();
        assert_eq!(err.to_string(), "Las contraseñas no coinciden.");
    }

    #[tokio::test]
    async fn sign_up_with_a_registered_email_is_refused_before_hashing() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(Some(stored_user())));
        let err = accounts(users, MockPasswordHasher::new(), MockTokenIssuer::new()).sign_up(form(), None).await.unwrap_err();
        assert!(matches!(err, SignUpError::EmailTaken));
    }

    #[tokio::test]
    async fn a_sign_up_that_loses_the_race_is_told_the_email_is_taken() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(None));
        users.expect_create().returning(|_| Err(UserRepositoryError::DuplicateEmail));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().returning(|_| Ok(PasswordHash("h".into())));
        let err = accounts(users, hasher, MockTokenIssuer::new()).sign_up(form(), None).await.unwrap_err();
        assert!(matches!(err, SignUpError::EmailTaken));
    }

    #[tokio::test]
    async fn sign_up_reports_a_database_failure_as_such() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Err(BackendError::unavailable("down").into()));
        let err = accounts(users, MockPasswordHasher::new(), MockTokenIssuer::new()).sign_up(form(), None).await.unwrap_err();
        assert!(matches!(err, SignUpError::Backend(e) if e.kind == anb_domain::BackendErrorKind::Unavailable));
    }

    #[tokio::test]
    async fn log_in_issues_a_token_for_the_right_password() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().withf(|e| e.as_str() == "ana@example.com").returning(|_| Ok(Some(stored_user())));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().withf(|p, h| p.expose() == "S3cure!pass" && h.0 == "$argon2id$real").returning(|_, _| true);
        let mut tokens = MockTokenIssuer::new();
        tokens.expect_issue().withf(|id| *id == UserId(7)).returning(|_| Ok(AccessToken { token: "jwt".into(), expires_in: 3600 }));
        let logged_in = accounts(users, hasher, tokens).log_in("ANA@example.com", "S3cure!pass", None, None).await.unwrap();
        assert_eq!(logged_in.token.token, "jwt");
    }

    #[tokio::test]
    async fn log_in_with_a_wrong_password_is_refused() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(Some(stored_user())));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().returning(|_, _| false);
        let err = accounts(users, hasher, MockTokenIssuer::new()).log_in("ana@example.com", "wrong", None, None).await.unwrap_err();
        assert!(matches!(err, LogInError::InvalidCredentials));
    }

    #[tokio::test]
    async fn log_in_with_an_unknown_email_still_spends_a_hash_check() {
        let mut users = MockUserRepository::new();
        users.expect_by_email().returning(|_| Ok(None));
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_verify().withf(|_, h| h.0 == DECOY_HASH).times(1).returning(|_, _| false);
        let err = accounts(users, hasher, MockTokenIssuer::new()).log_in("who@example.com", "whatever1", None, None).await.unwrap_err();
        assert!(matches!(err, LogInError::InvalidCredentials));
    }

    #[tokio::test]
    async fn a_valid_token_of_an_account_that_no_longer_exists_does_not_authenticate() {
        let mut tokens = MockTokenIssuer::new();
        tokens.expect_verify().returning(|t| if t == "forged" { Err(TokenError::Invalid) } else { Ok(UserId(t.parse().unwrap())) });
        let mut users = MockUserRepository::new();
        users.expect_by_id().returning(|id| Ok((id == UserId(7)).then(stored_user)));
        let accounts = accounts(users, MockPasswordHasher::new(), tokens);
        assert_eq!(accounts.authenticate("7").await.unwrap(), UserId(7));
        assert!(matches!(accounts.authenticate("8").await, Err(AuthError::Unauthenticated)), "the account is gone");
        assert!(matches!(accounts.authenticate("forged").await, Err(AuthError::Unauthenticated)));
    }

    #[tokio::test]
    async fn authentication_reports_a_failing_database_as_such() {
        let mut tokens = MockTokenIssuer::new();
        tokens.expect_verify().returning(|_| Ok(UserId(7)));
        let mut users = MockUserRepository::new();
        users.expect_by_id().returning(|_| Err(UserRepositoryError::Backend(BackendError::unavailable("down"))));
        let result = accounts(users, MockPasswordHasher::new(), tokens).authenticate("7").await;
        assert!(matches!(result, Err(AuthError::Backend(e)) if e.kind == anb_domain::BackendErrorKind::Unavailable));
    }
}
