//! `cronfleet-master`: the HTTP API, admin pages, event store and etcd projector.

use clap::Parser;

/// cronfleet master: takes job commands, records them as events and projects jobs into etcd.
#[derive(Debug, Parser)]
#[command(name = "cronfleet-master", version, about)]
struct Cli {}

fn main() {
    Cli::parse();
}
