//! Capacity against real etcd and the MongoDB-wire server: more ticks due at once than a
//! worker has slots, and slots held past a tick's deadline. Every planned tick must end with
//! exactly one record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::support::{free_port, metric_sum, scrape, wait_until, Fleet};
use cronfleet_common::{ExecutionRecord, JobName, MissReason, RunStatus};
use futures_util::TryStreamExt;
use mongodb::bson::doc;
use serde_json::json;

const JOBS: usize = 24;

fn job(i: usize) -> String {
    format!("burst-{i:02}")
}

async fn all_records(fleet: &Fleet) -> Vec<ExecutionRecord> {
    fleet
        .log
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Records per planned time, for the burst jobs.
fn by_tick(records: &[ExecutionRecord]) -> BTreeMap<i64, Vec<&ExecutionRecord>> {
    let mut ticks: BTreeMap<i64, Vec<&ExecutionRecord>> = BTreeMap::new();
    for record in records.iter().filter(|r| r.job_name.starts_with("burst-")) {
        ticks.entry(record.plan_time).or_default().push(record);
    }
    ticks
}

/// Most runs a worker had going at one instant, from the records' start and end times.
fn most_at_once(records: &[&ExecutionRecord]) -> usize {
    let mut edges: Vec<(i64, i32)> = records
        .iter()
        .flat_map(|r| [(r.start_time, 1), (r.end_time, -1)])
        .collect();
    edges.sort_unstable_by_key(|(at, delta)| (*at, *delta));
    let mut running = 0;
    let mut most = 0;
    for (_, delta) in edges {
        running += delta;
        most = most.max(running);
    }
    usize::try_from(most).unwrap()
}

/// `JOBS` jobs all due on the same even second, each running 0.2 s, on `workers` workers of
/// 4 slots: far more than one worker's slots at once, well within what the fleet can start
/// before the 2 s deadline (one worker: six waves, 1.2 s). Every tick of every round must run
/// exactly once.
async fn burst(workers: &[&str]) -> (Vec<ExecutionRecord>, Vec<String>) {
    let mut fleet = Fleet::new().await;
    let ports: Vec<u16> = workers.iter().map(|_| free_port()).collect();
    let processes: Vec<_> = workers
        .iter()
        .zip(&ports)
        .map(|(id, port)| {
            fleet.worker(
                id,
                &[
                    ("CRON_WORKER_SLOTS", "4"),
                    ("CRON_METRICS_LISTEN", &port.to_string()),
                ],
            )
        })
        .collect();
    fleet.registered(workers).await;
    for i in 0..JOBS {
        fleet
            .put_job(json!({"name": job(i), "command": "sleep 0.2", "cronExpr": "*/2 * * * * *"}))
            .await;
    }
    // Four complete rounds, every job recorded in each.
    wait_until(Duration::from_secs(30), "four complete rounds", || async {
        let records = all_records(&fleet).await;
        by_tick(&records)
            .values()
            .filter(|tick| tick.len() >= JOBS)
            .count()
            >= 4
    })
    .await;
    // A round that fell due before the workers had read every job from their watch has only
    // some of them; from the first round the fleet ran in full on, every round must be full.
    let records = all_records(&fleet).await;
    let loaded_at = by_tick(&records)
        .iter()
        .find(|(_, tick)| tick.len() >= JOBS)
        .map(|(planned, _)| planned - 1)
        .unwrap();
    let paused_at = chrono::Utc::now().timestamp_millis();
    for i in 0..JOBS {
        fleet
            .put_job(json!({"name": job(i), "command": "sleep 0.2", "cronExpr": "*/2 * * * * *", "paused": true}))
            .await;
    }
    let mut metrics = Vec::new();
    for port in &ports {
        metrics.push(scrape(*port).await);
    }
    for process in processes {
        assert_eq!(process.stop().await, 0);
    }
    let records = all_records(&fleet).await;
    let ticks = by_tick(&records);
    let first = *ticks.keys().next().unwrap();
    // Rounds whose deadline passed before the pause are settled: one record per job, and
    // with room in the fleet every one of them ran.
    let complete: Vec<i64> = ticks
        .keys()
        .copied()
        .filter(|planned| *planned > loaded_at && planned + 2_000 <= paused_at)
        .collect();
    assert!(complete.len() >= 3, "{:?}", ticks.keys());
    for planned in &complete {
        let round = &ticks[planned];
        let names: BTreeSet<&str> = round.iter().map(|r| r.job_name.as_str()).collect();
        assert_eq!(
            (round.len(), names.len()),
            (JOBS, JOBS),
            "round {planned}: {round:#?}"
        );
        assert!(
            round.iter().all(|r| r.status == RunStatus::Succeeded),
            "round {planned}: {round:#?}"
        );
        assert!(*planned == first || planned - first >= 2_000);
    }
    // No tick of any round, complete or cut by the pause, has two records.
    let mut seen = HashMap::new();
    for record in records.iter().filter(|r| r.job_name.starts_with("burst-")) {
        *seen
            .entry((&record.job_name, record.plan_time))
            .or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    (records, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_runs_more_due_ticks_than_it_has_slots() {
    let (records, metrics) = burst(&["solo"]).await;
    let ran: Vec<&ExecutionRecord> = records.iter().filter(|r| r.fencing_token > 0).collect();
    assert!(
        most_at_once(&ran) <= 4,
        "more runs at once than slots: {}",
        most_at_once(&ran)
    );
    let won = metric_sum(
        &metrics[0],
        "cronfleet_worker_claim_txns_total{result=\"won\"}",
    );
    assert!(won >= ran.len() as f64, "{}", metrics[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shares_a_burst_and_claims_each_tick_about_once() {
    let (records, metrics) = burst(&["share-a", "share-b", "share-c"]).await;
    let ran: Vec<&ExecutionRecord> = records.iter().filter(|r| r.fencing_token > 0).collect();
    let mut per_worker: HashMap<&str, Vec<&ExecutionRecord>> = HashMap::new();
    for record in &ran {
        per_worker
            .entry(record.worker_id.as_str())
            .or_default()
            .push(record);
    }
    assert_eq!(per_worker.len(), 3, "not every worker ran ticks");
    for (worker, runs) in &per_worker {
        assert!(
            runs.len() * 6 >= ran.len(),
            "{worker} ran {} of {}",
            runs.len(),
            ran.len()
        );
        assert!(most_at_once(runs) <= 4, "{worker} ran more than 4 at once");
    }
    let txns: f64 = metrics
        .iter()
        .map(|m| metric_sum(m, "cronfleet_worker_claim_txns_total"))
        .sum();
    assert!(
        txns <= ran.len() as f64 * 1.5,
        "{txns} claim txns for {} runs: {metrics:#?}",
        ran.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_that_find_every_slot_busy_past_their_deadline_are_missed_once() {
    let mut fleet = Fleet::new().await;
    let ports = [free_port(), free_port()];
    let workers: Vec<_> = ["full-a", "full-b"]
        .iter()
        .zip(ports)
        .map(|(id, port)| {
            fleet.worker(
                id,
                &[
                    ("CRON_WORKER_SLOTS", "1"),
                    ("CRON_METRICS_LISTEN", &port.to_string()),
                ],
            )
        })
        .collect();
    fleet.registered(&["full-a", "full-b"]).await;
    // One long run-now per worker takes every slot in the fleet.
    for name in ["blocker-a", "blocker-b"] {
        fleet
            .put_job(json!({"name": name, "command": "sleep 60", "cronExpr": "@yearly"}))
            .await;
    }
    for name in ["blocker-a", "blocker-b"] {
        let key = fleet.env.keys.trigger(&JobName::parse(name).unwrap());
        fleet.put(key, r#"{"requestId":"fill"}"#).await;
    }
    let registrations = fleet.env.keys.workers();
    wait_until(Duration::from_secs(15), "both slots taken", || {
        let mut etcd = fleet.etcd.clone();
        let prefix = registrations.clone();
        async move {
            let found = etcd
                .get(
                    prefix.as_str(),
                    Some(etcd_client::GetOptions::new().with_prefix()),
                )
                .await
                .unwrap();
            found.kvs().len() == 2
                && found.kvs().iter().all(|kv| {
                    let value: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
                    value["running"].as_array().is_some_and(|r| r.len() == 1)
                })
        }
    })
    .await;
    fleet
        .put_job(json!({"name": "starved", "command": "true", "cronExpr": "* * * * * *"}))
        .await;
    let records = fleet
        .wait_for_records(
            "starved",
            Duration::from_secs(20),
            "missed ticks",
            |r| r.status == RunStatus::Missed,
            4,
        )
        .await;
    fleet
        .put_job(json!({"name": "starved", "command": "true", "cronExpr": "* * * * * *", "paused": true}))
        .await;
    let mut missed_in_metrics = 0.0;
    for port in ports {
        missed_in_metrics += metric_sum(
            &scrape(port).await,
            "cronfleet_worker_ticks_missed_total{reason=\"no_free_slot\"}",
        );
    }
    for name in ["blocker-a", "blocker-b"] {
        let key = fleet.env.keys.killer(&JobName::parse(name).unwrap());
        fleet.put(key, r#"{"requestId":"free"}"#).await;
    }
    for worker in workers {
        assert_eq!(worker.stop().await, 0);
    }
    let records: Vec<ExecutionRecord> = fleet
        .records("starved")
        .await
        .into_iter()
        .filter(|r| records.iter().any(|seen| seen.plan_time == r.plan_time))
        .collect();
    assert!(records.len() >= 4);
    for record in &records {
        assert_eq!(record.status, RunStatus::Missed, "{record:#?}");
        assert_eq!(record.reason, Some(MissReason::NoFreeSlot), "{record:#?}");
        assert_eq!(record.fencing_token, 0);
        assert!(record.start_time >= record.plan_time + 1_000, "{record:#?}");
    }
    for pair in records.windows(2) {
        assert_eq!(
            pair[1].plan_time - pair[0].plan_time,
            1_000,
            "a second has no record, or two: {records:#?}"
        );
    }
    assert!(missed_in_metrics >= records.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_nobody_was_up_for_still_runs_within_its_deadline() {
    let mut fleet = Fleet::new().await;
    let early = fleet.worker("early", &[]);
    fleet.registered(&["early"]).await;
    let spec = json!({"name": "late", "command": "true", "cronExpr": "*/5 * * * * *", "startingDeadlineSecs": 4});
    fleet.put_job(spec.clone()).await;
    fleet
        .wait_for_records(
            "late",
            Duration::from_secs(15),
            "a first run",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert_eq!(early.stop().await, 0);
    // The next tick comes while no worker runs; a worker starts a second after it.
    let now = chrono::Utc::now().timestamp_millis();
    let unclaimed = (now / 5_000 + 1) * 5_000;
    wait_until(
        Duration::from_secs(10),
        "a second past the tick",
        || async { chrono::Utc::now().timestamp_millis() >= unclaimed + 1_000 },
    )
    .await;
    let late = fleet.worker("late", &[]);
    let records = fleet
        .wait_for_records(
            "late",
            Duration::from_secs(15),
            "the unclaimed tick to run",
            |r| r.plan_time == unclaimed,
            1,
        )
        .await;
    fleet
        .put_job(
            json!({"name": "late", "command": "true", "cronExpr": "*/5 * * * * *", "paused": true}),
        )
        .await;
    assert_eq!(late.stop().await, 0);
    let tick: Vec<&ExecutionRecord> = records
        .iter()
        .filter(|r| r.plan_time == unclaimed)
        .collect();
    assert_eq!(tick.len(), 1, "{records:#?}");
    assert_eq!(tick[0].status, RunStatus::Succeeded, "{records:#?}");
    assert_eq!(tick[0].worker_id, "late");
    let delay = tick[0].start_time - unclaimed;
    assert!((1_000..4_000).contains(&delay), "started {delay} ms late");
    let mut planned: Vec<i64> = fleet
        .records("late")
        .await
        .iter()
        .map(|r| r.plan_time)
        .collect();
    planned.sort_unstable();
    for pair in planned.windows(2) {
        assert_eq!(pair[1] - pair[0], 5_000, "{planned:?}");
    }
}
