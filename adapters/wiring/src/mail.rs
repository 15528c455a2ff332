//! The mail family: which [`Mailer`] the configuration asks for, checked at
//! start, and the relay that sends the outbox through it (web servers only).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anb_application::{MailRelay, MailSettings};
use anb_domain::ports::{Clock, Keyring, Mailer, Verifications};
use anb_mail::{FileMailer, Sender, SmtpMailer};

use crate::StartupError;
use crate::aws::Cloud;
use crate::config::{MailKind, Secret};

/// The sender when none is configured (only the `file` mailer allows it).
const DEFAULT_FROM: &str = "ANB Rising Stars <no-reply@localhost>";

/// How a web server sends mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    pub kind: MailKind,
    /// `ANB_MAIL_FROM`.
    pub from: Option<String>,
    /// `ANB_SMTP_URL`.
    pub smtp_url: Option<Secret>,
    /// Where the `file` mailer writes.
    pub dir: PathBuf,
    /// Base of the links in messages (`ANB_PUBLIC_BASE_URL`, or the bound
    /// address).
    pub public_base_url: String,
    /// How long a verification link works.
    pub token_ttl: Duration,
}

impl MailConfig {
    /// Checks the settings without connecting.
    ///
    /// # Errors
    /// [`StartupError::Config`] naming the setting to fix.
    pub fn check(&self) -> Result<(), StartupError> {
        self.sender()?;
        if self.kind == MailKind::Ses && !cfg!(feature = "aws") {
            return Err(crate::checked::not_built("ANB_MAIL=ses", "aws"));
        }
        if self.kind == MailKind::Smtp {
            let url = crate::checked::required(
                self.smtp_url.as_ref().map(Secret::expose),
                "ANB_SMTP_URL (--smtp-url) must name the server with ANB_MAIL=smtp",
            )?;
            SmtpMailer::new(url, self.sender()?).map_err(|e| StartupError::Config(format!("ANB_SMTP_URL: {e}")))?;
        }
        Ok(())
    }

    fn sender(&self) -> Result<Sender, StartupError> {
        match (&self.from, self.kind) {
            (Some(from), _) => Sender::parse(from).map_err(|e| StartupError::Config(format!("ANB_MAIL_FROM: {e}"))),
            (None, MailKind::File) => Sender::parse(DEFAULT_FROM).map_err(StartupError::Config),
            (None, MailKind::Smtp | MailKind::Ses) => Err(StartupError::Config(
                "ANB_MAIL_FROM (--mail-from) must name the sender with ANB_MAIL=smtp or ses (`ANB Rising Stars <no-reply@your.domain>`)"
                    .into(),
            )),
        }
    }

    /// The mailer these settings name.
    ///
    /// # Errors
    /// [`StartupError::Config`] for a bad setting, [`StartupError::DataDir`]
    /// when the `file` mailer's directory cannot be made.
    #[cfg_attr(not(feature = "aws"), allow(unused_variables, clippy::unused_async))]
    pub(crate) async fn mailer(&self, cloud: &Cloud) -> Result<Arc<dyn Mailer>, StartupError> {
        let from = self.sender()?;
        match self.kind {
            MailKind::File => {
                let mailer = FileMailer::new(&self.dir, from).map_err(|source| StartupError::DataDir { path: self.dir.clone(), source })?;
                tracing::info!(dir = %mailer.dir().display(), "mail is written to files (ANB_MAIL=file)");
                Ok(Arc::new(mailer))
            }
            MailKind::Smtp => {
                let url = self.smtp_url.as_ref().map(Secret::expose).unwrap_or_default();
                let mailer = SmtpMailer::new(url, from).map_err(|e| StartupError::Config(format!("ANB_SMTP_URL: {e}")))?;
                tracing::info!(server = mailer.server(), "mail is sent by SMTP");
                Ok(Arc::new(mailer))
            }
            #[cfg(feature = "aws")]
            MailKind::Ses => {
                tracing::info!(from = from.address(), "mail is sent by Amazon SES");
                Ok(Arc::new(anb_aws::SesMailer::new(cloud.config().await, self.from.clone().unwrap_or_default())))
            }
            #[cfg(not(feature = "aws"))]
            MailKind::Ses => Err(crate::checked::not_built("ANB_MAIL=ses", "aws")),
        }
    }

    /// The relay that sends the outbox through the mailer.
    ///
    /// # Errors
    /// As [`MailConfig::mailer`].
    pub(crate) async fn relay(
        &self,
        cloud: &Cloud,
        verifications: Arc<dyn Verifications>,
        keyring: Arc<dyn Keyring>,
        clock: Arc<dyn Clock>,
    ) -> Result<MailRelay, StartupError> {
        let settings = MailSettings { token_ttl: self.token_ttl, ..MailSettings::new(self.public_base_url.clone()) };
        Ok(MailRelay::new(verifications, self.mailer(cloud).await?, keyring, clock, settings))
    }
}
