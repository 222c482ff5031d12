//! Email delivery over SMTP (lettre): plain-text messages, STARTTLS unless `starttls = false`.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::NotifyError;

pub(crate) struct EmailSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl EmailSink {
    pub(crate) fn new(
        smtp_host: &str,
        smtp_port: u16,
        from: &str,
        to: &[String],
        starttls: bool,
        timeout: std::time::Duration,
    ) -> Result<EmailSink, NotifyError> {
        let builder = if starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(smtp_host)
                .map_err(|e| NotifyError::Setup(e.to_string()))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp_host)
        };
        let transport = builder.port(smtp_port).timeout(Some(timeout)).build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| NotifyError::Setup(e.to_string()))?;
        let to = to
            .iter()
            .map(|t| t.parse::<Mailbox>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NotifyError::Setup(e.to_string()))?;
        Ok(EmailSink {
            transport,
            from,
            to,
        })
    }

    pub(crate) async fn send(&self, subject: &str, body: &str) -> Result<(), NotifyError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let msg = b
            .body(body.to_string())
            .map_err(|e| NotifyError::Email(e.to_string()))?;
        self.transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| NotifyError::Email(e.to_string()))
    }
}
