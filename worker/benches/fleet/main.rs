//! The fleet benchmark: prints a report, asserts nothing. Run it with `compose/bench fleet`.
//!
//! N jobs spread evenly over the seconds of a minute (`S * * * * *`, S = i mod 60, so N/60 fall
//! due at the same instant every second), on one and on three worker processes with default
//! settings, for one minute; then a burst of 1,000 jobs due on one second. For each: planned
//! ticks, ran, skipped, missed by reason, unrecorded, duplicates, start delay (planned time to
//! the record's `startTime`, and to the shell running by its own clock: every job prints the
//! uptime its shell reads), claim txns per execution (from the workers' metrics) and worker
//! CPU. Beside them, measured in the same run: the raw floor, a plain loop that spawns the same
//! number of shells running the same command at one instant (time until each spawn has
//! returned, i.e. the shell is exec'd, and until each shell ran, by its own clock), and raw
//! etcd txn/s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod report;
#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Timelike as _, Utc};
use cronfleet_common::testkit::TestEnv;
use cronfleet_common::ExecutionRecord;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use futures_util::TryStreamExt;
use mongodb::bson::doc;
use report::Report;
use support::floor::{Floor, SHELL_CLOCK};
use support::{put_jobs, Bench};

/// Clock ticks per second of `/proc/<pid>/stat` CPU times.
const CLOCK_TICKS: f64 = 100.0;
const WINDOW: TimeDelta = TimeDelta::seconds(60);
const BURST: usize = 1_000;

#[tokio::main]
async fn main() {
    // `cargo bench --bench fleet -- 10000x3 burst` runs only the scenarios named.
    let bench = Bench::start("fleet");
    let scratch = bench.scratch.clone();
    let floors: BTreeMap<usize, Floor> = [10_000 / 60, 30_000 / 60, BURST]
        .into_iter()
        .map(|n| (n, Floor::measure(n)))
        .collect();
    println!("\nraw floor: spawn n × `/bin/sh -c '{SHELL_CLOCK}'` in a loop at one instant");
    for (n, floor) in &floors {
        println!("  {n:>5} at once: {floor}");
    }
    let env = TestEnv::new().await;
    println!(
        "\nraw etcd: {:.0} txn/s (64 concurrent single-key compare-and-put txns, 3 s)",
        raw_etcd(&env).await
    );
    for (per_minute, workers) in [(10_000, 1), (10_000, 3), (30_000, 1), (30_000, 3)] {
        if !bench.wanted(&format!("{per_minute}x{workers}")) {
            continue;
        }
        let floor = &floors[&(per_minute / 60)];
        let report = spread_minute(&scratch, per_minute, workers).await;
        report.print(
            &format!("{per_minute} jobs a minute on {workers} worker(s), one minute"),
            floor,
        );
    }
    if bench.wanted("burst") {
        // With the default 256 slots a worker starts its third of the burst in two waves;
        // with 64, in six; with more slots than its share, in one. A burst's last start swings
        // with whatever else the box is doing, and so does the floor's: each burst is set
        // beside a floor measured just before its fleet starts, and the default runs thrice.
        let (mut by_records, mut by_shells) = (Vec::new(), Vec::new());
        for slots in [None, None, None, Some(64), Some(512)] {
            let floor = Floor::measure(BURST);
            let report = burst(&scratch, 3, slots).await;
            let settings =
                slots.map_or_else(|| "default settings".to_owned(), |n| format!("--slots {n}"));
            let (record, shell) = report.print(
                &format!("burst: {BURST} jobs due on one second, 3 workers, {settings}"),
                &floor,
            );
            if slots.is_none() {
                by_records.extend(record);
                by_shells.extend(shell);
            }
        }
        println!("\nburst with default settings, last start against the floor just before it:");
        println!("  by the records' startTime: {}", ratios(by_records));
        println!("  by the shells' own clock:  {}", ratios(by_shells));
    }
}

/// Ratios in order and their median.
fn ratios(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    format!("{} (median {median:.2}×)", each.join(", "))
}

