//! Outgoing e-mail: verification links, password resets and security notices, sent
//! through the configured SMTP relay.

pub mod letters;

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpSecurity};
use crate::domain::EmailAddress;

pub use letters::Letter;

/// How long one delivery to the relay may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the SMTP settings are unusable: {0}")]
    Config(String),
    #[error("the relay did not take the message: {0}")]
    Send(String),
}

/// A connection (pool) to the relay and the sender address.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> Result<Self, MailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| MailError::Config(format!("smtp_from: {e}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(SEND_TIMEOUT));
        builder = match config.security {
            SmtpSecurity::StartTls => builder.tls(Tls::Required(tls_parameters(config)?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls_parameters(config)?)),
            SmtpSecurity::None => builder.tls(Tls::None),
        };
        if let Some((user, password)) = &config.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Hands `letter` to the relay for `to`. Succeeds once the relay has accepted it.
    pub async fn send(&self, to: &EmailAddress, letter: Letter) -> Result<(), MailError> {
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|_| MailError::Send("the recipient is not a mailbox".into()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(letter.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(letter.body)
            .map_err(|e| MailError::Send(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Send(redact_addresses(&e.to_string())))
    }
}

/// Relays quote the recipient in their refusals ("550 <bob@example.org>: unknown"); the
/// error goes to the log and to system-status, where addresses have no business.
fn redact_addresses(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains('@') {
                "<address>"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Certificate checks against the public web roots, plus `smtp_ca_file` when set.
fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| MailError::Config(format!("smtp_ca_file {}: {e}", path.display())))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| MailError::Config(format!("smtp_ca_file {}: {e}", path.display())))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build_rustls()
        .map_err(|e| MailError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_refusals_lose_their_addresses() {
        assert_eq!(
            redact_addresses("permanent error (550): 5.1.1 <bob@example.org>: Recipient rejected"),
            "permanent error (550): 5.1.1 <address> Recipient rejected"
        );
    }
}
