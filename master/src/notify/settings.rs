//! The notifier's settings: where links in notifications point, the SMTP relay e-mail goes
//! through, and which webhook addresses the master refuses to call.

use clap::{Args, ValueEnum};

/// How the master talks TLS to its SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmtpTls {
    /// Plain SMTP (a relay on loopback or a trusted network only).
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// The master's address as users reach it, for the run links in notifications; by
    /// default `http://` and the listen address.
    #[arg(long, env = "CRON_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// SMTP relay host for e-mail channels; without it, e-mail deliveries fail and are logged.
    /// The password comes from CRON_SMTP_PASSWORD only.
    #[arg(long, env = "CRON_SMTP_HOST", global = true)]
    pub smtp_host: Option<String>,

    /// SMTP port; by default 25 without TLS, 587 with STARTTLS, 465 with TLS.
    #[arg(long, env = "CRON_SMTP_PORT", global = true)]
    pub smtp_port: Option<u16>,

    #[arg(long, env = "CRON_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls, global = true)]
    pub smtp_tls: SmtpTls,

    /// SMTP user, when the relay wants a login (with CRON_SMTP_PASSWORD).
    #[arg(long, env = "CRON_SMTP_USER", global = true)]
    pub smtp_user: Option<String>,

    /// The sender of notification e-mail.
    #[arg(
        long,
        env = "CRON_SMTP_FROM",
        default_value = "cronfleet@localhost",
        global = true
    )]
    pub smtp_from: String,

    /// Let webhooks reach link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
    /// fd00:ec2::254, 100.100.100.200), which are refused by default.
    #[arg(long, env = "CRON_WEBHOOK_ALLOW_LINK_LOCAL", global = true)]
    pub webhook_allow_link_local: bool,

    /// How far back, in seconds, the notifier reads again for records that reached MongoDB
    /// out of order (a worker's upload delayed, its clock behind).
    #[arg(long, env = "CRON_NOTIFY_LOOKBACK_SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(10..=86400), global = true)]
    pub notify_lookback_secs: u32,
}

impl NotifyArgs {
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.smtp_tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }
}
