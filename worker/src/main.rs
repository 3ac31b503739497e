//! `cronfleet-worker`: watches jobs in etcd, runs each tick on exactly one worker, logs to Mongo.

use clap::Parser;

/// cronfleet worker: schedules jobs from etcd, claims each tick and runs it.
#[derive(Debug, Parser)]
#[command(name = "cronfleet-worker", version, about)]
struct Cli {}

fn main() {
    Cli::parse();
}
