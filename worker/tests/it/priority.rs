//! A worker process yields the CPU to its runs: its own threads run below them, and its runs
//! keep the nice value the worker was started with.

use std::time::Duration;

use crate::support::Fleet;
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
