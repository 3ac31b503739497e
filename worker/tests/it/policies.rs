//! Run policies against real etcd and the MongoDB-wire server, with several worker processes:
//! retries with backoff, a next attempt after its worker died, selectors, runs on every
//! worker, and working directories.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{Timelike, Utc};
use cronfleet_common::{ExecutionRecord, JobName, MissReason, RunStatus};
use serde_json::json;

use crate::support::{wait_until, Fleet};

/// A six-field expression that fires once an hour, `ahead` seconds from now.
fn once_in(ahead: i64) -> String {
    let at = Utc::now() + chrono::TimeDelta::seconds(ahead);
    format!("{} {} * * * *", at.second(), at.minute())
}

/// A command that fails until it has run `n` times, counting in `file`.
fn succeeds_on_run(n: u32, file: &std::path::Path) -> String {
    let file = file.display();
    format!("n=$(( $(cat {file} 2>/dev/null || echo 0) + 1 )); echo $n > {file}; echo attempt $n; [ $n -ge {n} ]")
}

fn attempts_of(records: &[ExecutionRecord]) -> Vec<(u32, RunStatus)> {
    let mut attempts: Vec<(u32, RunStatus)> = records
        .iter()
        .map(|r| (r.attempt.unwrap_or(0), r.status))
        .collect();
    attempts.sort_by_key(|(attempt, _)| *attempt);
    attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tick_is_attempted_again_with_backoff_once_per_attempt_across_workers() {
    let mut fleet = Fleet::new().await;
    let _workers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| fleet.worker(id, &[]))
        .collect();
    fleet.registered(&["a", "b", "c"]).await;
    let counter = fleet.dir.join("retried");
    fleet
        .put_job(json!({
            "name": "flaky", "command": succeeds_on_run(3, &counter), "cronExpr": once_in(3),
            "version": 1,
            "retry": {"maxAttempts": 3, "initialDelaySecs": 1, "maxDelaySecs": 2, "multiplier": 2},
        }))
        .await;
    let records = fleet
        .wait_for_records(
            "flaky",
            Duration::from_secs(20),
            "the third attempt to succeed",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert_eq!(
        attempts_of(&records),
        [
            (1, RunStatus::Failed),
            (2, RunStatus::Failed),
            (3, RunStatus::Succeeded)
        ],
        "{records:#?}"
    );
    let ticks: HashSet<_> = records.iter().map(|r| r.tick_id.clone()).collect();
    assert_eq!(ticks.len(), 1, "one tick: {ticks:?}");
    assert!(records.iter().all(|r| r.plan_time == records[0].plan_time));
    let tokens: HashSet<i64> = records.iter().map(|r| r.fencing_token).collect();
    assert_eq!(tokens.len(), 3, "each attempt has its own fencing token");
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
    let mut by_attempt = records.clone();
    by_attempt.sort_by_key(|r| r.attempt);
    // Delays: 1 s and 2 s, each within -20 %/+20 % jitter (the second capped at 2 s), plus
    // the claim's round trip.
    let gap = |i: usize| by_attempt[i + 1].start_time - by_attempt[i].end_time;
    assert!((800..=1_700).contains(&gap(0)), "first delay {} ms", gap(0));
    assert!(
        (1_600..=2_500).contains(&gap(1)),
        "second delay {} ms",
        gap(1)
    );
    // Nothing more comes: the chain ended with the success.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fleet.records("flaky").await.len(), 3);
    let name = JobName::parse("flaky").unwrap();
    assert!(fleet.get(&fleet.env.keys.retry(&name)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_attempt_runs_on_another_worker_when_its_worker_died() {
    let mut fleet = Fleet::new().await;
    let mut workers: HashMap<String, _> = ["a", "b", "c"]
        .iter()
        .map(|id| ((*id).to_owned(), fleet.worker(id, &[])))
        .collect();
    fleet.registered(&["a", "b", "c"]).await;
    let counter = fleet.dir.join("survived");
    fleet
        .put_job(json!({
            "name": "survivor", "command": succeeds_on_run(2, &counter), "cronExpr": once_in(3),
            "version": 1, "retry": {"maxAttempts": 2, "initialDelaySecs": 4},
        }))
        .await;
    let first = fleet
        .wait_for_records(
            "survivor",
            Duration::from_secs(15),
            "the first attempt to fail",
            |r| r.status == RunStatus::Failed,
            1,
        )
        .await;
    let first = first[0].clone();
    let name = JobName::parse("survivor").unwrap();
    let chain = fleet.get(&fleet.env.keys.retry(&name)).await.unwrap();
    assert_eq!(chain["pending"], true, "{chain}");
    assert_eq!(chain["attempt"], 2, "{chain}");
    workers.remove(&first.worker_id).unwrap().crash();
    let records = fleet
        .wait_for_records(
            "survivor",
            Duration::from_secs(20),
            "the second attempt on a survivor",
            |r| r.attempt == Some(2),
            1,
        )
        .await;
    let second = records.iter().find(|r| r.attempt == Some(2)).unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{records:#?}");
    assert_ne!(second.worker_id, first.worker_id);
    assert_eq!(second.tick_id, first.tick_id);
    assert_eq!(records.len(), 2, "{records:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_sends_ticks_to_the_one_matching_worker_and_none_are_missed_silently() {
    let mut fleet = Fleet::new().await;
    let _workers = [
        fleet.worker("plain-1", &[]),
        fleet.worker("eu", &[("CRON_WORKER_LABELS", "zone=eu,disk=ssd")]),
        fleet.worker("plain-2", &[("CRON_WORKER_LABELS", "zone=us")]),
    ];
    fleet.registered(&["plain-1", "eu", "plain-2"]).await;
    fleet
        .put_job(
            json!({"name": "eu-only", "command": "true", "cronExpr": "* * * * * *",
            "version": 1, "selector": {"zone": ["eu", "eu-2"], "disk": "ssd"}}),
        )
        .await;
    fleet
        .put_job(
            json!({"name": "on-mars", "command": "true", "cronExpr": "* * * * * *",
            "version": 1, "selector": {"zone": "mars"}}),
        )
        .await;
    let routed = fleet
        .wait_for_records(
            "eu-only",
            Duration::from_secs(15),
            "five runs",
            |r| r.status == RunStatus::Succeeded,
            5,
        )
        .await;
    assert!(routed.iter().all(|r| r.worker_id == "eu"), "{routed:#?}");
    let missed = fleet
        .wait_for_records(
            "on-mars",
            Duration::from_secs(15),
            "missed ticks",
            |r| r.reason == Some(MissReason::NoMatchingWorker),
            3,
        )
        .await;
    assert!(
        missed.iter().all(
            |r| r.status == RunStatus::Missed && r.reason == Some(MissReason::NoMatchingWorker)
        ),
        "{missed:#?}"
    );
    let ticks: HashSet<i64> = missed.iter().map(|r| r.plan_time).collect();
    assert_eq!(ticks.len(), missed.len(), "one record per tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_on_every_worker_runs_each_tick_once_on_each_and_kill_stops_them_all() {
    let mut fleet = Fleet::new().await;
    let _workers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| fleet.worker(id, &[]))
        .collect();
    fleet.registered(&["a", "b", "c"]).await;
    fleet
        .put_job(
            json!({"name": "everywhere", "command": "echo $CRON_RUN_ID", "cronExpr": "* * * * * *",
            "version": 1, "mode": "all"}),
        )
        .await;
    // Records arrive run by run: a tick may show fewer than three so far, never more.
    let records = fleet
        .wait_for_records(
            "everywhere",
            Duration::from_secs(20),
            "six ticks' worth of runs",
            |r| r.status == RunStatus::Succeeded,
            18,
        )
        .await;
    fleet
        .put_job(
            json!({"name": "everywhere", "command": "true", "cronExpr": "* * * * * *",
            "version": 2, "mode": "all", "paused": true}),
        )
        .await;
    let mut per_tick: HashMap<i64, Vec<&ExecutionRecord>> = HashMap::new();
    for record in &records {
        per_tick.entry(record.plan_time).or_default().push(record);
    }
    for (tick, runs) in &per_tick {
        let workers: HashSet<&str> = runs.iter().map(|r| r.worker_id.as_str()).collect();
        assert_eq!(workers.len(), runs.len(), "a worker ran tick {tick} twice");
        let ids: HashSet<_> = runs.iter().map(|r| r.tick_id.clone()).collect();
        assert_eq!(ids.len(), 1, "one tick id per tick");
    }
    let full = per_tick.values().filter(|runs| runs.len() == 3).count();
    assert!(full >= 3, "ticks run on all three: {full}; {per_tick:#?}");

    fleet
        .put_job(
            json!({"name": "long everywhere", "command": "sleep 60", "cronExpr": once_in(2),
            "version": 1, "mode": "all"}),
        )
        .await;
    let name = JobName::parse("long everywhere").unwrap();
    let runs = fleet.env.keys.job_runs(&name);
    let mut etcd = fleet.etcd.clone();
    wait_until(Duration::from_secs(15), "three runs", || {
        let (mut etcd, runs) = (etcd.clone(), runs.clone());
        async move {
            let found = etcd
                .get(runs, Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .unwrap();
            found.kvs().len() == 3
        }
    })
    .await;
    etcd.put(fleet.env.keys.killer(&name), r#"{"requestId":"all"}"#, None)
        .await
        .unwrap();
    let killed = fleet
        .wait_for_records(
            "long everywhere",
            Duration::from_secs(15),
            "three killed runs",
            |r| r.status == RunStatus::Killed,
            3,
        )
        .await;
    let workers: HashSet<&str> = killed.iter().map(|r| r.worker_id.as_str()).collect();
    assert_eq!(workers.len(), 3, "{killed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_starts_in_its_working_directory_and_a_missing_one_fails_to_start() {
    let mut fleet = Fleet::new().await;
    let _worker = fleet.worker("solo", &[]);
    fleet.registered(&["solo"]).await;
    let dir = fleet.dir.join("work dir");
    std::fs::create_dir_all(&dir).unwrap();
    fleet
        .put_job(
            json!({"name": "in-dir", "command": "pwd", "cronExpr": "* * * * * *",
            "version": 1, "workingDir": dir}),
        )
        .await;
    fleet
        .put_job(
            json!({"name": "no-dir", "command": "pwd", "cronExpr": "* * * * * *",
            "version": 1, "workingDir": "/nonexistent/cronfleet"}),
        )
        .await;
    let ran = fleet
        .wait_for_records("in-dir", Duration::from_secs(10), "a run", |_| true, 1)
        .await;
    assert_eq!(ran[0].status, RunStatus::Succeeded, "{ran:#?}");
    assert_eq!(ran[0].output, format!("{}\n", dir.display()));
    let failed = fleet
        .wait_for_records("no-dir", Duration::from_secs(10), "a run", |_| true, 1)
        .await;
    assert_eq!(failed[0].status, RunStatus::FailedToStart, "{failed:#?}");
    assert!(
        failed[0]
            .err
            .contains("the working directory /nonexistent/cronfleet does not exist"),
        "{}",
        failed[0].err
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_request_between_attempts_ends_the_tick() {
    let mut fleet = Fleet::new().await;
    let _workers = [fleet.worker("a", &[]), fleet.worker("b", &[])];
    fleet.registered(&["a", "b"]).await;
    fleet
        .put_job(json!({
            "name": "doomed", "command": "exit 3", "cronExpr": once_in(3),
            "version": 1, "retry": {"maxAttempts": 3, "initialDelaySecs": 4},
        }))
        .await;
    fleet
        .wait_for_records(
            "doomed",
            Duration::from_secs(15),
            "the first attempt to fail",
            |r| r.status == RunStatus::Failed,
            1,
        )
        .await;
    let name = JobName::parse("doomed").unwrap();
    let retry_key = fleet.env.keys.retry(&name);
    let chain = fleet.wait_for_key(&retry_key, Duration::from_secs(5)).await;
    assert_eq!(chain["pending"], true, "{chain}");
    fleet
        .put(fleet.env.keys.killer(&name), r#"{"requestId":"stop"}"#)
        .await;
    let records = fleet
        .wait_for_records(
            "doomed",
            Duration::from_secs(10),
            "the cancelled attempt",
            |r| r.status == RunStatus::Killed,
            1,
        )
        .await;
    let killed = records
        .iter()
        .find(|r| r.status == RunStatus::Killed)
        .unwrap();
    assert_eq!(killed.attempt, Some(2));
    assert!(
        killed.err.contains("before attempt 2 started"),
        "{}",
        killed.err
    );
    assert!(fleet.get(&retry_key).await.is_none());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        fleet.records("doomed").await.len(),
        2,
        "no attempt after the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_forbid_a_tick_due_while_an_attempt_waits_is_skipped() {
    let mut fleet = Fleet::new().await;
    let _workers = [fleet.worker("a", &[]), fleet.worker("b", &[])];
    fleet.registered(&["a", "b"]).await;
    let counter = fleet.dir.join("forbid");
    fleet
        .put_job(json!({
            "name": "patient", "command": succeeds_on_run(2, &counter), "cronExpr": "*/2 * * * * *",
            "version": 1, "retry": {"maxAttempts": 2, "initialDelaySecs": 3},
        }))
        .await;
    let records = fleet
        .wait_for_records(
            "patient",
            Duration::from_secs(20),
            "the retried tick to succeed",
            |r| r.attempt == Some(2),
            1,
        )
        .await;
    let first = records
        .iter()
        .find(|r| r.status == RunStatus::Failed)
        .unwrap();
    let second = records.iter().find(|r| r.attempt == Some(2)).unwrap();
    assert_eq!(second.status, RunStatus::Succeeded, "{records:#?}");
    let skipped: Vec<_> = records
        .iter()
        .filter(|r| r.plan_time > first.plan_time && r.plan_time < second.start_time)
        .collect();
    assert!(
        !skipped.is_empty(),
        "a tick fell due meanwhile: {records:#?}"
    );
    assert!(
        skipped.iter().all(|r| r.status == RunStatus::Skipped),
        "{skipped:#?}"
    );
}
