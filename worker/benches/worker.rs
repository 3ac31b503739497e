//! The worker's benchmark: prints a report, asserts nothing. Run it with `compose/bench`.
//!
//! * 100,000 jobs loaded: time from process start to a loaded plan, and resident memory per job;
//!   then how long a job PUT takes to reach the plan.
//! * 1,000 jobs a minute for a minute: trigger latency from planned second to child start, and
//!   etcd writes per execution; then how long a kill request takes to end a run.
//! * The log pipeline's records per second next to raw `insert_many` on the same server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cronfleet_common::testkit::TestEnv;
use cronfleet_common::{ExecutionRecord, JobName, RunStatus, Trigger};
use cronfleet_worker::holds::Holds;
use cronfleet_worker::log_sink::LogSink;
use cronfleet_worker::spool::Spool;
use cronfleet_worker::upload::{insert_idempotent, Uploader};
use etcd_client::{Txn, TxnOp};
use futures_util::TryStreamExt;
use mongodb::bson::doc;
use support::floor::{Floor, SHELL_CLOCK};
use support::{compare, put_jobs, summary, Bench, Spread};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

const LOADED_JOBS: usize = 100_000;
const PER_MINUTE_JOBS: usize = 1_000;
const PIPELINE_RECORDS: usize = 20_000;

#[tokio::main]
async fn main() {
    // `cargo bench -- pipeline` (or `load`, `latency`) runs one section.
    let bench = Bench::start("worker");
    if bench.wanted("load") {
        load_and_watch(&bench.scratch).await;
    }
    if bench.wanted("latency") {
        trigger_latency_and_kill(&bench.scratch).await;
    }
    if bench.wanted("pipeline") {
        log_pipeline(&bench.scratch).await;
    }
}

struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    fn start(env: &TestEnv, scratch: &Path, name: &str) -> Self {
        let log = scratch.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_cronfleet-worker"))
            .env("CRON_ETCD_ENDPOINTS", env.etcd_endpoints.join(","))
            .env("CRON_ETCD_PREFIX", env.keys.prefix())
            .env("CRON_MONGO_URL", &env.mongo_url)
            .env("CRON_MONGO_DB", &env.mongo_db)
            .env("CRON_WORKER_ID", name)
            .env("CRON_WORKER_SLOTS", "256")
            .env("CRON_SPOOL_DIR", scratch.join(format!("spool-{name}")))
            .env("CRON_LOG_JSON", "true")
            .env("RUST_LOG", "info,cronfleet_worker=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Timestamp of the first log line with `message` (and `job.name` if given) at or after `since`.
    fn logged(
        &self,
        message: &str,
        job: Option<&str>,
        since: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let file = std::fs::File::open(&self.log).ok()?;
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                let value: serde_json::Value = serde_json::from_str(&line).ok()?;
                let fields = &value["fields"];
                let at: DateTime<Utc> = value["timestamp"].as_str()?.parse().ok()?;
                let matches = fields["message"] == message
                    && job.is_none_or(|job| fields["job.name"] == job)
                    && at >= since;
                matches.then_some(at)
            })
    }

    async fn wait_logged(
        &self,
        message: &str,
        job: Option<&str>,
        since: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(at) = self.logged(message, job, since) {
                return at;
            }
            assert!(Instant::now() < deadline, "worker never logged {message:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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

async fn load_and_watch(scratch: &Path) {
    let empty_env = TestEnv::new().await;
    let empty = WorkerProcess::start(&empty_env, scratch, "empty");
    empty
        .wait_logged(
            "plan loaded from the snapshot",
            None,
            DateTime::<Utc>::MIN_UTC,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = empty.rss_kib();
    empty.stop();

    let env = TestEnv::new().await;
    let mut etcd = env.etcd().await;
    put_jobs(
        &mut etcd,
        &env.keys,
        "true",
        // 1,440 distinct schedules that fire once a year, never during the measurement.
        (0..LOADED_JOBS).map(|i| {
            (
                format!("job-{i:06}"),
                format!("{} {} 1 1 *", i % 60, (i / 60) % 24),
            )
        }),
    )
    .await;
    let started = Utc::now();
    let worker = WorkerProcess::start(&env, scratch, "loaded");
    let loaded = worker
        .wait_logged(
            "plan loaded from the snapshot",
            None,
            DateTime::<Utc>::MIN_UTC,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = worker.rss_kib();
    println!("\n100,000 jobs");
    println!(
        "  load time (process start to plan loaded): {:.2} s",
        (loaded - started).num_milliseconds() as f64 / 1000.0
    );
    println!(
        "  resident memory: {} KiB with 100k jobs, {} KiB empty: {:.0} bytes per job",
        rss,
        baseline,
        (rss.saturating_sub(baseline) * 1024) as f64 / LOADED_JOBS as f64
    );

    let mut latencies = Vec::new();
    for i in 0..100 {
        let name = format!("job-{:06}", i * 997);
        let value =
            format!(r#"{{"name":"{name}","command":"echo {i}","cronExpr":"@yearly","version":1}}"#);
        let sent = Utc::now();
        etcd.put(env.keys.job(&JobName::parse(&name).unwrap()), value, None)
            .await
            .unwrap();
        let seen = worker.wait_logged("plan updated", Some(&name), sent).await;
        latencies.push((seen - sent).num_microseconds().unwrap() as f64 / 1000.0);
    }
    println!(
        "  job PUT to plan updated (100 edits, 100k jobs loaded): {}",
        summary(latencies)
    );
    worker.stop();
}

async fn trigger_latency_and_kill(scratch: &Path) {
    // The runs due on one second, spawned by a plain loop on the still quiet box.
    let floor = Floor::measure(PER_MINUTE_JOBS.div_ceil(60));
    let env = TestEnv::new().await;
    let mut etcd = env.etcd().await;
    let worker = WorkerProcess::start(&env, scratch, "latency");
    worker
        .wait_logged(
            "plan loaded from the snapshot",
            None,
            DateTime::<Utc>::MIN_UTC,
        )
        .await;
    put_jobs(
        &mut etcd,
        &env.keys,
        SHELL_CLOCK,
        (0..PER_MINUTE_JOBS).map(|i| (format!("tick-{i:04}"), format!("{} * * * * *", i % 60))),
    )
    .await;
    // Let a minute start fresh, then measure one full minute.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let from = Utc::now().timestamp_millis();
    let revision_before = etcd
        .get("bench-revision", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let revision_after = etcd
        .get("bench-revision", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let until = Utc::now().timestamp_millis();
    let ops: Vec<TxnOp> = (0..PER_MINUTE_JOBS)
        .map(|i| {
            let name = format!("tick-{i:04}");
            let value = format!(
                r#"{{"name":"{name}","command":"true","cronExpr":"* * * * * *","paused":true,"version":1}}"#
            );
            TxnOp::put(env.keys.job(&JobName::parse(&name).unwrap()), value, None)
        })
        .collect();
    for chunk in ops.chunks(128) {
        etcd.txn(Txn::new().and_then(chunk.to_vec())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let log = env.mongo().await.collection::<ExecutionRecord>("log");
    let records: Vec<ExecutionRecord> = log
        .find(doc! { "planTime": { "$gte": from, "$lt": until } })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let started: Vec<&ExecutionRecord> = records.iter().filter(|r| r.fencing_token > 0).collect();
    let lags: Vec<f64> = started
        .iter()
        .map(|r| (r.start_time - r.plan_time) as f64)
        .collect();
    println!("\n1,000 jobs a minute, one worker, one minute");
    println!(
        "  executions: {} ({} not started)",
        started.len(),
        records.len() - started.len()
    );
    println!(
        "  trigger latency, planned second to the record's startTime (the shell running): {}",
        summary(lags.clone())
    );
    if let Some(lags) = Spread::of(lags) {
        compare("spawned", &lags, &floor.spawned);
    }
    println!(
        "  etcd writes per execution: {:.2} ({} revisions over {} executions, heartbeats included)",
        (revision_after - revision_before) as f64 / started.len() as f64,
        revision_after - revision_before,
        started.len()
    );

    let name = JobName::parse("to-kill").unwrap();
    etcd.put(
        env.keys.job(&name),
        r#"{"name":"to-kill","command":"sleep 300","cronExpr":"@yearly","version":1}"#,
        None,
    )
    .await
    .unwrap();
    let mut kills = Vec::new();
    for round in 0..10 {
        etcd.put(
            env.keys.trigger(&name),
            format!("{{\"requestId\":\"t{round}\"}}"),
            None,
        )
        .await
        .unwrap();
        while etcd
            .get(env.keys.lock(&name), None)
            .await
            .unwrap()
            .kvs()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = Utc::now().timestamp_millis();
        etcd.put(
            env.keys.killer(&name),
            format!("{{\"requestId\":\"k{round}\"}}"),
            None,
        )
        .await
        .unwrap();
        let killed = loop {
            let found = log
                .find_one(
                    doc! { "jobName": "to-kill", "status": "killed", "endTime": { "$gte": sent } },
                )
                .await
                .unwrap();
            if let Some(record) = found {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        kills.push((killed.end_time - sent) as f64);
    }
    println!(
        "  kill request to run ended (SIGTERM honoured): {}",
        summary(kills)
    );
    worker.stop();
}

fn record(i: usize) -> ExecutionRecord {
    ExecutionRecord {
        run_id: format!("bench-{i}"),
        job_name: format!("job-{}", i % 100),
        command: "echo hello".to_owned(),
        err: String::new(),
        output: "hello\n".to_owned(),
        plan_time: 1_700_000_000_000 + i as i64,
        schedule_time: 1_700_000_000_000 + i as i64,
        start_time: 1_700_000_000_001 + i as i64,
        end_time: 1_700_000_000_005 + i as i64,
        worker_id: "bench".to_owned(),
        status: RunStatus::Succeeded,
        exit_code: Some(0),
        signal: None,
        output_bytes: 6,
        truncated: false,
        fencing_token: i as i64 + 1,
        job_version: 1,
        trigger: Trigger::Schedule,
        reason: None,
        tick_id: Some(format!("schedule-{}", 1_700_000_000_000 + i as i64)),
        attempt: Some(1),
        source_run_id: None,
        will_retry: None,
        request_id: None,
        requested_by: None,
        killed_by: None,
    }
}

async fn log_pipeline(scratch: &Path) {
    let env = TestEnv::new().await;
    let database = env.mongo().await;
    let records: Vec<ExecutionRecord> = (0..PIPELINE_RECORDS).map(record).collect();

    let raw = database.collection::<ExecutionRecord>("raw");
    cronfleet_worker::upload::ensure_indexes(&raw)
        .await
        .unwrap();
    let started = Instant::now();
    for batch in records.chunks(100) {
        insert_idempotent(&raw, batch).await.unwrap();
    }
    let raw_rate = PIPELINE_RECORDS as f64 / started.elapsed().as_secs_f64();

    let log = database.collection::<ExecutionRecord>("log");
    let dir = scratch.join("pipeline-spool");
    let sealed = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(4096);
    let sink = LogSink {
        spool: Spool::open(&dir).unwrap(),
        batch_size: 100,
        flush: Duration::from_secs(1),
        sealed: Arc::clone(&sealed),
        log: log.clone(),
        holds: Holds::default(),
    };
    let uploader = Uploader {
        dir: dir.clone(),
        log: log.clone(),
        sealed,
        reachable: Arc::new(AtomicBool::new(true)),
        starts: Arc::default(),
    };
    cronfleet_worker::upload::ensure_indexes(&log)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let upload = tokio::spawn(uploader.run(stop.clone()));
    let sink = tokio::spawn(sink.run(rx));
    let started = Instant::now();
    for record in records {
        tx.send(record).await.unwrap();
    }
    drop(tx);
    sink.await.unwrap();
    // A segment is deleted once Mongo has every record in it; poll the directory, not the
    // server, so the measurement does not load the server it measures.
    while !Spool::sealed(&dir).unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pipeline_rate = PIPELINE_RECORDS as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    upload.await.unwrap();
    assert_eq!(
        log.count_documents(doc! {}).await.unwrap(),
        PIPELINE_RECORDS as u64
    );
    println!("\nlog pipeline, {PIPELINE_RECORDS} records in batches of 100");
    println!("  raw insert_many: {raw_rate:.0} records/s");
    println!("  pipeline (channel, spool segment file, upload): {pipeline_rate:.0} records/s");
    println!(
        "  pipeline / raw: {:.0} %",
        pipeline_rate / raw_rate * 100.0
    );
}
