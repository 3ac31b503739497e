//! The worker fleet against real etcd and the MongoDB-wire server: worker processes, jobs
//! written to etcd as the projector writes them, records read back from Mongo.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::{processes_mentioning, processes_running, starts_per_tick, wait_until, Fleet};
use cronfleet_common::{ExecutionRecord, JobName, RunStatus, Trigger};
use serde_json::json;

fn job_key(fleet: &Fleet, name: &str) -> String {
    fleet.env.keys.job(&JobName::parse(name).unwrap())
}

/// Asserts that no planned second started twice, that every second from the first record to
/// the last has exactly one record (a start, or a skip or miss on the record), that at least
/// `at_least` seconds started, and that at most `not_started` records are skips or misses.
fn assert_one_record_per_second(records: &[ExecutionRecord], at_least: usize, not_started: usize) {
    let starts = starts_per_tick(records);
    let duplicates: Vec<_> = starts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "ticks started more than once: {duplicates:?}"
    );
    assert!(starts.len() >= at_least, "only {} ticks ran", starts.len());
    let mut ticks: Vec<i64> = records.iter().map(|r| r.plan_time).collect();
    ticks.sort_unstable();
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "a second has no record, or two: {pair:?}"
        );
    }
    let others: Vec<_> = records
        .iter()
        .filter(|r| r.status != RunStatus::Succeeded)
        .collect();
    assert!(others.len() <= not_started, "{others:#?}");
    assert!(
        others
            .iter()
            .all(|r| matches!(r.status, RunStatus::Skipped | RunStatus::Missed)),
        "{others:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_start_each_second_exactly_once() {
    let mut fleet = Fleet::new().await;
    let workers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| fleet.worker(id, &[]))
        .collect();
    fleet.registered(&["a", "b", "c"]).await;
    fleet
        .put_job(json!({"name": "every-second", "command": "echo $CRON_RUN_ID", "cronExpr": "* * * * * *"}))
        .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    fleet.put_job(json!({"name": "every-second", "command": "true", "cronExpr": "* * * * * *", "paused": true})).await;
    for worker in workers {
        assert_eq!(worker.stop().await, 0);
    }
    let records = fleet.records("every-second").await;
    assert_one_record_per_second(&records, 18, 0);
    let runners: HashSet<&str> = records.iter().map(|r| r.worker_id.as_str()).collect();
    assert!(!runners.is_empty());
    assert!(records
        .iter()
        .all(|r| r.output == format!("{}\n", r.run_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_two_seconds_ahead_never_duplicates_a_tick() {
    let mut fleet = Fleet::new().await;
    let workers = vec![
        fleet.worker("on-time-1", &[]),
        fleet.worker("on-time-2", &[]),
        fleet.worker("ahead", &[("CRON_TEST_CLOCK_OFFSET_MS", "2000")]),
    ];
    fleet.registered(&["on-time-1", "on-time-2", "ahead"]).await;
    fleet
        .put_job(json!({"name": "skewed", "command": "true", "cronExpr": "* * * * * *"}))
        .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    fleet
        .put_job(
            json!({"name": "skewed", "command": "true", "cronExpr": "* * * * * *", "paused": true}),
        )
        .await;
    for worker in workers {
        assert_eq!(worker.stop().await, 0);
    }
    // When the worker that is ahead first claims, the ticks between the last on-time claim and
    // its own come too late for anyone: they are recorded as skipped or missed, never run twice.
    let records = fleet.records("skewed").await;
    assert_one_record_per_second(&records, 16, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_run_is_abandoned_and_the_next_tick_runs_elsewhere() {
    let mut fleet = Fleet::new().await;
    let mut workers = vec![fleet.worker("first", &[]), fleet.worker("second", &[])];
    fleet.registered(&["first", "second"]).await;
    fleet
        .put_job(json!({"name": "long", "command": "sleep 4.0301 & sleep 4.0301; wait", "cronExpr": "*/2 * * * * *"}))
        .await;
    let lock = fleet.env.keys.lock(&JobName::parse("long").unwrap());
    let holder = fleet.wait_for_key(&lock, Duration::from_secs(10)).await;
    let victim_id = holder["workerId"].as_str().unwrap().to_owned();
    let victim_run = holder["runId"].as_str().unwrap().to_owned();
    let index = workers.iter().position(|w| w.id == victim_id).unwrap();
    wait_until(Duration::from_secs(5), "the run's processes", || async {
        processes_running("sleep 4.0301") == 2
    })
    .await;
    workers.remove(index).crash();
    let crashed_at = std::time::Instant::now();
    // The survivor cannot start the job before the dead worker's lease (3 s) expires, so every
    // such process now belongs to the dead worker's run.
    wait_until(
        Duration::from_secs(1),
        "the dead worker's run to die with it",
        || async { processes_mentioning("sleep 4.0301") == 0 },
    )
    .await;

    let records = fleet
        .wait_for_records(
            "long",
            Duration::from_secs(8),
            "the abandoned record",
            |r| r.run_id == victim_run,
            1,
        )
        .await;
    let abandoned = records.iter().find(|r| r.run_id == victim_run).unwrap();
    assert_eq!(abandoned.status, RunStatus::Abandoned);
    assert_ne!(abandoned.worker_id, "");
    assert!(crashed_at.elapsed() <= Duration::from_secs(3 + 5));
    assert!(abandoned.fencing_token > 0);

    let survivor = workers[0].id.clone();
    fleet
        .wait_for_records(
            "long",
            Duration::from_secs(15),
            "a run on the survivor",
            |r| r.worker_id == survivor && r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    let starts = starts_per_tick(&fleet.records("long").await);
    assert!(starts.values().all(|n| *n == 1), "{starts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_requests_and_timeouts_stop_the_whole_run() {
    let mut fleet = Fleet::new().await;
    let worker = fleet.worker("solo", &[]);
    fleet.registered(&["solo"]).await;
    fleet
        .put_job(json!({"name": "stubborn", "command": "trap '' TERM; sleep 9101 & sleep 9101 & wait", "cronExpr": "@every 1h"}))
        .await;
    fleet
        .put_job(json!({"name": "slow", "command": "sleep 9102 & wait", "cronExpr": "* * * * * *", "timeoutSecs": 1}))
        .await;
    fleet
        .put(
            fleet.env.keys.trigger(&JobName::parse("stubborn").unwrap()),
            "{\"requestId\":\"r1\"}",
        )
        .await;
    wait_until(
        Duration::from_secs(10),
        "the stubborn run to start",
        || async { processes_running("sleep 9101") == 2 },
    )
    .await;
    fleet
        .put(
            fleet.env.keys.killer(&JobName::parse("stubborn").unwrap()),
            "{\"requestId\":\"k1\",\"actor\":\"bob\"}",
        )
        .await;
    let records = fleet
        .wait_for_records(
            "stubborn",
            Duration::from_secs(10),
            "the killed record",
            |r| r.status == RunStatus::Killed,
            1,
        )
        .await;
    assert_eq!(records[0].trigger, Trigger::Manual);
    // A request written without its audit sequence or sender still reads.
    assert_eq!(records[0].request_id.as_deref(), Some("r1"));
    assert_eq!(records[0].requested_by, None);
    assert_eq!(records[0].killed_by.as_deref(), Some("bob"));
    assert_eq!(
        records[0].signal,
        Some(9),
        "TERM was trapped, so the group got SIGKILL"
    );
    assert_eq!(processes_mentioning("sleep 9101"), 0);

    let records = fleet
        .wait_for_records(
            "slow",
            Duration::from_secs(10),
            "a timed-out record",
            |r| r.status == RunStatus::TimedOut,
            1,
        )
        .await;
    let timed_out = records
        .iter()
        .find(|r| r.status == RunStatus::TimedOut)
        .unwrap();
    assert_eq!(timed_out.err, "timed out after 1s");
    fleet
        .put_job(
            json!({"name": "slow", "command": "true", "cronExpr": "* * * * * *", "paused": true}),
        )
        .await;
    assert_eq!(worker.stop().await, 0);
    assert_eq!(processes_mentioning("sleep 9102"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_policies_forbid_allow_and_replace() {
    let mut fleet = Fleet::new().await;
    let workers = vec![fleet.worker("p1", &[]), fleet.worker("p2", &[])];
    fleet.registered(&["p1", "p2"]).await;
    for (name, policy) in [
        ("forbid-job", "forbid"),
        ("allow-job", "allow"),
        ("replace-job", "replace"),
    ] {
        fleet
            .put_job(json!({"name": name, "command": "sleep 2.5", "cronExpr": "* * * * * *", "concurrency": policy}))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (name, policy) in [
        ("forbid-job", "forbid"),
        ("allow-job", "allow"),
        ("replace-job", "replace"),
    ] {
        fleet
            .put_job(json!({"name": name, "command": "true", "cronExpr": "* * * * * *", "concurrency": policy, "paused": true}))
            .await;
    }
    // Let the last runs end on their own before the workers stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for worker in workers {
        assert_eq!(worker.stop().await, 0);
    }
    let forbid = fleet.records("forbid-job").await;
    assert!(
        forbid.iter().any(|r| r.status == RunStatus::Succeeded),
        "{forbid:#?}"
    );
    assert!(
        forbid
            .iter()
            .filter(|r| r.status == RunStatus::Skipped)
            .count()
            >= 3,
        "{forbid:#?}"
    );
    assert!(forbid.iter().all(|r| r.status != RunStatus::Killed));

    let allow = fleet.records("allow-job").await;
    let overlapping = allow.windows(2).any(|pair| {
        pair[1].start_time < pair[0].end_time && pair[0].status == RunStatus::Succeeded
    });
    assert!(
        overlapping,
        "allow should run ticks side by side: {allow:#?}"
    );
    assert!(allow.iter().all(|r| r.status != RunStatus::Skipped));

    let replace = fleet.records("replace-job").await;
    let replaced: Vec<_> = replace
        .iter()
        .filter(|r| r.status == RunStatus::Killed)
        .collect();
    assert!(replaced.len() >= 3, "{replace:#?}");
    assert!(replaced.iter().all(|r| r.err.contains("replaced")));
    for records in [&forbid, &allow, &replace] {
        assert!(starts_per_tick(records).values().all(|n| *n == 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_compaction_and_skips_bad_job_values() {
    let mut fleet = Fleet::new().await;
    let worker = fleet.worker("w", &[]);
    fleet.registered(&["w"]).await;
    let bad = job_key(&fleet, "broken");
    fleet.put(bad, "{not json").await;
    fleet
        .put_job(json!({"name": "before", "command": "echo before", "cronExpr": "* * * * * *"}))
        .await;
    fleet
        .wait_for_records(
            "before",
            Duration::from_secs(10),
            "a run before compaction",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    let revision = fleet
        .etcd
        .put(job_key(&fleet, "filler"), "{}", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    fleet.etcd.compact(revision, None).await.unwrap();
    fleet
        .put_job(json!({"name": "after", "command": "echo after", "cronExpr": "* * * * * *"}))
        .await;
    fleet
        .wait_for_records(
            "after",
            Duration::from_secs(10),
            "a run after compaction",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    fleet
        .etcd
        .delete(job_key(&fleet, "after"), None)
        .await
        .unwrap();
    fleet
        .etcd
        .delete(job_key(&fleet, "before"), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = fleet.records("after").await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        fleet.records("after").await.len() <= settled + 1,
        "a deleted job kept running"
    );
    assert_eq!(worker.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_jobs_do_not_fire_and_run_now_does() {
    let mut fleet = Fleet::new().await;
    let worker = fleet.worker("w", &[]);
    fleet.registered(&["w"]).await;
    fleet
        .put_job(json!({"name": "paused", "command": "echo manual", "cronExpr": "* * * * * *", "paused": true}))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(fleet.records("paused").await.is_empty());
    fleet
        .put(
            fleet.env.keys.trigger(&JobName::parse("paused").unwrap()),
            "{\"requestId\":\"r\"}",
        )
        .await;
    let records = fleet
        .wait_for_records(
            "paused",
            Duration::from_secs(10),
            "the run-now record",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].trigger, records[0].output.as_str()),
        (Trigger::Manual, "manual\n")
    );
    assert_eq!(
        fleet
            .get(&fleet.env.keys.trigger(&JobName::parse("paused").unwrap()))
            .await,
        None
    );
    assert_eq!(worker.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_carries_the_worker_and_leaves_with_it() {
    let mut fleet = Fleet::new().await;
    let graceful = fleet.worker("graceful", &[("CRON_WORKER_SLOTS", "7")]);
    let crashing = fleet.worker("crashing", &[]);
    fleet.registered(&["graceful", "crashing"]).await;
    let registration = fleet.get(&fleet.env.keys.worker("graceful")).await.unwrap();
    assert_eq!(registration["id"], "graceful");
    assert_eq!(registration["slots"], 7);
    assert_eq!(registration["pid"], graceful.child.id());
    for field in ["hostname", "version", "startedAt", "running", "heartbeatAt"] {
        assert!(
            registration.get(field).is_some(),
            "{field} missing: {registration}"
        );
    }
    fleet.put_job(json!({"name": "finishes", "command": "sleep 0.7; echo done", "cronExpr": "* * * * * *"})).await;
    wait_until(Duration::from_secs(10), "a run in progress", || {
        let mut etcd = fleet.etcd.clone();
        let lock = fleet.env.keys.lock(&JobName::parse("finishes").unwrap());
        async move { !etcd.get(lock, None).await.unwrap().kvs().is_empty() }
    })
    .await;
    crashing.crash();
    let crashed_at = std::time::Instant::now();
    assert_eq!(graceful.stop().await, 0);
    assert_eq!(
        fleet.get(&fleet.env.keys.worker("graceful")).await,
        None,
        "graceful exit revokes the lease"
    );
    let records = fleet.records("finishes").await;
    assert!(
        records
            .iter()
            .any(|r| r.worker_id == "graceful" && r.output == "done\n")
            || records.iter().all(|r| r.worker_id != "graceful")
    );
    assert!(
        records.iter().all(|r| r.status != RunStatus::Killed),
        "{records:#?}"
    );
    wait_until(
        Duration::from_secs(4),
        "the crashed worker's registration to expire",
        || {
            let mut etcd = fleet.etcd.clone();
            let key = fleet.env.keys.worker("crashing");
            async move { etcd.get(key, None).await.unwrap().kvs().is_empty() }
        },
    )
    .await;
    assert!(crashed_at.elapsed() <= Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_missed_while_no_worker_ran_are_recorded_once() {
    let mut fleet = Fleet::new().await;
    let first = fleet.worker("before", &[]);
    fleet.registered(&["before"]).await;
    fleet
        .put_job(json!({"name": "gappy", "command": "true", "cronExpr": "* * * * * *"}))
        .await;
    fleet
        .wait_for_records(
            "gappy",
            Duration::from_secs(10),
            "runs before the gap",
            |r| r.status == RunStatus::Succeeded,
            2,
        )
        .await;
    assert_eq!(first.stop().await, 0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let second = fleet.worker("after", &[]);
    let records = fleet
        .wait_for_records(
            "gappy",
            Duration::from_secs(10),
            "runs after the gap",
            |r| r.worker_id == "after" && r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    fleet
        .put_job(
            json!({"name": "gappy", "command": "true", "cronExpr": "* * * * * *", "paused": true}),
        )
        .await;
    assert_eq!(second.stop().await, 0);
    let missed: Vec<_> = records
        .iter()
        .filter(|r| r.status == RunStatus::Missed)
        .collect();
    assert!(missed.len() >= 3, "{records:#?}");
    assert!(missed
        .iter()
        .all(|r| r.run_id.starts_with("missed-gappy-") && r.fencing_token == 0));
    let mut ticks: Vec<i64> = fleet
        .records("gappy")
        .await
        .iter()
        .map(|r| r.plan_time)
        .collect();
    ticks.sort_unstable();
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "a second has no record, or two: {pair:?}"
        );
    }
}
