//! `SmtpMailer` against a real SMTP server (aiosmtpd, started by the test):
//! the message as delivered, and a server that is down, then back.

use std::time::Duration;

use anb_domain::ports::Mailer;
use anb_domain::{BackendErrorKind, Email, Mail};
use anb_mail::{Sender, SmtpMailer};
use anb_testkit::SmtpServer;

fn mail() -> Mail {
    Mail {
        to: Email::parse("ana@example.com").unwrap(),
        to_name: "Ana Pérez".into(),
        subject: "Confirma tu correo electrónico".into(),
        text: "Hola Ana,\n\nabre https://anb.example/#/verificar?token=0123abcd\n".into(),
    }
}

#[tokio::test]
async fn a_message_reaches_the_server_whole_and_a_server_that_is_down_is_an_outage_until_it_is_back() {
    let server = SmtpServer::stopped();
    let mailer = SmtpMailer::new(&server.url(), Sender::parse("ANB Rising Stars <no-reply@anb.example>").unwrap()).unwrap();
    assert_eq!(mailer.server(), server.url().trim_start_matches("smtp://"));

    let down = mailer.send(&mail()).await.unwrap_err();
    assert_eq!(down.kind, BackendErrorKind::Unavailable, "nothing listens: tried again later ({down})");

    server.start();
    mailer.send(&mail()).await.unwrap();
    let messages = server.wait_for(1, Duration::from_secs(10));
    let message = &messages[0];
    assert!(message.contains("From: \"ANB Rising Stars\" <no-reply@anb.example>"), "{message}");
    assert!(message.contains("ana@example.com>"), "{message}");
    assert!(message.contains("Subject: =?utf-8?") || message.contains("Subject: Confirma"), "{message}");
    let body = message.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    assert!(body.contains("/#/verificar?token=0123abcd"), "{message}");

    server.stop();
    assert_eq!(mailer.send(&mail()).await.unwrap_err().kind, BackendErrorKind::Unavailable, "down again");
}
