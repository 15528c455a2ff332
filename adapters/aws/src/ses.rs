//! [`SesMailer`]: e-mail through Amazon SES (API v2, `SendEmail` with simple
//! content), region and credentials from the standard chain. The sender must
//! be an identity SES verified; the CloudFormation template grants sending
//! as that sender only.

use anb_domain::ports::Mailer;
use anb_domain::{BackendError, Mail};
use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::sdk_error;

/// Sends messages with Amazon SES.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
    /// `Name <address>`, as SES takes it.
    from: String,
}

impl SesMailer {
    /// A mailer sending as `from` (`ANB Rising Stars <no-reply@example.com>`).
    pub fn new(config: &aws_config::SdkConfig, from: impl Into<String>) -> Self {
        Self { client: Client::new(config), from: from.into() }
    }
}

fn utf8(text: &str) -> Result<Content, BackendError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| BackendError::internal(format!("SES content: {e}")))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<(), BackendError> {
        let message = Message::builder().subject(utf8(&mail.subject)?).body(Body::builder().text(utf8(&mail.text)?).build()).build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(mail.to.address()).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| sdk_error("SES SendEmail", &e))?;
        Ok(())
    }
}
