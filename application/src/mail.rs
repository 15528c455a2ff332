//! The mail relay: sends what the outbox holds ([`Verifications`]), making
//! each message when it is sent (a fresh single-use token, stored only as its
//! hash), and tries again later when the mail system is down, so that a
//! sign-up never fails or loses its message because of it.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anb_domain::ports::{Clock, Keyring, Mailer, Verifications};
use anb_domain::{BackendError, Mail, MailKind, PendingMail, User};
use futures::future::{Either, select};

use crate::shutdown::Shutdown;

/// How the relay works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// Where people open the app (`https://host`): links are
    /// `{base}/#/verificar?token=...`.
    pub public_base_url: String,
    /// How long a verification link works.
    pub token_ttl: Duration,
    /// How often the outbox is looked at.
    pub interval: Duration,
    /// How long a taken message is hidden from other relays.
    pub lease: Duration,
}

impl MailSettings {
    /// The defaults for links under `public_base_url`: 48 h links, the outbox
    /// looked at every second.
    pub fn new(public_base_url: impl Into<String>) -> Self {
        Self {
            public_base_url: public_base_url.into(),
            token_ttl: Duration::from_secs(48 * 3600),
            interval: Duration::from_secs(1),
            lease: Duration::from_secs(120),
        }
    }
}

/// Messages taken at once: their sends (15 s at most each over SMTP) end
/// well within the lease, so no other relay takes them meanwhile.
const BATCH: u32 = 5;
/// Failed attempts after which a message is dropped (with the 10 s to
/// 15 min waits, about a day of trying): a refused address or sender will
/// not change, and the person can ask for a new link.
const MAX_ATTEMPTS: u32 = 100;
/// The longest wait between two attempts at one message.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Sends the outbox's messages.
#[derive(Clone)]
pub struct MailRelay {
    verifications: Arc<dyn Verifications>,
    mailer: Arc<dyn Mailer>,
    keyring: Arc<dyn Keyring>,
    clock: Arc<dyn Clock>,
    settings: MailSettings,
}

impl MailRelay {
    /// A relay over these ports.
    pub fn new(
        verifications: Arc<dyn Verifications>,
        mailer: Arc<dyn Mailer>,
        keyring: Arc<dyn Keyring>,
        clock: Arc<dyn Clock>,
        settings: MailSettings,
    ) -> Self {
        Self { verifications, mailer, keyring, clock, settings }
    }

    /// Sends what is due until `shutdown`.
    pub async fn run(&self, shutdown: Shutdown) {
        loop {
            match self.send_due().await {
                // A full batch: there may be more at once.
                Ok(sent) if sent == BATCH as usize => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the mail outbox could not be read; trying again later"),
            }
            if let Either::Right(_) = select(pin!(self.clock.sleep(self.settings.interval)), shutdown.clone()).await {
                return;
            }
        }
    }

    /// Sends the messages due now; says how many were taken.
    ///
    /// # Errors
    /// When the outbox cannot be read or updated (a message that cannot be
    /// sent is not an error here: it is due again later).
    pub async fn send_due(&self) -> Result<usize, BackendError> {
        let due = self.verifications.take_due(self.clock.now(), self.settings.lease, BATCH).await?;
        for pending in &due {
            self.send(pending).await?;
        }
        Ok(due.len())
    }

    async fn send(&self, pending: &PendingMail) -> Result<(), BackendError> {
        let now = self.clock.now();
        let mail = match pending.kind {
            MailKind::Verification => {
                let token = self.keyring.new_token();
                let expires = now + chrono::Duration::from_std(self.settings.token_ttl).unwrap_or(chrono::Duration::MAX);
                self.verifications.store_token(pending.user.id, &token.hash, expires).await?;
                verification_mail(&pending.user, &self.settings.public_base_url, &token.token, self.settings.token_ttl)
            }
        };
        match self.mailer.send(&mail).await {
            Ok(()) => {
                tracing::info!(user = %pending.user.id, kind = pending.kind.as_str(), "mail sent");
                self.verifications.mail_sent(pending.id).await
            }
            Err(error) if pending.attempts + 1 >= MAX_ATTEMPTS => {
                tracing::error!(user = %pending.user.id, attempts = pending.attempts + 1, %error, "mail not sent; given up");
                self.verifications.mail_sent(pending.id).await
            }
            Err(error) => {
                let wait = backoff(pending.attempts);
                tracing::warn!(user = %pending.user.id, attempts = pending.attempts + 1, retry_in = wait.as_secs(), %error,
                    "mail not sent; trying again later");
                let retry_at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                self.verifications.mail_failed(pending.id, &error.message, retry_at).await
            }
        }
    }
}

/// 10 s after the first failure, doubling, at most [`MAX_BACKOFF`].
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(10).saturating_mul(1u32 << attempts.min(10)).min(MAX_BACKOFF)
}

