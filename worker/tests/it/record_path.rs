//! The record path on a full disk with MongoDB down: records wait in memory, the worker stops
//! claiming and says so, and when MongoDB is back every tick has its record and the worker
//! claims again by itself.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::support::{
    free_port, metric_sum, scrape, starts_per_tick, wait_until, Fleet, PrivateMongo,
};
use cronfleet_common::{MissReason, RunStatus};
use serde_json::json;

/// A 64 KiB tmpfs, unmounted when dropped.
struct TinyDisk(std::path::PathBuf);

impl TinyDisk {
    fn mount(path: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount(8)");
        assert!(
            status.success(),
            "mounting a 64 KiB tmpfs needs root (compose/test runs as root)"
        );
        Self(path)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_with_mongo_down_holds_claims_and_loses_no_record() {
    let mut fleet = Fleet::new().await;
    let mut mongo = PrivateMongo::start(&fleet.dir).await;
    fleet.log = mongodb::Client::with_uri_str(mongo.url())
        .await
        .unwrap()
        .database(&fleet.env.mongo_db)
        .collection("log");
    let _disk = TinyDisk::mount(fleet.dir.join("spool-w"));
    let port = free_port();
    let worker = fleet.worker_with_mongo(
        "w",
        &mongo.url(),
        &[("CRON_METRICS_LISTEN", &port.to_string())],
    );
    fleet.registered(&["w"]).await;
    // About 4 KB of output a second: sixteen records fill the disk.
    fleet
        .put_job(json!({
            "name": "chatty",
            "command": "yes x | head -c 4000",
            "cronExpr": "* * * * * *",
        }))
        .await;
    fleet
        .wait_for_records(
            "chatty",
            Duration::from_secs(15),
            "records before the outage",
            |r| r.status == RunStatus::Succeeded && r.output.len() >= 4000,
            3,
        )
        .await;

    mongo.stop();
    let outage_start = chrono::Utc::now().timestamp_millis();
    wait_until(
        Duration::from_secs(60),
        "the worker to hold its claims",
        || async move {
            let text = scrape(port).await;
            metric_sum(&text, "cronfleet_worker_claiming") == 0.0
                && text.contains("cronfleet_worker_hold{reason=\"records_blocked\"} 1")
        },
    )
    .await;
    let held_at = chrono::Utc::now().timestamp_millis();
    let registration = fleet
        .get(&fleet.env.keys.worker("w"))
        .await
        .expect("registered");
    assert_eq!(registration["holds"], json!(["records_blocked"]));
    // Held for a while: its ticks are recorded as missed, not run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let outage_end = chrono::Utc::now().timestamp_millis();
    mongo.restart().await;

    wait_until(
        Duration::from_secs(30),
        "the worker to claim again",
        || async move { metric_sum(&scrape(port).await, "cronfleet_worker_claiming") == 1.0 },
    )
    .await;
    fleet
        .wait_for_records(
            "chatty",
            Duration::from_secs(20),
            "runs after the outage",
            |r| r.status == RunStatus::Succeeded && r.plan_time > outage_end + 2_000,
            2,
        )
        .await;
    let started = metric_sum(&scrape(port).await, "cronfleet_worker_ticks_started_total");
    assert_eq!(worker.stop().await, 0);

    let records = fleet.records("chatty").await;
    assert!(
        starts_per_tick(&records).values().all(|n| *n == 1),
        "a tick started twice"
    );
    let ran = records.iter().filter(|r| r.fencing_token > 0).count();
    assert!(
        ran as f64 >= started,
        "the worker started {started} runs but only {ran} records of runs reached MongoDB"
    );
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for record in &records {
        *per_second.entry(record.plan_time).or_default() += 1;
    }
    let (first, last) = (
        *per_second.keys().next().unwrap(),
        *per_second.keys().last().unwrap(),
    );
    for second in (first..=last).step_by(1000) {
        assert_eq!(
            per_second.get(&second).copied().unwrap_or(0),
            1,
            "the tick at {second} (outage {outage_start}..{outage_end}) has no single record"
        );
    }
    // A tick's deadline here is 1 s (its interval): the ticks whose deadline passed while the
    // claims were held; a later one may still run once the worker claims again.
    let held: Vec<_> = records
        .iter()
        .filter(|r| r.plan_time > held_at + 1_000 && r.plan_time + 1_000 < outage_end)
        .map(|r| (r.status, r.reason))
        .collect();
    assert!(!held.is_empty());
    assert!(
        held.iter()
            .all(|s| *s == (RunStatus::Missed, Some(MissReason::NoWorker))),
        "ticks while the only worker held its claims are missed with no_worker: {held:?}"
    );
}