async fn raw_etcd(env: &TestEnv) -> f64 {
    let client = env.etcd().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let mut client = client.clone();
            let key = format!("{}raw-{i}", env.keys.prefix());
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut revision = 0;
                while Instant::now() < deadline {
                    let txn = Txn::new()
                        .when([Compare::mod_revision(
                            key.as_str(),
                            CompareOp::Equal,
                            revision,
                        )])
                        .and_then([TxnOp::put(key.as_str(), "x", None)]);
                    let response = client.txn(txn).await.unwrap();
                    revision = response.header().unwrap().revision();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / 3.0
}

struct Worker {
    child: Child,
    metrics_port: u16,
}

impl Worker {
    fn start(env: &TestEnv, scratch: &Path, name: &str, slots: Option<u32>) -> Self {
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cronfleet-worker"));
        if let Some(slots) = slots {
            command.env("CRON_WORKER_SLOTS", slots.to_string());
        }
        let child = command
            .env("CRON_ETCD_ENDPOINTS", env.etcd_endpoints.join(","))
            .env("CRON_ETCD_PREFIX", env.keys.prefix())
            .env("CRON_MONGO_URL", &env.mongo_url)
            .env("CRON_MONGO_DB", &env.mongo_db)
            .env("CRON_WORKER_ID", name)
            .env("CRON_SPOOL_DIR", scratch.join(format!("spool-{name}")))
            .env("CRON_METRICS_LISTEN", metrics_port.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics_port,
        }
    }

    /// CPU seconds of the worker itself, and of its runs: its run server's and every
    /// supervisor and shell the server has reaped.
    fn cpu(&self) -> (f64, f64) {
        let pid = self.child.id();
        let (own, reaped) = cpu_of(pid);
        let servers = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
            .flat_map(|children| {
                children
                    .split_whitespace()
                    .filter_map(|child| child.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .map(|server| {
                let (own, reaped) = cpu_of(server);
                own + reaped
            });
        (own, reaped + servers.sum::<f64>())
    }

    /// Claim txns sent, by result (`won`, `lost`, `locked`, `failed`).
    async fn claim_txns(&self) -> BTreeMap<String, f64> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .await
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let requests = text.lines().find_map(|l| {
            let count = l.strip_prefix("cronfleet_worker_etcd_requests_total ")?;
            Some((report::REQUESTS.to_owned(), count.parse().ok()?))
        });
        text.lines()
            .filter_map(|l| l.strip_prefix("cronfleet_worker_claim_txns_total{result=\""))
            .filter_map(|l| {
                let (result, rest) = l.split_once('"')?;
                Some((result.to_owned(), rest.rsplit(' ').next()?.parse().ok()?))
            })
            .chain(requests)
            .collect()
    }

    fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap();
    }
}

/// CPU seconds of process `pid` itself, and of the children it has reaped.
fn cpu_of(pid: u32) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    let fields: Vec<f64> = stat
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split(' ')
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    if fields.len() < 15 {
        return (0.0, 0.0);
    }
    // Fields 14-17 of stat(5), counted from after the command name (field 3 is index 0).
    (
        (fields[11] + fields[12]) / CLOCK_TICKS,
        (fields[13] + fields[14]) / CLOCK_TICKS,
    )
}

/// The pids of the running etcd and MongoDB-wire servers, found by command name.
fn servers() -> Vec<(&'static str, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let program = cmdline.split('\0').next().unwrap_or_default();
        if program.ends_with("/etcd") || program == "etcd" {
            found.push(("etcd", pid));
        } else if cmdline.contains("secantusd") || program.ends_with("mongod") {
            found.push(("mongo", pid));
        }
    }
    found
}

