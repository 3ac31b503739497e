//! Retries under faults and edits: a worker restarted under the same id during an attempt,
//! a selector changed while an attempt waits, retries removed from the job, and a job deleted
//! outside the master mid-chain. Each once left `retry/<job>` stuck (so a `forbid` job was
//! skipped forever) or ran an attempt where it no longer belonged.

use std::time::Duration;

use chrono::{Timelike, Utc};
use cronfleet_common::{JobName, RunStatus};
use serde_json::json;

use crate::support::{wait_until, Fleet, WorkerProcess};

/// A six-field expression that fires once an hour, `ahead` seconds from now.
fn once_in(ahead: i64) -> String {
    let at = Utc::now() + chrono::TimeDelta::seconds(ahead);
    format!("{} {} * * * *", at.second(), at.minute())
}

/// A command whose first run creates `marker` and hangs; later runs succeed.
fn hangs_first_time(marker: &std::path::Path) -> String {
    let m = marker.display();
    format!("if [ -e '{m}' ]; then echo later; exit 0; fi; touch '{m}'; sleep 30")
}

async fn wait_key_gone(fleet: &Fleet, key: &str, within: Duration) {
    let etcd = fleet.etcd.clone();
    wait_until(within, &format!("{key} to go"), || {
        let (mut etcd, key) = (etcd.clone(), key.to_owned());
        async move { etcd.get(key, None).await.unwrap().kvs().is_empty() }
    })
    .await;
}

/// Kills the worker running the job's first attempt once its shell started, and starts it
/// again at once under the same id, before its old lease expires; returns the new process.
async fn restart_during_first_attempt(
    fleet: &mut Fleet,
    job: &str,
    retry: serde_json::Value,
) -> WorkerProcess {
    let worker = fleet.worker("solo", &[]);
    fleet.registered(&["solo"]).await;
    let marker = fleet.dir.join(format!("{job}-started"));
    fleet
        .put_job(json!({"name": job, "command": hangs_first_time(&marker),
            "cronExpr": once_in(2), "version": 1, "retry": retry}))
        .await;
    wait_until(
        Duration::from_secs(15),
        "the first attempt's shell",
        || async { marker.exists() },
    )
    .await;
    worker.crash();
    fleet.worker("solo", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_whose_worker_restarted_under_its_id_is_abandoned_and_retried() {
    let mut fleet = Fleet::new().await;
    let retry = json!({"maxAttempts": 3, "initialDelaySecs": 1, "alsoOn": ["abandoned"]});
    let _worker = restart_during_first_attempt(&mut fleet, "restarted", retry).await;
    let records = fleet
        .wait_for_records(
            "restarted",
            Duration::from_secs(20),
            "attempt 2 after the restart",
            |r| r.attempt == Some(2) && r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    let first = records.iter().find(|r| r.attempt == Some(1)).unwrap();
    assert_eq!(first.status, RunStatus::Abandoned, "{records:#?}");
    assert_eq!(records.len(), 2, "{records:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_also_on_an_abandoned_attempt_ends_the_chain_and_the_job_runs_on() {
    let mut fleet = Fleet::new().await;
    let retry = json!({"maxAttempts": 3, "initialDelaySecs": 1});
    let _worker = restart_during_first_attempt(&mut fleet, "ended", retry.clone()).await;
    let name = JobName::parse("ended").unwrap();
    wait_key_gone(
        &fleet,
        &fleet.env.keys.retry(&name),
        Duration::from_secs(15),
    )
    .await;
    fleet
        .wait_for_records(
            "ended",
            Duration::from_secs(5),
            "the abandoned record",
            |r| r.status == RunStatus::Abandoned,
            1,
        )
        .await;
    fleet
        .put_job(
            json!({"name": "ended", "command": "true", "cronExpr": "* * * * * *",
            "version": 2, "retry": retry}),
        )
        .await;
    fleet
        .wait_for_records(
            "ended",
            Duration::from_secs(10),
            "the job to run again",
            |r| r.status == RunStatus::Succeeded,
            2,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_attempt_follows_a_changed_selector() {
    let mut fleet = Fleet::new().await;
    let _workers = [
        fleet.worker("in-a", &[("CRON_WORKER_LABELS", "zone=a")]),
        fleet.worker("in-b", &[("CRON_WORKER_LABELS", "zone=b")]),
    ];
    fleet.registered(&["in-a", "in-b"]).await;
    let cron = once_in(2);
    let spec = |version: u64, zone: &str| {
        json!({"name": "moving", "command": "exit 1", "cronExpr": cron, "version": version,
            "selector": {"zone": zone}, "retry": {"maxAttempts": 2, "initialDelaySecs": 4}})
    };
    fleet.put_job(spec(1, "a")).await;
    let first = fleet
        .wait_for_records("moving", Duration::from_secs(15), "attempt 1", |_| true, 1)
        .await;
    assert_eq!(first[0].worker_id, "in-a", "{first:#?}");
    fleet.put_job(spec(2, "b")).await;
    let records = fleet
        .wait_for_records(
            "moving",
            Duration::from_secs(20),
            "attempt 2",
            |r| r.attempt == Some(2),
            1,
        )
        .await;
    let second = records.iter().find(|r| r.attempt == Some(2)).unwrap();
    assert_eq!(second.worker_id, "in-b", "{records:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_retries_ends_a_pending_chain_and_deleting_a_job_outside_the_master_too() {
    let mut fleet = Fleet::new().await;
    let _workers = [fleet.worker("a", &[]), fleet.worker("b", &[])];
    fleet.registered(&["a", "b"]).await;
    let cron = once_in(2);
    for name in ["unretried", "reborn"] {
        fleet
            .put_job(json!({"name": name, "command": "exit 1", "cronExpr": cron,
                "version": 1, "retry": {"maxAttempts": 3, "initialDelaySecs": 30}}))
            .await;
    }
    for name in ["unretried", "reborn"] {
        let key = fleet.env.keys.retry(&JobName::parse(name).unwrap());
        wait_until(Duration::from_secs(15), "a pending attempt", || {
            let (mut etcd, key) = (fleet.etcd.clone(), key.clone());
            async move {
                let found = etcd.get(key, None).await.unwrap();
                found.kvs().first().is_some_and(|kv| {
                    serde_json::from_slice::<serde_json::Value>(kv.value()).unwrap()["pending"]
                        == true
                })
            }
        })
        .await;
    }
    fleet
        .put_job(json!({"name": "unretried", "command": "exit 1", "cronExpr": cron, "version": 2}))
        .await;
    let reborn = JobName::parse("reborn").unwrap();
    fleet
        .etcd
        .delete(fleet.env.keys.job(&reborn), None)
        .await
        .unwrap();
    for name in ["unretried", "reborn"] {
        let key = fleet.env.keys.retry(&JobName::parse(name).unwrap());
        wait_key_gone(&fleet, &key, Duration::from_secs(10)).await;
    }
    fleet
        .put_job(
            json!({"name": "reborn", "command": "true", "cronExpr": "* * * * * *",
            "version": 2, "retry": {"maxAttempts": 3, "initialDelaySecs": 30}}),
        )
        .await;
    fleet
        .wait_for_records(
            "reborn",
            Duration::from_secs(10),
            "the job made again to run",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    let unretried = fleet.records("unretried").await;
    assert_eq!(
        unretried.len(),
        1,
        "no attempt after retries were removed: {unretried:#?}"
    );
}
