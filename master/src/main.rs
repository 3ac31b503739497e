//! `cronfleet-master`: see the library docs for how the parts fit.

use clap::Parser;
use cronfleet_master::config::{Action, Cli};
use cronfleet_master::{App, Services};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cronfleet_common::telemetry::init(cli.config.log_json);
    match cli.command.unwrap_or(Action::Serve) {
        Action::Serve => {
            let app = App::build(&cli.config).await?;
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
            app.run(shutdown).await
        }
        Action::Migrate => {
            Services::connect(&cli.config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Action::Rebuild => {
            let services = Services::connect(&cli.config).await?;
            let mut projector = services.projector(
                cli.config.projector_lease_ttl_secs,
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
