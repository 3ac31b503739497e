//! A fleet on a 3-member etcd cluster whose leader is killed: runs resume within 3 s on the
//! live members, no tick starts twice, every second has its record, and a `forbid` job's lock
//! is not left behind.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{starts_per_tick, Fleet};
use chrono::Utc;
use cronfleet_common::testkit::EtcdCluster;
use cronfleet_common::{Keys, RunStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_leader_pauses_runs_for_less_than_3_seconds() {
    let mut fleet = Fleet::new().await;
    let mut etcd = EtcdCluster::start(&fleet.dir, 3).await;
    fleet.env.etcd_endpoints = etcd.endpoints();
    fleet.env.keys = Keys::default();
    fleet.etcd = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let workers = [fleet.worker("a", &[]), fleet.worker("b", &[])];
    fleet.registered(&["a", "b"]).await;
    for (name, concurrency) in [("forbid", "forbid"), ("allow", "allow")] {
        fleet
            .put_job(serde_json::json!({
                "name": name,
                "command": "echo tick",
                "cronExpr": "* * * * * *",
                "concurrency": concurrency,
            }))
            .await;
    }
    for job in ["forbid", "allow"] {
        fleet
            .wait_for_records(
                job,
                Duration::from_secs(20),
                "runs before the kill",
                |r| r.status == RunStatus::Succeeded,
                3,
            )
            .await;
    }

    let leader = etcd.leader().await;
    let killed_at = Utc::now().timestamp_millis();
    etcd.kill(leader);
    // Runs must resume within 3 s of the kill; watch for 10 s more.
    let resumed_by = killed_at + 3_000;
    let until = killed_at + 13_000;
    for job in ["forbid", "allow"] {
        fleet
            .wait_for_records(
                job,
                Duration::from_secs(30),
                "ten seconds of runs after the kill",
                |r| r.status == RunStatus::Succeeded && r.plan_time >= until,
                1,
            )
            .await;
    }
    for worker in workers {
        assert_eq!(worker.stop().await, 0);
    }

    for job in ["forbid", "allow"] {
        let records = fleet.records(job).await;
        let first = records.iter().map(|r| r.plan_time).min().unwrap();
        let mut per_second: BTreeMap<i64, Vec<RunStatus>> = BTreeMap::new();
        for record in &records {
            per_second
                .entry(record.plan_time)
                .or_default()
                .push(record.status);
        }
        let mut second = first;
        while second < until {
            let statuses = per_second.get(&second).cloned().unwrap_or_default();
            assert_eq!(
                statuses.len(),
                1,
                "{job}: the tick at {second} (kill at {killed_at}) has {statuses:?}"
            );
            if second >= resumed_by {
                assert_eq!(
                    statuses[0],
                    RunStatus::Succeeded,
                    "{job}: the tick at {second}, {} ms after the leader was killed, did not run",
                    second - killed_at
                );
            }
            second += 1_000;
        }
        assert!(
            starts_per_tick(&records).values().all(|n| *n == 1),
            "{job}: a tick started twice"
        );
    }
}
