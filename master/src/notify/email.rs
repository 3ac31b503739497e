//! E-mail deliveries through the SMTP relay of the master's settings, with `lettre`: plain
//! text, one message per delivery to every recipient, its Message-ID made from the run id so
//! that a repeated delivery can be recognised.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::settings::{NotifyArgs, SmtpTls};

/// How long one SMTP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Sends e-mail deliveries, or explains why it cannot.
#[derive(Debug, Clone)]
pub struct Mailer {
    transport: Result<AsyncSmtpTransport<Tokio1Executor>, String>,
    from: String,
}

impl Mailer {
    pub fn new(settings: &NotifyArgs) -> Self {
        Self {
            transport: transport(settings),
            from: settings.smtp_from.clone(),
        }
    }

    /// Sends `text` under `subject` to `recipients`.
    pub async fn send(
        &self,
        recipients: &[String],
        subject: &str,
        text: &str,
        message_id: &str,
    ) -> Result<String, String> {
        let transport = self.transport.as_ref().map_err(Clone::clone)?;
        let from = self
            .from
            .parse()
            .map_err(|e| format!("--smtp-from {:?} is not an address: {e}", self.from))?;
        let mut builder = Message::builder()
            .from(from)
            .subject(subject)
            .message_id(Some(format!("<{message_id}@cronfleet>")))
            .header(ContentType::TEXT_PLAIN);
        for recipient in recipients {
            let to = recipient
                .parse()
                .map_err(|e| format!("recipient {recipient:?}: {e}"))?;
            builder = builder.to(to);
        }
        let message = builder
            .body(text.to_owned())
            .map_err(|e| format!("building the message: {e}"))?;
        let answer = transport
            .send(message)
            .await
            .map_err(|e| format!("SMTP: {e}"))?;
        Ok(format!("SMTP {}", answer.code()))
    }
}

fn transport(settings: &NotifyArgs) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let Some(host) = settings.smtp_host.as_deref() else {
        return Err("no SMTP relay is configured (--smtp-host / CRON_SMTP_HOST)".to_owned());
    };
    let builder = match settings.smtp_tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| format!("SMTP relay {host}: {e}"))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| format!("SMTP relay {host}: {e}"))?,
    };
    let mut builder = builder.port(settings.smtp_port()).timeout(Some(TIMEOUT));
    if let Some(user) = &settings.smtp_user {
        let password = std::env::var("CRON_SMTP_PASSWORD").unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}
