//! A mixed fleet: cronfleet workers beside workers that follow go-crontab's protocol, as its
//! source does it — register `workers/<IPv4>` with an empty value on a lease; for every tick
//! sleep a random 0–999 ms, take `lock/<job>` in a txn on `create_revision == 0` with a 5 s
//! lease, run `/bin/bash -c`, delete the lock, and insert a record without `runId`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser as _;
use cronfleet_common::{JobName, Keys};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use serde_json::json;

use crate::support::{metric_sum, scrape, wait_until, Fleet};

/// One go-crontab worker, emulated.
#[derive(Clone)]
struct GoCrontab {
    etcd: etcd_client::Client,
    keys: Keys,
    log: Collection<Document>,
}

impl GoCrontab {
    /// Registers `workers/<address>` with an empty value on a 10 s lease, kept alive.
    async fn register(&self, address: &str) {
        let mut etcd = self.etcd.clone();
        let lease = etcd.lease_grant(10, None).await.unwrap().id();
        etcd.put(
            self.keys.worker(address),
            "",
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
        let (mut keeper, _) = etcd.lease_keep_alive(lease).await.unwrap();
        tokio::spawn(async move {
            while keeper.keep_alive().await.is_ok() {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        });
    }

    /// Runs the scheduler's loop over `ticks` for `jobs`, and returns when every attempt ended.
    async fn run(self, jobs: Vec<(String, String)>, ticks: Vec<DateTime<Utc>>) {
        let mut attempts = Vec::new();
        for tick in ticks {
            tokio::time::sleep((tick - Utc::now()).to_std().unwrap_or_default()).await;
            for (job, command) in &jobs {
                let this = self.clone();
                let (job, command) = (job.clone(), command.clone());
                attempts.push(tokio::spawn(async move {
                    this.attempt(&job, &command, tick).await;
                }));
            }
        }
        for attempt in attempts {
            attempt.await.unwrap();
        }
    }

    async fn attempt(&self, job: &str, command: &str, planned: DateTime<Utc>) {
        let scheduled = Utc::now();
        let jitter = RandomState::new().hash_one(job) % 1_000;
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let mut etcd = self.etcd.clone();
        let lock = self.keys.lock(&JobName::parse(job).unwrap());
        let lease = etcd.lease_grant(5, None).await.unwrap().id();
        let txn = Txn::new()
            .when([Compare::create_revision(lock.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                lock.as_str(),
                "",
                Some(PutOptions::new().with_lease(lease)),
            )]);
        if !etcd.txn(txn).await.unwrap().succeeded() {
            etcd.lease_revoke(lease).await.unwrap();
            return;
        }
        let started = Utc::now();
        let output = tokio::process::Command::new("/bin/bash")
            .args(["-c", command])
            .output()
            .await
            .unwrap();
        let ended = Utc::now();
        etcd.delete(lock.as_str(), None).await.unwrap();
        etcd.lease_revoke(lease).await.unwrap();
        let err = match output.status.code() {
            Some(0) => String::new(),
            Some(code) => format!("exit status {code}"),
            None => "signal: killed".to_owned(),
        };
        self.log
            .insert_one(doc! {
                "jobName": job, "command": command, "err": err,
                "output": String::from_utf8_lossy(&output.stdout).into_owned(),
                "planTime": planned.timestamp_millis(), "scheduleTime": scheduled.timestamp_millis(),
                "startTime": started.timestamp_millis(), "endTime": ended.timestamp_millis(),
            })
            .await
            .unwrap();
    }
}

/// The next `count` even seconds at least three seconds from now.
fn even_seconds(count: usize) -> Vec<DateTime<Utc>> {
    let start = Utc::now().timestamp() + 3;
    let first = start + start % 2;
    (0..count)
        .map(|i| DateTime::from_timestamp(first + 2 * i64::try_from(i).unwrap(), 0).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_runs_each_tick_once_and_both_sides_records_read_back() {
    let mut fleet = Fleet::new().await;
    let legacy = GoCrontab {
        etcd: fleet.etcd.clone(),
        keys: fleet.env.keys.clone(),
        log: fleet.log.clone_with_type(),
    };
    for address in ["10.0.0.1", "10.0.0.2"] {
        legacy.register(address).await;
    }
    let workers = [fleet.worker("cf-1", &[]), fleet.worker("cf-2", &[])];
    fleet.registered(&["cf-1", "cf-2"]).await;
    // Three short jobs both fleets run, and one cronfleet holds paused (go-crontab ignores
    // that, so only its workers run it).
    let mut jobs = Vec::new();
    for (name, paused) in [
        ("mix-a", false),
        ("mix-b", false),
        ("mix-c", false),
        ("mix-paused", true),
    ] {
        let command = format!("echo {name}");
        fleet
            .put_job(json!({"name": name, "command": command, "cronExpr": "*/2 * * * * *", "paused": paused, "version": 1}))
            .await;
        jobs.push((name.to_owned(), command));
    }
    let ticks = even_seconds(10);
    // Two go-crontab workers would race each other for the paused job's short runs (go-crontab
    // releases its lock the moment a run ends); one of them runs it.
    let active: Vec<_> = jobs
        .iter()
        .filter(|(name, _)| name != "mix-paused")
        .cloned()
        .collect();
    let emulators =
        [jobs.clone(), active].map(|jobs| tokio::spawn(legacy.clone().run(jobs, ticks.clone())));
    for emulator in emulators {
        emulator.await.unwrap();
    }
    // cronfleet writes one record for each tick of its active jobs (a run, or a skip when
    // go-crontab held the lock), whichever worker took it.
    let planned: Vec<i64> = ticks.iter().map(DateTime::timestamp_millis).collect();
    let raw: Collection<Document> = fleet.log.clone_with_type();
    wait_until(
        Duration::from_secs(20),
        "a cronfleet record for every tick",
        || {
            let raw = raw.clone();
            let planned = planned.clone();
            async move {
                let found: Vec<Document> = raw
                    .find(doc! { "runId": { "$type": "string" }, "planTime": { "$in": &planned } })
                    .await
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap();
                found.len() >= planned.len() * 3
            }
        },
    )
    .await;
    let documents: Vec<Document> = raw
        .find(doc! { "planTime": { "$in": &planned } })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut runs: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for d in &documents {
        let key = (
            d.get_str("jobName").unwrap().to_owned(),
            d.get_i64("planTime").unwrap(),
        );
        let by = match d.get_str("status") {
            Ok("succeeded") => "cronfleet",
            Ok(_) => continue,
            Err(_) => "go-crontab",
        };
        runs.entry(key).or_default().push(by.to_owned());
    }
    for (name, _) in &jobs {
        for tick in &planned {
            let ran = runs
                .get(&(name.clone(), *tick))
                .cloned()
                .unwrap_or_default();
            assert_eq!(ran.len(), 1, "{name} at {tick} ran {ran:?}");
        }
    }
    let by_side: HashMap<&str, usize> =
        runs.values().flatten().fold(HashMap::new(), |mut m, by| {
            *m.entry(by.as_str()).or_default() += 1;
            m
        });
    assert_eq!(
        by_side.get("go-crontab"),
        Some(&10),
        "only the paused job's ticks: {by_side:?}"
    );
    assert_eq!(by_side.get("cronfleet"), Some(&30), "{by_side:?}");
    for record in documents
        .iter()
        .filter(|d| d.get_str("status") == Ok("succeeded"))
    {
        assert!(
            record.get_i64("scheduleTime").unwrap() >= record.get_i64("planTime").unwrap(),
            "scheduleTime is when the run was dispatched, not before its tick: {record}"
        );
    }

    // Both sides' records read back through the master's read side, as the API shows them.
    let mut args = fleet.env.master_args();
    args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let cli = cronfleet_master::config::Cli::try_parse_from(args).unwrap();
    let services = cronfleet_master::Services::connect(&cli.config)
        .await
        .unwrap();
    let reads = services.app_state().reads;
    for (name, legacy_runs) in [("mix-a", false), ("mix-paused", true)] {
        let page = reads
            .executions(&JobName::parse(name).unwrap(), None, 50)
            .await
            .unwrap();
        let in_window: Vec<_> = page
            .runs
            .iter()
            .filter(|run| planned.contains(&run.record.plan_time))
            .collect();
        assert_eq!(in_window.len(), 10, "{name}: {in_window:#?}");
        assert!(
            in_window.iter().all(|run| run.legacy == legacy_runs),
            "{name}"
        );
        assert!(in_window
            .iter()
            .all(|run| run.record.output == format!("{name}\n")));
    }
    for worker in workers {
        assert_eq!(worker.stop().await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_nobody_here_started_go_unrecorded_while_go_crontab_workers_are_registered() {
    let mut fleet = Fleet::new().await;
    let legacy = GoCrontab {
        etcd: fleet.etcd.clone(),
        keys: fleet.env.keys.clone(),
        log: fleet.log.clone_with_type(),
    };
    legacy.register("10.0.0.3").await;
    let port = cronfleet_common::testkit::free_port();
    let metrics = [("CRON_METRICS_LISTEN", port.to_string())];
    let env: Vec<(&str, &str)> = metrics.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = fleet.worker("before", &env);
    fleet.registered(&["before"]).await;
    fleet
        .put_job(json!({"name": "gap", "command": "true", "cronExpr": "* * * * * *", "version": 1}))
        .await;
    fleet
        .wait_for_records(
            "gap",
            Duration::from_secs(10),
            "runs before the gap",
            |r| r.fencing_token > 0,
            2,
        )
        .await;
    assert_eq!(first.stop().await, 0);
    // A gap of four ticks with no cronfleet worker.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let second = fleet.worker("after", &env);
    fleet
        .wait_for_records(
            "gap",
            Duration::from_secs(10),
            "a run after the gap",
            |r| r.worker_id == "after",
            1,
        )
        .await;
    let unrecorded = metric_sum(
        &scrape(port).await,
        "cronfleet_worker_ticks_unrecorded_total",
    );
    assert_eq!(second.stop().await, 0);
    let records = fleet.records("gap").await;
    assert!(
        records
            .iter()
            .all(|r| r.status != cronfleet_common::RunStatus::Missed),
        "{records:#?}"
    );
    assert!(unrecorded >= 2.0, "{unrecorded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_crontab_job_named_with_spaces_and_letters_runs_under_bash_with_its_name() {
    let mut fleet = Fleet::new().await;
    let worker = fleet.worker("names", &[]);
    fleet.registered(&["names"]).await;
    let name = "nightly backup — café";
    fleet
        .put_job(json!({"name": name, "command": "[[ -n $BASH_VERSION ]] && printf '%s' \"$CRON_JOB_NAME\"", "cronExpr": "* * * * * * *"}))
        .await;
    let records = fleet
        .wait_for_records(
            name,
            Duration::from_secs(10),
            "a run",
            |r| r.fencing_token > 0,
            1,
        )
        .await;
    let run = records.iter().find(|r| r.fencing_token > 0).unwrap();
    assert_eq!(
        run.status,
        cronfleet_common::RunStatus::Succeeded,
        "{run:?}"
    );
    assert_eq!(run.output, name);
    assert_eq!(worker.stop().await, 0);
}
