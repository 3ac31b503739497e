//! Nothing a run starts outlives it: processes that leave the run's process group (`setsid`,
//! a double fork, `nohup … &`) or ignore SIGTERM are ended when the shell exits, on timeout,
//! on a kill request and when the worker dies; each run gets one record and its lock goes.

use std::time::Duration;

use crate::support::{processes_running, wait_until, Fleet};
use cronfleet_common::{JobName, RunStatus};
use serde_json::json;

/// Ways a command leaves a process behind; `{}` is the marker (a sleep's length).
const ESCAPES: [(&str, &str); 4] = [
    ("setsid", "setsid sleep {} &"),
    ("double-fork", "(sh -c 'sleep {} &' &);"),
    ("nohup", "nohup sleep {} >/dev/null 2>&1 &"),
    ("ignores-term", "sh -c 'trap \"\" TERM; sleep {}' &"),
];

/// How the run ends.
const ENDINGS: [&str; 3] = ["exits", "times-out", "is-killed"];

fn marker(escape: usize, ending: usize) -> u32 {
    7100 + 10 * u32::try_from(escape).unwrap() + u32::try_from(ending).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_a_run_leaves_behind_end_with_it_however_it_ends() {
    let mut fleet = Fleet::new().await;
    let worker = fleet.worker("solo", &[]);
    fleet.registered(&["solo"]).await;
    let mut jobs = Vec::new();
    for (e, (escape, template)) in ESCAPES.iter().enumerate() {
        for (n, ending) in ENDINGS.iter().enumerate() {
            let leave = template.replace("{}", &marker(e, n).to_string());
            let (command, timeout) = match *ending {
                "exits" => (format!("{leave} sleep 0.2"), None),
                "times-out" => (format!("{leave} sleep 60"), Some(1)),
                _ => (format!("{leave} sleep 60"), None),
            };
            let name = format!("{escape}-{ending}");
            let mut spec = json!({"name": name, "command": command, "cronExpr": "@every 1h"});
            if let Some(secs) = timeout {
                spec["timeoutSecs"] = json!(secs);
            }
            fleet.put_job(spec).await;
            jobs.push((name, e, n));
        }
    }
    for (name, _, _) in &jobs {
        let job = JobName::parse(name).unwrap();
        fleet.put(fleet.env.keys.trigger(&job), "{}").await;
    }
    wait_until(
        Duration::from_secs(20),
        "every left-behind process to start",
        || {
            let jobs = jobs.clone();
            async move {
                jobs.iter()
                    .filter(|(_, _, n)| *n != 0)
                    .all(|(_, e, n)| processes_running(&format!("sleep {}", marker(*e, *n))) == 1)
            }
        },
    )
    .await;
    for (name, _, n) in &jobs {
        if ENDINGS[*n] == "is-killed" {
            let job = JobName::parse(name).unwrap();
            fleet.put(fleet.env.keys.killer(&job), "{}").await;
        }
    }
    for (name, e, n) in &jobs {
        let expected = match ENDINGS[*n] {
            "exits" => RunStatus::Succeeded,
            "times-out" => RunStatus::TimedOut,
            _ => RunStatus::Killed,
        };
        // Within the 1 s grace, the supervisor's margin and the record's flush.
        let records = fleet
            .wait_for_records(name, Duration::from_secs(15), name, |_| true, 1)
            .await;
        assert_eq!(records.len(), 1, "{name}: {records:#?}");
        assert_eq!(records[0].status, expected, "{name}: {:?}", records[0]);
        let sleep = format!("sleep {}", marker(*e, *n));
        assert_eq!(
            processes_running(&sleep),
            0,
            "{name}: `{sleep}` outlived its run"
        );
        let lock = fleet.env.keys.lock(&JobName::parse(name).unwrap());
        assert!(
            fleet.get(&lock).await.is_none(),
            "{name}: its lock is still held"
        );
    }
    assert_eq!(worker.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_a_run_leaves_behind_die_with_a_killed_worker() {
    let mut fleet = Fleet::new().await;
    let worker = fleet.worker("doomed", &[]);
    fleet.registered(&["doomed"]).await;
    for (e, (escape, template)) in ESCAPES.iter().enumerate() {
        let leave = template.replace("{}", &(7200 + e).to_string());
        let name = format!("{escape}-orphaned");
        fleet
            .put_job(json!({"name": name, "command": format!("{leave} sleep 60"), "cronExpr": "@every 1h"}))
            .await;
        let job = JobName::parse(&name).unwrap();
        fleet.put(fleet.env.keys.trigger(&job), "{}").await;
    }
    let all = |expected: usize| async move {
        (0..ESCAPES.len()).all(|e| processes_running(&format!("sleep {}", 7200 + e)) == expected)
    };
    wait_until(
        Duration::from_secs(20),
        "every left-behind process to start",
        || all(1),
    )
    .await;
    worker.crash();
    wait_until(
        Duration::from_secs(5),
        "every process of the dead worker's runs to end",
        || all(0),
    )
    .await;
    // Its locks go with its lease (3 s).
    for (escape, _) in ESCAPES {
        let lock = fleet
            .env
            .keys
            .lock(&JobName::parse(&format!("{escape}-orphaned")).unwrap());
        wait_until(
            Duration::from_secs(10),
            "the dead worker's lock to go",
            || {
                let mut etcd = fleet.etcd.clone();
                let lock = lock.clone();
                async move { etcd.get(lock, None).await.unwrap().kvs().is_empty() }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_workers_run_ends_before_another_worker_can_take_its_lock() {
    use nix::sys::signal::{kill, Signal};

    let mut fleet = Fleet::new().await;
    let workers = [fleet.worker("first", &[]), fleet.worker("second", &[])];
    fleet.registered(&["first", "second"]).await;
    fleet
        .put_job(json!({"name": "exclusive", "command": "sleep 7301", "cronExpr": "* * * * * *"}))
        .await;
    let lock = fleet.env.keys.lock(&JobName::parse("exclusive").unwrap());
    let holder = fleet.wait_for_key(&lock, Duration::from_secs(15)).await;
    let holder = holder["workerId"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(10), "the run to start", || async {
        processes_running("sleep 7301") == 1
    })
    .await;
    let frozen = workers.iter().find(|w| w.id == holder).unwrap();
    kill(frozen.pid(), Signal::SIGSTOP).unwrap();

    // The other worker takes the job once the frozen one's lease is gone (3 s); the frozen
    // worker's run must be over by then. Watch /proc meanwhile.
    let mut most = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut taken_over = false;
    while tokio::time::Instant::now() < until {
        most = most.max(processes_running("sleep 7301"));
        if !taken_over {
            let now_holder = fleet.get(&lock).await;
            taken_over = now_holder.is_some_and(|h| h["workerId"] != holder.as_str());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(frozen.pid(), Signal::SIGCONT).unwrap();
    assert!(taken_over, "the other worker never took the job");
    assert_eq!(most, 1, "two runs of a forbid job overlapped");
    for worker in workers {
        assert_eq!(worker.stop().await, 0);
    }
    let records = fleet.records("exclusive").await;
    let first = records
        .iter()
        .find(|r| r.worker_id == holder && r.fencing_token > 0)
        .expect("the frozen worker's run has a record");
    assert!(
        matches!(first.status, RunStatus::Killed | RunStatus::Abandoned),
        "{first:?}"
    );
    assert!(first.err.contains("lease"), "{first:?}");
}
