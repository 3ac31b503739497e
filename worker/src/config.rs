//! The worker's settings: every knob is a flag with an environment fallback and a default.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use cronfleet_common::etcd::EtcdArgs;
use cronfleet_common::job::{validate_shell, DEFAULT_SHELL};
use cronfleet_common::policy::{self, Labels};
use cronfleet_common::record::DEFAULT_MONGO_DB;

/// cronfleet worker: watches jobs in etcd, claims each tick so exactly one worker in the fleet
/// runs it, runs the command, and logs every execution to MongoDB.
#[derive(Debug, Clone, Parser)]
#[command(name = "cronfleet-worker", version, about)]
pub struct Config {
    #[command(flatten)]
    pub etcd: EtcdArgs,

    /// MongoDB connection URL (credentials and TLS options go in the URL).
    #[arg(
        long,
        env = "CRON_MONGO_URL",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    pub mongo_url: String,

    /// MongoDB database that holds the `log` collection.
    #[arg(long, env = "CRON_MONGO_DB", default_value = DEFAULT_MONGO_DB)]
    pub mongo_db: String,

    /// Unique id of this worker in the fleet [default: <hostname>-<pid>].
    #[arg(long, env = "CRON_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Most runs this worker executes at once. A due tick that finds every slot busy waits
    /// for one (oldest first) and stays claimable by other workers until its deadline.
    #[arg(long, env = "CRON_WORKER_SLOTS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub slots: u32,

    /// Serve Prometheus metrics at `/metrics` on this address (`host:port`, or a bare port
    /// on 127.0.0.1); off when not set.
    #[arg(long, env = "CRON_METRICS_LISTEN", value_parser = crate::metrics::parse_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Time to live of the worker's session lease, in seconds. A dead worker's locks and
    /// registration vanish this long after its last keep-alive.
    #[arg(long, env = "CRON_LEASE_TTL_SECS", default_value_t = 10, value_parser = clap::value_parser!(i64).range(2..=300))]
    pub lease_ttl_secs: i64,

    /// Execution records per `insert_many` batch.
    #[arg(long, env = "CRON_LOG_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub log_batch_size: u16,

    /// Longest a record waits for its batch to fill, in milliseconds.
    #[arg(long, env = "CRON_LOG_FLUSH_MS", default_value_t = 1000)]
    pub log_flush_ms: u64,

    /// Directory where execution records are kept until MongoDB has them; survives restarts.
    #[arg(long, env = "CRON_SPOOL_DIR", default_value = "./cronfleet-spool")]
    pub spool_dir: PathBuf,

    /// Seconds between SIGTERM and SIGKILL when a run is killed or times out, and how long a
    /// shutting-down worker lets runs finish.
    #[arg(long, env = "CRON_KILL_GRACE_SECS", default_value_t = 5)]
    pub kill_grace_secs: u64,

    /// Bytes of output kept per run (half from the start, half from the end); the total is
    /// still counted.
    #[arg(long, env = "CRON_OUTPUT_CAP_BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub output_cap_bytes: u64,

    /// Local user every run executes as (the worker must run as root to use it); by default
    /// runs execute as the worker's own user. Jobs cannot choose it.
    #[arg(long, env = "CRON_RUN_AS")]
    pub run_as: Option<String>,

    /// Most milliseconds this worker's clock may be from the fleet's (the median of the
    /// workers' clocks, learnt from their heartbeats and claims) before it stops claiming
    /// scheduled ticks. Needs three or more workers to name the one that is off.
    #[arg(long, env = "CRON_MAX_CLOCK_SKEW_MS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=3_600_000))]
    pub max_clock_skew_ms: u32,

    /// Most open files of each process of a run (RLIMIT_NOFILE); the worker's own when unset.
    #[arg(long, env = "CRON_RUN_MAX_OPEN_FILES", value_parser = clap::value_parser!(u64).range(16..))]
    pub run_max_open_files: Option<u64>,

    /// Most processes the run's user may have (RLIMIT_NPROC; counts every process of that
    /// user, so meaningful with --run-as); the worker's own when unset.
    #[arg(long, env = "CRON_RUN_MAX_PROCESSES", value_parser = clap::value_parser!(u64).range(1..))]
    pub run_max_processes: Option<u64>,

    /// Most bytes of address space of each process of a run (RLIMIT_AS); unlimited when unset.
    #[arg(long, env = "CRON_RUN_MAX_ADDRESS_SPACE_BYTES", value_parser = clap::value_parser!(u64).range(1_048_576..))]
    pub run_max_address_space_bytes: Option<u64>,

    /// Let runs write core dumps (off by default: a dump can hold a job's secrets).
    #[arg(long, env = "CRON_RUN_CORE_DUMPS")]
    pub run_core_dumps: bool,

    /// Shells jobs may run under (a job's `shell`; `/bin/sh` when it names none), as absolute
    /// paths: repeat the flag, or separate them with commas. A job naming another fails to
    /// start. Job values go-crontab wrote always run under `/bin/bash`, as go-crontab runs them.
    #[arg(long = "shell", env = "CRON_SHELLS", value_delimiter = ',', default_value = DEFAULT_SHELL, value_parser = parse_shell)]
    pub shells: Vec<String>,

    /// Labels this worker publishes in its registration, as `key=value`: repeat the flag, or
    /// separate them with commas. A job with a `selector` runs only on workers whose labels
    /// match it.
    #[arg(long = "label", value_name = "KEY=VALUE", env = "CRON_WORKER_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "CRON_LOG_JSON")]
    pub log_json: bool,

    /// Test only: milliseconds added to this worker's clock, to simulate clock skew.
    #[arg(
        long,
        env = "CRON_TEST_CLOCK_OFFSET_MS",
        default_value_t = 0,
        hide = true,
        allow_hyphen_values = true
    )]
    pub clock_offset_ms: i64,
}

fn parse_label(raw: &str) -> Result<(String, String), String> {
    policy::parse_label(raw).map_err(|e| e.reason)
}

fn parse_shell(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("must not be empty".to_owned());
    }
    validate_shell(raw).map_err(|e| e.reason)?;
    Ok(raw.to_owned())
}

impl Config {
    /// The worker id: the configured one, or `<hostname>-<pid>`.
    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "worker".to_owned());
            let host: String = host
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{host}-{}", std::process::id())
        })
    }

    /// The labels, later ones winning over earlier ones with the same key.
    pub fn labels(&self) -> Labels {
        self.labels.iter().cloned().collect()
    }

    pub fn kill_grace(&self) -> Duration {
        Duration::from_secs(self.kill_grace_secs)
    }

    pub fn log_flush(&self) -> Duration {
        Duration::from_millis(self.log_flush_ms)
    }
}