async fn start_fleet(
    env: &TestEnv,
    scratch: &Path,
    workers: usize,
    slots: Option<u32>,
) -> Vec<Worker> {
    let fleet: Vec<Worker> = (0..workers)
        .map(|i| Worker::start(env, scratch, &format!("{}-w{i}", env.id), slots))
        .collect();
    let mut etcd = env.etcd().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while etcd
        .get(
            env.keys.workers(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
        < workers as i64
    {
        assert!(Instant::now() < deadline, "workers did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fleet
}

/// `per_minute` jobs spread over the seconds; measures the minute that starts a few seconds
/// after the jobs are loaded.
async fn spread_minute(scratch: &Path, per_minute: usize, workers: usize) -> Report {
    let env = TestEnv::new().await;
    let mut etcd = env.etcd().await;
    let fleet = start_fleet(&env, scratch, workers, None).await;
    put_jobs(
        &mut etcd,
        &env.keys,
        SHELL_CLOCK,
        (0..per_minute).map(|i| (format!("spread-{i:05}"), format!("{} * * * * *", i % 60))),
    )
    .await;
    let from = whole_second(Utc::now() + TimeDelta::seconds(5));
    measure(&env, fleet, from, from + WINDOW, per_minute).await
}

/// `BURST` jobs all due on one second, once.
async fn burst(scratch: &Path, workers: usize, slots: Option<u32>) -> Report {
    let env = TestEnv::new().await;
    let mut etcd = env.etcd().await;
    let fleet = start_fleet(&env, scratch, workers, slots).await;
    let at = whole_second(Utc::now() + TimeDelta::seconds(10));
    let expr = format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
    put_jobs(
        &mut etcd,
        &env.keys,
        SHELL_CLOCK,
        (0..BURST).map(|i| (format!("burst-{i:04}"), expr.clone())),
    )
    .await;
    assert!(
        Utc::now() < at - TimeDelta::seconds(2),
        "loading took too long"
    );
    measure(&env, fleet, at, at + TimeDelta::seconds(1), BURST).await
}

fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp() + 1, 0).unwrap()
}

/// Waits out the window and every tick's deadline (60 s at most), stops the fleet and reads
/// the records of the ticks planned in `[from, until)`.
async fn measure(
    env: &TestEnv,
    fleet: Vec<Worker>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    planned: usize,
) -> Report {
    let servers = servers();
    // Claims go out ahead of the planned time: count them from half a second before the
    // window to half a second before its end (a minute of claims), or to the end of a burst.
    let lead = TimeDelta::milliseconds(500);
    tokio::time::sleep((from - lead - Utc::now()).to_std().unwrap_or_default()).await;
    let txns_before = claim_txns(&fleet).await;
    tokio::time::sleep((from - Utc::now()).to_std().unwrap_or_default()).await;
    let cpu_before: Vec<(f64, f64)> = fleet.iter().map(Worker::cpu).collect();
    let servers_before: Vec<f64> = servers.iter().map(|(_, pid)| cpu_of(*pid).0).collect();
    tokio::time::sleep((until - lead - Utc::now()).to_std().unwrap_or_default()).await;
    let txns_steady = claim_txns(&fleet).await;
    tokio::time::sleep((until - Utc::now()).to_std().unwrap_or_default()).await;
    let cpu_after: Vec<(f64, f64)> = fleet.iter().map(Worker::cpu).collect();
    let servers_after: Vec<f64> = servers.iter().map(|(_, pid)| cpu_of(*pid).0).collect();
    let seconds = (until - from).num_milliseconds() as f64 / 1000.0;
    let log = env.mongo().await.collection::<ExecutionRecord>("log");
    let window =
        doc! { "planTime": { "$gte": from.timestamp_millis(), "$lt": until.timestamp_millis() } };
    let settle = until + TimeDelta::seconds(65);
    while Utc::now() < settle && log.count_documents(window.clone()).await.unwrap() < planned as u64
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut txns = if until - from >= WINDOW {
        txns_steady
    } else {
        claim_txns(&fleet).await
    };
    for (result, count) in &mut txns {
        *count -= txns_before.get(result).copied().unwrap_or(0.0);
    }
    for worker in fleet {
        worker.stop();
    }
    let records: Vec<ExecutionRecord> =
        log.find(window).await.unwrap().try_collect().await.unwrap();
    Report {
        planned,
        records,
        txns,
        cpu: cpu_before
            .iter()
            .zip(&cpu_after)
            .map(|(b, a)| ((a.0 - b.0) / seconds, (a.1 - b.1) / seconds))
            .collect(),
        servers: servers
            .iter()
            .zip(servers_before.iter().zip(&servers_after))
            .map(|((name, _), (b, a))| (*name, (a - b) / seconds))
            .collect(),
    }
}

/// Claim txns the fleet has sent so far, by result.
async fn claim_txns(fleet: &[Worker]) -> BTreeMap<String, f64> {
    let mut txns = BTreeMap::new();
    for worker in fleet {
        for (result, count) in worker.claim_txns().await {
            *txns.entry(result).or_insert(0.0) += count;
        }
    }
    txns
}
