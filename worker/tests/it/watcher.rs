//! The watcher against real etcd: snapshot, then changes, and compaction as an error that makes
//! the run loop take a new snapshot.

use std::time::Duration;

use cronfleet_common::testkit::TestEnv;
use cronfleet_common::JobName;
use cronfleet_worker::clock::Clock;
use cronfleet_worker::watcher::{Change, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn job_json(name: &str) -> String {
    format!(r#"{{"name":"{name}","command":"true","cronExpr":"@daily"}}"#)
}

async fn next(changes: &mut mpsc::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a change")
        .expect("open")
}

#[tokio::test]
async fn snapshot_then_changes_in_order_skipping_bad_values() {
    let env = TestEnv::new().await;
    let mut etcd = env.etcd().await;
    let a = JobName::parse("a").unwrap();
    etcd.put(env.keys.job(&a), job_json("a"), None)
        .await
        .unwrap();
    etcd.put(env.keys.job(&JobName::parse("bad").unwrap()), "{", None)
        .await
        .unwrap();
    let (tx, mut changes) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let watcher = Watcher::new(etcd.clone(), env.keys.clone(), Clock::with_offset_ms(0));
    let task = tokio::spawn(watcher.run(tx, shutdown.clone()));
    match next(&mut changes).await {
        Change::Snapshot { jobs, .. } => assert_eq!(
            jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
            ["a"]
        ),
        other => panic!("expected a snapshot, got {other:?}"),
    }
    etcd.put(
        env.keys.job(&JobName::parse("b").unwrap()),
        job_json("b"),
        None,
    )
    .await
    .unwrap();
    etcd.delete(env.keys.job(&a), None).await.unwrap();
    assert!(matches!(next(&mut changes).await, Change::JobPut(spec) if spec.name.as_str() == "b"));
    assert!(matches!(next(&mut changes).await, Change::JobDeleted(name) if name == a));
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_watch_behind_a_compaction_fails_so_the_loop_resnapshots() {
    let env = TestEnv::new().await;
    let mut etcd = env.etcd().await;
    let first = etcd
        .put(
            env.keys.job(&JobName::parse("x").unwrap()),
            job_json("x"),
            None,
        )
        .await
        .unwrap();
    let start = first.header().unwrap().revision();
    let latest = etcd
        .put(
            env.keys.job(&JobName::parse("y").unwrap()),
            job_json("y"),
            None,
        )
        .await
        .unwrap();
    etcd.compact(latest.header().unwrap().revision(), None)
        .await
        .unwrap();
    let (tx, _changes) = mpsc::channel(16);
    let mut watcher = Watcher::new(etcd.clone(), env.keys.clone(), Clock::with_offset_ms(0));
    let error = watcher.follow(start, &tx).await.unwrap_err();
    assert!(error.to_string().contains("compacted"), "{error}");
}
