//! Proof that the test bed is real: each service through the crate the product uses.

use cronfleet_common::testkit::TestEnv;
use cronfleet_common::{ExecutionRecord, RunStatus, Trigger};
use etcd_client::{GetOptions, WatchOptions};
use futures_util::TryStreamExt;
use mongodb::bson::doc;

#[tokio::test]
async fn etcd_put_prefix_get_and_watch_from_a_revision() {
    let env = TestEnv::new().await;
    let mut etcd = env.etcd().await;
    let jobs = env.keys.jobs();
    let first = etcd.put(format!("{jobs}a"), "1", None).await.unwrap();
    etcd.put(format!("{jobs}b"), "2", None).await.unwrap();
    let snapshot = etcd
        .get(jobs.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let keys: Vec<&str> = snapshot
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap())
        .collect();
    assert_eq!(keys, [format!("{jobs}a"), format!("{jobs}b")]);

    // Watching from the first put's revision + 1 replays exactly the second put.
    let after_first = first.header().unwrap().revision() + 1;
    let mut stream = etcd
        .watch(
            jobs.as_str(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(after_first),
            ),
        )
        .await
        .unwrap();
    // The first message only confirms the watch was created; events follow.
    let mut response = stream.message().await.unwrap().unwrap();
    while response.events().is_empty() {
        response = stream.message().await.unwrap().unwrap();
    }
    let seen: Vec<&str> = response
        .events()
        .iter()
        .map(|event| event.kv().unwrap().key_str().unwrap())
        .collect();
    assert_eq!(seen, [format!("{jobs}b")]);
}

#[tokio::test]
async fn postgres_migrations_are_applied_and_events_are_append_only() {
    let env = TestEnv::new().await;
    let pool = env.postgres().await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        applied,
        cronfleet_common::testkit::MIGRATOR.iter().count() as i64
    );
    sqlx::query(
        "INSERT INTO events (seq, job_name, version, type, payload, actor, request_id)
         VALUES (1, 'backup', 1, 'JobCreated', '{}', 'alice', 'r1')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let refused = sqlx::query("UPDATE events SET actor = 'mallory'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    let refused = sqlx::query("DELETE FROM events")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
}

fn record(run_id: &str, start_time: i64) -> ExecutionRecord {
    ExecutionRecord {
        run_id: run_id.to_owned(),
        job_name: "backup".to_owned(),
        command: "echo hi".to_owned(),
        err: String::new(),
        output: "hi\n".to_owned(),
        plan_time: start_time,
        schedule_time: start_time,
        start_time,
        end_time: start_time + 5,
        worker_id: "w1".to_owned(),
        status: RunStatus::Succeeded,
        exit_code: Some(0),
        signal: None,
        output_bytes: 3,
        truncated: false,
        fencing_token: 7,
        job_version: 1,
        trigger: Trigger::Schedule,
        reason: None,
        tick_id: None,
        attempt: None,
        source_run_id: None,
        will_retry: None,
        request_id: None,
        requested_by: None,
        killed_by: None,
    }
}

#[tokio::test]
async fn mongo_insert_many_and_sorted_find_of_execution_records() {
    let env = TestEnv::new().await;
    let log = env.mongo().await.collection::<ExecutionRecord>("log");
    let records = [
        record("r1", 1_000),
        record("r2", 3_000),
        record("r3", 2_000),
    ];
    let inserted = log.insert_many(&records).await.unwrap();
    assert_eq!(inserted.inserted_ids.len(), 3);
    let newest_first: Vec<ExecutionRecord> = log
        .find(doc! { "jobName": "backup" })
        .sort(doc! { "startTime": -1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let order: Vec<&str> = newest_first.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(order, ["r2", "r3", "r1"]);
    assert_eq!(newest_first[0], records[1]);
}
