//! `anb-mail`: the [`Mailer`] adapters by technology. [`SmtpMailer`] hands
//! messages to an SMTP server (lettre; STARTTLS or implicit TLS as the URL
//! says); [`FileMailer`] writes each message as an `.eml` file into a
//! directory, the default on one machine (Django's file e-mail backend is
//! the model): open it with any mail program, or read the link in it. Both
//! write the same message (lettre's builder): UTF-8 plain text, the sender
//! `ANB_MAIL_FROM`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anb_domain::ports::Mailer;
use anb_domain::{BackendError, Mail};
use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Tokio1Executor};

/// The sender, as `ANB_MAIL_FROM` names it (`ANB <no-reply@example.com>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender(Mailbox);

impl Sender {
    /// Parses `Name <address>` or a bare address.
    ///
    /// # Errors
    /// A message saying why it is not a mailbox.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.trim().parse::<Mailbox>().map(Self).map_err(|e| format!("{text:?} is not an e-mail address ({e})"))
    }

    /// The bare address (`no-reply@example.com`).
    pub fn address(&self) -> String {
        self.0.email.to_string()
    }
}

/// `mail` as an RFC 5322 message from `from`.
fn message(mail: &Mail, from: &Sender) -> Result<Message, BackendError> {
    let address = mail.to.address();
    let named = (!mail.to_name.trim().is_empty()).then(|| format!("{} <{address}>", quote(&mail.to_name)));
    let to: Mailbox = named
        .and_then(|named| named.parse().ok())
        .map_or_else(|| address.parse(), Ok)
        .map_err(|e| BackendError::internal(format!("recipient address: {e}")))?;
    Message::builder()
        .from(from.0.clone())
        .to(to)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(mail.text.clone())
        .map_err(|e| BackendError::internal(format!("message: {e}")))
}

/// A display name quoted for a header (lettre encodes non-ASCII).
fn quote(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
    format!("\"{clean}\"")
}

/// Writes each message as `{time}-{uuid}.eml` in a directory.
#[derive(Debug, Clone)]
pub struct FileMailer {
    dir: PathBuf,
    from: Sender,
}

impl FileMailer {
    /// A mailer writing into `dir` (made when missing).
    ///
    /// # Errors
    /// When the directory cannot be made.
    pub fn new(dir: impl Into<PathBuf>, from: Sender) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir, from })
    }

    /// Where the messages go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: &Mail) -> Result<(), BackendError> {
        let bytes = message(mail, &self.from)?.formatted();
        let name = format!("{}-{}.eml", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"), uuid::Uuid::new_v4());
        let (temporary, path) = (self.dir.join(format!(".{name}.tmp")), self.dir.join(name));
        // Written whole, then renamed: a reader never sees half a message.
        tokio::fs::write(&temporary, &bytes)
            .await
            .map_err(|e| BackendError::unavailable(format!("writing {}: {e}", temporary.display())))?;
        tokio::fs::rename(&temporary, &path).await.map_err(|e| BackendError::unavailable(format!("naming {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "mail written");
        Ok(())
    }
}

/// How long one conversation with the SMTP server may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Hands messages to an SMTP server.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Sender,
    server: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer").field("server", &self.server).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for the server `url` names (lettre's form):
    /// `smtp://user:password@host:587?tls=required` (STARTTLS, required),
    /// `smtps://user:password@host:465` (TLS from the start), or
    /// `smtp://host:25` (no TLS: a relay on a private network only).
    ///
    /// # Errors
    /// A message naming what is wrong with the URL (never the URL itself:
    /// it may hold a password).
    pub fn new(url: &str, from: Sender) -> Result<Self, String> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| format!("not an SMTP URL: {e}"))?;
        let transport = builder.timeout(Some(SMTP_TIMEOUT)).build();
        let server = server_of(url);
        if url.starts_with("smtp://") && !url.contains("tls=") {
            tracing::warn!(server, "ANB_SMTP_URL asks for no TLS: use ?tls=required (STARTTLS) or smtps:// outside a private network");
        }
        Ok(Self { transport, from, server })
    }

    /// `host:port` of the server, for logs (no credentials).
    pub fn server(&self) -> &str {
        &self.server
    }
}

/// The host and port of an SMTP URL, without its credentials.
fn server_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_owned()
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), BackendError> {
        let message = message(mail, &self.from)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // A permanent refusal (5xx) will not change by trying again soon,
            // but a later attempt costs little: every failure is retried.
            Err(e) if e.is_permanent() => Err(BackendError::internal(format!("{} refused the message: {e}", self.server))),
            Err(e) => Err(BackendError::unavailable(format!("{}: {e}", self.server))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_mailer_writes_one_whole_eml_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = FileMailer::new(dir.path().join("mail"), Sender::parse("ANB <no-reply@example.com>").unwrap()).unwrap();
        let mail = Mail {
            to: anb_domain::Email::parse("ana@example.com").unwrap(),
            to_name: "Ana Pérez".into(),
            subject: "Confirma tu correo electrónico".into(),
            text: "Hola Ana,\n\nhttps://anb.example.com/#/verificar?token=abc\n".into(),
        };
        mailer.send(&mail).await.unwrap();
        mailer.send(&mail).await.unwrap();
        let names: Vec<String> =
            std::fs::read_dir(mailer.dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| n.ends_with(".eml") && !n.starts_with('.')), "no temporary file left: {names:?}");
        let text = std::fs::read_to_string(mailer.dir().join(&names[0])).unwrap();
        assert!(text.contains("From: ANB <no-reply@example.com>") && text.contains("<ana@example.com>"), "{text}");
        assert!(text.contains("Content-Type: text/plain; charset=utf-8"), "{text}");
    }

    #[test]
    fn the_server_of_a_url_leaves_out_the_credentials() {
        assert_eq!(server_of("smtp://user:pa%40ss@mail.example.com:587?tls=required"), "mail.example.com:587");
        assert_eq!(server_of("smtps://mail.example.com"), "mail.example.com");
    }

    #[test]
    fn a_bad_url_or_sender_is_refused_without_echoing_secrets() {
        let from = Sender::parse("ANB <no-reply@example.com>").unwrap();
        let error = SmtpMailer::new("http://user:hunter22@x", from).unwrap_err();
        assert!(!error.contains("hunter22"), "{error}");
        assert!(Sender::parse("not an address").is_err());
        assert_eq!(Sender::parse(" no-reply@example.com ").unwrap().address(), "no-reply@example.com");
    }
}
