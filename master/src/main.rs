//! `cronfleet-master`: see the library docs for how the parts fit.

use clap::Parser;
use cronfleet_master::accounts::UserChange;
use cronfleet_master::config::{Action, AuditAction, Cli, Config, TokenAction, UserAction};
use cronfleet_master::identity::Role;
use cronfleet_master::store::chain::{self, Anchor};
use cronfleet_master::store::RequestMeta;
use cronfleet_master::{App, Services};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cronfleet_common::telemetry::init(cli.config.log_json);
    let config = &cli.config;
    match cli.command.unwrap_or(Action::Serve) {
        Action::Serve => {
            let app = App::build(config).await?;
            app.run(shutdown_on_signal()?).await
        }
        Action::Migrate => {
            Services::store(config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Action::User(action) => user(config, action).await,
        Action::Token(action) => token(config, action).await,
        Action::Audit(AuditAction::Verify { anchor }) => verify(config, anchor).await,
        Action::Rebuild => {
            let services = Services::connect(config).await?;
            let mut projector = services.projector(
                config.projector_lease_ttl_secs,
                format!("rebuild-{}", std::process::id()),
            );
            let rebuilt = cronfleet_master::rebuild::rebuild(&mut projector).await?;
            tracing::info!(
                ?rebuilt,
                "rebuilt the read model and etcd from the event log"
            );
            Ok(())
        }
    }
}

async fn user(config: &Config, action: UserAction) -> anyhow::Result<()> {
    let password = password()?;
    let services = Services::connect(config).await?;
    match action {
        UserAction::Create { name, role } => {
            let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("--role: {}", e.reason))?;
            let user = services
                .store
                .create_user(&name, role, &password, &command_line())
                .await?;
            tracing::info!(user = %user.name, role = %user.role, "user created");
        }
        UserAction::ResetPassword { name } => {
            let change = UserChange {
                disabled: Some(false),
                password: Some(password),
                ..UserChange::default()
            };
            services
                .store
                .change_user(&name, &change, &command_line())
                .await?;
            tracing::info!(user = %name, "password reset");
        }
    }
    Ok(())
}

async fn token(config: &Config, action: TokenAction) -> anyhow::Result<()> {
    let services = Services::connect(config).await?;
    match action {
        TokenAction::Create {
            user,
            name,
            expires_in_days,
        } => {
            let (token, _) = services
                .store
                .create_token(&user, &name, expires_in_days, &command_line())
                .await?;
            #[allow(clippy::print_stdout)] // the token is the command's output, shown this once
            {
                println!("{}", token.plaintext);
            }
        }
        TokenAction::Revoke { id } => {
            services.store.revoke_token(&id, &command_line()).await?;
            tracing::info!(token = %id, "token revoked");
        }
    }
    Ok(())
}

/// `audit verify`: prints the verdict; exits 1 when the chain is broken.
async fn verify(config: &Config, anchor: Option<String>) -> anyhow::Result<()> {
    let anchor = anchor
        .map(|text| {
            Anchor::parse(&text).ok_or_else(|| {
                anyhow::anyhow!("--anchor: expected <seq>:<hex hash>, as verify prints the head")
            })
        })
        .transpose()?;
    let store = Services::store(config).await?;
    let verified = store.verify_chain(anchor.as_ref()).await?;
    #[allow(clippy::print_stdout)] // the verdict is the command's output
    match (&verified.broken, &verified.head) {
        (Some(broken), _) => {
            println!(
                "BROKEN at event {}: {} ({} events checked)",
                broken.seq, broken.reason, verified.events
            );
            std::process::exit(1);
        }
        (None, Some((seq, hash))) => {
            println!(
                "ok: {} events; head {seq}:{}",
                verified.events,
                chain::hex(hash)
            );
        }
        (None, None) => println!("ok: the audit log is empty"),
    }
    Ok(())
}

/// Changes made from the command line are recorded as made by the local operator.
fn command_line() -> RequestMeta {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    RequestMeta {
        actor: format!("cli:{user}"),
        request_id: uuid::Uuid::now_v7().to_string(),
        idempotency: None,
    }
}

/// A token cancelled on SIGTERM or SIGINT.
fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        trigger.cancel();
    });
    Ok(shutdown)
}

/// A new user's password: `CRON_PASSWORD`, else the first line of standard input.
fn password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("CRON_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
