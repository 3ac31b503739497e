//! A worker process yields the CPU to its runs: its own threads run below them, and its runs
//! keep the nice value the worker was started with.

use std::time::Duration;

use crate::support::{wait_until, Fleet};
use cronfleet_common::RunStatus;
use serde_json::json;

/// Field 19 of `/proc/<pid>/stat`: the nice value.
fn nice_of(pid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(16).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_below_its_runs_which_keep_its_starting_nice_value() {
    let mut fleet = Fleet::new().await;
    let worker = fleet.worker("yielding", &[]);
    fleet.registered(&["yielding"]).await;
    // The shell's nice value, and its supervisor's parent's parent's: the worker's.
    fleet
        .put_job(json!({
            "name": "nices",
            "command": "p=$(cut -d' ' -f4 /proc/$$/stat); s=$(cut -d' ' -f4 /proc/$p/stat); \
                        w=$(cut -d' ' -f4 /proc/$s/stat); \
                        echo $(cut -d' ' -f19 /proc/$$/stat) $(cut -d' ' -f19 /proc/$w/stat) $w",
            "cronExpr": "* * * * * *",
        }))
        .await;
    let records = fleet
        .wait_for_records(
            "nices",
            Duration::from_secs(10),
            "a run",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    let started_with = nice_of(std::process::id());
    let seen: Vec<i64> = records[0]
        .output
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        seen,
        [
            i64::from(started_with),
            i64::from(started_with + cronfleet_worker::priority::WORKER_YIELD),
            i64::from(worker.child.id()),
        ],
        "{records:#?}"
    );
    assert_eq!(worker.stop().await, 0);
}

/// Runs that take every core do not starve the worker that yields to them: its lease holds
/// throughout, their run ends as it should, and the other jobs' ticks still start each second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_its_lease_while_its_runs_take_every_core() {
    let mut fleet = Fleet::new().await;
    let worker = fleet.worker("saturated", &[]);
    fleet.registered(&["saturated"]).await;
    // Four busy loops on two cores for 6 s, once.
    fleet
        .put_job(json!({
            "name": "hogs",
            "command": "for i in 1 2 3 4; do timeout 6 sh -c 'while :; do :; done' & done; wait; echo done",
            "cronExpr": "* * * * * *",
            "concurrency": "forbid",
        }))
        .await;
    let registration = fleet.env.keys.worker("saturated");
    wait_until(Duration::from_secs(10), "the hogs to run", || async {
        crate::support::processes_mentioning("while :; do :; done") >= 4
    })
    .await;
    fleet
        .put_job(json!({"name": "ticker", "command": "true", "cronExpr": "* * * * * *"}))
        .await;
    let saturated_until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < saturated_until {
        assert!(
            fleet.get(&registration).await.is_some(),
            "the worker's lease ran out while its runs took every core"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fleet
        .put_job(
            json!({"name": "hogs", "command": "true", "cronExpr": "* * * * * *", "paused": true}),
        )
        .await;
    fleet
        .put_job(
            json!({"name": "ticker", "command": "true", "cronExpr": "* * * * * *", "paused": true}),
        )
        .await;
    let hogs = fleet
        .wait_for_records(
            "hogs",
            Duration::from_secs(15),
            "the hogs' run to end",
            |r| r.output == "done\n",
            1,
        )
        .await;
    let ended: Vec<_> = hogs.iter().filter(|r| r.output == "done\n").collect();
    assert_eq!(ended[0].status, RunStatus::Succeeded, "{hogs:#?}");
    fleet
        .wait_for_records(
            "ticker",
            Duration::from_secs(10),
            "ticks run under load",
            |r| r.status == RunStatus::Succeeded,
            3,
        )
        .await;
    assert_eq!(worker.stop().await, 0);
}