/// The message that verifies `user`'s address, in Spanish, plain text.
pub fn verification_mail(user: &User, base_url: &str, token: &str, ttl: Duration) -> Mail {
    let link = format!("{}/#/verificar?token={token}", base_url.trim_end_matches('/'));
    let hours = ttl.as_secs().div_ceil(3600);
    // No text the person typed goes into the body: anyone may sign up with
    // someone else's address, and the message comes from our domain.
    let text = format!(
        "Hola,\n\n\
         Gracias por registrarte en ANB Rising Stars Showcase. Para confirmar tu correo \
         electrónico y poder votar, abre este enlace:\n\n{link}\n\n\
         El enlace funciona una sola vez y vence en {hours} horas. Si no creaste esta cuenta, \
         ignora este mensaje.\n\n\
         Asociación Nacional de Baloncesto (ANB)\n"
    );
    Mail { to: user.email.clone(), to_name: String::new(), subject: "Confirma tu correo electrónico".into(), text }
}

#[cfg(test)]
mod tests {
    use anb_domain::ports::{MockClock, MockKeyring, MockMailer, MockVerifications};
    use anb_domain::{NewToken, TokenHash, UserId};
    use chrono::Utc;

    use super::*;

    fn user() -> User {
        anb_domain::fixtures::user(7, false)
    }

    fn relay(verifications: MockVerifications, mailer: MockMailer) -> MailRelay {
        let mut keyring = MockKeyring::new();
        keyring.expect_new_token().returning(|| NewToken { token: "tok3n".into(), hash: TokenHash("hash-of-tok3n".into()) });
        let mut clock = MockClock::new();
        clock.expect_now().returning(Utc::now);
        let settings = MailSettings::new("https://anb.example.com/");
        MailRelay::new(Arc::new(verifications), Arc::new(mailer), Arc::new(keyring), Arc::new(clock), settings)
    }

    #[tokio::test]
    async fn a_due_message_gets_a_fresh_token_whose_hash_alone_is_stored_and_leaves_the_outbox_once_sent() {
        let mut verifications = MockVerifications::new();
        verifications
            .expect_take_due()
            .returning(|_, _, _| Ok(vec![PendingMail { id: 3, kind: MailKind::Verification, user: user(), attempts: 0 }]));
        verifications
            .expect_store_token()
            .withf(|user, hash, expires| {
                let hours = (*expires - Utc::now()).num_minutes() as f64 / 60.0;
                *user == UserId(7) && hash.0 == "hash-of-tok3n" && (47.9..=48.0).contains(&hours)
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        verifications.expect_mail_sent().withf(|id| *id == 3).times(1).returning(|_| Ok(()));
        let mut mailer = MockMailer::new();
        mailer
            .expect_send()
            .withf(|mail| {
                mail.to.as_str() == "ana7@example.com"
                    && mail.text.contains("https://anb.example.com/#/verificar?token=tok3n\n")
                    && mail.text.contains("48 horas")
                    && !mail.text.contains("hash-of")
            })
            .times(1)
            .returning(|_| Ok(()));
        assert_eq!(relay(verifications, mailer).send_due().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_mail_system_that_is_down_leaves_the_message_due_again_later() {
        let mut verifications = MockVerifications::new();
        verifications
            .expect_take_due()
            .returning(|_, _, _| Ok(vec![PendingMail { id: 3, kind: MailKind::Verification, user: user(), attempts: 2 }]));
        verifications.expect_store_token().returning(|_, _, _| Ok(()));
        verifications
            .expect_mail_failed()
            .withf(|id, error, retry_at| {
                let wait = (*retry_at - Utc::now()).num_seconds();
                *id == 3 && error.contains("refused") && (38..=40).contains(&wait)
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        let mut mailer = MockMailer::new();
        mailer.expect_send().returning(|_| Err(BackendError::unavailable("connection refused")));
        assert_eq!(relay(verifications, mailer).send_due().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_message_that_failed_for_a_day_is_given_up() {
        let mut verifications = MockVerifications::new();
        verifications
            .expect_take_due()
            .returning(|_, _, _| Ok(vec![PendingMail { id: 3, kind: MailKind::Verification, user: user(), attempts: MAX_ATTEMPTS - 1 }]));
        verifications.expect_store_token().returning(|_, _, _| Ok(()));
        verifications.expect_mail_sent().withf(|id| *id == 3).times(1).returning(|_| Ok(()));
        verifications.expect_mail_failed().never();
        let mut mailer = MockMailer::new();
        mailer.expect_send().returning(|_| Err(BackendError::internal("550 mailbox unavailable")));
        relay(verifications, mailer).send_due().await.unwrap();
    }

    #[test]
    fn the_message_carries_nothing_the_person_typed() {
        let mail = verification_mail(
            &User { first_name: "Gana $$$ en http://evil.example".into(), ..user() },
            "https://a.example",
            "t",
            Duration::from_secs(3600),
        );
        assert!(!mail.text.contains("evil") && mail.to_name.is_empty(), "{mail:?}");
    }

    #[test]
    fn the_wait_doubles_up_to_a_quarter_of_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(80));
        assert_eq!(backoff(20), MAX_BACKOFF);
    }
}
