//! Three workers, one of them with a clock 30 s fast: the fast one notices it is the outlier
//! and claims no scheduled tick, so every tick still runs once, within a second of its planned
//! time, on the two correct workers.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{free_port, metric_sum, scrape, starts_per_tick, wait_until, Fleet};
use cronfleet_common::RunStatus;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_clock_is_30_seconds_fast_holds_its_claims() {
    let mut fleet = Fleet::new().await;
    fleet
        .put_job(json!({"name": "on-time", "command": "echo on time", "cronExpr": "* * * * * *"}))
        .await;
    let a = fleet.worker("a", &[]);
    let b = fleet.worker("b", &[]);
    fleet.registered(&["a", "b"]).await;
    fleet
        .wait_for_records(
            "on-time",
            Duration::from_secs(15),
            "runs before the fast worker starts",
            |r| r.status == RunStatus::Succeeded,
            2,
        )
        .await;

    let port = free_port();
    let fast = fleet.worker(
        "fast",
        &[
            ("CRON_TEST_CLOCK_OFFSET_MS", "30000"),
            ("CRON_METRICS_LISTEN", &port.to_string()),
        ],
    );
    let joined = chrono::Utc::now().timestamp_millis();
    fleet.registered(&["fast"]).await;
    wait_until(
        Duration::from_secs(20),
        "the fast worker to hold its claims for its clock",
        || async move {
            let text = scrape(port).await;
            text.contains("cronfleet_worker_hold{reason=\"clock_skew\"} 1")
                && metric_sum(&text, "cronfleet_worker_clock_offset_seconds") < -29.0
        },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the fast worker's registration to say so",
        || {
            let mut etcd = fleet.etcd.clone();
            let key = fleet.env.keys.worker("fast");
            async move {
                let found = etcd.get(key, None).await.unwrap();
                found.kvs().first().is_some_and(|kv| {
                    serde_json::from_slice::<serde_json::Value>(kv.value()).unwrap()["holds"]
                        == json!(["clock_skew"])
                })
            }
        },
    )
    .await;
    // Ten more seconds with the fast worker in the fleet.
    let until = chrono::Utc::now().timestamp_millis() + 10_000;
    fleet
        .wait_for_records(
            "on-time",
            Duration::from_secs(30),
            "ten seconds with the fast worker in the fleet",
            |r| r.plan_time >= until,
            1,
        )
        .await;
    let in_line = fleet.get(&fleet.env.keys.worker("a")).await.unwrap();
    assert_eq!(
        in_line["holds"],
        json!([]),
        "a correct worker holds nothing"
    );
    for worker in [fast, a, b] {
        assert_eq!(worker.stop().await, 0);
    }

    let records = fleet.records("on-time").await;
    assert!(
        starts_per_tick(&records).values().all(|n| *n == 1),
        "a tick started twice"
    );
    let mut per_second: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for record in &records {
        per_second
            .entry(record.plan_time)
            .or_default()
            .push(record.worker_id.as_str());
        assert_ne!(
            record.worker_id, "fast",
            "the fast worker took the tick at {} (it joined at {joined})",
            record.plan_time
        );
        assert_eq!(record.status, RunStatus::Succeeded, "{record:?}");
        let late = record.start_time - record.plan_time;
        assert!(
            (0..1_000).contains(&late),
            "the tick at {} started {late} ms from its planned time",
            record.plan_time
        );
    }
    let (first, last) = (
        *per_second.keys().next().unwrap(),
        *per_second.keys().last().unwrap(),
    );
    for second in (first..=last).step_by(1_000) {
        assert_eq!(
            per_second.get(&second).map_or(0, Vec::len),
            1,
            "the tick at {second} (fast worker joined at {joined})"
        );
    }
}
