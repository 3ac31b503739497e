//! `cronfleet-worker`: see the library docs for how the parts fit.

use clap::Parser;
use cronfleet_worker::config::Config;
use cronfleet_worker::Worker;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    cronfleet_worker::priority::yield_to_runs();
    cronfleet_common::telemetry::init(config.log_json);
    tokio::runtime::Runtime::new()?.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let worker = Worker::build(config).await?;
    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("signal received; shutting down");
        trigger.cancel();
    });
    worker.run(shutdown).await
}
