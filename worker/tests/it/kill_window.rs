//! A kill request that lands after a tick was claimed but before its process started (the
//! claim is made ahead of the planned time, and a broadcast run registers after its claim txn)
//! still stops that run: no claimed run escapes a kill written after its claim.

use std::time::Duration;

use crate::support::Fleet;
use chrono::{Timelike, Utc};
use cronfleet_common::{JobName, RunStatus};
use etcd_client::{EventType, WatchOptions};
use serde_json::json;

/// Puts `job`, waits for `runs` claims to appear under `claims` (the lock of a `forbid` job,
/// `runs/<job>/` otherwise), kills the job at once and expects every run killed on request.
async fn kill_as_soon_as_claimed(
    fleet: &mut Fleet,
    job: serde_json::Value,
    claims: String,
    runs: usize,
) {
    let name = JobName::parse(job["name"].as_str().unwrap()).unwrap();
    let mut etcd = fleet.etcd.clone();
    let mut stream = etcd
        .watch(claims, Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    fleet.put_job(job).await;
    let mut seen = 0;
    while seen < runs {
        let answer = tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .expect("the tick was claimed")
            .unwrap()
            .unwrap();
        seen += answer
            .events()
            .iter()
            .filter(|e| e.event_type() == EventType::Put)
            .count();
    }
    fleet
        .put(fleet.env.keys.killer(&name), "{\"requestId\":\"k\"}")
        .await;
    let records = fleet
        .wait_for_records(
            name.as_str(),
            Duration::from_secs(15),
            "the runs killed as they started",
            |r| r.status == RunStatus::Killed,
            runs,
        )
        .await;
    assert!(
        records.iter().all(|r| r.err == "killed on request"),
        "{records:#?}"
    );
}

fn in_two_seconds() -> String {
    let at = Utc::now() + chrono::TimeDelta::seconds(2);
    format!("{} {} * * * *", at.second(), at.minute())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_an_early_claim_and_the_planned_time_stops_the_run() {
    let mut fleet = Fleet::new().await;
    let _worker = fleet.worker("early", &[]);
    fleet.registered(&["early"]).await;
    let job = json!({"name": "claimed early", "command": "sleep 60", "cronExpr": in_two_seconds()});
    let lock = fleet
        .env
        .keys
        .lock(&JobName::parse("claimed early").unwrap());
    kill_as_soon_as_claimed(&mut fleet, job, lock, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_right_after_broadcast_claims_stops_every_run() {
    let mut fleet = Fleet::new().await;
    let _workers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| fleet.worker(id, &[]))
        .collect();
    fleet.registered(&["a", "b", "c"]).await;
    let job = json!({"name": "claimed everywhere", "command": "sleep 60",
        "cronExpr": in_two_seconds(), "mode": "all"});
    let runs = fleet
        .env
        .keys
        .job_runs(&JobName::parse("claimed everywhere").unwrap());
    kill_as_soon_as_claimed(&mut fleet, job, runs, 3).await;
}
