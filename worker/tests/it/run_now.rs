//! A run-now request written while no worker runs is taken once by the workers that start
//! later: a trigger present in etcd is never dropped because a worker saw it before its
//! session existed.

use std::time::Duration;

use crate::support::{wait_until, Fleet};
use cronfleet_common::{JobName, RunStatus, Trigger};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_now_written_before_any_worker_starts_runs_once() {
    let mut fleet = Fleet::new().await;
    let job = JobName::parse("early").unwrap();
    fleet
        .put_job(json!({"name": "early", "command": "echo early", "cronExpr": "@every 1h"}))
        .await;
    fleet
        .put(fleet.env.keys.trigger(&job), "{\"requestId\":\"r-early\"}")
        .await;
    // Both start at once, each seeing the request in its first snapshot.
    let workers = [fleet.worker("first", &[]), fleet.worker("second", &[])];
    let records = fleet
        .wait_for_records(
            "early",
            Duration::from_secs(20),
            "the run-now written before the workers started",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert_eq!(records[0].trigger, Trigger::Manual);
    let trigger = fleet.env.keys.trigger(&job);
    wait_until(
        Duration::from_secs(10),
        "the request to be consumed",
        || {
            let mut etcd = fleet.etcd.clone();
            let trigger = trigger.clone();
            async move { etcd.get(trigger, None).await.unwrap().kvs().is_empty() }
        },
    )
    .await;
    fleet.registered(&["first", "second"]).await;
    for worker in workers {
        assert_eq!(worker.stop().await, 0);
    }
    assert_eq!(
        fleet.records("early").await.len(),
        1,
        "the request ran exactly once"
    );
}

/// A run-now a chain wrote names the run that set it off; the record of the run it starts,
/// and of every retry of it, carries that run id, the request id and who sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_run_now_records_its_source_run_through_its_retries() {
    let mut fleet = Fleet::new().await;
    let job = JobName::parse("chained").unwrap();
    let _worker = fleet.worker("solo", &[]);
    fleet.registered(&["solo"]).await;
    fleet
        .put_job(
            json!({"name": "chained", "command": "exit 1", "cronExpr": "@every 1h",
            "retry": {"maxAttempts": 2, "initialDelaySecs": 1}}),
        )
        .await;
    fleet
        .put(
            fleet.env.keys.trigger(&job),
            "{\"requestId\":\"r-chain\",\"seq\":1,\"sourceRunId\":\"upstream-run-1\",\"actor\":\"chain: up\"}",
        )
        .await;
    let records = fleet
        .wait_for_records(
            "chained",
            Duration::from_secs(20),
            "both attempts of the chained run",
            |r| r.status == RunStatus::Failed,
            2,
        )
        .await;
    assert_eq!(records.len(), 2, "{records:#?}");
    for record in &records {
        assert_eq!(record.trigger, Trigger::Manual);
        assert_eq!(record.source_run_id.as_deref(), Some("upstream-run-1"));
        assert_eq!(record.request_id.as_deref(), Some("r-chain"));
        assert_eq!(record.requested_by.as_deref(), Some("chain: up"));
    }
}
